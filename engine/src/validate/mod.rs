//! Step 2 of the engine: every static rule of DESIGN.md §5, from the plan file alone.
//!
//! Validation returns a value plus a list: the [`Validation`] carries the master-target
//! assignment the later steps use, and every diagnostic found. It never stops at the first
//! problem: each check works on whatever references did resolve and skips what did not, so one
//! typo produces one diagnostic, not a cascade.
//!
//! Every check is linear (or N log N) in the size of the plan: names are resolved through
//! hash maps built once, and boot groups are chained through one barrier node each rather
//! than an edge per pair of machines.

mod boot_order;
mod groups;
mod names;
pub mod state;
pub mod steps;
mod window;

use std::collections::HashMap;

use crate::assign::{self, Assignment};
use crate::diagnostic::{self, Diagnostic};
use crate::model::Plan;
use crate::span::{Span, Spanned};

/// The plan's names resolved to positions, built once and shared by every check.
#[derive(Debug)]
pub struct PlanIndex<'p> {
    pub machines: HashMap<&'p str, usize>,
    pub master_targets: HashMap<&'p str, usize>,
    pub groups: HashMap<&'p str, usize>,
    /// For each machine, the replication group it belongs to (the first, if listed in several).
    pub group_of: Vec<Option<usize>>,
}

impl<'p> PlanIndex<'p> {
    pub fn new(plan: &'p Plan) -> Self {
        let machines = plan.machines.index();
        let mut group_of = vec![None; plan.machines.len()];
        for (g, (_, group)) in plan.replication_groups.iter().enumerate() {
            for member in &group.machines.value {
                if let Some(&m) = machines.get(member.value.as_str()) {
                    group_of[m].get_or_insert(g);
                }
            }
        }
        Self {
            machines,
            master_targets: plan.master_targets.index(),
            groups: plan.replication_groups.index(),
            group_of,
        }
    }

    pub fn machine(&self, name: &str) -> Option<usize> {
        self.machines.get(name).copied()
    }

    pub fn master_target(&self, name: &str) -> Option<usize> {
        self.master_targets.get(name).copied()
    }
}

/// The outcome of validation: what later steps need, and every problem found.
#[derive(Debug)]
pub struct Validation {
    pub assignment: Assignment,
    pub diagnostics: Vec<Diagnostic>,
}

impl Validation {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Runs every static check. Diagnostics come back sorted by their position in the file.
pub fn validate(plan: &Plan) -> Validation {
    validate_with(plan, &HashMap::new())
}

/// [`validate`], with the master target each machine currently replicates through (from the
/// provider's facts), so lifeboat's own choices stay where they are while they still fit.
pub fn validate_with(plan: &Plan, current_targets: &HashMap<&str, &str>) -> Validation {
    let index = PlanIndex::new(plan);
    let mut diagnostics = Vec::new();
    names::check(plan, &index, &mut diagnostics);
    let group_targets = groups::check(plan, &index, &mut diagnostics);
    let assignment = assign::assign(
        plan,
        &index,
        &group_targets,
        current_targets,
        &mut diagnostics,
    );
    boot_order::check(plan, &index, &mut diagnostics);
    window::check(plan, &mut diagnostics);
    state::check(plan, &mut diagnostics);
    window::link_speed(plan, &mut diagnostics);
    steps::check(plan, &mut diagnostics);
    diagnostic::sort(&mut diagnostics);
    Validation {
        assignment,
        diagnostics,
    }
}

/// One kind of group a machine may be in only once: replication groups, boot groups.
pub(crate) struct Membership<'a> {
    pub code: &'static str,
    /// Plural, for the message: "replication groups".
    pub kind: &'a str,
    pub help: &'a str,
}

/// Reports every machine listed in two groups of one kind, labelling both listings, and
/// returns each machine's first group. Listing a machine twice in the same group is left to
/// `plan::duplicate`.
pub(crate) fn single_membership<'p>(
    index: &PlanIndex<'_>,
    groups: impl Iterator<Item = (&'p str, &'p [Spanned<String>])>,
    membership: &Membership<'_>,
    out: &mut Vec<Diagnostic>,
) -> HashMap<usize, usize> {
    let mut first: HashMap<usize, (usize, &'p str, Span)> = HashMap::new();
    for (g, (group_name, members)) in groups.enumerate() {
        for member in members {
            let Some(m) = index.machine(&member.value) else {
                continue;
            };
            match first.get(&m) {
                None => {
                    first.insert(m, (g, group_name, member.span));
                }
                Some(&(first_group, first_name, first_span)) if first_group != g => out.push(
                    Diagnostic::error(
                        membership.code,
                        format!(
                            "machine `{}` is in {} `{first_name}` and `{group_name}`",
                            member.value, membership.kind
                        ),
                    )
                    .with_label(member.span, format!("listed in `{group_name}`"))
                    .with_label(first_span, format!("already in `{first_name}`"))
                    .with_help(membership.help),
                ),
                Some(_) => {}
            }
        }
    }
    first.into_iter().map(|(m, (g, _, _))| (m, g)).collect()
}

/// `a`, `a` and `b`, `a`, `b` and `c`: names in backticks, joined for a sentence.
pub(crate) fn join_names<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{}`", n.as_ref())).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
