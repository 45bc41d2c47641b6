//! Estate scale (DESIGN.md §9, issue "Performance at estate scale"): `validate` and `plan` of
//! generated estates of 1,000, 10,000 and 100,000 machines, run as a user runs them (the real
//! binary, a fresh process each time, so nothing is cached), with wall time and peak memory.
//!
//! It fails when growth from 10,000 to 100,000 machines is worse than about linear: ten times
//! the machines may cost at most `MAX_GROWTH` times the time and the memory. The absolute bars
//! (10,000 machines in under 300 ms and 150 MB) depend on the machine, so they are printed
//! with the figures rather than asserted; BENCHMARKS.md records them with the machine.
//!
//! Then `apply` of generated estates of 1,000, 4,000 and 10,000 machines to `committed`
//! (three operations per machine) on the instant simulator (`timing.scale: 0`, so every
//! second is lifeboat's own bookkeeping: planning, the state journal, the per-operation
//! preflight re-check, the simulator's world journal), one fresh process each. It fails when
//! four times the machines cost more than `MAX_APPLY_GROWTH` times the time (linear is 4;
//! the quadratic bookkeeping this guards against gave ×19).
//!
//! Run with `cargo bench --bench scale` (`cargo bench --bench scale apply` for the apply part
//! only, `… plan` for the rest). Peak memory is the child's maximum resident set size, from
//! GNU time (`/usr/bin/time`); without it only times are reported.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat_provider_sim::store;

const LIFEBOAT: &str = env!("CARGO_BIN_EXE_lifeboat");
/// Ten times the machines: linear would be 10. Slack for caches and allocator effects.
const MAX_GROWTH: f64 = 13.0;
/// Runs per measurement; the fastest is kept (the others measure the machine's noise).
const RUNS: usize = 5;
/// Four times the machines: linear would be 4.
const MAX_APPLY_GROWTH: f64 = 5.0;
/// `apply --parallelism` in the apply part. Every operation waits for three flushes to disk
/// (the state's write-ahead record, the simulator's record, the state's outcome); at the
/// default of 10 in flight the disk's flush latency, not lifeboat's bookkeeping, bounds an
/// instant simulator (BENCHMARKS.md has both figures).
const APPLY_PARALLELISM: &str = "100";

#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: Duration,
    peak_mb: Option<f64>,
    /// User plus system CPU time of the child, from GNU time.
    cpu: Option<Duration>,
}

fn run(dir: &Path, args: &[&str]) -> Measured {
    run_times(dir, args, RUNS)
}

fn run_times(dir: &Path, args: &[&str], runs: usize) -> Measured {
    let time = Path::new("/usr/bin/time");
    let mut best: Option<Measured> = None;
    for _ in 0..runs {
        let mut command = if time.is_file() {
            let mut c = Command::new(time);
            c.args(["-f", "%U %S %M"]).arg(LIFEBOAT);
            c
        } else {
            Command::new(LIFEBOAT)
        };
        let started = Instant::now();
        let output = command
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .output()
            .expect("lifeboat runs");
        let wall = started.elapsed();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "lifeboat {args:?} failed:\n{stderr}"
        );
        let figures: Vec<f64> = stderr
            .lines()
            .last()
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|f| f.parse::<f64>().ok())
                    .collect()
            })
            .unwrap_or_default();
        let (cpu, peak_mb) = match figures[..] {
            [user, system, kb] => (
                Some(Duration::from_secs_f64(user + system)),
                Some(kb / 1024.0),
            ),
            _ => (None, None),
        };
        // The fastest wall time, and the largest peak: memory does not get noisier with load.
        best = Some(match best {
            Some(b) => Measured {
                wall: b.wall.min(wall),
                peak_mb: match (b.peak_mb, peak_mb) {
                    (Some(x), Some(y)) => Some(x.max(y)),
                    (x, y) => x.or(y),
                },
                cpu: match (b.cpu, cpu) {
                    (Some(x), Some(y)) => Some(x.min(y)),
                    (x, y) => x.or(y),
                },
            },
            None => Measured { wall, peak_mb, cpu },
        });
    }
    best.expect("at least one run")
}

fn generate(dir: &Path, machines: usize) {
    // 480 master targets per 10,000 machines: enough for every disk at ASR's 60 per target
    // (DESIGN.md §9's 40 cannot hold them; BENCHMARKS.md explains).
    let status = Command::new(LIFEBOAT)
        .args(["sim", "generate", "--force"])
        .args(["--machines", &machines.to_string()])
        .args(["--groups", &(machines / 10).to_string()])
        .args(["--master-targets", &(machines * 48 / 1000).to_string()])
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("lifeboat runs");
    assert!(status.success(), "sim generate failed");
}

fn show(m: Measured) -> String {
    match m.peak_mb {
        Some(mb) => format!("{:>8.0} ms {:>7.0} MB", m.wall.as_secs_f64() * 1e3, mb),
        None => format!("{:>8.0} ms       — MB", m.wall.as_secs_f64() * 1e3),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that is not this bench, or a part of
    // it, skips it.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |part: &str| {
        filters.is_empty()
            || filters
                .iter()
                .any(|f| "scale".contains(f.as_str()) || part.contains(f.as_str()))
    };
    if wants("plan") {
        plan_part();
    }
    if wants("apply") {
        apply_part();
    }
}

/// Generates an estate of `machines` whose goal is `committed`, inside an open maintenance
/// window, on the instant simulator.
fn generate_for_apply(dir: &Path, machines: usize) {
    generate(dir, machines);
    let plan_path = dir.join("lifeboat.yaml");
    let text = std::fs::read_to_string(&plan_path)
        .expect("the generated plan")
        .replace(
            "name: generated-estate",
            "name: generated-estate\ngoal: committed",
        )
        .replace("2026-12-05T22:00:00Z", "2020-01-01T00:00:00Z")
        .replace("2026-12-06T04:00:00Z", "2099-01-01T00:00:00Z");
    std::fs::write(&plan_path, text).expect("write the plan");
    let world_path = dir.join(".lifeboat/world.yaml");
    let mut world = store::read(&world_path).expect("the generated world");
    world.timing.scale = 0.0;
    store::write(&world_path, &world).expect("write the world");
    let _ = std::fs::remove_file(dir.join(".lifeboat/state.json"));
}

fn apply_part() {
    println!(
        "apply to `committed` on the instant simulator (3 operations per machine, --parallelism {APPLY_PARALLELISM}), one fresh process each"
    );
    println!(
        "{:>9}  {:>22}  {:>14}",
        "machines", "apply", "per operation"
    );
    let mut rows = Vec::new();
    for machines in [1_000, 4_000, 10_000] {
        let dir = tempfile::tempdir().expect("a temporary directory");
        generate_for_apply(dir.path(), machines);
        let apply = run_times(
            dir.path(),
            &[
                "apply",
                "--auto-approve",
                "--parallelism",
                APPLY_PARALLELISM,
            ],
            1,
        );
        // Every machine reached the goal: a fresh plan has nothing left to do.
        let status = Command::new(LIFEBOAT)
            .args(["plan", "--detailed-exitcode"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("lifeboat runs");
        assert_eq!(
            status.code(),
            Some(0),
            "{machines} machines: apply left work"
        );
        let per_op = apply.wall.as_secs_f64() * 1e3 / (3 * machines) as f64;
        let cpu = apply
            .cpu
            .map_or_else(|| "—".to_string(), |c| format!("{:.2} s", c.as_secs_f64()));
        println!(
            "{machines:>9}  {}  {cpu:>10}  {per_op:>11.2} ms",
            show(apply)
        );
        rows.push((machines, apply));
    }
    for pair in rows.windows(2) {
        let ((a, ta), (b, tb)) = (pair[0], pair[1]);
        let growth = tb.wall.as_secs_f64() / ta.wall.as_secs_f64();
        let machines = b as f64 / a as f64;
        // ×5 for ×4 machines, in proportion for other ratios.
        let allowed = MAX_APPLY_GROWTH * machines / 4.0;
        println!(
            "apply, {a} → {b} machines (×{machines:.1}): time ×{growth:.2} (×{allowed:.2} allowed)"
        );
        assert!(
            growth <= allowed,
            "apply time grows ×{growth:.2} from {a} to {b} machines, worse than linear (×{allowed:.2} allowed)"
        );
    }
    let (_, ten) = rows[2];
    let bar = if ten.wall < Duration::from_secs(20) {
        "met"
    } else {
        "MISSED"
    };
    println!("bar, 10,000 machines to `committed` under 20 s: {bar}");
}

fn plan_part() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut rows = Vec::new();
    println!("estate scale: best of {RUNS} fresh processes");
    println!(
        "{:>9}  {:>22}  {:>22}",
        "machines", "validate", "plan --format json"
    );
    for machines in [1_000, 10_000, 100_000] {
        generate(dir.path(), machines);
        let validate = run(dir.path(), &["validate"]);
        let plan = run(dir.path(), &["plan", "--format", "json"]);
        println!("{machines:>9}  {}  {}", show(validate), show(plan));
        rows.push((machines, validate, plan));
    }
    let (_, _, ten) = rows[1];
    let (_, _, hundred) = rows[2];
    let time_growth = hundred.wall.as_secs_f64() / ten.wall.as_secs_f64();
    println!("plan, 10k → 100k: time ×{time_growth:.1}");
    let bar = if ten.wall < Duration::from_millis(300) {
        "met"
    } else {
        "MISSED"
    };
    println!("DESIGN.md §9 bar, 10k plan under 300 ms: {bar}");
    assert!(
        time_growth <= MAX_GROWTH,
        "plan time grows ×{time_growth:.1} from 10k to 100k machines, worse than linear (×{MAX_GROWTH} allowed)"
    );
    if let (Some(a), Some(b)) = (ten.peak_mb, hundred.peak_mb) {
        let memory_growth = b / a;
        println!("plan, 10k → 100k: memory ×{memory_growth:.1}");
        let bar = if a < 150.0 { "met" } else { "MISSED" };
        println!("DESIGN.md §9 bar, 10k plan under 150 MB: {bar}");
        assert!(
            memory_growth <= MAX_GROWTH,
            "plan memory grows ×{memory_growth:.1} from 10k to 100k machines, worse than linear (×{MAX_GROWTH} allowed)"
        );
    }
}
