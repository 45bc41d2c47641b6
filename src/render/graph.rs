//! The operation DAG as Graphviz DOT or Mermaid (which GitHub renders in pull requests).
//!
//! Changes are boxes; checkpoints (a group reprotected, a boot group failed back) and steps
//! between boot groups (checks, commands, manual gates) are rounded and dashed, because they
//! send nothing to the provider. Changes with downtime
//! or a full resync, and commits (irreversible), are drawn in red so a reviewer sees where the
//! risk sits in the order.

use std::fmt::Write as _;

use std::collections::HashMap;

use lifeboat_engine::Plan;
use lifeboat_engine::planner::{Action, ExecutionPlan, Node};
use petgraph::visit::EdgeRef;

fn label(plan: &ExecutionPlan, node: &Node) -> (String, bool, bool) {
    match node {
        Node::Change(i) => {
            let change = &plan.changes[*i];
            // Red as in the plan: risky, or irreversible (a commit removes the Azure replica).
            let dangerous = change.risk.is_dangerous() || change.action == Action::Commit;
            (
                format!("{} {}", change.action, change.address),
                dangerous,
                false,
            )
        }
        Node::Checkpoint(label) => (label.clone(), false, true),
        // A step is drawn like a checkpoint (it sends nothing to the provider), named by
        // what it does.
        Node::Step(i) => (step_label(&plan.steps[*i]), false, true),
    }
}

/// `after[1] boot_group.db: tcp db-01:1433`.
fn step_label(step: &lifeboat_engine::planner::PlannedStep) -> String {
    format!("{}: {}", step.id, step.action.describe())
}

pub fn dot(plan: &ExecutionPlan) -> String {
    let mut out = String::from(
        "digraph lifeboat {\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];\n",
    );
    for n in plan.graph.node_indices() {
        let (text, dangerous, checkpoint) = label(plan, &plan.graph[n]);
        let style = match (dangerous, checkpoint) {
            (_, true) => ", shape=box, style=\"rounded,dashed\"",
            (true, false) => ", color=red, fontcolor=red",
            (false, false) => "",
        };
        let _ = writeln!(
            out,
            "  n{} [label=\"{}\"{style}];",
            n.index(),
            text.replace('\\', "\\\\").replace('"', "\\\"")
        );
    }
    for edge in plan.graph.edge_references() {
        let _ = writeln!(
            out,
            "  n{} -> n{};",
            edge.source().index(),
            edge.target().index()
        );
    }
    out.push_str("}\n");
    out
}

/// GitHub's Mermaid refuses a diagram with more edges than this (`maxEdges`).
pub const MERMAID_MAX_EDGES: usize = 500;

/// The DAG as Mermaid. Over [`MERMAID_MAX_EDGES`] edges GitHub shows an error instead of a
/// diagram, so a larger DAG is drawn collapsed: one box per action and group (the replication
/// group for reprotects, the boot group for the failback and after), with the number of
/// machines in it; the second value is then a note saying so.
pub fn mermaid(plan: &ExecutionPlan, file: &Plan) -> (String, Option<String>) {
    let edges = plan.graph.edge_count();
    if edges <= MERMAID_MAX_EDGES {
        return (mermaid_full(plan), None);
    }
    let (text, collapsed_edges) = mermaid_collapsed(plan, file);
    let note = format!(
        "the graph has {edges} edges, over Mermaid's limit of {MERMAID_MAX_EDGES}; it is drawn collapsed to replication and boot groups ({collapsed_edges} edges); `--format dot` draws every change"
    );
    (format!("%% {note}\n{text}"), Some(note))
}

fn mermaid_full(plan: &ExecutionPlan) -> String {
    let mut out = String::from("flowchart LR\n");
    for n in plan.graph.node_indices() {
        let (text, dangerous, checkpoint) = label(plan, &plan.graph[n]);
        let _ = writeln!(
            out,
            "  n{}{}",
            n.index(),
            mermaid_node(&text, dangerous, checkpoint)
        );
    }
    for edge in plan.graph.edge_references() {
        let _ = writeln!(
            out,
            "  n{} --> n{}",
            edge.source().index(),
            edge.target().index()
        );
    }
    out.push_str("  classDef danger stroke:#d00,color:#d00\n");
    out
}

fn mermaid_node(text: &str, dangerous: bool, checkpoint: bool) -> String {
    // Mermaid has no escape for `"` inside a label; `#quot;` is its entity.
    let text = text.replace('"', "#quot;").replace('`', "");
    let (open, close) = if checkpoint { ("([", "])") } else { ("[", "]") };
    let class = if dangerous { ":::danger" } else { "" };
    format!("{open}\"{text}\"{close}{class}")
}

/// One node per checkpoint and per (action, group) of changes; edges between them once.
fn mermaid_collapsed(plan: &ExecutionPlan, file: &Plan) -> (String, usize) {
    let mut replication_group: HashMap<&str, &str> = HashMap::new();
    for (name, group) in file.replication_groups.iter() {
        for machine in group.machines.iter() {
            replication_group.insert(&machine.value, &name.value);
        }
    }
    let mut boot_group: HashMap<&str, &str> = HashMap::new();
    for group in file.boot_order.iter() {
        for machine in group.machines.iter() {
            boot_group.insert(&machine.value, &group.name.value);
        }
    }
    // Each node of the DAG goes to a cluster: (label, dangerous, checkpoint, machines).
    let mut clusters: Vec<(String, bool, bool, usize)> = Vec::new();
    let mut by_label: HashMap<String, usize> = HashMap::new();
    let mut cluster_of = vec![0; plan.graph.node_count()];
    for n in plan.graph.node_indices() {
        let (key, dangerous, checkpoint) = match &plan.graph[n] {
            Node::Checkpoint(label) => (label.clone(), false, true),
            Node::Step(i) => (step_label(&plan.steps[*i]), false, true),
            Node::Change(i) => {
                let change = &plan.changes[*i];
                let machine = change.machine();
                let early = matches!(
                    change.action,
                    Action::Reprotect | Action::SwitchProcessServer
                );
                let (first, second) = if early {
                    (
                        replication_group.get(machine).map(|g| format!("group.{g}")),
                        boot_group.get(machine).map(|g| format!("boot_group.{g}")),
                    )
                } else {
                    (
                        boot_group.get(machine).map(|g| format!("boot_group.{g}")),
                        replication_group.get(machine).map(|g| format!("group.{g}")),
                    )
                };
                let group = first
                    .or(second)
                    .unwrap_or_else(|| "ungrouped machines".to_string());
                let dangerous = change.risk.is_dangerous() || change.action == Action::Commit;
                (format!("{} {group}", change.action), dangerous, false)
            }
        };
        let cluster = *by_label.entry(key.clone()).or_insert_with(|| {
            clusters.push((key, false, checkpoint, 0));
            clusters.len() - 1
        });
        clusters[cluster].1 |= dangerous;
        if !checkpoint {
            clusters[cluster].3 += 1;
        }
        cluster_of[n.index()] = cluster;
    }
    let mut edges: Vec<(usize, usize)> = plan
        .graph
        .edge_references()
        .map(|e| {
            (
                cluster_of[e.source().index()],
                cluster_of[e.target().index()],
            )
        })
        .filter(|(a, b)| a != b)
        .collect();
    edges.sort_unstable();
    edges.dedup();
    let mut out = String::from("flowchart LR\n");
    for (i, (label, dangerous, checkpoint, machines)) in clusters.iter().enumerate() {
        let text = if *checkpoint {
            label.clone()
        } else {
            format!(
                "{label} ({machines} {})",
                if *machines == 1 {
                    "machine"
                } else {
                    "machines"
                }
            )
        };
        let _ = writeln!(
            out,
            "  c{i}{}",
            mermaid_node(&text, *dangerous, *checkpoint)
        );
    }
    for (a, b) in &edges {
        let _ = writeln!(out, "  c{a} --> c{b}");
    }
    out.push_str("  classDef danger stroke:#d00,color:#d00\n");
    (out, edges.len())
}
