//! The emulator in process on `127.0.0.1:0`, driven by a plain reqwest client that trusts
//! only the generated certificate: the wire contract (docs/sim-serve-contract.md), the estate changes
//! in the world file, and every body against `definitions.json`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::Stage;
use lifeboat_provider_sim::{World, store};
use lifeboat_sim_serve::{Config, LroHeaders, Server, swagger};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BASE: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-lifeboat/providers/Microsoft.RecoveryServices/vaults/vault-lifeboat";
const ITEM: &str = "/replicationFabrics/vmware-fabric/replicationProtectionContainers/vmware-container/replicationProtectedItems";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

struct Fixture {
    _dir: tempfile::TempDir,
    world: PathBuf,
    server: Server,
    client: reqwest::Client,
}

/// The avs-failback example world with `edit` applied to its text (timing, faults), served
/// with `configure` applied to the defaults.
async fn start(
    edit: impl FnOnce(String) -> String,
    configure: impl FnOnce(&mut Config),
) -> Fixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let world = dir.path().join("world.yaml");
    let text = std::fs::read_to_string(repo().join("examples/avs-failback/world.yaml"))
        .expect("the example world");
    std::fs::write(&world, edit(text)).expect("the world is written");
    let mut config = Config::new(&world);
    configure(&mut config);
    let server = lifeboat_sim_serve::serve(config)
        .await
        .expect("the server starts");
    // Trust exactly what the server wrote to its certificate file, as a user's client would.
    let pem = std::fs::read(server.cert_path()).expect("the certificate file");
    assert_eq!(pem, server.cert_pem().as_bytes());
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("a PEM certificate")])
        .build()
        .expect("a client");
    Fixture {
        _dir: dir,
        world,
        server,
        client,
    }
}

async fn plain() -> Fixture {
    start(|text| text, |_| {}).await
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    fn arm(&self, rest: &str) -> String {
        self.url(&format!("{BASE}{rest}?api-version=2026-05-01"))
    }

    async fn token_response(&self, secret: &str) -> reqwest::Response {
        self.token_response_for(secret, &format!("{}/.default", self.server.url()))
            .await
    }

    async fn token_response_for(&self, secret: &str, scope: &str) -> reqwest::Response {
        self.client
            .post(self.url("/11111111-1111-1111-1111-111111111111/oauth2/v2.0/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "22222222-2222-2222-2222-222222222222"),
                ("client_secret", secret),
                ("scope", scope),
            ])
            .send()
            .await
            .expect("the token endpoint answers")
    }

    async fn token(&self) -> String {
        let response = self.token_response("sim-secret").await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["token_type"], "Bearer");
        assert!(body["expires_in"].is_u64() && body["ext_expires_in"].is_u64());
        body["access_token"].as_str().expect("a token").to_string()
    }

    async fn get(&self, token: &str, url: &str) -> reqwest::Response {
        self.client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("the server answers")
    }

    async fn get_json(&self, token: &str, url: &str) -> Value {
        let response = self.get(token, url).await;
        assert_eq!(response.status(), StatusCode::OK, "GET {url}");
        assert!(response.headers().contains_key("x-ms-request-id"));
        response.json().await.expect("JSON")
    }

    async fn post(&self, token: &str, url: &str, body: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client
            .post(url)
            .bearer_auth(token)
            .header("x-ms-client-request-id", "op-42");
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        request.send().await.expect("the server answers")
    }

    fn world(&self) -> World {
        store::read(&self.world).expect("the world reads")
    }
}

/// `body` without its `null` values. The real service sends `null` for absent values
/// (`nextLink: null` on the last page, `osVersion: null`, … in Microsoft's recorded
/// sessions), which the swagger definitions do not model: a client reads them as absent, and
/// so are they validated.
fn without_nulls(body: &Value) -> Value {
    match body {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

fn assert_valid(root: &str, body: &Value) {
    let validator = swagger::validator(root).expect("a validator");
    let errors = swagger::errors(&validator, &without_nulls(body));
    assert!(
        errors.is_empty(),
        "not a valid `{root}`: {errors:#?}\n{body:#}"
    );
}

async fn assert_arm_error(response: reqwest::Response, status: StatusCode, code: &str) -> String {
    assert_eq!(response.status(), status);
    assert!(response.headers().contains_key("x-ms-request-id"));
    let body: Value = response.json().await.expect("an ARM error body");
    assert_eq!(body["error"]["code"], code, "{body:#}");
    body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

fn reprotect_body(machine_vm_datastore: Option<&str>) -> Value {
    let mut details = json!({
        "instanceType": "InMage",
        "masterTargetId": "MT-mt-windows-01",
        "processServerId": "PS-ps-azure-01",
        "retentionDrive": "R:",
        "profileId": format!("{BASE}/replicationPolicies/failback-policy"),
    });
    if let Some(ds) = machine_vm_datastore {
        details["datastoreName"] = json!(ds);
    }
    json!({"properties": {"failoverDirection": "RecoveryToPrimary", "providerSpecificDetails": details}})
}

/// As recorded (`V2ATestFailback.json`): an `InMage` item fails back `PrimaryToRecovery`.
fn failback_body() -> Value {
    json!({"properties": {
        "failoverDirection": "PrimaryToRecovery",
        "sourceSiteOperations": "Required",
        "providerSpecificDetails": {"instanceType": "InMage", "recoveryPointType": "LatestTime"},
    }})
}

/// The reprotect to Azure as recorded (`V2ATestReprotect.json`): `RecoveryToPrimary`,
/// `InMageAzureV2`, the process server on the VMware site (also as its own master target), a
/// run-as account and the VMware-to-Azure policy.
fn home_body() -> Value {
    json!({"properties": {
        "failoverDirection": "RecoveryToPrimary",
        "providerSpecificDetails": {
            "instanceType": "InMageAzureV2",
            "masterTargetId": "PS-ps-avs-01",
            "processServerId": "PS-ps-avs-01",
            "runAsAccountId": "1",
            "policyId": format!("{BASE}/replicationPolicies/replication-policy"),
        },
    }})
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("ASCII").to_string())
}

/// Follows a 202's LRO header to the end (as the style says) and returns the job name.
async fn follow(
    f: &Fixture,
    token: &str,
    response: reqwest::Response,
    style: LroHeaders,
) -> String {
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&response, "retry-after").as_deref(), Some("0"));
    let async_url = header(&response, "azure-asyncoperation");
    let location = header(&response, "location");
    match style {
        LroHeaders::Both => assert!(async_url.is_some() && location.is_some()),
        LroHeaders::Async => assert!(async_url.is_some() && location.is_none()),
        LroHeaders::Location => assert!(async_url.is_none() && location.is_some()),
        LroHeaders::Rotate => unreachable!("a response has one of the three styles"),
    }
    let url = async_url
        .clone()
        .or(location.clone())
        .expect("an LRO header");
    assert!(url.starts_with(&f.server.url()) && url.ends_with("?api-version=2026-05-01"));
    let job = url
        .split('?')
        .next()
        .and_then(|path| path.rsplit('/').next())
        .expect("the job name")
        .to_string();
    for _ in 0..400 {
        let response = f.get(token, &url).await;
        if async_url.is_some() {
            assert_eq!(response.status(), StatusCode::OK);
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["name"], job.as_str());
            match body["status"].as_str() {
                Some("InProgress") => {}
                Some("Succeeded") => return job,
                other => panic!("the job ended {other:?}: {body:#}"),
            }
        } else {
            match response.status() {
                StatusCode::ACCEPTED => {}
                StatusCode::OK => {
                    let item: Value = response.json().await.expect("JSON");
                    assert_valid("ReplicationProtectedItem", &item);
                    return job;
                }
                other => panic!("the operation result is {other}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job `{job}` did not finish");
}

/// The stage table of docs/azure.md, written out again here (the emulator must not be
/// tested with the client's code): what the `azure` provider will read from an item.
fn stage_per_docs(item: &Value) -> Stage {
    let props = &item["properties"];
    let allows = |op: &str| {
        props["allowedOperations"]
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == op))
    };
    let at_recovery = props["activeLocation"] == "Recovery";
    let details = &props["providerSpecificDetails"];
    match details["instanceType"].as_str() {
        Some("InMageAzureV2") if !at_recovery => Stage::Protected,
        Some("InMageAzureV2") => {
            assert!(!allows("Commit"), "an uncommitted failover to Azure");
            Stage::FailedOver
        }
        Some("InMage") => {
            let in_azure = match details["activeSiteType"].as_str() {
                Some("Azure") => true,
                Some("OnPrem") => false,
                _ => at_recovery,
            };
            if in_azure {
                Stage::Reprotected
            } else if !allows("Commit")
                && (props["protectionState"] == "UnplannedFailoverCommitted"
                    || allows("SwitchProtection"))
            {
                Stage::Committed
            } else {
                Stage::FailedBack
            }
        }
        other => panic!("not a VMware failback item: {other:?}"),
    }
}

/// A world whose operations take a little real time, so the polling sees them run.
fn slow(text: String) -> String {
    text.replace("scale: 0.0", "scale: 0.0002")
}

#[tokio::test]
async fn the_definitions_copy_is_identical_to_the_shared_one() {
    let shared = repo().join("../shared/asr-api/definitions.json");
    let shared = std::fs::read_to_string(&shared).unwrap_or_else(|error| {
        panic!(
            "cannot read `{}` (the `shared/asr-api` beside the repository root): {error}",
            shared.display()
        )
    });
    assert!(
        shared == swagger::DEFINITIONS,
        "providers/sim-serve/asr-api/definitions.json differs from shared/asr-api/definitions.json; copy it again"
    );
}

#[tokio::test]
async fn reads_render_the_world_and_validate_against_the_definitions() {
    let f = plain().await;
    let token = f.token().await;

    let fabrics = f.get_json(&token, &f.arm("/replicationFabrics")).await;
    assert_valid("FabricCollection", &fabrics);
    let vmware = &fabrics["value"][0];
    assert_eq!(vmware["properties"]["friendlyName"], "cs-avs-01");
    let details = &vmware["properties"]["customDetails"];
    assert_eq!(details["instanceType"], "VMware");
    let azure_ps = details["processServers"]
        .as_array()
        .expect("process servers")
        .iter()
        .find(|ps| ps["friendlyName"] == "ps-azure-01")
        .expect("the process server in Azure");
    assert_eq!(azure_ps["health"], "Normal");
    let windows = details["masterTargetServers"]
        .as_array()
        .expect("master targets")
        .iter()
        .find(|mt| mt["name"] == "mt-windows-01")
        .expect("mt-windows-01");
    assert_eq!(windows["osType"], "Windows");
    // The world's `R:`, named as ASR names a Windows volume (`D`, `F` in the recordings).
    assert_eq!(windows["retentionVolumes"][0]["volumeName"], "R");
    assert_eq!(windows["dataStores"][0]["symbolicName"], "vsan-01");
    let one = f
        .get_json(&token, &f.arm("/replicationFabrics/vmware-fabric"))
        .await;
    assert_valid("Fabric", &one);

    let vcenters = f.get_json(&token, &f.arm("/replicationvCenters")).await;
    assert_valid("VCenterCollection", &vcenters);
    assert_eq!(
        vcenters["value"][0]["properties"]["friendlyName"],
        "vc-avs-01"
    );
    assert_eq!(
        vcenters["value"][0]["properties"]["discoveryStatus"],
        "Completed"
    );

    let policies = f.get_json(&token, &f.arm("/replicationPolicies")).await;
    assert_valid("PolicyCollection", &policies);
    let kinds: Vec<&str> = policies["value"]
        .as_array()
        .expect("policies")
        .iter()
        .filter_map(|p| p["properties"]["providerSpecificDetails"]["instanceType"].as_str())
        .collect();
    assert_eq!(kinds, ["InMage", "InMageAzureV2"]);

    let items = f
        .get_json(&token, &f.arm("/replicationProtectedItems"))
        .await;
    assert_valid("ReplicationProtectedItemCollection", &items);
    let pg = items["value"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["properties"]["friendlyName"] == "pg-01")
        .expect("pg-01");
    let props = &pg["properties"];
    assert_eq!(props["activeLocation"], "Recovery");
    assert_eq!(
        props["providerSpecificDetails"]["instanceType"],
        "InMageAzureV2"
    );
    assert_eq!(props["providerSpecificDetails"]["osType"], "Linux");
    assert_eq!(
        props["providerSpecificDetails"]["sourceVmRamSizeInMB"],
        8192
    );
    assert_eq!(
        props["providerSpecificDetails"]["protectedDisks"][1]["diskCapacityInBytes"],
        2048u64 << 30
    );
    assert!(
        !props["allowedOperations"]
            .as_array()
            .expect("allowed operations")
            .iter()
            .any(|op| op == "Commit")
    );
    let by_container = f.get_json(&token, &f.arm(ITEM)).await;
    assert_eq!(by_container["value"], items["value"]);
    let item = f
        .get_json(&token, &f.arm(&format!("{ITEM}/item-pg-01")))
        .await;
    assert_valid("ReplicationProtectedItem", &item);
    assert_eq!(&item, pg);

    let jobs = f.get_json(&token, &f.arm("/replicationJobs")).await;
    assert_valid("JobCollection", &jobs);
    assert_eq!(jobs["value"], json!([]));
    f.server.shutdown().await;
}

#[tokio::test]
async fn a_wrong_secret_is_401_invalid_client() {
    let f = start(|t| t, |c| c.client_secret = Some("right".into())).await;
    let response = f.token_response("wrong").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(body["error_codes"], json!([7000215]));
    assert_eq!(
        f.token_response("").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.token_response("right").await.status(), StatusCode::OK);

    let open = plain().await;
    assert_eq!(
        open.token_response("").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        open.token_response("anything").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_scope_other_than_the_served_endpoint_is_400_invalid_scope() {
    let f = plain().await;
    for scope in [
        "https://management.azure.com/.default".to_string(),
        format!("{}/", f.server.url()),
        String::new(),
    ] {
        let response = f.token_response_for("sim-secret", &scope).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{scope}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(body["error"], "invalid_scope", "{scope}");
        assert_eq!(body["error_codes"], json!([70011]));
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.starts_with("AADSTS70011")),
            "{body}"
        );
    }
    f.token().await;
}

#[tokio::test]
async fn failover_commit_takes_no_body_or_an_empty_object() {
    let f = plain().await;
    let token = f.token().await;
    let commit = f.arm(&format!("{ITEM}/item-dc-01/failoverCommit"));
    for body in [r#"{"properties": {}}"#, "[]", "not json"] {
        let response = f.post(&token, &commit, Some(body)).await;
        assert_arm_error(response, StatusCode::BAD_REQUEST, "InvalidRequestContent").await;
    }
    let response = f.post(&token, &commit, Some("{}")).await;
    assert_ne!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_expired_token_is_401_expired_authentication_token() {
    let f = start(|t| t, |c| c.token_lifetime = Duration::ZERO).await;
    let token = f.token().await;
    let response = f.get(&token, &f.arm("/replicationFabrics")).await;
    assert_eq!(
        header(&response, "www-authenticate").as_deref(),
        Some("Bearer error=\"invalid_token\"")
    );
    assert_arm_error(
        response,
        StatusCode::UNAUTHORIZED,
        "ExpiredAuthenticationToken",
    )
    .await;

    let response = f.get("not-a-token", &f.arm("/replicationFabrics")).await;
    assert_arm_error(response, StatusCode::UNAUTHORIZED, "AuthenticationFailed").await;
    let response = f
        .client
        .get(f.arm("/replicationFabrics"))
        .send()
        .await
        .expect("answers");
    assert_arm_error(response, StatusCode::UNAUTHORIZED, "AuthenticationFailed").await;
}

#[tokio::test]
async fn page_size_one_gives_every_item_across_pages() {
    let f = start(|t| t, |c| c.page_size = 1).await;
    let token = f.token().await;
    let mut url = f.arm("/replicationProtectedItems");
    let mut names = Vec::new();
    loop {
        let page = f.get_json(&token, &url).await;
        assert_valid("ReplicationProtectedItemCollection", &page);
        let value = page["value"].as_array().expect("a page");
        assert_eq!(value.len(), 1);
        names.push(
            value[0]["properties"]["friendlyName"]
                .as_str()
                .expect("a name")
                .to_string(),
        );
        match page["nextLink"].as_str() {
            Some(next) => {
                assert!(next.starts_with(&f.server.url()), "absolute: {next}");
                assert!(next.contains("api-version=2026-05-01"), "{next}");
                url = next.to_string();
            }
            None => break,
        }
    }
    let world: Vec<String> = f.world().machines.keys().cloned().collect();
    assert_eq!(names, world);
    assert_eq!(names.len(), 8);
}

/// One style to completion: the world ends as the sim provider would leave it.
async fn reprotect_with(style: LroHeaders) {
    let f = start(slow, |c| {
        c.lro_headers = style;
        c.retry_after = 0;
    })
    .await;
    let token = f.token().await;
    let body = reprotect_body(None).to_string();
    let response = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/reProtect")),
            Some(&body),
        )
        .await;
    let job = follow(&f, &token, response, style).await;

    let world = f.world();
    let dc = &world.machines["dc-01"];
    assert_eq!(dc.stage, Stage::Reprotected);
    assert_eq!(dc.settings.master_target.as_deref(), Some("mt-windows-01"));
    assert_eq!(dc.settings.process_server.as_deref(), Some("ps-azure-01"));
    assert_eq!(dc.settings.datastore.as_deref(), Some("vsan-01"));
    assert_eq!(dc.settings.retention_drive.as_deref(), Some("R:"));
    assert_eq!(dc.settings.recovery, Some(Recovery::Original));
    assert!(
        world.history.iter().any(|h| h.operation.0 == job),
        "the job name is the operation id"
    );

    let read = f
        .get_json(&token, &f.arm(&format!("/replicationJobs/{job}")))
        .await;
    assert_valid("Job", &read);
    assert_eq!(read["properties"]["state"], "Succeeded");
    assert_eq!(
        read["properties"]["scenarioName"],
        "SwitchReplicationGroupProtection"
    );
    // As recorded: the client's request id, then ASR's own.
    let activity = read["properties"]["activityId"]
        .as_str()
        .expect("an activityId");
    assert!(activity.starts_with("op-42 ActivityId: "), "{activity}");
    assert_eq!(read["properties"]["targetObjectName"], "dc-01");
    let item = f
        .get_json(&token, &f.arm(&format!("{ITEM}/item-dc-01")))
        .await;
    assert_eq!(
        item["properties"]["providerSpecificDetails"]["instanceType"],
        "InMage"
    );
    assert_eq!(
        item["properties"]["providerSpecificDetails"]["activeSiteType"],
        "Azure"
    );
    assert_eq!(
        item["properties"]["providerSpecificDetails"]["masterTargetId"],
        "MT-mt-windows-01"
    );
}

#[tokio::test]
async fn both_headers_run_a_reprotect_to_completion() {
    reprotect_with(LroHeaders::Both).await;
}

#[tokio::test]
async fn the_async_operation_header_runs_a_reprotect_to_completion() {
    reprotect_with(LroHeaders::Async).await;
}

#[tokio::test]
async fn the_location_header_runs_a_reprotect_to_completion() {
    reprotect_with(LroHeaders::Location).await;
}

#[tokio::test]
async fn rotating_headers_take_a_machine_to_committed_and_home() {
    let f = start(slow, |c| {
        c.lro_headers = LroHeaders::Rotate;
        c.retry_after = 0;
    })
    .await;
    let token = f.token().await;
    let item = |action: &str| f.arm(&format!("{ITEM}/item-batch-01/{action}"));
    // batch-01 has no VMware VM any more: alternate-location recovery onto a Linux target.
    let mut body = reprotect_body(Some("vsan-01"));
    body["properties"]["providerSpecificDetails"]["masterTargetId"] = json!("MT-mt-linux-02");
    body["properties"]["providerSpecificDetails"]["retentionDrive"] = json!("/mnt/retention");
    let steps = [
        (
            "reProtect",
            Some(body.to_string()),
            LroHeaders::Both,
            Stage::Reprotected,
        ),
        (
            "unplannedFailover",
            Some(failback_body().to_string()),
            LroHeaders::Async,
            Stage::FailedBack,
        ),
        (
            "failoverCommit",
            None,
            LroHeaders::Location,
            Stage::Committed,
        ),
        (
            "reProtect",
            Some(home_body().to_string()),
            LroHeaders::Both,
            Stage::Protected,
        ),
    ];
    for (action, body, style, stage) in steps {
        let before = f.world().machines["batch-01"].stage;
        let response = f.post(&token, &item(action), body.as_deref()).await;
        // While the job runs ASR empties `allowedOperations`, and the item never reads as
        // further on than the stage it started from.
        let running = f
            .get_json(&token, &f.arm(&format!("{ITEM}/item-batch-01")))
            .await;
        if running["properties"]["currentScenario"]["scenarioName"] != "None" {
            assert_eq!(running["properties"]["allowedOperations"], json!([]));
            assert!(stage_per_docs(&running) <= before, "{running:#}");
        }
        follow(&f, &token, response, style).await;
        assert_eq!(
            f.world().machines["batch-01"].stage,
            stage,
            "after `{action}`"
        );
        let read = f
            .get_json(&token, &f.arm(&format!("{ITEM}/item-batch-01")))
            .await;
        assert_valid("ReplicationProtectedItem", &read);
        assert_eq!(
            stage_per_docs(&read),
            stage,
            "the client reads the world's stage"
        );
    }
    assert_eq!(
        f.world().machines["batch-01"].settings.recovery,
        Some(Recovery::Alternate)
    );
    let jobs = f.get_json(&token, &f.arm("/replicationJobs")).await;
    assert_valid("JobCollection", &jobs);
    let scenarios: Vec<&str> = jobs["value"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|j| j["properties"]["scenarioName"].as_str())
        .collect();
    assert_eq!(
        scenarios,
        [
            "SwitchReplicationGroupProtection",
            "UnplannedFailover",
            "Commit",
            "SwitchReplicationGroupProtection"
        ]
    );
}

#[tokio::test]
async fn an_invalid_reprotect_body_is_400_naming_the_field() {
    let f = plain().await;
    let token = f.token().await;
    let url = f.arm(&format!("{ITEM}/item-dc-01/reProtect"));

    let mut missing = reprotect_body(None);
    missing["properties"]["providerSpecificDetails"]
        .as_object_mut()
        .expect("details")
        .remove("masterTargetId");
    let message = assert_arm_error(
        f.post(&token, &url, Some(&missing.to_string())).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(message.contains("masterTargetId"), "{message}");

    let mut misspelt = reprotect_body(None);
    misspelt["properties"]["providerSpecificDetails"]["retentionDrve"] = json!("R:");
    let message = assert_arm_error(
        f.post(&token, &url, Some(&misspelt.to_string())).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(message.contains("retentionDrve"), "{message}");

    let mut unknown = reprotect_body(None);
    unknown["properties"]["providerSpecificDetails"]["processServerId"] = json!("PS-nope");
    let message = assert_arm_error(
        f.post(&token, &url, Some(&unknown.to_string())).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(
        message.contains("/properties/providerSpecificDetails/processServerId"),
        "{message}"
    );

    for broken in [Some("{\"properties\": "), Some("[1, 2"), None] {
        assert_arm_error(
            f.post(&token, &url, broken).await,
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
        )
        .await;
    }
    let bad_failover = json!({"properties": {"failoverDirection": "RecoveryToPrimary", "providerSpecificDetails": {"instanceType": "InMage", "recoveryPointType": "Latest"}}});
    let message = assert_arm_error(
        f.post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/unplannedFailover")),
            Some(&bad_failover.to_string()),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(message.contains("recoveryPointType"), "{message}");
    assert_eq!(
        f.world().machines["dc-01"].stage,
        Stage::FailedOver,
        "nothing ran"
    );
    assert!(f.world().history.is_empty());
}

#[tokio::test]
async fn a_world_fault_fails_the_job_with_its_asr_code() {
    let f = start(
        |t| {
            t.replace(
                "faults: []",
                "faults:\n- {machine: dc-01, operation: reprotect, code: 78093}",
            )
        },
        |c| c.retry_after = 0,
    )
    .await;
    let token = f.token().await;
    let response = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/reProtect")),
            Some(&reprotect_body(None).to_string()),
        )
        .await;
    assert_eq!(
        response.status(),
        StatusCode::ACCEPTED,
        "ASR accepts, then the job fails"
    );
    let status_url = header(&response, "azure-asyncoperation").expect("async header");
    let location = header(&response, "location").expect("location header");
    // The job fails at once, but the 202 may be answered a moment before it is recorded.
    let mut status: Value = f.get_json(&token, &status_url).await;
    for _ in 0..100 {
        if status["status"] != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = f.get_json(&token, &status_url).await;
    }
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "78093");
    assert_arm_error(
        f.get(&token, &location).await,
        StatusCode::BAD_REQUEST,
        "78093",
    )
    .await;
    let job = status["name"].as_str().expect("a job name");
    let read = f
        .get_json(&token, &f.arm(&format!("/replicationJobs/{job}")))
        .await;
    assert_valid("Job", &read);
    assert_eq!(read["properties"]["state"], "Failed");
    assert_eq!(
        read["properties"]["errors"][0]["serviceErrorDetails"]["code"],
        "78093"
    );
    assert_eq!(f.world().machines["dc-01"].stage, Stage::FailedOver);
}

#[tokio::test]
async fn a_rule_the_sim_enforces_fails_the_job_with_its_code() {
    let f = start(|t| t, |c| c.retry_after = 0).await;
    let token = f.token().await;
    // pg-01 is Linux; a Windows master target breaks the sim's `master-target` rule.
    let body = reprotect_body(Some("vsan-01")).to_string();
    let response = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-pg-01/reProtect")),
            Some(&body),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let status_url = header(&response, "azure-asyncoperation").expect("async header");
    // The job fails at once, but the 202 may be answered a moment before it is recorded.
    let mut status: Value = f.get_json(&token, &status_url).await;
    for _ in 0..100 {
        if status["status"] != "InProgress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        status = f.get_json(&token, &status_url).await;
    }
    assert_eq!(status["status"], "Failed");
    assert_eq!(status["error"]["code"], "master-target");
}

#[tokio::test]
async fn a_transient_refusal_is_answered_at_once() {
    let f = start(
        |t| {
            t.replace(
                "faults: []",
                "faults:\n- {machine: dc-01, operation: reprotect, code: 503}",
            )
        },
        |_| {},
    )
    .await;
    let token = f.token().await;
    let url = f.arm(&format!("{ITEM}/item-dc-01/reProtect"));
    let body = reprotect_body(None).to_string();
    let response = f.post(&token, &url, Some(&body)).await;
    assert!(header(&response, "retry-after").is_some());
    assert_arm_error(response, StatusCode::SERVICE_UNAVAILABLE, "503").await;
    let jobs = f.get_json(&token, &f.arm("/replicationJobs")).await;
    assert_eq!(jobs["value"], json!([]), "a refused request leaves no job");
    // The fault is used up: the same request now starts.
    assert_eq!(
        f.post(&token, &url, Some(&body)).await.status(),
        StatusCode::ACCEPTED
    );
}

#[tokio::test]
async fn throttling_answers_every_nth_request_with_429() {
    let f = start(|t| t, |c| c.throttle_every = Some(2)).await;
    let token = f.token().await;
    let url = f.arm("/replicationPolicies");
    assert_eq!(f.get(&token, &url).await.status(), StatusCode::OK);
    let response = f.get(&token, &url).await;
    assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
    assert_arm_error(response, StatusCode::TOO_MANY_REQUESTS, "TooManyRequests").await;
    assert_eq!(f.get(&token, &url).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unknown_api_version_is_400() {
    let f = plain().await;
    let token = f.token().await;
    let url = f.url(&format!("{BASE}/replicationFabrics?api-version=2021-01-01"));
    assert_arm_error(
        f.get(&token, &url).await,
        StatusCode::BAD_REQUEST,
        "InvalidApiVersionParameter",
    )
    .await;
    let url = f.url(&format!("{BASE}/replicationFabrics"));
    assert_arm_error(
        f.get(&token, &url).await,
        StatusCode::BAD_REQUEST,
        "InvalidApiVersionParameter",
    )
    .await;
}

#[tokio::test]
async fn unknown_vaults_and_paths_are_404_and_arm_segments_ignore_case() {
    let f = plain().await;
    let token = f.token().await;
    let other = BASE.replace("vault-lifeboat", "vault-other");
    let url = f.url(&format!(
        "{other}/replicationFabrics?api-version=2026-05-01"
    ));
    assert_arm_error(
        f.get(&token, &url).await,
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
    )
    .await;
    for rest in [
        "/replicationJobs/no-such-job",
        "/replicationNothing",
        &format!("{ITEM}/item-nobody"),
    ] {
        assert_arm_error(
            f.get(&token, &f.arm(rest)).await,
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
        )
        .await;
    }
    let shouted = BASE
        .replace("subscriptions", "SUBSCRIPTIONS")
        .replace("resourceGroups", "resourcegroups")
        .replace("rg-lifeboat", "RG-Lifeboat");
    let url = f.url(&format!(
        "{shouted}/replicationFabrics?api-version=2026-05-01"
    ));
    assert_eq!(f.get(&token, &url).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_non_loopback_address_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::new(dir.path().join("world.yaml"));
    config.listen = "0.0.0.0:0".parse().expect("an address");
    let error = lifeboat_sim_serve::serve(config)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("loopback only"), "{error}");
}

/// The validity checks above would prove nothing if the converted definitions accepted
/// anything: an invented field anywhere is refused.
#[tokio::test]
async fn the_response_validator_refuses_invented_fields() {
    let f = plain().await;
    let token = f.token().await;
    let fabrics = f.get_json(&token, &f.arm("/replicationFabrics")).await;
    let mut broken = fabrics.clone();
    broken["value"][0]["properties"]["customDetails"]["masterTargetServers"][0]["diskCounts"] =
        json!(1);
    assert!(
        !swagger::validator("FabricCollection")
            .expect("a validator")
            .is_valid(&broken)
    );
    let item = f
        .get_json(&token, &f.arm(&format!("{ITEM}/item-dc-01")))
        .await;
    let mut broken = item.clone();
    broken["properties"]["providerSpecificDetails"]["activeSiteType"] = json!("Azure");
    assert!(
        !swagger::validator("ReplicationProtectedItem")
            .expect("a validator")
            .is_valid(&broken),
        "`activeSiteType` is an InMage field, not an InMageAzureV2 one"
    );
    let mut broken = item;
    broken["properties"]["stage"] = json!("failed-over");
    assert!(
        !swagger::validator("ReplicationProtectedItem")
            .expect("a validator")
            .is_valid(&broken)
    );
    let policies = f.get_json(&token, &f.arm("/replicationPolicies")).await;
    let mut broken = policies;
    broken["value"][0]["extra"] = json!(true);
    assert!(
        !swagger::validator("PolicyCollection")
            .expect("a validator")
            .is_valid(&broken)
    );
}

#[tokio::test]
async fn a_second_job_on_a_busy_item_is_409_conflict() {
    let f = start(|t| t.replace("scale: 0.0", "scale: 0.002"), |_| {}).await;
    let token = f.token().await;
    let body = reprotect_body(None).to_string();
    let first = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/reProtect")),
            Some(&body),
        )
        .await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let second = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/failoverCommit")),
            None,
        )
        .await;
    assert!(header(&second, "retry-after").is_some());
    assert_arm_error(second, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn a_restart_loses_the_jobs_but_not_the_estate() {
    let f = start(|t| t, |c| c.retry_after = 0).await;
    let token = f.token().await;
    let body = reprotect_body(None).to_string();
    let response = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/reProtect")),
            Some(&body),
        )
        .await;
    let job = follow(&f, &token, response, LroHeaders::Both).await;
    let Fixture {
        _dir,
        world,
        server,
        client,
    } = f;
    server.shutdown().await;
    let server = lifeboat_sim_serve::serve(Config::new(&world))
        .await
        .expect("the server starts again");
    let pem = std::fs::read(server.cert_path()).expect("the new certificate");
    let client = {
        drop(client);
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("PEM")])
            .build()
            .expect("a client")
    };
    let f = Fixture {
        _dir,
        world,
        server,
        client,
    };
    let token = f.token().await;
    let response = f
        .get(&token, &f.arm(&format!("/replicationJobs/{job}")))
        .await;
    assert_arm_error(response, StatusCode::NOT_FOUND, "ResourceNotFound").await;
    let item = f
        .get_json(&token, &f.arm(&format!("{ITEM}/item-dc-01")))
        .await;
    assert_eq!(stage_per_docs(&item), Stage::Reprotected);
}

#[tokio::test]
async fn ipv6_loopback_is_served_with_a_matching_certificate() {
    let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
        return; // No IPv6 loopback on this machine: nothing to check.
    };
    drop(probe);
    let f = start(|t| t, |c| c.listen = "[::1]:0".parse().expect("an address")).await;
    assert!(
        f.server.url().starts_with("https://[::1]:"),
        "{}",
        f.server.url()
    );
    f.token().await;
}

/// Shutting down mid-operation leaves a readable world in which the operation still ends.
#[tokio::test]
async fn a_shutdown_mid_operation_leaves_the_operation_in_the_world() {
    // A reprotect of 1,200 simulated seconds takes 2.4 s here.
    let f = start(|t| t.replace("scale: 0.0", "scale: 0.002"), |_| {}).await;
    let token = f.token().await;
    let body = reprotect_body(None).to_string();
    let started = std::time::Instant::now();
    let response = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/reProtect")),
            Some(&body),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let Fixture {
        _dir,
        world,
        server,
        client,
    } = f;
    drop(client);
    server.shutdown().await;
    let during = store::read(&world).expect("the world reads after the shutdown");
    if started.elapsed() < Duration::from_secs(2) {
        assert_eq!(during.running.len(), 1, "the reprotect is still running");
    }
    let provider = lifeboat_provider_sim::SimProvider::open(&world).expect("the world opens");
    for _ in 0..100 {
        let now = provider.world().await.expect("the world settles");
        if now.machines["dc-01"].stage == Stage::Reprotected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reprotect never finished in the world");
}

/// What the real service refuses, the emulator refuses: the failback in the other direction
/// (Microsoft's cmdlet: "RecoveryToPrimary Direction is Invalid for InMage"), the reprotect to
/// Azure in the direction lifeboat used to send, and one without the recorded ids.
#[tokio::test]
async fn the_directions_asr_refuses_are_refused() {
    let f = start(
        |text| text.replace("stage: failed-over", "stage: reprotected"),
        |_| {},
    )
    .await;
    let token = f.token().await;
    let mut wrong = failback_body();
    wrong["properties"]["failoverDirection"] = json!("RecoveryToPrimary");
    let message = assert_arm_error(
        f.post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/unplannedFailover")),
            Some(&wrong.to_string()),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(message.contains("Invalid for InMage"), "{message}");

    let url = f.arm(&format!("{ITEM}/item-dc-01/reProtect"));
    let mut old = home_body();
    old["properties"]["failoverDirection"] = json!("PrimaryToRecovery");
    let message = assert_arm_error(
        f.post(&token, &url, Some(&old.to_string())).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(message.contains("RecoveryToPrimary"), "{message}");
    for field in [
        "processServerId",
        "masterTargetId",
        "runAsAccountId",
        "policyId",
    ] {
        let mut missing = home_body();
        missing["properties"]["providerSpecificDetails"]
            .as_object_mut()
            .expect("details")
            .remove(field);
        let message = assert_arm_error(
            f.post(&token, &url, Some(&missing.to_string())).await,
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
        )
        .await;
        assert!(message.contains(field), "{field}: {message}");
    }
    assert!(f.world().history.is_empty(), "nothing ran");
}

/// Items and pages in the recorded shapes: the idle `currentScenario`, the reprotected item
/// at `Primary` in Azure, and `nextLink: null` on the last page.
#[tokio::test]
async fn items_and_pages_have_the_recorded_shapes() {
    let f = start(
        |text| text.replace("stage: failed-over", "stage: reprotected"),
        |_| {},
    )
    .await;
    let token = f.token().await;
    let page = f
        .get_json(&token, &f.arm("/replicationProtectedItems"))
        .await;
    assert!(page["nextLink"].is_null(), "{page:#}");
    let item = &page["value"][0]["properties"];
    assert_eq!(item["currentScenario"]["scenarioName"], "None");
    assert!(
        item["currentScenario"]["jobId"]
            .as_str()
            .is_some_and(|id| id.ends_with("/replicationJobs/None")),
        "{item:#}"
    );
    assert_eq!(item["currentScenario"]["startTime"], "1753-01-01T01:01:01Z");
    assert_eq!(item["activeLocation"], "Primary");
    assert_eq!(item["providerSpecificDetails"]["activeSiteType"], "Azure");
    assert_eq!(
        item["allowedOperations"],
        json!(["UnplannedFailover", "DisableProtection"])
    );
    let fabric = f
        .get_json(&token, &f.arm("/replicationFabrics/vmware-fabric"))
        .await;
    let details = &fabric["properties"]["customDetails"];
    assert_eq!(details["runAsAccounts"][0]["accountName"], "vmware-admin");
    let windows = details["masterTargetServers"]
        .as_array()
        .expect("master targets")
        .iter()
        .find(|mt| mt["name"] == "mt-windows-01")
        .expect("the Windows master target");
    assert_eq!(
        windows["retentionVolumes"][0]["volumeName"], "R",
        "as ASR names it"
    );
    assert!(
        details["masterTargetServers"]
            .as_array()
            .expect("master targets")
            .iter()
            .any(|mt| mt["id"] == "PS-ps-avs-01"),
        "a process server is also a master target, with its id"
    );
}

/// `reassociateGateway` moves one reprotected item to another process server.
#[tokio::test]
async fn reassociate_gateway_switches_the_process_server() {
    let f = start(|text| text, |c| c.retry_after = 0).await;
    let token = f.token().await;
    let response = f
        .post(
            &token,
            &f.arm(&format!("{ITEM}/item-dc-01/reProtect")),
            Some(&reprotect_body(Some("vsan-01")).to_string()),
        )
        .await;
    follow(&f, &token, response, LroHeaders::Both).await;
    let switch = |source: &str| {
        json!({"properties": {
            "containerName": "vmware-container",
            "sourceProcessServerId": source,
            "targetProcessServerId": "PS-ps-azure-02",
            "updateType": "ServerLevel",
            "vmsToMigrate": ["item-dc-01"],
        }})
        .to_string()
    };
    let url = f.arm("/replicationFabrics/vmware-fabric/reassociateGateway");
    let message = assert_arm_error(
        f.post(&token, &url, Some(&switch("PS-ps-avs-01"))).await,
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
    )
    .await;
    assert!(message.contains("does not replicate through"), "{message}");
    let response = f.post(&token, &url, Some(&switch("PS-ps-azure-01"))).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    follow(&f, &token, response, LroHeaders::Both).await;
    let dc = &f.world().machines["dc-01"];
    assert_eq!(dc.stage, Stage::Reprotected);
    assert_eq!(dc.settings.process_server.as_deref(), Some("ps-azure-02"));
    assert_eq!(dc.settings.master_target.as_deref(), Some("mt-windows-01"));
}
