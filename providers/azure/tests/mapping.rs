//! The stage rule, the name mapping, and `None` for what ASR cannot observe.
//! Items are constructed from `definitions.json` field names (no official example has a
//! VMware item); the official Hyper-V example shows the refusal of other providers.

mod common;

use common::{example_body, fixture};
use lifeboat_engine::model::Os;
use lifeboat_engine::provider::facts::{DatastoreType, SourceKind};
use lifeboat_engine::provider::{RefreshRequest, Stage};
use lifeboat_provider_azure::arm::{Fabric, ReplicationProtectedItem, VCenter};
use lifeboat_provider_azure::mapping::{self, Inventory, StageError};
use serde_json::{Value, json};

fn item(
    name: &str,
    instance_type: &str,
    location: &str,
    allowed: &[&str],
    extra: Value,
) -> ReplicationProtectedItem {
    let mut details = json!({"instanceType": instance_type});
    if let (Some(details), Some(extra)) = (details.as_object_mut(), extra.as_object()) {
        details.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "id": format!("/Subscriptions/s/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/v/replicationFabrics/f/replicationProtectionContainers/c/replicationProtectedItems/{name}-id"),
        "name": format!("{name}-id"),
        "properties": {
            "friendlyName": name,
            "activeLocation": location,
            "protectionState": "SomethingNew",
            "allowedOperations": allowed,
            "providerSpecificDetails": details,
        }
    }))
    .expect("a protected item")
}

#[test]
fn stage_rule_covers_every_stage() {
    let none = json!({});
    let cases = [
        (
            item(
                "a",
                "InMageAzureV2",
                "Recovery",
                &["ReverseReplicate", "DisableProtection"],
                none.clone(),
            ),
            Stage::FailedOver,
        ),
        (
            item(
                "b",
                "InMage",
                "Recovery",
                &["UnplannedFailover"],
                none.clone(),
            ),
            Stage::Reprotected,
        ),
        (
            item(
                "c",
                "InMage",
                "Primary",
                &["Commit", "ChangePit"],
                none.clone(),
            ),
            Stage::FailedBack,
        ),
        (
            item(
                "d",
                "InMage",
                "Primary",
                &["ReverseReplicate"],
                none.clone(),
            ),
            Stage::Committed,
        ),
        (
            item(
                "e",
                "InMageAzureV2",
                "Primary",
                &["PlannedFailover", "UnplannedFailover"],
                none.clone(),
            ),
            Stage::Protected,
        ),
        // `activeSiteType` wins over `activeLocation` for an InMage item.
        (
            item(
                "f",
                "InMage",
                "Primary",
                &[],
                json!({"activeSiteType": "Azure"}),
            ),
            Stage::Reprotected,
        ),
        (
            item(
                "g",
                "InMage",
                "Recovery",
                &["Commit"],
                json!({"activeSiteType": "OnPrem"}),
            ),
            Stage::FailedBack,
        ),
        // A job running (nothing allowed): the lower stage.
        (
            item("h", "InMage", "Primary", &[], none.clone()),
            Stage::FailedBack,
        ),
        (
            item("i", "InMageAzureV2", "Recovery", &[], none.clone()),
            Stage::FailedOver,
        ),
    ];
    for (item, expected) in cases {
        assert_eq!(
            mapping::stage(&item),
            Ok(expected),
            "{:?}",
            item.properties.friendly_name
        );
    }
}

#[test]
fn stage_rule_refuses_what_is_not_a_vmware_failback() {
    let uncommitted = item(
        "web-01",
        "InMageAzureV2",
        "Recovery",
        &["Commit", "ChangePit"],
        json!({}),
    );
    assert_eq!(
        mapping::stage(&uncommitted),
        Err(StageError::FailoverNotCommitted("web-01".into()))
    );

    // The official example: a Hyper-V VM protected to Azure.
    let hyperv: ReplicationProtectedItem =
        serde_json::from_value(example_body("ReplicationProtectedItems_Get.json", "200"))
            .expect("example");
    let error = mapping::stage(&hyperv).expect_err("Hyper-V is not failed back to VMware");
    assert_eq!(
        error,
        StageError::UnsupportedProvider {
            machine: "vm1".into(),
            instance_type: "HyperVReplicaAzure".into()
        }
    );
    assert!(error.to_string().contains("`HyperVReplicaAzure`"));
}

#[test]
fn machine_facts_fill_only_what_asr_reports() {
    let item = item(
        "db-01",
        "InMageAzureV2",
        "Recovery",
        &["ReverseReplicate"],
        json!({
            "osType": "Linux",
            "sourceVmRamSizeInMB": 6000,
            "discoveryType": "vCenter",
            "protectedDisks": [{"diskCapacityInBytes": 34359738368u64}, {"diskCapacityInBytes": 1}]
        }),
    );
    let facts = mapping::machine(&item).expect("a stage");
    assert_eq!(facts.stage, Stage::FailedOver);
    assert_eq!(facts.os, Some(Os::Linux));
    assert_eq!(facts.memory_gib, Some(6), "6000 MB rounds up to 6 GiB");
    assert_eq!(facts.source, Some(SourceKind::Vmware));
    assert_eq!(facts.disks_gib, Some(vec![32, 1]));
    // Not observable through ASR.
    assert_eq!(facts.vmware_vm, None);
    assert_eq!(facts.disk_uuids, None);
    assert_eq!(facts.agent_registered, None);
    assert_eq!(facts.in_configuration_server, None);
    assert_eq!(facts.azure_replica, None);
    assert_eq!(facts.settings, None);
    assert_eq!(facts.running, None);

    let physical = self::item(
        "p",
        "InMageAzureV2",
        "Recovery",
        &[],
        json!({"discoveryType": "physical", "protectedDisks": [{"diskId": "0"}]}),
    );
    let facts = mapping::machine(&physical).expect("a stage");
    assert_eq!(facts.source, None, "a physical machine could be any source");
    assert_eq!(
        facts.disks_gib, None,
        "a disk without a capacity makes the sizes unknown"
    );
}

fn request() -> RefreshRequest {
    RefreshRequest {
        vcenter: "esx-78".into(),
        configuration_server: "cs-avs-01".into(),
        process_server: "ps-azure-01".into(),
        esxi_hosts: vec!["esx-01".into()],
        datastores: vec![
            "vsanDatastore".into(),
            "nfs-archive".into(),
            "missing-ds".into(),
        ],
        master_targets: vec!["mt-win-01".into(), "mt-lin-01".into(), "mt-missing".into()],
        machines: vec!["web-01".into(), "not-protected".into()],
        home_process_server: None,
    }
}

fn inventory() -> Inventory {
    let fabric: Fabric = serde_json::from_value(fixture("vmware_fabric.json")).expect("fixture");
    let mut vcenter: VCenter =
        serde_json::from_value(example_body("ReplicationvCenters_Get.json", "200"))
            .expect("example");
    vcenter.properties.last_heartbeat = Some("2026-12-05T21:00:00Z".into());
    Inventory {
        fabrics: vec![fabric],
        vcenters: vec![vcenter],
        items: vec![
            item("web-01", "InMage", "Recovery", &[], json!({})),
            item("other", "InMage", "Recovery", &[], json!({})),
        ],
    }
}

#[test]
fn name_mapping_and_unobservable_facts() {
    let now: jiff::Timestamp = "2026-12-05T22:00:00Z".parse().expect("a timestamp");
    let facts = mapping::facts(&request(), &inventory(), now).expect("facts");

    // Configuration server = the VMware fabric's friendlyName; heartbeat 5 minutes old.
    assert_eq!(
        facts.configuration_server.expect("cs").connected,
        Some(true)
    );
    // Process server = ProcessServer.friendlyName.
    assert_eq!(facts.process_server.expect("ps").healthy, Some(true));
    // vCenter = VCenter.friendlyName; heartbeat an hour old, discovery pending.
    let vcenter = facts.vcenter.expect("vcenter");
    assert_eq!(
        (vcenter.connected, vcenter.discovered),
        (Some(false), Some(false))
    );
    assert_eq!((vcenter.account, vcenter.edition), (None, None));

    // Master target = MasterTargetServer.name; absent means it does not exist.
    let win = &facts.master_targets["mt-win-01"];
    assert_eq!(win.os, Some(Os::Windows));
    assert_eq!(win.healthy, Some(true));
    assert_eq!(win.disks_attached, Some(12));
    assert_eq!(win.retention_volumes, Some(vec!["R:".to_string()]));
    assert_eq!(
        (win.snapshots, &win.disk_uuids, &win.esxi_host),
        (None, &None, &None)
    );
    assert_eq!(facts.master_targets["mt-lin-01"].healthy, Some(false));
    assert!(!facts.master_targets.contains_key("mt-missing"));

    // Datastore = DataStore.symbolicName.
    assert_eq!(
        facts.datastores["vsanDatastore"].kind,
        Some(DatastoreType::Vsan)
    );
    assert_eq!(facts.datastores["vsanDatastore"].free_gib, Some(2048));
    assert_eq!(
        facts.datastores["nfs-archive"].kind,
        Some(DatastoreType::Nfs)
    );
    assert_eq!(facts.datastores["nfs-archive"].free_gib, Some(900));
    assert!(!facts.datastores.contains_key("missing-ds"));

    // ESXi hosts: asked for, present, nothing known.
    let host = &facts.esxi_hosts["esx-01"];
    assert_eq!(
        (
            host.memory_free_gib,
            &host.datastores,
            &host.vms,
            &host.vcenter
        ),
        (None, &None, &None, &None)
    );

    // Machine = protected item friendlyName; only requested ones; unprotected ones absent.
    assert_eq!(facts.machines.len(), 1);
    assert_eq!(facts.machines["web-01"].stage, Stage::Reprotected);
}

#[test]
fn names_that_match_nothing_are_absent() {
    let now: jiff::Timestamp = "2026-12-05T22:00:00Z".parse().expect("a timestamp");
    let mut request = request();
    request.configuration_server = "cs-other".into();
    request.vcenter = "vc-other".into();
    let facts = mapping::facts(&request, &inventory(), now).expect("facts");
    assert_eq!(facts.configuration_server, None);
    assert_eq!(facts.process_server, None);
    assert_eq!(facts.vcenter, None);
    assert!(facts.master_targets.is_empty());

    let mut request = self::request();
    request.process_server = "ps-sick".into();
    let facts = mapping::facts(&request, &inventory(), now).expect("facts");
    assert_eq!(facts.process_server.expect("ps").healthy, Some(false));
}

#[test]
fn health_counts_heartbeats_and_validation_errors() {
    use lifeboat_provider_azure::arm::FabricSpecificDetails;
    let now: jiff::Timestamp = "2026-12-05T22:00:00Z".parse().expect("a timestamp");
    let stale = "2026-12-05T21:00:00Z";
    let current = "2026-12-05T21:59:00Z";
    let with = |change: &dyn Fn(&mut lifeboat_provider_azure::arm::VMwareDetails)| {
        let mut inventory = inventory();
        for fabric in &mut inventory.fabrics {
            if let Some(FabricSpecificDetails::VMware(details)) =
                fabric.properties.custom_details.as_mut()
            {
                change(details);
            }
        }
        mapping::facts(&request(), &inventory, now).expect("facts")
    };
    let mt = |facts: &lifeboat_engine::provider::Facts| facts.master_targets["mt-win-01"].healthy;
    let ps = |facts: &lifeboat_engine::provider::Facts| {
        facts.process_server.as_ref().expect("ps").healthy
    };

    // A stale heartbeat is unhealthy, whatever the (old) lists say.
    let facts = with(&|d| {
        for m in &mut d.master_target_servers {
            m.last_heartbeat = Some(stale.into());
            m.health_errors = Some(vec![]);
        }
        for p in &mut d.process_servers {
            p.last_heartbeat = Some(stale.into());
            p.health = Some("Normal".into());
        }
    });
    assert_eq!(mt(&facts), Some(false));
    assert_eq!(ps(&facts), Some(false));

    // Validation errors count.
    let facts = with(&|d| {
        for m in &mut d.master_target_servers {
            m.last_heartbeat = Some(current.into());
            m.health_errors = Some(vec![]);
            m.validation_errors = Some(vec![Default::default()]);
        }
    });
    assert_eq!(mt(&facts), Some(false));

    // A current heartbeat and empty lists: healthy.
    let facts = with(&|d| {
        for m in &mut d.master_target_servers {
            m.last_heartbeat = Some(current.into());
            m.health_errors = Some(vec![]);
            m.validation_errors = None;
        }
    });
    assert_eq!(mt(&facts), Some(true));

    // Nothing reported: unknown.
    let facts = with(&|d| {
        for m in &mut d.master_target_servers {
            m.last_heartbeat = None;
            m.health_errors = None;
            m.validation_errors = None;
        }
        for p in &mut d.process_servers {
            p.last_heartbeat = None;
            p.health = None;
            p.health_errors = None;
        }
    });
    assert_eq!(mt(&facts), None);
    assert_eq!(ps(&facts), None);
}
