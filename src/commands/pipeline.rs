//! The steps every command that looks at the sites shares: read and load the plan, validate
//! it, open the provider, refresh the facts, and build the execution plan. Each step that
//! fails prints its report and returns `Err(Exit::Error)`.

use std::collections::HashMap;
use std::path::Path;

use lifeboat_engine::model::Plan;
use lifeboat_engine::planner::{self, ExecutionPlan};
use lifeboat_engine::provider::{Facts, Provider};
use lifeboat_engine::validate::{self, Validation};
use lifeboat_engine::{SourceFile, load, preflight};

use super::Exit;
use crate::render::diagnostics::{counts, render_human};

#[derive(Debug)]
pub struct Refreshed {
    pub file: SourceFile,
    pub plan: Plan,
    pub validation: Validation,
    pub facts: Facts,
}

/// Loads and validates the plan and refreshes the facts it needs.
pub fn refresh(plan_path: &Path) -> Result<Refreshed, Exit> {
    let file = super::validate::read_plan(plan_path).map_err(|diagnostic| {
        let empty = SourceFile::new(plan_path.display().to_string(), plan_path, String::new());
        eprint!("{}", render_human(&[*diagnostic], &empty));
        Exit::Error
    })?;
    let plan = load::load_plan(&file).map_err(|diagnostic| {
        eprint!("{}", render_human(&[*diagnostic], &file));
        Exit::Error
    })?;
    let validation = validate::validate(&plan);
    if validation.has_errors() {
        eprint!("{}", render_human(&validation.diagnostics, &file));
        eprintln!(
            "`{}` is invalid: {}",
            file.name(),
            counts(&validation.diagnostics)
        );
        return Err(Exit::Error);
    }
    let provider = super::provider::open(plan_path, &plan, &file).map_err(|()| Exit::Error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: cannot start the async runtime: {error}");
            Exit::Error
        })?;
    let facts = runtime
        .block_on(provider.refresh(&preflight::refresh_request(&plan)))
        .map_err(|error| {
            let code = error
                .code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            eprintln!(
                "error: refreshing from `{}` failed{code}: {}",
                provider.describe().identity,
                error.message
            );
            Exit::Error
        })?;
    // Assign again knowing where machines replicate today, so lifeboat's own earlier choices
    // stay put (see `assign`).
    let current: HashMap<&str, &str> = facts
        .machines
        .iter()
        .filter_map(|(name, fact)| {
            Some((
                name.as_str(),
                fact.settings.as_ref()?.master_target.as_str(),
            ))
        })
        .collect();
    let validation = validate::validate_with(&plan, &current);
    Ok(Refreshed {
        file,
        plan,
        validation,
        facts,
    })
}

impl Refreshed {
    pub fn execution_plan(&self) -> ExecutionPlan {
        planner::build(&self.plan, &self.validation, &self.facts, &[])
    }
}
