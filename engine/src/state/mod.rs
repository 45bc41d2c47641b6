//! State (DESIGN.md §4): what lifeboat knows it has done to each machine.
//!
//! The state is a small JSON document: a `lineage` set once when the state is created (so a
//! saved plan can tell "the same state, later" from "another state"), a `serial` bumped only
//! when the content changes, and per machine its stage, the reprotect settings it was given,
//! the provider's ids, and the operation in flight, if any.
//!
//! Crash safety rests on the write-ahead record: apply calls [`State::record_pending`] and
//! writes the state *before* it sends an operation, and [`State::complete`] after the
//! provider reports the end. A crash between the two leaves a `pending` entry whose id the
//! provider knows, so the next apply reconciles it instead of sending it a second time.
//!
//! Backends ([`StateBackend`]) keep the document somewhere and guard it with a lock. The
//! local file backend ([`local::LocalBackend`]) keeps it in a file; the remote ones
//! ([`remote::RemoteBackend`] over a [`remote::RemoteStore`]) in PostgreSQL or Azure Blob,
//! with leases, fencing and compare-and-swap writes.

pub mod drift;
pub mod local;
mod lock;
pub mod remote;

use crate::saved::DocumentError;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use local::LocalBackend;
pub use lock::{LockGuard, LockInfo, ci_run};
pub use remote::RemoteBackend;

use crate::model::Timestamp;
use crate::provider::{OperationId, OperationKind, ReprotectSettings, Stage};

/// The only state format version this build reads and writes.
pub const FORMAT_VERSION: &str = "1";

/// The state document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lifeboat state", extend("$id" = "https://lifeboat.dev/schemas/state.schema.json"))]
pub struct State {
    /// State format version; this build reads `1`.
    pub format_version: String,
    /// A UUID set once, when the state is created, and never changed.
    pub lineage: String,
    /// Bumped by one each time the content changes; unchanged when nothing changed.
    pub serial: u64,
    /// Every machine lifeboat has acted on, by name.
    #[serde(default)]
    pub machines: BTreeMap<String, MachineState>,
    /// Boot-group steps that passed, and manual gates an apply stopped at, by step id
    /// (`boot_group.NAME after[1]`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, StepRecord>,
    /// Which machine holds each pending operation, so that completing one is a lookup, not a
    /// search of every machine. Derived from `machines`; never written.
    #[serde(skip)]
    #[schemars(skip)]
    pending_index: PendingIndex,
}

/// Operation id → machine name for the pending operations. A hint, checked on every use: code
/// that edits `machines` directly leaves it stale, and then the search falls back to a scan.
#[derive(Debug, Clone, Default)]
struct PendingIndex(HashMap<OperationId, String>);

/// Derived data: two states are equal when their documents are.
impl PartialEq for PendingIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for PendingIndex {}

/// What lifeboat knows about one machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineState {
    /// The stage the last finished operation reached.
    pub stage: Stage,
    /// The settings of the last reprotect (what was sent, not what the plan says today).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ReprotectSettings>,
    /// Identifiers the provider gave the machine's objects (replicated item, VM, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_ids: BTreeMap<String, String>,
    /// The operation sent (or about to be sent) and not yet known to have finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingOperation>,
}

impl MachineState {
    pub fn at(stage: Stage) -> Self {
        Self {
            stage,
            settings: None,
            provider_ids: BTreeMap::new(),
            pending: None,
        }
    }
}

/// The write-ahead record of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingOperation {
    /// The id the provider is given; sending it again never starts a second operation.
    pub id: OperationId,
    pub kind: OperationKind,
    pub machine: String,
    pub started_at: Timestamp,
    /// What a reprotect sends; recorded so that completion stores what was actually applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ReprotectSettings>,
}

/// What the state knows about one boot-group step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepRecord {
    /// SHA-256 of the step as it was written: an edited step is a new step and runs again.
    pub digest: String,
    /// When it passed; absent while a manual gate waits for approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed_at: Option<Timestamp>,
    /// A manual gate: what it asks, when an apply stopped at it, who approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateRecord>,
}

/// A manual gate in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateRecord {
    pub boot_group: String,
    pub message: String,
    /// When an apply stopped at the gate.
    pub requested_at: Timestamp,
    /// `user@host` of whoever ran `lifeboat approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<Timestamp>,
}

impl StepRecord {
    /// Whether the step passed in the form whose digest is `digest`.
    pub fn passed(&self, digest: &str) -> bool {
        self.digest == digest && self.passed_at.is_some()
    }
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// A new, empty state with a fresh lineage and serial 0.
    pub fn new() -> Self {
        Self {
            format_version: FORMAT_VERSION.to_string(),
            lineage: uuid::Uuid::new_v4().to_string(),
            serial: 0,
            machines: BTreeMap::new(),
            steps: BTreeMap::new(),
            pending_index: PendingIndex::default(),
        }
    }

    /// Parses a state document. The error is a reason, without the file name (the backend
    /// adds where it came from). Saved plans and other lifeboat files are recognised and
    /// named, because "unknown field `kind`" would not tell anyone what went wrong.
    pub fn from_json(text: &str) -> Result<State, DocumentError> {
        let value = crate::saved::json_object(text)?;
        let object = value.as_object().expect("json_object returns an object");
        if object.get("kind").and_then(|k| k.as_str()) == Some(crate::saved::KIND) {
            return Err(DocumentError::SavedPlanNotState);
        }
        match object.get("format_version") {
            None => {
                return Err(DocumentError::NoFormatVersion(
                    ": not a lifeboat state file",
                ));
            }
            Some(serde_json::Value::String(v)) if v == FORMAT_VERSION => {}
            Some(other) => {
                return Err(DocumentError::FormatVersion {
                    found: other.to_string(),
                    supported: FORMAT_VERSION,
                });
            }
        }
        let mut state: State = serde_json::from_value(value).map_err(|e| DocumentError::Shape {
            what: "a lifeboat state file",
            detail: e.to_string(),
        })?;
        if uuid::Uuid::parse_str(&state.lineage).is_err() {
            return Err(DocumentError::Lineage(state.lineage));
        }
        for (name, machine) in &state.machines {
            if let Some(pending) = &machine.pending
                && pending.machine != *name
            {
                return Err(DocumentError::ForeignPending {
                    machine: name.clone(),
                    other: pending.machine.clone(),
                });
            }
        }
        state.reindex();
        Ok(state)
    }

    /// Rebuilds the pending-operation index from `machines`.
    fn reindex(&mut self) {
        self.pending_index.0 = self
            .machines
            .iter()
            .filter_map(|(name, m)| Some((m.pending.as_ref()?.id.clone(), name.clone())))
            .collect();
    }

    /// The name of the machine whose pending operation is `id`: through the index, or, when
    /// the index is stale (someone edited `machines` directly), by a scan that repairs it.
    fn holder_of(&mut self, id: &OperationId) -> Option<String> {
        let holds = |state: &State, name: &str| {
            state
                .machines
                .get(name)
                .and_then(|m| m.pending.as_ref())
                .is_some_and(|p| &p.id == id)
        };
        if let Some(name) = self.pending_index.0.get(id)
            && holds(self, name)
        {
            return Some(name.clone());
        }
        self.reindex();
        self.pending_index
            .0
            .get(id)
            .filter(|name| holds(self, name))
            .cloned()
    }

    /// Applies the changes of a journal record: each named machine replaced, or removed when
    /// `None`. The serial becomes the record's.
    pub fn apply_delta(&mut self, delta: &StateDelta) {
        for (name, machine) in &delta.machines {
            match machine {
                Some(machine) => {
                    self.machines.insert(name.clone(), machine.clone());
                }
                None => {
                    self.machines.remove(name);
                }
            }
        }
        for (id, step) in &delta.steps {
            match step {
                Some(step) => {
                    self.steps.insert(id.clone(), step.clone());
                }
                None => {
                    self.steps.remove(id);
                }
            }
        }
        self.serial = delta.to;
        self.reindex();
    }

    /// The record that takes a state at serial `from` to this one, given the machines changed
    /// since then.
    pub fn delta<'a>(&self, from: u64, changed: impl IntoIterator<Item = &'a str>) -> StateDelta {
        self.delta_with_steps(from, changed, std::iter::empty())
    }

    /// [`Self::delta`], with the steps changed since then too.
    pub fn delta_with_steps<'a>(
        &self,
        from: u64,
        changed: impl IntoIterator<Item = &'a str>,
        steps: impl IntoIterator<Item = &'a str>,
    ) -> StateDelta {
        StateDelta {
            lineage: self.lineage.clone(),
            from,
            to: self.serial,
            machines: changed
                .into_iter()
                .map(|name| (name.to_string(), self.machines.get(name).cloned()))
                .collect(),
            steps: steps
                .into_iter()
                .map(|id| (id.to_string(), self.steps.get(id).cloned()))
                .collect(),
        }
    }

    /// Records that step `id` (in the form `digest`) passed. Returns whether that changed
    /// anything.
    pub fn step_passed(&mut self, id: &str, digest: &str, at: Timestamp) -> bool {
        let record = self
            .steps
            .entry(id.to_string())
            .or_insert_with(|| StepRecord {
                digest: digest.to_string(),
                passed_at: None,
                gate: None,
            });
        if record.passed(digest) {
            return false;
        }
        record.digest = digest.to_string();
        record.passed_at = Some(at);
        self.serial += 1;
        true
    }

    /// Records that an apply stopped at the manual gate `id`, unless it already waits there
    /// in this form. An earlier gate of another form (the step was edited) starts over.
    pub fn request_gate(
        &mut self,
        id: &str,
        digest: &str,
        boot_group: &str,
        message: &str,
        at: Timestamp,
    ) -> bool {
        if let Some(record) = self.steps.get(id)
            && record.digest == digest
            && record.gate.is_some()
        {
            return false;
        }
        self.steps.insert(
            id.to_string(),
            StepRecord {
                digest: digest.to_string(),
                passed_at: None,
                gate: Some(GateRecord {
                    boot_group: boot_group.to_string(),
                    message: message.to_string(),
                    requested_at: at,
                    approved_by: None,
                    approved_at: None,
                }),
            },
        );
        self.serial += 1;
        true
    }

    /// The approval of the gate `id` in the form `digest`, if any: (by, at).
    pub fn gate_approval(&self, id: &str, digest: &str) -> Option<(&str, Timestamp)> {
        let record = self.steps.get(id).filter(|r| r.digest == digest)?;
        let gate = record.gate.as_ref()?;
        Some((gate.approved_by.as_deref()?, gate.approved_at?))
    }

    /// Approves every gate of `boot_group` an apply stopped at and nobody approved yet;
    /// returns their ids.
    pub fn approve(&mut self, boot_group: &str, by: &str, at: Timestamp) -> Vec<String> {
        let mut approved = Vec::new();
        for (id, record) in &mut self.steps {
            if record.passed_at.is_some() {
                continue;
            }
            if let Some(gate) = &mut record.gate
                && gate.boot_group == boot_group
                && gate.approved_by.is_none()
            {
                gate.approved_by = Some(by.to_string());
                gate.approved_at = Some(at);
                approved.push(id.clone());
            }
        }
        if !approved.is_empty() {
            self.serial += 1;
        }
        approved
    }

    /// The document as written to disk: pretty JSON with a final newline, so a diff of two
    /// states reads well.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("state is plain data") + "\n"
    }

    /// Replaces the machines with `machines`, bumping `serial` only when something changed.
    /// Returns whether it did.
    pub fn commit(&mut self, machines: BTreeMap<String, MachineState>) -> bool {
        if machines == self.machines {
            return false;
        }
        self.machines = machines;
        self.serial += 1;
        self.reindex();
        true
    }

    /// Machines the state knows that `names` (the plan's machines) no longer has, with their
    /// last stage: the planner turns them into `release` changes.
    pub fn released<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<(String, Stage)> {
        let keep: std::collections::HashSet<&str> = names.into_iter().collect();
        self.machines
            .iter()
            .filter(|(name, _)| !keep.contains(name.as_str()))
            .map(|(name, machine)| (name.clone(), machine.stage))
            .collect()
    }

    /// The write-ahead record: notes `operation` as pending on its machine before it is sent.
    /// A machine new to the state starts at `current`. Recording the same operation again is
    /// a no-op (so a retried write is harmless); another operation already pending on the
    /// machine is an error, because it must be reconciled first.
    pub fn record_pending(
        &mut self,
        current: Stage,
        operation: PendingOperation,
    ) -> Result<bool, StateError> {
        if let Some(pending) = self
            .machines
            .get(&operation.machine)
            .and_then(|m| m.pending.as_ref())
        {
            if pending.id == operation.id {
                return Ok(false);
            }
            return Err(StateError::AlreadyPending {
                machine: operation.machine.clone(),
                id: pending.id.clone(),
                kind: pending.kind,
            });
        }
        self.pending_index
            .0
            .insert(operation.id.clone(), operation.machine.clone());
        let machine = operation.machine.clone();
        self.machines
            .entry(machine)
            .or_insert_with(|| MachineState::at(current))
            .pending = Some(operation);
        self.serial += 1;
        Ok(true)
    }

    /// Records the end of the pending operation `id`: the machine reaches `stage`, a
    /// reprotect's (or process-server switch's) settings become the applied settings, and
    /// `provider_ids` are merged in.
    pub fn complete(
        &mut self,
        id: &OperationId,
        stage: Stage,
        provider_ids: BTreeMap<String, String>,
    ) -> Result<bool, StateError> {
        let machine = self.take_pending(id)?;
        let machine = self
            .machines
            .get_mut(&machine)
            .ok_or_else(|| StateError::UnknownOperation { id: id.clone() })?;
        let pending = machine
            .pending
            .take()
            .ok_or_else(|| StateError::UnknownOperation { id: id.clone() })?;
        machine.stage = stage;
        // A process-server switch records its settings too: the same ones, another server.
        if matches!(
            pending.kind,
            OperationKind::Reprotect | OperationKind::SwitchProcessServer
        ) {
            machine.settings = pending.settings;
        }
        machine.provider_ids.extend(provider_ids);
        self.serial += 1;
        Ok(true)
    }

    /// Finds the machine holding the pending operation `id` and drops `id` from the index.
    fn take_pending(&mut self, id: &OperationId) -> Result<String, StateError> {
        let machine = self
            .holder_of(id)
            .ok_or_else(|| StateError::UnknownOperation { id: id.clone() })?;
        self.pending_index.0.remove(id);
        Ok(machine)
    }

    /// Drops the pending record of an operation that, as reconciliation showed, never started
    /// or failed without changing the machine.
    pub fn abandon(&mut self, id: &OperationId) -> Result<bool, StateError> {
        let machine = self.take_pending(id)?;
        if let Some(machine) = self.machines.get_mut(&machine) {
            machine.pending = None;
        }
        self.serial += 1;
        Ok(true)
    }

    /// Forgets a machine (the `release` action). Returns whether it was known.
    pub fn release(&mut self, name: &str) -> bool {
        match self.machines.remove(name) {
            Some(machine) => {
                if let Some(pending) = machine.pending {
                    self.pending_index.0.remove(&pending.id);
                }
                self.serial += 1;
                true
            }
            None => false,
        }
    }
}

/// One record of the state's journal: the machines that changed between serial `from` and
/// serial `to`, each with its new content, or `None` when it was forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateDelta {
    /// The lineage of the state the record belongs to.
    pub lineage: String,
    pub from: u64,
    pub to: u64,
    pub machines: BTreeMap<String, Option<MachineState>>,
    /// Steps that changed, by id; `None` when forgotten.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<String, Option<StepRecord>>,
}

/// Where a state lives and how it is locked. Remote backends implement the same contract:
/// `read` never changes anything, `write` replaces the whole document atomically, `append`
/// makes a change durable, and a lock says who holds it.
pub trait StateBackend: fmt::Debug {
    /// Where the state is, for messages (a path, a URL).
    fn location(&self) -> String;

    /// The state, or `None` when there is none yet. A document that is corrupt, truncated,
    /// foreign or of a newer format is an error and is left as it is.
    fn read(&self) -> Result<Option<State>, StateError>;

    /// Replaces the state atomically: a reader sees the old document or the new one, never a
    /// mix, even if the process dies half way.
    fn write(&self, state: &State) -> Result<(), StateError>;

    /// Makes the change `delta` durable: on return it is on disk, and a later `read` returns
    /// the state with it applied. A backend keeps a journal of such records so that a change
    /// costs in proportion to itself, not to the whole document.
    fn append(&self, delta: &StateDelta) -> Result<(), StateError>;

    /// Folds the journal into the document (`state` is what `read` returns): the document is
    /// written whole and the journal emptied. Nothing happens when the journal is empty.
    fn compact(&self, state: &State) -> Result<(), StateError>;

    /// Takes the lock, waiting up to `timeout` (zero: fail at once) while someone else holds
    /// it. The lock is released when the guard is dropped.
    fn lock(&self, owner: LockInfo, timeout: Duration) -> Result<LockGuard, StateError>;

    /// Who holds the lock, as far as the backend knows.
    fn lock_info(&self) -> Result<Option<LockInfo>, StateError>;

    /// Removes a stale lock, only when `id` is the id of the lock recorded.
    fn unlock(&self, id: &str) -> Result<LockInfo, StateError>;
}

/// Why the state could not be read, written or locked.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the state file `{}`: {}", path.display(), lower(source))]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state file `{}` is unusable: {reason}; it was left untouched", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot write the state file `{}`: {}", path.display(), lower(source))]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state `{}` is locked by {}", path.display(), holder(info.as_deref()))]
    Locked {
        path: PathBuf,
        info: Option<Box<LockInfo>>,
    },
    #[error("cannot lock the state `{}`: {}", path.display(), lower(source))]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the state `{}` is not locked", path.display())]
    NotLocked { path: PathBuf },
    #[error("`{given}` is not the lock on `{}`; that one is `{}`, held by {}", path.display(), info.id, info)]
    WrongLockId {
        path: PathBuf,
        given: String,
        info: Box<LockInfo>,
    },
    #[error("lock `{}` on `{}` is held by a running process ({}); stop that process: its lock ends with it", info.id, path.display(), info)]
    LockInUse { path: PathBuf, info: Box<LockInfo> },
    #[error(
        "machine `{machine}` already has a pending `{kind}` operation `{id}`; reconcile it first"
    )]
    AlreadyPending {
        machine: String,
        id: OperationId,
        kind: OperationKind,
    },
    #[error("no machine has a pending operation `{id}`")]
    UnknownOperation { id: OperationId },
    #[error("a state write was interrupted: {reason}")]
    Interrupted { reason: String },
    /// A remote backend's service failed or refused (unreachable, credentials, permissions).
    #[error("the state `{location}`: {message}")]
    Remote { location: String, message: String },
    /// Compare-and-swap: the version this process read is no longer the stored one.
    #[error(
        "the state `{location}` was changed by another writer since this process read it; nothing was overwritten"
    )]
    Conflict { location: String },
    /// Fencing: another process acquired the lock after this one's lease ran out.
    #[error("this process lost its lock on the state `{location}` to {}: its lease of {}s ran out (the process was paused or cut off), so it wrote nothing and stops", holder(info.as_deref()), lease.as_secs())]
    Fenced {
        location: String,
        lease: std::time::Duration,
        info: Option<Box<LockInfo>>,
    },
    /// `state unlock` on a lease its holder still renews.
    #[error("lock `{}` on `{location}` is still being renewed by its holder {}; its lease ends by itself {lease}s after that process stops", info.id, info, lease = lease.as_secs())]
    LeaseRenewed {
        location: String,
        lease: std::time::Duration,
        info: Box<LockInfo>,
    },
}

fn holder(info: Option<&LockInfo>) -> String {
    match info {
        Some(info) => info.to_string(),
        None => "another process (it has not said who yet)".to_string(),
    }
}

/// `std::io::Error` messages start with a capital; lifeboat's messages do not.
pub fn lower(error: &std::io::Error) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Recovery;

    fn settings(mt: &str) -> ReprotectSettings {
        ReprotectSettings {
            master_target: mt.to_string(),
            process_server: "ps-01".to_string(),
            datastore: "vsan-01".to_string(),
            retention_drive: "R:".to_string(),
            recovery: Recovery::Original,
            failback_policy: "auto".to_string(),
            home: None,
        }
    }

    fn pending(id: &str, machine: &str, kind: OperationKind) -> PendingOperation {
        PendingOperation {
            id: OperationId::from(id),
            kind,
            machine: machine.to_string(),
            started_at: "2026-12-05T22:00:00Z".parse().expect("a timestamp"),
            settings: (kind == OperationKind::Reprotect).then(|| settings("mt-01")),
        }
    }

    #[test]
    fn a_new_state_has_a_uuid_lineage_and_serial_zero() {
        let a = State::new();
        let b = State::new();
        assert_eq!(a.serial, 0);
        assert!(uuid::Uuid::parse_str(&a.lineage).is_ok());
        assert_ne!(a.lineage, b.lineage, "every state gets its own lineage");
    }

    #[test]
    fn commit_bumps_the_serial_only_when_the_content_changes() {
        let mut state = State::new();
        let lineage = state.lineage.clone();
        assert!(!state.commit(BTreeMap::new()));
        assert_eq!(state.serial, 0);
        let machines =
            BTreeMap::from([("web-01".to_string(), MachineState::at(Stage::FailedOver))]);
        assert!(state.commit(machines.clone()));
        assert_eq!(state.serial, 1);
        assert!(!state.commit(machines));
        assert_eq!(state.serial, 1);
        assert_eq!(state.lineage, lineage, "the lineage never changes");
    }

    #[test]
    fn write_ahead_then_complete() {
        let mut state = State::new();
        let op = pending("op-1", "web-01", OperationKind::Reprotect);
        assert!(
            state
                .record_pending(Stage::FailedOver, op.clone())
                .expect("recorded")
        );
        assert_eq!(state.serial, 1);
        assert_eq!(state.machines["web-01"].stage, Stage::FailedOver);
        // Recording the same operation again (a retried write) changes nothing.
        assert!(
            !state
                .record_pending(Stage::FailedOver, op)
                .expect("idempotent")
        );
        assert_eq!(state.serial, 1);
        // Another operation while one is pending is refused.
        let other = pending("op-2", "web-01", OperationKind::Failback);
        assert!(matches!(
            state.record_pending(Stage::FailedOver, other),
            Err(StateError::AlreadyPending { .. })
        ));

        let ids = BTreeMap::from([("replicated_item".to_string(), "ri-1".to_string())]);
        assert!(
            state
                .complete(&OperationId::from("op-1"), Stage::Reprotected, ids)
                .expect("completed")
        );
        let machine = &state.machines["web-01"];
        assert_eq!(state.serial, 2);
        assert_eq!(machine.stage, Stage::Reprotected);
        assert!(machine.pending.is_none());
        assert_eq!(machine.settings, Some(settings("mt-01")));
        assert_eq!(machine.provider_ids["replicated_item"], "ri-1");
        assert!(matches!(
            state.complete(
                &OperationId::from("op-1"),
                Stage::Reprotected,
                BTreeMap::new()
            ),
            Err(StateError::UnknownOperation { .. })
        ));
    }

    #[test]
    fn a_failback_keeps_the_reprotect_settings_and_abandon_clears_the_record() {
        let mut state = State::new();
        state
            .record_pending(
                Stage::FailedOver,
                pending("r", "db", OperationKind::Reprotect),
            )
            .expect("recorded");
        state
            .complete(&OperationId::from("r"), Stage::Reprotected, BTreeMap::new())
            .expect("completed");
        state
            .record_pending(
                Stage::Reprotected,
                pending("f", "db", OperationKind::Failback),
            )
            .expect("recorded");
        assert!(state.abandon(&OperationId::from("f")).expect("abandoned"));
        assert!(state.machines["db"].pending.is_none());
        assert_eq!(state.machines["db"].stage, Stage::Reprotected);
        state
            .record_pending(
                Stage::Reprotected,
                pending("f2", "db", OperationKind::Failback),
            )
            .expect("recorded");
        state
            .complete(&OperationId::from("f2"), Stage::FailedBack, BTreeMap::new())
            .expect("completed");
        assert_eq!(state.machines["db"].settings, Some(settings("mt-01")));
        assert!(state.release("db"));
        assert!(!state.release("db"));
        assert!(state.machines.is_empty());
    }

    #[test]
    fn round_trips_through_json() {
        let mut state = State::new();
        state
            .record_pending(
                Stage::FailedOver,
                pending("op", "web-01", OperationKind::Reprotect),
            )
            .expect("recorded");
        let parsed = State::from_json(&state.to_json()).expect("parses");
        assert_eq!(parsed, state);
    }

    #[test]
    fn corrupt_foreign_and_newer_documents_are_refused_with_a_reason() {
        let good = State::new().to_json();
        let cases = [
            ("", "empty"),
            (&good[..good.len() / 2], "not valid JSON"),
            ("[1, 2]", "not a JSON object"),
            ("{\"hello\": 1}", "`format_version` is missing"),
            (
                "{\"format_version\": \"1\", \"kind\": \"lifeboat-saved-plan\"}",
                "saved plan",
            ),
            (
                "{\"format_version\": \"2\", \"lineage\": \"x\", \"serial\": 0}",
                "newer lifeboat",
            ),
            (
                "{\"format_version\": \"1\", \"lineage\": \"x\", \"serial\": 0}",
                "not a UUID",
            ),
            (
                "{\"format_version\": \"1\", \"lineage\": \"x\", \"serial\": 0, \"extra\": 1}",
                "unknown field `extra`",
            ),
        ];
        for (text, expected) in cases {
            let error = State::from_json(text).expect_err(text);
            assert!(error.to_string().contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn released_lists_machines_no_longer_in_the_plan() {
        let mut state = State::new();
        state.commit(BTreeMap::from([
            ("a".to_string(), MachineState::at(Stage::Reprotected)),
            ("b".to_string(), MachineState::at(Stage::FailedBack)),
        ]));
        assert_eq!(
            state.released(["a", "c"]),
            vec![("b".to_string(), Stage::FailedBack)]
        );
    }
}
