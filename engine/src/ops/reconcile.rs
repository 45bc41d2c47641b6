//! Reconciliation: what a previous run left pending is resolved before anything new is
//! planned, by asking the provider about each pending operation's id.
//!
//! - finished → its outcome is recorded;
//! - still running → awaited (the provider's `run` is idempotent by id), then recorded;
//! - failed → the record is dropped; the change is planned again;
//! - unknown to the provider (it never reached it) → the record is dropped and planned again.

use crate::provider::{
    OperationId, OperationRequest, OperationStatus, Provider, ProviderError, Stage,
};
use crate::state::{PendingOperation, State, StateBackend, StateError};

/// What reconciliation did with one pending operation, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// The operation is still running from a previous run; it is being awaited.
    Waiting { operation: PendingOperation },
    /// It finished while lifeboat was away; the machine is recorded at `stage`.
    Recorded {
        operation: PendingOperation,
        stage: Stage,
    },
    /// It failed in the previous run; the record is dropped and the change planned again.
    Failed {
        operation: PendingOperation,
        error: ProviderError,
    },
    /// The provider never received it; the record is dropped and the change planned again.
    NeverStarted { operation: PendingOperation },
}

/// Why reconciliation stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("cannot read the status of operation `{operation}`: {}", .error.message)]
    Status {
        operation: OperationId,
        error: ProviderError,
    },
    #[error(transparent)]
    State(#[from] StateError),
}

/// Resolves every pending operation of `state`, writing the state after each, and returns how
/// many there were. `on_event` hears about each as it is resolved.
pub async fn reconcile(
    state: &mut State,
    backend: &dyn StateBackend,
    provider: &dyn Provider,
    on_event: &mut (dyn FnMut(Reconciled) + Send),
) -> Result<usize, ReconcileError> {
    let pending: Vec<PendingOperation> = state
        .machines
        .values()
        .filter_map(|m| m.pending.clone())
        .collect();
    for operation in &pending {
        let status =
            provider
                .status(&operation.id)
                .await
                .map_err(|error| ReconcileError::Status {
                    operation: operation.id.clone(),
                    error,
                })?;
        let outcome = match status {
            OperationStatus::Succeeded => Some(Ok(operation.kind.to_stage())),
            OperationStatus::Running => {
                on_event(Reconciled::Waiting {
                    operation: operation.clone(),
                });
                let request = OperationRequest {
                    id: operation.id.clone(),
                    machine: operation.machine.clone(),
                    kind: operation.kind,
                    reprotect: operation.settings.clone(),
                };
                Some(provider.run(&request).await.map(|o| o.stage))
            }
            OperationStatus::Unknown => None,
            OperationStatus::Failed(error) => Some(Err(error)),
        };
        match outcome {
            Some(Ok(stage)) => {
                state.complete(&operation.id, stage, Default::default())?;
                on_event(Reconciled::Recorded {
                    operation: operation.clone(),
                    stage,
                });
            }
            Some(Err(error)) => {
                state.abandon(&operation.id)?;
                on_event(Reconciled::Failed {
                    operation: operation.clone(),
                    error,
                });
            }
            None => {
                state.abandon(&operation.id)?;
                on_event(Reconciled::NeverStarted {
                    operation: operation.clone(),
                });
            }
        }
        backend.write(state)?;
    }
    Ok(pending.len())
}
