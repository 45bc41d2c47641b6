//! The provider trait: how the engine talks to the sites (DESIGN.md §4).
//!
//! Architecture invariant: the engine knows no provider. It builds typed requests
//! ([`RefreshRequest`], [`OperationRequest`]) from the plan and hands them to a
//! `dyn Provider` the CLI chose; a provider never sees the plan file. The trait is object
//! safe (through `async_trait`) so the choice is made at run time from `plan.provider`.
//!
//! Crash safety rests on one property of [`Provider::run`]: it is idempotent by the
//! engine-chosen [`OperationId`]. The engine records the id before it calls `run`; after a
//! crash it calls `run` (or [`Provider::status`]) again with the same id, and the provider
//! awaits or reports the operation it already has instead of starting a second one.

pub mod facts;

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use facts::{Facts, Stage};

use crate::model::Recovery;

/// A backend that can observe and change both sites.
#[async_trait::async_trait]
pub trait Provider: Send + Sync + fmt::Debug {
    /// What this provider is and which estate it talks to.
    fn describe(&self) -> ProviderInfo;

    /// The most operations this provider accepts at once (a service's throttling limit);
    /// `apply` never runs more, whatever `--parallelism` says. `None`: no limit of its own.
    fn max_concurrency(&self) -> Option<usize> {
        None
    }

    /// Observes the facts the request names. Things that do not exist are absent from the
    /// answer; things the provider cannot observe are `None`.
    async fn refresh(&self, request: &RefreshRequest) -> Result<Facts, ProviderError>;

    /// Runs one operation to its end and returns when it has finished. Idempotent by
    /// `request.id`: if an operation with that id is already running or finished, this awaits
    /// or returns it and never starts it again.
    async fn run(&self, request: &OperationRequest) -> Result<OperationOutcome, ProviderError>;

    /// Reads the status of an operation, for reconciliation after a crash.
    async fn status(&self, id: &OperationId) -> Result<OperationStatus, ProviderError>;

    /// Called when a command is done with the provider, to leave its estate tidy (the `sim`
    /// provider folds its journal into the world file). The default does nothing.
    async fn close(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    /// How long each operation will take, in real time, one answer per request in the same
    /// order; `None` where the provider cannot tell (never a guess). `plan` builds the
    /// schedule from these, and `apply` does not start a boot group whose estimated end
    /// passes the maintenance window's end. One call for the whole plan, so a provider can
    /// answer in one pass. The default knows nothing.
    async fn estimate(
        &self,
        request: &EstimateRequest,
    ) -> Result<Vec<Option<Duration>>, ProviderError> {
        Ok(vec![None; request.operations.len()])
    }
}

/// What [`Provider::estimate`] is asked about: the operations, and what the plan declares
/// about the link between the sites.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EstimateRequest {
    /// `site.link_gbps`: usable bandwidth between Azure and the site, gigabits per second.
    pub link_gbps: Option<f64>,
    pub operations: Vec<EstimateOperation>,
}

/// One operation to time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EstimateOperation {
    pub machine: String,
    pub kind: OperationKind,
    /// The upper bound of data the operation sends, in GiB (the plan's `max_transfer_gib`).
    pub transfer_gib: u64,
}

/// Identifies a provider and the estate it talks to; saved plans record it so that a plan
/// made against one estate is not applied to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderInfo {
    /// `sim`, `azure` or `plugin`.
    pub kind: &'static str,
    /// The estate: the world file for `sim`, the vault for `azure`.
    pub identity: String,
}

/// The names the engine needs facts about, and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshRequest {
    pub vcenter: String,
    pub configuration_server: String,
    pub process_server: String,
    pub esxi_hosts: Vec<String>,
    pub datastores: Vec<String>,
    pub master_targets: Vec<String>,
    pub machines: Vec<String>,
    /// The process server of the leg home (`site.home.process_server`), when the plan names
    /// one.
    pub home_process_server: Option<String>,
}

/// The operation id the engine chose. Unique per operation attempt.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(transparent)]
pub struct OperationId(pub String);

impl fmt::Display for OperationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for OperationId {
    fn from(id: &str) -> Self {
        Self(id.to_string())
    }
}

/// The operations a provider carries out: the four of the lifecycle (DESIGN.md §2), and the
/// one change ASR allows on a reprotected machine, moving its replication to another
/// process server (`switch-process-server`, ASR's `reassociateGateway`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum OperationKind {
    Reprotect,
    Failback,
    Commit,
    ReprotectHome,
    SwitchProcessServer,
}

impl OperationKind {
    /// The lifecycle's operations, in order; `switch-process-server` keeps the stage and is
    /// not one of them.
    pub const ALL: [OperationKind; 4] = [
        OperationKind::Reprotect,
        OperationKind::Failback,
        OperationKind::Commit,
        OperationKind::ReprotectHome,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reprotect => "reprotect",
            Self::Failback => "failback",
            Self::Commit => "commit",
            Self::ReprotectHome => "reprotect-home",
            Self::SwitchProcessServer => "switch-process-server",
        }
    }

    /// The stage a machine must be at for this operation to start.
    pub fn from_stage(self) -> Stage {
        match self {
            Self::Reprotect => Stage::FailedOver,
            Self::Failback | Self::SwitchProcessServer => Stage::Reprotected,
            Self::Commit => Stage::FailedBack,
            Self::ReprotectHome => Stage::Committed,
        }
    }

    /// The stage the machine reaches when the operation succeeds.
    pub fn to_stage(self) -> Stage {
        match self {
            Self::Reprotect | Self::SwitchProcessServer => Stage::Reprotected,
            Self::Failback => Stage::FailedBack,
            Self::Commit => Stage::Committed,
            Self::ReprotectHome => Stage::Protected,
        }
    }

    /// The operation that takes a machine forward from `stage`, if any.
    pub fn from(stage: Stage) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.from_stage() == stage)
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One operation on one machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationRequest {
    pub id: OperationId,
    pub machine: String,
    pub kind: OperationKind,
    /// The reprotect settings; required for `reprotect` and `switch-process-server` (whose
    /// `process_server` is the new one) and for `reprotect-home` (its `home`), ignored
    /// otherwise.
    pub reprotect: Option<ReprotectSettings>,
}

/// What a reprotect sends (ASR's `ReverseReplicationInput` for InMage).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReprotectSettings {
    pub master_target: String,
    pub process_server: String,
    pub datastore: String,
    pub retention_drive: String,
    pub recovery: Recovery,
    /// The failback policy (`auto`: the one ASR created).
    pub failback_policy: String,
    /// The names `reprotect-home` sends (the plan's `site.home`); absent for the other
    /// operations and when the plan names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeSettings>,
}

/// What the reprotect back to Azure sends (ASR's `InMageAzureV2ReprotectInput`), by name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HomeSettings {
    /// The process server on the VMware site that replicates to Azure.
    pub process_server: String,
    /// The configuration server's run-as account.
    pub run_as_account: String,
    /// The VMware-to-Azure policy (`auto`: the vault's only one).
    pub policy: String,
}

/// Whether two retention drives are the same volume. Windows volumes are written `R:` in
/// plans and by people, and reported as `R` by ASR (`RetentionVolume.volumeName` in
/// Microsoft's recorded sessions: `D`, `F`); case does not matter to Windows either. Linux
/// mount points compare as written.
pub fn same_retention_drive(a: &str, b: &str) -> bool {
    fn windows_letter(drive: &str) -> Option<char> {
        let drive = drive.trim_end_matches(['\\', '/']);
        let drive = drive.strip_suffix(':').unwrap_or(drive);
        let mut chars = drive.chars();
        match (chars.next(), chars.next()) {
            (Some(letter), None) if letter.is_ascii_alphabetic() => {
                Some(letter.to_ascii_uppercase())
            }
            _ => None,
        }
    }
    match (windows_letter(a), windows_letter(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// A finished operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationOutcome {
    pub id: OperationId,
    /// The stage the machine reached.
    pub stage: Stage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperationStatus {
    /// The provider has no operation with this id: it never started (or was refused before
    /// it started, with a transient error, and may be sent again).
    Unknown,
    Running,
    Succeeded,
    Failed(ProviderError),
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// Wait and retry: the agent has not registered yet, throttling (HTTP 429), a server
    /// error (5xx), or another job still running on the same item.
    Transient,
    /// A person must act: every rule violation and ASR's 95226, 78052, 78093, 8061, 8038.
    Permanent,
}

/// An error from a provider, with the provider's code and a message a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    /// The provider's code, e.g. ASR's `78093`.
    pub code: Option<String>,
    pub message: String,
    /// How long to wait before retrying, when the provider says.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn permanent(code: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn transient(code: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Transient,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Duration) -> Self {
        self.retry_after = Some(after);
        self
    }

    pub fn is_transient(&self) -> bool {
        self.kind == ErrorKind::Transient
    }

    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }
}
