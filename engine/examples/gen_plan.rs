//! Writes a generated plan to stdout: `cargo run -p lifeboat-engine --example gen_plan -- 10000 1000 40`.

use lifeboat_engine::generate::{EstateShape, plan_yaml};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let bar = EstateShape::design_bar();
    let shape = EstateShape {
        machines: args.first().copied().unwrap_or(bar.machines),
        groups: args.get(1).copied().unwrap_or(bar.groups),
        master_targets: args.get(2).copied().unwrap_or(bar.master_targets),
        ..bar
    };
    print!("{}", plan_yaml(&shape));
}
