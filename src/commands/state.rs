//! `lifeboat state list | show ADDR | unlock LOCK_ID | pull | push FILE`, and where a plan's
//! state lives.
//!
//! The state is found the way every command finds it: through the plan file's `state`
//! setting (default `.lifeboat/state.json` beside the plan; or PostgreSQL, or an Azure
//! blob). Reading does not take the lock: every backend's writes are atomic, so a reader
//! always sees a whole document.

use std::path::Path;
use std::sync::Arc;

use lifeboat_engine::diagnostic::codes;
use lifeboat_engine::model::{DEFAULT_STATE_PATH, Plan, StateConfig};
use lifeboat_engine::state::{LocalBackend, State, StateBackend, StateError};
use lifeboat_engine::{Diagnostic, SourceFile, Span, Spanned, load, ops};

use super::Exit;
use crate::cli::{DiagnosticFormat, StateCommand};
use crate::output::outln;
use crate::render::diagnostics::render_human;

/// A plan's state backend, shared by the session and the apply it runs.
pub type Backend = Arc<dyn StateBackend + Send + Sync>;

/// The backend of a plan's state. A remote one connects as the environment says (nothing is
/// contacted yet). A relative `state.local.path` is relative to the plan file and must be
/// inside the plan's repository (`plan::path-outside` otherwise), the default one too:
/// `.lifeboat/state.json` could be a symlink committed in the change under review.
pub fn backend(plan_path: &Path, plan: &Plan) -> Result<Backend, Box<Diagnostic>> {
    if let Some(state) = &plan.state
        && let Some(remote) = lifeboat_state_remote::open(&state.value, &plan.name.value)
    {
        return remote.map(|b| Arc::new(b) as Backend).map_err(|reason| {
            Box::new(
                Diagnostic::error(
                    codes::PLAN_SCHEMA,
                    format!("the `{}` state backend cannot be used: {reason}", state.value.kind()),
                )
                .with_label(state.span, "configured here")
                .with_help(match &state.value {
                    StateConfig::Postgres(_) => "connections come from `DATABASE_URL` or libpq's `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`",
                    _ => "credentials come from `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_KEY` or the Azure credential chain (as the azure provider's)",
                }),
            )
        });
    }
    let (value, default) = match plan.state.as_ref().map(|s| &s.value) {
        Some(StateConfig::Local(local)) => (local.path.clone(), false),
        Some(_) | None => (
            Spanned::new(DEFAULT_STATE_PATH.to_string(), Span::new(0, 0)),
            true,
        ),
    };
    super::provider::contained(plan_path, &value, "state.local.path")
        .map(|contained| Arc::new(LocalBackend::new(contained.path)) as Backend)
        .map_err(|mut diagnostic| {
            // The default is not written in the file: there is no value to point at.
            if default {
                diagnostic.labels.clear();
            }
            diagnostic
        })
}

/// Loads the plan far enough to know where its state is; problems are printed.
fn locate(plan_path: &Path) -> Result<Backend, ()> {
    let file = match super::validate::read_plan(plan_path) {
        Ok(file) => file,
        Err(diagnostic) => {
            let empty = SourceFile::new(plan_path.display().to_string(), plan_path, String::new());
            eprint!("{}", render_human(&[*diagnostic], &empty));
            return Err(());
        }
    };
    match load::load_plan(&file) {
        Ok(plan) => backend(plan_path, &plan).map_err(|diagnostic| {
            eprint!("{}", render_human(&[*diagnostic], &file));
        }),
        Err(diagnostic) => {
            eprint!("{}", render_human(&[*diagnostic], &file));
            Err(())
        }
    }
}

/// Prints a state error with what to do about it.
pub fn report(error: &StateError) {
    eprintln!("error: {error}");
    let help = match error {
        StateError::Locked {
            info: Some(info), ..
        } => Some(format!(
            "wait for it with `--lock-timeout 5m`; if that process is gone, run `lifeboat state unlock {}`",
            info.id
        )),
        StateError::Locked { info: None, .. } => {
            Some("wait for it with `--lock-timeout 5m`".to_string())
        }
        StateError::Fenced { .. } => Some(
            "run `lifeboat apply` again: it reconciles what this run left pending, by operation id"
                .to_string(),
        ),
        StateError::Conflict { .. } => Some(
            "read the state again (run the command again); `lifeboat state pull` shows what is stored"
                .to_string(),
        ),
        StateError::LeaseRenewed { .. } => Some(
            "stop that process, or wait: the lock ends with its lease once nobody renews it"
                .to_string(),
        ),
        StateError::Invalid { .. } => Some(
            "restore the file from a backup or version control; lifeboat does not repair or overwrite it"
                .to_string(),
        ),
        _ => None,
    };
    if let Some(help) = help {
        eprintln!("  help: {help}");
    }
}

pub fn run(plan_path: &Path, command: StateCommand) -> Exit {
    let Ok(backend) = locate(plan_path) else {
        return Exit::Error;
    };
    match command {
        StateCommand::List { format } => list(backend.as_ref(), format),
        StateCommand::Show { address, format } => show(backend.as_ref(), &address, format),
        StateCommand::Unlock { lock_id } => unlock(backend.as_ref(), &lock_id),
        StateCommand::Pull => pull(backend.as_ref()),
        StateCommand::Push {
            file,
            force,
            lock_timeout,
        } => push(backend.as_ref(), &file, force, lock_timeout),
    }
}

fn read(backend: &dyn StateBackend) -> Result<Option<lifeboat_engine::state::State>, ()> {
    backend.read().map_err(|error| report(&error))
}

fn list(backend: &dyn StateBackend, format: DiagnosticFormat) -> Exit {
    let Ok(state) = read(backend) else {
        return Exit::Error;
    };
    let Some(state) = state else {
        eprintln!(
            "no state at `{}` yet; `lifeboat plan` creates it",
            backend.location()
        );
        if format == DiagnosticFormat::Json {
            outln!("[]");
        }
        return Exit::Success;
    };
    match format {
        DiagnosticFormat::Human => {
            outln!(
                "state `{}`: lineage {}, serial {}, {}",
                backend.location(),
                state.lineage,
                state.serial,
                crate::render::plural(state.machines.len(), "machine")
            );
            for (name, machine) in &state.machines {
                let pending = machine
                    .pending
                    .as_ref()
                    .map(|p| format!("  pending {} `{}`", p.kind, p.id))
                    .unwrap_or_default();
                outln!(
                    "{:<32} {}{pending}",
                    format!("machine.{name}"),
                    machine.stage
                );
            }
        }
        DiagnosticFormat::Json => {
            let rows: Vec<serde_json::Value> = state
                .machines
                .iter()
                .map(|(name, machine)| {
                    serde_json::json!({
                        "address": format!("machine.{name}"),
                        "stage": machine.stage,
                        "pending": machine.pending.as_ref().map(|p| p.kind),
                    })
                })
                .collect();
            outln!(
                "{}",
                serde_json::to_string_pretty(&rows).expect("plain data")
            );
        }
    }
    Exit::Success
}

fn show(backend: &dyn StateBackend, address: &str, format: DiagnosticFormat) -> Exit {
    let Some(name) = address.strip_prefix("machine.") else {
        eprintln!("error: `{address}` is not a machine address; use `machine.NAME`");
        return Exit::Error;
    };
    let Ok(state) = read(backend) else {
        return Exit::Error;
    };
    let Some(machine) = state.as_ref().and_then(|s| s.machines.get(name)) else {
        eprintln!(
            "error: `{address}` is not in the state `{}`",
            backend.location()
        );
        eprintln!("  help: `lifeboat state list` shows the machines the state knows");
        return Exit::Error;
    };
    match format {
        DiagnosticFormat::Json => outln!(
            "{}",
            serde_json::to_string_pretty(machine).expect("plain data")
        ),
        DiagnosticFormat::Human => {
            outln!("{address}");
            outln!("  stage: {}", machine.stage);
            if let Some(settings) = &machine.settings {
                outln!("  master_target: {}", settings.master_target);
                outln!("  process_server: {}", settings.process_server);
                outln!("  datastore: {}", settings.datastore);
                outln!("  retention_drive: {}", settings.retention_drive);
                outln!("  recovery: {}", settings.recovery.as_str());
                outln!("  failback_policy: {}", settings.failback_policy);
            }
            for (key, id) in &machine.provider_ids {
                outln!("  provider id {key}: {id}");
            }
            if let Some(pending) = &machine.pending {
                outln!(
                    "  pending: {} `{}` since {}",
                    pending.kind,
                    pending.id,
                    pending.started_at
                );
            }
        }
    }
    Exit::Success
}

fn unlock(backend: &dyn StateBackend, id: &str) -> Exit {
    match backend.unlock(id) {
        Ok(info) => {
            outln!(
                "removed the stale lock on `{}` held by {info}",
                backend.location()
            );
            Exit::Success
        }
        Err(error) => {
            report(&error);
            Exit::Error
        }
    }
}

/// `state pull`: the stored state, as JSON, on stdout.
fn pull(backend: &dyn StateBackend) -> Exit {
    match read(backend) {
        Ok(Some(state)) => {
            crate::output::out!("{}", state.to_json());
            Exit::Success
        }
        Ok(None) => {
            eprintln!("error: there is no state at `{}` yet", backend.location());
            Exit::Error
        }
        Err(()) => Exit::Error,
    }
}

/// `state push FILE`: writes a state file to the backend, under its lock, refusing another
/// lineage or an older serial unless `--force` (the engine's [`ops::push`] decides).
fn push(
    backend: &dyn StateBackend,
    file: &Path,
    force: bool,
    lock_timeout: std::time::Duration,
) -> Exit {
    let text =
        match lifeboat_engine::input::read_capped(file, lifeboat_engine::input::MAX_INPUT_BYTES) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    eprintln!("error: `{}` is not UTF-8 text", file.display());
                    return Exit::Error;
                }
            },
            Err(error) => {
                eprintln!(
                    "error: cannot read `{}`: {}",
                    file.display(),
                    lifeboat_engine::state::lower(&error)
                );
                return Exit::Error;
            }
        };
    let state = match State::from_json(&text) {
        Ok(state) => state,
        Err(reason) => {
            eprintln!(
                "error: `{}` is not a state lifeboat can push: {reason}",
                file.display()
            );
            return Exit::Error;
        }
    };
    match ops::push(backend, state, force, lock_timeout) {
        Ok(ops::Pushed::Written { serial, lineage }) => {
            outln!(
                "pushed `{}` to `{}`: lineage {lineage}, serial {serial}",
                file.display(),
                backend.location()
            );
            Exit::Success
        }
        Ok(ops::Pushed::Unchanged { serial }) => {
            outln!(
                "`{}` already holds this state (serial {serial}); nothing was written",
                backend.location()
            );
            Exit::Success
        }
        Err(ops::PushError::State(error)) => {
            report(&error);
            Exit::Error
        }
        Err(refused) => {
            eprintln!("error: {refused}");
            eprintln!(
                "  help: `lifeboat state pull` shows what is stored; `--force` replaces it anyway"
            );
            Exit::Error
        }
    }
}
