//! `engine::ops` at the engine level, on tokio's paused clock: reconciliation of what a
//! previous run left pending, and the state journal's group commit of deltas, against a fake
//! provider and an in-memory state backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeboat_engine::model::Recovery;
use lifeboat_engine::ops::{self, ReconcileError, Reconciled, StateJournal};
use lifeboat_engine::provider::{
    Facts, OperationId, OperationKind, OperationOutcome, OperationRequest, OperationStatus,
    Provider, ProviderError, ProviderInfo, RefreshRequest, ReprotectSettings, Stage,
};
use lifeboat_engine::state::{
    LockGuard, LockInfo, PendingOperation, State, StateBackend, StateDelta, StateError,
};

/// A state kept in memory: the document as last written whole, the records appended since,
/// and an optional failure of the next appends.
#[derive(Debug, Default)]
struct Memory {
    written: Mutex<Option<State>>,
    records: Mutex<Vec<StateDelta>>,
    writes: Mutex<usize>,
    fail_appends: Mutex<usize>,
}

impl StateBackend for Memory {
    fn location(&self) -> String {
        "memory".to_string()
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let Some(mut state) = self.written.lock().expect("lock").clone() else {
            return Ok(None);
        };
        for record in self.records.lock().expect("lock").iter() {
            assert_eq!(record.from, state.serial, "records continue each other");
            state.apply_delta(record);
        }
        Ok(Some(state))
    }

    fn write(&self, state: &State) -> Result<(), StateError> {
        *self.written.lock().expect("lock") = Some(state.clone());
        self.records.lock().expect("lock").clear();
        *self.writes.lock().expect("lock") += 1;
        Ok(())
    }

    fn append(&self, delta: &StateDelta) -> Result<(), StateError> {
        let mut failing = self.fail_appends.lock().expect("lock");
        if *failing > 0 {
            *failing -= 1;
            return Err(StateError::Interrupted {
                reason: "the disk is full".to_string(),
            });
        }
        self.records.lock().expect("lock").push(delta.clone());
        Ok(())
    }

    fn compact(&self, state: &State) -> Result<(), StateError> {
        if !self.records.lock().expect("lock").is_empty() {
            self.write(state)?;
        }
        Ok(())
    }

    fn lock(&self, _: LockInfo, _: Duration) -> Result<LockGuard, StateError> {
        Err(StateError::NotLocked {
            path: "memory".into(),
        })
    }

    fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(None)
    }

    fn unlock(&self, _: &str) -> Result<LockInfo, StateError> {
        Err(StateError::NotLocked {
            path: "memory".into(),
        })
    }
}

/// A provider that knows the status of some operation ids, and takes `running_for` (virtual
/// time) to finish the ones still running.
#[derive(Debug, Default)]
struct Site {
    statuses: HashMap<OperationId, OperationStatus>,
    running_for: Duration,
    runs: Mutex<Vec<OperationId>>,
}

#[async_trait::async_trait]
impl Provider for Site {
    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "fake",
            identity: "ops tests".to_string(),
        }
    }

    async fn refresh(&self, _: &RefreshRequest) -> Result<Facts, ProviderError> {
        Ok(Facts::default())
    }

    async fn run(&self, request: &OperationRequest) -> Result<OperationOutcome, ProviderError> {
        self.runs.lock().expect("lock").push(request.id.clone());
        tokio::time::sleep(self.running_for).await;
        Ok(OperationOutcome {
            id: request.id.clone(),
            stage: request.kind.to_stage(),
        })
    }

    async fn status(&self, id: &OperationId) -> Result<OperationStatus, ProviderError> {
        self.statuses.get(id).cloned().ok_or_else(|| {
            ProviderError::transient(Some("503".to_string()), "the service is unavailable")
        })
    }
}

fn settings() -> ReprotectSettings {
    ReprotectSettings {
        master_target: "mt-01".to_string(),
        process_server: "ps-01".to_string(),
        datastore: "ds-01".to_string(),
        retention_drive: "/r".to_string(),
        recovery: Recovery::Original,
        failback_policy: "auto".to_string(),
        home: None,
    }
}

/// A state with a reprotect pending on each of `machines`, operation id `op-NAME`.
fn pending_on(machines: &[&str]) -> State {
    let mut state = State::new();
    for machine in machines {
        state
            .record_pending(
                Stage::FailedOver,
                PendingOperation {
                    id: OperationId(format!("op-{machine}")),
                    kind: OperationKind::Reprotect,
                    machine: machine.to_string(),
                    started_at: "2026-12-05T22:00:00Z".parse().expect("a timestamp"),
                    settings: Some(settings()),
                },
            )
            .expect("recorded");
    }
    state
}

#[tokio::test(start_paused = true)]
async fn reconciliation_records_awaits_drops_and_replans_by_operation_id() {
    let mut state = pending_on(&["done", "running", "failed", "lost"]);
    let backend = Memory::default();
    let site = Site {
        statuses: HashMap::from([
            (OperationId::from("op-done"), OperationStatus::Succeeded),
            (OperationId::from("op-running"), OperationStatus::Running),
            (
                OperationId::from("op-failed"),
                OperationStatus::Failed(ProviderError::permanent(
                    Some("78093".to_string()),
                    "the VM is not running",
                )),
            ),
            (OperationId::from("op-lost"), OperationStatus::Unknown),
        ]),
        running_for: Duration::from_secs(600),
        ..Site::default()
    };
    let mut events = Vec::new();
    let started = tokio::time::Instant::now();
    let count = ops::reconcile(&mut state, &backend, &site, &mut |e| events.push(e))
        .await
        .expect("reconciles");

    assert_eq!(count, 4);
    // The running one was awaited (on the provider's clock), by its own id: never sent anew.
    assert_eq!(started.elapsed(), Duration::from_secs(600));
    assert_eq!(
        *site.runs.lock().expect("lock"),
        [OperationId::from("op-running")]
    );
    let kinds: BTreeMap<String, &'static str> = events
        .iter()
        .map(|e| match e {
            Reconciled::Waiting { operation } => (format!("{}-wait", operation.machine), "waiting"),
            Reconciled::Recorded { operation, .. } => (operation.machine.clone(), "recorded"),
            Reconciled::Failed { operation, .. } => (operation.machine.clone(), "failed"),
            Reconciled::NeverStarted { operation } => (operation.machine.clone(), "never started"),
        })
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("done".to_string(), "recorded"),
            ("failed".to_string(), "failed"),
            ("lost".to_string(), "never started"),
            ("running".to_string(), "recorded"),
            ("running-wait".to_string(), "waiting"),
        ])
    );
    // Finished ones reached their stage with the settings they were sent; the others are
    // back where they were, nothing pending, to be planned again.
    assert!(state.machines.values().all(|m| m.pending.is_none()));
    assert_eq!(state.machines["done"].stage, Stage::Reprotected);
    assert_eq!(state.machines["done"].settings, Some(settings()));
    assert_eq!(state.machines["running"].stage, Stage::Reprotected);
    assert_eq!(state.machines["failed"].stage, Stage::FailedOver);
    assert_eq!(state.machines["lost"].stage, Stage::FailedOver);
    // Each resolution was written at once: a crash during reconciliation loses none.
    assert_eq!(*backend.writes.lock().expect("lock"), 4);
    assert_eq!(backend.read().expect("reads"), Some(state));
}

#[tokio::test(start_paused = true)]
async fn a_status_the_provider_cannot_give_stops_reconciliation_with_the_record_kept() {
    let mut state = pending_on(&["a"]);
    let backend = Memory::default();
    let error = ops::reconcile(&mut state, &backend, &Site::default(), &mut |_| {})
        .await
        .expect_err("no status");
    assert!(matches!(error, ReconcileError::Status { .. }), "{error:?}");
    assert!(error.to_string().contains("op-a"), "{error}");
    assert!(
        state.machines["a"].pending.is_some(),
        "kept for the next run"
    );
    assert_eq!(*backend.writes.lock().expect("lock"), 0);
}

#[tokio::test(start_paused = true)]
async fn the_journal_commits_concurrent_changes_in_groups_of_deltas() {
    let backend = Arc::new(Memory::default());
    let state = State::new();
    backend.write(&state).expect("writes");
    let journal = Arc::new(StateJournal::new(
        backend.clone(),
        state,
        HashMap::new(),
        None,
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let journal = journal.clone();
        tasks.spawn(async move {
            let machine = format!("m{i:02}");
            journal
                .update(&machine, |state| {
                    state.record_pending(
                        Stage::FailedOver,
                        PendingOperation {
                            id: OperationId(format!("op-{i}")),
                            kind: OperationKind::Failback,
                            machine: machine.clone(),
                            started_at: "2026-12-05T22:00:00Z".parse().expect("a timestamp"),
                            settings: None,
                        },
                    )
                })
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("no panic").expect("recorded");
    }
    let records = backend.records.lock().expect("lock").clone();
    assert!(
        (1..=50).contains(&records.len()),
        "{} records",
        records.len()
    );
    // Deltas: every record names only the machines it changed, 50 in all.
    assert_eq!(records.iter().map(|r| r.machines.len()).sum::<usize>(), 50);
    let read = backend.read().expect("reads").expect("a state");
    assert_eq!(read.serial, 50);
    assert_eq!(read.machines.len(), 50);

    // An append that fails fails its caller, and the next record carries the change again.
    *backend.fail_appends.lock().expect("lock") = 1;
    let change = |id: &'static str| move |state: &mut State| state.abandon(&OperationId::from(id));
    let error = journal
        .update("m00", change("op-0"))
        .await
        .expect_err("fails");
    assert!(error.to_string().contains("disk is full"), "{error}");
    journal
        .update("m01", change("op-1"))
        .await
        .expect("recorded");
    let read = backend.read().expect("reads").expect("a state");
    assert!(
        read.machines["m00"].pending.is_none(),
        "carried by the next record"
    );
    assert!(read.machines["m01"].pending.is_none());

    // Folding writes the whole state once and empties the journal.
    let finished = journal.finish().await.expect("folds");
    assert!(backend.records.lock().expect("lock").is_empty());
    assert_eq!(backend.read().expect("reads"), Some(finished));
}
