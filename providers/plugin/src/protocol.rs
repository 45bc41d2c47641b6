//! Protocol v1: every message lifeboat and a plugin exchange, as Rust types. They are the one
//! source of the JSON Schemas in `schemas/plugin/` (see [`MESSAGES`]) and of
//! docs/plugin-protocol.md, which says what each field means on the wire.
//!
//! Framing: JSON-RPC 2.0, one message per line (UTF-8 JSON without raw newlines, ended by
//! `\n`) on the plugin's stdin and stdout. Why not LSP's `Content-Length` headers: JSON never
//! needs a raw newline, every language reads lines, a plugin is debuggable by typing into it,
//! and a stray `print` is a line that is not JSON, which lifeboat can name exactly; a header
//! framing would instead desynchronise and misread everything after it.
//!
//! The engine's types ([`lifeboat_engine::provider`]) are not sent as they are: the wire
//! types here are the contract, versioned with the protocol, and convert to and from the
//! engine's at the edge ([`convert`]), so a change inside lifeboat cannot silently change
//! what plugins must speak.

pub mod convert;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use lifeboat_engine::model::{Os, Recovery};
pub use lifeboat_engine::provider::facts::{
    AccountAccess, AzureReplica, DatastoreAccess, DatastoreType, HypervisorEdition, SourceKind,
};
pub use lifeboat_engine::provider::{HomeSettings, OperationKind, ReprotectSettings, Stage};

/// The protocol versions this build speaks.
pub const VERSIONS: &[u32] = &[1];

/// The JSON-RPC version string every message carries.
pub const JSONRPC: &str = "2.0";

/// Method names.
pub mod method {
    pub const INITIALIZE: &str = "initialize";
    pub const DESCRIBE: &str = "describe";
    pub const REFRESH: &str = "refresh";
    pub const RUN: &str = "run";
    pub const STATUS: &str = "status";
    pub const CANCEL: &str = "cancel";
    pub const SHUTDOWN: &str = "shutdown";
    /// Notification, plugin → lifeboat.
    pub const PROGRESS: &str = "progress";
}

/// JSON-RPC error codes. The first five are JSON-RPC 2.0's own.
pub mod error_code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The backend refused or failed: `data` is a [`super::ProviderErrorData`].
    pub const PROVIDER_ERROR: i64 = -32000;
    /// None of the offered protocol versions is spoken: `data` is a
    /// [`super::UnsupportedVersionData`].
    pub const UNSUPPORTED_VERSION: i64 = -32001;
    /// A request other than `initialize` before `initialize`.
    pub const NOT_INITIALIZED: i64 = -32002;
}

/// A request id: lifeboat sends integers, counting up from 1 in each process it starts.
pub type RequestId = u64;

/// A request, lifeboat → plugin.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    pub id: RequestId,
    pub method: String,
    /// The method's params object; absent for `describe` and `shutdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

/// A response, plugin → lifeboat: exactly one of `result` and `error`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The id of the request answered (`null` only when the request could not be read).
    pub id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorObject>,
}

/// A notification (no id, no answer): only `progress`, plugin → lifeboat.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct Notification {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

/// A JSON-RPC error.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
pub struct ErrorObject {
    /// One of [`error_code`].
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
}

/// `data` of a [`error_code::PROVIDER_ERROR`]: what the engine needs to decide whether to
/// retry and how to report the root cause.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderErrorData {
    pub kind: ErrorKind,
    /// The backend's own code, e.g. ASR's `78093`, shown with the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For `transient` errors: how long to wait before trying again, when the backend says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// Wait and retry (throttling, a busy item, an agent not registered yet).
    Transient,
    /// A person must act; the operation is not retried.
    Permanent,
}

/// `data` of a [`error_code::UNSUPPORTED_VERSION`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub struct UnsupportedVersionData {
    /// The versions the plugin speaks.
    pub supported: Vec<u32>,
}

/// `initialize` params: the first request, sent once per process.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitializeParams {
    /// The protocol versions lifeboat speaks; the plugin chooses one (the highest it knows).
    pub protocol_versions: Vec<u32>,
    /// lifeboat's version, for the plugin's logs.
    pub lifeboat_version: String,
    /// `provider.plugin.config` from the plan, as it is (`null` when absent).
    #[serde(default)]
    pub config: serde_json::Value,
}

/// `initialize` result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitializeResult {
    /// The version chosen, one of those offered.
    pub protocol_version: u32,
    pub plugin: PluginInfo,
    #[serde(default)]
    pub capabilities: Capabilities,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginInfo {
    /// Shown in lifeboat's messages and in front of every line the plugin logs.
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// The most `run` requests the plugin accepts at once; lifeboat never sends more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Whether `cancel` can stop an operation (otherwise it always answers
    /// `cancelled: false`).
    #[serde(default)]
    pub cancel: bool,
}

/// `describe` result: the estate's identity, recorded in saved plans so that a plan made
/// against one estate is not applied to another. The same for every process of one estate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DescribeResult {
    pub identity: String,
}

/// `refresh` params: the names lifeboat needs facts about, and nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshParams {
    pub vcenter: String,
    pub configuration_server: String,
    pub process_server: String,
    /// The leg home's process server, when the plan names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_process_server: Option<String>,
    #[serde(default)]
    pub esxi_hosts: Vec<String>,
    #[serde(default)]
    pub datastores: Vec<String>,
    #[serde(default)]
    pub master_targets: Vec<String>,
    /// Only these machines (a targeted refresh names one).
    #[serde(default)]
    pub machines: Vec<String>,
}

/// `refresh` result. A named thing absent from its map does not exist at the site. A fact
/// the plugin cannot observe is left out: lifeboat reports the check that needs it as not
/// checked, never as passed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshResult {
    /// Absent: the configuration server asked about does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_server: Option<ConfigurationServerFacts>,
    /// Absent: the process server asked about does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_server: Option<ProcessServerFacts>,
    /// Absent: the home process server does not exist, or none was asked about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_process_server: Option<ProcessServerFacts>,
    /// The configuration server's run-as accounts; absent: not observable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_accounts: Option<Vec<String>>,
    /// Absent: the vCenter is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcenter: Option<VcenterFacts>,
    #[serde(default)]
    pub esxi_hosts: BTreeMap<String, EsxiHostFacts>,
    #[serde(default)]
    pub datastores: BTreeMap<String, DatastoreFacts>,
    #[serde(default)]
    pub master_targets: BTreeMap<String, MasterTargetFacts>,
    #[serde(default)]
    pub machines: BTreeMap<String, MachineFacts>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationServerFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessServerFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VcenterFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Whether the configuration server has discovered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered: Option<bool>,
    /// The discovery account's access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountAccess>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edition: Option<HypervisorEdition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EsxiHostFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcenter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_free_gib: Option<u64>,
    /// The datastores the host mounts, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastores: Option<BTreeMap<String, DatastoreAccess>>,
    /// The VMs registered on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatastoreFacts {
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<DatastoreType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_gib: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MasterTargetFacts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esxi_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks_attached: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_volumes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_uuids: Option<Vec<String>>,
}

/// One machine (a replicated item). Only `stage` is required.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineFacts {
    pub stage: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<Os>,
    /// Whether the configuration server's database still has the machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_configuration_server: Option<bool>,
    /// Whether the mobility agent has registered with the configuration server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_registered: Option<bool>,
    /// When it has not: about how many seconds until it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_registers_in_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_replica: Option<AzureReplica>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrated: Option<bool>,
    /// The VMware VM on the home site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmware_vm: Option<VmwareVmFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_uuids: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks_gib: Option<Vec<u64>>,
    /// Memory the VM needs to start on the VMware site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<u64>,
    /// The settings the last reprotect applied; absent before any reprotect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<AppliedSettings>,
    /// An operation running on the machine right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<RunningOperation>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmwareVmFacts {
    pub exists: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub powered_on: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esxi_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
}

/// Each setting is absent when the backend cannot tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppliedSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_drive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunningOperation {
    /// The operation id lifeboat gave it.
    pub id: String,
    pub kind: OperationKind,
}

/// `run` params: one operation on one machine. `id` is the idempotency key: a `run` with an
/// id the plugin has seen before (in this process or any earlier one) must not start a
/// second operation; it awaits the first and answers with its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunParams {
    pub id: String,
    pub machine: String,
    pub kind: OperationKind,
    /// The settings; present for `reprotect`, `switch-process-server` (its `process_server`
    /// is the new one) and `reprotect-home` (its `home`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprotect: Option<ReprotectSettings>,
}

/// `run` result, sent when the operation has finished successfully.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunResult {
    pub id: String,
    /// The stage the machine reached.
    pub stage: Stage,
}

/// `status` params; `cancel` takes the same.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationParams {
    pub id: String,
}

/// `status` result. Must be answered from the backend's own record, so that a fresh plugin
/// process (after a crash of lifeboat or of the plugin) gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusResult {
    pub status: OperationState,
    /// For `failed`: why, as a `run` error would have said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<StatusError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OperationState {
    /// No operation with this id ever started (or it was refused with a transient error
    /// before starting): lifeboat may send it again.
    Unknown,
    Running,
    Succeeded,
    Failed,
}

/// Why an operation failed, in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusError {
    pub message: String,
    pub kind: ErrorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// `cancel` result.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelResult {
    /// `true`: the operation was stopped and its pending `run` answers with an error;
    /// `false`: it cannot be stopped (or is unknown, or finished) and carries on.
    pub cancelled: bool,
}

/// `progress` notification params: a sign of life while `run` or `refresh` works. lifeboat
/// gives up on a `run` that sends nothing for its whole timeout, so a long operation must
/// send one at least every [`HEARTBEAT_SECS`] seconds.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressParams {
    /// The operation id of the `run` this is about; absent for `refresh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// 0 to 100, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
}

/// How often a plugin sends `progress` while it works, at most.
pub const HEARTBEAT_SECS: u64 = 10;

/// Generates one message's JSON Schema.
pub type SchemaFn = fn() -> schemars::Schema;

/// Every message type with its schema file's name (`schemas/plugin/NAME.schema.json`).
pub const MESSAGES: &[(&str, SchemaFn)] = &[
    ("request", || schemars::schema_for!(Request)),
    ("response", || schemars::schema_for!(Response)),
    ("notification", || schemars::schema_for!(Notification)),
    ("error-data", || schemars::schema_for!(ProviderErrorData)),
    ("unsupported-version-data", || {
        schemars::schema_for!(UnsupportedVersionData)
    }),
    ("initialize.params", || {
        schemars::schema_for!(InitializeParams)
    }),
    ("initialize.result", || {
        schemars::schema_for!(InitializeResult)
    }),
    ("describe.result", || schemars::schema_for!(DescribeResult)),
    ("refresh.params", || schemars::schema_for!(RefreshParams)),
    ("refresh.result", || schemars::schema_for!(RefreshResult)),
    ("run.params", || schemars::schema_for!(RunParams)),
    ("run.result", || schemars::schema_for!(RunResult)),
    ("status.params", || schemars::schema_for!(OperationParams)),
    ("status.result", || schemars::schema_for!(StatusResult)),
    ("cancel.params", || schemars::schema_for!(OperationParams)),
    ("cancel.result", || schemars::schema_for!(CancelResult)),
    ("progress.params", || schemars::schema_for!(ProgressParams)),
];

/// The schema of one message by its name in [`MESSAGES`].
pub fn schema(name: &str) -> Option<schemars::Schema> {
    MESSAGES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, schema)| schema())
}
