//! Every official example response in `asr-api/examples/` that the provider reads parses into
//! the provider's types, with the fields the provider relies on.

mod common;

use common::{example, example_body};
use lifeboat_provider_azure::arm::{
    Fabric, FabricSpecificDetails, Job, JobState, Page, Policy, ReplicationProtectedItem,
    ReplicationProviderSpecificSettings, VCenter,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn parse<T: DeserializeOwned>(body: Value, what: &str) -> T {
    serde_json::from_value(body).unwrap_or_else(|error| panic!("{what}: {error}"))
}

/// The example's only 200 body, checked to be there.
fn body(name: &str) -> Value {
    let body = example_body(name, "200");
    assert!(body.is_object(), "`{name}` has no 200 body");
    body
}

/// What every example protected item (all Hyper-V → Azure) has in common.
fn assert_example_item(item: &ReplicationProtectedItem) {
    assert_eq!(
        item.name.as_deref(),
        Some("f8491e4f-817a-40dd-a90c-af773978c75b")
    );
    assert_eq!(item.properties.friendly_name.as_deref(), Some("vm1"));
    let details = item
        .properties
        .provider_specific_details
        .as_ref()
        .expect("provider-specific details");
    assert_eq!(details.instance_type(), "HyperVReplicaAzure");
    assert!(
        matches!(details, ReplicationProviderSpecificSettings::Other { .. }),
        "a Hyper-V item is none of the subtypes the provider knows"
    );
}

#[test]
fn protected_item_get() {
    let item: ReplicationProtectedItem = parse(body("ReplicationProtectedItems_Get.json"), "get");
    assert_example_item(&item);
    assert_eq!(item.properties.active_location.as_deref(), Some("Primary"));
    assert_eq!(
        item.properties.protection_state.as_deref(),
        Some("Protected")
    );
    assert_eq!(
        item.properties.allowed_operations,
        [
            "PlannedFailover",
            "UnplannedFailover",
            "DisableProtection",
            "TestFailover"
        ]
    );
    assert_eq!(
        item.properties.policy_friendly_name.as_deref(),
        Some("protectionprofile1")
    );
}

#[test]
fn protected_item_lists() {
    for name in [
        "ReplicationProtectedItems_List.json",
        "ReplicationProtectedItems_ListByReplicationProtectionContainers.json",
    ] {
        let raw = body(name);
        let page: Page<ReplicationProtectedItem> = parse(raw.clone(), name);
        assert_eq!(page.value.len(), 1, "{name}");
        assert_example_item(&page.value[0]);
        // The examples are single pages: no `nextLink`, and the type must not invent one.
        assert_eq!(
            raw.get("nextLink").is_some(),
            page.next_link.is_some(),
            "{name}"
        );
        assert_eq!(page.next_link, None, "{name}");
    }
}

#[test]
fn fabrics() {
    let fabric: Fabric = parse(body("ReplicationFabrics_Get.json"), "fabric get");
    assert_eq!(fabric.name.as_deref(), Some("cloud1"));
    assert_eq!(fabric.properties.friendly_name.as_deref(), Some("cloud1"));
    assert_eq!(fabric.properties.health.as_deref(), Some("Normal"));
    let details = fabric.properties.custom_details.expect("custom details");
    assert_eq!(details.instance_type(), "HyperVSite");
    assert!(matches!(details, FabricSpecificDetails::Other { .. }));

    let page: Page<Fabric> = parse(body("ReplicationFabrics_List.json"), "fabric list");
    assert_eq!(page.value.len(), 1);
    assert_eq!(
        page.value[0].properties.friendly_name.as_deref(),
        Some("cloud1")
    );
    assert!(page.value[0].properties.health_error_details.is_empty());
    assert_eq!(page.next_link, None);
}

#[test]
fn vcenters() {
    let vcenter: VCenter = parse(body("ReplicationvCenters_Get.json"), "vcenter get");
    assert_eq!(vcenter.properties.friendly_name.as_deref(), Some("esx-78"));
    assert_eq!(
        vcenter.properties.discovery_status.as_deref(),
        Some("Pending")
    );
    assert_eq!(
        vcenter.properties.process_server_id.as_deref(),
        Some("5A720CAB-39CB-F445-BD1662B0B33164B5")
    );

    let page: Page<VCenter> = parse(body("ReplicationvCenters_List.json"), "vcenter list");
    assert_eq!(page.value.len(), 1);
    assert_eq!(
        page.value[0].properties.friendly_name.as_deref(),
        Some("esx-78")
    );
    assert_eq!(page.next_link, None);
}

#[test]
fn jobs() {
    let job: Job = parse(body("ReplicationJobs_Get.json"), "job get");
    assert_eq!(
        job.name.as_deref(),
        Some("32ea4b9e-de62-49a1-b062-7864d5c3b897")
    );
    assert_eq!(job.properties.job_state(), JobState::Succeeded);
    assert!(job.properties.job_state().is_terminal());
    assert_eq!(
        job.properties.scenario_name.as_deref(),
        Some("DeleteRecoveryPlan")
    );
    assert!(job.properties.errors.is_empty());

    let page: Page<Job> = parse(body("ReplicationJobs_List.json"), "job list");
    let names: Vec<_> = page
        .value
        .iter()
        .map(|job| job.properties.friendly_name.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "Create replication policy",
            "Register the Azure Site Recovery Provider",
            "Create a site"
        ]
    );
    assert!(
        page.value
            .iter()
            .all(|job| job.properties.job_state() == JobState::Succeeded)
    );
    assert_eq!(page.next_link, None);
}

#[test]
fn policy_get() {
    let policy: Policy = parse(body("ReplicationPolicies_Get.json"), "policy get");
    assert_eq!(policy.name.as_deref(), Some("protectionprofile1"));
    assert_eq!(
        policy
            .properties
            .provider_specific_details
            .expect("details")
            .instance_type,
        "HyperVReplicaAzure"
    );
}

/// The long-running operations the provider starts answer 200 with the item, or 202 with the
/// headers to poll.
#[test]
fn operation_responses() {
    for (name, location, state) in [
        (
            "ReplicationProtectedItems_Reprotect.json",
            "Primary",
            "Protected",
        ),
        (
            "ReplicationProtectedItems_PlannedFailover.json",
            "Recovery",
            "PlannedFailoverCommitRequired",
        ),
        (
            "ReplicationProtectedItems_UnplannedFailover.json",
            "Recovery",
            "UnplannedFailoverCommitPendingStatesBegin",
        ),
        (
            "ReplicationProtectedItems_FailoverCommit.json",
            "Recovery",
            "PlannedFailoverStatesBegin",
        ),
    ] {
        let item: ReplicationProtectedItem = parse(body(name), name);
        assert_example_item(&item);
        assert_eq!(
            item.properties.active_location.as_deref(),
            Some(location),
            "{name}"
        );
        assert_eq!(
            item.properties.protection_state.as_deref(),
            Some(state),
            "{name}"
        );

        let accepted = &example(name)["responses"]["202"]["headers"];
        let status = accepted["Azure-AsyncOperation"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: 202 without `Azure-AsyncOperation`"));
        assert!(status.contains("/replicationOperationStatus/"), "{name}");
        assert_eq!(accepted["Retry-After"], 30, "{name}");
    }
}

/// After a failover ASR allows `Commit`; after the commit it allows `Failback`.
#[test]
fn failover_examples_allow_the_next_step() {
    let failed_over: ReplicationProtectedItem = parse(
        body("ReplicationProtectedItems_UnplannedFailover.json"),
        "unplanned failover",
    );
    assert!(
        failed_over
            .properties
            .allowed_operations
            .iter()
            .any(|op| op == "Commit")
    );
    let committed: ReplicationProtectedItem = parse(
        body("ReplicationProtectedItems_FailoverCommit.json"),
        "commit",
    );
    assert!(
        !committed
            .properties
            .allowed_operations
            .iter()
            .any(|op| op == "Commit")
    );
    assert!(
        committed
            .properties
            .allowed_operations
            .iter()
            .any(|op| op == "Failback")
    );
}
