//! The failback night end to end on the simulated estate with a scaled clock: the schedule
//! and window fit in `plan`, failbacks waiting for the window, `--no-wait`, a boot group
//! that would overrun the window, steps between boot groups (checks against servers started
//! here on loopback, commands, manual gates and `approve`), the failure policy, and that no
//! command other than `apply` ever runs a step.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lifeboat_engine::provider::OperationKind;
use lifeboat_provider_sim::World;
use lifeboat_provider_sim::world::Event;
use serde_json::Value;

use crate::example::{Example, world};

/// The example estate at `goal`, with the window from `start` to `end` seconds from now.
/// The window's start as the plan file says it.
fn window_start(example: &Example) -> jiff::Timestamp {
    let plan = std::fs::read_to_string(example.dir.path().join("lifeboat.yaml")).expect("plan");
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("start:"))
        .expect("a window");
    line.trim_start()
        .trim_start_matches("start:")
        .trim()
        .parse()
        .expect("a timestamp")
}

fn night(goal: &str, start: i64, end: i64) -> Example {
    let example = Example::new(goal);
    let now = jiff::Timestamp::now();
    let at = |s: i64| {
        now.checked_add(jiff::SignedDuration::from_secs(s))
            .expect("in range")
            .to_string()
    };
    edit_plan(&example, |plan| {
        plan.replace("2099-12-05T22:00:00Z", &at(start))
            .replace("2099-12-06T04:00:00Z", &at(end))
    });
    example
}

fn edit_plan(example: &Example, change: impl FnOnce(String) -> String) {
    let path = example.dir.path().join("lifeboat.yaml");
    let plan = std::fs::read_to_string(&path).expect("the plan");
    std::fs::write(&path, change(plan)).expect("write the plan");
}

/// Adds YAML lines (indented for a boot-group entry) to the boot group `group`.
fn add_to_group(example: &Example, group: &str, lines: &str) {
    edit_plan(example, |plan| {
        let entry = format!("  - name: {group}\n");
        let start = plan.find(&entry).expect("the boot group") + entry.len();
        let end = start + plan[start..].find('\n').expect("its machines") + 1;
        format!("{}{lines}{}", &plan[..end], &plan[end..])
    });
}

fn script(example: &Example, name: &str, body: &str) {
    let path = example.dir.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write the script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .expect("make it executable");
    }
}

fn scale(example: &Example, scale: f64) {
    example.edit(|world| world.timing.scale = scale);
}

fn run(example: &Example, args: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let output = example.lifeboat().args(args).output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let text = format!("{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let events = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    (output.status.code(), text, events)
}

fn apply_json(example: &Example, extra: &[&str]) -> (Option<i32>, String, Vec<Value>) {
    let mut args = vec!["apply", "--auto-approve", "--format", "json"];
    args.extend_from_slice(extra);
    run(example, &args)
}

/// When the simulated service started each (machine, operation); panics on a second start.
fn starts(world: &World) -> Vec<(String, OperationKind, jiff::Timestamp)> {
    let mut seen = std::collections::HashSet::new();
    world
        .history
        .iter()
        .filter(|h| h.event == Event::Started)
        .map(|h| {
            assert!(
                seen.insert((h.machine.clone(), h.kind)),
                "{} {} started twice",
                h.kind,
                h.machine
            );
            (h.machine.clone(), h.kind, h.at.0)
        })
        .collect()
}

fn of_kind(world: &World, kind: OperationKind) -> Vec<String> {
    let mut machines: Vec<String> = starts(world)
        .into_iter()
        .filter(|(_, k, _)| *k == kind)
        .map(|(m, _, _)| m)
        .collect();
    machines.sort();
    machines
}

fn event<'a>(events: &'a [Value], kind: &str, change: &str) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["event"] == kind && (e["change"] == change || e["step"] == change))
}

#[test]
fn plan_shows_the_schedule_and_whether_failback_fits_the_window() {
    // At `scale: 1` the simulator's estimates are its real durations: reprotect 20 min,
    // failback 10 min, commit 2 min. The window opens in two hours, after the reprotects.
    // infrastructure: dc-01 then dc-02 (`depends_on`), each failback and commit: 0 → 22 min;
    // data follows the group's failbacks: 20 → 32 min; app: 30 → 42 min.
    for (length_s, fit, code) in [
        (3 * 3600, "fits", None),
        (2_600, "tight", Some("warning")),
        (2_400, "overruns", Some("error")),
    ] {
        let example = night("committed", 7200, 7200 + length_s);
        scale(&example, 1.0);
        let (_, json) = example.plan_json(&[]);
        let schedule = &json["schedule"];
        assert_eq!(schedule["origin_is"], "window", "{schedule}");
        assert_eq!(schedule["fit"], fit, "{length_s}: {schedule}");
        let groups: Vec<(&str, i64, i64)> = schedule["boot_groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| {
                (
                    g["name"].as_str().expect("name"),
                    g["start_s"].as_i64().expect("start"),
                    g["end_s"].as_i64().expect("end"),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("infrastructure", 0, 1320),
                ("data", 1200, 1920),
                ("app", 1800, 2520)
            ],
            "{schedule}"
        );
        assert_eq!(schedule["end_s"], 2520);
        let path: Vec<&str> = schedule["critical_path"]
            .as_array()
            .expect("path")
            .iter()
            .map(|p| p.as_str().expect("id"))
            .collect();
        assert_eq!(path.first(), Some(&"reprotect machine.dc-01"), "{path:?}");
        assert!(path.contains(&"failback machine.dc-02"), "{path:?}");
        let window: Vec<&Value> = json["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .iter()
            .filter(|d| {
                d["code"] == "preflight::maintenance-window"
                    && !d["message"].as_str().unwrap_or("").contains("opens at")
            })
            .collect();
        match code {
            None => assert!(window.is_empty(), "{window:?}"),
            Some(severity) => {
                assert_eq!(window.len(), 1, "{window:?}");
                assert_eq!(window[0]["severity"], severity);
            }
        }
        if fit == "overruns" {
            let message = window[0]["message"].as_str().expect("message");
            assert!(message.contains("boot group `app`"), "{message}");
            let text = example.plan_text("human");
            assert!(
                text.contains("Schedule (relative to the maintenance window's start"),
                "{text}"
            );
            assert!(
                text.contains("app                      +30m → +42m"),
                "{text}"
            );
            assert!(
                text.contains("does not fit: ends at +42m, the window closes at +40m"),
                "{text}"
            );
            let markdown = example.plan_text("markdown");
            assert!(markdown.contains("| `app` | +30m | +42m |"), "{markdown}");
        }
    }
}

#[test]
fn failback_waits_for_the_window_and_starts_when_it_opens() {
    let example = night("failed-back", 4, 3600);
    scale(&example, 0.0005); // reprotect 0.6 s, failback 0.3 s
    let opens = window_start(&example);
    let (code, text, events) = apply_json(&example, &[]);
    assert_eq!(code, Some(0), "{text}");
    let wait = events
        .iter()
        .find(|e| e["event"] == "window-wait")
        .unwrap_or_else(|| panic!("no wait reported: {text}"));
    assert!(
        wait["seconds_left"].as_u64().expect("seconds") <= 4,
        "{wait}"
    );
    let world = world(&example);
    let started = starts(&world);
    assert_eq!(started.len(), 16, "{started:?}");
    for (machine, kind, at) in &started {
        match kind {
            OperationKind::Reprotect => assert!(*at < opens, "{machine} reprotect at {at}"),
            _ => assert!(
                *at >= opens,
                "{kind} {machine} at {at}, the window opens at {opens}"
            ),
        }
    }
}

#[test]
fn no_wait_stops_before_the_window_with_exit_4_and_a_later_apply_resumes() {
    let example = night("failed-back", 3, 3600);
    let opens = Instant::now() + Duration::from_secs(3);
    let (code, text, events) = apply_json(&example, &["--no-wait"]);
    assert_eq!(code, Some(4), "{text}");
    assert!(events.iter().any(|e| e["event"] == "held"), "{text}");
    let world_then = world(&example);
    assert_eq!(of_kind(&world_then, OperationKind::Reprotect).len(), 8);
    assert!(of_kind(&world_then, OperationKind::Failback).is_empty());
    let (code, text, _) = run(&example, &["apply", "--auto-approve", "--no-wait"]);
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("Apply stopped before the maintenance window"),
        "{text}"
    );
    assert!(
        text.contains("run `lifeboat apply` again inside the window"),
        "{text}"
    );
    std::thread::sleep(opens.saturating_duration_since(Instant::now()));
    let (code, text, _) = apply_json(&example, &["--no-wait"]);
    assert_eq!(code, Some(0), "{text}");
    let world = world(&example);
    assert_eq!(of_kind(&world, OperationKind::Failback).len(), 8);
    assert_eq!(starts(&world).len(), 16);
}

#[test]
fn a_boot_group_that_would_overrun_the_window_is_not_started() {
    // Open now, closing in 10 s; the app group's `web-01` takes 30 s to fail back.
    let example = night("committed", -60, 10);
    example.edit(|world| {
        world.timing.scale = 0.001; // failback 0.6 s, commit 0.12 s, reprotect 1.2 s
        world
            .machines
            .get_mut("web-01")
            .expect("web-01")
            .timing
            .failback_s = Some(30_000);
    });
    let (code, text, events) = apply_json(&example, &[]);
    assert_eq!(code, Some(1), "{text}");
    let held: Vec<&Value> = events.iter().filter(|e| e["event"] == "held").collect();
    let mut changes: Vec<&str> = held
        .iter()
        .map(|e| e["change"].as_str().expect("change"))
        .collect();
    changes.sort_unstable();
    assert_eq!(
        changes,
        [
            "failback machine.batch-01",
            "failback machine.web-01",
            "failback machine.web-02"
        ],
        "{text}"
    );
    let because = held[0]["because"].as_str().expect("because");
    assert!(
        because.contains("boot group `app`") && because.contains("stay where they are"),
        "{because}"
    );
    let world = world(&example);
    assert_eq!(
        of_kind(&world, OperationKind::Failback),
        ["dc-01", "dc-02", "pg-01", "sql-01", "sql-02"]
    );
    assert_eq!(of_kind(&world, OperationKind::Commit).len(), 5);
}

/// A loopback server answering every connection with `status`; counts requests.
fn http_server(status: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 2048];
            let _ = stream.read(&mut buffer);
            if buffer.starts_with(b"GET /ready") {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
            );
        }
    });
    (port, hits)
}

/// A loopback TCP listener that counts connections.
fn tcp_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (port, hits)
}

#[test]
fn tcp_and_http_checks_poll_servers_on_loopback() {
    let (tcp, tcp_hits) = tcp_server();
    let (ready, ready_hits) = http_server(200);
    let (busy, busy_hits) = http_server(503);
    let example = night("failed-back", -60, 3600);
    add_to_group(
        &example,
        "data",
        &format!(
            "    after:\n      - tcp: 127.0.0.1:{tcp}\n        timeout: 10s\n      - http: {{url: http://127.0.0.1:{ready}/ready, expect_status: 200}}\n        timeout: 10s\n"
        ),
    );
    add_to_group(
        &example,
        "app",
        &format!(
            "    after:\n      - http: {{url: http://127.0.0.1:{busy}/ready}}\n        timeout: 1s\n"
        ),
    );
    let (code, text, events) = apply_json(&example, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        event(&events, "succeeded", "boot_group.data after[1]").is_some(),
        "{text}"
    );
    assert!(
        event(&events, "succeeded", "boot_group.data after[2]").is_some(),
        "{text}"
    );
    let failed =
        event(&events, "failed", "boot_group.app after[1]").unwrap_or_else(|| panic!("{text}"));
    assert_eq!(failed["code"], "step::timeout");
    let message = failed["message"].as_str().expect("message");
    assert!(
        message.contains("did not answer with a 2xx status within 1s (last: status 503)"),
        "{message}"
    );
    assert!(tcp_hits.load(Ordering::SeqCst) >= 1);
    assert!(ready_hits.load(Ordering::SeqCst) >= 1);
    // Polled until the timeout: more than one attempt.
    assert!(
        busy_hits.load(Ordering::SeqCst) >= 2,
        "{}",
        busy_hits.load(Ordering::SeqCst)
    );
}

/// Whether a process is gone (or a zombie nobody reaped: killed all the same).
#[cfg(target_os = "linux")]
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[cfg(target_os = "linux")]
#[test]
fn a_command_steps_timeout_kills_its_process_group() {
    let example = night("failed-back", -60, 3600);
    // The script starts a child and waits for it: killing only the script would leave the
    // child running (and holding the output pipe open).
    script(
        &example,
        "slow.sh",
        "echo \"group=$LIFEBOAT_BOOT_GROUP machines=$LIFEBOAT_MACHINES run=${LIFEBOAT_RUN_ID:+set}\"\nsleep 300 &\necho $! > child.pid\nwait",
    );
    add_to_group(
        &example,
        "infrastructure",
        "    after:\n      - command: [./slow.sh]\n        timeout: 1s\n",
    );
    let started = Instant::now();
    let (code, text, events) = apply_json(&example, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(code, Some(1), "{text}");
    let failed = event(&events, "failed", "boot_group.infrastructure after[1]")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(failed["code"], "step::timeout");
    assert!(
        failed["message"]
            .as_str()
            .expect("message")
            .contains("its process group was killed")
    );
    // Its output is in the events; the next groups were skipped (`on_failure: stop`).
    let output = events
        .iter()
        .find(|e| e["event"] == "step-output")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        output["line"],
        "group=infrastructure machines=dc-01,dc-02 run=set"
    );
    assert!(
        event(&events, "skipped", "failback machine.sql-01").is_some(),
        "{text}"
    );
    let pid =
        std::fs::read_to_string(example.dir.path().join("child.pid")).expect("the child's pid");
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gone(pid), "the script's child {pid} outlived the timeout");
}

#[test]
fn a_failing_step_stops_later_groups_unless_on_failure_is_continue() {
    for policy in ["stop", "continue"] {
        let example = night("failed-back", -60, 3600);
        script(&example, "fail.sh", "echo lagging >&2\nexit 1");
        add_to_group(
            &example,
            "data",
            &format!("    after:\n      - command: [./fail.sh]\n    on_failure: {policy}\n"),
        );
        let (code, text, events) = apply_json(&example, &[]);
        assert_eq!(code, Some(1), "{policy}: {text}");
        let failed = event(&events, "failed", "boot_group.data after[1]")
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(failed["code"], "step::failed");
        let app = of_kind(&world(&example), OperationKind::Failback);
        match policy {
            "stop" => {
                assert_eq!(
                    app,
                    ["dc-01", "dc-02", "pg-01", "sql-01", "sql-02"],
                    "{text}"
                );
                assert!(event(&events, "skipped", "failback machine.web-01").is_some());
            }
            _ => {
                assert_eq!(app.len(), 8, "{text}");
                assert!(events.iter().any(|e| e["event"] == "continuing"), "{text}");
                let summary = events.last().expect("summary");
                assert_eq!(summary["continued"], 1, "{summary}");
            }
        }
    }
}

#[test]
fn a_manual_gate_stops_apply_approve_records_it_and_the_next_apply_repeats_nothing() {
    let example = night("committed", -60, 3600);
    script(&example, "count.sh", "echo ran >> ran.txt");
    add_to_group(
        &example,
        "data",
        "    after:\n      - command: [./count.sh]\n      - manual: \"Confirm the DBA has checked the AG listener\"\n",
    );
    let (code, text, _) = run(&example, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains(
            "waiting at `boot_group.data after[2]`: Confirm the DBA has checked the AG listener"
        ),
        "{text}"
    );
    assert!(
        text.contains("run `lifeboat approve boot_group.data`"),
        "{text}"
    );
    let before = world(&example);
    assert!(
        of_kind(&before, OperationKind::Failback)
            .iter()
            .all(|m| !m.starts_with("web"))
    );
    // Approving another group, or before an apply stopped there, is refused.
    let (code, text, _) = run(&example, &["approve", "boot_group.app"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("gates waiting: `boot_group.data after[2]`"),
        "{text}"
    );
    let (code, text, _) = run(&example, &["approve", "boot_group.data"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("approved `boot_group.data after[2]` as `"),
        "{text}"
    );
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(example.dir.path().join(".lifeboat/state.json")).expect("state"),
    )
    .expect("JSON");
    let gate = &state["steps"]["boot_group.data after[2]"]["gate"];
    assert!(
        gate["approved_by"]
            .as_str()
            .is_some_and(|by| by.contains('@')),
        "{gate}"
    );
    assert!(gate["approved_at"].is_string(), "{gate}");
    let (code, text, _) = run(&example, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        !text.contains("boot_group.data after[1]"),
        "the command ran again: {text}"
    );
    let ran = std::fs::read_to_string(example.dir.path().join("ran.txt")).expect("ran");
    assert_eq!(
        ran.lines().count(),
        1,
        "the command ran {} times",
        ran.lines().count()
    );
    assert_eq!(starts(&world(&example)).len(), 24);
    let (code, text, _) = run(&example, &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn only_apply_runs_a_step_or_connects_anywhere() {
    let (tcp, tcp_hits) = tcp_server();
    let (http, http_hits) = http_server(200);
    let example = night("committed", -60, 3600);
    script(&example, "touch.sh", "touch ran.marker");
    add_to_group(
        &example,
        "data",
        &format!(
            "    before:\n      - command: [./touch.sh]\n      - tcp: 127.0.0.1:{tcp}\n      - http: {{url: http://127.0.0.1:{http}/ready}}\n      - manual: gate\n"
        ),
    );
    let plan = example.dir.path().join("lifeboat.yaml");
    let saved = example.dir.path().join("saved.json");
    for args in [
        vec!["validate"],
        vec!["plan"],
        vec!["plan", "--format", "json"],
        vec!["plan", "--format", "markdown"],
        vec!["plan", "--out", saved.to_str().expect("UTF-8")],
        vec!["show", saved.to_str().expect("UTF-8")],
        vec!["graph"],
        vec!["graph", "--format", "dot"],
        vec![
            "diff",
            plan.to_str().expect("UTF-8"),
            plan.to_str().expect("UTF-8"),
        ],
    ] {
        let (code, text, _) = run(&example, &args);
        assert_eq!(code, Some(0), "{args:?}: {text}");
    }
    let (_, graph, _) = run(&example, &["graph"]);
    assert!(
        graph.contains("boot_group.data before[1]: command ./touch.sh"),
        "{graph}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !Path::new(&example.dir.path().join("ran.marker")).exists(),
        "a command ran"
    );
    assert_eq!(tcp_hits.load(Ordering::SeqCst), 0, "something connected");
    assert_eq!(http_hits.load(Ordering::SeqCst), 0, "something connected");
}

#[test]
fn a_command_outside_the_repository_is_refused() {
    let example = night("committed", -60, 3600);
    std::fs::create_dir(example.dir.path().join(".git")).expect("a repository");
    add_to_group(
        &example,
        "data",
        "    after:\n      - command: [../../bin/sh, -c, id]\n",
    );
    let (code, text, _) = run(&example, &["validate"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("plan::path-outside"), "{text}");
    assert!(text.contains("`command` `../../bin/sh`"), "{text}");
}

#[test]
fn a_machine_that_fails_back_in_no_boot_group_is_warned_about() {
    let example = night("failed-back", 3600, 7200);
    edit_plan(&example, |plan| {
        plan.replace("[web-01, web-02, batch-01]", "[web-01, web-02]")
    });
    let output = example
        .lifeboat()
        .args(["validate", "--format", "json"])
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let warning = &report["diagnostics"][0];
    assert_eq!(warning["code"], "boot-order::unordered", "{report}");
    assert_eq!(warning["severity"], "warning");
    let message = warning["message"].as_str().expect("message");
    assert!(
        message.starts_with(
            "machine `batch-01` will fail back but is in no boot group: it fails back as soon as reprotected"
        ),
        "{message}"
    );
    assert!(
        message.contains("alongside the first boot group `infrastructure`"),
        "{message}"
    );
    assert_eq!(warning["labels"][0]["message"], "in no boot group");
    // Not at `reprotected`: nothing fails back.
    edit_plan(&example, |plan| {
        plan.replace("goal: failed-back", "goal: reprotected")
    });
    let (_, text, _) = run(&example, &["validate"]);
    assert!(!text.contains("boot-order::unordered"), "{text}");
}

#[cfg(unix)]
fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[cfg(unix)]
fn spawn_apply(example: &Example) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .current_dir(example.dir.path())
        .env("NO_COLOR", "1")
        .args(["apply", "--auto-approve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lifeboat starts")
}

/// Waits until the simulated service has started `count` operations.
fn wait_for_starts(example: &Example, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(world) = lifeboat_provider_sim::store::read(&example.world_path())
            && world
                .history
                .iter()
                .filter(|h| h.event == Event::Started)
                .count()
                >= count
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the apply did not start {count} operations");
}

#[cfg(unix)]
#[test]
fn ctrl_c_says_what_it_stops_and_a_second_explains_what_goes_on() {
    // Reprotects take 30 s: they are in flight when Ctrl-C comes.
    let example = night("reprotected", -60, 3600);
    scale(&example, 0.025);
    let child = spawn_apply(&example);
    wait_for_starts(&example, 8);
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let output = child.wait_with_output().expect("it ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("stopping: 8 operations in flight, no new ones start"),
        "{stderr}"
    );
    assert!(stderr.contains("go on at the service"), "{stderr}");
    assert!(stderr.contains("never starts it twice"), "{stderr}");
    // The next apply picks them up by id: nothing is started twice. (The jobs are made to
    // end now, rather than in 30 s, to keep the test short.)
    example.edit(|world| {
        for op in &mut world.running {
            op.ends_at = op.started_at;
        }
    });
    let (code, text, _) = run(&example, &["apply", "--auto-approve"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("⟳"), "{text}");
    assert_eq!(starts(&world(&example)).len(), 8);
}

#[cfg(unix)]
#[test]
fn ctrl_c_while_waiting_for_the_window_stops_the_wait() {
    let example = night("failed-back", 3600, 7200);
    let child = spawn_apply(&example);
    wait_for_starts(&example, 8);
    std::thread::sleep(Duration::from_millis(300));
    interrupt(&child);
    let started = Instant::now();
    let output = child.wait_with_output().expect("it ends");
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("stopping: 0 operations in flight, no new ones start"),
        "{stderr}"
    );
    assert!(
        stdout.contains("waiting for the maintenance window"),
        "{stdout}"
    );
    assert!(stdout.contains("8 not started"), "{stdout}");
}
