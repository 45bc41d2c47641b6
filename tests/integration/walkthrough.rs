//! The findings of a new user's end-to-end walkthrough (issue 18), each as the command that
//! showed it, through the real binary.

use std::process::Stdio;

use crate::preflight::Estate;

/// Runs `lifeboat ARGS` in the estate with stdout a pipe whose reader is already gone, as
/// after `| head -c 5`; returns the exit code and stderr.
fn with_closed_stdout(estate: &Estate, args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(reader);
    let output = std::process::Command::new(assert_cmd::cargo::cargo_bin("lifeboat"))
        .current_dir(estate.path())
        .env("NO_COLOR", "1")
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("lifeboat runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Finding 1: every command ends quietly, with its own exit code, when its reader stops.
#[test]
fn every_command_ends_quietly_on_a_closed_stdout() {
    let estate = Estate::new("reprotected", "");
    estate
        .lifeboat(&["plan", "--out", "saved.json"])
        .assert()
        .success();
    let commands: &[&[&str]] = &[
        &["validate"],
        &["validate", "--format", "json"],
        &["plan"],
        &["plan", "--format", "json"],
        &["plan", "--format", "markdown"],
        &["show", "saved.json"],
        &["show", "saved.json", "--format", "json"],
        &["show", "saved.json", "--format", "markdown"],
        &["graph"],
        &["graph", "--format", "dot"],
        &["diff", "lifeboat.yaml", "lifeboat.yaml"],
        &["diff", "lifeboat.yaml", "lifeboat.yaml", "--format", "json"],
        &["schema", "plan"],
        &["apply", "--auto-approve"],
        &["state", "list"],
        &["state", "list", "--format", "json"],
        &["state", "show", "machine.web-01"],
        &["state", "show", "machine.web-01", "--format", "json"],
    ];
    for args in commands {
        let (code, stderr) = with_closed_stdout(&estate, args);
        assert_eq!(code, Some(0), "`lifeboat {}`: {stderr}", args.join(" "));
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "`lifeboat {}`: {stderr}",
            args.join(" ")
        );
    }
    // The apply with nobody reading still did its work.
    let list = estate
        .lifeboat(&["state", "list"])
        .output()
        .expect("lifeboat runs");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("machine.web-01") && list.contains("reprotected"),
        "{list}"
    );
}

/// A plan that parses as YAML with three misspelt keys, a wrong type, a wrong enum value
/// and a local time: `validate` names every one in one run.
const TYPOS: &str = "\
version: 1
name: typos
provider:
  sim:
    world: world.yaml
gaol: protected
site:
  vcenter: vc-01
  configuration_server: cs-01
  process_server: ps-01
master_targets:
  mt-linux-01:
    os: linux
    esxi_host: esx-01
    retention_drive: /mnt/retention
    datastores: [vsan-01]
machines:
  web-01:
    os: linux
    datastor: vsan-01
    disks_gib: [\"64G\"]
  app-01:
    os: linux
    datastore: vsan-01
    recovery: ALR
boot_ordr:
  - name: web
    machines: [web-01]
";

fn validate_json(plan: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("lifeboat.yaml"), plan).expect("the plan is written");
    let output = assert_cmd::Command::cargo_bin("lifeboat")
        .expect("the binary is built")
        .current_dir(dir.path())
        .args(["validate", "--format", "json"])
        .output()
        .expect("lifeboat runs");
    assert_eq!(output.status.code(), Some(1));
    crate::util::stdout_json(&output)
}

/// (message, help) of every diagnostic.
fn messages(report: &serde_json::Value) -> Vec<(String, String)> {
    report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| {
            assert_eq!(d["code"], "plan::schema", "{d:#}");
            (
                d["message"].as_str().expect("message").to_string(),
                d["help"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Finding 2: every unknown key and type error of a file that parses as YAML, in one run, in
/// file order, each with a did-you-mean.
#[test]
fn validate_reports_every_schema_problem_at_once() {
    let report = validate_json(TYPOS);
    let found = messages(&report);
    let expected = [
        ("unknown key `gaol`", "did you mean `goal`?"),
        ("unknown key `datastor`", "did you mean `datastore`?"),
        (
            "expected a number of GiB, found `64G`",
            "e.g. `disks_gib: [64, 256]`",
        ),
        ("unknown value `ALR`", "did you mean `alternate`?"),
        ("unknown key `boot_ordr`", "did you mean `boot_order`?"),
    ];
    for (message, help) in expected {
        assert!(
            found.iter().any(|(m, h)| m == message && h.contains(help)),
            "no `{message}` with help `{help}` in {found:#?}"
        );
    }
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    assert_eq!(report["error_count"], expected.len());
    // In file order, so a reader fixes them top to bottom.
    let lines: Vec<u64> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .map(|d| d["labels"][0]["start"]["line"].as_u64().expect("line"))
        .collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted);
}

/// Finding 3: a local time without offset shows the value fixed both ways.
#[test]
fn a_timestamp_without_offset_is_shown_fixed() {
    let plan = "version: 1\nname: t\nprovider: {sim: {world: w.yaml}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\nmaintenance_window:\n  start: 2026-12-05T22:00:00\n  end: 2026-12-06T04:00:00Z\n";
    let found = messages(&validate_json(plan));
    assert_eq!(found.len(), 1, "{found:#?}");
    let (message, _) = &found[0];
    assert!(
        message.contains("`2026-12-05T22:00:00Z`")
            && message.contains("`2026-12-05T22:00:00+01:00`"),
        "{message}"
    );
}

/// Finding 3: the abbreviation everyone writes for alternate-location recovery is understood.
#[test]
fn recovery_alr_suggests_alternate() {
    let plan = TYPOS
        .replace("gaol:", "goal:")
        .replace("datastor:", "datastore:")
        .replace("[\"64G\"]", "[64]")
        .replace("boot_ordr:", "boot_order:");
    let found = messages(&validate_json(&plan));
    assert_eq!(
        found,
        [(
            "unknown value `ALR`".to_string(),
            "did you mean `alternate`?".to_string()
        )]
    );
}

/// Finding 8: a master target too full gives one error naming what fills it, with a label on
/// each machine that found no room, instead of one near-identical error per machine.
#[test]
fn a_full_master_target_is_one_error_naming_what_fills_it() {
    let mut plan = String::from(
        "version: 1\nname: full\nprovider: {sim: {world: w.yaml}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\nmaster_targets:\n  mt-windows-01: {os: windows, esxi_host: esx-01, retention_drive: 'R:', datastores: [vsan-01]}\nmachines:\n",
    );
    let disks29 = vec!["10"; 29].join(", ");
    plan.push_str(&format!(
        "  sql-01: {{os: windows, datastore: vsan-01, disks_gib: [{disks29}]}}\n"
    ));
    plan.push_str(&format!(
        "  sql-02: {{os: windows, datastore: vsan-01, disks_gib: [{disks29}]}}\n"
    ));
    for i in 1..=6 {
        plan.push_str(&format!(
            "  app-0{i}: {{os: windows, datastore: vsan-01, disks_gib: [10, 20, 30]}}\n"
        ));
    }
    plan.push_str("replication_groups:\n  sql-ag: {machines: [sql-01, sql-02], master_target: mt-windows-01}\n");
    let report = validate_json(&plan);
    let diagnostics = report["diagnostics"].as_array().expect("diagnostics");
    assert_eq!(diagnostics.len(), 1, "{report:#}");
    let error = &diagnostics[0];
    assert_eq!(error["code"], "group::no-master-target");
    assert_eq!(
        error["message"],
        "no windows master target has room for 6 machines and groups (18 disks)"
    );
    let help = error["help"].as_str().expect("help");
    assert!(
        help.contains(
            "`mt-windows-01` serves 58 of 60 disks: group `sql-ag` 58 (named in the plan)"
        ),
        "{help}"
    );
    let labels = error["labels"].as_array().expect("labels");
    assert_eq!(labels.len(), 6, "{labels:#?}");
    assert!(labels.iter().all(|l| l["message"] == "needs 3 disks"));
}

/// Runs `lifeboat ARGS` in `dir` on a pseudo-terminal `cols` wide (stdin, stdout and stderr
/// on it, as in an interactive shell, with `COLUMNS` unset as shells leave it), and returns
/// everything it wrote, without carriage returns.
fn on_terminal(dir: &std::path::Path, args: &[&str], cols: u16, no_color: bool) -> String {
    use std::io::Read as _;

    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 60,
            cols,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pseudo-terminal");
    let mut command = CommandBuilder::new(assert_cmd::cargo::cargo_bin("lifeboat"));
    command.args(args);
    command.cwd(dir);
    command.env_remove("COLUMNS");
    command.env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let mut child = pty.slave.spawn_command(command).expect("lifeboat starts");
    drop(pty.slave);
    let mut reader = pty
        .master
        .try_clone_reader()
        .expect("the terminal's output");
    // Read while it runs: a full terminal buffer would block the child.
    let output = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // The read ends with an error (EIO on Linux) once the child has exited.
        let _ = reader.read_to_end(&mut bytes);
        bytes
    });
    child.wait().expect("lifeboat ends");
    drop(pty.master);
    let bytes = output.join().expect("the reader ends");
    String::from_utf8_lossy(&bytes).replace('\r', "")
}

/// A plan with one long diagnostic full of hyphenated, backticked names: the machine's
/// datastore is not one of its master target's.
const LONG_NAMES: &str = "\
version: 1
name: width
provider:
  sim:
    world: w.yaml
site:
  vcenter: vc-01
  configuration_server: cs-01
  process_server: ps-01
master_targets:
  mt-linux-primary-01:
    os: linux
    esxi_host: esx-01
    retention_drive: /mnt/retention
    datastores: [vsan-01]
machines:
  database-server-01:
    os: linux
    datastore: vmfs-ssd-primary-01
    master_target: mt-linux-primary-01
";

/// Finding 5: diagnostics on a terminal are as wide as the terminal says (no `COLUMNS`), and
/// a wrapped line never cuts a backticked name.
#[test]
fn diagnostics_wrap_at_the_terminal_width_and_never_inside_a_name() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(dir.path().join("lifeboat.yaml"), LONG_NAMES).expect("the plan is written");
    for cols in [50u16, 64, 80] {
        let text = on_terminal(dir.path(), &["validate"], cols, true);
        assert!(text.contains("master-target::datastore"), "{text}");
        for line in text.lines() {
            // The message and the help wrap (miette never wraps a label under the snippet);
            // only a line holding one name longer than the terminal may stay wider.
            let wrapped = ["  × ", "  │ ", "  help: ", "        "]
                .iter()
                .find_map(|prefix| line.strip_prefix(prefix));
            if let Some(words) = wrapped {
                assert!(
                    line.chars().count() <= usize::from(cols) || !words.trim().contains(' '),
                    "wider than {cols} columns: {line:?}\n{text}"
                );
            }
            assert_eq!(
                line.matches('`').count() % 2,
                0,
                "a backticked name is cut at {cols} columns: {line:?}\n{text}"
            );
        }
    }
}

/// Finding 6: the plan on a terminal is coloured like the diagnostics (dangerous `!` red,
/// additions green), and plain with `NO_COLOR`.
#[test]
fn the_plan_on_a_terminal_is_coloured_unless_no_color() {
    let estate = Estate::new("reprotected", "");
    let coloured = on_terminal(estate.path(), &["plan"], 120, false);
    assert!(coloured.contains("\x1b[1;31m!\x1b[0m"), "{coloured:?}");
    assert!(coloured.contains("\x1b[32m+"), "{coloured:?}");
    let plain = on_terminal(estate.path(), &["plan"], 120, true);
    assert!(plain.contains("machine.app-01"), "{plain}");
    assert!(!plain.contains('\x1b'), "{plain:?}");
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Finding 7: commit is flagged irreversible beside the dangerous changes; the steps after
/// reprotect say which replication ends instead of repeating every setting; counts agree
/// with their nouns.
#[test]
fn the_plan_shows_commit_as_irreversible_and_only_what_changes() {
    // Reprotected first, so that the steps after it start from recorded settings.
    let estate = Estate::new("reprotected", "");
    estate
        .lifeboat(&["apply", "--auto-approve"])
        .assert()
        .success();
    let plan_path = estate.path().join("lifeboat.yaml");
    let plan = std::fs::read_to_string(&plan_path).expect("readable");
    std::fs::write(
        &plan_path,
        plan.replace("goal: reprotected", "goal: protected"),
    )
    .expect("the plan is written");
    let output = estate.plan();
    let text = stdout(&output);
    let flagged = text.split("Other changes").next().expect("a first section");
    assert!(
        flagged.contains("Dangerous or irreversible changes"),
        "{text}"
    );
    for machine in ["web-01", "app-01"] {
        let commit = flagged
            .lines()
            .find(|l| l.contains("commit") && l.contains(&format!("machine.{machine}")))
            .unwrap_or_else(|| panic!("no commit of {machine} among the flagged changes:\n{text}"));
        assert!(
            commit.starts_with('!') && commit.contains("irreversible"),
            "{commit}"
        );
    }
    assert!(
        text.contains("- replication through `mt-linux-01` ends"),
        "{text}"
    );
    assert!(!text.contains("- process_server:"), "{text}");
    let targeted = estate
        .lifeboat(&["plan", "--target", "machine.web-01"])
        .output()
        .expect("lifeboat runs");
    let warning = stderr(&targeted);
    assert!(warning.contains("(1 machine)"), "{warning}");
}

/// Finding 7: an estate over 50 machines gets one line per master target.
#[test]
fn a_large_plan_summarises_each_master_target() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("lifeboat")
            .expect("the binary is built")
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("lifeboat runs")
    };
    let generated = run(&[
        "sim",
        "generate",
        "--machines",
        "60",
        "--groups",
        "4",
        "--master-targets",
        "6",
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let text = stdout(&run(&["plan"]));
    let section = text
        .split("Per master target (")
        .nth(1)
        .unwrap_or_else(|| panic!("no per-master-target summary:\n{text}"));
    let lines: Vec<&str> = section
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(!lines.is_empty(), "{text}");
    let total: usize = lines
        .iter()
        .map(|l| {
            let count = l.split_whitespace().nth(1).expect("a count");
            count.parse::<usize>().expect("a number of machines")
        })
        .sum();
    assert_eq!(total, 60, "{text}");
}

/// Finding 9: `apply --target` is accepted (the positional is the plan), `boot_group.NAME`
/// is an address, and `--lock=false` plans while another process holds the state's lock.
#[test]
fn apply_takes_targets_boot_groups_are_addresses_and_plans_can_skip_the_lock() {
    use lifeboat_engine::state::{LocalBackend, LockInfo, StateBackend};

    let estate = Estate::new(
        "reprotected",
        "boot_order:\n  - name: web\n    machines: [web-01]\n  - name: app\n    machines: [app-01]\n",
    );
    let boot = estate
        .lifeboat(&["plan", "--target", "boot_group.app", "--format", "json"])
        .output()
        .expect("lifeboat runs");
    assert!(boot.status.success(), "{}", stderr(&boot));
    let changes: Vec<String> = crate::util::stdout_json(&boot)["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(changes, ["reprotect machine.app-01"]);

    let applied = estate
        .lifeboat(&["apply", "--target", "machine.web-01", "--auto-approve"])
        .output()
        .expect("lifeboat runs");
    assert!(applied.status.success(), "{}", stderr(&applied));
    let list = stdout(
        &estate
            .lifeboat(&["state", "list"])
            .output()
            .expect("lifeboat runs"),
    );
    assert!(
        list.contains("machine.web-01") && !list.contains("machine.app-01"),
        "{list}"
    );

    // Another process (here: this test) holds the lock, as a running apply would.
    let backend = LocalBackend::new(estate.path().join(".lifeboat/state.json"));
    let _held = backend
        .lock(LockInfo::new("apply"), std::time::Duration::ZERO)
        .expect("the lock is free");
    let locked = estate.lifeboat(&["plan"]).output().expect("lifeboat runs");
    assert_eq!(locked.status.code(), Some(1));
    assert!(
        stderr(&locked).contains("is locked by"),
        "{}",
        stderr(&locked)
    );
    let unlocked = estate
        .lifeboat(&["plan", "--lock=false"])
        .output()
        .expect("lifeboat runs");
    assert!(unlocked.status.success(), "{}", stderr(&unlocked));
    assert!(
        stdout(&unlocked).contains("machine.app-01"),
        "{}",
        stdout(&unlocked)
    );
}

/// Finding 10: `show` keeps the saved warnings, says whether `apply` would still take the
/// plan, and its Markdown marks each diagnostic's severity.
#[test]
fn show_keeps_warnings_and_says_whether_the_plan_is_stale() {
    let estate = Estate::new("reprotected", "");
    estate
        .lifeboat(&["plan", "--target", "machine.web-01", "--out", "saved.json"])
        .assert()
        .success();
    let fresh = stdout(
        &estate
            .lifeboat(&["show", "saved.json"])
            .output()
            .expect("lifeboat runs"),
    );
    assert!(fresh.contains("warning[plan::targeted]"), "{fresh}");
    assert!(fresh.contains("Current:"), "{fresh}");
    let markdown = stdout(
        &estate
            .lifeboat(&["show", "saved.json", "--format", "markdown"])
            .output()
            .expect("lifeboat runs"),
    );
    assert!(
        markdown.contains("- ⚠️ **warning** `plan::targeted`"),
        "{markdown}"
    );

    estate
        .lifeboat(&["apply", "--auto-approve"])
        .assert()
        .success();
    let stale = stdout(
        &estate
            .lifeboat(&["show", "saved.json"])
            .output()
            .expect("lifeboat runs"),
    );
    assert!(
        stale.contains("Stale:") && stale.contains("`apply` would refuse this plan"),
        "{stale}"
    );
}

fn mermaid_edges(text: &str) -> usize {
    text.lines().filter(|l| l.contains(" --> ")).count()
}

/// Finding 11: `graph --goal` draws the order towards another goal, and a graph over
/// Mermaid's 500 edges is collapsed to groups with a note.
#[test]
fn graph_takes_a_goal_and_stays_under_mermaids_edge_limit() {
    let estate = Estate::new("reprotected", "");
    estate
        .lifeboat(&["apply", "--auto-approve"])
        .assert()
        .success();
    let done = estate.lifeboat(&["graph"]).output().expect("lifeboat runs");
    assert_eq!(mermaid_edges(&stdout(&done)), 0, "{}", stdout(&done));
    let onward = estate
        .lifeboat(&["graph", "--goal", "protected"])
        .output()
        .expect("lifeboat runs");
    let text = stdout(&onward);
    assert!(text.contains("failback machine.web-01"), "{text}");
    assert!(mermaid_edges(&text) > 0, "{text}");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let run = |args: &[&str]| {
        assert_cmd::Command::cargo_bin("lifeboat")
            .expect("the binary is built")
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("lifeboat runs")
    };
    let generated = run(&[
        "sim",
        "generate",
        "--machines",
        "150",
        "--groups",
        "10",
        "--master-targets",
        "12",
    ]);
    assert!(generated.status.success(), "{}", stderr(&generated));
    let dot = stdout(&run(&["graph", "--goal", "protected", "--format", "dot"]));
    let full_edges = dot.lines().filter(|l| l.contains(" -> ")).count();
    assert!(
        full_edges > 500,
        "the estate is large enough: {full_edges} edges"
    );
    let graph = run(&["graph", "--goal", "protected"]);
    let mermaid = stdout(&graph);
    assert!(
        mermaid_edges(&mermaid) <= 500,
        "{} edges",
        mermaid_edges(&mermaid)
    );
    assert!(mermaid.starts_with("%% the graph has"), "{mermaid}");
    assert!(
        stderr(&graph).contains("drawn collapsed"),
        "{}",
        stderr(&graph)
    );
    assert!(mermaid.contains("reprotect group."), "{mermaid}");
}

/// Finding 12: a delay the simulator cannot show at `timing.scale: 0` is warned about.
#[test]
fn a_delay_that_cannot_show_at_scale_zero_is_warned_about() {
    let estate = Estate::new("reprotected", "");
    let quiet = estate.plan();
    assert!(
        !stderr(&quiet).contains("agent_registers_in_s"),
        "{}",
        stderr(&quiet)
    );
    estate.edit(|world| {
        world
            .machines
            .get_mut("web-01")
            .expect("web-01 is in the world")
            .agent_registers_in_s = 900;
    });
    let warned = estate.plan();
    assert!(
        stderr(&warned)
            .contains("`agent_registers_in_s` of `web-01` has no effect at `timing.scale: 0`"),
        "{}",
        stderr(&warned)
    );
    estate.edit(|world| world.timing.scale = 0.001);
    let scaled = estate.plan();
    assert!(
        !stderr(&scaled).contains("has no effect"),
        "{}",
        stderr(&scaled)
    );
}

/// Finding 13: the documentation points only at files in the repository or public pages:
/// no `DESIGN.md`, no `shared/seed`, and every relative link resolves.
#[test]
fn documentation_references_stay_in_the_repository_or_public() {
    let root = crate::util::repo_root();
    let mut docs = vec![root.join("README.md"), root.join("BENCHMARKS.md")];
    docs.extend(
        std::fs::read_dir(root.join("docs"))
            .expect("docs/")
            .map(|e| e.expect("an entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "md")),
    );
    for doc in docs {
        let text = std::fs::read_to_string(&doc).expect("readable");
        for private in ["DESIGN.md", "shared/seed"] {
            assert!(
                !text.contains(private),
                "{} cites `{private}`",
                doc.display()
            );
        }
        // Markdown links `](target)`: relative ones must exist.
        for (i, _) in text.match_indices("](") {
            let target = text[i + 2..].split(')').next().expect("a link target");
            let path = target.split('#').next().expect("a path");
            if path.is_empty() || path.contains("://") {
                continue;
            }
            let resolved = doc.parent().expect("a folder").join(path);
            assert!(
                resolved.exists(),
                "{} links to `{target}`, which does not exist",
                doc.display()
            );
        }
    }
}
