//! Plugins end to end: the reference Python plugin and the served sim take the example to its
//! goals and pass the conformance kit; deliberately broken plugins (tests/fixtures/plugins/)
//! fail the kit for the right reason and give `plan` a clear error, never a hang; a plugin
//! that dies mid-run is started again without running anything twice; a plan cannot run a
//! plugin that is not allowed from outside it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::example::{Example, lifeboat_binary};
use crate::util::repo_root;

/// The reference plugin's example, copied into a temporary directory.
struct PythonExample {
    dir: tempfile::TempDir,
}

impl PythonExample {
    fn new(goal: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let source = repo_root().join("examples/plugin-python");
        for file in ["lifeboat.yaml", "estate.json", "estate_plugin.py"] {
            std::fs::copy(source.join(file), dir.path().join(file)).expect("copy the example");
        }
        let example = Self { dir };
        example.edit_plan(|plan| {
            plan.replace("goal: reprotected", &format!("goal: {goal}"))
                // The window open now, for `apply`.
                .replace("2026-12-05T22:00:00Z", "2020-01-01T00:00:00Z")
                .replace("2026-12-06T04:00:00Z", "2099-12-06T04:00:00Z")
        });
        example
    }

    fn plan(&self) -> PathBuf {
        self.dir.path().join("lifeboat.yaml")
    }

    fn edit_plan(&self, change: impl FnOnce(String) -> String) {
        let plan = std::fs::read_to_string(self.plan()).expect("the plan");
        std::fs::write(self.plan(), change(plan)).expect("write the plan");
    }

    /// Runs the plan's plugin command `program` instead of the reference plugin.
    fn use_plugin(&self, program: &Path, timeout: &str) {
        self.edit_plan(|plan| {
            plan.replace(
                "command: [./estate_plugin.py]",
                &format!("command: [{}]", program.display()),
            )
            .replace("timeout: 30s", &format!("timeout: {timeout}"))
        });
    }

    /// The binary in the example's directory, with `allowed` allowed to run.
    fn lifeboat(&self, allowed: Option<&Path>) -> std::process::Command {
        let mut command = std::process::Command::new(lifeboat_binary());
        command
            .current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("LIFEBOAT_ALLOWED_PLUGINS");
        if let Some(allowed) = allowed {
            command.env("LIFEBOAT_ALLOWED_PLUGINS", allowed);
        }
        command
    }

    fn estate(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.path().join(".lifeboat/estate.json"))
            .expect("the estate exists");
        serde_json::from_str(&text).expect("the estate is JSON")
    }

    fn reference(&self) -> PathBuf {
        self.dir.path().join("estate_plugin.py")
    }
}

fn broken(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/plugins").join(name)
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every operation of the estate's record, per (machine, kind).
fn operations_per_work(estate: &serde_json::Value) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for op in estate["operations"]
        .as_object()
        .expect("operations")
        .values()
    {
        assert_eq!(op["status"], "succeeded", "{op}");
        let work = format!("{} {}", op["kind"], op["machine"]);
        *out.entry(work).or_insert(0) += 1;
    }
    out
}

#[test]
fn the_reference_plugin_takes_the_example_to_every_goal() {
    for (goal, per_machine) in [("reprotected", 1), ("protected", 4)] {
        let example = PythonExample::new(goal);
        let allowed = example.reference();
        let output = example
            .lifeboat(Some(&allowed))
            .args(["apply", "--auto-approve"])
            .output()
            .expect("runs");
        assert_eq!(output.status.code(), Some(0), "{goal}:\n{}", text(&output));
        assert!(
            text(&output).contains(&format!("Apply complete: {} changes", 8 * per_machine)),
            "{}",
            text(&output)
        );
        let output = example
            .lifeboat(Some(&allowed))
            .args(["plan", "--detailed-exitcode"])
            .output()
            .expect("runs");
        assert_eq!(
            output.status.code(),
            Some(0),
            "converged:\n{}",
            text(&output)
        );
        let work = operations_per_work(&example.estate());
        assert_eq!(work.len(), 8 * per_machine, "{work:?}");
        assert!(
            work.values().all(|n| *n == 1),
            "something ran twice: {work:?}"
        );
    }
}

fn conformance(plan: &Path, command: &[&str]) -> (Option<i32>, String) {
    let output = std::process::Command::new(lifeboat_binary())
        .current_dir(plan.parent().expect("a directory"))
        .env("NO_COLOR", "1")
        .args(["provider", "test", "--timeout", "5s", "--plan"])
        .arg(plan)
        .arg("--")
        .args(command)
        .output()
        .expect("runs");
    (output.status.code(), text(&output))
}

#[test]
fn the_conformance_kit_passes_on_the_reference_plugin_and_the_served_sim() {
    let python = PythonExample::new("reprotected");
    let (code, out) = conformance(&python.plan(), &["./estate_plugin.py"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("12 cases: 12 passed, 0 failed, 0 skipped"),
        "{out}"
    );

    let mut sim = Example::new("reprotected");
    sim.serve_as_plugin();
    let binary = lifeboat_binary();
    let binary = binary.to_str().expect("UTF-8");
    let (code, out) = conformance(
        &sim.dir.path().join("lifeboat.yaml"),
        &[
            binary,
            "provider",
            "serve",
            "sim",
            "--world",
            ".lifeboat/world.yaml",
            "--start-from",
            "world.yaml",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("12 cases: 12 passed, 0 failed, 0 skipped"),
        "{out}"
    );
    for line in out.lines().filter(|l| l.starts_with("ok ")) {
        assert!(!line.contains("FAIL"), "{line}");
    }
}

/// Each broken plugin fails the case it breaks, with the message that says how.
#[test]
fn the_conformance_kit_names_what_each_broken_plugin_breaks() {
    for (fixture, expected) in [
        (
            "noisy.py",
            "the plugin `noisy.py` wrote something on stdout that is not a protocol message: `estate plugin starting up`",
        ),
        (
            "non_idempotent.py",
            "FAIL  `run` twice with one id runs once: the second `run` of operation `conformance-",
        ),
        (
            "amnesiac.py",
            "FAIL  `status` after a restart is definite: after the plugin was killed and started again, `status` of operation `conformance-",
        ),
    ] {
        let example = PythonExample::new("reprotected");
        let program = broken(fixture);
        let (code, out) = conformance(&example.plan(), &[program.to_str().expect("UTF-8")]);
        assert_eq!(code, Some(1), "{fixture}:\n{out}");
        assert!(out.contains(expected), "{fixture}:\n{out}");
        let failures: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL")).collect();
        assert_eq!(failures.len(), 1, "{fixture} fails one case only:\n{out}");
        assert!(failures[0].contains(expected), "{fixture}:\n{out}");
        assert!(out.contains(" 1 failed,"), "{fixture}:\n{out}");
    }
    let example = PythonExample::new("reprotected");
    let (_, out) = conformance(
        &example.plan(),
        &[broken("noisy.py").to_str().expect("UTF-8")],
    );
    assert!(
        out.contains("FAIL  nothing on stdout before `initialize`: before"),
        "{out}"
    );
    // What the non-idempotent plugin's second run said.
    let example = PythonExample::new("reprotected");
    let (_, out) = conformance(
        &example.plan(),
        &[broken("non_idempotent.py").to_str().expect("UTF-8")],
    );
    assert!(
        out.contains("a `run` with an id already seen must return the first outcome, not run the operation again"),
        "{out}"
    );
    let example = PythonExample::new("reprotected");
    let (_, out) = conformance(
        &example.plan(),
        &[broken("amnesiac.py").to_str().expect("UTF-8")],
    );
    assert!(out.contains("says Unknown"), "{out}");
}

/// A plugin that hangs, speaks another version, dies at once or writes garbage: `plan` says
/// which and why, exits 1, and does not hang.
#[test]
fn a_broken_plugin_gets_a_clear_error_and_a_non_zero_exit() {
    for (fixture, expected) in [
        (
            "hung.py",
            vec![
                "the plugin `estate-plugin` did not answer `refresh` within 5s and sent no progress; it is taken for hung and was stopped",
            ],
        ),
        (
            "wrong_version.py",
            vec!["the plugin `wrong_version.py` speaks protocol v2, and this lifeboat speaks v1"],
        ),
        (
            "crashing.py",
            vec![
                "the plugin `crashing.py` exited with status 3",
                "estate unreachable",
            ],
        ),
        (
            "noisy.py",
            vec![
                "the plugin `noisy.py` wrote something on stdout that is not a protocol message: `estate plugin starting up`",
            ],
        ),
    ] {
        let example = PythonExample::new("reprotected");
        let program = broken(fixture);
        // Long enough for Python to start on a loaded machine; the hang is in `refresh`.
        example.use_plugin(&program, "5s");
        let started = Instant::now();
        let output = example
            .lifeboat(Some(&program))
            .arg("plan")
            .output()
            .expect("runs");
        let out = text(&output);
        assert_eq!(output.status.code(), Some(1), "{fixture}:\n{out}");
        for expected in expected {
            assert!(
                out.contains(expected),
                "{fixture}: `{expected}` not in:\n{out}"
            );
        }
        assert!(!out.contains("panicked"), "{fixture}:\n{out}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{fixture} took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_plugin_that_dies_mid_run_is_started_again_and_nothing_runs_twice() {
    let example = PythonExample::new("reprotected");
    let program = broken("dies_mid_run.py");
    example.use_plugin(&program, "10s");
    let output = example
        .lifeboat(Some(&program))
        .args(["apply", "--auto-approve", "--parallelism", "1"])
        .output()
        .expect("runs");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("exited with status 9"), "{out}");
    assert!(out.contains("starting it again (1 of 3)"), "{out}");
    assert!(out.contains("Apply complete: 8 changes"), "{out}");
    let work = operations_per_work(&example.estate());
    assert_eq!(work.len(), 8, "{work:?}");
    assert!(
        work.values().all(|n| *n == 1),
        "something ran twice: {work:?}"
    );
}

#[test]
fn a_plan_cannot_run_a_plugin_that_is_not_allowed_from_outside_it() {
    let example = PythonExample::new("reprotected");
    let output = example.lifeboat(None).arg("plan").output().expect("runs");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("plan::plugin-not-allowed"), "{out}");
    assert!(out.contains("--allow-plugin"), "{out}");
    assert!(out.contains("LIFEBOAT_ALLOWED_PLUGINS"), "{out}");
    assert!(
        !example.dir.path().join(".lifeboat/estate.json").exists(),
        "the plugin ran"
    );
    // Allowed on the command line, it runs.
    let output = example
        .lifeboat(None)
        .arg("plan")
        .arg("--allow-plugin")
        .arg(example.reference())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // A relative command that leaves the repository is refused before anything runs, by
    // `validate` too.
    let inner = example.dir.path().join("plans");
    std::fs::create_dir_all(inner.join(".git")).expect("a repository");
    let plan = std::fs::read_to_string(example.plan())
        .expect("the plan")
        .replace(
            "command: [./estate_plugin.py]",
            "command: [../estate_plugin.py]",
        );
    std::fs::write(inner.join("lifeboat.yaml"), plan).expect("write");
    let output = example
        .lifeboat(Some(&example.reference()))
        .args(["validate", "plans/lifeboat.yaml"])
        .output()
        .expect("runs");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("plan::path-outside"), "{out}");
    assert!(out.contains("provider.plugin.command"), "{out}");
}
