//! `AzureProvider` against a mock vault: refresh, the four operations with their bodies
//! validated against `definitions.json`, long-running operations through
//! `Azure-AsyncOperation`, `Location` or both with `Retry-After`, failed jobs, the fallback to
//! the header URL, and idempotence by operation id.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mock::{Canned, Mock, Recorded};
use common::{assert_valid, fixture};
use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::{
    OperationId, OperationKind, OperationRequest, OperationStatus, Provider, RefreshRequest,
    ReprotectSettings, Stage,
};
use lifeboat_provider_azure::client::ArmRetryPolicy;
use lifeboat_provider_azure::credential::{StaticToken, Token};
use lifeboat_provider_azure::lro::PollPolicy;
use lifeboat_provider_azure::{AzureConfig, AzureProvider};
use serde_json::{Value, json};

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const TOKEN: &str = "tok-SECRET-77e0";

fn vault_path() -> String {
    format!(
        "/subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr"
    )
}

fn item_path(item: &str) -> String {
    format!(
        "{}/replicationFabrics/cs-fabric-1/replicationProtectionContainers/cloud_1/replicationProtectedItems/{item}",
        vault_path()
    )
}

/// A protected item named `name` at `stage` (the stage rule of `docs/azure.md`, inverted).
fn item(name: &str, stage: Stage) -> Value {
    let (kind, location, allowed, site) = match stage {
        Stage::FailedOver => ("InMageAzureV2", "Recovery", vec!["ReverseReplicate"], None),
        Stage::Reprotected => (
            "InMage",
            "Recovery",
            vec!["UnplannedFailover"],
            Some("Azure"),
        ),
        Stage::FailedBack => ("InMage", "Primary", vec!["Commit"], Some("OnPrem")),
        Stage::Committed => (
            "InMage",
            "Primary",
            vec!["ReverseReplicate"],
            Some("OnPrem"),
        ),
        Stage::Protected => ("InMageAzureV2", "Primary", vec!["PlannedFailover"], None),
    };
    let mut details =
        json!({"instanceType": kind, "osType": "Windows", "discoveryType": "vCenter"});
    if let Some(site) = site {
        details["activeSiteType"] = json!(site);
    }
    json!({
        "id": format!("/Subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationFabrics/cs-fabric-1/replicationProtectionContainers/cloud_1/replicationProtectedItems/{name}-item"),
        "name": format!("{name}-item"),
        "properties": {
            "friendlyName": name,
            "activeLocation": location,
            "allowedOperations": allowed,
            "providerSpecificDetails": details,
        }
    })
}

/// Which LRO headers the 202 carries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Headers {
    Async,
    Location,
    Both,
}

/// How the mock vault behaves.
#[derive(Debug, Clone)]
struct Behaviour {
    headers: Headers,
    retry_after: &'static str,
    /// The job's state at each poll; the last repeats.
    states: Vec<&'static str>,
    /// The error of a `Failed` job: (code, message).
    error: Option<(&'static str, &'static str)>,
    /// Whether `replicationJobs/{job}` can be read (404 otherwise).
    job_readable: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            headers: Headers::Both,
            retry_after: "0",
            states: vec!["InProgress", "Succeeded"],
            error: None,
            job_readable: true,
        }
    }
}

struct Vault {
    mock: Mock,
    /// The jobs ASR has, as listed by `replicationJobs`.
    jobs: Arc<Mutex<Vec<Value>>>,
}

fn job(name: &str, activity: &str, state: &str, error: Option<(&str, &str)>) -> Value {
    let mut job = json!({
        "id": format!("{}/replicationJobs/{name}", vault_path()),
        "name": name,
        "properties": {
            "activityId": activity,
            "scenarioName": "Reprotect",
            "state": state,
            "targetObjectName": "web-01",
            "errors": [],
        }
    });
    if let Some((code, message)) = error {
        job["properties"]["errors"] = json!([{
            "serviceErrorDetails": {"code": code, "message": message},
            "errorLevel": "Error",
        }]);
    }
    job
}

async fn vault(items: Vec<Value>, behaviour: Behaviour) -> Vault {
    let mock = Mock::start().await;
    let jobs: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let v = vault_path();
    mock.script(
        "GET",
        &format!("{v}/replicationProtectedItems"),
        vec![Canned::json(200, json!({"value": items}))],
    );
    mock.script(
        "GET",
        &format!("{v}/replicationFabrics"),
        vec![Canned::json(
            200,
            json!({"value": [fixture("vmware_fabric.json")]}),
        )],
    );
    mock.script(
        "GET",
        &format!("{v}/replicationvCenters"),
        vec![Canned::json(200, json!({"value": []}))],
    );
    let mut policies = fixture("policies.json");
    policies.as_object_mut().map(|p| p.remove("nextLink"));
    mock.script(
        "GET",
        &format!("{v}/replicationPolicies"),
        vec![Canned::json(200, policies)],
    );
    {
        let jobs = jobs.clone();
        mock.on("GET", &format!("{v}/replicationJobs"), move |_| {
            let jobs = jobs.lock().expect("jobs").clone();
            Canned::json(200, json!({"value": jobs}))
        });
    }
    let polls = Arc::new(Mutex::new(0usize));
    let start_job = {
        let jobs = jobs.clone();
        let base = mock.base.clone();
        let behaviour = behaviour.clone();
        move |r: &Recorded| {
            let mut jobs = jobs.lock().expect("jobs");
            let name = format!("job-{}", jobs.len() + 1);
            let activity = r.header("x-ms-client-request-id").unwrap_or_default();
            jobs.push(job(
                &name,
                &format!("{activity} ActivityId: 9d1f"),
                "NotStarted",
                None,
            ));
            let mut answer = Canned::empty(202).header("Retry-After", behaviour.retry_after);
            if behaviour.headers != Headers::Location {
                answer = answer.header(
                    "Azure-AsyncOperation",
                    &format!(
                        "{base}{v}/replicationOperationStatus/{name}?api-version=2026-05-01",
                        v = vault_path()
                    ),
                );
            }
            if behaviour.headers != Headers::Async {
                answer = answer.header(
                    "Location",
                    &format!(
                        "{base}{v}/operationResults/{name}?api-version=2026-05-01",
                        v = vault_path()
                    ),
                );
            }
            answer
        }
    };
    let start_job = Arc::new(start_job);
    for name in ["web-01", "app-01", "db-01", "ad-01"] {
        for action in ["reProtect", "unplannedFailover", "failoverCommit"] {
            let start_job = start_job.clone();
            mock.on(
                "POST",
                &format!("{}/{action}", item_path(&format!("{name}-item"))),
                move |r| start_job(r),
            );
        }
    }
    // The job, the Azure-AsyncOperation status and the Location result share one clock.
    let state_at = {
        let polls = polls.clone();
        let behaviour = behaviour.clone();
        move || {
            let mut n = polls.lock().expect("polls");
            let state = behaviour.states[(*n).min(behaviour.states.len() - 1)];
            *n += 1;
            state
        }
    };
    let state_at = Arc::new(state_at);
    for n in 1..=3 {
        let name = format!("job-{n}");
        {
            let state_at = state_at.clone();
            let behaviour = behaviour.clone();
            let jobs = jobs.clone();
            let name = name.clone();
            mock.on("GET", &format!("{v}/replicationJobs/{name}"), move |_| {
                if !behaviour.job_readable {
                    return Canned::arm_error(404, "ResourceNotFound", "no such job");
                }
                let state = state_at();
                let mut jobs = jobs.lock().expect("jobs");
                let Some(job) = jobs.iter_mut().find(|j| j["name"] == json!(name)) else {
                    return Canned::arm_error(404, "ResourceNotFound", "no such job");
                };
                job["properties"]["state"] = json!(state);
                if state == "Failed"
                    && let Some((code, message)) = behaviour.error
                {
                    job["properties"]["errors"] =
                        json!([{"serviceErrorDetails": {"code": code, "message": message}}]);
                }
                Canned::json(200, job.clone())
            });
        }
        {
            let state_at = state_at.clone();
            let behaviour = behaviour.clone();
            let name = name.clone();
            mock.on(
                "GET",
                &format!("{v}/replicationOperationStatus/{name}"),
                move |_| {
                    let state = state_at();
                    let mut body = json!({"name": name, "status": state});
                    if let Some((code, message)) = behaviour.error.filter(|_| state == "Failed") {
                        body["error"] = json!({"code": code, "message": message});
                    }
                    Canned::json(200, body).header("Retry-After", behaviour.retry_after)
                },
            );
        }
        {
            let state_at = state_at.clone();
            let behaviour = behaviour.clone();
            mock.on(
                "GET",
                &format!("{v}/operationResults/{name}"),
                move |_| match state_at() {
                    "Succeeded" => Canned::json(200, item("web-01", Stage::Reprotected)),
                    "Failed" => {
                        let (code, message) = behaviour.error.unwrap_or(("Failed", "failed"));
                        Canned::arm_error(400, code, message)
                    }
                    _ => Canned::empty(202).header("Retry-After", behaviour.retry_after),
                },
            );
        }
    }
    Vault { mock, jobs }
}

fn provider(vault: &Vault) -> AzureProvider {
    provider_waiting(vault, Duration::from_secs(30))
}

/// The provider, following one operation for at most `max_wait`.
fn provider_waiting(vault: &Vault, max_wait: Duration) -> AzureProvider {
    let config = AzureConfig::new(SUB, "rg-dr", "vault-dr", Some(&vault.mock.base), None, None)
        .expect("a valid configuration");
    AzureProvider::with_tokens(
        config,
        reqwest::Client::new(),
        Arc::new(StaticToken(Token::new(TOKEN))),
        ArmRetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(5),
        },
        PollPolicy {
            default_interval: Duration::from_millis(50),
            floor: Duration::from_millis(100),
            max_interval: Duration::from_secs(5),
            max_wait,
        },
    )
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

fn operation(id: &str, machine: &str, kind: OperationKind) -> OperationRequest {
    OperationRequest {
        id: OperationId(id.into()),
        machine: machine.into(),
        kind,
        reprotect: match kind {
            OperationKind::Reprotect => Some(settings()),
            OperationKind::ReprotectHome => Some(ReprotectSettings {
                home: Some(lifeboat_engine::provider::HomeSettings {
                    process_server: "ps-avs-01".into(),
                    run_as_account: "vcenter-admin".into(),
                    policy: "auto".into(),
                }),
                ..settings()
            }),
            _ => None,
        },
    }
}

fn posts(vault: &Vault) -> Vec<Recorded> {
    vault
        .mock
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .collect()
}

async fn reprotect_with(headers: Headers) {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour {
            headers,
            ..Behaviour::default()
        },
    )
    .await;
    let provider = provider(&vault);
    let outcome = provider
        .run(&operation("lb-1-0", "web-01", OperationKind::Reprotect))
        .await
        .unwrap_or_else(|e| panic!("{headers:?}: {e}"));
    assert_eq!(outcome.stage, Stage::Reprotected);
    let posts = posts(&vault);
    assert_eq!(posts.len(), 1, "{headers:?}");
    assert_eq!(
        posts[0].path,
        format!("{}/reProtect", item_path("web-01-item"))
    );
    assert_eq!(posts[0].query, "api-version=2026-05-01");
    // A GUID derived from the operation id, not the id itself.
    assert_eq!(
        posts[0].header("x-ms-client-request-id"),
        Some(lifeboat_provider_azure::provider::client_request_id(
            &OperationId("lb-1-0".into())
        ))
    );
    let body = posts[0].json();
    assert_valid("ReverseReplicationInput", &body);
    assert_eq!(
        body["properties"]["providerSpecificDetails"]["masterTargetId"],
        "MT-0001"
    );
    // The job named by the header's last segment was polled until it succeeded.
    assert_eq!(
        vault
            .mock
            .count("GET", &format!("{}/replicationJobs/job-1", vault_path())),
        2,
        "{headers:?}"
    );
}

#[tokio::test]
async fn a_202_with_azure_async_operation_only_is_followed_to_the_job() {
    reprotect_with(Headers::Async).await;
}

#[tokio::test]
async fn a_202_with_location_only_is_followed_to_the_job() {
    reprotect_with(Headers::Location).await;
}

#[tokio::test]
async fn a_202_with_both_headers_is_followed_to_the_job() {
    reprotect_with(Headers::Both).await;
}

#[tokio::test]
async fn retry_after_sets_the_polling_pace() {
    for (retry_after, at_least, below) in [("1", 1900, 4000), ("0", 190, 900)] {
        let vault = vault(
            vec![item("web-01", Stage::FailedOver)],
            Behaviour {
                retry_after,
                ..Behaviour::default()
            },
        )
        .await;
        let started = Instant::now();
        provider(&vault)
            .run(&operation("lb-2-0", "web-01", OperationKind::Reprotect))
            .await
            .expect("succeeds");
        // Two polls (InProgress, Succeeded), each after `Retry-After` (0 means the 100 ms
        // floor).
        let elapsed = started.elapsed().as_millis();
        assert!(
            elapsed >= at_least && elapsed < below,
            "Retry-After {retry_after}: {elapsed} ms"
        );
    }
}

#[tokio::test]
async fn a_failed_job_surfaces_asr_code_and_message() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour {
            states: vec!["InProgress", "Failed"],
            error: Some(("78093", "The VM is not running, hung or not accessible.")),
            ..Behaviour::default()
        },
    )
    .await;
    let error = provider(&vault)
        .run(&operation("lb-3-0", "web-01", OperationKind::Reprotect))
        .await
        .expect_err("the job failed");
    assert_eq!(error.code(), Some("78093"));
    assert!(!error.is_transient());
    assert!(error.to_string().contains("not running, hung"), "{error}");
    assert!(error.to_string().contains("job-1"), "{error}");
    assert!(!format!("{error:?}").contains(TOKEN));
}

#[tokio::test]
async fn a_job_failing_for_a_passing_reason_is_transient() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour {
            states: vec!["Failed"],
            error: Some(("agent-not-registered", "the agent is not registered yet")),
            ..Behaviour::default()
        },
    )
    .await;
    let provider = provider(&vault);
    let request = operation("lb-4-0", "web-01", OperationKind::Reprotect);
    let error = provider.run(&request).await.expect_err("failed");
    assert!(error.is_transient());
    // The engine retries with the same id: the failed job does not block a new attempt.
    let _ = provider.run(&request).await;
    assert_eq!(posts(&vault).len(), 2);
}

#[tokio::test]
async fn an_unreadable_job_falls_back_to_the_header_url() {
    for headers in [Headers::Async, Headers::Location] {
        let vault = vault(
            vec![item("web-01", Stage::FailedOver)],
            Behaviour {
                headers,
                job_readable: false,
                ..Behaviour::default()
            },
        )
        .await;
        provider(&vault)
            .run(&operation("lb-5-0", "web-01", OperationKind::Reprotect))
            .await
            .unwrap_or_else(|e| panic!("{headers:?}: {e}"));
        let followed = if headers == Headers::Async {
            "replicationOperationStatus"
        } else {
            "operationResults"
        };
        assert!(
            vault
                .mock
                .count("GET", &format!("{}/{followed}/job-1", vault_path()))
                >= 1,
            "{headers:?}"
        );
    }
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour {
            headers: Headers::Async,
            job_readable: false,
            states: vec!["Failed"],
            error: Some(("78052", "A VM with the same name exists.")),
            ..Behaviour::default()
        },
    )
    .await;
    let error = provider(&vault)
        .run(&operation("lb-5-1", "web-01", OperationKind::Reprotect))
        .await
        .expect_err("failed");
    assert_eq!(error.code(), Some("78052"));
    assert!(error.to_string().contains("same name"), "{error}");
}

#[tokio::test]
async fn run_is_idempotent_by_operation_id() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour::default(),
    )
    .await;
    let provider = provider(&vault);
    let request = operation("lb-6-0", "web-01", OperationKind::Reprotect);
    provider.run(&request).await.expect("first run");
    assert_eq!(posts(&vault).len(), 1);
    // The item still reads `failed-over` (the mock does not move it), yet the job this id
    // started is found by its activityId and nothing is sent again.
    let outcome = provider.run(&request).await.expect("second run");
    assert_eq!(outcome.stage, Stage::Reprotected);
    assert_eq!(posts(&vault).len(), 1);
    assert_eq!(
        provider.status(&request.id).await.expect("status"),
        OperationStatus::Succeeded
    );
    assert_eq!(
        provider
            .status(&OperationId("lb-never".into()))
            .await
            .expect("status"),
        OperationStatus::Unknown
    );
}

#[tokio::test]
async fn a_job_started_before_a_crash_is_awaited_not_restarted() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour::default(),
    )
    .await;
    vault.jobs.lock().expect("jobs").push(job(
        "job-1",
        "lb-7-0 ActivityId: 5e2b",
        "InProgress",
        None,
    ));
    let provider = provider(&vault);
    assert_eq!(
        provider
            .status(&OperationId("lb-7-0".into()))
            .await
            .expect("status"),
        OperationStatus::Running
    );
    provider
        .run(&operation("lb-7-0", "web-01", OperationKind::Reprotect))
        .await
        .expect("awaited");
    assert!(posts(&vault).is_empty());
    assert!(
        vault
            .mock
            .count("GET", &format!("{}/replicationJobs/job-1", vault_path()))
            >= 1
    );
}

#[tokio::test]
async fn an_item_already_at_the_target_stage_needs_nothing() {
    let vault = vault(
        vec![item("web-01", Stage::Reprotected)],
        Behaviour::default(),
    )
    .await;
    let outcome = provider(&vault)
        .run(&operation("lb-8-0", "web-01", OperationKind::Reprotect))
        .await
        .expect("done");
    assert_eq!(outcome.stage, Stage::Reprotected);
    assert!(posts(&vault).is_empty());
}

#[tokio::test]
async fn every_operation_sends_a_valid_body() {
    let vault = vault(
        vec![
            item("app-01", Stage::Reprotected),
            item("db-01", Stage::FailedBack),
            item("ad-01", Stage::Committed),
        ],
        Behaviour::default(),
    )
    .await;
    let provider = provider(&vault);
    for (id, machine, kind) in [
        ("lb-9-0", "app-01", OperationKind::Failback),
        ("lb-9-1", "db-01", OperationKind::Commit),
        ("lb-9-2", "ad-01", OperationKind::ReprotectHome),
    ] {
        provider
            .run(&operation(id, machine, kind))
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
    }
    let posts = posts(&vault);
    assert_eq!(posts.len(), 3);
    assert!(posts[0].path.ends_with("/app-01-item/unplannedFailover"));
    assert_valid("UnplannedFailoverInput", &posts[0].json());
    assert!(posts[1].path.ends_with("/db-01-item/failoverCommit"));
    assert!(posts[1].body.is_empty(), "failoverCommit takes no body");
    assert!(posts[2].path.ends_with("/ad-01-item/reProtect"));
    let home = posts[2].json();
    assert_valid("ReverseReplicationInput", &home);
    // As recorded: `site.home`'s process server (also its master target), run-as account,
    // and the one `InMageAzureV2` policy of the vault.
    assert_eq!(home["properties"]["failoverDirection"], "RecoveryToPrimary");
    assert_eq!(
        home["properties"]["providerSpecificDetails"],
        json!({
            "instanceType": "InMageAzureV2",
            "masterTargetId": "PS-0003",
            "processServerId": "PS-0003",
            "runAsAccountId": "1",
            "policyId": format!("/Subscriptions/{SUB}/resourceGroups/rg-dr/providers/Microsoft.RecoveryServices/vaults/vault-dr/replicationPolicies/policy-avs"),
        })
    );
}

#[tokio::test]
async fn refresh_maps_the_vault_to_facts() {
    let vault = vault(
        vec![
            item("web-01", Stage::FailedOver),
            item("other", Stage::Protected),
        ],
        Behaviour::default(),
    )
    .await;
    let provider = provider(&vault);
    let facts = provider
        .refresh(&RefreshRequest {
            vcenter: "vc-avs".into(),
            configuration_server: "cs-avs-01".into(),
            process_server: "ps-azure-01".into(),
            esxi_hosts: vec!["esx-1".into()],
            datastores: vec!["vsanDatastore".into()],
            master_targets: vec!["mt-win-01".into()],
            machines: vec!["web-01".into(), "missing".into()],
            home_process_server: None,
        })
        .await
        .expect("facts");
    assert_eq!(facts.machines.len(), 1);
    assert_eq!(facts.machines["web-01"].stage, Stage::FailedOver);
    assert!(facts.configuration_server.is_some());
    assert!(facts.master_targets.contains_key("mt-win-01"));
    assert!(facts.vcenter.is_none(), "the vault lists no vCenter");
    let info = provider.describe();
    assert_eq!(info.kind, "azure");
    assert_eq!(info.identity, vault_path());
    assert_eq!(provider.max_concurrency(), Some(8));
    assert!(!format!("{provider:?}").contains(TOKEN));
}

#[tokio::test]
async fn an_unknown_machine_is_a_clear_permanent_error() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour::default(),
    )
    .await;
    let error = provider(&vault)
        .run(&operation("lb-10-0", "nope", OperationKind::Reprotect))
        .await
        .expect_err("no such machine");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("`nope`"), "{error}");
    assert!(error.to_string().contains("`vault-dr`"), "{error}");
}

#[tokio::test]
async fn a_job_that_never_ends_times_out_as_transient() {
    for states in [vec!["NotStarted"], vec![""]] {
        let vault = vault(
            vec![item("web-01", Stage::FailedOver)],
            Behaviour {
                states: states.clone(),
                ..Behaviour::default()
            },
        )
        .await;
        let started = Instant::now();
        let error = provider_waiting(&vault, Duration::from_millis(600))
            .run(&operation("lb-11-0", "web-01", OperationKind::Reprotect))
            .await
            .expect_err("times out");
        assert!(started.elapsed() < Duration::from_secs(5), "{states:?}");
        assert_eq!(error.code(), Some("JobTimeout"), "{states:?}: {error}");
        assert!(error.is_transient());
        assert!(error.to_string().contains("`job-1`"), "{error}");
    }
}

#[tokio::test]
async fn a_suspended_job_needs_a_person() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour {
            states: vec!["InProgress", "Suspended"],
            ..Behaviour::default()
        },
    )
    .await;
    let error = provider(&vault)
        .run(&operation("lb-12-0", "web-01", OperationKind::Reprotect))
        .await
        .expect_err("suspended");
    assert_eq!(error.code(), Some("JobSuspended"), "{error}");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("`job-1`"), "{error}");
}

#[tokio::test]
async fn job_states_are_read_in_any_case_and_either_spelling() {
    // The job itself, then the `Azure-AsyncOperation` status when the job cannot be read.
    for (job_readable, state) in [
        (true, "canceled"),
        (true, "CANCELLED"),
        (false, "Canceled"),
        (false, "cancelled"),
    ] {
        let vault = vault(
            vec![item("web-01", Stage::FailedOver)],
            Behaviour {
                headers: Headers::Async,
                job_readable,
                states: vec![state],
                ..Behaviour::default()
            },
        )
        .await;
        let error = provider_waiting(&vault, Duration::from_secs(3))
            .run(&operation("lb-13-0", "web-01", OperationKind::Reprotect))
            .await
            .expect_err("cancelled");
        assert!(!error.is_transient(), "{state}: {error}");
        assert_ne!(error.code(), Some("JobTimeout"), "{state}: {error}");
    }
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour {
            states: vec!["inprogress", "SUCCEEDED"],
            ..Behaviour::default()
        },
    )
    .await;
    provider_waiting(&vault, Duration::from_secs(3))
        .run(&operation("lb-13-1", "web-01", OperationKind::Reprotect))
        .await
        .expect("succeeded in capitals");
}

#[tokio::test]
async fn a_job_running_on_the_item_is_awaited_before_its_stage_counts() {
    // ASR empties `allowedOperations` while the failback runs, so the item reads
    // `failed-back` already; the job in `currentScenario` is still running.
    let mut running = item("web-01", Stage::FailedBack);
    running["properties"]["allowedOperations"] = json!([]);
    running["properties"]["currentScenario"] = json!({
        "scenarioName": "UnplannedFailover",
        "jobId": format!("{}/replicationJobs/job-1", vault_path()),
    });
    let vault = vault(
        vec![running],
        Behaviour {
            states: vec!["InProgress", "InProgress", "Succeeded"],
            ..Behaviour::default()
        },
    )
    .await;
    vault.jobs.lock().expect("jobs").push(job(
        "job-1",
        "lb-14-0 ActivityId: 77aa",
        "InProgress",
        None,
    ));
    let outcome = provider(&vault)
        .run(&operation("lb-14-0", "web-01", OperationKind::Failback))
        .await
        .expect("done once the job ended");
    assert_eq!(outcome.stage, Stage::FailedBack);
    assert!(posts(&vault).is_empty());
    assert_eq!(
        vault
            .mock
            .count("GET", &format!("{}/replicationJobs/job-1", vault_path())),
        3,
        "the job was followed to its end before the stage was believed"
    );
}

#[tokio::test]
async fn a_failed_job_running_on_the_item_is_reported_when_it_is_this_operations() {
    let mut running = item("web-01", Stage::FailedOver);
    running["properties"]["currentScenario"] = json!({"jobId": "job-1"});
    let vault = vault(
        vec![running],
        Behaviour {
            states: vec!["Failed"],
            error: Some(("78093", "The VM is not running, hung or not accessible.")),
            ..Behaviour::default()
        },
    )
    .await;
    vault
        .jobs
        .lock()
        .expect("jobs")
        .push(job("job-1", "lb-15-0", "InProgress", None));
    let error = provider(&vault)
        .run(&operation("lb-15-0", "web-01", OperationKind::Reprotect))
        .await
        .expect_err("this operation's job failed");
    assert_eq!(error.code(), Some("78093"));
    assert!(posts(&vault).is_empty(), "not sent again");
}

#[tokio::test]
async fn the_newest_failed_job_of_an_operation_counts() {
    let vault = vault(
        vec![item("web-01", Stage::FailedOver)],
        Behaviour::default(),
    )
    .await;
    {
        let mut jobs = vault.jobs.lock().expect("jobs");
        // Listed oldest first: the first try failed for a passing reason, the retry for good.
        let mut older = job(
            "job-1",
            "lb-16-0",
            "Failed",
            Some(("agent-not-registered", "the agent is not registered yet")),
        );
        older["properties"]["startTime"] = json!("2026-05-01T10:00:00Z");
        let mut newer = job(
            "job-2",
            "lb-16-0",
            "Failed",
            Some(("78093", "The VM is not running, hung or not accessible.")),
        );
        newer["properties"]["startTime"] = json!("2026-05-01T10:20:00.1234567Z");
        jobs.push(older);
        jobs.push(newer);
    }
    let provider = provider(&vault);
    let error = provider
        .run(&operation("lb-16-0", "web-01", OperationKind::Reprotect))
        .await
        .expect_err("the newer, permanent failure");
    assert_eq!(error.code(), Some("78093"));
    assert!(posts(&vault).is_empty());
    match provider.status(&OperationId("lb-16-0".into())).await {
        Ok(OperationStatus::Failed(error)) => assert_eq!(error.code(), Some("78093")),
        other => panic!("{other:?}"),
    }
}
