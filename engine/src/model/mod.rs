//! The typed plan file (format version 1, DESIGN.md §3).
//!
//! Every value the user wrote is a [`Spanned`], so any check can point at it. The types are
//! also the single source of the plan's JSON Schema (`lifeboat schema plan`): unknown keys are
//! rejected both by the loader (`deny_unknown_fields`) and by editors using the schema.

mod named_map;
mod steps;
mod timestamp;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use named_map::NamedMap;
pub use steps::{HttpCheck, OnFailure, Step, StepKind, StepTimeout, human_duration};
pub use timestamp::Timestamp;

use crate::span::Spanned;

/// The only plan format version this build reads.
pub const FORMAT_VERSION: u32 = 1;

/// A failback recovery plan.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lifeboat plan file", extend("$id" = "https://lifeboat.dev/schemas/plan.schema.json"))]
pub struct Plan {
    /// Plan-file format version; must be 1.
    pub version: Spanned<u32>,
    /// The plan's name, used in state and reports.
    pub name: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Spanned<String>>,
    /// The backend that talks to the sites: exactly one of `sim`, `azure`, `plugin`.
    pub provider: Spanned<ProviderConfig>,
    /// Where state is kept; default: local file `.lifeboat/state.json` beside the plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Spanned<StateConfig>>,
    /// How far `apply` takes every machine; default `reprotected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<Spanned<Goal>>,
    pub site: Spanned<Site>,
    /// Master target servers on the VMware site, by name.
    #[serde(default)]
    pub master_targets: Spanned<NamedMap<MasterTarget>>,
    /// The machines to fail back, by name (the protected item's name).
    #[serde(default)]
    pub machines: Spanned<NamedMap<Machine>>,
    /// Multi-VM consistency groups: members share one master target and one OS.
    #[serde(default)]
    pub replication_groups: Spanned<NamedMap<ReplicationGroup>>,
    /// Failback order: each boot group starts when the previous one is done.
    #[serde(default)]
    pub boot_order: Spanned<Vec<Spanned<BootGroup>>>,
    /// Failback and commit run only inside this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintenance_window: Option<Spanned<MaintenanceWindow>>,
}

impl Plan {
    pub fn goal(&self) -> Goal {
        self.goal.as_ref().map_or(Goal::default(), |g| g.value)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderConfig {
    /// The built-in simulated estate.
    Sim(SimProviderConfig),
    /// Azure Site Recovery over the ARM REST API.
    Azure(AzureProviderConfig),
    /// Any executable speaking lifeboat's JSON protocol over stdin/stdout.
    Plugin(PluginProviderConfig),
}

impl ProviderConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Sim(_) => "sim",
            Self::Azure(_) => "azure",
            Self::Plugin(_) => "plugin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SimProviderConfig {
    /// The world file, relative to the plan file. The simulator reads and changes exactly
    /// this file.
    pub world: Spanned<String>,
    /// A starting world, relative to the plan file, copied to `world` when that file does not
    /// exist yet. Lets a committed example keep its live world at an ignored path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_from: Option<Spanned<String>>,
}

/// Azure settings. Credentials are never part of the plan: they come from the environment or
/// a credential chain.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureProviderConfig {
    pub subscription_id: Spanned<String>,
    pub resource_group: Spanned<String>,
    /// The Recovery Services vault.
    pub vault: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_manager_endpoint: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<Spanned<String>>,
    /// Pin one credential source instead of trying the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Spanned<AzureCredential>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredential {
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
}

/// A provider in a separate process speaking lifeboat's plugin protocol (JSON-RPC 2.0 over
/// its stdin and stdout, docs/plugin-protocol.md). It runs at `plan` too, so it runs only
/// when allowed from outside the plan (`--allow-plugin`, `LIFEBOAT_ALLOWED_PLUGINS`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginProviderConfig {
    /// The executable and its arguments, e.g. `[./my-plugin, --flag]`. The executable is a
    /// path relative to the plan file (it must stay inside the repository), an absolute path,
    /// or a name found on `PATH`; it runs in the plan's directory.
    #[schemars(length(min = 1))]
    pub command: Spanned<Vec<Spanned<String>>>,
    /// Passed to the plugin as it is, in `initialize`; lifeboat does not look inside. Never
    /// put secrets here: the plugin inherits lifeboat's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
    /// How long the plugin may take to answer a request (`30s`, `2m`; default `60s`). A `run`
    /// or `refresh` may take longer as long as the plugin reports progress within each such
    /// interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<String>>,
}

/// Where the state is kept: exactly one of `local`, `postgres`, `azure_blob`. Connections and
/// credentials of the remote backends come from the environment, never from the plan.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StateConfig {
    /// A JSON file beside the plan (the default, `.lifeboat/state.json`).
    Local(LocalStateConfig),
    /// A row of a PostgreSQL table; the connection from libpq's environment variables
    /// (`DATABASE_URL`, or `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`).
    Postgres(PostgresStateConfig),
    /// A block blob in an Azure Storage container; credentials from
    /// `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_KEY` or the Azure credential chain.
    AzureBlob(AzureBlobStateConfig),
}

impl StateConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Local(_) => "local",
            Self::Postgres(_) => "postgres",
            Self::AzureBlob(_) => "azure_blob",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresStateConfig {
    /// The state's name (its row); default: the plan's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Spanned<String>>,
    /// The schema holding lifeboat's tables, created when missing; default `lifeboat`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Spanned<String>>,
    /// How long the lock outlives a holder that stops renewing it, e.g. `60s` (at least
    /// `5s`; default `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureBlobStateConfig {
    /// The storage account's blob endpoint, e.g. `https://contosodr.blob.core.windows.net`
    /// (HTTP only on loopback, for Azurite: `http://127.0.0.1:10000/devstoreaccount1`).
    pub account_url: Spanned<String>,
    /// The container, created when missing.
    pub container: Spanned<String>,
    /// The blob; default `NAME.json`, `NAME` being the plan's `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<Spanned<String>>,
    /// The blob lease, renewed while the process lives: `15s` to `60s`, what Azure allows
    /// (default `60s`). Never infinite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Spanned<String>>,
}

/// The default lease of a remote state's lock.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(60);

/// The shortest lease lifeboat accepts: renewal runs every third of it.
pub const MIN_LEASE: std::time::Duration = std::time::Duration::from_secs(5);

/// Parses a lease such as `60s`, `2m` or `1m 30s` (whole seconds at least).
pub fn parse_lease(text: &str) -> Result<std::time::Duration, String> {
    let duration: jiff::SignedDuration = text.trim().parse().map_err(|_| {
        format!("`{text}` is not a duration; write it like `60s`, `2m` or `1m 30s`")
    })?;
    std::time::Duration::try_from(duration)
        .map_err(|_| format!("`{text}` is negative; a lease is a length of time"))
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LocalStateConfig {
    /// The state file, relative to the plan file.
    pub path: Spanned<String>,
}

/// The default state file, relative to the plan file.
pub const DEFAULT_STATE_PATH: &str = ".lifeboat/state.json";

/// How far `apply` takes each machine along the lifecycle: reprotected, failed back, committed,
/// protected again.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    #[default]
    Reprotected,
    FailedBack,
    Committed,
    Protected,
}

impl Goal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reprotected => "reprotected",
            Self::FailedBack => "failed-back",
            Self::Committed => "committed",
            Self::Protected => "protected",
        }
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// The vCenter the machines fail back to.
    pub vcenter: Spanned<String>,
    pub configuration_server: Spanned<String>,
    /// The process server in Azure.
    pub process_server: Spanned<String>,
    /// The failback policy ASR created (`auto`), or its name.
    #[serde(default = "default_failback_policy")]
    pub failback_policy: Spanned<String>,
    /// The names the leg home needs (`reprotect-home`, VMware → Azure again); required when
    /// `goal` is `protected`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Spanned<Home>>,
    /// The usable bandwidth between Azure and the site, in gigabits per second: with the
    /// machines' `disks_gib`, it lets a provider that cannot time its operations itself
    /// (`azure`) estimate how long a reprotect takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_gbps: Option<Spanned<f64>>,
}

fn default_failback_policy() -> Spanned<String> {
    Spanned::bare("auto".to_string())
}

/// What ASR's reprotect back to Azure (`InMageAzureV2ReprotectInput`) names: the process
/// server on the VMware site that replicates to Azure, the account that pushes the mobility
/// agent, and the VMware-to-Azure replication policy. Microsoft's recorded sessions send all
/// of them, and its cmdlet makes the process server mandatory, so lifeboat does not guess.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Home {
    /// The process server on the VMware site (`ProcessServer.friendlyName`); its built-in
    /// master target receives nothing: ASR takes the same server as both.
    pub process_server: Spanned<String>,
    /// The configuration server's run-as account (`RunAsAccount.accountName`).
    pub run_as_account: Spanned<String>,
    /// The VMware-to-Azure (`InMageAzureV2`) replication policy's name, or `auto`: the vault's
    /// only such policy.
    #[serde(default = "default_failback_policy")]
    pub policy: Spanned<String>,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
}

impl Os {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux => "linux",
            Self::Windows => "windows",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Original-location recovery (the VMware VM exists, only deltas travel) or
/// alternate-location recovery (a new VM on the master target's host, full transfer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Recovery {
    #[default]
    Original,
    Alternate,
}

impl Recovery {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Original => "original",
            Self::Alternate => "alternate",
        }
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MasterTarget {
    pub os: Spanned<Os>,
    /// The ESXi host the master target VM runs on.
    pub esxi_host: Spanned<String>,
    /// The dedicated retention volume (`R:` on Windows, `/mnt/retention` on Linux).
    pub retention_drive: Spanned<String>,
    /// Datastores the master target's host sees and machines may be placed on.
    #[serde(default)]
    pub datastores: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub os: Spanned<Os>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Spanned<Recovery>>,
    /// The datastore the machine's disks are recovered to.
    pub datastore: Spanned<String>,
    /// Disk sizes in GiB, for transfer estimates and the 60-disk limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks_gib: Option<Spanned<Vec<Spanned<u64>>>>,
    /// Machines whose failback must finish before this one's starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Spanned<String>>,
    /// The master target for a machine outside any replication group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_target: Option<Spanned<String>>,
}

impl Machine {
    pub fn recovery(&self) -> Recovery {
        self.recovery
            .as_ref()
            .map_or(Recovery::default(), |r| r.value)
    }

    /// Disks this machine puts on its master target. A machine whose disks are not listed
    /// still has its OS disk, so it counts as one.
    pub fn disk_count(&self) -> usize {
        self.disks_gib
            .as_ref()
            .map_or(1, |disks| disks.value.len().max(1))
    }

    /// The upper bound of data a reprotect may send (between 0 and the sum of the disks).
    pub fn disk_total_gib(&self) -> u64 {
        self.disks_gib.as_ref().map_or(0, |disks| {
            disks
                .value
                .iter()
                .map(|d| d.value)
                .fold(0u64, u64::saturating_add)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicationGroup {
    pub machines: Spanned<Vec<Spanned<String>>>,
    /// Omitted, lifeboat assigns one: same OS, enough capacity, least loaded, ties by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_target: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BootGroup {
    pub name: Spanned<String>,
    pub machines: Spanned<Vec<Spanned<String>>>,
    /// Steps that run, in order, before the group's first failback starts (after the
    /// previous group and its `after` steps).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<Spanned<Step>>,
    /// Steps that run, in order, when every machine of the group has failed back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<Spanned<Step>>,
    /// `stop` (default): a failed failback or step stops every later group; `continue`:
    /// later groups proceed and the failure is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Spanned<OnFailure>>,
}

impl BootGroup {
    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
            .as_ref()
            .map_or_else(OnFailure::default, |o| o.value)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// RFC 3339 timestamp with offset, e.g. `2026-12-05T22:00:00Z`.
    pub start: Spanned<Timestamp>,
    pub end: Spanned<Timestamp>,
}
