//! Recovery time (DESIGN.md §9, issue "Performance at estate scale"): on a generated estate
//! whose operations take as long as their data needs, computed in one run:
//!
//! - the critical path of the operation DAG: the physical limit of any schedule;
//! - lifeboat's `apply`, measured;
//! - an ASR recovery plan's semantics: reprotect everything, then fail back each boot group
//!   once the previous one has finished, then commit;
//! - a sequential script: one operation after another.
//!
//! Run with `cargo bench --bench recovery_time`; it prints the figures and the ratios. It also
//! measures the simulator's own cost per operation (the same apply with durations at zero),
//! because at hundreds of operations that cost, not lifeboat's schedule, is what a wall-clock
//! comparison sees: the sim rewrites its whole world file at every start and end.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use lifeboat_engine::planner::{self, Action, ExecutionPlan, Node};
use lifeboat_engine::provider::{OperationKind, Provider};
use lifeboat_engine::{SourceFile, load, preflight, validate};
use lifeboat_provider_sim::{SimProvider, World, store};

const LIFEBOAT: &str = env!("CARGO_BIN_EXE_lifeboat");
/// Real seconds the critical path is scaled to: long enough that scheduling, not process
/// start-up, is what is measured.
const CRITICAL_PATH_REAL_S: f64 = 8.0;

fn lifeboat(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(LIFEBOAT)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("lifeboat runs")
}

/// Simulated seconds of one change, as the simulator will take them.
fn seconds(world: &World, plan: &ExecutionPlan, i: usize) -> f64 {
    let change = &plan.changes[i];
    let Some(kind) = change.action.operation() else {
        return 0.0;
    };
    let machine = &world.machines[change.machine()];
    machine
        .timing
        .seconds(kind)
        .unwrap_or_else(|| world.timing.seconds(kind)) as f64
}

fn critical_path(world: &World, plan: &ExecutionPlan) -> f64 {
    let graph = &plan.graph;
    let order = petgraph::algo::toposort(graph, None).expect("the plan is acyclic");
    let mut finish = vec![0.0_f64; graph.node_count()];
    for n in order {
        let own = match graph[n] {
            Node::Change(i) => seconds(world, plan, i),
            Node::Checkpoint(_) | Node::Step(_) => 0.0,
        };
        let start = graph
            .neighbors_directed(n, petgraph::Incoming)
            .map(|p| finish[p.index()])
            .fold(0.0, f64::max);
        finish[n.index()] = start + own;
    }
    finish.into_iter().fold(0.0, f64::max)
}

/// An ASR recovery plan: every reprotect at once, then boot group after boot group (machines
/// in no boot group last), then every commit at once. Dependencies inside a group are not
/// honoured by ASR; they only make lifeboat's job harder.
fn recovery_plan_semantics(
    world: &World,
    plan: &ExecutionPlan,
    boot_group_of: &HashMap<String, usize>,
    groups: usize,
) -> f64 {
    let phase = |action: Action| {
        (0..plan.changes.len())
            .filter(|&i| plan.changes[i].action == action)
            .map(|i| seconds(world, plan, i))
            .fold(0.0, f64::max)
    };
    let mut failback_groups = vec![0.0_f64; groups + 1];
    for (i, change) in plan.changes.iter().enumerate() {
        if change.action == Action::Failback {
            let group = boot_group_of
                .get(change.machine())
                .copied()
                .unwrap_or(groups);
            failback_groups[group] = failback_groups[group].max(seconds(world, plan, i));
        }
    }
    phase(Action::Reprotect) + failback_groups.iter().sum::<f64>() + phase(Action::Commit)
}

fn main() {
    // cargo passes `--bench`; a filter argument would not apply to this single measurement.
    let dir = tempfile::tempdir().expect("tempdir");
    let generated = lifeboat(
        dir.path(),
        &[
            "sim",
            "generate",
            "--machines",
            "300",
            "--groups",
            "30",
            "--master-targets",
            "24",
            "--boot-groups",
            "4",
            "--seed",
            "11",
            "--out",
            ".",
        ],
    );
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let plan_path = dir.path().join("lifeboat.yaml");
    let text = std::fs::read_to_string(&plan_path)
        .expect("plan")
        .replace(
            "name: generated-estate",
            "name: generated-estate\ngoal: committed",
        )
        .replace("2026-12-05T22:00:00Z", "2020-01-01T00:00:00Z")
        .replace("2026-12-06T04:00:00Z", "2099-01-01T00:00:00Z");
    std::fs::write(&plan_path, &text).expect("write the plan");

    let world_path = dir.path().join(".lifeboat/world.yaml");
    let file = SourceFile::new("lifeboat.yaml", &plan_path, text);
    let plan = load::load_plan(&file).expect("loads");
    let validation = validate::validate(&plan);
    assert!(!validation.has_errors(), "{:?}", validation.diagnostics);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let provider = SimProvider::open(&world_path).expect("opens");
    let facts = runtime
        .block_on(provider.refresh(&preflight::refresh_request(&plan)))
        .expect("refreshes");
    let execution = planner::build(&plan, &validation, &facts, &[]).expect("no cycle");
    let mut world = store::read(&world_path).expect("world");

    let boot_group_of: HashMap<String, usize> = plan
        .boot_order
        .iter()
        .enumerate()
        .flat_map(|(g, group)| {
            group
                .machines
                .value
                .iter()
                .map(move |m| (m.value.clone(), g))
        })
        .collect();
    let cp = critical_path(&world, &execution);
    let asr = recovery_plan_semantics(&world, &execution, &boot_group_of, plan.boot_order.len());
    let sequential: f64 = (0..execution.changes.len())
        .map(|i| seconds(&world, &execution, i))
        .sum();
    assert!(execution.changes.iter().all(|c| {
        c.action
            .operation()
            .is_some_and(|k| k != OperationKind::ReprotectHome)
    }));

    // First the simulator's own cost: the same apply with every duration at zero.
    let pristine = world.clone();
    world.timing.scale = 0.0;
    store::write(&world_path, &world).expect("write the world");
    let overhead_real = apply(dir.path());
    std::fs::remove_file(dir.path().join(".lifeboat/state.json")).expect("forget the state");

    let scale = CRITICAL_PATH_REAL_S / cp;
    let mut world = pristine;
    world.timing.scale = scale;
    store::write(&world_path, &world).expect("write the world");
    let lifeboat_s = apply(dir.path()) / scale;

    let hours = |s: f64| s / 3600.0;
    println!(
        "recovery time of {} changes on 300 machines (simulated hours; 1 Gbit/s link):",
        execution.changes.len()
    );
    println!("  critical path (lower bound)      {:>8.2} h", hours(cp));
    println!(
        "  lifeboat apply (measured)        {:>8.2} h   {:.3}× the critical path",
        hours(lifeboat_s),
        lifeboat_s / cp
    );
    println!(
        "  ASR recovery-plan semantics      {:>8.2} h   {:.2}× lifeboat",
        hours(asr),
        asr / lifeboat_s
    );
    println!(
        "  sequential script                {:>8.2} h   {:.1}× lifeboat",
        hours(sequential),
        sequential / lifeboat_s
    );
    println!(
        "  ASR / critical path {:.3}; sequential / critical path {:.1}",
        asr / cp,
        sequential / cp
    );
    println!(
        "  the simulator's own cost: {:.2} s real for the {} operations at zero duration ({:.1} ms each); the critical path was scaled to {CRITICAL_PATH_REAL_S} s real",
        overhead_real,
        execution.changes.len(),
        overhead_real * 1000.0 / execution.changes.len() as f64
    );
}

/// Runs `apply` and returns the executor's elapsed time in real seconds.
fn apply(dir: &Path) -> f64 {
    let applied = lifeboat(
        dir,
        &[
            "apply",
            "--auto-approve",
            "--parallelism",
            "10000",
            "--format",
            "json",
        ],
    );
    let stdout = String::from_utf8_lossy(&applied.stdout);
    assert!(
        applied.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    let summary: serde_json::Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "summary")
        .expect("a summary");
    summary["elapsed_ms"].as_f64().expect("elapsed") / 1000.0
}
