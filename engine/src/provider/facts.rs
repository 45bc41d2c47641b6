//! Facts: what a provider observed about both sites, in provider-neutral types.
//!
//! Every fact that some provider cannot observe is an `Option`: `None` means "unknown", never
//! "fine". The azure provider, for one, sees no master-target snapshots, disk UUIDs, VMware
//! power state or ESXi memory; preflight reports such a fact as not checked instead of
//! letting it pass silently.
//!
//! A named thing the request asked about but that is absent from its map does not exist at
//! the site (a missing master target, an unknown datastore): absence is an observation.

use std::collections::{HashMap, HashSet};
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Os, Recovery};

/// Where a machine is in its lifecycle (failed over, reprotected, failed back, committed,
/// protected). Stages are ordered: a machine only moves forward, and `stage >= goal` means
/// there is nothing to do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// Running in Azure, not protected: where every failback starts.
    FailedOver,
    /// Replicating Azure → VMware site.
    Reprotected,
    /// Running on the VMware site, not yet committed.
    FailedBack,
    /// Failback committed, Azure replicas removed.
    Committed,
    /// Replicating VMware site → Azure again.
    Protected,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::FailedOver,
        Stage::Reprotected,
        Stage::FailedBack,
        Stage::Committed,
        Stage::Protected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::FailedOver => "failed-over",
            Self::Reprotected => "reprotected",
            Self::FailedBack => "failed-back",
            Self::Committed => "committed",
            Self::Protected => "protected",
        }
    }

    /// The stage a plan goal names.
    pub fn from_goal(goal: crate::model::Goal) -> Self {
        use crate::model::Goal;
        match goal {
            Goal::Reprotected => Self::Reprotected,
            Goal::FailedBack => Self::FailedBack,
            Goal::Committed => Self::Committed,
            Goal::Protected => Self::Protected,
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The discovery account vCenter was added with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AccountAccess {
    ReadWrite,
    /// Protect and failover work, reprotect fails: datastores cannot be discovered.
    ReadOnly,
}

/// The hypervisor licence on the VMware site. The free editions cannot be failed back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HypervisorEdition {
    Licensed,
    #[serde(rename = "free-esxi-5.5")]
    FreeEsxi55,
    #[serde(rename = "free-vsphere-6")]
    FreeVsphere6,
}

impl HypervisorEdition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Licensed => "licensed",
            Self::FreeEsxi55 => "free-esxi-5.5",
            Self::FreeVsphere6 => "free-vsphere-6",
        }
    }
}

/// How an ESXi host mounts a datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DatastoreAccess {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DatastoreType {
    Vmfs,
    Vsan,
    /// Not supported as a failback target.
    Nfs,
}

impl DatastoreType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vmfs => "vmfs",
            Self::Vsan => "vsan",
            Self::Nfs => "nfs",
        }
    }
}

/// The Azure VM a failover created (the replica lifeboat brings home).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AzureReplica {
    Present,
    Deleted,
    Unprotected,
    /// Moved to another resource group.
    Moved,
}

impl AzureReplica {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Present => "present",
            Self::Deleted => "deleted",
            Self::Unprotected => "unprotected",
            Self::Moved => "moved",
        }
    }
}

/// What the machine was before it failed over to Azure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    Vmware,
    /// A physical Windows Server 2008 R2 SP1 machine: cannot be failed back.
    #[serde(rename = "physical-windows-2008r2")]
    PhysicalWindows2008R2,
    /// A Hyper-V VM: a VMware VM cannot fail back to Hyper-V and vice versa.
    HyperV,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vmware => "vmware",
            Self::PhysicalWindows2008R2 => "physical-windows-2008r2",
            Self::HyperV => "hyper-v",
        }
    }
}

/// Everything the engine learnt from one refresh.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// `None`: the configuration server the plan names does not exist.
    pub configuration_server: Option<ConfigurationServerFacts>,
    /// `None`: the process server the plan names does not exist.
    pub process_server: Option<ProcessServerFacts>,
    /// The leg home's process server (`site.home.process_server`); `None`: it does not exist,
    /// or the request named none.
    pub home_process_server: Option<ProcessServerFacts>,
    /// The configuration server's run-as accounts, by name; `None`: not observable.
    pub run_as_accounts: Option<Vec<String>>,
    /// `None`: the vCenter the plan names is not known to the vault.
    pub vcenter: Option<VcenterFacts>,
    pub esxi_hosts: HashMap<String, EsxiHostFacts>,
    pub datastores: HashMap<String, DatastoreFacts>,
    pub master_targets: HashMap<String, MasterTargetFacts>,
    pub machines: HashMap<String, MachineFacts>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigurationServerFacts {
    pub connected: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessServerFacts {
    pub healthy: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VcenterFacts {
    pub connected: Option<bool>,
    pub discovered: Option<bool>,
    pub account: Option<AccountAccess>,
    pub edition: Option<HypervisorEdition>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EsxiHostFacts {
    pub vcenter: Option<String>,
    pub memory_free_gib: Option<u64>,
    /// The datastores the host mounts, and how.
    pub datastores: Option<HashMap<String, DatastoreAccess>>,
    /// Names of the VMs registered on the host (for ALR name clashes, ASR 78052).
    pub vms: Option<HashSet<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DatastoreFacts {
    pub kind: Option<DatastoreType>,
    pub free_gib: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct MasterTargetFacts {
    pub os: Option<Os>,
    pub esxi_host: Option<String>,
    pub healthy: Option<bool>,
    pub snapshots: Option<u32>,
    pub disks_attached: Option<u32>,
    pub retention_volumes: Option<Vec<String>>,
    pub disk_uuids: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MachineFacts {
    pub stage: Stage,
    pub os: Option<Os>,
    /// Whether the configuration server's database still has the machine.
    pub in_configuration_server: Option<bool>,
    /// Whether the mobility agent has registered with the configuration server yet.
    pub agent_registered: Option<bool>,
    /// When it has not: about how long until it does.
    pub agent_registers_in: Option<std::time::Duration>,
    pub azure_replica: Option<AzureReplica>,
    pub source: Option<SourceKind>,
    pub migrated: Option<bool>,
    /// The VMware VM on the home site; `None`: not observable.
    pub vmware_vm: Option<VmwareVmFacts>,
    pub disk_uuids: Option<Vec<String>>,
    pub disks_gib: Option<Vec<u64>>,
    /// Memory the VM needs to start on the VMware site.
    pub memory_gib: Option<u64>,
    /// The settings the last reprotect applied; `None` before any reprotect.
    pub settings: Option<AppliedSettings>,
    /// An operation the provider is running on the machine right now.
    pub running: Option<RunningFact>,
}

impl MachineFacts {
    /// A machine at `stage` about which nothing else is known.
    pub fn unknown(stage: Stage) -> Self {
        Self {
            stage,
            os: None,
            in_configuration_server: None,
            agent_registered: None,
            agent_registers_in: None,
            azure_replica: None,
            source: None,
            migrated: None,
            vmware_vm: None,
            disk_uuids: None,
            disks_gib: None,
            memory_gib: None,
            settings: None,
            running: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VmwareVmFacts {
    pub exists: bool,
    pub powered_on: Option<bool>,
    pub esxi_host: Option<String>,
    pub datastore: Option<String>,
}

/// Settings of a reprotect as the provider recorded them. Each is `None` when the provider
/// cannot tell it: ASR's reprotected item names its process server and datastores but not
/// always its master target (`null` in Microsoft's recorded sessions), and never its
/// retention drive or recovery type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedSettings {
    pub master_target: Option<String>,
    pub process_server: Option<String>,
    pub datastore: Option<String>,
    pub retention_drive: Option<String>,
    pub recovery: Option<Recovery>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningFact {
    pub operation: super::OperationId,
    pub kind: super::OperationKind,
}
