//! The ARM / ASR types the provider reads, from `asr-api/definitions.json` (api-version
//! 2026-05-01).
//!
//! Every type is lenient on purpose: no `deny_unknown_fields` (ARM adds fields in new
//! api-versions and the provider must keep reading them), and every field the definitions do
//! not mark required is an `Option` or defaults to empty, also when it arrives as `null`. Only the fields the provider uses
//! are declared; serde ignores the rest.
//!
//! Polymorphic parts (`providerSpecificDetails`, `customDetails`) are parsed in two steps:
//! first as JSON, then by `instanceType` into the subtype the provider knows, or into `Other`
//! which keeps the `instanceType` so a caller can say what it got instead of failing.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One page of an ARM list (`…Collection`): `value` plus `nextLink` when there are more pages.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub struct Page<T> {
    /// Required by the definitions; a missing `value` is an empty page rather than an error,
    /// because an empty collection is what such a page means.
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: Vec<T>,
    /// The absolute URL of the next page; `None` on the last page.
    #[serde(default)]
    pub next_link: Option<String>,
}

/// The fields every ARM resource has (`Resource`/`ProxyResource`), plus its `properties`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "P: Deserialize<'de> + Default")
)]
pub struct Resource<P> {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    /// Optional in the definitions; a resource without it (or with `null`) is read as one with
    /// no properties.
    #[serde(default, deserialize_with = "null_as_default")]
    pub properties: P,
}

pub type ReplicationProtectedItem = Resource<ReplicationProtectedItemProperties>;
pub type Fabric = Resource<FabricProperties>;
pub type VCenter = Resource<VCenterProperties>;
pub type Job = Resource<JobProperties>;
pub type Policy = Resource<PolicyProperties>;

/// `ReplicationProtectedItemProperties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationProtectedItemProperties {
    /// The machine's name: lifeboat's machine name is this `friendlyName`.
    pub friendly_name: Option<String>,
    pub protected_item_type: Option<String>,
    /// `Primary` or `Recovery`: where the machine runs, relative to the direction the item was
    /// first protected in (primary = the VMware site for a VMware → Azure item).
    pub active_location: Option<String>,
    pub protection_state: Option<String>,
    pub protection_state_description: Option<String>,
    /// The operations ASR allows now (`ReplicationProtectedItemOperation` values:
    /// `ReverseReplicate`, `Commit`, `PlannedFailover`, `UnplannedFailover`, `Failback`, …).
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_operations: Vec<String>,
    pub replication_health: Option<String>,
    pub failover_health: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub health_errors: Vec<HealthError>,
    pub policy_id: Option<String>,
    pub policy_friendly_name: Option<String>,
    pub primary_fabric_friendly_name: Option<String>,
    pub recovery_fabric_friendly_name: Option<String>,
    pub current_scenario: Option<CurrentScenarioDetails>,
    pub provider_specific_details: Option<ReplicationProviderSpecificSettings>,
}

/// `CurrentScenarioDetails`: the job running on the item, if any.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentScenarioDetails {
    pub scenario_name: Option<String>,
    pub job_id: Option<String>,
    pub start_time: Option<String>,
}

/// `ReplicationProviderSpecificSettings`, discriminated by `instanceType`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub enum ReplicationProviderSpecificSettings {
    /// VMware/physical → Azure replication (the forward leg, and the leg home after failback).
    InMageAzureV2(Box<InMageAzureV2ReplicationDetails>),
    /// Azure → VMware replication (the reprotected failback leg).
    InMage(Box<InMageReplicationDetails>),
    /// Any other provider (`HyperVReplicaAzure`, `A2A`, `InMageRcm`, …), kept by name.
    Other { instance_type: String },
}

impl ReplicationProviderSpecificSettings {
    pub fn instance_type(&self) -> &str {
        match self {
            Self::InMageAzureV2(_) => "InMageAzureV2",
            Self::InMage(_) => "InMage",
            Self::Other { instance_type } => instance_type,
        }
    }
}

impl TryFrom<Value> for ReplicationProviderSpecificSettings {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match instance_type(&value)?.as_str() {
            "InMageAzureV2" => subtype(value, "InMageAzureV2").map(Self::InMageAzureV2),
            "InMage" => subtype(value, "InMage").map(Self::InMage),
            other => Ok(Self::Other {
                instance_type: other.to_string(),
            }),
        }
    }
}

/// `InMageAzureV2ReplicationDetails` (only the fields the provider reads).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InMageAzureV2ReplicationDetails {
    pub protection_stage: Option<String>,
    pub vm_protection_state: Option<String>,
    pub process_server_id: Option<String>,
    pub process_server_name: Option<String>,
    pub master_target_id: Option<String>,
    /// `Windows` or `Linux`.
    pub os_type: Option<String>,
    pub os_name: Option<String>,
    #[serde(rename = "sourceVmRamSizeInMB")]
    pub source_vm_ram_size_in_mb: Option<u64>,
    /// `vCenter` or `physical`.
    pub discovery_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub protected_disks: Vec<ProtectedDiskDetails>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub datastores: Vec<String>,
    pub target_vm_id: Option<String>,
    pub recovery_azure_vm_name: Option<String>,
    pub last_heartbeat: Option<String>,
}

/// `InMageReplicationDetails` (only the fields the provider reads).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InMageReplicationDetails {
    /// `Azure` or `OnPrem` when the VM is protected from Azure (the failback leg).
    pub active_site_type: Option<String>,
    pub protection_stage: Option<String>,
    pub vm_protection_state: Option<String>,
    pub process_server_id: Option<String>,
    pub master_target_id: Option<String>,
    pub os_details: Option<OsDiskDetails>,
    #[serde(rename = "sourceVmRamSizeInMB")]
    pub source_vm_ram_size_in_mb: Option<u64>,
    pub discovery_type: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub protected_disks: Vec<ProtectedDiskDetails>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub datastores: Vec<String>,
    pub last_heartbeat: Option<String>,
}

/// `OSDiskDetails`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OsDiskDetails {
    pub os_type: Option<String>,
    pub vhd_name: Option<String>,
}

/// The part of `InMageProtectedDiskDetails` and `InMageAzureV2ProtectedDiskDetails` the
/// provider reads (both have these fields).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedDiskDetails {
    pub disk_id: Option<String>,
    pub disk_name: Option<String>,
    pub disk_capacity_in_bytes: Option<u64>,
}

/// `HealthError` (the fields worth showing a person).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthError {
    pub error_code: Option<String>,
    pub error_level: Option<String>,
    pub summary_message: Option<String>,
    pub error_message: Option<String>,
    pub recommended_action: Option<String>,
}

/// `FabricProperties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FabricProperties {
    pub friendly_name: Option<String>,
    pub health: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub health_error_details: Vec<HealthError>,
    pub custom_details: Option<FabricSpecificDetails>,
}

/// `FabricSpecificDetails`, discriminated by `instanceType`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "Value")]
pub enum FabricSpecificDetails {
    /// A configuration server (classic VMware/physical → Azure).
    VMware(Box<VMwareDetails>),
    /// `Azure`, `HyperVSite`, `VMM`, `InMageRcm`, … kept by name.
    Other { instance_type: String },
}

impl FabricSpecificDetails {
    pub fn instance_type(&self) -> &str {
        match self {
            Self::VMware(_) => "VMware",
            Self::Other { instance_type } => instance_type,
        }
    }
}

impl TryFrom<Value> for FabricSpecificDetails {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        match instance_type(&value)?.as_str() {
            "VMware" => subtype(value, "VMware").map(Self::VMware),
            other => Ok(Self::Other {
                instance_type: other.to_string(),
            }),
        }
    }
}

/// `VMwareDetails`: the configuration server, its process servers and master targets.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VMwareDetails {
    #[serde(default, deserialize_with = "null_as_default")]
    pub process_servers: Vec<ProcessServer>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub master_target_servers: Vec<MasterTargetServer>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub run_as_accounts: Vec<RunAsAccount>,
    pub host_name: Option<String>,
    pub ip_address: Option<String>,
    pub cs_service_status: Option<String>,
    /// The configuration server's last heartbeat (ISO 8601).
    pub last_heartbeat: Option<String>,
}

/// `ProcessServer`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessServer {
    pub friendly_name: Option<String>,
    pub id: Option<String>,
    pub ip_address: Option<String>,
    pub os_type: Option<String>,
    pub last_heartbeat: Option<String>,
    pub ps_service_status: Option<String>,
    /// `ProtectionHealth`: `None`, `Normal`, `Warning`, `Critical`.
    pub health: Option<String>,
    /// `None` when the field is absent, so "no errors reported" and "not reported" differ.
    pub health_errors: Option<Vec<HealthError>>,
}

/// `MasterTargetServer`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MasterTargetServer {
    pub id: Option<String>,
    pub name: Option<String>,
    pub ip_address: Option<String>,
    pub os_type: Option<String>,
    pub last_heartbeat: Option<String>,
    #[serde(default)]
    pub retention_volumes: Option<Vec<RetentionVolume>>,
    #[serde(default)]
    pub data_stores: Option<Vec<DataStore>>,
    pub health_errors: Option<Vec<HealthError>>,
    pub validation_errors: Option<Vec<HealthError>>,
    pub disk_count: Option<u32>,
}

/// `RetentionVolume`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionVolume {
    pub volume_name: Option<String>,
    pub capacity_in_bytes: Option<u64>,
    pub free_space_in_bytes: Option<u64>,
    pub threshold_percentage: Option<u32>,
}

/// `DataStore`. `capacity` and `freeSpace` are strings in GB in the definitions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataStore {
    pub symbolic_name: Option<String>,
    pub uuid: Option<String>,
    pub capacity: Option<String>,
    pub free_space: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `RunAsAccount`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunAsAccount {
    pub account_id: Option<String>,
    pub account_name: Option<String>,
}

/// `VCenterProperties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VCenterProperties {
    pub friendly_name: Option<String>,
    pub internal_id: Option<String>,
    pub last_heartbeat: Option<String>,
    pub discovery_status: Option<String>,
    pub process_server_id: Option<String>,
    pub ip_address: Option<String>,
    pub run_as_account_id: Option<String>,
    pub fabric_arm_resource_name: Option<String>,
    pub health_errors: Option<Vec<HealthError>>,
}

/// `JobProperties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProperties {
    pub activity_id: Option<String>,
    pub scenario_name: Option<String>,
    pub friendly_name: Option<String>,
    /// Kept as text; [`JobProperties::job_state`] reads it.
    pub state: Option<String>,
    pub state_description: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub errors: Vec<JobErrorDetails>,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub allowed_actions: Vec<String>,
    pub target_object_id: Option<String>,
    pub target_object_name: Option<String>,
    pub target_instance_type: Option<String>,
}

impl JobProperties {
    pub fn job_state(&self) -> JobState {
        JobState::parse(self.state.as_deref())
    }
}

/// A job's `state` ("one of NotStarted, InProgress, Succeeded, Failed, Cancelled, Suspended
/// or Other" per the definitions; a plain string there, so unknown values are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    NotStarted,
    InProgress,
    Succeeded,
    Failed,
    Cancelled,
    Suspended,
    /// `Other`, a value newer than these definitions, or no state at all.
    Other(Option<String>),
}

impl JobState {
    /// Case-insensitive, and both spellings of cancelled count: the definitions say
    /// `Cancelled`, while ARM's async-operation statuses say `Canceled`.
    pub fn parse(state: Option<&str>) -> Self {
        let Some(text) = state else {
            return Self::Other(None);
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "notstarted" => Self::NotStarted,
            "inprogress" => Self::InProgress,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" | "canceled" => Self::Cancelled,
            "suspended" => Self::Suspended,
            _ => Self::Other(Some(text.to_string())),
        }
    }

    /// Whether the job has ended (successfully or not).
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// `JobErrorDetails`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobErrorDetails {
    pub service_error_details: Option<ServiceError>,
    pub provider_error_details: Option<ProviderErrorDetails>,
    pub error_level: Option<String>,
    pub creation_time: Option<String>,
    pub task_id: Option<String>,
}

impl JobErrorDetails {
    /// The ASR error code (e.g. `78093`): the service error's, else the provider error's.
    pub fn code(&self) -> Option<String> {
        self.service_error_details
            .as_ref()
            .and_then(|e| e.code.clone())
            .or_else(|| {
                self.provider_error_details
                    .as_ref()
                    .and_then(|e| e.error_code.clone())
            })
    }

    pub fn message(&self) -> Option<String> {
        self.service_error_details
            .as_ref()
            .and_then(|e| e.message.clone())
            .or_else(|| {
                self.provider_error_details
                    .as_ref()
                    .and_then(|e| e.error_message.clone())
            })
    }
}

/// `ServiceError`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub possible_causes: Option<String>,
    pub recommended_action: Option<String>,
    pub activity_id: Option<String>,
}

/// `ProviderError` (the ASR definition, not the engine's error type).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderErrorDetails {
    /// An integer in the definitions, but sent as a string by some services: either is read.
    #[serde(default, deserialize_with = "string_or_number")]
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub error_id: Option<String>,
    pub possible_causes: Option<String>,
    pub recommended_action: Option<String>,
}

/// `PolicyProperties`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProperties {
    pub friendly_name: Option<String>,
    pub provider_specific_details: Option<PolicyProviderSpecificDetails>,
}

/// The `instanceType` of `PolicyProviderSpecificDetails`: the provider only needs to know
/// which kind of policy it is (`InMage` is the failback policy ASR creates).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyProviderSpecificDetails {
    pub instance_type: String,
}

/// The ARM error body (`ErrorResponse` in common-types v5; ASR calls it `CloudError`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CloudError {
    pub error: Option<ErrorDetail>,
}

/// `ErrorDetail`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ErrorDetail {
    pub code: Option<String>,
    pub message: Option<String>,
    pub target: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub details: Vec<ErrorDetail>,
}

/// Reads JSON `null` as the type's default: ARM services send `null` for an empty array
/// where the definitions say "array", and one such field must not fail a whole page.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A code that may come as a JSON number or a string (`null` is none).
fn string_or_number<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(code)) => Ok(Some(code)),
        Some(Value::Number(code)) => Ok(Some(code.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "`errorCode` is neither a number nor a string: {other}"
        ))),
    }
}

fn instance_type(value: &Value) -> Result<String, String> {
    match value.get("instanceType") {
        Some(Value::String(kind)) => Ok(kind.clone()),
        Some(other) => Err(format!("`instanceType` is not a string: {other}")),
        None => Err("`instanceType` is missing".to_string()),
    }
}

fn subtype<T: DeserializeOwned>(value: Value, kind: &str) -> Result<Box<T>, String> {
    serde_json::from_value(value)
        .map(Box::new)
        .map_err(|error| format!("`{kind}` details: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn null_arrays_read_as_empty() {
        let page: Page<ReplicationProtectedItem> = serde_json::from_value(json!({
            "value": [{
                "name": "web-01-item",
                "properties": {
                    "friendlyName": "web-01",
                    "allowedOperations": null,
                    "healthErrors": null,
                    "providerSpecificDetails": {
                        "instanceType": "InMage",
                        "protectedDisks": null,
                        "datastores": null,
                    },
                },
            }, {"name": "bare", "properties": null}],
            "nextLink": null,
        }))
        .expect("nulls are empty");
        assert_eq!(page.value.len(), 2);
        assert!(page.value[0].properties.allowed_operations.is_empty());
        assert!(page.value[1].properties.friendly_name.is_none());

        let page: Page<Fabric> = serde_json::from_value(json!({"value": null})).expect("page");
        assert!(page.value.is_empty());
        let fabric: Fabric = serde_json::from_value(json!({
            "properties": {
                "healthErrorDetails": null,
                "customDetails": {
                    "instanceType": "VMware",
                    "processServers": null,
                    "masterTargetServers": null,
                    "runAsAccounts": null,
                },
            },
        }))
        .expect("fabric");
        assert!(matches!(
            fabric.properties.custom_details,
            Some(FabricSpecificDetails::VMware(_))
        ));
    }

    #[test]
    fn job_errors_and_codes_as_numbers_strings_or_null() {
        let job: Job = serde_json::from_value(json!({
            "name": "job-1",
            "properties": {
                "state": "Failed",
                "allowedActions": null,
                "errors": [
                    {"providerErrorDetails": {"errorCode": "78093", "errorMessage": "hung"}},
                    {"providerErrorDetails": {"errorCode": 8061}},
                    {"providerErrorDetails": {"errorCode": null}},
                ],
            },
        }))
        .expect("job");
        let codes: Vec<Option<String>> = job.properties.errors.iter().map(|e| e.code()).collect();
        assert_eq!(codes, [Some("78093".into()), Some("8061".into()), None]);
        let job: Job =
            serde_json::from_value(json!({"properties": {"errors": null}})).expect("job");
        assert!(job.properties.errors.is_empty());
    }
}
