//! Step 4 of the engine: the fact-based checks of DESIGN.md §5 (`preflight::*`).
//!
//! Preflight compares the plan with what the provider observed, for the operations the plan
//! still needs: a machine already at its goal is not checked, a machine that still needs a
//! reprotect is checked against every reprotect rule, one that still needs a failback
//! against the failback rules. Every diagnostic labels the plan entry the fact concerns and
//! says, in the user's terms, how to fix it at the site.
//!
//! A fact the provider could not observe (`None` in [`Facts`]) is never treated as healthy:
//! it becomes one "not checked" warning per check, counting the entries concerned, so an
//! estate of 10,000 machines behind a provider that cannot see power states gets one warning,
//! not 10,000.
//!
//! Every check is linear in the number of machines: per-host and per-datastore sums are
//! accumulated in one pass, disk-UUID conflicts go through one hash map from UUID to owner.

use std::collections::HashMap;

use crate::assign::Assignment;
use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Plan, Recovery, Timestamp};
use crate::provider::facts::{Facts, Stage};

/// Labels shown on one aggregated diagnostic before the rest are only counted.
const MAX_LABELS: usize = 6;

mod capacity;
mod locked;
mod machine;
mod master_targets;
mod outstanding;
mod request;
mod site;
mod unchecked;
mod window;

pub use request::{home_settings, refresh_request, refresh_request_for, reprotect_settings};

use capacity::{HostDemand, datastore_capacity, esxi_memory};
use locked::locked_settings;
use machine::{MachineCheck, failback_host, machine_host};
use master_targets::{disk_uuids, master_targets};
use outstanding::{Outstanding, OutstandingWork, machines_in};
use site::{configuration_server, home, process_server, vcenter};
use unchecked::Unchecked;
use window::maintenance_window;

/// Runs every preflight check of DESIGN.md §5 against refreshed facts.
///
/// `now` decides whether failback and commit fall inside the maintenance window. The
/// diagnostics come back sorted by their position in the plan file.
pub fn preflight(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    now: Timestamp,
) -> Vec<Diagnostic> {
    checks(plan, assignment, facts, now, None)
}

/// The preflight checks of one machine (index `m` in the plan), for `apply` to run right
/// before that machine's next operation. `facts` need only describe that machine, its master
/// target, hosts and datastores, and the site ([`refresh_request_for`]): checks that compare
/// machines with each other (disk UUIDs, shared capacity) then see only this one.
pub fn preflight_machine(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    now: Timestamp,
    m: usize,
) -> Vec<Diagnostic> {
    checks(plan, assignment, facts, now, Some(m))
}

fn checks(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    now: Timestamp,
    only: Option<usize>,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut unchecked = Unchecked::default();
    let goal = Stage::from_goal(plan.goal());

    // Only the selected machines are looked at: the re-check before each operation costs
    // one machine's checks, not the estate's.
    let range = only.map_or(0..plan.machines.len(), |m| m..m + 1);
    let pending = OutstandingWork {
        offset: range.start,
        list: machines_in(plan, range.clone())
            .map(|(_, (name, _))| {
                facts
                    .machines
                    .get(name.value.as_str())
                    .map(|f| Outstanding::new(f.stage, goal))
            })
            .collect(),
    };
    let any = |pick: fn(Outstanding) -> bool| pending.list.iter().flatten().any(|p| pick(*p));
    let any_reprotect = any(|p| p.reprotect);
    let any_failback = any(|p| p.failback);
    let any_commit = any(|p| p.commit);
    let any_reprotect_home = any(|p| p.reprotect_home);
    let any_work = any(Outstanding::any);

    if any_work {
        configuration_server(plan, facts, &mut out, &mut unchecked);
    }
    if any_reprotect {
        process_server(plan, facts, &mut out, &mut unchecked);
    }
    if any_reprotect || any_failback {
        vcenter(plan, facts, any_reprotect, &mut out, &mut unchecked);
    }
    if any_reprotect_home {
        home(plan, facts, &mut out, &mut unchecked);
    }
    if any_reprotect {
        master_targets(plan, assignment, facts, &pending, &mut out, &mut unchecked);
        disk_uuids(plan, assignment, facts, &pending, &mut out, &mut unchecked);
    }

    // Per-host memory and per-datastore capacity are sums over machines, built in this pass
    // and judged once afterwards.
    let mut memory: HashMap<&str, HostDemand> = HashMap::new();
    let mut capacity: HashMap<&str, HostDemand> = HashMap::new();

    for (m, (name, machine)) in machines_in(plan, range.clone()) {
        let Some(machine_facts) = facts.machines.get(name.value.as_str()) else {
            out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_MACHINE_MISSING,
                    format!("machine `{}` is not a replicated item the provider knows", name.value),
                )
                .with_label(name.span, "not found at the site")
                .with_help(format!(
                    "check the name against the vault's replicated items; if the Azure replica of `{}` was deleted, it cannot be failed back",
                    name.value
                )),
            );
            continue;
        };
        if machine_facts.stage == Stage::Reprotected
            && let Some(applied) = &machine_facts.settings
        {
            locked_settings(plan, assignment, m, applied, &mut out);
        }
        let Some(p) = pending[m] else { continue };
        if !p.any() {
            continue;
        }
        let host = machine_host(plan, assignment, facts, m);
        let check = MachineCheck {
            name,
            machine,
            facts: machine_facts,
            host,
        };

        if p.reprotect || p.failback || p.reprotect_home {
            check.in_configuration_server(&mut out, &mut unchecked);
        }
        if p.reprotect || p.failback {
            check.unsupported(&mut out, &mut unchecked);
            check.powered_on(&mut out, &mut unchecked);
        }
        if p.reprotect {
            check.agent(&mut out, &mut unchecked);
            check.datastore(plan, assignment, facts, m, &mut out, &mut unchecked);
            check.name_clash(facts, &mut out, &mut unchecked);
            if machine.recovery() == Recovery::Alternate {
                let gib = machine_facts
                    .disks_gib
                    .as_ref()
                    .map_or(machine.disk_total_gib(), |d| d.iter().sum());
                capacity
                    .entry(machine.datastore.value.as_str())
                    .or_default()
                    .add(gib, machine.datastore.span);
            } else {
                capacity
                    .entry(machine.datastore.value.as_str())
                    .or_default()
                    .add(0, machine.datastore.span);
            }
        }
        if p.failback {
            match (failback_host(&check, machine), machine_facts.memory_gib) {
                (Some(host), Some(gib)) => memory.entry(host).or_default().add(gib, name.span),
                _ => unchecked.note(
                    codes::PREFLIGHT_ESXI_MEMORY,
                    "ESXi memory at failback",
                    name.span,
                ),
            }
        }
    }

    datastore_capacity(facts, &capacity, &mut out, &mut unchecked);
    esxi_memory(facts, &memory, &mut out, &mut unchecked);
    if any_failback || any_commit {
        maintenance_window(plan, &pending, now, &mut out);
    }

    unchecked.into_diagnostics(&mut out);
    crate::diagnostic::sort(&mut out);
    out
}

#[cfg(test)]
mod testkit;

#[cfg(test)]
mod tests {
    use super::testkit::{Estate, codes, healthy};
    use super::*;

    fn inside_window() -> Timestamp {
        Timestamp("2026-12-05T23:00:00Z".parse().expect("a timestamp"))
    }

    #[test]
    fn healthy_facts_pass_every_check_at_every_stage_before_the_goal() {
        let estate = Estate::new();
        for stage in [Stage::FailedOver, Stage::Reprotected, Stage::FailedBack] {
            let diagnostics = preflight(
                &estate.plan,
                &estate.validation.assignment,
                &healthy(stage),
                inside_window(),
            );
            assert!(diagnostics.is_empty(), "{stage:?}: {diagnostics:#?}");
        }
    }

    #[test]
    fn a_machine_the_site_does_not_have_is_machine_missing_at_its_name() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts.machines.remove("web-02");
        let diagnostics = preflight(
            &estate.plan,
            &estate.validation.assignment,
            &facts,
            inside_window(),
        );
        assert_eq!(codes(&diagnostics), [codes::PREFLIGHT_MACHINE_MISSING]);
        assert_eq!(estate.labelled(&diagnostics[0]), "web-02");
    }

    #[test]
    fn the_recheck_of_one_machine_sees_only_that_machine() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts
            .machines
            .get_mut("web-01")
            .expect("web-01")
            .vmware_vm
            .as_mut()
            .expect("a VM")
            .powered_on = Some(true);
        let assignment = &estate.validation.assignment;
        let web_02 = preflight_machine(&estate.plan, assignment, &facts, inside_window(), 1);
        assert!(web_02.is_empty(), "{web_02:#?}");
        let web_01 = preflight_machine(&estate.plan, assignment, &facts, inside_window(), 0);
        assert_eq!(codes(&web_01), [codes::PREFLIGHT_VM_POWERED_ON]);
        assert_eq!(estate.labelled(&web_01[0]), "web-01");
    }
}
