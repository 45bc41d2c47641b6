//! `lifeboat sim init`, `lifeboat schema world`, and malformed world files.

use std::path::Path;

use crate::preflight::Estate;

#[test]
fn sim_init_refuses_to_overwrite_a_world_without_force() {
    let estate = Estate::new("reprotected", "");
    estate.edit(|w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .snapshots = 1
    });
    let before = std::fs::read(estate.world_path()).expect("reads");
    let output = estate.lifeboat(&["sim", "init"]).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    assert_eq!(
        std::fs::read(estate.world_path()).expect("reads"),
        before,
        "the world is untouched"
    );

    estate
        .lifeboat(&["sim", "init", "--force"])
        .assert()
        .success();
    let world = lifeboat_provider_sim::store::read(&estate.world_path()).expect("reads");
    assert_eq!(
        world.master_targets["mt-linux-01"].snapshots, 0,
        "a fresh, healthy world"
    );
    assert!(
        world
            .machines
            .values()
            .all(|m| m.stage == lifeboat_engine::provider::Stage::FailedOver)
    );
}

#[test]
fn sim_init_from_a_starting_world() {
    let estate = Estate::new("reprotected", "");
    let start = estate.path().join("start.yaml");
    std::fs::copy(estate.world_path(), &start).expect("copies");
    estate
        .lifeboat(&["sim", "init", "--force", "--from", "start.yaml"])
        .assert()
        .success();
    assert!(estate.plan().status.success());
}

#[test]
fn plan_without_a_world_says_how_to_make_one() {
    let estate = Estate::new("reprotected", "");
    std::fs::remove_file(estate.world_path()).expect("removes");
    let output = estate.plan();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not exist") && stderr.contains("lifeboat sim init"),
        "{stderr}"
    );
    assert!(stderr.contains("world::missing"), "{stderr}");
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn world_schema_is_up_to_date() {
    let output = assert_cmd::Command::cargo_bin("lifeboat")
        .expect("built")
        .args(["schema", "world"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let committed =
        std::fs::read_to_string(repo_root().join("schemas/world.schema.json")).expect("committed");
    assert!(
        String::from_utf8_lossy(&output.stdout) == committed,
        "schemas/world.schema.json is stale: run `cargo run -- schema world > schemas/world.schema.json`"
    );
}

/// Replaces the world with `text` and expects `plan` to fail with a diagnostic naming the
/// world file, never a panic.
fn malformed(text: &str, expect: &str) -> String {
    let estate = Estate::new("reprotected", "");
    std::fs::write(estate.world_path(), text).expect("writes");
    let output = estate.plan();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains(".lifeboat/world.yaml"),
        "the world file is named: {stderr}"
    );
    assert!(stderr.contains(expect), "expected `{expect}` in: {stderr}");
    stderr
}

fn healthy_world_text() -> String {
    let estate = Estate::new("reprotected", "");
    std::fs::read_to_string(estate.world_path()).expect("reads")
}

#[test]
fn a_world_with_a_wrong_type() {
    let text = healthy_world_text().replacen("snapshots: 0", "snapshots: many", 1);
    malformed(&text, "world::schema");
}

#[test]
fn a_world_with_an_unknown_key() {
    let text = healthy_world_text().replacen("snapshots: 0", "snapshotz: 0", 1);
    let stderr = malformed(&text, "world::schema");
    assert!(stderr.contains("did you mean `snapshots`?"), "{stderr}");
}

#[test]
fn a_world_with_a_machine_defined_twice() {
    // Ordinary maps would keep one of the two silently; the world is refused instead.
    let text = healthy_world_text();
    // Machines are written in name order: `app-01`, then `web-01`.
    let start = text.find("\n  app-01:\n").expect("app-01 is in the world") + 1;
    let end = start + text[start..].find("\n  web-01:").expect("web-01 follows") + 1;
    let doubled = format!("{}{}{}", &text[..end], &text[start..end], &text[end..]);
    let stderr = malformed(&doubled, "world::schema");
    assert!(stderr.contains("key `app-01` appears twice"), "{stderr}");
}

#[test]
fn a_world_referring_to_a_missing_host() {
    let text = healthy_world_text().replacen("esxi_host: esx-01", "esxi_host: esx-99", 1);
    let stderr = malformed(&text, "world::unknown-reference");
    assert!(stderr.contains("unknown esxi_host `esx-99`"), "{stderr}");
}

#[test]
fn truncated_worlds() {
    let text = healthy_world_text();
    // Cut mid-key and mid-value, as a copy interrupted halfway would: each must be a
    // diagnostic. (A cut exactly between two entries leaves a valid, smaller world, which
    // preflight then reports as machines the provider does not know.)
    for (marker, keep) in [
        ("snapshots: 0", 5),
        ("stage: failed-over", 12),
        ("vcenter: vc-01", 3),
    ] {
        let at = text.find(marker).expect("the marker is in the world") + keep;
        malformed(&text[..at], "world::");
    }
    malformed("machines: {web-01: {os: linux", "world::syntax");
    malformed("", "world::schema");
}

#[test]
fn the_example_world_matches_the_example_plan() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let example = repo_root().join("examples/avs-failback");
    std::fs::copy(
        example.join("lifeboat.yaml"),
        dir.path().join("lifeboat.yaml"),
    )
    .expect("copies");
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("lifeboat")
            .expect("built")
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("runs")
    };
    let start = example.join("world.yaml");
    let init = run(&["sim", "init", "--from", start.to_str().expect("UTF-8 path")]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let plan = run(&["plan"]);
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(String::from_utf8_lossy(&plan.stdout).contains("Plan: 8 to reprotect"));
    assert!(
        plan.stderr.is_empty(),
        "no diagnostics: {}",
        String::from_utf8_lossy(&plan.stderr)
    );
}

#[test]
fn sim_generate_writes_a_reproducible_valid_estate_and_refuses_to_overwrite() {
    let run = |dir: &std::path::Path, extra: &[&str]| {
        assert_cmd::Command::cargo_bin("lifeboat")
            .expect("built")
            .args([
                "sim",
                "generate",
                "--machines",
                "120",
                "--groups",
                "12",
                "--master-targets",
                "8",
                "--seed",
                "9",
                "--out",
            ])
            .arg(dir)
            .args(extra)
            .output()
            .expect("runs")
    };
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    assert!(run(a.path(), &[]).status.success());
    assert!(run(b.path(), &[]).status.success());
    let plan = |dir: &tempfile::TempDir| {
        std::fs::read_to_string(dir.path().join("lifeboat.yaml")).expect("plan")
    };
    assert_eq!(plan(&a), plan(&b), "the same seed gives the same plan");
    assert!(a.path().join(".lifeboat/world.yaml").exists());

    let validate = assert_cmd::Command::cargo_bin("lifeboat")
        .expect("built")
        .arg("validate")
        .arg(a.path().join("lifeboat.yaml"))
        .output()
        .expect("runs");
    assert!(
        validate.status.success(),
        "{}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let again = run(a.path(), &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("pass `--force`"));
    assert!(run(a.path(), &["--force"]).status.success());
}
