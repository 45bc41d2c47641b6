//! `plan` of generated estates against the simulated estate, in process: load + validate +
//! refresh (the sim reads its world) + preflight + the operation DAG. DESIGN.md §9: 10,000
//! machines in under 300 ms. Figures go to BENCHMARKS.md.
//!
//! Run with `cargo bench --bench plan`. Each iteration parses the plan and the world, as a
//! fresh process does; unlike the binary, it does not overlap the world's parse with
//! validation. The world is made once per size by the real
//! `lifeboat sim init`, so the bench measures exactly what a user's `plan` reads.

use std::hint::black_box;
use std::path::Path;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lifeboat_engine::generate::{EstateShape, plan_yaml};
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::provider::Provider;
use lifeboat_engine::{SourceFile, load, planner, preflight, validate};
use lifeboat_provider_sim::SimProvider;

fn estate(dir: &Path, shape: &EstateShape) {
    std::fs::write(dir.join("lifeboat.yaml"), plan_yaml(shape)).expect("write the plan");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["sim", "init"])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("lifeboat runs");
    assert!(status.success(), "sim init failed");
}

fn plan_once(dir: &Path, runtime: &tokio::runtime::Runtime) -> usize {
    let file = SourceFile::read(&dir.join("lifeboat.yaml")).expect("reads");
    let plan = load::load_plan(&file).expect("loads");
    let validation = validate::validate(&plan);
    assert!(!validation.has_errors());
    // Parse the world as a fresh process does: the provider's process-wide cache would
    // otherwise hand every iteration after the first the world already parsed.
    let world = dir.join(".lifeboat/world.yaml");
    black_box(lifeboat_provider_sim::store::read(&world).expect("parses"));
    let provider = SimProvider::open(&world).expect("opens");
    let facts = runtime
        .block_on(provider.refresh(&preflight::refresh_request(&plan)))
        .expect("refreshes");
    let diagnostics = preflight::preflight(
        &plan,
        &validation.assignment,
        &facts,
        Timestamp(jiff::Timestamp::now()),
    );
    let execution = planner::build(&plan, &validation, &facts, &[]).expect("no cycle");
    diagnostics.len() + execution.changes.len()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let bar = EstateShape::design_bar();
    let mut group = c.benchmark_group("plan");
    group.sample_size(10);
    for (name, shape) in [
        (
            "1k",
            EstateShape {
                machines: 1_000,
                groups: 100,
                master_targets: 48,
                ..bar
            },
        ),
        (
            "10k",
            EstateShape {
                master_targets: 480,
                ..bar
            },
        ),
        (
            "100k",
            EstateShape {
                machines: 100_000,
                groups: 10_000,
                master_targets: 4_800,
                ..bar
            },
        ),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        estate(dir.path(), &shape);
        group.throughput(Throughput::Elements(shape.machines as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), dir.path(), |b, dir| {
            b.iter(|| black_box(plan_once(dir, &runtime)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
