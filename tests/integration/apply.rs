//! `lifeboat apply` end to end on the simulated estate: every goal, faults transient and
//! permanent, saved plans, confirmation, the state lock, and SIGKILL at random moments.
//!
//! Every test runs twice: through the built-in `sim` provider, and through the same simulator
//! served as a plugin (`lifeboat provider serve sim`) over the plugin protocol, with the same
//! assertions, which proves the protocol carries everything the engine needs.

use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use lifeboat_engine::generate::SplitMix64;
use lifeboat_engine::provider::OperationKind;
use lifeboat_provider_sim::World;
use lifeboat_provider_sim::world::{Event, Fault, FaultCode};

use crate::example::{Backend, Example, apply, events, world};

/// Every operation the simulated service started, per (machine, kind), and per id.
fn starts(
    world: &World,
) -> (
    BTreeMap<(String, OperationKind), usize>,
    HashMap<String, usize>,
) {
    let mut by_work = BTreeMap::new();
    let mut by_id = HashMap::new();
    for entry in world.history.iter().filter(|h| h.event == Event::Started) {
        *by_work
            .entry((entry.machine.clone(), entry.kind))
            .or_insert(0) += 1;
        *by_id.entry(entry.operation.0.clone()).or_insert(0) += 1;
    }
    (by_work, by_id)
}

fn assert_nothing_ran_twice(world: &World) {
    let (by_work, by_id) = starts(world);
    for (work, count) in by_work {
        assert_eq!(count, 1, "{work:?} was started {count} times");
    }
    for (id, count) in by_id {
        assert_eq!(count, 1, "operation `{id}` was started {count} times");
    }
}

fn assert_converged(example: &Example) {
    let output = example
        .lifeboat()
        .args(["plan", "--detailed-exitcode"])
        .output()
        .expect("runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "plan after apply:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

fn fault(machine: &str, operation: OperationKind, code: &str, times: u32) -> Fault {
    Fault {
        machine: lifeboat_engine::Spanned::bare(machine.to_string()),
        operation,
        code: FaultCode(code.to_string()),
        times,
    }
}

fn apply_reaches_every_goal_then_there_is_nothing_to_do(backend: Backend) {
    for (goal, operations) in [
        ("reprotected", 1),
        ("failed-back", 2),
        ("committed", 3),
        ("protected", 4),
    ] {
        let example = Example::open_window_through(goal, backend);
        let (code, text) = apply(&example, &[]);
        assert_eq!(code, Some(0), "{goal}:\n{text}");
        assert!(
            text.contains(&format!("Apply complete: {} changes", 8 * operations)),
            "{goal}:\n{text}"
        );
        assert_converged(&example);
        let world = world(&example);
        assert_nothing_ran_twice(&world);
        assert_eq!(starts(&world).0.len(), 8 * operations, "{goal}");
        let state = example
            .lifeboat()
            .args(["state", "list"])
            .output()
            .expect("runs");
        let listing = String::from_utf8_lossy(&state.stdout);
        assert_eq!(
            listing.matches(&format!(" {goal}")).count(),
            8,
            "{goal}: {listing}"
        );
    }
}

fn a_transient_fault_is_waited_out(backend: Backend) {
    let example = Example::open_window_through("reprotected", backend);
    example.edit(|world| {
        world
            .faults
            .push(fault("web-01", OperationKind::Reprotect, "429", 2))
    });
    let (code, text) = apply(&example, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(
        text.matches("↻ reprotect machine.web-01").count(),
        2,
        "{text}"
    );
    assert_converged(&example);
}

fn a_permanent_fault_skips_its_dependents_only_and_a_second_apply_converges(backend: Backend) {
    let example = Example::open_window_through("failed-back", backend);
    example.edit(|world| {
        world
            .faults
            .push(fault("sql-01", OperationKind::Reprotect, "78093", 1))
    });
    let (code, text) = apply(&example, &["--format", "json"]);
    assert_eq!(code, Some(1), "{text}");
    let events = events(&text);
    let with = |kind: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["event"] == kind)
            .map(|e| e["change"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(with("failed"), ["reprotect machine.sql-01"]);
    let skipped = with("skipped");
    for dependent in [
        "failback machine.sql-01",
        "failback machine.sql-02",
        "failback machine.web-01",
        "failback machine.batch-01",
    ] {
        assert!(
            skipped.contains(&dependent.to_string()),
            "`{dependent}` not skipped: {skipped:?}"
        );
    }
    let succeeded = with("succeeded");
    for independent in [
        "reprotect machine.sql-02",
        "failback machine.dc-01",
        "failback machine.dc-02",
        "failback machine.pg-01",
    ] {
        assert!(
            succeeded.contains(&independent.to_string()),
            "`{independent}` did not run: {succeeded:?}"
        );
    }
    for event in events.iter().filter(|e| e["event"] == "skipped") {
        assert_eq!(
            event["because"], "reprotect machine.sql-01",
            "only the root cause is blamed"
        );
    }
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("a summary event");
    assert_eq!(summary["failed"], 1);

    // The fault was injected once; the next apply finishes the job.
    let (code, text) = apply(&example, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_converged(&example);
}

fn a_saved_plan_applies_once_then_is_stale(backend: Backend) {
    let example = Example::open_window_through("reprotected", backend);
    let saved = example.dir.path().join("tonight.json");
    let output = example
        .lifeboat()
        .args(["plan", "--out"])
        .arg(&saved)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let run = |example: &Example| {
        example
            .lifeboat()
            .arg("apply")
            .arg(&saved)
            .output()
            .expect("runs")
    };
    let first = run(&example);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run(&example);
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("is stale") && stderr.contains("serial"),
        "{stderr}"
    );
}

fn apply_asks_and_refuses_without_a_terminal(backend: Backend) {
    let example = Example::open_window_through("reprotected", backend);
    let output = example
        .lifeboat()
        .arg("apply")
        .write_stdin("yes\n")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("standard input is not a terminal"));
    assert!(world(&example).history.is_empty(), "nothing was sent");
}

fn slow(world: &mut World, scale: f64) {
    world.timing.scale = scale;
}

fn spawn_apply(example: &Example) -> Child {
    let mut command = example.command();
    command
        .args(["apply", "--auto-approve"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.spawn().expect("lifeboat starts")
}

fn a_second_apply_on_the_same_state_fails_fast_naming_the_holder(backend: Backend) {
    let example = Example::open_window_through("reprotected", backend);
    example.edit(|world| slow(world, 0.002)); // a reprotect takes 2.4 s
    let mut first = spawn_apply(&example);
    let info = example.dir.path().join(".lifeboat/state.json.lock.info");
    let started = Instant::now();
    while !info.exists() && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, text) = apply(&example, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("is locked by") && text.contains("`apply`"),
        "{text}"
    );
    assert!(first.wait().expect("the first apply ends").success());
    assert_converged(&example);
}

fn killing_apply_at_random_moments_never_loses_or_repeats_an_operation(backend: Backend) {
    let example = Example::open_window_through("committed", backend);
    // Reprotects take 1.2 s, failbacks 0.6 s, commits 0.12 s: every kind is in flight often.
    example.edit(|world| slow(world, 0.001));
    let mut rng = SplitMix64::new(2026);
    let mut kills = 0;
    for _ in 0..12 {
        let mut child = spawn_apply(&example);
        let delay = Duration::from_millis(100 + rng.below(1_500));
        let deadline = Instant::now() + delay;
        let mut finished = None;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("polls") {
                finished = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if finished.is_some() {
            break;
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        kills += 1;
    }
    assert!(kills >= 3, "the test killed apply only {kills} times");
    let (code, text) = apply(&example, &[]);
    assert_eq!(code, Some(0), "after {kills} kills:\n{text}");
    assert_converged(&example);
    let world = world(&example);
    assert_nothing_ran_twice(&world);
    assert_eq!(starts(&world).0.len(), 24, "every operation ran once");
    let state =
        std::fs::read_to_string(example.dir.path().join(".lifeboat/state.json")).expect("state");
    let state = lifeboat_engine::state::State::from_json(&state).expect("the state is valid");
    assert!(
        state.machines.values().all(|m| m.pending.is_none()),
        "no operation left pending"
    );
    // A writer killed between creating its temporary file and renaming it leaves the file
    // behind; the next process to take the lock removes it.
    let leftovers: Vec<String> = std::fs::read_dir(example.dir.path().join(".lifeboat"))
        .expect("listable")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left after {kills} kills: {leftovers:?}"
    );
}

/// Preflight runs again right before each operation, against fresh facts: a window that
/// closes while apply runs stops the operations that would start after it, before anything
/// is sent to the provider.
fn preflight_is_rechecked_right_before_each_operation(backend: Backend) {
    let example = Example::open_window_through("failed-back", backend);
    let closes = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let path = example.dir.path().join("lifeboat.yaml");
    let plan = std::fs::read_to_string(&path)
        .expect("the plan")
        .replace("2099-12-06T04:00:00Z", &closes.to_string());
    std::fs::write(&path, plan).expect("write the plan");
    example.edit(|world| slow(world, 0.002)); // a reprotect takes 2.4 s
    let (code, text) = apply(&example, &["--parallelism", "1", "--format", "json"]);
    assert_eq!(code, Some(1), "{text}");
    let events = events(&text);
    let succeeded = events.iter().filter(|e| e["event"] == "succeeded").count();
    assert_eq!(
        succeeded, 1,
        "only the reprotect that started inside the window ran: {text}"
    );
    // The first failback is refused by the executor's own window rule; the reprotects of the
    // machines after it by the preflight re-check.
    let refused: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "failed").collect();
    assert!(
        refused
            .iter()
            .all(|e| e["code"] == "preflight::maintenance-window"),
        "{refused:?}"
    );
    let rechecked = refused
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("preflight, right before `reprotect"))
        })
        .unwrap_or_else(|| panic!("no reprotect refused by the re-check: {refused:?}"));
    assert!(
        rechecked["message"]
            .as_str()
            .expect("message")
            .contains("maintenance window")
    );
    // Refused by lifeboat, so the simulated service never saw it.
    assert_eq!(starts(&world(&example)).0.len(), 1);
}

fn a_saved_plan_carries_its_parallelism_to_apply(backend: Backend) {
    let example = Example::open_window_through("reprotected", backend);
    let saved = example.dir.path().join("serial.json");
    let output = example
        .lifeboat()
        .args(["plan", "--parallelism", "1", "--out"])
        .arg(&saved)
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = example
        .lifeboat()
        .arg("apply")
        .arg(&saved)
        .args(["--format", "json"])
        .output()
        .expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = events(&String::from_utf8_lossy(&output.stdout));
    let mut in_flight = 0;
    for event in &events {
        match event["event"].as_str() {
            Some("started") => in_flight += 1,
            Some("succeeded" | "failed") => in_flight -= 1,
            _ => {}
        }
        assert!(
            in_flight <= 1,
            "more than one operation in flight: {events:?}"
        );
    }
    assert_eq!(
        events.iter().filter(|e| e["event"] == "succeeded").count(),
        8
    );
}

/// Ctrl-C (SIGINT) stops new starts; what is in flight finishes and is recorded, so the state
/// holds no pending operation, and running apply again finishes the job without repeating any.
fn ctrl_c_stops_new_starts_and_keeps_the_state_whole(backend: Backend) {
    let example = Example::open_window_through("committed", backend);
    example.edit(|world| slow(world, 0.001)); // a reprotect takes 1.2 s
    let child = example
        .command()
        .args(["apply", "--auto-approve", "--parallelism", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("lifeboat starts");
    std::thread::sleep(Duration::from_millis(1_500));
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let output = child.wait_with_output().expect("apply ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("interrupted: run `lifeboat apply` again"),
        "{stdout}"
    );
    let state =
        std::fs::read_to_string(example.dir.path().join(".lifeboat/state.json")).expect("state");
    let state = lifeboat_engine::state::State::from_json(&state).expect("the state is valid");
    assert!(
        state.machines.values().all(|m| m.pending.is_none()),
        "in-flight operations were recorded"
    );

    let (code, text) = apply(&example, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert_converged(&example);
    assert_nothing_ran_twice(&world(&example));
}

/// Each test through both backends: `apply::sim::NAME` and `apply::plugin::NAME`.
macro_rules! through_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sim {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Sim);
            })*
        }
        mod plugin {
            $(#[test]
            fn $name() {
                super::$name(super::Backend::Plugin);
            })*
        }
    };
}

through_both_backends!(
    apply_reaches_every_goal_then_there_is_nothing_to_do,
    a_transient_fault_is_waited_out,
    a_permanent_fault_skips_its_dependents_only_and_a_second_apply_converges,
    a_saved_plan_applies_once_then_is_stale,
    apply_asks_and_refuses_without_a_terminal,
    a_second_apply_on_the_same_state_fails_fast_naming_the_holder,
    killing_apply_at_random_moments_never_loses_or_repeats_an_operation,
    preflight_is_rechecked_right_before_each_operation,
    a_saved_plan_carries_its_parallelism_to_apply,
    ctrl_c_stops_new_starts_and_keeps_the_state_whole,
);
