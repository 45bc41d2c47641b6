//! One plan assembly, for `plan`, `apply` and saved plans alike: validation's diagnostics,
//! the preflight checks against the facts, the changes from the state and the facts, and a
//! `--target` restriction with its warning.

use std::collections::HashSet;

use crate::diagnostic::{self, Diagnostic, codes};
use crate::model::{Plan, Timestamp};
use crate::planner::{self, ExecutionPlan};
use crate::preflight;
use crate::provider::Facts;
use crate::state::{State, drift};
use crate::validate::Validation;

/// What a plan would do, and everything said about it, sorted by position in the plan file.
#[derive(Debug)]
pub struct Planned {
    pub execution: ExecutionPlan,
    pub diagnostics: Vec<Diagnostic>,
    /// `plan --refresh-only`: how the sites differ from the state (no changes are planned).
    pub drift: Option<Vec<drift::Drift>>,
}

impl Planned {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// A `--target` address that names nothing the plan has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TargetError {
    pub message: String,
}

/// Plans the changes that take every machine from where the facts say it is to the goal,
/// limited to `targets` (addresses) and what they depend on when there are any.
pub fn plan(
    plan: &Plan,
    validation: &Validation,
    facts: &Facts,
    state: &State,
    targets: &[String],
    now: Timestamp,
) -> Result<Planned, TargetError> {
    let selected = planner::resolve_targets(plan, validation, targets)
        .map_err(|message| TargetError { message })?;
    let mut diagnostics = validation.diagnostics.clone();
    diagnostics.extend(preflight::preflight(
        plan,
        &validation.assignment,
        facts,
        now,
    ));
    let released = state.released(plan.machines.names());
    let mut execution = planner::build(plan, validation, facts, &released);
    if !targets.is_empty() {
        execution = execution.restrict(&selected);
        diagnostics.push(targeted_warning(targets, &selected));
    }
    diagnostic::sort(&mut diagnostics);
    Ok(Planned {
        execution,
        diagnostics,
        drift: None,
    })
}

/// `plan --refresh-only`: no change is planned and no preflight check runs (nothing will
/// run); the state is compared with the sites. `targets` are checked, not used.
pub fn refresh_only(
    plan: &Plan,
    validation: &Validation,
    facts: &Facts,
    state: &State,
    targets: &[String],
) -> Result<Planned, TargetError> {
    planner::resolve_targets(plan, validation, targets)
        .map_err(|message| TargetError { message })?;
    let mut diagnostics = validation.diagnostics.clone();
    diagnostic::sort(&mut diagnostics);
    Ok(Planned {
        execution: ExecutionPlan {
            goal: plan.goal(),
            changes: Vec::new(),
            steps: Vec::new(),
            graph: Default::default(),
            untouched: Vec::new(),
        },
        diagnostics,
        drift: Some(drift::detect(state, facts)),
    })
}

/// Whether a fresh plan still does what a saved one showed: the same changes in the same
/// order, with the same settings.
pub fn same_changes(saved: &planner::output::PlanOutput, fresh: &ExecutionPlan) -> bool {
    saved.changes.len() == fresh.changes.len()
        && saved
            .changes
            .iter()
            .zip(&fresh.changes)
            .all(|(a, b)| a.id == b.id && a.settings == b.settings)
}

/// A targeted plan is partial; say so, the way Terraform does, because the rest of the estate
/// is not being checked for what it needs.
fn targeted_warning(addresses: &[String], machines: &HashSet<String>) -> Diagnostic {
    Diagnostic::warning(
        codes::PLAN_TARGETED,
        format!(
            "this plan is limited to {} ({} machine{}) and what they depend on",
            addresses
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", "),
            machines.len(),
            if machines.len() == 1 { "" } else { "s" }
        ),
    )
    .with_help("use `--target` to recover from a problem, not routinely: the rest of the estate is not planned")
}
