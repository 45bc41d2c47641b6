//! From what ASR reports to the engine's provider-neutral [`Facts`].
//!
//! # Name mapping
//!
//! machine = protected item `friendlyName`; master target = `MasterTargetServer.name`;
//! process server = `ProcessServer.friendlyName`; vCenter = `VCenter.friendlyName`;
//! datastore = `DataStore.symbolicName`; retention drive = `RetentionVolume.volumeName`;
//! configuration server = the `friendlyName` of the fabric whose `customDetails` are
//! `VMware`; `failback_policy: auto` = the one `InMage` policy (see [`crate::requests`]).
//!
//! # Stage rule
//!
//! From the definitions: the provider-specific `instanceType` says which way the item
//! replicates (`InMageAzureV2`: VMware → Azure; `InMage`: Azure → VMware, i.e. reprotected
//! for failback). `activeLocation` (`Primary`/`Recovery`, relative to the first protection,
//! whose primary is the VMware site) says where the machine runs; an `InMage` item also says
//! it directly in `activeSiteType` (`Azure`/`OnPrem`), which wins when present.
//! `allowedOperations` (`ReplicationProtectedItemOperation`) tells a failover awaiting its
//! commit (`Commit` allowed) from a committed one.
//!
//! What a committed failback looks like comes from Microsoft's recorded sessions against a
//! real vault (Azure/azure-powershell, `SessionRecords/…AsrV2ATests/V2ATestReprotect.json`;
//! fixture `tests/fixtures/recorded/committed-item.json`): an `InMage` item with
//! `activeSiteType: OnPrem`, `activeLocation: Recovery`, `protectionState:
//! UnplannedFailoverCommitted` and `allowedOperations: [CompleteMigration, DisableProtection,
//! SwitchProtection]`: no `Commit`, no `ReverseReplicate`. `SwitchProtection` (ASR's name for
//! a reprotect) is what is left to do. `protectionState` is a free string in the definitions,
//! so it only confirms: `UnplannedFailoverCommitted` reads as committed even while a job has
//! emptied `allowedOperations`.
//!
//! | `instanceType` | runs in | `allowedOperations` / `protectionState` | stage |
//! |---|---|---|---|
//! | `InMageAzureV2` | Azure (`Recovery`) | has `Commit` | error: the failover to Azure is not committed |
//! | `InMageAzureV2` | Azure (`Recovery`) | otherwise | `failed-over` |
//! | `InMageAzureV2` | VMware (`Primary`) | any | `protected` |
//! | `InMage` | Azure | any | `reprotected` |
//! | `InMage` | VMware | has `Commit` | `failed-back` |
//! | `InMage` | VMware | `UnplannedFailoverCommitted`, or `SwitchProtection`, `CompleteMigration` or `ReverseReplicate` without `Commit` | `committed` |
//! | `InMage` | VMware | otherwise | `failed-back` |
//! | anything else | | | error: not a VMware failback item |
//!
//! When `allowedOperations` does not settle it (ASR empties it while a job runs), the lower
//! stage is chosen: a stage claimed too early makes the engine skip an operation, one claimed
//! too late only makes it ask again, which the idempotent `run` tolerates.
//!
//! # What ASR cannot tell
//!
//! Master-target snapshots, disk UUIDs, ESXi hosts (memory, mounts, VMs), VMware VM power
//! state, the vCenter account's access and licence, the state of the Azure replica, and
//! whether the agent registered are all `None`: unknown, never "fine".

use jiff::{SignedDuration, Timestamp};
use lifeboat_engine::model::Os;
use lifeboat_engine::provider::facts::{
    AppliedSettings, ConfigurationServerFacts, DatastoreFacts, DatastoreType, EsxiHostFacts,
    MachineFacts, MasterTargetFacts, ProcessServerFacts, SourceKind, VcenterFacts,
};
use lifeboat_engine::provider::{Facts, RefreshRequest, Stage};

use crate::arm::{
    Fabric, FabricSpecificDetails, MasterTargetServer, ProcessServer, ProtectedDiskDetails,
    ReplicationProtectedItem, ReplicationProviderSpecificSettings, VCenter, VMwareDetails,
};

/// A heartbeat older than this counts as lost. lifeboat's choice: ASR's components beat
/// every few minutes, and fifteen minutes without one is what the portal shows as a warning.
pub const HEARTBEAT_LOST_AFTER: SignedDuration = SignedDuration::from_mins(15);

/// Why an item's stage cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    #[error(
        "machine `{0}`: the failover to Azure is not committed; commit it in Azure Site Recovery first"
    )]
    FailoverNotCommitted(String),
    #[error(
        "machine `{machine}`: replicated by `{instance_type}`, not VMware to Azure (`InMageAzureV2`) or back (`InMage`)"
    )]
    UnsupportedProvider {
        machine: String,
        instance_type: String,
    },
    #[error("machine `{0}`: ASR reports no provider-specific details")]
    NoDetails(String),
}

/// Everything one refresh read from the vault.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub fabrics: Vec<Fabric>,
    pub vcenters: Vec<VCenter>,
    pub items: Vec<ReplicationProtectedItem>,
}

/// The stage of one protected item (the rule in the module documentation).
pub fn stage(item: &ReplicationProtectedItem) -> Result<Stage, StageError> {
    let props = &item.properties;
    let machine = props.friendly_name.clone().unwrap_or_default();
    let allows = |op: &str| props.allowed_operations.iter().any(|o| o == op);
    let at_recovery = props.active_location.as_deref() == Some("Recovery");
    match &props.provider_specific_details {
        Some(ReplicationProviderSpecificSettings::InMageAzureV2(_)) => {
            if !at_recovery {
                Ok(Stage::Protected)
            } else if allows("Commit") {
                Err(StageError::FailoverNotCommitted(machine))
            } else {
                Ok(Stage::FailedOver)
            }
        }
        Some(ReplicationProviderSpecificSettings::InMage(details)) => {
            let in_azure = match details.active_site_type.as_deref() {
                Some("Azure") => true,
                Some("OnPrem") => false,
                _ => at_recovery,
            };
            let committed_state = props
                .protection_state
                .as_deref()
                .is_some_and(|state| state.eq_ignore_ascii_case("UnplannedFailoverCommitted"));
            if in_azure {
                Ok(Stage::Reprotected)
            } else if allows("Commit") {
                Ok(Stage::FailedBack)
            } else if committed_state
                || ["SwitchProtection", "CompleteMigration", "ReverseReplicate"]
                    .iter()
                    .any(|op| allows(op))
            {
                Ok(Stage::Committed)
            } else {
                Ok(Stage::FailedBack)
            }
        }
        Some(ReplicationProviderSpecificSettings::Other { instance_type }) => {
            Err(StageError::UnsupportedProvider {
                machine,
                instance_type: instance_type.clone(),
            })
        }
        None => Err(StageError::NoDetails(machine)),
    }
}

/// The facts about one machine. Only what the item itself tells is filled in.
pub fn machine(item: &ReplicationProtectedItem) -> Result<MachineFacts, StageError> {
    let mut facts = MachineFacts::unknown(stage(item)?);
    let (os, ram_mb, discovery, disks) = match &item.properties.provider_specific_details {
        Some(ReplicationProviderSpecificSettings::InMageAzureV2(d)) => (
            d.os_type.as_deref(),
            d.source_vm_ram_size_in_mb,
            d.discovery_type.as_deref(),
            d.protected_disks.as_slice(),
        ),
        Some(ReplicationProviderSpecificSettings::InMage(d)) => (
            d.os_details.as_ref().and_then(|os| os.os_type.as_deref()),
            d.source_vm_ram_size_in_mb,
            d.discovery_type.as_deref(),
            d.protected_disks.as_slice(),
        ),
        _ => (None, None, None, &[][..]),
    };
    facts.os = os.and_then(parse_os);
    facts.memory_gib = ram_mb.map(|mb| mb.div_ceil(1024));
    // `vCenter` discovery means a VMware VM; `physical` could be any machine, so unknown.
    facts.source = discovery
        .filter(|d| d.eq_ignore_ascii_case("vCenter"))
        .map(|_| SourceKind::Vmware);
    facts.disks_gib = disks_gib(disks);
    Ok(facts)
}

/// The facts the request asks about, from one refresh's inventory.
pub fn facts(
    request: &RefreshRequest,
    inventory: &Inventory,
    now: Timestamp,
) -> Result<Facts, StageError> {
    let mut facts = Facts::default();
    let cs = inventory
        .fabrics
        .iter()
        .find_map(|fabric| match &fabric.properties.custom_details {
            Some(FabricSpecificDetails::VMware(details))
                if fabric.properties.friendly_name.as_deref()
                    == Some(request.configuration_server.as_str()) =>
            {
                Some(details.as_ref())
            }
            _ => None,
        });
    if let Some(cs) = cs {
        facts.configuration_server = Some(ConfigurationServerFacts {
            connected: fresh(cs.last_heartbeat.as_deref(), now),
        });
        facts.process_server = cs
            .process_servers
            .iter()
            .find(|ps| ps.friendly_name.as_deref() == Some(request.process_server.as_str()))
            .map(|ps| process_server(ps, now));
        facts.home_process_server = request.home_process_server.as_ref().and_then(|name| {
            cs.process_servers
                .iter()
                .find(|ps| ps.friendly_name.as_deref() == Some(name.as_str()))
                .map(|ps| process_server(ps, now))
        });
        facts.run_as_accounts = Some(
            cs.run_as_accounts
                .iter()
                .filter_map(|account| account.account_name.clone())
                .collect(),
        );
        for mt in &cs.master_target_servers {
            let Some(name) = mt.name.as_deref() else {
                continue;
            };
            if request.master_targets.iter().any(|n| n == name) {
                facts
                    .master_targets
                    .insert(name.to_string(), master_target(mt, now));
            }
            for ds in mt.data_stores.iter().flatten() {
                if let Some(ds_name) = ds.symbolic_name.as_deref()
                    && request.datastores.iter().any(|n| n == ds_name)
                {
                    facts
                        .datastores
                        .entry(ds_name.to_string())
                        .or_insert(DatastoreFacts {
                            kind: ds.kind.as_deref().and_then(parse_datastore_type),
                            free_gib: ds
                                .free_space
                                .as_deref()
                                .and_then(|gb| gb.trim().parse::<f64>().ok())
                                .filter(|gb| gb.is_finite() && *gb >= 0.0)
                                // Whole GiB rounded down: free space is never overstated.
                                .map(|gb| gb as u64),
                        });
                }
            }
        }
    }
    facts.vcenter = inventory
        .vcenters
        .iter()
        .find(|vc| vc.properties.friendly_name.as_deref() == Some(request.vcenter.as_str()))
        .map(|vc| VcenterFacts {
            connected: fresh(vc.properties.last_heartbeat.as_deref(), now),
            discovered: vc
                .properties
                .discovery_status
                .as_deref()
                .and_then(discovered),
            account: None,
            edition: None,
        });
    // ASR lists no ESXi hosts. Absent from the map would mean "does not exist", so every
    // requested host is present with every fact unknown.
    for host in &request.esxi_hosts {
        facts
            .esxi_hosts
            .insert(host.clone(), EsxiHostFacts::default());
    }
    for item in &inventory.items {
        if let Some(name) = item.properties.friendly_name.as_deref()
            && request.machines.iter().any(|m| m == name)
        {
            let mut observed = machine(item)?;
            if observed.stage == Stage::Reprotected {
                observed.settings = cs.and_then(|cs| applied_settings(item, cs));
            }
            facts.machines.insert(name.to_string(), observed);
        }
    }
    Ok(facts)
}

/// What a reprotected (`InMage`) item tells of its reprotect settings, by name: the process
/// server and master target its ids name in the configuration server's lists, and its
/// datastore when it lists exactly one. The retention drive and the recovery type are not
/// reported at all, and the master target is `null` in Microsoft's recorded session of a
/// reprotected item: those stay unknown (`None`), never guessed.
fn applied_settings(
    item: &ReplicationProtectedItem,
    cs: &VMwareDetails,
) -> Option<AppliedSettings> {
    let Some(ReplicationProviderSpecificSettings::InMage(details)) =
        &item.properties.provider_specific_details
    else {
        return None;
    };
    let same =
        |a: &Option<String>, b: &str| a.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(b));
    let process_server = details.process_server_id.as_deref().and_then(|id| {
        cs.process_servers
            .iter()
            .find(|ps| same(&ps.id, id))
            .and_then(|ps| ps.friendly_name.clone())
    });
    let master_target = details.master_target_id.as_deref().and_then(|id| {
        cs.master_target_servers
            .iter()
            .find(|mt| same(&mt.id, id))
            .and_then(|mt| mt.name.clone())
    });
    let datastore = match details.datastores.as_slice() {
        [only] => Some(only.clone()),
        _ => None,
    };
    let settings = AppliedSettings {
        master_target,
        process_server,
        datastore,
        retention_drive: None,
        recovery: None,
    };
    (settings != AppliedSettings::default()).then_some(settings)
}

/// A process server is unhealthy when its heartbeat is stale (a server that stopped
/// reporting also stopped reporting its errors), when `health` says `Warning` or `Critical`,
/// or when it reports health errors; healthy when `health` is `Normal` or the error list is
/// reported empty; unknown when ASR says nothing.
fn process_server(ps: &ProcessServer, now: Timestamp) -> ProcessServerFacts {
    let healthy = if fresh(ps.last_heartbeat.as_deref(), now) == Some(false) {
        Some(false)
    } else {
        match ps.health.as_deref() {
            Some("Normal") => Some(true),
            Some("Warning" | "Critical") => Some(false),
            _ => ps.health_errors.as_ref().map(Vec::is_empty),
        }
    };
    ProcessServerFacts { healthy }
}

/// A master target is unhealthy when its heartbeat is stale or it reports health or
/// validation errors; healthy when at least one of those lists is reported, empty; unknown
/// when ASR says nothing.
fn master_target_healthy(mt: &MasterTargetServer, now: Timestamp) -> Option<bool> {
    if fresh(mt.last_heartbeat.as_deref(), now) == Some(false) {
        return Some(false);
    }
    let lists = [&mt.health_errors, &mt.validation_errors];
    if lists
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
    {
        return Some(false);
    }
    lists.iter().any(|l| l.is_some()).then_some(true)
}

fn master_target(mt: &MasterTargetServer, now: Timestamp) -> MasterTargetFacts {
    MasterTargetFacts {
        os: mt.os_type.as_deref().and_then(parse_os),
        esxi_host: None,
        healthy: master_target_healthy(mt, now),
        snapshots: None,
        disks_attached: mt.disk_count,
        retention_volumes: mt.retention_volumes.as_ref().map(|volumes| {
            volumes
                .iter()
                .filter_map(|v| v.volume_name.clone())
                .collect()
        }),
        disk_uuids: None,
    }
}

fn disks_gib(disks: &[ProtectedDiskDetails]) -> Option<Vec<u64>> {
    const GIB: u64 = 1 << 30;
    if disks.is_empty() {
        return None;
    }
    // One disk without a capacity makes the list unknown rather than short.
    disks
        .iter()
        .map(|d| d.disk_capacity_in_bytes.map(|b| b.div_ceil(GIB)))
        .collect()
}

fn parse_os(os: &str) -> Option<Os> {
    if os.eq_ignore_ascii_case("windows") {
        Some(Os::Windows)
    } else if os.eq_ignore_ascii_case("linux") {
        Some(Os::Linux)
    } else {
        None
    }
}

fn parse_datastore_type(kind: &str) -> Option<DatastoreType> {
    match kind.to_ascii_lowercase().as_str() {
        "vmfs" => Some(DatastoreType::Vmfs),
        "vsan" => Some(DatastoreType::Vsan),
        "nfs" => Some(DatastoreType::Nfs),
        _ => None,
    }
}

/// `discoveryStatus` is a free string in the definitions; only the values whose meaning is
/// plain are read, anything else is unknown.
fn discovered(status: &str) -> Option<bool> {
    match status {
        "Completed" => Some(true),
        "Pending" | "InProgress" | "Failed" | "NotStarted" => Some(false),
        _ => None,
    }
}

/// Whether a heartbeat is recent; `None` when there is none or it does not parse.
fn fresh(heartbeat: Option<&str>, now: Timestamp) -> Option<bool> {
    let beat: Timestamp = heartbeat?.parse().ok()?;
    Some(now.duration_since(beat) <= HEARTBEAT_LOST_AFTER)
}
