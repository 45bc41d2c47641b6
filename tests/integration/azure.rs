//! The `azure` provider end to end: `plan` and `apply` to every goal, by the real binary, over
//! HTTPS against `lifeboat sim serve`, next to the `sim` provider on a copy of the same world.
//! Both must plan the same changes and leave the estate in the same state; and no secret may
//! show anywhere. `sim serve` accepts only the requests Microsoft's recorded sessions show
//! (direction, instance type, required ids; `providers/azure/tests/fixtures/recorded/`), so a
//! goal reached through it is a goal reached with the recorded requests.

use std::path::Path;

use lifeboat_provider_sim::{World, store};
use serde_json::Value;

use crate::plan::Example;
use crate::sim_serve::serve;

/// Distinctive, so that finding it anywhere is certain to be a leak.
const SECRET: &str = "s3cr3t-e2e-d0-not-print-7f3a9c";
const TENANT: &str = "11111111-1111-1111-1111-111111111111";
const CLIENT: &str = "22222222-2222-2222-2222-222222222222";

/// The same example, served: its plan names the `azure` provider at `url`.
struct Azure {
    example: Example,
    url: String,
    cert: std::path::PathBuf,
}

impl Azure {
    fn new(example: Example, url: &str, world: &Path) -> Self {
        let path = example.dir.path().join("lifeboat.yaml");
        let plan = std::fs::read_to_string(&path).expect("the plan");
        let start = plan.find("provider:\n").expect("a provider block");
        let end = plan[start..].find("\n\n").expect("the block's end") + start;
        let block = format!(
            "provider:\n  azure:\n    subscription_id: 00000000-0000-0000-0000-000000000000\n    resource_group: rg-lifeboat\n    vault: vault-lifeboat\n    resource_manager_endpoint: {url}\n    credential: client-secret"
        );
        std::fs::write(&path, format!("{}{block}{}", &plan[..start], &plan[end..]))
            .expect("write the plan");
        let mut cert = world.as_os_str().to_owned();
        cert.push(".serve.pem");
        Self {
            example,
            url: url.to_string(),
            cert: cert.into(),
        }
    }

    fn lifeboat(&self) -> assert_cmd::Command {
        let mut command = self.example.lifeboat();
        command
            .env("AZURE_AUTHORITY_HOST", &self.url)
            .env("AZURE_TENANT_ID", TENANT)
            .env("AZURE_CLIENT_ID", CLIENT)
            .env("AZURE_CLIENT_SECRET", SECRET)
            .env("SSL_CERT_FILE", &self.cert);
        command
    }
}

fn set_goal(dir: &Path, goal: &str) {
    let path = dir.join("lifeboat.yaml");
    let plan = std::fs::read_to_string(&path).expect("the plan");
    let start = plan.find("\ngoal: ").expect("a goal") + 1;
    let end = plan[start..].find('\n').expect("its line") + start;
    std::fs::write(
        &path,
        format!("{}goal: {goal}{}", &plan[..start], &plan[end..]),
    )
    .expect("write the plan");
}

/// The changes of a JSON plan, as (address, action) pairs in order.
fn changes(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["address"].as_str().expect("address").to_string(),
                c["action"].as_str().expect("action").to_string(),
            )
        })
        .collect()
}

/// What the estate looks like, without what differs by construction: the history and the
/// operation ids in it, and the clock.
fn estate(world: &World) -> String {
    let mut world = world.clone();
    world.history.clear();
    world.running.clear();
    world.failed_over_at = None;
    lifeboat_provider_sim::world::to_yaml(&world).expect("serialisable")
}

fn output_text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn plan_and_apply_reach_every_goal_as_the_sim_provider_does() {
    let sim = Example::open_window("reprotected");
    let served_dir = Example::open_window("reprotected");
    let world = served_dir.dir.path().join("world.yaml");
    // The emulator answers at once (`--retry-after 0`), so the test takes no longer than the
    // client's polling floor per operation; the secret is checked by the token endpoint.
    let server = serve(
        &world,
        &["--retry-after", "0", "--lro-headers", "rotate"],
        &[("LIFEBOAT_SIM_CLIENT_SECRET", SECRET)],
    );
    let azure = Azure::new(served_dir, &server.url, &world);
    let mut everything = String::new();

    for goal in ["reprotected", "failed-back", "committed", "protected"] {
        set_goal(sim.dir.path(), goal);
        set_goal(azure.example.dir.path(), goal);

        let (_, sim_plan) = sim.plan_json(&[]);
        let planned = azure
            .lifeboat()
            .args(["plan", "--format", "json"])
            .output()
            .expect("runs");
        everything.push_str(&output_text(&planned));
        assert_eq!(
            planned.status.code(),
            Some(0),
            "azure plan to {goal}:\n{}",
            output_text(&planned)
        );
        let azure_plan: Value = serde_json::from_slice(&planned.stdout).expect("a JSON plan");
        assert_eq!(
            changes(&azure_plan),
            changes(&sim_plan),
            "planned changes to {goal}"
        );
        assert!(
            !changes(&azure_plan).is_empty(),
            "something to do for {goal}"
        );

        let applied = sim
            .lifeboat()
            .args(["apply", "--auto-approve"])
            .output()
            .expect("runs");
        assert!(
            applied.status.success(),
            "sim apply to {goal}:\n{}",
            output_text(&applied)
        );
        // With debug logs on: they must carry ARM's request ids, and nothing secret.
        let applied = azure
            .lifeboat()
            .env("LIFEBOAT_LOG", "debug")
            .args(["apply", "--auto-approve"])
            .output()
            .expect("runs");
        everything.push_str(&output_text(&applied));
        assert!(
            applied.status.success(),
            "azure apply to {goal}:\n{}",
            output_text(&applied)
        );

        let sim_world = store::read(&sim.world_path()).expect("the sim's world");
        let served_world = store::read(&world).expect("the served world");
        assert_eq!(
            estate(&served_world),
            estate(&sim_world),
            "the estate at {goal}"
        );
        assert!(
            served_world
                .machines
                .values()
                .all(|m| m.stage.as_str() == goal),
            "every machine at {goal}"
        );

        // Converged: a second plan has nothing to do.
        let again = azure
            .lifeboat()
            .args(["plan", "--detailed-exitcode"])
            .output()
            .expect("runs");
        everything.push_str(&output_text(&again));
        assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));

        if goal == "reprotected" {
            // The one change ASR makes on a reprotected machine: another process server,
            // through `reassociateGateway`, on both backends alike.
            for dir in [sim.dir.path(), azure.example.dir.path()] {
                let path = dir.join("lifeboat.yaml");
                let plan = std::fs::read_to_string(&path).expect("the plan");
                let moved =
                    plan.replace("process_server: ps-azure-01", "process_server: ps-azure-02");
                assert_ne!(moved, plan, "the example names `ps-azure-01`");
                std::fs::write(&path, moved).expect("write the plan");
            }
            let (_, sim_plan) = sim.plan_json(&[]);
            let planned = azure
                .lifeboat()
                .args(["plan", "--format", "json"])
                .output()
                .expect("runs");
            everything.push_str(&output_text(&planned));
            let azure_plan: Value = serde_json::from_slice(&planned.stdout).expect("a JSON plan");
            assert_eq!(changes(&azure_plan), changes(&sim_plan), "the switches");
            assert!(
                !changes(&azure_plan).is_empty()
                    && changes(&azure_plan)
                        .iter()
                        .all(|(_, action)| action == "switch-process-server"),
                "{:?}",
                changes(&azure_plan)
            );
            for command in [sim.lifeboat(), azure.lifeboat()] {
                let mut command = command;
                let applied = command
                    .args(["apply", "--auto-approve"])
                    .output()
                    .expect("runs");
                everything.push_str(&output_text(&applied));
                assert!(applied.status.success(), "{}", output_text(&applied));
            }
            let sim_world = store::read(&sim.world_path()).expect("the sim's world");
            let served_world = store::read(&world).expect("the served world");
            assert_eq!(
                estate(&served_world),
                estate(&sim_world),
                "after the switch"
            );
            assert!(
                served_world
                    .machines
                    .values()
                    .all(|m| m.settings.process_server.as_deref() == Some("ps-azure-02")),
                "every machine moved"
            );
            let again = azure
                .lifeboat()
                .args(["plan", "--detailed-exitcode"])
                .output()
                .expect("runs");
            assert_eq!(again.status.code(), Some(0), "{}", output_text(&again));
        }
    }

    // Debug logs carry ARM's request ids for support cases, and still no secret.
    let logged = azure
        .lifeboat()
        .env("LIFEBOAT_LOG", "debug")
        .args(["plan"])
        .output()
        .expect("runs");
    let log = String::from_utf8_lossy(&logged.stderr);
    assert!(
        log.contains("ARM answered") && log.contains("x_ms_request_id="),
        "{log}"
    );
    everything.push_str(&output_text(&logged));

    // No secret anywhere: not in any output or log, the state, or a saved plan.
    let saved = azure.example.dir.path().join("saved.plan");
    let out = azure
        .lifeboat()
        .args(["plan", "--out"])
        .arg(&saved)
        .output()
        .expect("runs");
    everything.push_str(&output_text(&out));
    assert!(out.status.success(), "{}", output_text(&out));
    for file in [saved, azure.example.dir.path().join(".lifeboat/state.json")] {
        let text = std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("`{}` should exist: {e}", file.display()));
        everything.push_str(&text);
    }
    assert!(!everything.contains(SECRET), "the client secret leaked");
    assert_eq!(
        bearer_tokens(&everything),
        Vec::<&str>::new(),
        "a bearer token leaked"
    );
}

/// The bearer tokens `sim serve` issues (`sim.` and 32 hex digits) found in `text`.
fn bearer_tokens(text: &str) -> Vec<&str> {
    text.match_indices("sim.")
        .map(|(at, _)| &text[at..(at + 36).min(text.len())])
        .filter(|candidate| {
            candidate.len() == 36 && candidate[4..].bytes().all(|b| b.is_ascii_hexdigit())
        })
        .collect()
}

#[test]
fn the_token_scan_finds_a_token() {
    let token = format!("sim.{}", "0123456789abcdef".repeat(2));
    let text = format!("log line Authorization: Bearer {token} end");
    assert_eq!(bearer_tokens(&text), vec![token.as_str()]);
    assert!(bearer_tokens("sim.serve and sim.yaml").is_empty());
}

#[test]
fn throttling_and_a_failed_asr_job_come_through_the_real_binary() {
    let served_dir = Example::open_window("reprotected");
    let world = served_dir.dir.path().join("world.yaml");
    let mut start = store::read(&world).expect("the example world");
    start.faults.push(
        serde_saphyr::from_str(
            "{machine: web-01, operation: reprotect, code: \"78093\", times: 1}",
        )
        .expect("a fault"),
    );
    store::write(&world, &start).expect("write the world");
    // Every fifth ARM request is throttled (429 with `Retry-After: 1`), and every answer
    // names its job by `Location` only.
    let server = serve(
        &world,
        &[
            "--retry-after",
            "0",
            "--lro-headers",
            "location",
            "--throttle-every",
            "5",
        ],
        &[],
    );
    let azure = Azure::new(served_dir, &server.url, &world);

    let failed = azure
        .lifeboat()
        .args(["apply", "--auto-approve"])
        .output()
        .expect("runs");
    let text = output_text(&failed);
    assert_eq!(failed.status.code(), Some(1), "{text}");
    assert!(
        text.contains("78093") && text.contains("web-01"),
        "the job's ASR code reaches the user:\n{text}"
    );

    // The fault is spent; the same apply finishes the rest, throttled all along.
    let applied = azure
        .lifeboat()
        .env("LIFEBOAT_LOG", "lifeboat_provider_azure=debug")
        .args(["apply", "--auto-approve"])
        .output()
        .expect("runs");
    assert!(applied.status.success(), "{}", output_text(&applied));
    let log = String::from_utf8_lossy(&applied.stderr);
    assert!(
        log.contains("TooManyRequests") && log.contains("retrying a transient ARM error"),
        "the throttling happened and was retried:\n{log}"
    );
    let served = store::read(&world).expect("the served world");
    assert!(
        served
            .machines
            .values()
            .all(|m| m.stage.as_str() == "reprotected")
    );
}
