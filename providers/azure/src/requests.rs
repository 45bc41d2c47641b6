//! URL paths (per `asr-api/paths.md`) and request bodies of the five operations, and the
//! resolver that turns the plan's names into the ARM ids those bodies need.
//!
//! | lifeboat | ASR operation | direction | body |
//! |---|---|---|---|
//! | `reprotect` | `ReplicationProtectedItems_Reprotect` (`reProtect`) | `RecoveryToPrimary` | `ReverseReplicationInput`, `InMageReprotectInput` |
//! | `failback` | `ReplicationProtectedItems_UnplannedFailover` | `PrimaryToRecovery` | `UnplannedFailoverInput`, `InMageUnplannedFailoverInput` |
//! | `commit` | `ReplicationProtectedItems_FailoverCommit` | | none |
//! | `reprotect-home` | `ReplicationProtectedItems_Reprotect` (`reProtect`) | `RecoveryToPrimary` | `ReverseReplicationInput`, `InMageAzureV2ReprotectInput` |
//! | `switch-process-server` | `ReplicationFabrics_ReassociateGateway` | | `FailoverProcessServerRequest` |
//!
//! The directions are what Microsoft's recorded sessions against a real vault send
//! (Azure/azure-powershell, `SessionRecords/…AsrV2ATests/V2ATestFailback.json` and
//! `V2ATestReprotect.json`; fixtures in `tests/fixtures/recorded/`). Both reprotects say
//! `RecoveryToPrimary`, whichever way they replicate. The failback of an `InMage` item says
//! `PrimaryToRecovery`: for the item's own provider, the Azure side is now its primary (its
//! `activeLocation` is `Primary` while it runs in Azure), and Microsoft's cmdlet refuses
//! `RecoveryToPrimary` for `InMage` outright.
//!
//! Failback is the *unplanned* failover because only `UnplannedFailoverProviderSpecificInput`
//! has an `InMage` subtype (`InMageUnplannedFailoverInput`); the planned one has none in the
//! 2026-05-01 definitions, so an InMage planned failover cannot be expressed.

use serde_json::{Value, json};

use lifeboat_engine::provider::{HomeSettings, ReprotectSettings, same_retention_drive};

use crate::arm::{Fabric, FabricSpecificDetails, MasterTargetServer, Policy, VMwareDetails};

/// The vault every path starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vault {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

impl Vault {
    fn base(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }
}

/// `ReplicationProtectedItems_List` (vault-wide, paged by `nextLink`).
pub fn protected_items_path(vault: &Vault, api_version: &str) -> String {
    format!(
        "{}/replicationProtectedItems?api-version={api_version}",
        vault.base()
    )
}

/// `ReplicationFabrics_List` (paged by `nextLink`).
pub fn fabrics_path(vault: &Vault, api_version: &str) -> String {
    format!(
        "{}/replicationFabrics?api-version={api_version}",
        vault.base()
    )
}

/// `ReplicationvCenters_List` (vault-wide, paged by `nextLink`).
pub fn vcenters_path(vault: &Vault, api_version: &str) -> String {
    format!(
        "{}/replicationvCenters?api-version={api_version}",
        vault.base()
    )
}

/// `ReplicationPolicies_List` (paged by `nextLink`).
pub fn policies_path(vault: &Vault, api_version: &str) -> String {
    format!(
        "{}/replicationPolicies?api-version={api_version}",
        vault.base()
    )
}

/// `ReplicationJobs_Get`: how a long-running operation is followed (the job is ASR's id of
/// the operation).
pub fn job_path(vault: &Vault, job: &str, api_version: &str) -> String {
    format!(
        "{}/replicationJobs/{job}?api-version={api_version}",
        vault.base()
    )
}

/// Where a protected item is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedItemRef {
    pub fabric: String,
    pub container: String,
    pub item: String,
}

impl ProtectedItemRef {
    /// From an item's ARM `id`, which ASR returns with a capital `Subscriptions` segment; the
    /// segment names are matched without regard to case for that reason.
    pub fn from_id(id: &str) -> Option<Self> {
        let segments: Vec<&str> = id.split('/').collect();
        let after = |key: &str| {
            segments
                .iter()
                .position(|segment| segment.eq_ignore_ascii_case(key))
                .and_then(|at| segments.get(at + 1))
                .map(|value| value.to_string())
        };
        Some(Self {
            fabric: after("replicationFabrics")?,
            container: after("replicationProtectionContainers")?,
            item: after("replicationProtectedItems")?,
        })
    }

    fn base(&self, vault: &Vault) -> String {
        format!(
            "{}/replicationFabrics/{}/replicationProtectionContainers/{}/replicationProtectedItems/{}",
            vault.base(),
            self.fabric,
            self.container,
            self.item
        )
    }
}

/// One request: method, path with query, and body (`None`: the operation takes none).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub body: Option<Value>,
}

/// The volume label of the Azure temporary disk. Microsoft's client always asks the failback
/// reprotect to leave out the disk whose only volume carries it (`Update-AzRecoveryServicesAsr
/// ProtectionDirection -AzureToVMware`): the temporary disk is scratch space Azure recreates,
/// and the VMware VM has no place for it.
pub const AZURE_TEMPORARY_DISK_LABEL: &str = "Temporary Storage";

/// The ids a failback reprotect needs, resolved from the fabric ([`Resolver::reprotect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMageReprotect {
    pub master_target_id: String,
    pub process_server_id: String,
    /// A `RetentionVolume.volumeName` of that master target, spelt as ASR reports it (`R`
    /// for the plan's `R:`).
    pub retention_drive: String,
    /// The failback (`InMage`) policy's ARM id.
    pub profile_id: String,
    /// A `DataStore.symbolicName` the master target sees.
    pub datastore_name: Option<String>,
}

/// What the reprotect back to Azure sends ([`Resolver::home`]). Every field of
/// `InMageAzureV2ReprotectInput` is optional in the definitions, but Microsoft's recorded
/// session sends these four and its cmdlet makes the process server mandatory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InMageAzureV2Reprotect {
    pub process_server_id: String,
    /// The process server's own master target: the recorded session sends the same id as
    /// both.
    pub master_target_id: String,
    pub run_as_account_id: String,
    /// The VMware-to-Azure (`InMageAzureV2`) policy's ARM id.
    pub policy_id: String,
}

/// `reprotect`: replication Azure → VMware (`failoverDirection: RecoveryToPrimary`).
pub fn reprotect(
    vault: &Vault,
    item: &ProtectedItemRef,
    ids: &InMageReprotect,
    api_version: &str,
) -> Request {
    let mut details = json!({
        "instanceType": "InMage",
        "masterTargetId": ids.master_target_id,
        "processServerId": ids.process_server_id,
        "retentionDrive": ids.retention_drive,
        "profileId": ids.profile_id,
    });
    if let Some(details) = details.as_object_mut() {
        if let Some(datastore) = &ids.datastore_name {
            details.insert("datastoreName".into(), json!(datastore));
        }
        details.insert(
            "diskExclusionInput".into(),
            json!({
                "volumeOptions": [{
                    "volumeLabel": AZURE_TEMPORARY_DISK_LABEL,
                    "onlyExcludeIfSingleVolume": "true",
                }],
            }),
        );
    }
    Request {
        method: "POST",
        path: format!("{}/reProtect?api-version={api_version}", item.base(vault)),
        body: Some(json!({
            "properties": {
                "failoverDirection": "RecoveryToPrimary",
                "providerSpecificDetails": details,
            }
        })),
    }
}

/// `failback`: the failover Azure → VMware, to the latest point in time; `PrimaryToRecovery`,
/// as the recorded session sends it (see the module documentation). `sourceSiteOperations:
/// Required` shuts the Azure VM down first, so nothing writes to it after the last change was
/// shipped home (the recorded session, a test, sends `NotRequired`).
pub fn failback(vault: &Vault, item: &ProtectedItemRef, api_version: &str) -> Request {
    Request {
        method: "POST",
        path: format!(
            "{}/unplannedFailover?api-version={api_version}",
            item.base(vault)
        ),
        body: Some(json!({
            "properties": {
                "failoverDirection": "PrimaryToRecovery",
                "sourceSiteOperations": "Required",
                "providerSpecificDetails": {
                    "instanceType": "InMage",
                    "recoveryPointType": "LatestTime",
                },
            }
        })),
    }
}

/// `commit`: `failoverCommit`, which takes no body.
pub fn commit(vault: &Vault, item: &ProtectedItemRef, api_version: &str) -> Request {
    Request {
        method: "POST",
        path: format!(
            "{}/failoverCommit?api-version={api_version}",
            item.base(vault)
        ),
        body: None,
    }
}

/// `reprotect-home`: replication VMware → Azure again, `failoverDirection: RecoveryToPrimary`
/// and `InMageAzureV2ReprotectInput`, exactly the shape of Microsoft's recorded session.
pub fn reprotect_home(
    vault: &Vault,
    item: &ProtectedItemRef,
    ids: &InMageAzureV2Reprotect,
    api_version: &str,
) -> Request {
    Request {
        method: "POST",
        path: format!("{}/reProtect?api-version={api_version}", item.base(vault)),
        body: Some(json!({
            "properties": {
                "failoverDirection": "RecoveryToPrimary",
                "providerSpecificDetails": {
                    "instanceType": "InMageAzureV2",
                    "masterTargetId": ids.master_target_id,
                    "processServerId": ids.process_server_id,
                    "runAsAccountId": ids.run_as_account_id,
                    "policyId": ids.policy_id,
                },
            }
        })),
    }
}

/// `switch-process-server`: ASR's `reassociateGateway` on the item's fabric, moving this one
/// item's replication from its process server to another. The body follows the only official
/// example (`asr-api/examples/ReplicationFabrics_ReassociateGateway.json`): the item's
/// protection container, both process servers' ids, `updateType: ServerLevel` and the item in
/// `vmsToMigrate`.
pub fn switch_process_server(
    vault: &Vault,
    item: &ProtectedItemRef,
    source_process_server_id: &str,
    target_process_server_id: &str,
    api_version: &str,
) -> Request {
    Request {
        method: "POST",
        path: format!(
            "{}/replicationFabrics/{}/reassociateGateway?api-version={api_version}",
            vault.base(),
            item.fabric
        ),
        body: Some(json!({
            "properties": {
                "containerName": item.container,
                "sourceProcessServerId": source_process_server_id,
                "targetProcessServerId": target_process_server_id,
                "updateType": "ServerLevel",
                "vmsToMigrate": [item.item],
            }
        })),
    }
}

/// A name of the plan that does not resolve to an ARM id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the vault has no configuration server (`VMware` fabric) named `{0}`")]
    NoConfigurationServer(String),
    #[error("master target `{0}` is not registered with the configuration server")]
    MasterTarget(String),
    #[error("master target `{0}` has no id")]
    MasterTargetWithoutId(String),
    #[error("process server `{0}` is not registered with the configuration server")]
    ProcessServer(String),
    #[error("process server `{0}` has no id")]
    ProcessServerWithoutId(String),
    #[error("master target `{master_target}` has no retention volume `{drive}`")]
    RetentionDrive {
        master_target: String,
        drive: String,
    },
    #[error("master target `{master_target}` sees no datastore `{datastore}`")]
    Datastore {
        master_target: String,
        datastore: String,
    },
    #[error(
        "`failback_policy: auto` needs exactly one `InMage` policy in the vault, found {0}; name the policy"
    )]
    AutoPolicy(usize),
    #[error("failback policy `{0}` is not an `InMage` policy of the vault")]
    Policy(String),
    #[error(
        "process server `{0}` has no master target of its own (a `MasterTargetServer` with its id), which the reprotect to Azure needs"
    )]
    HomeMasterTarget(String),
    #[error("the configuration server has no run-as account `{0}`")]
    RunAsAccount(String),
    #[error(
        "`policy: auto` needs exactly one VMware-to-Azure (`InMageAzureV2`) policy in the vault, found {0}; name the policy"
    )]
    AutoHomePolicy(usize),
    #[error("policy `{0}` is not a VMware-to-Azure (`InMageAzureV2`) policy of the vault")]
    HomePolicy(String),
}

/// Resolves the plan's names against what the vault reports.
///
/// Names: master target = `MasterTargetServer.name`, process server =
/// `ProcessServer.friendlyName`, retention drive = `RetentionVolume.volumeName`, datastore =
/// `DataStore.symbolicName`, failback policy = the `InMage` policy's `name` or
/// `friendlyName`, or with `auto` the only `InMage` policy (the one ASR created).
#[derive(Debug, Clone, Copy)]
pub struct Resolver<'a> {
    cs: &'a VMwareDetails,
    policies: &'a [Policy],
}

impl<'a> Resolver<'a> {
    /// Uses the `VMware` fabric named `fabric`: its ARM `name` (any case, as ARM names are),
    /// such as the fabric in the protected item's id, or its `friendlyName`, the configuration
    /// server's name that the facts use. A vault can have several configuration servers, and
    /// the first one found may not be the one whose facts were checked.
    pub fn new(
        fabrics: &'a [Fabric],
        policies: &'a [Policy],
        fabric: &str,
    ) -> Result<Self, ResolveError> {
        let cs = fabrics
            .iter()
            .filter(|f| {
                f.name
                    .as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(fabric))
                    || f.properties.friendly_name.as_deref() == Some(fabric)
            })
            .find_map(|f| match &f.properties.custom_details {
                Some(FabricSpecificDetails::VMware(details)) => Some(details.as_ref()),
                _ => None,
            })
            .ok_or_else(|| ResolveError::NoConfigurationServer(fabric.to_string()))?;
        Ok(Self { cs, policies })
    }

    pub fn master_target(&self, name: &str) -> Result<&'a MasterTargetServer, ResolveError> {
        self.cs
            .master_target_servers
            .iter()
            .find(|mt| mt.name.as_deref() == Some(name))
            .ok_or_else(|| ResolveError::MasterTarget(name.to_string()))
    }

    pub fn process_server_id(&self, name: &str) -> Result<String, ResolveError> {
        let ps = self
            .cs
            .process_servers
            .iter()
            .find(|ps| ps.friendly_name.as_deref() == Some(name))
            .ok_or_else(|| ResolveError::ProcessServer(name.to_string()))?;
        ps.id
            .clone()
            .ok_or_else(|| ResolveError::ProcessServerWithoutId(name.to_string()))
    }

    fn policies_of(&self, instance_type: &str) -> Vec<&'a Policy> {
        self.policies
            .iter()
            .filter(|p| {
                p.properties
                    .provider_specific_details
                    .as_ref()
                    .is_some_and(|d| d.instance_type == instance_type)
            })
            .collect()
    }

    /// The ids of the reprotect back to Azure, from the plan's `site.home`.
    pub fn home(&self, home: &HomeSettings) -> Result<InMageAzureV2Reprotect, ResolveError> {
        let process_server_id = self.process_server_id(&home.process_server)?;
        let master_target_id = self
            .cs
            .master_target_servers
            .iter()
            .filter_map(|mt| mt.id.as_deref())
            .find(|id| id.eq_ignore_ascii_case(&process_server_id))
            .map(str::to_string)
            .ok_or_else(|| ResolveError::HomeMasterTarget(home.process_server.clone()))?;
        let run_as_account_id = self
            .cs
            .run_as_accounts
            .iter()
            .find(|a| a.account_name.as_deref() == Some(home.run_as_account.as_str()))
            .and_then(|a| a.account_id.clone())
            .ok_or_else(|| ResolveError::RunAsAccount(home.run_as_account.clone()))?;
        let forward = self.policies_of("InMageAzureV2");
        let policy = if home.policy == "auto" {
            match forward.as_slice() {
                [only] => *only,
                other => return Err(ResolveError::AutoHomePolicy(other.len())),
            }
        } else {
            forward
                .into_iter()
                .find(|p| {
                    p.name.as_deref() == Some(home.policy.as_str())
                        || p.properties.friendly_name.as_deref() == Some(home.policy.as_str())
                })
                .ok_or_else(|| ResolveError::HomePolicy(home.policy.clone()))?
        };
        let policy_id = policy
            .id
            .clone()
            .ok_or_else(|| ResolveError::HomePolicy(home.policy.clone()))?;
        Ok(InMageAzureV2Reprotect {
            process_server_id,
            master_target_id,
            run_as_account_id,
            policy_id,
        })
    }

    pub fn failback_policy_id(&self, policy: &str) -> Result<String, ResolveError> {
        let inmage = self.policies_of("InMage");
        let found = if policy == "auto" {
            match inmage.as_slice() {
                [only] => *only,
                other => return Err(ResolveError::AutoPolicy(other.len())),
            }
        } else {
            inmage
                .into_iter()
                .find(|p| {
                    p.name.as_deref() == Some(policy)
                        || p.properties.friendly_name.as_deref() == Some(policy)
                })
                .ok_or_else(|| ResolveError::Policy(policy.to_string()))?
        };
        found
            .id
            .clone()
            .ok_or_else(|| ResolveError::Policy(policy.to_string()))
    }

    /// The ids of a failback reprotect. The retention drive and the datastore must be the
    /// master target's own, as ASR refuses others only after the job has started.
    pub fn reprotect(&self, settings: &ReprotectSettings) -> Result<InMageReprotect, ResolveError> {
        let mt = self.master_target(&settings.master_target)?;
        let master_target_id = mt
            .id
            .clone()
            .ok_or_else(|| ResolveError::MasterTargetWithoutId(settings.master_target.clone()))?;
        // ASR names Windows volumes without the colon (`D`, `F` in the recorded sessions);
        // the body carries the name as ASR reports it.
        let retention_drive = mt
            .retention_volumes
            .iter()
            .flatten()
            .filter_map(|volume| volume.volume_name.as_deref())
            .find(|name| same_retention_drive(name, &settings.retention_drive))
            .map(str::to_string)
            .ok_or_else(|| ResolveError::RetentionDrive {
                master_target: settings.master_target.clone(),
                drive: settings.retention_drive.clone(),
            })?;
        let has_datastore = mt.data_stores.iter().flatten().any(|datastore| {
            datastore.symbolic_name.as_deref() == Some(settings.datastore.as_str())
        });
        if !has_datastore {
            return Err(ResolveError::Datastore {
                master_target: settings.master_target.clone(),
                datastore: settings.datastore.clone(),
            });
        }
        Ok(InMageReprotect {
            master_target_id,
            process_server_id: self.process_server_id(&settings.process_server)?,
            retention_drive,
            profile_id: self.failback_policy_id(&settings.failback_policy)?,
            datastore_name: Some(settings.datastore.clone()),
        })
    }
}
