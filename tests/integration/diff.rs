//! `lifeboat diff OLD NEW` over the fixture pairs in `tests/fixtures/diff/<case>/`.
//!
//! Every case is rendered in all three formats and snapshotted; the JSON of each case is also
//! checked against what the case is about, because a snapshot re-accepted carelessly would
//! otherwise bless a wrong consequence. A case whose name starts with `invalid` must be refused.

use std::path::PathBuf;

use serde_json::Value;

use crate::util::{lifeboat, relative, repo_root, stdout_json};

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/fixtures/diff"))
        .expect("fixture directory exists")
        .map(|entry| entry.expect("readable fixture directory").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty(), "no diff fixtures");
    dirs
}

fn case_name(dir: &std::path::Path) -> String {
    dir.file_name()
        .expect("a case folder has a name")
        .to_string_lossy()
        .into_owned()
}

fn run(case: &str, format: &str) -> std::process::Output {
    let dir = format!("tests/fixtures/diff/{case}");
    lifeboat()
        .args([
            "diff",
            &format!("{dir}/old.yaml"),
            &format!("{dir}/new.yaml"),
            "--format",
            format,
        ])
        .output()
        .expect("runs")
}

fn json(case: &str) -> Value {
    let output = run(case, "json");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{case}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout_json(&output)
}

fn changes(report: &Value) -> &Vec<Value> {
    report["changes"].as_array().expect("changes array")
}

/// The one change at `address` of `kind`; fails when there is none or more than one.
fn change<'r>(report: &'r Value, address: &str, kind: &str) -> &'r Value {
    let found: Vec<&Value> = changes(report)
        .iter()
        .filter(|c| c["address"] == address && c["kind"] == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{kind}` at `{address}` in {:#}",
        report["changes"]
    );
    found[0]
}

fn addresses(report: &Value) -> Vec<&str> {
    changes(report)
        .iter()
        .map(|c| c["address"].as_str().expect("address"))
        .collect()
}

fn consequence(change: &Value) -> &str {
    change["consequence"].as_str().expect("consequence")
}

#[test]
fn every_case_renders_in_every_format() {
    for dir in cases() {
        let case = case_name(&dir);
        for format in ["human", "json", "markdown"] {
            let output = run(&case, format);
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            if case.starts_with("invalid") {
                assert_eq!(output.status.code(), Some(1), "{case} {format}");
                assert!(stdout.is_empty(), "{case} {format}: nothing on stdout");
                insta::assert_snapshot!(format!("{case}-{format}-stderr"), stderr);
            } else {
                assert_eq!(output.status.code(), Some(0), "{case} {format}: {stderr}");
                assert!(stderr.is_empty(), "{case} {format}: {stderr}");
                insta::assert_snapshot!(format!("{case}-{format}"), stdout);
            }
        }
    }
}

#[test]
fn changes_come_dangerous_first_then_by_address() {
    for dir in cases() {
        let case = case_name(&dir);
        if case.starts_with("invalid") {
            continue;
        }
        let report = json(&case);
        let keys: Vec<(bool, &str)> = changes(&report)
            .iter()
            .map(|c| {
                (
                    !c["dangerous"].as_bool().expect("dangerous"),
                    c["address"].as_str().expect("address"),
                )
            })
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{case}");
        let summary = &report["summary"];
        assert_eq!(
            summary["changes"].as_u64(),
            Some(keys.len() as u64),
            "{case}"
        );
        let dangerous = keys.iter().filter(|(safe, _)| !safe).count();
        assert_eq!(
            summary["dangerous"].as_u64(),
            Some(dangerous as u64),
            "{case}"
        );
        for c in changes(&report) {
            assert!(!consequence(c).is_empty(), "{case}: {c}");
        }
    }
}

#[test]
fn the_same_plan_written_differently_has_no_differences() {
    for case in ["identical", "reordered"] {
        let report = json(case);
        assert_eq!(changes(&report).len(), 0, "{case}: {:#}", report["changes"]);
        let human = run(case, "human");
        assert_eq!(
            String::from_utf8_lossy(&human.stdout),
            "no differences: both files describe the same plan\n"
        );
    }
    // The reordered file really is written differently, or the case proves nothing.
    let dir = repo_root().join("tests/fixtures/diff/reordered");
    let old = std::fs::read_to_string(dir.join("old.yaml")).expect("readable");
    let new = std::fs::read_to_string(dir.join("new.yaml")).expect("readable");
    assert!(old.find("machines:") > old.find("master_targets:"));
    assert!(new.find("machines:") < new.find("master_targets:"));
}

#[test]
fn a_datastore_change_locks_that_machine_once_reprotected() {
    let report = json("datastore-change");
    assert_eq!(addresses(&report), ["machine.db-01"]);
    let db = change(&report, "machine.db-01", "machine-changed");
    assert_eq!(db["dangerous"], true);
    assert!(consequence(db).contains("`db-01`"), "{db}");
    assert!(
        consequence(db).contains("preflight::locked-setting"),
        "{db}"
    );
    assert!(
        !consequence(db).contains("resync"),
        "no replace any more: {db}"
    );
    assert_eq!(db["before"]["datastore"], "vmfs-ssd-01");
    assert_eq!(db["after"]["datastore"], "vsan-01");
    assert_eq!(db["max_transfer_gib"], 0, "nothing is sent for it");
    assert!(report["summary"].get("full_resync_machines").is_none());
}

#[test]
fn added_machines_are_reprotected_and_removed_ones_released() {
    let report = json("machine-added-removed");
    let added = change(&report, "machine.etl-01", "machine-added");
    assert_eq!(
        added["dangerous"], false,
        "goal is reprotected: no downtime"
    );
    assert_eq!(added["before"], Value::Null);
    assert_eq!(added["after"]["datastore"], "vsan-01");
    assert_eq!(added["max_transfer_gib"], 576);
    assert!(consequence(added).contains("reprotected"), "{added}");
    let removed = change(&report, "machine.batch-01", "machine-removed");
    assert_eq!(removed["dangerous"], false);
    assert_eq!(removed["after"], Value::Null);
    assert!(
        consequence(removed).contains("nothing happens on either site"),
        "{removed}"
    );
    assert_eq!(report["summary"]["added"], 1);
    assert_eq!(report["summary"]["removed"], 1);
    assert_eq!(report["summary"]["max_transfer_gib"], 576);
}

#[test]
fn a_master_target_change_shows_the_pinned_move_and_keeps_lifeboats_choices() {
    let report = json("master-target-change");
    let dc = change(&report, "machine.dc-01", "machine-changed");
    assert_eq!(dc["dangerous"], true);
    assert_eq!(dc["before"]["master_target"]["name"], "mt-windows-01");
    assert_eq!(dc["after"]["master_target"]["name"], "mt-windows-02");
    assert_eq!(dc["after"]["master_target"]["assigned"], false);
    // Nothing in web-01, web-02 or batch-01 changed in the file, and the targets lifeboat
    // chose for them still fit: as `plan` keeps them where they replicate, the diff keeps
    // them too (issue 18), so the new master target moves nobody.
    let addresses = addresses(&report);
    for kept in ["machine.web-01", "machine.web-02", "machine.batch-01"] {
        assert!(!addresses.contains(&kept), "{kept} moved: {addresses:?}");
    }
    let added = change(&report, "master_target.mt-linux-00", "master-target-added");
    assert_eq!(added["dangerous"], false, "{added}");
    // Only the pinned move of the sql group is left, and it is locked once reprotected.
    assert_eq!(report["summary"]["dangerous"], 1);
}

#[test]
fn a_retention_drive_change_locks_the_machines_that_stay_on_the_target() {
    let report = json("retention-drive-change");
    assert_eq!(addresses(&report), ["master_target.mt-linux-02"]);
    let target = change(
        &report,
        "master_target.mt-linux-02",
        "master-target-changed",
    );
    assert_eq!(target["dangerous"], true);
    assert!(consequence(target).contains("`batch-01`"), "{target}");
    assert!(consequence(target).contains("retention drive"), "{target}");
}

#[test]
fn a_group_move_is_shown_on_the_machine_with_its_master_target() {
    let report = json("group-move");
    let web = change(&report, "machine.web-02", "machine-changed");
    assert_eq!(web["before"]["replication_group"], "web");
    assert_eq!(web["after"]["replication_group"], "batch");
    // The new group is pinned to mt-linux-02; web-02 was on lifeboat's choice mt-linux-01.
    assert_eq!(web["dangerous"], true);
    assert!(consequence(web).contains("moves from replication group `web` to `batch`"));
    // batch-01 was assigned mt-linux-02 and is now pinned to it: nothing moves.
    let batch = change(&report, "machine.batch-01", "machine-changed");
    assert_eq!(batch["dangerous"], false, "{batch}");
    assert!(consequence(batch).contains("joins replication group `batch`"));
    change(&report, "group.batch", "group-added");
}

#[test]
fn a_boot_order_change_changes_the_failback_order_without_danger() {
    let report = json("boot-order-change");
    let order = change(&report, "boot_order", "boot-order-changed");
    assert_eq!(
        order["after"],
        serde_json::json!(["infrastructure", "app", "data", "batch"])
    );
    let batch = change(&report, "machine.batch-01", "machine-changed");
    assert_eq!(batch["before"]["boot_group"], "app");
    assert_eq!(batch["after"]["boot_group"], "batch");
    for web in ["machine.web-01", "machine.web-02"] {
        let web = change(&report, web, "machine-changed");
        assert_eq!(web["before"]["depends_on"], serde_json::json!(["db-01"]));
        assert_eq!(web["after"]["depends_on"], serde_json::json!([]));
    }
    for c in changes(&report) {
        assert_eq!(c["dangerous"], false, "{c}");
        assert!(consequence(c).contains("failback order"), "{c}");
    }
}

#[test]
fn raising_the_goal_is_dangerous_and_lowering_it_is_not() {
    let raised = json("goal-change");
    let goal = change(&raised, "plan", "goal-changed");
    assert_eq!(goal["before"], "reprotected");
    assert_eq!(goal["after"], "committed");
    assert_eq!(goal["dangerous"], true);
    assert!(consequence(goal).contains("downtime"), "{goal}");

    let lowered = json("goal-lowered");
    let goal = change(&lowered, "plan", "goal-changed");
    assert_eq!(goal["dangerous"], false);
    assert!(consequence(goal).contains("never moves a machine backwards"));
}

#[test]
fn a_window_change_says_when_failback_may_run() {
    let report = json("window-change");
    assert_eq!(addresses(&report), ["plan"]);
    let window = change(&report, "plan", "maintenance-window-changed");
    assert_eq!(window["before"]["start"], "2026-12-05T22:00:00Z");
    assert_eq!(window["after"]["start"], "2026-12-12T22:00:00Z");
    assert_eq!(window["dangerous"], false);
    assert!(
        consequence(window).contains("between 2026-12-12T22:00:00Z and 2026-12-13T04:00:00Z"),
        "{window}"
    );
}

#[test]
fn a_process_server_change_is_a_switch_without_danger() {
    let report = json("process-server-change");
    let site = change(&report, "plan", "site-changed");
    assert_eq!(site["dangerous"], false);
    assert!(
        consequence(site).contains("switch-process-server"),
        "{site}"
    );
    assert_eq!(
        site["before"],
        serde_json::json!({"process_server": "ps-azure-01"})
    );
    let metadata = change(&report, "plan", "metadata-changed");
    assert_eq!(metadata["dangerous"], false);
    assert_eq!(
        report["summary"]["max_transfer_gib"], 0,
        "nothing is resent"
    );
}

#[test]
fn an_invalid_plan_is_refused_with_its_diagnostics() {
    let output = run("invalid-new", "json");
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("group::mixed-os"), "{stderr}");
    assert!(stderr.contains("fix it before diffing"), "{stderr}");

    let missing = lifeboat()
        .args([
            "diff",
            "tests/fixtures/diff/identical/old.yaml",
            "does-not-exist.yaml",
        ])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does-not-exist.yaml"));
}

/// `git show main:lifeboat.yaml > /tmp/old.yaml && lifeboat diff /tmp/old.yaml lifeboat.yaml`,
/// and the same through a pipe with `-`.
#[test]
fn the_old_plan_can_come_from_a_temporary_file_or_standard_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = dir.path().join("old.yaml");
    let fixture = repo_root().join("tests/fixtures/diff/datastore-change");
    std::fs::write(
        &old,
        std::fs::read(fixture.join("old.yaml")).expect("readable"),
    )
    .expect("write");
    let new = relative(&fixture.join("new.yaml"));
    let old_arg = old.to_string_lossy().into_owned();

    let output = lifeboat()
        .args(["diff", &old_arg, &new, "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let report = stdout_json(&output);
    assert_eq!(report["old"], old_arg.as_str());
    assert_eq!(report["new"], new.as_str());
    assert_eq!(addresses(&report), ["machine.db-01"]);

    let piped = lifeboat()
        .args(["diff", "-", &new, "--format", "json"])
        .write_stdin(std::fs::read(&old).expect("readable"))
        .output()
        .expect("runs");
    assert_eq!(piped.status.code(), Some(0));
    let report = stdout_json(&piped);
    assert_eq!(report["old"], "<stdin>");
    assert_eq!(addresses(&report), ["machine.db-01"]);
}

#[test]
fn markdown_of_a_large_diff_stays_under_the_comment_limit() {
    use lifeboat_engine::generate::{EstateShape, plan_yaml};
    let shape = |seed| EstateShape {
        machines: 400,
        groups: 40,
        master_targets: 16,
        boot_groups: 4,
        seed,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (dir.path().join("old.yaml"), dir.path().join("new.yaml"));
    std::fs::write(&old, plan_yaml(&shape(1))).expect("write");
    // Another seed gives other disks, dependencies and recovery types for most machines.
    std::fs::write(&new, plan_yaml(&shape(2))).expect("write");
    let args = |format: &str| {
        [
            "diff".to_string(),
            old.to_string_lossy().into_owned(),
            new.to_string_lossy().into_owned(),
            "--format".to_string(),
            format.to_string(),
        ]
    };

    let report = stdout_json(&lifeboat().args(args("json")).output().expect("runs"));
    let total = changes(&report).len();
    let output = lifeboat().args(args("markdown")).output().expect("runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let markdown = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(markdown.len() <= 65_000, "{} bytes", markdown.len());

    let rows = markdown
        .lines()
        .filter(|l| l.starts_with("| ") && l.contains(" | `"))
        .count();
    let note = markdown
        .lines()
        .find(|l| l.contains("left out"))
        .expect("a truncation note");
    let left_out: usize = note
        .trim_start_matches("**")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("the note starts with a count");
    assert!(
        rows > 0 && left_out > 0,
        "{rows} shown, {left_out} left out"
    );
    assert_eq!(rows + left_out, total, "every change is shown or counted");
    // The summary counts every change, not only the ones shown.
    assert!(markdown.contains(&format!("{total} differences")));
    let dangerous = report["summary"]["dangerous"].as_u64().expect("count") as usize;
    assert!(dangerous > 0, "the generated change must lock a setting");
    assert!(
        markdown.find("#### dangerous changes") < markdown.find("#### other changes")
            || !markdown.contains("#### other changes")
    );
}

#[test]
fn diff_schema_is_up_to_date_and_describes_the_output() {
    let output = lifeboat().args(["schema", "diff"]).output().expect("runs");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("UTF-8");
    let committed = std::fs::read_to_string(repo_root().join("schemas/diff.schema.json"))
        .expect("committed schema exists");
    assert!(
        generated == committed,
        "schemas/diff.schema.json is stale: run `cargo run -- schema diff > schemas/diff.schema.json`"
    );
    let schema: Value = serde_json::from_str(&committed).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    for dir in cases() {
        let case = case_name(&dir);
        if case.starts_with("invalid") {
            continue;
        }
        let report = json(&case);
        let errors: Vec<String> = validator
            .iter_errors(&report)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{case}: {errors:?}");
    }
    // And the schema is strict enough to reject a report of the wrong shape.
    assert!(!validator.is_valid(&serde_json::json!({"format_version": "1", "changes": {}})));
}

/// Issue 18, finding 4: a new master target moves none of the machines lifeboat placed
/// earlier, because `plan` keeps them where they replicate; the diff must say the same.
#[test]
fn adding_a_master_target_moves_no_machine_lifeboat_placed() {
    let report = json("master-target-added");
    assert_eq!(
        addresses(&report),
        ["master_target.mt-linux-02"],
        "{report:#}"
    );
    let added = change(&report, "master_target.mt-linux-02", "master-target-added");
    assert_eq!(added["dangerous"], false);
    assert_eq!(report["summary"]["dangerous"], 0, "{report:#}");
}
