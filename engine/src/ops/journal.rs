//! The state as the executor's write-ahead journal, and the per-operation preflight re-check.
//!
//! Each change is made to the state in memory at once (in place: a lookup by operation id, no
//! copy of the document), and its caller then waits until a record holding it is on disk.
//! Writes are committed in groups: one append (with its flush) runs at a time, and the
//! changes made meanwhile share the next one. A record holds only the machines that changed
//! since the last one ([`StateDelta`]), so a write costs in proportion to the group, not to
//! the estate; [`StateJournal::finish`] folds the records into the state file at the end.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use crate::apply::{Gate, Journal, JournalError};
use crate::assign::Assignment;
use crate::diagnostic::Diagnostic;
use crate::model::{Plan, Timestamp};
use crate::planner::{Action, PlannedChange, PlannedStep};
use crate::preflight;
use crate::provider::{OperationId, OperationOutcome, Provider, ProviderError, Stage};
use crate::state::{PendingOperation, State, StateBackend, StateError};

/// The state, the backend it is recorded through, and what the executor needs to record a
/// change: each machine's stage when the apply started (for machines new to the state).
pub struct StateJournal {
    backend: Arc<dyn StateBackend + Send + Sync>,
    current: Mutex<Current>,
    /// Held by the one append in progress; what is on disk.
    written: tokio::sync::Mutex<Written>,
    stages: HashMap<String, Stage>,
    recheck: Option<Recheck>,
}

impl std::fmt::Debug for StateJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateJournal")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The state in memory, how many changes it has had, and the machines changed since the last
/// record.
struct Current {
    state: State,
    version: u64,
    dirty: BTreeSet<String>,
    /// Steps changed since the last record.
    dirty_steps: BTreeSet<String>,
}

/// What a change to the state touches, for the next record.
enum Touches<'a> {
    Machine(&'a str),
    Step(&'a str),
}

/// The version and serial of the state as the records on disk have it.
struct Written {
    version: u64,
    serial: u64,
    /// Whether any record was appended (so that `finish` knows there is something to fold).
    appended: bool,
}

impl StateJournal {
    /// A journal over `state`, which was just read from `backend` (and is on disk as it is).
    pub fn new(
        backend: Arc<dyn StateBackend + Send + Sync>,
        state: State,
        stages: HashMap<String, Stage>,
        recheck: Option<Recheck>,
    ) -> Self {
        let serial = state.serial;
        Self {
            backend,
            current: Mutex::new(Current {
                state,
                version: 0,
                dirty: BTreeSet::new(),
                dirty_steps: BTreeSet::new(),
            }),
            written: tokio::sync::Mutex::new(Written {
                version: 0,
                serial,
                appended: false,
            }),
            stages,
            recheck,
        }
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Current> {
        // A poisoned lock means a panic elsewhere mid-update; every change either returns an
        // error before touching the state or completes, so the state is consistent.
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes machine `machine` of the state, and returns once a record that contains the
    /// change is on disk.
    pub async fn update(
        &self,
        machine: &str,
        change: impl FnOnce(&mut State) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        self.record(Touches::Machine(machine), change).await
    }

    /// Changes step `id` of the state, and returns once a record that contains the change
    /// is on disk.
    pub async fn update_step(
        &self,
        id: &str,
        change: impl FnOnce(&mut State) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        self.record(Touches::Step(id), change).await
    }

    async fn record(
        &self,
        touches: Touches<'_>,
        change: impl FnOnce(&mut State) -> Result<bool, StateError>,
    ) -> Result<(), StateError> {
        let mine = {
            let mut current = self.current();
            if !change(&mut current.state)? {
                return Ok(());
            }
            current.version += 1;
            match touches {
                Touches::Machine(machine) => current.dirty.insert(machine.to_string()),
                Touches::Step(id) => current.dirty_steps.insert(id.to_string()),
            };
            current.version
        };
        let mut written = self.written.lock().await;
        if written.version >= mine {
            // Another task's record, made while this one waited, already holds the change.
            return Ok(());
        }
        let (delta, version, dirty, dirty_steps) = {
            let mut current = self.current();
            let dirty = std::mem::take(&mut current.dirty);
            let dirty_steps = std::mem::take(&mut current.dirty_steps);
            (
                current.state.delta_with_steps(
                    written.serial,
                    dirty.iter().map(String::as_str),
                    dirty_steps.iter().map(String::as_str),
                ),
                current.version,
                dirty,
                dirty_steps,
            )
        };
        let backend = self.backend.clone();
        let to = delta.to;
        let appended = tokio::task::spawn_blocking(move || backend.append(&delta))
            .await
            .unwrap_or_else(|e| {
                Err(StateError::Interrupted {
                    reason: e.to_string(),
                })
            });
        if let Err(error) = appended {
            // Not on disk: the next record must carry these machines and steps again.
            let mut current = self.current();
            current.dirty.extend(dirty);
            current.dirty_steps.extend(dirty_steps);
            return Err(error);
        }
        written.version = version;
        written.serial = to;
        written.appended = true;
        Ok(())
    }

    /// Folds the records into the state file (one whole, atomic write) and returns the state.
    pub async fn finish(&self) -> Result<State, StateError> {
        let written = self.written.lock().await;
        let state = self.current().state.clone();
        if written.appended {
            let backend = self.backend.clone();
            let folded = state.clone();
            tokio::task::spawn_blocking(move || backend.compact(&folded))
                .await
                .unwrap_or_else(|e| {
                    Err(StateError::Interrupted {
                        reason: e.to_string(),
                    })
                })?;
        }
        Ok(state)
    }
}

#[async_trait::async_trait]
impl Journal for StateJournal {
    async fn gate(&self, step: &PlannedStep) -> Result<Gate, JournalError> {
        let approved = self
            .current()
            .state
            .gate_approval(&step.id, &step.digest)
            .map(|(by, at)| Gate::Approved {
                by: by.to_string(),
                at: at.to_string(),
            });
        if let Some(approved) = approved {
            return Ok(approved);
        }
        let message = match &step.action {
            crate::planner::StepAction::Manual { message } => message.clone(),
            other => other.describe(),
        };
        self.update_step(&step.id, |state| {
            Ok(state.request_gate(
                &step.id,
                &step.digest,
                &step.boot_group,
                &message,
                Timestamp(jiff::Timestamp::now()),
            ))
        })
        .await
        .map_err(|e| JournalError::new(e.to_string()))?;
        Ok(Gate::Waiting)
    }

    async fn step_passed(&self, step: &PlannedStep) -> Result<(), JournalError> {
        self.update_step(&step.id, |state| {
            Ok(state.step_passed(&step.id, &step.digest, Timestamp(jiff::Timestamp::now())))
        })
        .await
        .map_err(|e| JournalError::new(e.to_string()))
    }

    async fn check(&self, change: &PlannedChange) -> Result<(), ProviderError> {
        match &self.recheck {
            Some(recheck) => recheck.check(change).await,
            None => Ok(()),
        }
    }

    async fn before(
        &self,
        change: &PlannedChange,
        operation: &OperationId,
    ) -> Result<(), JournalError> {
        let Some(kind) = change.action.operation() else {
            return Ok(());
        };
        let machine = change.machine();
        let current = self
            .stages
            .get(machine)
            .copied()
            .unwrap_or(Stage::FailedOver);
        self.update(machine, |state| {
            state.record_pending(
                current,
                PendingOperation {
                    id: operation.clone(),
                    kind,
                    machine: machine.to_string(),
                    started_at: Timestamp(jiff::Timestamp::now()),
                    settings: change.settings.clone(),
                },
            )
        })
        .await
        .map_err(|e| JournalError::new(e.to_string()))
    }

    async fn after(
        &self,
        change: &PlannedChange,
        operation: &OperationId,
        outcome: &Result<OperationOutcome, ProviderError>,
    ) -> Result<(), JournalError> {
        let machine = change.machine();
        self.update(machine, |state| {
            if change.action == Action::Release {
                return Ok(state.release(machine));
            }
            match outcome {
                Ok(done) => state.complete(operation, done.stage, Default::default()),
                Err(_) => state.abandon(operation),
            }
        })
        .await
        .map_err(|e| JournalError::new(e.to_string()))
    }
}

/// What re-running one machine's preflight checks needs: one targeted refresh (the machine,
/// its master target, host and datastores, the site) and the checks of that machine only.
#[derive(Debug)]
pub struct Recheck {
    plan: Arc<Plan>,
    assignment: Arc<Assignment>,
    provider: Arc<dyn Provider>,
    index: HashMap<String, usize>,
}

impl Recheck {
    pub fn new(plan: Arc<Plan>, assignment: Arc<Assignment>, provider: Arc<dyn Provider>) -> Self {
        let index = plan
            .machines
            .names()
            .enumerate()
            .map(|(m, name)| (name.to_string(), m))
            .collect();
        Self {
            plan,
            assignment,
            provider,
            index,
        }
    }

    pub async fn check(&self, change: &PlannedChange) -> Result<(), ProviderError> {
        let Some(&m) = self.index.get(change.machine()) else {
            return Ok(());
        };
        let request = preflight::refresh_request_for(&self.plan, &self.assignment, m);
        let facts = self.provider.refresh(&request).await?;
        let now = Timestamp(jiff::Timestamp::now());
        let diagnostics =
            preflight::preflight_machine(&self.plan, &self.assignment, &facts, now, m);
        match diagnostics.into_iter().find(Diagnostic::is_error) {
            None => Ok(()),
            Some(error) => Err(ProviderError::permanent(
                Some(error.code.to_string()),
                format!(
                    "preflight, right before `{}`: {}{}",
                    change.id,
                    error.message,
                    error.help.map(|h| format!(" ({h})")).unwrap_or_default()
                ),
            )),
        }
    }
}
