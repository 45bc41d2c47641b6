//! State, saved plans, `show`, `state list|show|unlock`, locking and `--refresh-only`, on a
//! copy of the example estate. The state and the lock are manipulated through the engine's
//! API, as another lifeboat process would.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::{ReprotectSettings, Stage};
use lifeboat_engine::state::{LocalBackend, LockInfo, MachineState, State, StateBackend};
use lifeboat_provider_sim::store;
use serde_json::Value;

use crate::util::repo_root;

struct Estate {
    dir: tempfile::TempDir,
}

impl Estate {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let source = repo_root().join("examples/avs-failback");
        for file in ["lifeboat.yaml", "world.yaml"] {
            std::fs::copy(source.join(file), dir.path().join(file)).expect("copy the example");
        }
        Self { dir }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn state_path(&self) -> PathBuf {
        self.path(".lifeboat/state.json")
    }

    fn backend(&self) -> LocalBackend {
        LocalBackend::new(self.state_path())
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::cargo_bin("lifeboat")
            .expect("the binary is built")
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("runs")
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    fn state(&self) -> State {
        self.backend()
            .read()
            .expect("the state reads")
            .expect("a state exists")
    }

    /// Records `machines` in the state, as an apply would have.
    fn put_state(&self, machines: BTreeMap<String, MachineState>) -> State {
        let mut state = self.backend().read().expect("reads").unwrap_or_default();
        state.commit(machines);
        self.backend().write(&state).expect("writes");
        state
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn settings(master_target: &str, datastore: &str) -> ReprotectSettings {
    ReprotectSettings {
        master_target: master_target.to_string(),
        process_server: "ps-azure-01".to_string(),
        datastore: datastore.to_string(),
        retention_drive: "/mnt/retention".to_string(),
        recovery: Recovery::Original,
        failback_policy: "auto".to_string(),
        home: None,
    }
}

fn ids(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

/// Replaces the values that differ from run to run (lineage, time, digests) with
/// placeholders, so snapshots are stable.
fn redact(text: &str, state: &State) -> String {
    let mut text = text.replace(&state.lineage, "[lineage]");
    if let Some(start) = text.find("made ")
        && let Some(end) = text[start..].find(" from ")
    {
        text.replace_range(start + 5..start + end, "[time]");
    }
    if let Some(start) = text.find("sha256 ") {
        text.replace_range(start + 7..start + 7 + 64, "[sha256]");
    }
    text
}

fn schema_validator(name: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("schemas").join(name)).expect("schema"),
    )
    .expect("JSON");
    jsonschema::validator_for(&schema).expect("a valid schema")
}

fn assert_conforms(schema: &str, value: &Value) {
    let validator = schema_validator(schema);
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "does not match {schema}: {errors:?}");
}

#[test]
fn the_first_plan_creates_the_state_and_the_next_keeps_it() {
    let estate = Estate::new();
    assert!(!estate.state_path().exists());
    let plan = estate.json(&["plan", "--format", "json"]);
    let state = estate.state();
    assert_eq!(state.serial, 0);
    assert!(state.machines.is_empty());
    assert!(uuid_like(&state.lineage), "{}", state.lineage);
    assert_eq!(plan["lineage"], state.lineage.as_str());
    assert_eq!(plan["serial"], 0);
    let bytes = std::fs::read(estate.state_path()).expect("readable");
    assert_conforms(
        "state.schema.json",
        &serde_json::from_slice(&bytes).expect("JSON"),
    );

    let again = estate.json(&["plan", "--format", "json"]);
    assert_eq!(again["lineage"], plan["lineage"]);
    assert_eq!(again["serial"], 0);
    assert_eq!(
        std::fs::read(estate.state_path()).expect("readable"),
        bytes,
        "a plan never rewrites an existing state"
    );
    // No lock is left behind.
    assert!(estate.backend().lock_info().expect("reads").is_none());
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().filter(|&c| c == '-').count() == 4
}

#[test]
fn a_machine_only_in_the_state_is_released() {
    let estate = Estate::new();
    estate.put_state(BTreeMap::from([
        (
            "old-01".to_string(),
            MachineState {
                settings: Some(settings("mt-linux-01", "vsan-01")),
                ..MachineState::at(Stage::Reprotected)
            },
        ),
        ("web-01".to_string(), MachineState::at(Stage::FailedOver)),
    ]));
    let plan = estate.json(&["plan", "--format", "json"]);
    let ids = ids(&plan);
    assert!(
        ids.contains(&"release machine.old-01".to_string()),
        "{ids:?}"
    );
    assert!(
        !ids.contains(&"release machine.web-01".to_string()),
        "{ids:?}"
    );
    assert_eq!(plan["summary"]["changes"]["release"], 1);
    assert_eq!(plan["serial"], 1);
    let human = stdout(&estate.run(&["plan"]));
    assert!(human.contains("release         machine.old-01"), "{human}");
}

#[test]
fn a_saved_plan_shows_in_every_format_as_plan_printed_it() {
    let estate = Estate::new();
    let saved = estate.run(&["plan", "--out", "plans/saved.json"]);
    assert_eq!(saved.status.code(), Some(0), "{}", stderr(&saved));
    assert!(stderr(&saved).contains("saved the plan to `plans/saved.json`"));
    let state = estate.state();

    let file: Value =
        serde_json::from_slice(&std::fs::read(estate.path("plans/saved.json")).expect("saved"))
            .expect("JSON");
    assert_conforms("saved-plan.schema.json", &file);
    assert_eq!(file["kind"], "lifeboat-saved-plan");
    assert_eq!(file["lineage"], state.lineage.as_str());
    assert_eq!(file["serial"], 0);
    assert_eq!(file["plan_file"]["path"], "lifeboat.yaml");
    let plan_bytes = std::fs::read(estate.path("lifeboat.yaml")).expect("plan");
    assert_eq!(
        file["plan_file"]["sha256"],
        lifeboat_engine::saved::sha256_hex(&plan_bytes)
    );
    assert_eq!(file["provider"]["kind"], "sim");
    assert_eq!(
        file["provider"]["world_sha256"].as_str().map(str::len),
        Some(64)
    );

    let shown = estate.json(&["show", "plans/saved.json", "--format", "json"]);
    let planned = estate.json(&["plan", "--format", "json"]);
    assert_eq!(shown, planned, "show prints exactly what plan printed");
    assert_eq!(shown, file["output"]);

    let human = estate.run(&["show", "plans/saved.json"]);
    assert_eq!(human.status.code(), Some(0));
    let plan_human = stdout(&estate.run(&["plan"]));
    assert!(stdout(&human).ends_with(&plan_human));
    insta::assert_snapshot!("show_human", redact(&stdout(&human), &state));
    let markdown = estate.run(&["show", "plans/saved.json", "--format", "markdown"]);
    assert_eq!(
        stdout(&markdown),
        stdout(&estate.run(&["plan", "--format", "markdown"]))
    );
    insta::assert_snapshot!("show_markdown", stdout(&markdown));
    insta::assert_snapshot!(
        "show_json",
        redact(
            &stdout(&estate.run(&["show", "plans/saved.json", "--format", "json"])),
            &state
        )
    );
}

#[test]
fn a_saved_plan_records_targets_and_is_not_saved_with_errors() {
    let estate = Estate::new();
    let output = estate.run(&["plan", "--out", "saved.json", "--target", "machine.web-01"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let file: Value =
        serde_json::from_slice(&std::fs::read(estate.path("saved.json")).expect("saved"))
            .expect("JSON");
    assert!(file.get("allow_replace").is_none(), "there is no replace");
    assert_eq!(file["targets"], serde_json::json!(["machine.web-01"]));

    // `--allow-replace` is gone, with an explanation rather than clap's "unexpected argument".
    for command in ["plan", "apply"] {
        let output = estate.run(&[command, "--allow-replace"]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let text = stderr(&output);
        assert!(
            text.contains("`--allow-replace` was removed")
                && text.contains("preflight::locked-setting")
                && text.contains("switch-process-server"),
            "{command}: {text}"
        );
    }

    // A plan with preflight errors is not saved.
    assert!(estate.run(&["plan"]).status.success(), "the world exists");
    let world = estate.path(".lifeboat/world.yaml");
    let mut sim = store::read(&world).expect("the world reads");
    sim.master_targets
        .get_mut("mt-linux-01")
        .expect("exists")
        .snapshots = 1;
    store::write(&world, &sim).expect("the world writes");
    let output = estate.run(&["plan", "--out", "broken.json"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("it was not saved to `broken.json`"));
    assert!(!estate.path("broken.json").exists());
}

/// State files that must be refused, each with a phrase the error must contain.
fn bad_states(estate: &Estate) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let good = State::new().to_json();
    let saved = {
        let output = estate.run(&["plan", "--out", "saved.json"]);
        assert!(output.status.success(), "{}", stderr(&output));
        std::fs::read(estate.path("saved.json")).expect("saved")
    };
    vec![
        (
            "truncated",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "not valid JSON",
        ),
        ("empty", Vec::new(), "empty"),
        ("binary", vec![0xff, 0xfe, 0x00, 0x01], "not UTF-8"),
        ("saved plan", saved, "saved plan, not a state file"),
        (
            "random JSON",
            b"{\"resources\": []}".to_vec(),
            "`format_version` is missing",
        ),
        (
            "newer",
            good.replacen("\"format_version\": \"1\"", "\"format_version\": \"7\"", 1)
                .into_bytes(),
            "newer lifeboat",
        ),
    ]
}

#[test]
fn corrupt_truncated_or_foreign_state_is_refused_and_left_untouched() {
    let estate = Estate::new();
    for (case, bytes, expected) in bad_states(&estate) {
        std::fs::write(estate.state_path(), &bytes).expect("writes");
        for args in [
            &["plan"][..],
            &["plan", "--format", "json"],
            &["state", "list"],
            &["state", "show", "machine.web-01"],
        ] {
            let output = estate.run(args);
            assert_eq!(output.status.code(), Some(1), "{case}: {args:?}");
            let message = stderr(&output);
            assert!(
                message.contains("`.lifeboat/state.json`"),
                "{case}: names the file: {message}"
            );
            assert!(message.contains(expected), "{case}: {message}");
            assert!(!message.contains("panicked"), "{case}: {message}");
            assert_eq!(
                std::fs::read(estate.state_path()).expect("readable"),
                bytes,
                "{case}: {args:?} left the file as it was"
            );
        }
    }
}

#[test]
fn corrupt_truncated_or_foreign_saved_plans_are_refused_and_left_untouched() {
    let estate = Estate::new();
    let output = estate.run(&["plan", "--out", "saved.json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let good = std::fs::read_to_string(estate.path("saved.json")).expect("saved");
    let state = std::fs::read(estate.state_path()).expect("state");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "truncated",
            good.as_bytes()[..good.len() - 40].to_vec(),
            "not valid JSON",
        ),
        ("empty", Vec::new(), "empty"),
        ("binary", vec![0x00, 0xc3, 0x28], "not UTF-8"),
        ("state file", state, "state file, not a saved plan"),
        (
            "random JSON",
            b"{\"hello\": \"world\"}".to_vec(),
            "not a saved plan",
        ),
        ("array", b"[1, 2, 3]".to_vec(), "not a JSON object"),
        (
            "newer",
            good.replacen("\"format_version\": \"1\"", "\"format_version\": \"2\"", 1)
                .into_bytes(),
            "newer lifeboat",
        ),
        (
            "unknown key",
            good.replacen("\"goal\"", "\"surprise\": true,\n  \"goal\"", 1)
                .into_bytes(),
            "unknown field `surprise`",
        ),
    ];
    for (case, bytes, expected) in cases {
        std::fs::write(estate.path("bad.json"), &bytes).expect("writes");
        for format in ["human", "json", "markdown"] {
            let output = estate.run(&["show", "bad.json", "--format", format]);
            assert_eq!(output.status.code(), Some(1), "{case}");
            let message = stderr(&output);
            assert!(message.contains("`bad.json`"), "{case}: {message}");
            assert!(message.contains(expected), "{case}: {message}");
            assert!(output.stdout.is_empty(), "{case}: nothing on stdout");
        }
        assert_eq!(
            std::fs::read(estate.path("bad.json")).expect("readable"),
            bytes
        );
    }
    let missing = estate.run(&["show", "nowhere.json"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("cannot read the saved plan `nowhere.json`"));
}

#[test]
fn a_held_lock_fails_plan_fast_naming_the_holder_and_lock_timeout_waits() {
    let estate = Estate::new();
    let backend = estate.backend();
    let guard = backend
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .expect("the test takes the lock");
    let id = guard.info().id.clone();

    let started = Instant::now();
    let output = estate.run(&["plan"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, took {:?}",
        started.elapsed()
    );
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("the state `.lifeboat/state.json` is locked by"),
        "{message}"
    );
    assert!(message.contains("`apply`"), "{message}");
    assert!(message.contains(&guard.info().who), "{message}");
    assert!(
        message.contains(&format!("pid {}", std::process::id())),
        "{message}"
    );
    assert!(
        message.contains(&format!("lifeboat state unlock {id}")),
        "{message}"
    );
    assert!(
        !estate.state_path().exists(),
        "nothing written without the lock"
    );

    // A live holder's lock cannot be removed, even with the right id.
    let refused = estate.run(&["state", "unlock", &id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("held by a running process"),
        "{}",
        stderr(&refused)
    );

    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        drop(guard);
    });
    let started = Instant::now();
    let output = estate.run(&["plan", "--lock-timeout", "30s"]);
    release.join().expect("released");
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited"
    );
    assert!(estate.state_path().exists());
}

#[test]
fn state_unlock_removes_a_stale_lock_only_with_its_id() {
    let estate = Estate::new();
    // A process that crashed while holding the lock leaves its owner information behind; the
    // OS lock itself ended with the process.
    let stale = LockInfo::new("apply");
    std::fs::create_dir_all(estate.path(".lifeboat")).expect("mkdir");
    let info_path = estate.path(".lifeboat/state.json.lock.info");
    std::fs::write(
        &info_path,
        serde_json::to_string(&stale).expect("serialises"),
    )
    .expect("writes");

    let wrong = estate.run(&["state", "unlock", "not-the-id"]);
    assert_eq!(wrong.status.code(), Some(1));
    let message = stderr(&wrong);
    assert!(
        message.contains("`not-the-id` is not the lock"),
        "{message}"
    );
    assert!(message.contains(&stale.id), "{message}");
    assert!(info_path.exists(), "a wrong id removes nothing");

    let right = estate.run(&["state", "unlock", &stale.id]);
    assert_eq!(right.status.code(), Some(0), "{}", stderr(&right));
    assert!(stdout(&right).contains("removed the stale lock"));
    assert!(!info_path.exists());

    let again = estate.run(&["state", "unlock", &stale.id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("is not locked"));
}

#[test]
fn state_list_and_show() {
    let estate = Estate::new();
    let none = estate.run(&["state", "list"]);
    assert_eq!(none.status.code(), Some(0));
    assert!(stderr(&none).contains("no state at `.lifeboat/state.json` yet"));

    let mut state = estate.put_state(BTreeMap::from([
        (
            "web-01".to_string(),
            MachineState {
                settings: Some(settings("mt-linux-01", "vsan-01")),
                provider_ids: BTreeMap::from([(
                    "replicated_item".to_string(),
                    "ri-web-01".to_string(),
                )]),
                ..MachineState::at(Stage::Reprotected)
            },
        ),
        ("dc-01".to_string(), MachineState::at(Stage::FailedOver)),
    ]));
    state
        .record_pending(
            Stage::FailedOver,
            lifeboat_engine::state::PendingOperation {
                id: "op-7".into(),
                kind: lifeboat_engine::provider::OperationKind::Reprotect,
                machine: "dc-01".to_string(),
                started_at: "2026-12-05T22:00:00Z".parse().expect("a timestamp"),
                settings: None,
            },
        )
        .expect("recorded");
    estate.backend().write(&state).expect("writes");

    let list = estate.run(&["state", "list"]);
    assert_eq!(list.status.code(), Some(0));
    insta::assert_snapshot!("state_list", redact(&stdout(&list), &state));
    let json = estate.json(&["state", "list", "--format", "json"]);
    assert_eq!(
        json,
        serde_json::json!([
            {"address": "machine.dc-01", "stage": "failed-over", "pending": "reprotect"},
            {"address": "machine.web-01", "stage": "reprotected", "pending": null},
        ])
    );

    let show = estate.json(&["state", "show", "machine.web-01", "--format", "json"]);
    assert_eq!(show["stage"], "reprotected");
    assert_eq!(show["settings"]["datastore"], "vsan-01");
    assert_eq!(show["provider_ids"]["replicated_item"], "ri-web-01");
    let human = estate.run(&["--help"]);
    assert!(stdout(&human).contains("state"));
    let human = estate.run(&["state", "show", "machine.dc-01"]);
    assert!(
        stdout(&human).contains("pending: reprotect `op-7`"),
        "{}",
        stdout(&human)
    );

    let missing = estate.run(&["state", "show", "machine.nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("`machine.nope` is not in the state"));
    let not_an_address = estate.run(&["state", "show", "web-01"]);
    assert_eq!(not_an_address.status.code(), Some(1));

    // `--plan` finds the state through another plan file's `state` setting, in the same
    // repository (a plan's paths stay inside its repository).
    std::fs::create_dir_all(estate.path(".git")).expect("mkdir");
    let plan = std::fs::read_to_string(estate.path("lifeboat.yaml")).expect("plan");
    std::fs::create_dir_all(estate.path("elsewhere")).expect("mkdir");
    std::fs::write(
        estate.path("elsewhere/other.yaml"),
        plan.replacen(
            "\nsite:",
            "\nstate:\n  local:\n    path: ../.lifeboat/state.json\nsite:",
            1,
        ),
    )
    .expect("writes");
    let other = estate.json(&[
        "state",
        "list",
        "--plan",
        "elsewhere/other.yaml",
        "--format",
        "json",
    ]);
    assert_eq!(other, json);
}

#[test]
fn refresh_only_reports_drift_and_changes_nothing() {
    let estate = Estate::new();
    let clean = estate.run(&["plan", "--refresh-only", "--detailed-exitcode"]);
    assert_eq!(clean.status.code(), Some(0), "{}", stderr(&clean));
    assert!(stdout(&clean).starts_with("No drift"));

    // The state says web-01 was reprotected onto vsan-01 and db machines exist that the site
    // does not have; the world says web-01 sits on another datastore and pg-01 is further on.
    let world = estate.path(".lifeboat/world.yaml");
    let mut sim = store::read(&world).expect("the world reads");
    let web = sim.machines.get_mut("web-01").expect("exists");
    web.stage = Stage::Reprotected;
    web.settings.master_target = Some("mt-linux-01".to_string());
    web.settings.process_server = Some("ps-azure-01".to_string());
    web.settings.datastore = Some("vmfs-ssd-01".to_string());
    web.settings.retention_drive = Some("/mnt/retention".to_string());
    web.settings.recovery = Some(Recovery::Original);
    store::write(&world, &sim).expect("the world writes");
    estate.put_state(BTreeMap::from([
        (
            "web-01".to_string(),
            MachineState {
                settings: Some(settings("mt-linux-01", "vsan-01")),
                ..MachineState::at(Stage::Reprotected)
            },
        ),
        ("pg-01".to_string(), MachineState::at(Stage::Reprotected)),
        ("gone-01".to_string(), MachineState::at(Stage::FailedBack)),
    ]));
    let state_before = std::fs::read(estate.state_path()).expect("state");

    let output = estate.run(&[
        "plan",
        "--refresh-only",
        "--format",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_conforms("plan-output.schema.json", &plan);
    assert_eq!(plan["changes"], serde_json::json!([]));
    let drift: Vec<(String, String)> = plan["drift"]
        .as_array()
        .expect("a drift list")
        .iter()
        .map(|d| {
            (
                d["address"].as_str().expect("address").to_string(),
                d["kind"].as_str().expect("kind").to_string(),
            )
        })
        .collect();
    assert_eq!(
        drift,
        [
            ("machine.gone-01".to_string(), "missing".to_string()),
            ("machine.pg-01".to_string(), "stage".to_string()),
            ("machine.web-01".to_string(), "settings".to_string()),
        ]
    );
    let human = estate.run(&["plan", "--refresh-only"]);
    assert_eq!(human.status.code(), Some(0));
    insta::assert_snapshot!("refresh_only_human", stdout(&human));
    let markdown = stdout(&estate.run(&["plan", "--refresh-only", "--format", "markdown"]));
    assert!(markdown.contains("| `machine.web-01` |"), "{markdown}");

    assert_eq!(
        std::fs::read(estate.state_path()).expect("state"),
        state_before
    );
    // The simulator's refresh may settle its clock, but no machine moved.
    let after = store::read(&world).expect("the world reads");
    assert_eq!(after.machines["web-01"].stage, Stage::Reprotected);
    assert_eq!(after.machines["pg-01"].stage, Stage::FailedOver);
    assert_eq!(after.machines, sim.machines);

    // A plain plan does not report drift; refresh-only cannot be saved.
    assert!(
        estate
            .json(&["plan", "--format", "json"])
            .get("drift")
            .is_none()
    );
    let refused = estate.run(&["plan", "--refresh-only", "--out", "x.json"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(!estate.path("x.json").exists());
}
