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

pub use planner::{CycleError, TargetError};

/// Why no execution plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Cycle(#[from] CycleError),
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
) -> Result<Planned, PlanError> {
    let selected = planner::resolve_targets(plan, validation, targets)?;
    let mut diagnostics = validation.diagnostics.clone();
    diagnostics.extend(preflight::preflight(
        plan,
        &validation.assignment,
        facts,
        now,
    ));
    let released = state.released(plan.machines.names());
    // A step the state records as passed (in the same form) is not planned again.
    let done = |id: &str, digest: &str| state.steps.get(id).is_some_and(|r| r.passed(digest));
    let mut execution = planner::build_with_steps_done(plan, validation, facts, &released, &done)?;
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

/// Every change towards the goal, without preflight (for `graph`: the order, whatever the
/// facts would refuse). Machines the state knows but the plan no longer names are released,
/// as in [`plan`].
pub fn graph(
    plan: &Plan,
    validation: &Validation,
    facts: &Facts,
    state: &State,
) -> Result<ExecutionPlan, CycleError> {
    let released = state.released(plan.machines.names());
    planner::build(plan, validation, facts, &released)
}

/// `plan --refresh-only`: no change is planned and no preflight check runs (nothing will
/// run); the state is compared with the sites. `targets` are checked, not used.
pub fn refresh_only(
    plan: &Plan,
    validation: &Validation,
    facts: &Facts,
    state: &State,
    targets: &[String],
) -> Result<Planned, PlanError> {
    planner::resolve_targets(plan, validation, targets)?;
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

/// The expected schedule of `execution` (estimates from the provider) and what it says about
/// the maintenance window (`preflight::maintenance-window`: a boot group that would overrun
/// it is an error, a tight fit a warning).
pub async fn schedule(
    plan: &Plan,
    execution: &ExecutionPlan,
    provider: &dyn crate::provider::Provider,
    now: Timestamp,
    parallelism: usize,
) -> Result<(crate::schedule::Schedule, Vec<Diagnostic>), crate::provider::ProviderError> {
    let request = crate::provider::EstimateRequest {
        link_gbps: plan.site.value.link_gbps.as_ref().map(|l| l.value),
        operations: execution
            .changes
            .iter()
            .filter_map(|change| {
                Some(crate::provider::EstimateOperation {
                    machine: change.machine().to_string(),
                    kind: change.action.operation()?,
                    transfer_gib: change.risk.max_transfer_gib,
                })
            })
            .collect(),
    };
    let estimates = provider.estimate(&request).await?;
    // One duration per change; a release takes no time (no provider call).
    let mut answers = estimates.into_iter();
    let durations: Vec<Option<std::time::Duration>> = execution
        .changes
        .iter()
        .map(|change| match change.action.operation() {
            Some(_) => answers.next().flatten(),
            None => Some(std::time::Duration::ZERO),
        })
        .collect();
    let parallelism = provider
        .max_concurrency()
        .map_or(parallelism, |limit| parallelism.min(limit));
    let schedule = crate::schedule::build(plan, execution, &durations, now.0, parallelism);
    let diagnostics = crate::schedule::fit_diagnostics(plan, &schedule, now.0);
    Ok((schedule, diagnostics))
}
