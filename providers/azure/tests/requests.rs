//! Every request body the provider sends validates against `asr-api/definitions.json`, and
//! the validator is strict enough to reject a broken one.

mod common;

use common::{assert_invalid, assert_valid, example, fixture};
use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::ReprotectSettings;
use lifeboat_provider_azure::DEFAULT_API_VERSION;
use lifeboat_provider_azure::arm::{Fabric, Page, Policy};
use lifeboat_provider_azure::requests::{
    self, InMageAzureV2Reprotect, ProtectedItemRef, ResolveError, Resolver, Vault,
};
use serde_json::{Value, json};

fn vault() -> Vault {
    Vault {
        subscription_id: "00000000-0000-0000-0000-000000000001".into(),
        resource_group: "rg-dr".into(),
        name: "vault-dr".into(),
    }
}

fn item() -> ProtectedItemRef {
    ProtectedItemRef::from_id(
        "/Subscriptions/s/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationFabrics/cs-fabric-1/replicationProtectionContainers/cloud_1/replicationProtectedItems/web-01-item",
    )
    .expect("an item id")
}

fn fabrics() -> Vec<Fabric> {
    vec![serde_json::from_value(fixture("vmware_fabric.json")).expect("the fabric fixture")]
}

fn policies() -> Vec<Policy> {
    let page: Page<Policy> = serde_json::from_value(fixture("policies.json")).expect("policies");
    assert!(
        page.next_link.is_some(),
        "the fixture is a page with a next link"
    );
    page.value
}

fn settings() -> ReprotectSettings {
    ReprotectSettings {
        master_target: "mt-win-01".into(),
        process_server: "ps-azure-01".into(),
        datastore: "vsanDatastore".into(),
        retention_drive: "R:".into(),
        recovery: Recovery::Original,
        failback_policy: "auto".into(),
        home: None,
    }
}

fn reprotect_body() -> Value {
    let (fabrics, policies) = (fabrics(), policies());
    let resolver =
        Resolver::new(&fabrics, &policies, "cs-fabric-1").expect("a configuration server");
    let ids = resolver
        .reprotect(&settings())
        .expect("resolvable settings");
    requests::reprotect(&vault(), &item(), &ids, DEFAULT_API_VERSION)
        .body
        .expect("reprotect has a body")
}

#[test]
fn reprotect_body_is_a_valid_inmage_reverse_replication_input() {
    let body = reprotect_body();
    assert_valid("ReverseReplicationInput", &body);
    assert_eq!(
        body,
        json!({"properties": {
            "failoverDirection": "RecoveryToPrimary",
            "providerSpecificDetails": {
                "instanceType": "InMage",
                "masterTargetId": "MT-0001",
                "processServerId": "PS-0001",
                "retentionDrive": "R:",
                "profileId": "/Subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationPolicies/policy-avs-failback",
                "datastoreName": "vsanDatastore",
                "diskExclusionInput": {"volumeOptions": [{
                    "volumeLabel": "Temporary Storage",
                    "onlyExcludeIfSingleVolume": "true",
                }]},
            }
        }})
    );
}

#[test]
fn the_validator_rejects_broken_reprotect_bodies() {
    for field in [
        "masterTargetId",
        "processServerId",
        "retentionDrive",
        "profileId",
    ] {
        let mut body = reprotect_body();
        body["properties"]["providerSpecificDetails"]
            .as_object_mut()
            .expect("details")
            .remove(field);
        assert_invalid("ReverseReplicationInput", &body);
    }
    // A field InMageReprotectInput does not have (a misspelling).
    let mut body = reprotect_body();
    body["properties"]["providerSpecificDetails"]["masterTargetID"] = json!("MT-0001");
    assert_invalid("ReverseReplicationInput", &body);
    // An instance type no subtype has.
    let mut body = reprotect_body();
    body["properties"]["providerSpecificDetails"]["instanceType"] = json!("Inmage");
    assert_invalid("ReverseReplicationInput", &body);
    // The InMage fields under the other provider's subtype.
    let mut body = reprotect_body();
    body["properties"]["providerSpecificDetails"]["instanceType"] = json!("InMageAzureV2");
    assert_invalid("ReverseReplicationInput", &body);
}

#[test]
fn failback_body_is_a_valid_inmage_unplanned_failover_input() {
    let request = requests::failback(&vault(), &item(), DEFAULT_API_VERSION);
    assert_eq!(request.method, "POST");
    assert!(request.path.ends_with(
        "/replicationProtectedItems/web-01-item/unplannedFailover?api-version=2026-05-01"
    ));
    let body = request.body.expect("a body");
    assert_valid("UnplannedFailoverInput", &body);
    assert_eq!(body["properties"]["failoverDirection"], "PrimaryToRecovery");
    assert_eq!(
        body["properties"]["providerSpecificDetails"]["recoveryPointType"],
        "LatestTime"
    );

    let mut broken = body.clone();
    broken["properties"]["providerSpecificDetails"]["recoveryPointType"] = json!("Latest");
    assert_invalid("UnplannedFailoverInput", &broken);
    assert_invalid("UnplannedFailoverInput", &json!({}));
}

#[test]
fn commit_sends_no_body() {
    let request = requests::commit(&vault(), &item(), DEFAULT_API_VERSION);
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationFabrics/cs-fabric-1/replicationProtectionContainers/cloud_1/replicationProtectedItems/web-01-item/failoverCommit?api-version=2026-05-01"
    );
    assert_eq!(request.body, None);
}

#[test]
fn reprotect_home_body_is_a_valid_inmage_azure_v2_reverse_replication_input() {
    let ids = InMageAzureV2Reprotect {
        process_server_id: "PS-0003".into(),
        master_target_id: "PS-0003".into(),
        run_as_account_id: "1".into(),
        policy_id: "/Subscriptions/s/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationPolicies/policy-avs".into(),
    };
    let request = requests::reprotect_home(&vault(), &item(), &ids, DEFAULT_API_VERSION);
    assert!(request.path.ends_with("/reProtect?api-version=2026-05-01"));
    let body = request.body.expect("a body");
    assert_valid("ReverseReplicationInput", &body);
    assert_eq!(
        body["properties"]["providerSpecificDetails"]["instanceType"],
        "InMageAzureV2"
    );
    assert_eq!(body["properties"]["failoverDirection"], "RecoveryToPrimary");
    // `retentionDrive` is an InMage field, not an InMageAzureV2 one.
    let mut body = body;
    body["properties"]["providerSpecificDetails"]["retentionDrive"] = json!("R:");
    assert_invalid("ReverseReplicationInput", &body);
}

#[test]
fn switch_process_server_posts_reassociate_gateway_on_the_items_fabric() {
    let request = requests::switch_process_server(
        &vault(),
        &item(),
        "PS-0001",
        "PS-0002",
        DEFAULT_API_VERSION,
    );
    assert_eq!(request.method, "POST");
    assert_eq!(
        request.path,
        "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationFabrics/cs-fabric-1/reassociateGateway?api-version=2026-05-01"
    );
    // The shape of the official example's `failoverProcessServerRequest`.
    let official = example("ReplicationFabrics_ReassociateGateway.json")["parameters"]
        ["failoverProcessServerRequest"]["properties"]
        .clone();
    let body = request.body.expect("a body");
    let sent = body["properties"].as_object().expect("properties");
    let keys = |o: &serde_json::Map<String, Value>| {
        let mut keys: Vec<String> = o.keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(sent), keys(official.as_object().expect("example")));
    assert_eq!(sent["containerName"], "cloud_1");
    assert_eq!(sent["sourceProcessServerId"], "PS-0001");
    assert_eq!(sent["targetProcessServerId"], "PS-0002");
    assert_eq!(sent["vmsToMigrate"], json!(["web-01-item"]));
}

/// The conversion accepts what Microsoft's own examples send, so its strictness is not
/// invented.
#[test]
fn the_validator_accepts_the_official_example_requests() {
    for (file, parameter, root) in [
        (
            "ReplicationProtectedItems_Reprotect.json",
            "reprotectInput",
            "ReverseReplicationInput",
        ),
        (
            "ReplicationProtectedItems_PlannedFailover.json",
            "failoverInput",
            "PlannedFailoverInput",
        ),
        (
            "ReplicationProtectedItems_UnplannedFailover.json",
            "failoverInput",
            "UnplannedFailoverInput",
        ),
    ] {
        let body = example(file)["parameters"][parameter].clone();
        assert!(body.is_object(), "{file} has `{parameter}`");
        assert_valid(root, &body);
    }
}

#[test]
fn paths_follow_paths_md() {
    let vault = vault();
    let base = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr";
    let v = DEFAULT_API_VERSION;
    assert_eq!(
        requests::protected_items_path(&vault, v),
        format!("{base}/replicationProtectedItems?api-version=2026-05-01")
    );
    assert_eq!(
        requests::fabrics_path(&vault, v),
        format!("{base}/replicationFabrics?api-version=2026-05-01")
    );
    assert_eq!(
        requests::vcenters_path(&vault, v),
        format!("{base}/replicationvCenters?api-version=2026-05-01")
    );
    assert_eq!(
        requests::policies_path(&vault, v),
        format!("{base}/replicationPolicies?api-version=2026-05-01")
    );
    assert_eq!(
        requests::job_path(&vault, "job-1", v),
        format!("{base}/replicationJobs/job-1?api-version=2026-05-01")
    );
    assert_eq!(
        ProtectedItemRef::from_id("/subscriptions/s/resourceGroups/r"),
        None
    );
}

#[test]
fn the_resolver_refuses_names_the_vault_does_not_have() {
    let (fabrics, policies) = (fabrics(), policies());
    let resolver =
        Resolver::new(&fabrics, &policies, "cs-fabric-1").expect("a configuration server");
    let with = |change: fn(&mut ReprotectSettings)| {
        let mut settings = settings();
        change(&mut settings);
        resolver.reprotect(&settings)
    };
    assert_eq!(
        with(|s| s.master_target = "mt-nope".into()),
        Err(ResolveError::MasterTarget("mt-nope".into()))
    );
    assert_eq!(
        with(|s| s.process_server = "ps-nope".into()),
        Err(ResolveError::ProcessServer("ps-nope".into()))
    );
    assert!(matches!(
        with(|s| s.retention_drive = "Q:".into()),
        Err(ResolveError::RetentionDrive { .. })
    ));
    assert!(matches!(
        with(|s| s.datastore = "other".into()),
        Err(ResolveError::Datastore { .. })
    ));
    assert_eq!(
        with(|s| s.failback_policy = "policy-avs".into()),
        Err(ResolveError::Policy("policy-avs".into()))
    );
    assert!(with(|s| s.failback_policy = "policy-avs-failback".into()).is_ok());

    let two_inmage: Vec<Policy> = policies
        .iter()
        .cloned()
        .chain(policies.iter().cloned().map(|mut p| {
            p.properties.provider_specific_details =
                Some(serde_json::from_value(json!({"instanceType": "InMage"})).expect("details"));
            p
        }))
        .collect();
    let resolver =
        Resolver::new(&fabrics, &two_inmage, "cs-fabric-1").expect("a configuration server");
    assert_eq!(
        resolver.failback_policy_id("auto"),
        Err(ResolveError::AutoPolicy(3)),
        "the original `InMage` policy and both copies"
    );
    assert_eq!(
        Resolver::new(&[], &policies, "cs-fabric-1").err(),
        Some(ResolveError::NoConfigurationServer("cs-fabric-1".into()))
    );
}

#[test]
fn the_resolver_uses_the_named_configuration_server_of_several() {
    let policies = policies();
    let first = fabrics().remove(0);
    // Another configuration server listed first, with a master target of the same name but
    // another id: the first `VMware` fabric is not necessarily the one asked for.
    let mut other = first.clone();
    other.name = Some("cs-fabric-0".into());
    other.properties.friendly_name = Some("cs-other".into());
    if let Some(lifeboat_provider_azure::arm::FabricSpecificDetails::VMware(details)) =
        other.properties.custom_details.as_mut()
    {
        for mt in &mut details.master_target_servers {
            mt.id = Some(format!("OTHER-{}", mt.id.clone().unwrap_or_default()));
        }
        for ps in &mut details.process_servers {
            ps.id = Some(format!("OTHER-{}", ps.id.clone().unwrap_or_default()));
        }
    }
    let fabrics = vec![other, first];
    for name in ["cs-fabric-1", "CS-FABRIC-1", "cs-avs-01"] {
        let ids = Resolver::new(&fabrics, &policies, name)
            .expect("a configuration server")
            .reprotect(&settings())
            .expect("resolvable settings");
        assert_eq!(ids.master_target_id, "MT-0001", "{name}");
        assert!(!ids.process_server_id.starts_with("OTHER-"), "{name}");
    }
    let ids = Resolver::new(&fabrics, &policies, "cs-other")
        .expect("a configuration server")
        .reprotect(&settings())
        .expect("resolvable settings");
    assert_eq!(ids.master_target_id, "OTHER-MT-0001");
}
