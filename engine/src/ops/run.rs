//! `apply`'s execution as a library function: the state journal and the per-operation
//! preflight re-check around the executor, then the journals folded (the state's, and the
//! provider's estate through [`Provider::close`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::apply::{self, ApplyOptions, ApplyReport, Event};
use crate::assign::Assignment;
use crate::model::Plan;
use crate::planner::ExecutionPlan;
use crate::provider::{Facts, Provider, ProviderError};
use crate::state::{State, StateBackend, StateError};

use super::journal::{Recheck, StateJournal};

/// What an apply runs with.
#[derive(Debug)]
pub struct ApplyInput {
    pub plan: Arc<Plan>,
    pub assignment: Arc<Assignment>,
    pub backend: Arc<dyn StateBackend + Send + Sync>,
    /// The state as read (and reconciled); the journal continues it.
    pub state: State,
    pub provider: Arc<dyn Provider>,
    pub options: ApplyOptions,
    /// The plan's directory: where `command` steps run and what their programs are
    /// relative to.
    pub plan_dir: std::path::PathBuf,
}

/// Why an apply could not be recorded to its end (the operations' own failures are in the
/// report, not here).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The state's journal could not be folded into the state file.
    #[error(transparent)]
    State(#[from] StateError),
    /// The provider could not leave its estate tidy.
    #[error("closing `{identity}` failed: {}", .error.message)]
    Close {
        identity: String,
        error: ProviderError,
    },
}

/// Carries `execution` out (see [`apply::execute`]), recording every operation in the state
/// as it goes, and returns the report and the state at the end.
pub async fn apply(
    input: ApplyInput,
    execution: &ExecutionPlan,
    facts: &Facts,
    on_event: Arc<dyn Fn(Event) + Send + Sync>,
    interrupted: &(dyn Fn() -> bool + Send + Sync),
) -> Result<(ApplyReport, State), ApplyError> {
    let recheck = Recheck::new(input.plan, input.assignment, input.provider.clone());
    // Machines new to the state start where the facts say they are.
    let stages: HashMap<_, _> = facts
        .machines
        .iter()
        .map(|(name, fact)| (name.clone(), fact.stage))
        .collect();
    let journal = Arc::new(StateJournal::new(
        input.backend,
        input.state,
        stages,
        Some(recheck),
    ));
    let mut options = input.options;
    if options.steps.is_none() {
        options.steps = Some(Arc::new(crate::steps::Runner {
            plan_dir: input.plan_dir,
            // This apply's id, for the commands' `LIFEBOAT_RUN_ID`.
            run_id: uuid::Uuid::new_v4().to_string(),
        }));
    }
    let report = apply::execute(
        execution,
        input.provider.clone(),
        journal.clone(),
        &options,
        on_event,
        interrupted,
    )
    .await;
    let state = journal.finish().await?;
    input
        .provider
        .close()
        .await
        .map_err(|error| ApplyError::Close {
            identity: input.provider.describe().identity,
            error,
        })?;
    Ok((report, state))
}
