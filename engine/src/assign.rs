//! Master-target assignment (DESIGN.md §4 step 5).
//!
//! Every machine needs a master target. The plan may name one (for a replication group, or for
//! a machine outside any group); for the rest lifeboat chooses, deterministically, so the same
//! file always gives the same plan:
//!
//! 1. units are replication groups (all members on one target) and ungrouped machines;
//!    targets the plan names are counted first, then the other units in name order;
//! 2. a candidate runs the unit's OS and, where any does, sees every datastore the unit needs;
//! 3. it must have room: at most 60 disks per master target (ASR's limit);
//! 4. of those, the least loaded wins, ties by name.
//!
//! The cost is O(units × master targets): linear in machines for a fixed fleet of targets.
//!
//! The same pass reports `group::no-master-target`, `master-target::disk-limit` and
//! `master-target::datastore`, because all three are about the assignment's outcome.

use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Os, Plan};
use crate::span::{Span, Spanned};
use crate::validate::{PlanIndex, join_names};

/// ASR: a master target serves at most 60 disks.
pub const MAX_DISKS_PER_MASTER_TARGET: usize = 60;

/// References shown on a disk-limit diagnostic before the rest are summarised.
const MAX_REFERENCE_LABELS: usize = 6;

#[derive(Debug, Clone, Default)]
pub struct Assignment {
    /// For each machine, its master target; `None` when none could be found.
    pub machine_target: Vec<Option<usize>>,
    /// For each machine, whether lifeboat chose the target (the plan named none).
    pub chosen: Vec<bool>,
    /// Disks planned onto each master target.
    pub disks: Vec<usize>,
}

impl Assignment {
    /// The master target of machine `m`, by name.
    pub fn target_name<'p>(&self, plan: &'p Plan, m: usize) -> Option<&'p str> {
        self.machine_target[m].map(|t| plan.master_targets.get_index(t).0.value.as_str())
    }
}

enum Unit {
    Group(usize),
    Machine(usize),
}

pub(crate) fn assign(
    plan: &Plan,
    index: &PlanIndex<'_>,
    group_targets: &[Option<usize>],
    out: &mut Vec<Diagnostic>,
) -> Assignment {
    let machines = plan.machines.len();
    let mut assignment = Assignment {
        machine_target: vec![None; machines],
        chosen: vec![false; machines],
        disks: vec![0; plan.master_targets.len()],
    };
    // Where the plan names each target, for the disk-limit diagnostic.
    let mut references: Vec<Vec<Span>> = vec![Vec::new(); plan.master_targets.len()];

    let mut members: Vec<Vec<usize>> = vec![Vec::new(); plan.replication_groups.len()];
    for m in 0..machines {
        if let Some(g) = index.group_of[m] {
            members[g].push(m);
        }
    }

    let mut auto = Vec::new();
    for (g, group_members) in members.iter().enumerate() {
        match group_targets[g] {
            Some(mt) => {
                for &m in group_members {
                    assignment.machine_target[m] = Some(mt);
                    assignment.disks[mt] += plan.machines.get_index(m).1.disk_count();
                }
                if let Some(span) = plan
                    .replication_groups
                    .get_index(g)
                    .1
                    .master_target
                    .as_ref()
                    .map(|s| s.span)
                {
                    references[mt].push(span);
                } else if let Some(span) =
                    group_members.iter().find_map(|&m| own_target_span(plan, m))
                {
                    references[mt].push(span);
                }
            }
            None if !group_members.is_empty() => auto.push(Unit::Group(g)),
            None => {}
        }
    }
    for (m, (_, machine)) in plan.machines.iter().enumerate() {
        if index.group_of[m].is_some() {
            continue;
        }
        match &machine.master_target {
            Some(own) => {
                if let Some(mt) = index.master_target(&own.value) {
                    assignment.machine_target[m] = Some(mt);
                    assignment.disks[mt] += machine.disk_count();
                    references[mt].push(own.span);
                }
            }
            None => auto.push(Unit::Machine(m)),
        }
    }

    for (mt, (name, _)) in plan.master_targets.iter().enumerate() {
        if assignment.disks[mt] > MAX_DISKS_PER_MASTER_TARGET {
            out.push(disk_limit(name, assignment.disks[mt], &references[mt]));
        }
    }

    let unit_name = |unit: &Unit| match unit {
        Unit::Group(g) => plan.replication_groups.get_index(*g).0.value.as_str(),
        Unit::Machine(m) => plan.machines.get_index(*m).0.value.as_str(),
    };
    // Groups first (they are the hardest to place), each kind in name order.
    auto.sort_by_key(|unit| {
        (
            matches!(unit, Unit::Machine(_)),
            unit_name(unit).to_string(),
        )
    });

    for unit in &auto {
        let unit_members: &[usize] = match unit {
            Unit::Group(g) => &members[*g],
            Unit::Machine(m) => std::slice::from_ref(m),
        };
        let os = plan.machines.get_index(unit_members[0]).1.os.value;
        let need: usize = unit_members
            .iter()
            .map(|&m| plan.machines.get_index(m).1.disk_count())
            .sum();
        let mut datastores: Vec<&str> = unit_members
            .iter()
            .map(|&m| plan.machines.get_index(m).1.datastore.value.as_str())
            .collect();
        datastores.sort_unstable();
        datastores.dedup();

        match choose(plan, &assignment.disks, os, &datastores, need) {
            Ok(mt) => {
                assignment.disks[mt] += need;
                for &m in unit_members {
                    assignment.machine_target[m] = Some(mt);
                    assignment.chosen[m] = true;
                }
            }
            Err(reason) => out.push(no_master_target(plan, unit, os, need, &datastores, reason)),
        }
    }

    datastore_check(plan, &assignment, out);
    assignment
}

fn own_target_span(plan: &Plan, m: usize) -> Option<Span> {
    plan.machines
        .get_index(m)
        .1
        .master_target
        .as_ref()
        .map(|s| s.span)
}

enum NoTarget {
    NoneWithOs,
    TooManyDisks,
    AllFull,
}

fn choose(
    plan: &Plan,
    disks: &[usize],
    os: Os,
    datastores: &[&str],
    need: usize,
) -> Result<usize, NoTarget> {
    if need > MAX_DISKS_PER_MASTER_TARGET {
        return Err(NoTarget::TooManyDisks);
    }
    let same_os: Vec<usize> = plan
        .master_targets
        .iter()
        .enumerate()
        .filter(|(_, (_, t))| t.os.value == os)
        .map(|(i, _)| i)
        .collect();
    if same_os.is_empty() {
        return Err(NoTarget::NoneWithOs);
    }
    let sees_all = |mt: &usize| {
        let target = &plan.master_targets.get_index(*mt).1.value;
        datastores
            .iter()
            .all(|ds| target.datastores.iter().any(|d| d.value == *ds))
    };
    // Prefer targets that see the machines' datastores; if none does, still place the unit so
    // that `master-target::datastore` can say exactly which datastore is missing where.
    let seeing: Vec<usize> = same_os.iter().copied().filter(sees_all).collect();
    let candidates = if seeing.is_empty() { same_os } else { seeing };
    candidates
        .into_iter()
        .filter(|&mt| disks[mt] + need <= MAX_DISKS_PER_MASTER_TARGET)
        .min_by_key(|&mt| {
            (
                disks[mt],
                plan.master_targets.get_index(mt).0.value.as_str(),
            )
        })
        .ok_or(NoTarget::AllFull)
}

fn no_master_target(
    plan: &Plan,
    unit: &Unit,
    os: Os,
    need: usize,
    datastores: &[&str],
    reason: NoTarget,
) -> Diagnostic {
    let (what, span) = match unit {
        Unit::Group(g) => {
            let name = plan.replication_groups.get_index(*g).0;
            (format!("replication group `{}`", name.value), name.span)
        }
        Unit::Machine(m) => {
            let name = plan.machines.get_index(*m).0;
            (format!("machine `{}`", name.value), name.span)
        }
    };
    let (label, help) = match reason {
        NoTarget::NoneWithOs => (
            format!("no master target runs {os}"),
            format!("add a master target with `os: {os}`: a {os} machine needs a {os} master target"),
        ),
        NoTarget::TooManyDisks => (
            format!("needs {need} disks on one master target, more than {MAX_DISKS_PER_MASTER_TARGET}"),
            "members of a replication group share one master target, which serves at most 60 disks; split the group".to_string(),
        ),
        NoTarget::AllFull => (
            format!("every {os} master target is too full for {need} more disks"),
            format!(
                "add another {os} master target that sees {}; each serves at most {MAX_DISKS_PER_MASTER_TARGET} disks",
                join_names(datastores)
            ),
        ),
    };
    Diagnostic::error(
        codes::GROUP_NO_MASTER_TARGET,
        format!("no master target can serve {what}"),
    )
    .with_label(span, label)
    .with_help(help)
}

fn disk_limit(name: &Spanned<String>, disks: usize, references: &[Span]) -> Diagnostic {
    let mut diagnostic = Diagnostic::error(
        codes::MASTER_TARGET_DISK_LIMIT,
        format!(
            "master target `{}` would serve {disks} disks, more than {MAX_DISKS_PER_MASTER_TARGET}",
            name.value
        ),
    )
    .with_label(
        name.span,
        format!("{disks} disks planned onto this master target"),
    );
    for span in references.iter().take(MAX_REFERENCE_LABELS) {
        diagnostic = diagnostic.with_label(*span, "assigned here");
    }
    let more = references.len().saturating_sub(MAX_REFERENCE_LABELS);
    let extra = if more > 0 {
        format!(" ({more} more references not shown)")
    } else {
        String::new()
    };
    diagnostic.with_help(format!(
        "a master target serves at most {MAX_DISKS_PER_MASTER_TARGET} disks; move some machines to another master target, or omit `master_target` and let lifeboat assign one{extra}"
    ))
}

fn datastore_check(plan: &Plan, assignment: &Assignment, out: &mut Vec<Diagnostic>) {
    for (m, (name, machine)) in plan.machines.iter().enumerate() {
        let Some(mt) = assignment.machine_target[m] else {
            continue;
        };
        let (target_name, target) = plan.master_targets.get_index(mt);
        let ds = &machine.datastore.value;
        if target.datastores.iter().any(|d| &d.value == ds) {
            continue;
        }
        let how = if assignment.chosen[m] {
            " (assigned by lifeboat)"
        } else {
            ""
        };
        let mut diagnostic = Diagnostic::error(
            codes::MASTER_TARGET_DATASTORE,
            format!(
                "datastore `{ds}` of machine `{}` is not a datastore of its master target `{}`{how}",
                name.value, target_name.value
            ),
        )
        .with_label(machine.datastore.span, format!("not among the datastores of `{}`", target_name.value));
        if let Some(own) = &machine.master_target {
            diagnostic = diagnostic.with_label(own.span, "master target named here");
        }
        let known: Vec<&str> = target.datastores.iter().map(|d| d.value.as_str()).collect();
        let alternative = if known.is_empty() {
            String::new()
        } else {
            format!(", or place the machine on {}", join_names(&known))
        };
        out.push(diagnostic.with_help(format!(
            "the machine's disks are recovered through the master target's ESXi host; add `{ds}` to `master_targets.{}.datastores` if that host mounts it{alternative}",
            target_name.value
        )));
    }
}
