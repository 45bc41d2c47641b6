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
//! The cost is O(units × (classes + log targets)), where a class is a set of interchangeable
//! targets (same OS, same datastores): linear in machines, see [`TargetClasses`].
//!
//! The same pass reports `group::no-master-target`, `master-target::disk-limit` and
//! `master-target::datastore`, because all three are about the assignment's outcome.

use std::collections::{BTreeSet, HashMap};

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

#[derive(Clone, Copy)]
enum Unit {
    Group(usize),
    Machine(usize),
}

/// A unit's disks on a master target, and whether the plan put them there.
#[derive(Clone, Copy)]
struct Fill {
    unit: Unit,
    disks: usize,
    pinned: bool,
}

impl Fill {
    fn chosen(unit: &Unit, disks: usize) -> Self {
        Self {
            unit: *unit,
            disks,
            pinned: false,
        }
    }
}

pub(crate) fn assign(
    plan: &Plan,
    index: &PlanIndex<'_>,
    group_targets: &[Option<usize>],
    current: &HashMap<&str, &str>,
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
    // What fills each target, for the diagnostic of units that find every target full.
    let mut fills: Vec<Vec<Fill>> = vec![Vec::new(); plan.master_targets.len()];

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
                let before = assignment.disks[mt];
                for &m in group_members {
                    assignment.machine_target[m] = Some(mt);
                    assignment.disks[mt] += plan.machines.get_index(m).1.disk_count();
                }
                fills[mt].push(Fill {
                    unit: Unit::Group(g),
                    disks: assignment.disks[mt] - before,
                    pinned: true,
                });
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
                    fills[mt].push(Fill {
                        unit: Unit::Machine(m),
                        disks: machine.disk_count(),
                        pinned: true,
                    });
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

    // Stickiness: a unit whose machines already replicate through one master target keeps
    // it while that target still fits (OS, datastores, room). Without this, an edit elsewhere
    // in the plan (a target added or removed) could move machines lifeboat placed earlier,
    // and every move of a reprotected machine is a full resync. Kept units are booked first,
    // then the others are placed as usual.
    let mut classes = TargetClasses::new(plan, &assignment.disks);
    let (kept, rest): (Vec<&Unit>, Vec<&Unit>) = auto.iter().partition(|unit| {
        current_target(plan, index, current, unit_members(unit, &members)).is_some()
    });
    let mut unplaced = Vec::new();
    for unit in kept {
        let unit_members = unit_members(unit, &members);
        let (os, need, datastores) = needs(plan, unit_members);
        let target = current_target(plan, index, current, unit_members).expect("partitioned on it");
        if classes.book(target, os, &datastores, need) {
            place(&mut assignment, unit_members, target, need);
            fills[target].push(Fill::chosen(unit, need));
        } else {
            unplaced.push(unit);
        }
    }
    unplaced.extend(rest);
    // Keep the name order among everything placed the usual way.
    unplaced.sort_by_key(|unit| {
        (
            matches!(unit, Unit::Machine(_)),
            unit_name(unit).to_string(),
        )
    });
    // Units that find every target of their OS full are reported together, once per OS,
    // with what fills the targets: six errors saying "too full" explain less than one that
    // says a pinned group already took 58 of the 60 disks.
    let mut full: Vec<(&Unit, Os, usize, Vec<&str>)> = Vec::new();
    for unit in unplaced {
        let unit_members = unit_members(unit, &members);
        let (os, need, datastores) = needs(plan, unit_members);
        match classes.choose(os, &datastores, need) {
            Ok(mt) => {
                place(&mut assignment, unit_members, mt, need);
                fills[mt].push(Fill::chosen(unit, need));
            }
            Err(NoTarget::AllFull) => full.push((unit, os, need, datastores)),
            Err(reason) => out.push(no_master_target(plan, unit, os, need, &datastores, reason)),
        }
    }
    for os in [Os::Linux, Os::Windows] {
        let units: Vec<&(&Unit, Os, usize, Vec<&str>)> =
            full.iter().filter(|(_, o, _, _)| *o == os).collect();
        if !units.is_empty() {
            out.push(all_full(plan, os, &units, &assignment.disks, &fills));
        }
    }

    datastore_check(plan, &assignment, out);
    assignment
}

fn unit_members<'a>(unit: &'a Unit, members: &'a [Vec<usize>]) -> &'a [usize] {
    match unit {
        Unit::Group(g) => &members[*g],
        Unit::Machine(m) => std::slice::from_ref(m),
    }
}

/// A unit's OS (its first member's), its disks, and the datastores its members use.
fn needs<'p>(plan: &'p Plan, unit_members: &[usize]) -> (Os, usize, Vec<&'p str>) {
    let machine = |m: usize| &plan.machines.get_index(m).1.value;
    let os = machine(unit_members[0]).os.value;
    let need = unit_members.iter().map(|&m| machine(m).disk_count()).sum();
    let mut datastores: Vec<&str> = unit_members
        .iter()
        .map(|&m| machine(m).datastore.value.as_str())
        .collect();
    datastores.sort_unstable();
    datastores.dedup();
    (os, need, datastores)
}

/// The master target the members of a unit that replicate already replicate through, if they
/// agree. Members not reprotected yet join it: a replication group shares one master target,
/// so a group half reprotected (a member's reprotect failed) stays where its other members are.
fn current_target(
    plan: &Plan,
    index: &PlanIndex<'_>,
    current: &HashMap<&str, &str>,
    unit_members: &[usize],
) -> Option<usize> {
    let mut target = None;
    for &m in unit_members {
        let name = plan.machines.get_index(m).0.value.as_str();
        let Some(now) = current.get(name) else {
            continue;
        };
        let t = index.master_target(now)?;
        if target.is_some_and(|existing| existing != t) {
            return None;
        }
        target = Some(t);
    }
    target
}

fn place(assignment: &mut Assignment, unit_members: &[usize], mt: usize, need: usize) {
    assignment.disks[mt] += need;
    for &m in unit_members {
        assignment.machine_target[m] = Some(mt);
        assignment.chosen[m] = true;
    }
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

/// Master targets grouped by what makes them interchangeable: OS and the datastores they see.
///
/// Within a class the least loaded target (ties by name) is the only one worth considering:
/// if it lacks room, so does every other member. Each class keeps its targets ordered by
/// `(disks, name)`, so a choice costs O(classes + log targets) instead of a scan of all
/// targets; real fleets have a handful of classes however many targets they run.
struct TargetClasses<'p> {
    classes: Vec<TargetClass<'p>>,
    /// For each master target, its class and its name and disks as its class keys it.
    class_of: Vec<usize>,
    entry_of: Vec<(usize, &'p str, usize)>,
}

struct TargetClass<'p> {
    os: Os,
    datastores: Vec<&'p str>,
    by_load: BTreeSet<(usize, &'p str, usize)>,
}

impl<'p> TargetClasses<'p> {
    fn new(plan: &'p Plan, disks: &[usize]) -> Self {
        let mut index: HashMap<(Os, Vec<&'p str>), usize> = HashMap::new();
        let mut classes: Vec<TargetClass<'p>> = Vec::new();
        let mut class_of = Vec::with_capacity(plan.master_targets.len());
        let mut entry_of = Vec::with_capacity(plan.master_targets.len());
        for (mt, (name, target)) in plan.master_targets.iter().enumerate() {
            let mut datastores: Vec<&str> =
                target.datastores.iter().map(|d| d.value.as_str()).collect();
            datastores.sort_unstable();
            datastores.dedup();
            let key = (target.os.value, datastores.clone());
            let class = *index.entry(key).or_insert_with(|| {
                classes.push(TargetClass {
                    os: target.os.value,
                    datastores,
                    by_load: BTreeSet::new(),
                });
                classes.len() - 1
            });
            let entry = (disks[mt], name.value.as_str(), mt);
            classes[class].by_load.insert(entry);
            class_of.push(class);
            entry_of.push(entry);
        }
        Self {
            classes,
            class_of,
            entry_of,
        }
    }

    /// Books `need` disks on target `mt` if it runs `os`, sees every datastore and has room.
    fn book(&mut self, mt: usize, os: Os, datastores: &[&str], need: usize) -> bool {
        let class = &self.classes[self.class_of[mt]];
        let (load, _, _) = self.entry_of[mt];
        let fits = class.os == os
            && datastores
                .iter()
                .all(|ds| class.datastores.binary_search(ds).is_ok())
            && load + need <= MAX_DISKS_PER_MASTER_TARGET;
        if fits {
            self.move_load(mt, need);
        }
        fits
    }

    fn move_load(&mut self, mt: usize, need: usize) {
        let (load, name, _) = self.entry_of[mt];
        let by_load = &mut self.classes[self.class_of[mt]].by_load;
        by_load.remove(&(load, name, mt));
        by_load.insert((load + need, name, mt));
        self.entry_of[mt] = (load + need, name, mt);
    }

    /// Picks the target for a unit and books its disks there.
    fn choose(&mut self, os: Os, datastores: &[&str], need: usize) -> Result<usize, NoTarget> {
        if need > MAX_DISKS_PER_MASTER_TARGET {
            return Err(NoTarget::TooManyDisks);
        }
        let same_os: Vec<usize> = (0..self.classes.len())
            .filter(|&c| self.classes[c].os == os)
            .collect();
        if same_os.is_empty() {
            return Err(NoTarget::NoneWithOs);
        }
        // Prefer targets that see the machines' datastores; if none does, still place the unit
        // so that `master-target::datastore` can say exactly which datastore is missing where.
        let seeing: Vec<usize> = same_os
            .iter()
            .copied()
            .filter(|&c| {
                datastores
                    .iter()
                    .all(|ds| self.classes[c].datastores.binary_search(ds).is_ok())
            })
            .collect();
        let candidates = if seeing.is_empty() { same_os } else { seeing };
        let (_, (_, _, mt)) = candidates
            .into_iter()
            .filter_map(|c| self.classes[c].by_load.first().map(|&entry| (c, entry)))
            .filter(|&(_, (load, _, _))| load + need <= MAX_DISKS_PER_MASTER_TARGET)
            .min_by_key(|&(_, (load, name, _))| (load, name))
            .ok_or(NoTarget::AllFull)?;
        self.move_load(mt, need);
        Ok(mt)
    }
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
            format!("every {os} master target is too full for {need} more disk{}", if need == 1 { "" } else { "s" }),
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

/// The name of a unit and the span of its key.
fn unit_label(plan: &Plan, unit: &Unit) -> (String, Span) {
    match unit {
        Unit::Group(g) => {
            let name = plan.replication_groups.get_index(*g).0;
            (format!("group `{}`", name.value), name.span)
        }
        Unit::Machine(m) => {
            let name = plan.machines.get_index(*m).0;
            (format!("machine `{}`", name.value), name.span)
        }
    }
}

/// Units shown by name in the diagnostic of full master targets; the rest are counted.
const MAX_UNITS_SHOWN: usize = 20;
/// Master targets, and units filling each, named in that diagnostic's help.
const MAX_FILLS_SHOWN: usize = 3;

/// One diagnostic for every unit of `os` that found all its master targets full: a label on
/// each unit with its disks, and the help says what fills each target, largest first, and
/// which of it the plan pinned there.
fn all_full(
    plan: &Plan,
    os: Os,
    units: &[&(&Unit, Os, usize, Vec<&str>)],
    disks: &[usize],
    fills: &[Vec<Fill>],
) -> Diagnostic {
    let need: usize = units.iter().map(|(_, _, need, _)| need).sum();
    let (first, _) = unit_label(plan, units[0].0);
    let what = if units.len() == 1 {
        first
    } else {
        format!("{} machines and groups", units.len())
    };
    let mut diagnostic = Diagnostic::error(
        codes::GROUP_NO_MASTER_TARGET,
        format!(
            "no {os} master target has room for {what} ({need} {})",
            if need == 1 { "disk" } else { "disks" }
        ),
    );
    for (unit, _, need, _) in units.iter().take(MAX_UNITS_SHOWN) {
        let (_, span) = unit_label(plan, unit);
        diagnostic = diagnostic.with_label(
            span,
            format!("needs {need} {}", if *need == 1 { "disk" } else { "disks" }),
        );
    }
    let mut targets: Vec<(usize, &str)> = plan
        .master_targets
        .iter()
        .enumerate()
        .filter(|(_, (_, target))| target.os.value == os)
        .map(|(mt, (name, _))| (mt, name.value.as_str()))
        .collect();
    targets.sort_by_key(|&(mt, name)| (std::cmp::Reverse(disks[mt]), name));
    let mut filled = Vec::new();
    for &(mt, name) in targets.iter().take(MAX_FILLS_SHOWN) {
        let mut by_size: Vec<&Fill> = fills[mt].iter().collect();
        by_size.sort_by_key(|fill| std::cmp::Reverse(fill.disks));
        let mut parts: Vec<String> = by_size
            .iter()
            .take(MAX_FILLS_SHOWN)
            .map(|fill| {
                let (label, _) = unit_label(plan, &fill.unit);
                let how = if fill.pinned {
                    "named in the plan"
                } else {
                    "assigned"
                };
                format!("{label} {} ({how})", fill.disks)
            })
            .collect();
        if by_size.len() > MAX_FILLS_SHOWN {
            parts.push(format!("{} more", by_size.len() - MAX_FILLS_SHOWN));
        }
        let contents = if parts.is_empty() {
            String::new()
        } else {
            format!(": {}", parts.join(", "))
        };
        filled.push(format!(
            "`{name}` serves {} of {MAX_DISKS_PER_MASTER_TARGET} disks{contents}",
            disks[mt]
        ));
    }
    if targets.len() > MAX_FILLS_SHOWN {
        filled.push(format!(
            "{} more {os} master targets",
            targets.len() - MAX_FILLS_SHOWN
        ));
    }
    let mut datastores: Vec<&str> = units
        .iter()
        .flat_map(|(_, _, _, datastores)| datastores.iter().copied())
        .collect();
    datastores.sort_unstable();
    datastores.dedup();
    diagnostic.with_help(format!(
        "{}; add another {os} master target that sees {}, or move a unit named in the plan elsewhere",
        filled.join("; "),
        join_names(&datastores)
    ))
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

#[cfg(test)]
mod tests {
    use crate::{SourceFile, load, validate};

    fn targets(yaml: &str) -> Vec<(String, Option<String>, bool)> {
        let file = SourceFile::new("t.yaml", "t.yaml", yaml.to_string());
        let plan = load::load_plan(&file).expect("loads");
        let validation = validate::validate(&plan);
        assert!(
            validation.diagnostics.is_empty(),
            "{:?}",
            validation.diagnostics
        );
        plan.machines
            .iter()
            .enumerate()
            .map(|(m, (name, _))| {
                let target = validation
                    .assignment
                    .target_name(&plan, m)
                    .map(str::to_string);
                (name.value.clone(), target, validation.assignment.chosen[m])
            })
            .collect()
    }

    const HEAD: &str = "version: 1\nname: t\nprovider: {sim: {world: w}}\nsite: {vcenter: v, configuration_server: c, process_server: p}\nmaster_targets:\n  mt-b: {os: linux, esxi_host: e, retention_drive: /r, datastores: [ds]}\n  mt-a: {os: linux, esxi_host: e, retention_drive: /r, datastores: [ds]}\n  mt-w: {os: windows, esxi_host: e, retention_drive: 'R:', datastores: [ds]}\n";

    #[test]
    fn least_loaded_wins_and_ties_go_by_name() {
        let yaml = format!(
            "{HEAD}machines:\n  c: {{os: linux, datastore: ds}}\n  a: {{os: linux, datastore: ds, disks_gib: [1,2,3,4,5,6,7,8,9,10]}}\n  b: {{os: linux, datastore: ds, disks_gib: [1,2,3,4,5]}}\n  w: {{os: windows, datastore: ds}}\n"
        );
        // Name order: `a` first (tie at 0 → `mt-a`), then `b` (mt-b is empty), then `c`
        // (mt-b has 5 disks, mt-a 10).
        assert_eq!(
            targets(&yaml),
            [
                ("c".to_string(), Some("mt-b".to_string()), true),
                ("a".to_string(), Some("mt-a".to_string()), true),
                ("b".to_string(), Some("mt-b".to_string()), true),
                ("w".to_string(), Some("mt-w".to_string()), true),
            ]
        );
    }

    #[test]
    fn machines_keep_the_target_they_replicate_through_while_it_fits() {
        let yaml = format!(
            "{HEAD}machines:\n  a: {{os: linux, datastore: ds}}\n  b: {{os: linux, datastore: ds}}\n  g1: {{os: linux, datastore: ds}}\n  g2: {{os: linux, datastore: ds}}\nreplication_groups:\n  g: {{machines: [g1, g2]}}\n"
        );
        let file = SourceFile::new("t.yaml", "t.yaml", yaml);
        let plan = load::load_plan(&file).expect("loads");
        let fresh = validate::validate(&plan);
        let names = |v: &validate::Validation| {
            (0..plan.machines.len())
                .map(|m| {
                    v.assignment
                        .target_name(&plan, m)
                        .unwrap_or("-")
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&fresh), ["mt-b", "mt-b", "mt-a", "mt-a"]);
        // Today `b` and the group replicate through other targets than a fresh plan would
        // choose; they stay. A group only stays when all its members agree.
        let current = std::collections::HashMap::from([
            ("b", "mt-a"),
            ("g1", "mt-b"),
            ("g2", "mt-b"),
            ("a", "mt-w"),
        ]);
        let sticky = validate::validate_with(&plan, &current);
        assert!(sticky.diagnostics.is_empty(), "{:?}", sticky.diagnostics);
        // `a` is on a Windows target, which no longer fits a Linux machine: it is placed anew.
        assert_eq!(names(&sticky), ["mt-a", "mt-a", "mt-b", "mt-b"]);
        let split = std::collections::HashMap::from([("g1", "mt-b"), ("g2", "mt-a")]);
        assert_eq!(
            names(&validate::validate_with(&plan, &split))[2..],
            ["mt-a", "mt-a"]
        );
    }

    #[test]
    fn named_targets_count_before_lifeboat_chooses() {
        let yaml = format!(
            "{HEAD}machines:\n  a: {{os: linux, datastore: ds, master_target: mt-a, disks_gib: [1,2]}}\n  b: {{os: linux, datastore: ds}}\n  g1: {{os: linux, datastore: ds}}\n  g2: {{os: linux, datastore: ds, master_target: mt-b}}\nreplication_groups:\n  g: {{machines: [g1, g2]}}\n"
        );
        // `g` takes `mt-b` from its member; `a` is on `mt-a` with 2 disks; `mt-b` has 2 too,
        // so `b` ties and goes to `mt-a` by name.
        assert_eq!(
            targets(&yaml),
            [
                ("a".to_string(), Some("mt-a".to_string()), false),
                ("b".to_string(), Some("mt-a".to_string()), true),
                ("g1".to_string(), Some("mt-b".to_string()), false),
                ("g2".to_string(), Some("mt-b".to_string()), false),
            ]
        );
    }
}
