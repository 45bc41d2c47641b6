//! The operation DAG as Graphviz DOT or Mermaid (which GitHub renders in pull requests).
//!
//! Changes are boxes; checkpoints (a group reprotected, a boot group failed back) are rounded
//! and dashed, because they do nothing themselves and only join edges. Changes with downtime
//! or a full resync are drawn in red so a reviewer sees where the risk sits in the order.

use std::fmt::Write as _;

use lifeboat_engine::planner::{ExecutionPlan, Node};
use petgraph::visit::EdgeRef;

fn label(plan: &ExecutionPlan, node: &Node) -> (String, bool, bool) {
    match node {
        Node::Change(i) => {
            let change = &plan.changes[*i];
            let dangerous = change.risk.is_dangerous();
            (
                format!("{} {}", change.action, change.address),
                dangerous,
                false,
            )
        }
        Node::Checkpoint(label) => (label.clone(), false, true),
    }
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

pub fn mermaid(plan: &ExecutionPlan) -> String {
    let mut out = String::from("flowchart LR\n");
    for n in plan.graph.node_indices() {
        let (text, dangerous, checkpoint) = label(plan, &plan.graph[n]);
        // Mermaid has no escape for `"` inside a label; `#quot;` is its entity.
        let text = text.replace('"', "#quot;").replace('`', "");
        let (open, close) = if checkpoint { ("([", "])") } else { ("[", "]") };
        let class = if dangerous { ":::danger" } else { "" };
        let _ = writeln!(out, "  n{}{open}\"{text}\"{close}{class}", n.index());
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
