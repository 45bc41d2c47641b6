//! The steps every command that looks at the sites shares: read and load the plan, validate
//! it, take the state lock and read (or create) the state, open the provider, refresh the
//! facts, and assign master targets knowing where machines replicate today. Each step that
//! fails prints its report and returns `Err(Exit::Error)`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use lifeboat_engine::model::Plan;
use lifeboat_engine::provider::{Facts, Provider};
use lifeboat_engine::state::{LockGuard, State};
use lifeboat_engine::validate::Validation;
use lifeboat_engine::{SourceFile, load, ops};

use super::Exit;
use crate::render::diagnostics::{counts, render_human};

/// A plan opened against its sites, with the state locked for as long as this lives.
#[derive(Debug)]
pub struct Session {
    pub file: SourceFile,
    pub plan: Plan,
    /// Validation with the current master targets (see `assign`'s stickiness).
    pub validation: Validation,
    pub backend: super::state::Backend,
    pub state: State,
    pub provider: Arc<dyn Provider>,
    pub runtime: tokio::runtime::Runtime,
    pub facts: Facts,
    /// The current master targets `validation` was made with (empty: none, as `validate`).
    validated_with: HashMap<String, String>,
    /// Held for as long as the session lives; `None` only inside [`Session::finish`].
    lock: Option<LockGuard>,
}

/// Loads and validates a plan; invalid plans are reported here.
pub fn load_valid(plan_path: &Path) -> Result<(SourceFile, Plan, Validation), Exit> {
    let file = super::validate::read_plan(plan_path).map_err(|diagnostic| {
        let empty = SourceFile::new(plan_path.display().to_string(), plan_path, String::new());
        eprint!("{}", render_human(&[*diagnostic], &empty));
        Exit::Error
    })?;
    let plan = load::load_plan_all(&file).map_err(|diagnostics| {
        eprint!("{}", render_human(&diagnostics, &file));
        Exit::Error
    })?;
    // The world of a large simulated estate takes longer to parse than the plan takes to
    // validate: start on it now, on the other core.
    let warming = super::provider::warm_up(plan_path, &plan);
    let validation = ops::validate(&plan, super::paths::containment(plan_path).as_ref());
    if let Some(warming) = warming {
        // The warm-up only fills the provider's cache; its errors are reported when the
        // provider is opened for real.
        let _ = warming.join();
    }
    if validation.has_errors() {
        eprint!("{}", render_human(&validation.diagnostics, &file));
        eprintln!(
            "`{}` is invalid: {}",
            file.name(),
            counts(&validation.diagnostics)
        );
        return Err(Exit::Error);
    }
    Ok((file, plan, validation))
}

/// Opens a session: everything up to and including the refresh. `operation` names the
/// command in the lock's owner information; `lock_timeout` `None` (`--lock=false`) reads the
/// state without its lock, which is safe because state writes are atomic renames, and then
/// never creates it.
pub fn open(
    plan_path: &Path,
    operation: &str,
    lock_timeout: Option<Duration>,
) -> Result<Session, Exit> {
    let (file, plan, validation) = load_valid(plan_path)?;
    let backend = super::state::backend(plan_path, &plan).map_err(|diagnostic| {
        eprint!("{}", render_human(&[*diagnostic], &file));
        Exit::Error
    })?;
    let (lock, state) = ops::session::open_state(backend.as_ref(), operation, lock_timeout)
        .map_err(|error| {
            super::state::report(&error);
            Exit::Error
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: cannot start the async runtime: {error}");
            Exit::Error
        })?;
    let provider: Arc<dyn Provider> =
        super::provider::open(plan_path, &plan, &file, &runtime).map_err(|()| Exit::Error)?;
    let mut session = Session {
        file,
        // Replaced by the refresh below, which knows the current master targets.
        validation,
        plan,
        backend,
        state,
        provider,
        runtime,
        facts: Facts::default(),
        validated_with: HashMap::new(),
        lock,
    };
    session.refresh()?;
    Ok(session)
}

impl Session {
    /// Reads the facts again, and assigns master targets knowing where machines replicate.
    pub fn refresh(&mut self) -> Result<(), Exit> {
        self.facts = self
            .runtime
            .block_on(ops::session::refresh(&self.plan, self.provider.as_ref()))
            .map_err(|error| {
                let code = error
                    .code
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                eprintln!(
                    "error: refreshing from `{}` failed{code}: {}",
                    self.provider.describe().identity,
                    error.message
                );
                Exit::Error
            })?;
        if let Some((validation, current)) =
            ops::session::revalidate(&self.plan, &self.facts, &self.validated_with)
        {
            self.validation = validation;
            self.validated_with = current;
        }
        Ok(())
    }

    /// Ends the session of a process that is about to exit: the state lock is released, and
    /// everything else is left for the operating system to take back at exit. Freeing a large
    /// estate's millions of small allocations one by one took a tenth of `plan`'s time for
    /// 10,000 machines (BENCHMARKS.md).
    pub fn finish(mut self) {
        drop(self.lock.take());
        std::mem::forget(self);
    }
}
