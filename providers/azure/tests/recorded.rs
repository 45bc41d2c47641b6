//! Replays Microsoft's recorded sessions against a real vault (`tests/fixtures/recorded/`,
//! sources in its README) through the provider: the recorded responses through its parsing
//! and stage mapping, and its requests against the recorded requests (direction, instance
//! type, required ids). The fake ASR API that found lifeboat's failback direction wrong was
//! built from these recordings; this suite keeps the provider honest against them.

use std::path::Path;
use std::sync::Arc;

use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::facts::Stage;
use lifeboat_engine::provider::{HomeSettings, OperationId, RefreshRequest, ReprotectSettings};
use lifeboat_provider_azure::arm::{Fabric, Job, Page, Policy, ReplicationProtectedItem};
use lifeboat_provider_azure::client::{ArmClient, ArmResponse, ArmRetryPolicy};
use lifeboat_provider_azure::credential::{StaticToken, Token};
use lifeboat_provider_azure::lro::{self, Started};
use lifeboat_provider_azure::mapping::{self, Inventory};
use lifeboat_provider_azure::provider::{carries, client_request_id, running_job};
use lifeboat_provider_azure::requests::{self, ProtectedItemRef, Resolver, Vault};
use serde::de::DeserializeOwned;
use serde_json::Value;

fn recorded(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/recorded")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read `{}`: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("`{name}` is not JSON: {error}"))
}

fn parse<T: DeserializeOwned>(name: &str) -> T {
    serde_json::from_value(recorded(name))
        .unwrap_or_else(|error| panic!("the provider cannot read the recorded `{name}`: {error}"))
}

fn items() -> Vec<ReplicationProtectedItem> {
    let page: Page<ReplicationProtectedItem> = parse("items-page.json");
    assert_eq!(page.next_link, None, "`nextLink: null` is the last page");
    page.value
}

fn item(friendly: &str) -> ReplicationProtectedItem {
    items()
        .into_iter()
        .find(|i| i.properties.friendly_name.as_deref() == Some(friendly))
        .unwrap_or_else(|| panic!("the recording has `{friendly}`"))
}

fn fabrics() -> Vec<Fabric> {
    let page: Page<Fabric> = parse("fabrics-page.json");
    assert_eq!(page.next_link, None);
    page.value
}

fn policies() -> Vec<Policy> {
    vec![parse("policy-failback.json"), parse("policy-v2a.json")]
}

/// The recorded vault, for the paths.
fn vault() -> Vault {
    Vault {
        subscription_id: "b8aef8e1-37df-4f17-a537-f10e183c8eca".into(),
        resource_group: "PwsTestRG".into(),
        name: "PwsTestVault".into(),
    }
}

fn item_ref(item: &ReplicationProtectedItem) -> ProtectedItemRef {
    ProtectedItemRef::from_id(item.id.as_deref().expect("an id")).expect("an item id")
}

/// The path without the api-version (the recordings use older ones).
fn path_of(uri: &str) -> &str {
    uri.split('?').next().unwrap_or(uri)
}

// ---------------------------------------------------------------------------------------------
// Responses through the parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn the_recorded_reprotected_item_reads_reprotected_and_idle() {
    let item = item("V2A-W2K16-201");
    assert_eq!(mapping::stage(&item), Ok(Stage::Reprotected));
    assert_eq!(
        running_job(&item),
        None,
        "the idle scenario (`None`, job `…/replicationJobs/None`, 1753) is no job"
    );
}

#[test]
fn the_recorded_committed_item_reads_committed_and_idle() {
    let item: ReplicationProtectedItem = parse("committed-item.json");
    assert_eq!(
        item.properties.allowed_operations,
        ["CompleteMigration", "DisableProtection", "SwitchProtection"]
    );
    assert_eq!(mapping::stage(&item), Ok(Stage::Committed));
    assert_eq!(running_job(&item), None);
    // While a job runs ASR empties `allowedOperations`; the protection state still tells.
    let mut busy = item.clone();
    busy.properties.allowed_operations.clear();
    assert_eq!(mapping::stage(&busy), Ok(Stage::Committed));
}

#[test]
fn the_recorded_vmware_to_azure_item_reads_protected() {
    assert_eq!(mapping::stage(&item("V2A-W2K19-202")), Ok(Stage::Protected));
}

#[test]
fn the_recorded_fabric_gives_the_facts_the_plan_asks_for() {
    let request = RefreshRequest {
        vcenter: "vc".into(),
        configuration_server: "PwsTestCS".into(),
        process_server: "V2A-PS-200".into(),
        esxi_hosts: vec![],
        datastores: vec!["datastore1".into(), "DS-77".into()],
        master_targets: vec!["V2A-PS-200".into(), "PwsTestCS".into()],
        machines: vec!["V2A-W2K16-201".into()],
        home_process_server: Some("V2A-PS-200".into()),
    };
    let inventory = Inventory {
        fabrics: fabrics(),
        vcenters: vec![],
        items: items(),
    };
    // A minute after the configuration server's last recorded heartbeat.
    let now: jiff::Timestamp = "2021-04-05T17:43:50Z".parse().expect("a time");
    let facts = mapping::facts(&request, &inventory, now).expect("facts");
    assert_eq!(
        facts
            .configuration_server
            .as_ref()
            .and_then(|cs| cs.connected),
        Some(true)
    );
    assert_eq!(
        facts.process_server.as_ref().and_then(|ps| ps.healthy),
        Some(true)
    );
    assert_eq!(
        facts.home_process_server.as_ref().and_then(|ps| ps.healthy),
        Some(true)
    );
    assert_eq!(
        facts.run_as_accounts.as_deref(),
        Some(
            &[
                "vcenteruser".to_string(),
                "windowsuser".into(),
                "linuxuser".into()
            ][..]
        )
    );
    let mt = &facts.master_targets["V2A-PS-200"];
    assert_eq!(
        mt.retention_volumes.as_deref(),
        Some(&["F".to_string()][..])
    );
    assert_eq!(mt.disks_attached, Some(3));
    assert_eq!(mt.healthy, Some(true));
    assert_eq!(
        facts.master_targets["PwsTestCS"]
            .retention_volumes
            .as_deref(),
        Some(&["D".to_string()][..])
    );
    // Decimal strings of GB, rounded down: never more free space than reported.
    assert_eq!(facts.datastores["datastore1"].free_gib, Some(154));
    assert_eq!(facts.datastores["DS-77"].free_gib, Some(247));
    // The reprotected item names its process server by id (the configuration server's own),
    // and its master target as `null`: unknown, never guessed.
    let machine = &facts.machines["V2A-W2K16-201"];
    assert_eq!(machine.stage, Stage::Reprotected);
    let settings = machine.settings.as_ref().expect("what the item tells");
    assert_eq!(settings.process_server.as_deref(), Some("PwsTestCS"));
    assert_eq!(settings.master_target, None);
    assert_eq!(settings.datastore.as_deref(), Some("datastore1"));
    assert_eq!(settings.retention_drive, None);
}

#[test]
fn the_recorded_job_is_found_by_the_client_request_id_of_its_post() {
    let job: Job = parse("reprotect-job.json");
    let post = recorded("reprotect-home-request.json");
    let sent = post["requestHeaders"]["x-ms-client-request-id"]
        .as_str()
        .expect("the recorded header");
    let activity = job
        .properties
        .activity_id
        .as_deref()
        .expect("an activityId");
    assert!(carries(activity, sent), "{activity}");
    assert!(!carries(activity, "ef210de0"), "a prefix is not the id");
}

#[test]
fn client_request_ids_are_guids_derived_from_the_operation_id() {
    let id = OperationId("lb-3f2a-7-failback-web-01".into());
    let guid = client_request_id(&id);
    let parsed = uuid::Uuid::parse_str(&guid).expect("a GUID");
    assert_eq!(parsed.hyphenated().to_string(), guid, "no decoration");
    assert_eq!(
        client_request_id(&id),
        guid,
        "the same operation, the same GUID"
    );
    assert_ne!(
        client_request_id(&OperationId("lb-3f2a-7-commit-web-01".into())),
        guid
    );
    // ASR's `activityId` as recorded, with this GUID in front, is found again.
    assert!(carries(
        &format!("{guid} ActivityId: b433a90a-df41-421f-bba6-b26d5a53c18e"),
        &guid
    ));
}

#[test]
fn the_recorded_202_is_followed_to_its_job() {
    let post = recorded("failback-request.json");
    let mut headers = reqwest::header::HeaderMap::new();
    for name in ["Location", "Azure-AsyncOperation", "Retry-After"] {
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("a name"),
            post["responseHeaders"][name]
                .as_str()
                .expect("recorded")
                .parse()
                .expect("a value"),
        );
    }
    let response = ArmResponse {
        status: reqwest::StatusCode::ACCEPTED,
        headers,
        body: Vec::new(),
        what: "POST unplannedFailover".into(),
    };
    let client = ArmClient::new(
        reqwest::Client::new(),
        url::Url::parse("https://centraluseuap.management.azure.com").expect("a URL"),
        "https://management.azure.com/.default".into(),
        Arc::new(StaticToken(Token::new("t"))),
        ArmRetryPolicy::default(),
    );
    match lro::started(&client, &response).expect("a long-running operation") {
        Started::Running(operation) => {
            assert_eq!(operation.job, "a2e9f617-66a6-4933-9ffc-d5665da42abf");
            assert_eq!(
                operation.retry_after,
                Some(std::time::Duration::from_secs(30))
            );
        }
        Started::Done => panic!("a 202 is a job to follow"),
    }
}

// ---------------------------------------------------------------------------------------------
// Requests against the recorded requests
// ---------------------------------------------------------------------------------------------

#[test]
fn the_failback_is_sent_as_recorded() {
    let post = recorded("failback-request.json");
    let item = item("V2A-W2K16-201");
    let ours = requests::failback(&vault(), &item_ref(&item), "2026-05-01");
    assert_eq!(ours.method, post["method"]);
    assert_eq!(
        path_of(&ours.path),
        path_of(post["uri"].as_str().expect("a uri"))
    );
    let body = ours.body.expect("a body");
    let theirs = &post["body"]["properties"];
    assert_eq!(
        body["properties"]["failoverDirection"], theirs["failoverDirection"],
        "an `InMage` item fails back `PrimaryToRecovery`"
    );
    let details = &body["properties"]["providerSpecificDetails"];
    assert_eq!(details, &theirs["providerSpecificDetails"]);
    // The one deliberate difference: lifeboat shuts the Azure VM down first.
    assert_eq!(body["properties"]["sourceSiteOperations"], "Required");
}

#[test]
fn the_reprotect_home_is_sent_exactly_as_recorded() {
    let post = recorded("reprotect-home-request.json");
    let committed: ReplicationProtectedItem = parse("committed-item.json");
    let (fabrics, policies) = (fabrics(), policies());
    let at = item_ref(&committed);
    let ids = Resolver::new(&fabrics, &policies, &at.fabric)
        .expect("the recorded configuration server")
        .home(&HomeSettings {
            process_server: "V2A-PS-200".into(),
            run_as_account: "windowsuser".into(),
            policy: "Policyv2a".into(),
        })
        .expect("the recorded names resolve");
    let ours = requests::reprotect_home(&vault(), &at, &ids, "2026-05-01");
    assert_eq!(ours.method, post["method"]);
    assert_eq!(
        path_of(&ours.path),
        path_of(post["uri"].as_str().expect("a uri"))
    );
    assert_eq!(ours.body.as_ref(), Some(&post["body"]), "the whole body");
    // `auto` finds the vault's only VMware-to-Azure policy, the recorded one.
    let auto = Resolver::new(&fabrics, &policies, &at.fabric)
        .expect("the configuration server")
        .home(&HomeSettings {
            process_server: "V2A-PS-200".into(),
            run_as_account: "windowsuser".into(),
            policy: "auto".into(),
        })
        .expect("auto resolves");
    assert_eq!(auto, ids);
}

#[test]
fn the_failback_reprotect_names_the_volume_as_asr_reports_it() {
    let (fabrics, policies) = (fabrics(), policies());
    let resolver = Resolver::new(&fabrics, &policies, "PwsTestCS").expect("the CS");
    let settings = |drive: &str| ReprotectSettings {
        master_target: "V2A-PS-200".into(),
        process_server: "V2A-PS-200".into(),
        datastore: "datastore1".into(),
        retention_drive: drive.into(),
        recovery: Recovery::Original,
        failback_policy: "auto".into(),
        home: None,
    };
    for drive in ["F", "F:", "f:"] {
        let ids = resolver
            .reprotect(&settings(drive))
            .expect("the recorded volume");
        assert_eq!(ids.retention_drive, "F", "{drive}");
        assert_eq!(ids.master_target_id, "30AE6187-5869-8E44-B8AF6AA66E3ECC8F");
        let body = requests::reprotect(
            &vault(),
            &item_ref(&item("V2A-W2K16-201")),
            &ids,
            "2026-05-01",
        )
        .body
        .expect("a body");
        assert_eq!(body["properties"]["failoverDirection"], "RecoveryToPrimary");
        assert_eq!(
            body["properties"]["providerSpecificDetails"]["instanceType"],
            "InMage"
        );
        assert_eq!(
            body["properties"]["providerSpecificDetails"]["diskExclusionInput"]["volumeOptions"][0]
                ["volumeLabel"],
            "Temporary Storage"
        );
    }
    assert!(
        resolver.reprotect(&settings("D:")).is_err(),
        "not a volume of that MT"
    );
}
