//! Wall-time measurements of the `lifeboat` binary, in a test binary of their own: cargo runs
//! test binaries one after another, so nothing else shares the machine while these measure
//! (inside the integration binary, 146 tests on two cores made a run 20% slower).

use std::collections::HashMap;

use lifeboat_provider_sim::World;

use crate::example::{Example, apply, events, world};

#[allow(dead_code)] // the helpers the integration tests use and these do not
#[path = "../integration/util.rs"]
mod util;

#[allow(dead_code)]
#[path = "../integration/example.rs"]
mod example;

fn slow(world: &mut World, scale: f64) {
    world.timing.scale = scale;
}

/// With simulated durations, apply takes within 10% of the critical path, the
/// physical limit of any schedule. Both are computed in this one run: the DAG from
/// `lifeboat graph --format dot`, each change's duration from the world's `timing`.
#[test]
fn apply_takes_within_ten_percent_of_the_critical_path() {
    let example = Example::open_window("committed");
    let scale = 0.002; // a reprotect takes 2.4 s, a failback 1.2 s, a commit 0.24 s
    example.edit(|world| slow(world, scale));
    let timing = world(&example).timing;
    let seconds = |label: &str| -> f64 {
        let simulated = match label.split(' ').next() {
            Some("reprotect") => timing.reprotect_s,
            Some("failback") => timing.failback_s,
            Some("commit") => timing.commit_s,
            Some("reprotect-home") => timing.reprotect_home_s,
            _ => 0, // checkpoints take no time
        };
        simulated as f64 * scale
    };

    let dot = example
        .lifeboat()
        .args(["graph", "--format", "dot"])
        .output()
        .expect("runs");
    let dot = String::from_utf8(dot.stdout).expect("UTF-8");
    let mut labels: HashMap<String, String> = HashMap::new();
    let mut edges: Vec<(String, String)> = Vec::new();
    for line in dot.lines().map(str::trim) {
        if let Some((from, to)) = line.trim_end_matches(';').split_once(" -> ") {
            edges.push((from.to_string(), to.to_string()));
        } else if let Some((node, rest)) = line.split_once(" [label=\"") {
            labels.insert(
                node.to_string(),
                rest.split('"').next().expect("a label").to_string(),
            );
        }
    }
    assert_eq!(
        labels.values().filter(|l| !l.contains("group")).count(),
        24,
        "{dot}"
    );
    // Longest path by relaxation in as many rounds as there are nodes (the graph is small).
    let mut finish: HashMap<&str, f64> = labels
        .iter()
        .map(|(n, l)| (n.as_str(), seconds(l)))
        .collect();
    for _ in 0..labels.len() {
        for (from, to) in &edges {
            let candidate = finish[from.as_str()] + seconds(&labels[to]);
            if candidate > finish[to.as_str()] {
                finish.insert(to.as_str(), candidate);
            }
        }
    }
    let critical_path = finish.values().copied().fold(0.0, f64::max);

    let (code, text) = apply(&example, &["--format", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let summary: serde_json::Value = events(&text)
        .into_iter()
        .find(|event| event["event"] == "summary")
        .expect("a summary event");
    let elapsed = summary["elapsed_ms"].as_f64().expect("elapsed_ms") / 1000.0;
    eprintln!("apply took {elapsed:.3}s; the critical path is {critical_path:.3}s");
    assert!(
        elapsed >= critical_path * 0.99,
        "faster than physically possible: {elapsed}s < {critical_path}s"
    );
    assert!(
        elapsed <= critical_path * 1.10,
        "apply took {elapsed:.2}s, more than 10% over the critical path of {critical_path:.2}s"
    );
}
