//! Failback order: a machine in one boot group only, and no cycles through `depends_on` and
//! the boot order together.
//!
//! The order is a graph whose edges say "must finish before". Boot groups are chained through
//! one barrier node each (every member of group i → barrier i → every member of group i+1),
//! so the graph has O(machines + edges written in the file) edges, never machines². Cycles
//! are the strongly connected components with more than one node (or a self-loop): each is
//! reported once, naming every member and labelling every edge in it.

use std::collections::HashMap;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::{Membership, PlanIndex, join_names, single_membership};
use crate::diagnostic::{Diagnostic, codes};
use crate::model::Plan;
use crate::span::Span;

/// Why an edge exists, so a cycle can be explained edge by edge.
#[derive(Debug, Clone)]
struct Why {
    span: Span,
    message: String,
}

pub(super) fn check(plan: &Plan, index: &PlanIndex<'_>, out: &mut Vec<Diagnostic>) {
    // A machine listed in several boot groups is ordered by its first; the others are
    // reported as `boot-order::multiple-groups`, not again as a cycle.
    let first_group = multiple_boot_groups(plan, index, out);
    unordered(plan, &first_group, out);

    let machines = plan.machines.len();
    let groups = plan.boot_order.len();
    let mut graph: DiGraph<(), Option<Why>, u32> =
        DiGraph::with_capacity(machines + groups, machines * 2);
    for _ in 0..machines + groups {
        graph.add_node(());
    }
    let machine_node = NodeIndex::new;
    let barrier = |g: usize| NodeIndex::new(machines + g);

    for (m, (name, machine)) in plan.machines.iter().enumerate() {
        for dep in &machine.depends_on {
            if let Some(d) = index.machine(&dep.value) {
                let why = Why {
                    span: dep.span,
                    message: format!("`{}` depends on `{}`", name.value, dep.value),
                };
                graph.add_edge(machine_node(d), machine_node(m), Some(why));
            }
        }
    }
    for (g, group) in plan.boot_order.iter().enumerate() {
        for member in &group.machines.value {
            let Some(m) = index.machine(&member.value) else {
                continue;
            };
            if first_group.get(&m) != Some(&g) {
                continue;
            }
            let why = |message: String| {
                Some(Why {
                    span: member.span,
                    message,
                })
            };
            graph.add_edge(
                machine_node(m),
                barrier(g),
                why(format!(
                    "`{}` is in boot group `{}`",
                    member.value, group.name.value
                )),
            );
            if g > 0 {
                let previous = &plan.boot_order.value[g - 1].name.value;
                graph.add_edge(
                    barrier(g - 1),
                    machine_node(m),
                    why(format!(
                        "`{}` starts after boot group `{previous}`",
                        member.value
                    )),
                );
            }
        }
        if g > 0 {
            graph.add_edge(barrier(g - 1), barrier(g), None);
        }
    }

    for component in tarjan_scc(&graph) {
        let is_cycle = component.len() > 1 || graph.find_edge(component[0], component[0]).is_some();
        if is_cycle {
            out.push(cycle(plan, &graph, &component, machines));
        }
    }
}

fn cycle(
    plan: &Plan,
    graph: &DiGraph<(), Option<Why>, u32>,
    component: &[NodeIndex],
    machines: usize,
) -> Diagnostic {
    let mut members: Vec<usize> = component
        .iter()
        .map(|n| n.index())
        .filter(|&i| i < machines)
        .collect();
    members.sort_unstable();
    let names: Vec<&str> = members
        .iter()
        .map(|&m| plan.machines.get_index(m).0.value.as_str())
        .collect();
    let mut boot_groups: Vec<&str> = component
        .iter()
        .map(|n| n.index())
        .filter(|&i| i >= machines)
        .map(|i| plan.boot_order.value[i - machines].name.value.as_str())
        .collect();
    boot_groups.sort_unstable();

    let in_component: HashMap<NodeIndex, ()> = component.iter().map(|&n| (n, ())).collect();
    let mut labels: Vec<&Why> = component
        .iter()
        .flat_map(|&n| graph.edges(n))
        .filter(|edge| in_component.contains_key(&petgraph::visit::EdgeRef::target(edge)))
        .filter_map(|edge| edge.weight().as_ref())
        .collect();
    labels.sort_by_key(|why| why.span);
    labels.dedup_by_key(|why| why.span);

    let through = if boot_groups.is_empty() {
        String::new()
    } else {
        format!(" (through boot groups {})", join_names(&boot_groups))
    };
    let message = match names.as_slice() {
        [one] => format!("machine `{one}` depends on itself"),
        _ => format!(
            "the failback order has a cycle: {} wait for each other{through}",
            join_names(&names)
        ),
    };
    let mut diagnostic = Diagnostic::error(codes::BOOT_ORDER_CYCLE, message);
    for why in labels {
        diagnostic = diagnostic.with_label(why.span, why.message.clone());
    }
    diagnostic.with_help(
        "no machine in a cycle can ever start; remove one `depends_on` entry, or move a machine to an earlier boot group",
    )
}

/// Reports machines in several boot groups; returns each machine's first boot group.
fn multiple_boot_groups(
    plan: &Plan,
    index: &PlanIndex<'_>,
    out: &mut Vec<Diagnostic>,
) -> HashMap<usize, usize> {
    let groups = plan
        .boot_order
        .iter()
        .map(|group| (group.name.value.as_str(), group.machines.value.as_slice()));
    let membership = Membership {
        code: codes::BOOT_ORDER_MULTIPLE_GROUPS,
        kind: "boot groups",
        help: "a machine fails back in one boot group only; remove it from one of them",
    };
    single_membership(index, groups, &membership, out)
}

/// Machines named on one `boot-order::unordered` warning before the rest are only counted.
const MAX_UNORDERED_LABELS: usize = 6;

/// `boot-order::unordered`: a machine that will fail back (the goal is past `reprotected`)
/// but is in no boot group, when the plan has a boot order. Such a machine is not held back
/// by any group: it fails back as soon as it is reprotected (after its own `depends_on`),
/// alongside the first group, which surprises whoever wrote the order. One warning for all
/// of them, so a large estate gets one line, not thousands.
fn unordered(plan: &Plan, first_group: &HashMap<usize, usize>, out: &mut Vec<Diagnostic>) {
    let Some(first) = plan.boot_order.value.first() else {
        return;
    };
    if plan.goal() < crate::model::Goal::FailedBack {
        return;
    }
    let outside: Vec<usize> = (0..plan.machines.len())
        .filter(|m| !first_group.contains_key(m))
        .collect();
    if outside.is_empty() {
        return;
    }
    let names: Vec<&str> = outside
        .iter()
        .take(MAX_UNORDERED_LABELS)
        .map(|&m| plan.machines.get_index(m).0.value.as_str())
        .collect();
    let more = outside.len().saturating_sub(MAX_UNORDERED_LABELS);
    let listed = if more > 0 {
        format!("{} and {more} more", join_names(&names))
    } else {
        join_names(&names)
    };
    let (subject, verb) = if outside.len() == 1 {
        ("machine", "is")
    } else {
        ("machines", "are")
    };
    let mut diagnostic = Diagnostic::warning(
        codes::BOOT_ORDER_UNORDERED,
        format!(
            "{subject} {listed} will fail back but {verb} in no boot group: {} as soon as reprotected (after {} `depends_on`), alongside the first boot group `{}`, before any group's steps",
            if outside.len() == 1 {
                "it fails back"
            } else {
                "they fail back"
            },
            if outside.len() == 1 { "its" } else { "their" },
            first.name.value
        ),
    );
    for &m in outside.iter().take(MAX_UNORDERED_LABELS) {
        let (name, _) = plan.machines.get_index(m);
        diagnostic = diagnostic.with_label(name.span, "in no boot group");
    }
    out.push(diagnostic.with_help(
        "add it to the boot group it belongs with, or to a last group of its own to fail it back after the others",
    ));
}
