//! Load, and load + validate, of generated estates of 1,000, 10,000 and 100,000 machines
//! (DESIGN.md §9: 10,000 machines well under 300 ms; nothing quadratic).
//!
//! Run with `cargo bench -p lifeboat-engine --bench validate`. Figures go to BENCHMARKS.md;
//! peak memory per size comes from `cargo bench --bench scale` (fresh processes).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lifeboat_engine::generate::{EstateShape, plan_yaml};
use lifeboat_engine::{SourceFile, load, validate};

fn shapes() -> Vec<(&'static str, EstateShape)> {
    let bar = EstateShape::design_bar();
    vec![
        (
            "1k",
            EstateShape {
                machines: 1_000,
                groups: 100,
                master_targets: 40,
                ..bar
            },
        ),
        // DESIGN.md §9's shape: 40 master targets cannot hold 10,000 machines' disks at 60
        // each, so this run also measures reporting ~1,000 `group::no-master-target` errors.
        ("10k-design", bar),
        // The same estate with enough master targets to place every disk: a valid plan.
        (
            "10k-valid",
            EstateShape {
                master_targets: 480,
                ..bar
            },
        ),
        (
            "100k-valid",
            EstateShape {
                machines: 100_000,
                groups: 10_000,
                master_targets: 4_800,
                ..bar
            },
        ),
    ]
}

fn bench(c: &mut Criterion) {
    let files: Vec<_> = shapes()
        .into_iter()
        .map(|(name, shape)| {
            let text = plan_yaml(&shape);
            (
                name,
                shape.machines,
                SourceFile::new("bench.yaml", "bench.yaml", text),
            )
        })
        .collect();
    let mut group = c.benchmark_group("load");
    group.sample_size(10);
    for (name, machines, file) in &files {
        group.throughput(Throughput::Elements(*machines as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), file, |b, file| {
            b.iter(|| black_box(load::load_plan(file).expect("generated plans load")))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("load+validate");
    group.sample_size(10);
    for (name, machines, file) in &files {
        group.throughput(Throughput::Elements(*machines as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), file, |b, file| {
            b.iter(|| {
                let plan = load::load_plan(file).expect("generated plans load");
                black_box(validate::validate(&plan).diagnostics.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
