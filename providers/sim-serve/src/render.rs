//! World facts rendered as ASR resources, so that the `azure` provider's mapping
//! (docs/azure.md, name and stage tables) recovers the names, stages and facts the `sim`
//! provider would report. Only fields of `definitions.json` are written: the tests validate
//! every body against it.

use lifeboat_engine::model::Os;
use lifeboat_engine::provider::Stage;
use lifeboat_engine::provider::facts::SourceKind;
use lifeboat_provider_sim::World;
use lifeboat_provider_sim::world::{Machine, RunningOperation};
use serde_json::{Value, json};

/// The ARM names of the one vault served, and of the resources in it.
#[derive(Debug, Clone)]
pub struct Vault {
    pub subscription: String,
    pub resource_group: String,
    pub name: String,
}

/// The VMware fabric (the configuration server's) and the Azure one. ASR names fabrics with
/// opaque strings; the client must go by `friendlyName`, so these differ from it on purpose.
pub const VMWARE_FABRIC: &str = "vmware-fabric";
pub const AZURE_FABRIC: &str = "azure-fabric";
/// The protection container every item lives in.
pub const CONTAINER: &str = "vmware-container";
/// The `InMage` policy (the failback policy ASR creates) and the `InMageAzureV2` one.
pub const FAILBACK_POLICY: &str = "failback-policy";
pub const REPLICATION_POLICY: &str = "replication-policy";

/// ASR's `agentExpiryDate` of an agent that never expires: recorded without an offset.
const AGENT_EXPIRY: &str = "9999-12-31T23:59:59.9999999";

/// The size reported for every retention volume (the world does not model it): 32 GiB.
const RETENTION_BYTES: u64 = 32 << 30;

/// A retention volume as ASR names it: a Windows drive without its colon (`D`, `F` in the
/// recorded sessions), a Linux mount point as it is.
pub fn volume_name(volume: &str) -> &str {
    match volume.strip_suffix(':') {
        Some(letter) if letter.len() == 1 && letter.chars().all(|c| c.is_ascii_alphabetic()) => {
            letter
        }
        _ => volume,
    }
}

/// The `accountId` of the configuration server's `i`th run-as account: small numbers as
/// strings, as recorded (`"1"`, `"2"`, …).
pub fn run_as_account_id(i: usize) -> String {
    (i + 1).to_string()
}

/// The idle `currentScenario` of an item no job runs on, exactly as recorded: a scenario
/// `None`, the job `None` and a start in 1753. A client must not await it.
pub const IDLE_JOB: &str = "None";
const IDLE_START: &str = "1753-01-01T01:01:01Z";

/// How long ago a lost component's last heartbeat was: well past the 15 minutes after which
/// the client counts it as lost.
const LOST_HEARTBEAT: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

impl Vault {
    pub fn base(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    pub fn fabric_id(&self, fabric: &str) -> String {
        format!("{}/replicationFabrics/{fabric}", self.base())
    }

    pub fn item_id(&self, machine: &str) -> String {
        format!(
            "{}/replicationProtectionContainers/{CONTAINER}/replicationProtectedItems/{}",
            self.fabric_id(VMWARE_FABRIC),
            item_name(machine)
        )
    }

    pub fn policy_id(&self, policy: &str) -> String {
        format!("{}/replicationPolicies/{policy}", self.base())
    }

    pub fn job_id(&self, job: &str) -> String {
        format!("{}/replicationJobs/{job}", self.base())
    }
}

/// The ARM name of a machine's protected item (its `friendlyName` is the machine's name).
pub fn item_name(machine: &str) -> String {
    format!("item-{machine}")
}

/// The machine of an item's ARM name.
pub fn machine_of_item(item: &str) -> Option<&str> {
    item.strip_prefix("item-")
}

/// The id ASR gives a master target (`MasterTargetServer.id`).
pub fn master_target_id(name: &str) -> String {
    format!("MT-{name}")
}

/// The id ASR gives a process server (`ProcessServer.id`).
pub fn process_server_id(name: &str) -> String {
    format!("PS-{name}")
}

fn vcenter_name(name: &str) -> String {
    format!("vcenter-{name}")
}

fn os_type(os: Os) -> &'static str {
    match os {
        Os::Windows => "Windows",
        Os::Linux => "Linux",
    }
}

fn heartbeat(alive: bool, now: jiff::Timestamp) -> String {
    if alive {
        now.to_string()
    } else {
        now.saturating_sub(LOST_HEARTBEAT)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_string()
    }
}

fn health_errors(healthy: bool, code: &str, message: &str) -> Value {
    if healthy {
        json!([])
    } else {
        json!([{"errorCode": code, "errorLevel": "Error", "summaryMessage": message}])
    }
}

/// Both fabrics, the VMware one first.
pub fn fabrics(vault: &Vault, world: &World, now: jiff::Timestamp) -> Vec<Value> {
    vec![vmware_fabric(vault, world, now), azure_fabric(vault)]
}

pub fn fabric(vault: &Vault, world: &World, now: jiff::Timestamp, name: &str) -> Option<Value> {
    fabrics(vault, world, now).into_iter().find(|f| {
        f["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

fn vmware_fabric(vault: &Vault, world: &World, now: jiff::Timestamp) -> Value {
    let cs = &world.configuration_server;
    let process_servers: Vec<Value> = world
        .process_servers
        .iter()
        .map(|(name, ps)| {
            json!({
                "friendlyName": name,
                "id": process_server_id(name),
                "osType": "Windows",
                "lastHeartbeat": heartbeat(ps.healthy, now),
                // As recorded: a date without an offset, and counts as decimal strings.
                "agentExpiryDate": AGENT_EXPIRY,
                "machineCount": "0",
                "psServiceStatus": if ps.healthy { "Running" } else { "Stopped" },
                "health": if ps.healthy { "Normal" } else { "Critical" },
                "healthErrors": health_errors(ps.healthy, "ECH00011", "the process server is not healthy"),
            })
        })
        .collect();
    let master_targets: Vec<Value> = world
        .master_targets
        .iter()
        .map(|(name, mt)| {
            let data_stores: Vec<Value> = world
                .esxi_hosts
                .get(&mt.esxi_host.value)
                .map(|host| {
                    host.datastores
                        .iter()
                        .filter_map(|(ds, _)| {
                            let facts = world.datastores.get(&ds.value)?;
                            // GB as a decimal string, as recorded (`"154.11"`).
                            Some(json!({
                                "symbolicName": ds.value,
                                "uuid": format!("ds-{}", ds.value),
                                "freeSpace": format!("{}.00", facts.free_gib),
                                "type": facts.kind.as_str(),
                            }))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let retention: Vec<Value> = mt
                .retention_volumes
                .iter()
                .map(|volume| {
                    json!({
                        "volumeName": volume_name(volume),
                        "capacityInBytes": RETENTION_BYTES,
                        "freeSpaceInBytes": RETENTION_BYTES,
                    })
                })
                .collect();
            json!({
                "id": master_target_id(name),
                "name": name,
                "osType": os_type(mt.os),
                "lastHeartbeat": heartbeat(mt.healthy, now),
                "retentionVolumes": retention,
                "dataStores": data_stores,
                "healthErrors": health_errors(mt.healthy, "EMT00001", "the master target is not healthy"),
                "validationErrors": [],
                "diskCount": mt.disks_attached,
                "agentExpiryDate": AGENT_EXPIRY,
            })
        })
        // Every process server has a master target of its own, listed with the same id and
        // name (as recorded); the reprotect to Azure names it as `masterTargetId`.
        .chain(world.process_servers.iter().map(|(name, ps)| {
            json!({
                "id": process_server_id(name),
                "name": name,
                "osType": "Windows",
                "lastHeartbeat": heartbeat(ps.healthy, now),
                "retentionVolumes": [],
                "dataStores": [],
                "healthErrors": [],
                "validationErrors": [],
                "diskCount": 0,
                "agentExpiryDate": AGENT_EXPIRY,
            })
        }))
        .collect();
    let run_as_accounts: Vec<Value> = cs
        .run_as_accounts
        .iter()
        .enumerate()
        .map(|(i, account)| json!({"accountId": run_as_account_id(i), "accountName": account}))
        .collect();
    json!({
        "id": vault.fabric_id(VMWARE_FABRIC),
        "name": VMWARE_FABRIC,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics",
        "properties": {
            "friendlyName": cs.name,
            "health": if cs.connected { "Normal" } else { "Critical" },
            "healthErrorDetails": [],
            "customDetails": {
                "instanceType": "VMware",
                "hostName": cs.name,
                "csServiceStatus": if cs.connected { "Running" } else { "Stopped" },
                "lastHeartbeat": heartbeat(cs.connected, now),
                "processServers": process_servers,
                "masterTargetServers": master_targets,
                "runAsAccounts": run_as_accounts,
            },
        },
    })
}

/// The Azure fabric. Its `customDetails` (`instanceType: Azure`) are left out because
/// `definitions.json` keeps no `Azure` subtype, and a body the definitions cannot describe
/// would fail the emulator's own validation.
fn azure_fabric(vault: &Vault) -> Value {
    json!({
        "id": vault.fabric_id(AZURE_FABRIC),
        "name": AZURE_FABRIC,
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics",
        "location": "westeurope",
        "properties": {"friendlyName": "Azure", "health": "Normal", "healthErrorDetails": []},
    })
}

pub fn vcenters(vault: &Vault, world: &World, now: jiff::Timestamp) -> Vec<Value> {
    world
        .vcenters
        .iter()
        .map(|(name, vc)| {
            let arm = vcenter_name(name);
            json!({
                "id": format!("{}/replicationvCenters/{arm}", vault.fabric_id(VMWARE_FABRIC)),
                "name": arm,
                "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationvCenters",
                "properties": {
                    "friendlyName": name,
                    "internalId": arm,
                    "lastHeartbeat": heartbeat(vc.connected, now),
                    "discoveryStatus": if vc.discovered { "Completed" } else { "Pending" },
                    "port": "443",
                    "fabricArmResourceName": VMWARE_FABRIC,
                    "healthErrors": [],
                },
            })
        })
        .collect()
}

pub fn policies(vault: &Vault) -> Vec<Value> {
    vec![
        json!({
            "id": vault.policy_id(FAILBACK_POLICY),
            "name": FAILBACK_POLICY,
            "type": "Microsoft.RecoveryServices/vaults/replicationPolicies",
            "properties": {
                "friendlyName": FAILBACK_POLICY,
                "providerSpecificDetails": {
                    "instanceType": "InMage",
                    "recoveryPointThresholdInMinutes": 15,
                    "recoveryPointHistory": 1440,
                    "appConsistentFrequencyInMinutes": 60,
                    "multiVmSyncStatus": "Enabled",
                },
            },
        }),
        json!({
            "id": vault.policy_id(REPLICATION_POLICY),
            "name": REPLICATION_POLICY,
            "type": "Microsoft.RecoveryServices/vaults/replicationPolicies",
            "properties": {
                "friendlyName": REPLICATION_POLICY,
                "providerSpecificDetails": {
                    "instanceType": "InMageAzureV2",
                    "crashConsistentFrequencyInMinutes": 5,
                    "recoveryPointThresholdInMinutes": 15,
                    "recoveryPointHistory": 1440,
                    "appConsistentFrequencyInMinutes": 60,
                    "multiVmSyncStatus": "Enabled",
                },
            },
        }),
    ]
}

/// How a stage shows in ASR: the inverse of the client's stage table (docs/azure.md), as
/// Microsoft's recorded sessions show it where they do (reprotected, committed, protected).
struct Shape {
    /// `true`: `InMage` (Azure → VMware); `false`: `InMageAzureV2` (VMware → Azure).
    in_mage: bool,
    /// `activeSiteType` of an `InMage` item: running in Azure.
    in_azure: bool,
    /// `activeLocation`, relative to the item's own provider: an `InMage` item running in
    /// Azure is at its `Primary` (recorded), and at `Recovery` after the failback.
    active_location: &'static str,
    allowed: &'static [&'static str],
    state: &'static str,
}

fn shape(stage: Stage) -> Shape {
    match stage {
        Stage::FailedOver => Shape {
            in_mage: false,
            in_azure: true,
            active_location: "Recovery",
            allowed: &["ReverseReplicate", "DisableProtection"],
            state: "FailedOverCommitted",
        },
        Stage::Reprotected => Shape {
            in_mage: true,
            in_azure: true,
            active_location: "Primary",
            allowed: &["UnplannedFailover", "DisableProtection"],
            state: "Protected",
        },
        Stage::FailedBack => Shape {
            in_mage: true,
            in_azure: false,
            active_location: "Recovery",
            allowed: &["Commit", "DisableProtection"],
            state: "UnplannedFailoverCommitPending",
        },
        Stage::Committed => Shape {
            in_mage: true,
            in_azure: false,
            active_location: "Recovery",
            allowed: &["CompleteMigration", "DisableProtection", "SwitchProtection"],
            state: "UnplannedFailoverCommitted",
        },
        Stage::Protected => Shape {
            in_mage: false,
            in_azure: false,
            active_location: "Primary",
            allowed: &["UnplannedFailover", "DisableProtection", "TestFailover"],
            state: "Protected",
        },
    }
}

/// ASR's name for the job scenario of an operation.
pub fn scenario(kind: lifeboat_engine::provider::OperationKind) -> &'static str {
    use lifeboat_engine::provider::OperationKind;
    match kind {
        // As recorded for an item of a multi-VM group (every reprotect here is one).
        OperationKind::Reprotect | OperationKind::ReprotectHome => {
            "SwitchReplicationGroupProtection"
        }
        OperationKind::Failback => "UnplannedFailover",
        OperationKind::Commit => "Commit",
        // No recording shows this job; lifeboat's name for it.
        OperationKind::SwitchProcessServer => "SwitchProcessServer",
    }
}

pub fn items(vault: &Vault, world: &World) -> Vec<Value> {
    world
        .machines
        .iter()
        .map(|(name, machine)| {
            let running = world.running.iter().find(|op| &op.machine == name);
            item(vault, world, name, machine, running)
        })
        .collect()
}

pub fn item_of(vault: &Vault, world: &World, machine: &str) -> Option<Value> {
    let m = world.machines.get(machine)?;
    let running = world.running.iter().find(|op| op.machine == machine);
    Some(item(vault, world, machine, m, running))
}

fn item(
    vault: &Vault,
    world: &World,
    name: &str,
    machine: &Machine,
    running: Option<&RunningOperation>,
) -> Value {
    let shape = shape(machine.stage);
    // ASR empties `allowedOperations` while a job runs on the item; the client then takes
    // the lower stage, which is the one the world still records.
    let allowed: Vec<&str> = if running.is_some() {
        Vec::new()
    } else {
        shape.allowed.to_vec()
    };
    let disks: Vec<Value> = machine
        .disks_gib
        .iter()
        .enumerate()
        .map(|(i, gib)| {
            json!({
                "diskId": machine.disk_uuids.get(i).cloned().unwrap_or_else(|| format!("disk-{i}")),
                "diskName": format!("{name}-disk-{i}"),
                "diskCapacityInBytes": gib.saturating_mul(1 << 30),
            })
        })
        .collect();
    let discovery = if machine.source == SourceKind::Vmware {
        "vCenter"
    } else {
        "Physical"
    };
    let ram_mb = machine.memory_gib.saturating_mul(1024).min(i32::MAX as u64);
    let settings = &machine.settings;
    let mut details = if shape.in_mage {
        json!({
            "instanceType": "InMage",
            "activeSiteType": if shape.in_azure { "Azure" } else { "OnPrem" },
            "osDetails": {"osType": os_type(machine.os)},
            "sourceVmRamSizeInMB": ram_mb,
            "discoveryType": discovery,
            "protectedDisks": disks,
        })
    } else {
        json!({
            "instanceType": "InMageAzureV2",
            "osType": os_type(machine.os),
            "sourceVmRamSizeInMB": ram_mb,
            "discoveryType": discovery,
            "protectedDisks": disks,
            "recoveryAzureVMName": name,
        })
    };
    if let Some(ps) = &settings.process_server {
        details["processServerId"] = json!(process_server_id(ps));
    }
    if let Some(mt) = &settings.master_target {
        details["masterTargetId"] = json!(master_target_id(mt));
    }
    if let Some(ds) = &settings.datastore {
        details["datastores"] = json!([ds]);
    }
    let policy = if shape.in_mage {
        FAILBACK_POLICY
    } else {
        REPLICATION_POLICY
    };
    let mut properties = json!({
        "friendlyName": name,
        "protectedItemType": "VMwareVirtualMachine",
        "primaryFabricFriendlyName": world.configuration_server.name,
        "recoveryFabricFriendlyName": "Azure",
        "primaryProtectionContainerFriendlyName": CONTAINER,
        "protectionState": shape.state,
        "protectionStateDescription": shape.state,
        "activeLocation": shape.active_location,
        "allowedOperations": allowed,
        "replicationHealth": "Normal",
        "failoverHealth": "Normal",
        "healthErrors": [],
        "policyId": vault.policy_id(policy),
        "policyFriendlyName": policy,
        "providerSpecificDetails": details,
    });
    properties["currentScenario"] = match running {
        Some(op) => json!({
            "scenarioName": scenario(op.kind),
            "jobId": vault.job_id(&op.id.0),
            "startTime": op.started_at.0.to_string(),
        }),
        None => json!({
            "scenarioName": IDLE_JOB,
            "jobId": vault.job_id(IDLE_JOB),
            "startTime": IDLE_START,
        }),
    };
    json!({
        "id": vault.item_id(name),
        "name": item_name(name),
        "type": "Microsoft.RecoveryServices/vaults/replicationFabrics/replicationProtectionContainers/replicationProtectedItems",
        "properties": properties,
    })
}
