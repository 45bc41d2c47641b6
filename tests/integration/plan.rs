//! `lifeboat plan` on the example estate: the changes for every goal, the order the DAG
//! imposes, drift, machines ahead of the goal, `--target`, `--detailed-exitcode`, and the
//! three output formats (snapshots plus assertions on the JSON).

use assert_cmd::Command;
use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::Stage;
use lifeboat_provider_sim::World;
use serde_json::Value;

pub(crate) use crate::example::Example;
use crate::util::repo_root;

/// Puts machine `name` at `stage` with the settings the plan would give it.
fn put_at(world: &mut World, name: &str, stage: Stage, master_target: &str, datastore: &str) {
    let machine = world.machines.get_mut(name).expect("the machine exists");
    machine.stage = stage;
    machine.settings.master_target = Some(master_target.to_string());
    machine.settings.process_server = Some("ps-azure-01".to_string());
    machine.settings.datastore = Some(datastore.to_string());
    machine.settings.retention_drive = Some(
        if master_target.contains("windows") {
            "R:"
        } else {
            "/mnt/retention"
        }
        .to_string(),
    );
    machine.settings.recovery = Some(Recovery::Original);
    if stage >= Stage::FailedBack {
        machine.vmware_vm.powered_on = true;
    }
}

/// Every machine of the example reprotected exactly as the plan says: at goal `reprotected`
/// there is nothing left to do.
fn everyone_reprotected(world: &mut World) {
    for (name, mt, ds) in [
        ("dc-01", "mt-windows-01", "vsan-01"),
        ("dc-02", "mt-windows-01", "vsan-01"),
        ("sql-01", "mt-windows-01", "vsan-01"),
        ("sql-02", "mt-windows-01", "vsan-01"),
        ("pg-01", "mt-linux-01", "vmfs-ssd-01"),
        ("web-01", "mt-linux-01", "vsan-01"),
        ("web-02", "mt-linux-01", "vsan-01"),
        ("batch-01", "mt-linux-02", "vsan-01"),
    ] {
        put_at(world, name, Stage::Reprotected, mt, ds);
    }
    for name in ["pg-01", "batch-01"] {
        world
            .machines
            .get_mut(name)
            .expect("exists")
            .settings
            .recovery = Some(Recovery::Alternate);
    }
}

fn changes(plan: &Value) -> &Vec<Value> {
    plan["changes"].as_array().expect("changes")
}

fn change<'a>(plan: &'a Value, id: &str) -> &'a Value {
    changes(plan)
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no change `{id}`"))
}

fn position(plan: &Value, id: &str) -> usize {
    changes(plan)
        .iter()
        .position(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no change `{id}`"))
}

fn ids(plan: &Value) -> Vec<String> {
    changes(plan)
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schemas/plan-output.schema.json"))
            .expect("schema"),
    )
    .expect("JSON");
    jsonschema::validator_for(&schema).expect("a valid schema")
}

fn assert_conforms(plan: &Value) {
    let errors: Vec<String> = validator()
        .iter_errors(plan)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "plan output does not match schemas/plan-output.schema.json: {errors:?}"
    );
}

const GOALS: [(&str, usize); 4] = [
    ("reprotected", 1),
    ("failed-back", 2),
    ("committed", 3),
    ("protected", 4),
];

#[test]
fn every_goal_plans_every_operation_up_to_it() {
    for (goal, operations) in GOALS {
        let example = Example::new(goal);
        let (code, plan) = example.plan_json(&["--detailed-exitcode"]);
        assert_eq!(
            code,
            Some(2),
            "{goal}: changes give exit 2 under --detailed-exitcode"
        );
        assert_conforms(&plan);
        assert_eq!(plan["goal"], goal);
        assert_eq!(changes(&plan).len(), 8 * operations, "{goal}");
        let summary = &plan["summary"]["changes"];
        assert_eq!(summary["reprotect"], 8);
        assert_eq!(summary["failback"], if operations >= 2 { 8 } else { 0 });
        assert_eq!(summary["commit"], if operations >= 3 { 8 } else { 0 });
        assert_eq!(
            summary["reprotect-home"],
            if operations >= 4 { 8 } else { 0 }
        );
        assert_eq!(
            plan["summary"]["downtime_machines"],
            if operations >= 2 { 8 } else { 0 }
        );
        // The sum of every disk of the estate, once per reprotect and once per reprotect-home.
        let disks: u64 = 128 + 128 + 2 * 1664 + 2112 + 2 * 320 + 64;
        let transfers = if operations >= 4 { 2 } else { 1 };
        assert_eq!(
            plan["summary"]["max_transfer_gib"],
            disks * transfers,
            "{goal}"
        );

        insta::assert_snapshot!(format!("plan_human_{goal}"), example.plan_text("human"));
        insta::assert_snapshot!(
            format!("plan_markdown_{goal}"),
            example.plan_text("markdown")
        );
    }
}

#[test]
fn json_plan_snapshot() {
    let example = Example::new("failed-back");
    let (_, mut plan) = example.plan_json(&[]);
    // The lineage is a fresh UUID in every new state.
    assert_eq!(plan["lineage"].as_str().map(str::len), Some(36));
    plan["lineage"] = Value::from("[lineage]");
    insta::assert_json_snapshot!("plan_json_failed_back", plan);
}

#[test]
fn the_dag_orders_failbacks_by_group_boot_order_and_depends_on() {
    let example = Example::new("committed");
    let (_, plan) = example.plan_json(&[]);
    // Each machine's operations run in lifecycle order.
    for machine in ["dc-01", "sql-01", "web-02", "batch-01"] {
        let r = position(&plan, &format!("reprotect machine.{machine}"));
        let f = position(&plan, &format!("failback machine.{machine}"));
        let c = position(&plan, &format!("commit machine.{machine}"));
        assert!(r < f && f < c, "{machine}: reprotect < failback < commit");
        assert_eq!(
            change(&plan, &format!("commit machine.{machine}"))["depends_on"][0],
            format!("failback machine.{machine}")
        );
    }
    // The replication group `sql` fails back only when both members are reprotected.
    let sql_failback = change(&plan, "failback machine.sql-01");
    let deps: Vec<&str> = sql_failback["depends_on"]
        .as_array()
        .expect("deps")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(deps.contains(&"group.sql reprotected"), "{deps:?}");
    assert!(
        position(&plan, "reprotect machine.sql-02") < position(&plan, "failback machine.sql-01")
    );
    // Boot order: infrastructure before data before app.
    assert!(position(&plan, "failback machine.dc-02") < position(&plan, "failback machine.sql-01"));
    assert!(
        position(&plan, "failback machine.pg-01") < position(&plan, "failback machine.batch-01")
    );
    assert!(
        deps.contains(&"boot group `infrastructure` failed back"),
        "{deps:?}"
    );
    // depends_on: web-01 waits for pg-01's failback directly; dc-02 for dc-01's.
    let web = change(&plan, "failback machine.web-01");
    assert!(
        web["depends_on"]
            .as_array()
            .expect("deps")
            .contains(&Value::from("failback machine.pg-01"))
    );
    assert!(
        change(&plan, "failback machine.dc-02")["depends_on"]
            .as_array()
            .expect("deps")
            .contains(&Value::from("failback machine.dc-01"))
    );
}

#[test]
fn group_members_share_one_master_target() {
    let example = Example::new("reprotected");
    let (_, plan) = example.plan_json(&[]);
    let target = |m: &str| {
        change(&plan, &format!("reprotect machine.{m}"))["settings"]["master_target"].clone()
    };
    assert_eq!(target("web-01"), target("web-02"));
    assert_eq!(target("sql-01"), "mt-windows-01");
    assert_eq!(target("sql-02"), "mt-windows-01");
}

#[test]
fn target_includes_what_the_target_depends_on_and_warns() {
    let example = Example::new("failed-back");
    let (code, plan) = example.plan_json(&["--target", "machine.web-01"]);
    assert_eq!(code, Some(0));
    let ids = ids(&plan);
    for needed in [
        "reprotect machine.web-01",
        "failback machine.web-01",
        "reprotect machine.web-02", // same replication group
        "failback machine.pg-01",   // depends_on
        "failback machine.dc-01",   // earlier boot group
    ] {
        assert!(
            ids.contains(&needed.to_string()),
            "`{needed}` missing from {ids:?}"
        );
    }
    for excluded in ["failback machine.batch-01", "failback machine.web-02"] {
        assert!(
            !ids.contains(&excluded.to_string()),
            "`{excluded}` should not be in {ids:?}"
        );
    }
    assert!(
        plan["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .any(|d| d["code"] == "plan::targeted")
    );

    let group = example.plan_json(&["--target", "group.sql"]).1;
    assert_eq!(
        ids_for(&group, "machine.sql-0"),
        4,
        "both members, reprotect and failback"
    );

    let output = example
        .lifeboat()
        .args(["plan", "--target", "machine.nope"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("`machine.nope` names nothing"));
}

fn ids_for(plan: &Value, prefix: &str) -> usize {
    changes(plan)
        .iter()
        .filter(|c| c["address"].as_str().is_some_and(|a| a.starts_with(prefix)))
        .count()
}

#[test]
fn nothing_to_do_exits_zero_under_detailed_exitcode() {
    let example = Example::new("reprotected");
    example.edit(everyone_reprotected);
    let (code, plan) = example.plan_json(&["--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{plan:#}");
    assert!(changes(&plan).is_empty());
    let human = example.plan_text("human");
    assert!(human.starts_with("No changes."), "{human}");
    insta::assert_snapshot!("plan_human_no_changes", human);
}

/// ASR cannot change a reprotected machine's datastore: `plan` refuses with
/// `preflight::locked-setting`, labelled at the plan's value, and plans no `replace`.
#[test]
fn drift_of_a_locked_setting_is_a_preflight_error_at_the_plans_value() {
    let example = Example::new("failed-back");
    example.edit(|world| {
        put_at(
            world,
            "web-01",
            Stage::Reprotected,
            "mt-linux-01",
            "vmfs-ssd-01",
        )
    });
    let (code, plan) = example.plan_json(&["--detailed-exitcode"]);
    assert_eq!(code, Some(1), "an error: {plan:#}");
    let locked: Vec<&Value> = plan["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["code"] == "preflight::locked-setting")
        .collect();
    assert_eq!(locked.len(), 1, "{plan:#}");
    let message = locked[0]["message"].as_str().expect("a message");
    assert!(
        message.contains("web-01") && message.contains("vmfs-ssd-01"),
        "what the site has: {message}"
    );
    assert!(
        locked[0]["help"]
            .as_str()
            .expect("help")
            .contains("fail `web-01` back with the site's settings"),
        "what to do: {:#}",
        locked[0]
    );
    // The label is the plan's value: `datastore: vsan-01` of `web-01`.
    let text = std::fs::read_to_string(example.dir.path().join("lifeboat.yaml")).expect("plan");
    let label = &locked[0]["labels"][0];
    let (start, end) = (
        label["start"]["byte"].as_u64().expect("start") as usize,
        label["end"]["byte"].as_u64().expect("end") as usize,
    );
    assert_eq!(&text[start..end], "vsan-01");
    assert!(text[..start].rfind("web-01:") > text[..start].rfind("pg-01:"));
    for change in changes(&plan) {
        assert_ne!(change["action"], "replace", "{change:#}");
    }
    assert!(!ids(&plan).contains(&"reprotect machine.web-01".to_string()));
}

/// A process-server change on a reprotected machine is the one ASR allows: planned as a
/// `switch-process-server` before the failback, not dangerous.
#[test]
fn a_process_server_change_on_a_reprotected_machine_is_a_switch() {
    let example = Example::new("failed-back");
    example.edit(|world| {
        put_at(
            world,
            "web-01",
            Stage::Reprotected,
            "mt-linux-01",
            "vsan-01",
        );
        world
            .machines
            .get_mut("web-01")
            .expect("exists")
            .settings
            .process_server = Some("ps-azure-02".to_string());
    });
    let (_, plan) = example.plan_json(&[]);
    let switch = change(&plan, "switch-process-server machine.web-01");
    assert_eq!(switch["before"]["process_server"], "ps-azure-02");
    assert_eq!(switch["after"]["process_server"], "ps-azure-01");
    assert_eq!(switch["risk"]["full_resync"], false);
    assert_eq!(switch["risk"]["downtime"], false);
    assert!(
        change(&plan, "failback machine.web-01")["depends_on"]
            .as_array()
            .expect("deps")
            .contains(&Value::from("switch-process-server machine.web-01"))
    );
    assert_eq!(plan["summary"]["changes"]["switch-process-server"], 1);
}

#[test]
fn a_machine_ahead_of_the_goal_is_reported_not_touched() {
    let example = Example::new("reprotected");
    example.edit(|world| {
        put_at(
            world,
            "batch-01",
            Stage::Committed,
            "mt-linux-02",
            "vsan-01",
        )
    });
    let (_, plan) = example.plan_json(&[]);
    assert!(!ids(&plan).iter().any(|id| id.ends_with("machine.batch-01")));
    let untouched = plan["untouched"].as_array().expect("untouched");
    assert_eq!(untouched.len(), 1);
    assert_eq!(untouched[0]["address"], "machine.batch-01");
    assert!(
        untouched[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("never moves a machine backwards")
    );
}

#[test]
fn preflight_errors_fail_the_plan_but_still_show_it() {
    let example = Example::new("reprotected");
    example.edit(|world| {
        world
            .master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .snapshots = 2
    });
    let (code, plan) = example.plan_json(&[]);
    assert_eq!(code, Some(1));
    assert_conforms(&plan);
    assert!(
        plan["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .any(|d| d["code"] == "preflight::master-target-snapshots")
    );
    assert_eq!(changes(&plan).len(), 8);
}

#[test]
fn markdown_of_a_large_estate_stays_under_the_comment_limit() {
    use lifeboat_engine::generate::{EstateShape, plan_yaml};
    let dir = tempfile::tempdir().expect("tempdir");
    // The estate of DESIGN.md §9, with enough master targets to be valid.
    let shape = EstateShape {
        machines: 10_000,
        groups: 1_000,
        master_targets: 480,
        boot_groups: 5,
        seed: 7,
    };
    std::fs::write(
        dir.path().join("lifeboat.yaml"),
        plan_yaml(&shape).replace("name: generated-estate", "name: big\ngoal: committed"),
    )
    .expect("write");
    let mut init = Command::cargo_bin("lifeboat").expect("binary");
    init.current_dir(dir.path())
        .args(["sim", "init"])
        .assert()
        .success();
    let output = Command::cargo_bin("lifeboat")
        .expect("binary")
        .current_dir(dir.path())
        .args(["plan", "--format", "markdown"])
        .output()
        .expect("runs");
    let markdown = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(markdown.len() <= 65_000, "{} characters", markdown.len());
    assert!(markdown.contains("changes not shown"), "a truncation note");
    assert!(markdown.starts_with("### lifeboat plan"));
}

#[test]
fn machines_stay_on_the_master_target_lifeboat_chose_earlier() {
    // A fresh plan puts the `web` group on `mt-linux-01`. Today it replicates through
    // `mt-linux-02`, which still fits: no replace, no full resync.
    let example = Example::new("reprotected");
    example.edit(|world| {
        put_at(
            world,
            "web-01",
            Stage::Reprotected,
            "mt-linux-02",
            "vsan-01",
        );
        put_at(
            world,
            "web-02",
            Stage::Reprotected,
            "mt-linux-02",
            "vsan-01",
        );
    });
    let (_, plan) = example.plan_json(&[]);
    assert!(
        !ids(&plan).iter().any(|id| id.contains("machine.web-0")),
        "{:?}",
        ids(&plan)
    );
    assert!(plan["summary"]["changes"].get("replace").is_none());
}

#[test]
fn graph_renders_the_dag_in_dot_and_mermaid() {
    let example = Example::new("committed");
    let (_, plan) = example.plan_json(&[]);
    let edges: usize = changes(&plan)
        .iter()
        .map(|c| c["depends_on"].as_array().map_or(0, Vec::len))
        .sum();
    for format in ["dot", "mermaid"] {
        let output = example
            .lifeboat()
            .args(["graph", "--format", format])
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).expect("UTF-8");
        let arrow = if format == "dot" { " -> " } else { " --> " };
        // Every change's dependencies are edges; checkpoints add their own outgoing edges.
        assert!(
            text.matches(arrow).count() >= edges,
            "{format}: fewer edges than dependencies"
        );
        for change in changes(&plan) {
            let label = format!(
                "{} {}",
                change["action"].as_str().expect("action"),
                change["address"].as_str().expect("address")
            );
            assert!(text.contains(&label), "{format}: `{label}` missing");
        }
        // Commits are irreversible: red, as in the plan (issue 18).
        let marked = if format == "dot" {
            "color=red"
        } else {
            ":::danger"
        };
        for line in text.lines().filter(|l| l.contains("\"commit machine.")) {
            assert!(line.contains(marked), "{format}: {line}");
        }
        insta::assert_snapshot!(format!("graph_{format}_committed"), text);
    }
}

/// Every output format for every situation a reviewer meets: each goal, a reprotected machine
/// on another process server (a switch), a machine that left the plan (a release), preflight
/// errors, and nothing to do. Snapshots, plus the JSON checked against the committed schema.
#[test]
fn every_format_for_every_situation() {
    type Setup = fn(&Example);
    let nothing: Setup = |_| {};
    let scenarios: [(&str, &str, Setup); 8] = [
        ("goal_reprotected", "reprotected", nothing),
        ("goal_failed_back", "failed-back", nothing),
        ("goal_committed", "committed", nothing),
        ("goal_protected", "protected", nothing),
        ("switch_process_server", "failed-back", |example| {
            example.edit(|world| {
                put_at(
                    world,
                    "web-01",
                    Stage::Reprotected,
                    "mt-linux-01",
                    "vsan-01",
                );
                world
                    .machines
                    .get_mut("web-01")
                    .expect("exists")
                    .settings
                    .process_server = Some("ps-azure-02".to_string());
            })
        }),
        ("release", "reprotected", |example| {
            // Plan once with the full estate so the state knows `batch-01`, then drop it.
            example.plan_json(&[]);
            example.edit(|world| {
                put_at(
                    world,
                    "batch-01",
                    Stage::Reprotected,
                    "mt-linux-02",
                    "vsan-01",
                )
            });
            let path = example.dir.path().join("lifeboat.yaml");
            let state_path = example.dir.path().join(".lifeboat/state.json");
            let mut state = lifeboat_engine::state::State::from_json(
                &std::fs::read_to_string(&state_path).expect("state"),
            )
            .expect("valid state");
            let mut machines = state.machines.clone();
            machines.insert(
                "batch-01".to_string(),
                lifeboat_engine::state::MachineState::at(Stage::Reprotected),
            );
            state.commit(machines);
            std::fs::write(&state_path, state.to_json()).expect("write the state");
            let plan = std::fs::read_to_string(&path).expect("plan");
            let plan = plan
                .replace("  batch-01:\n    os: linux\n    recovery: alternate\n    datastore: vsan-01\n    disks_gib: [64]\n", "")
                .replace("[web-01, web-02, batch-01]", "[web-01, web-02]");
            std::fs::write(&path, plan).expect("write the plan");
        }),
        ("preflight_errors", "reprotected", |example| {
            example.edit(|world| {
                world
                    .master_targets
                    .get_mut("mt-linux-01")
                    .expect("exists")
                    .snapshots = 2
            })
        }),
        ("no_changes", "reprotected", |example| {
            example.edit(everyone_reprotected)
        }),
    ];
    for (name, goal, setup) in scenarios {
        let example = Example::new(goal);
        setup(&example);
        let (_, mut plan) = example.plan_json(&[]);
        assert_conforms(&plan);
        match name {
            "switch_process_server" => assert_eq!(
                plan["summary"]["changes"]["switch-process-server"], 1,
                "{name}"
            ),
            "release" => assert_eq!(plan["summary"]["changes"]["release"], 1, "{name}"),
            "preflight_errors" => assert!(
                plan["diagnostics"]
                    .as_array()
                    .is_some_and(|d| !d.is_empty()),
                "{name}"
            ),
            "no_changes" => assert!(changes(&plan).is_empty(), "{name}"),
            _ => {}
        }
        plan["lineage"] = Value::from("[lineage]");
        insta::assert_json_snapshot!(format!("scenario_{name}_json"), plan);
        let human = example.lifeboat().args(["plan"]).output().expect("runs");
        let human = format!(
            "{}{}",
            String::from_utf8_lossy(&human.stderr),
            String::from_utf8_lossy(&human.stdout)
        );
        insta::assert_snapshot!(format!("scenario_{name}_human"), human);
        insta::assert_snapshot!(
            format!("scenario_{name}_markdown"),
            example.plan_text("markdown")
        );
    }
}

/// The `azure` provider is offered; a value it cannot use is a diagnostic at that value, and
/// nothing is sent.
#[test]
fn an_azure_endpoint_without_https_is_refused_at_its_value() {
    let example = Example::new("reprotected");
    let path = example.dir.path().join("lifeboat.yaml");
    let plan = std::fs::read_to_string(&path).expect("the plan");
    let start = plan.find("provider:").expect("a provider block");
    let end = plan[start..].find("\ngoal:").expect("the goal") + start;
    let plan = format!(
        "{}provider:\n  azure:\n    subscription_id: s\n    resource_group: rg\n    vault: v\n    resource_manager_endpoint: http://arm.example.com\n{}",
        &plan[..start],
        &plan[end..]
    );
    std::fs::write(&path, plan).expect("write the plan");
    let output = example.lifeboat().args(["plan"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not HTTPS"), "{stderr}");
    assert!(
        stderr.contains("resource_manager_endpoint: http://arm.example.com"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot be used"), "{stderr}");
    assert!(!stderr.contains("not available in this build"), "{stderr}");
}
