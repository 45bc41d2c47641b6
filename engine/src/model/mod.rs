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

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PluginProviderConfig {
    /// The plugin executable, relative to the plan file or on `PATH`.
    pub command: Spanned<String>,
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum StateConfig {
    Local(LocalStateConfig),
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
