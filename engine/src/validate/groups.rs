//! Replication groups (DESIGN.md §1.1 rules 1 and 2): one group per machine, one OS per
//! group, one master target per group, and a master target of the machines' OS.

use super::{Membership, PlanIndex, single_membership};
use crate::diagnostic::{Diagnostic, codes};
use crate::model::Plan;
use crate::span::Span;

/// At most this many members are labelled in one diagnostic; a group of 500 mixed machines
/// needs one diagnostic a reviewer can read, not 500 labels.
const MAX_MEMBER_LABELS: usize = 8;

/// Checks the groups and returns, for each group, the master target the plan fixes for it:
/// the group's own `master_target`, or failing that the one its members name.
pub(super) fn check(
    plan: &Plan,
    index: &PlanIndex<'_>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Option<usize>> {
    multiple_groups(plan, index, out);

    let mut targets = Vec::with_capacity(plan.replication_groups.len());
    for (g, (group_name, group)) in plan.replication_groups.iter().enumerate() {
        // Members this group owns: a machine listed in two groups is judged with its first.
        let members: Vec<usize> = group
            .machines
            .value
            .iter()
            .filter_map(|member| index.machine(&member.value))
            .filter(|&m| index.group_of[m] == Some(g))
            .collect();

        let machine = |m: usize| plan.machines.get_index(m);

        if let Some(&first) = members.first() {
            let (first_name, first_machine) = machine(first);
            let os = first_machine.os.value;
            let differing: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| machine(m).1.os.value != os)
                .collect();
            if !differing.is_empty() {
                let mut diagnostic = Diagnostic::error(
                    codes::GROUP_MIXED_OS,
                    format!(
                        "replication group `{}` mixes linux and windows machines",
                        group_name.value
                    ),
                )
                .with_label(group_name.span, "members of this group must share one OS")
                .with_label(
                    first_machine.os.span,
                    format!("`{}` runs {os}", first_name.value),
                );
                for &m in differing.iter().take(MAX_MEMBER_LABELS) {
                    let (name, member) = machine(m);
                    diagnostic = diagnostic.with_label(
                        member.os.span,
                        format!("`{}` runs {}", name.value, member.os.value),
                    );
                }
                out.push(diagnostic.with_help(format!(
                    "multi-VM consistency needs one OS per group (and a master target of that OS); move the {} machines into a group of their own",
                    machine(differing[0]).1.os.value
                )));
            }
        }

        // The target the plan fixes: the group's own, else the first one a member names.
        let mut fixed: Option<(usize, Span, String)> =
            group.master_target.as_ref().and_then(|mt| {
                index
                    .master_target(&mt.value)
                    .map(|i| (i, mt.span, mt.value.clone()))
            });
        for &m in &members {
            let (name, member) = machine(m);
            let Some(own) = &member.master_target else {
                continue;
            };
            let Some(own_index) = index.master_target(&own.value) else {
                continue;
            };
            match &fixed {
                None => fixed = Some((own_index, own.span, own.value.clone())),
                Some((fixed_index, fixed_span, fixed_name)) if *fixed_index != own_index => out.push(
                    Diagnostic::error(
                        codes::GROUP_CONFLICTING_MASTER_TARGET,
                        format!(
                            "machine `{}` names master target `{}`, but its replication group `{}` uses `{fixed_name}`",
                            name.value, own.value, group_name.value
                        ),
                    )
                    .with_label(own.span, format!("`{}` names `{}`", name.value, own.value))
                    .with_label(*fixed_span, format!("group `{}` uses `{fixed_name}`", group_name.value))
                    .with_help(format!(
                        "all members of a replication group share one master target; remove `master_target` from `{}` or set it to `{fixed_name}`",
                        name.value
                    )),
                ),
                Some(_) => {}
            }
        }

        if let Some((mt, span, mt_name)) = &fixed {
            let target_os = plan.master_targets.get_index(*mt).1.os.value;
            let wrong: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&m| machine(m).1.os.value != target_os)
                .collect();
            if let Some(&first_wrong) = wrong.first() {
                let (name, member) = machine(first_wrong);
                out.push(
                    Diagnostic::error(
                        codes::GROUP_MASTER_TARGET_OS,
                        format!(
                            "master target `{mt_name}` runs {target_os}, but replication group `{}` has {} machines",
                            group_name.value, member.os.value
                        ),
                    )
                    .with_label(*span, format!("`{mt_name}` runs {target_os}"))
                    .with_label(member.os.span, format!("`{}` runs {}", name.value, member.os.value))
                    .with_help(format!(
                        "a {} machine needs a {} master target; choose one with `os: {}`",
                        member.os.value, member.os.value, member.os.value
                    )),
                );
            }
        }
        targets.push(fixed.map(|(mt, _, _)| mt));
    }

    // Machines outside any group may name their own master target; it must run their OS.
    for (m, (name, machine)) in plan.machines.iter().enumerate() {
        if index.group_of[m].is_some() {
            continue;
        }
        let Some(own) = &machine.master_target else {
            continue;
        };
        let Some(mt) = index.master_target(&own.value) else {
            continue;
        };
        let target_os = plan.master_targets.get_index(mt).1.os.value;
        if target_os != machine.os.value {
            out.push(
                Diagnostic::error(
                    codes::GROUP_MASTER_TARGET_OS,
                    format!(
                        "master target `{}` runs {target_os}, but machine `{}` runs {}",
                        own.value, name.value, machine.os.value
                    ),
                )
                .with_label(own.span, format!("`{}` runs {target_os}", own.value))
                .with_label(
                    machine.os.span,
                    format!("`{}` runs {}", name.value, machine.os.value),
                )
                .with_help(format!(
                    "a {os} machine needs a {os} master target; choose one with `os: {os}`",
                    os = machine.os.value
                )),
            );
        }
    }
    targets
}

fn multiple_groups(plan: &Plan, index: &PlanIndex<'_>, out: &mut Vec<Diagnostic>) {
    let groups = plan
        .replication_groups
        .iter()
        .map(|(name, group)| (name.value.as_str(), group.machines.value.as_slice()));
    let membership = Membership {
        code: codes::GROUP_MULTIPLE_GROUPS,
        kind: "replication groups",
        help: "a machine can belong to one replication group only; remove it from one of them",
    };
    single_membership(index, groups, &membership, out);
}
