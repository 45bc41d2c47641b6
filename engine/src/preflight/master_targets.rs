//! The master targets' checks (existence, health, snapshots, disk room, retention drive,
//! datastores) and disk-UUID conflicts across master targets and machines.

use std::collections::HashMap;

use super::outstanding::{OutstandingWork, machines_in};
use super::unchecked::Unchecked;
use crate::assign::{Assignment, MAX_DISKS_PER_MASTER_TARGET};
use crate::diagnostic::{Diagnostic, codes};
use crate::model::Plan;
use crate::provider::facts::Facts;
use crate::provider::same_retention_drive;

pub(super) fn master_targets(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    pending: &OutstandingWork,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    // Disks each master target takes on with the reprotects still to run.
    let mut new_disks = vec![0usize; plan.master_targets.len()];
    let mut serves = vec![false; plan.master_targets.len()];
    for (m, (_, machine)) in machines_in(plan, pending.range()) {
        if let (Some(mt), Some(p)) = (assignment.machine_target[m], pending[m])
            && p.reprotect
        {
            new_disks[mt] += machine.disk_count();
            serves[mt] = true;
        }
    }
    for (mt, (name, target)) in plan.master_targets.iter().enumerate() {
        if !serves[mt] {
            continue;
        }
        let Some(observed) = facts.master_targets.get(name.value.as_str()) else {
            out.push(
                Diagnostic::error(codes::PREFLIGHT_MASTER_TARGET, format!("master target `{}` does not exist", name.value))
                    .with_label(name.span, "not found at the VMware site")
                    .with_help(format!(
                        "deploy master target `{}` on `{}` and register it with the configuration server, or fix the name",
                        name.value, target.esxi_host.value
                    )),
            );
            continue;
        };
        match observed.healthy {
            Some(false) => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_MASTER_TARGET,
                    format!("master target `{}` is unhealthy", name.value),
                )
                .with_label(name.span, "unhealthy")
                .with_help(format!(
                    "resolve the health errors of `{}` in the vault before reprotecting",
                    name.value
                )),
            ),
            None => unchecked.note(
                codes::PREFLIGHT_MASTER_TARGET,
                "master-target health",
                name.span,
            ),
            Some(true) => {}
        }
        match observed.os {
            Some(os) if os != target.os.value => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_MASTER_TARGET,
                    format!(
                        "master target `{}` runs {os}, the plan says {}",
                        name.value, target.os.value
                    ),
                )
                .with_label(target.os.span, format!("the site reports {os}"))
                .with_help(format!(
                    "a {} machine needs a {} master target: fix `os` or name another master target",
                    target.os.value, target.os.value
                )),
            ),
            None => unchecked.note(
                codes::PREFLIGHT_MASTER_TARGET,
                "master-target OS",
                name.span,
            ),
            Some(_) => {}
        }
        if let Some(host) = &observed.esxi_host
            && host != &target.esxi_host.value
        {
            out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_MASTER_TARGET,
                    format!(
                        "master target `{}` runs on ESXi host `{host}`, the plan says `{}`",
                        name.value, target.esxi_host.value
                    ),
                )
                .with_label(target.esxi_host.span, format!("the site reports `{host}`"))
                .with_help(format!(
                    "set `esxi_host: {host}`, or move the master target VM to `{}`",
                    target.esxi_host.value
                )),
            );
        }
        match observed.disks_attached {
            Some(attached) if attached as usize + new_disks[mt] > MAX_DISKS_PER_MASTER_TARGET => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_MASTER_TARGET,
                    format!(
                        "master target `{}` already serves {attached} disks; {} more would exceed {MAX_DISKS_PER_MASTER_TARGET}",
                        name.value, new_disks[mt]
                    ),
                )
                .with_label(name.span, format!("{attached} + {} disks", new_disks[mt]))
                .with_help("add another master target, or move machines to one with room; a master target serves at most 60 disks"),
            ),
            None => unchecked.note(codes::PREFLIGHT_MASTER_TARGET, "disks attached to the master target", name.span),
            Some(_) => {}
        }
        match observed.snapshots {
            Some(0) => {}
            Some(n) => {
                let snapshots = if n == 1 {
                    "1 snapshot".to_string()
                } else {
                    format!("{n} snapshots")
                };
                out.push(
                    Diagnostic::error(
                        codes::PREFLIGHT_MASTER_TARGET_SNAPSHOTS,
                        format!("master target `{}` has {snapshots}", name.value),
                    )
                    .with_label(name.span, format!("{snapshots} on this master target"))
                    .with_help(format!(
                        "delete the {snapshots} on master target `{}` in vCenter; reprotect fails while a master target has snapshots (snapshots of the machines themselves are merged automatically)",
                        name.value
                    )),
                );
            }
            None => unchecked.note(
                codes::PREFLIGHT_MASTER_TARGET_SNAPSHOTS,
                "master-target snapshots",
                name.span,
            ),
        }
        match &observed.retention_volumes {
            Some(volumes)
                if !volumes
                    .iter()
                    .any(|v| same_retention_drive(v, &target.retention_drive.value)) =>
            {
                let have = if volumes.is_empty() {
                    "it has no retention volume".to_string()
                } else {
                    format!("it has {}", crate::validate::join_names(volumes))
                };
                out.push(
                    Diagnostic::error(
                        codes::PREFLIGHT_RETENTION_DRIVE,
                        format!(
                            "retention drive `{}` does not exist on master target `{}`",
                            target.retention_drive.value, name.value
                        ),
                    )
                    .with_label(target.retention_drive.span, format!("not a volume of `{}`: {have}", name.value))
                    .with_help(format!(
                        "add a dedicated retention volume `{}` to `{}`, or set `retention_drive` to one it has",
                        target.retention_drive.value, name.value
                    )),
                );
            }
            None => unchecked.note(
                codes::PREFLIGHT_RETENTION_DRIVE,
                "the retention drive",
                target.retention_drive.span,
            ),
            Some(_) => {}
        }
    }
}

/// Who owns a disk UUID: a master target or a machine (by position in the plan).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    MasterTarget(usize),
    Machine(usize),
}

pub(super) fn disk_uuids(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    pending: &OutstandingWork,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let mut owners: HashMap<&str, Owner> = HashMap::new();
    for (mt, (name, _)) in plan.master_targets.iter().enumerate() {
        if let Some(uuids) = facts
            .master_targets
            .get(name.value.as_str())
            .and_then(|f| f.disk_uuids.as_ref())
        {
            for uuid in uuids {
                owners
                    .entry(uuid.as_str())
                    .or_insert(Owner::MasterTarget(mt));
            }
        }
    }
    let reprotects = |m: usize| pending[m].is_some_and(|p| p.reprotect);
    for (m, (name, _)) in machines_in(plan, pending.range()) {
        let Some(machine_facts) = facts.machines.get(name.value.as_str()) else {
            continue;
        };
        let Some(uuids) = &machine_facts.disk_uuids else {
            if reprotects(m) {
                unchecked.note(codes::PREFLIGHT_DISK_UUID_CONFLICT, "disk UUIDs", name.span);
            }
            continue;
        };
        // One diagnostic per machine: the first clash, and how many disks clash in all.
        let mut first: Option<(&str, Owner)> = None;
        let mut clashes = 0usize;
        for uuid in uuids {
            match owners.get(uuid.as_str()) {
                Some(&owner) if owner != Owner::Machine(m) => {
                    clashes += 1;
                    first.get_or_insert((uuid.as_str(), owner));
                }
                Some(_) => {}
                None => {
                    owners.insert(uuid.as_str(), Owner::Machine(m));
                }
            }
        }
        let Some((uuid, owner)) = first else { continue };
        let other_reprotects = matches!(owner, Owner::Machine(o) if reprotects(o));
        if !reprotects(m) && !other_reprotects {
            continue;
        }
        let (other, other_span, cause) = match owner {
            Owner::MasterTarget(mt) => {
                let mt_name = plan.master_targets.get_index(mt).0;
                let serving = assignment.machine_target[m] == Some(mt);
                let cause = if serving {
                    " (its own master target)"
                } else {
                    ""
                };
                (
                    format!("master target `{}`{cause}", mt_name.value),
                    mt_name.span,
                    "the master target",
                )
            }
            Owner::Machine(o) => {
                let other = plan.machines.get_index(o).0;
                (
                    format!("machine `{}`", other.value),
                    other.span,
                    "the other machine",
                )
            }
        };
        let more = if clashes > 1 {
            format!(" ({clashes} disks clash in all)")
        } else {
            String::new()
        };
        out.push(
            Diagnostic::error(
                codes::PREFLIGHT_DISK_UUID_CONFLICT,
                format!("machine `{}` shares disk UUID `{uuid}` with {other}{more}", name.value),
            )
            .with_label(name.span, format!("disk `{uuid}`"))
            .with_label(other_span, "has the same disk UUID")
            .with_help(format!(
                "VMs created from the same template share disk UUIDs and reprotect fails; redeploy {cause} from another template so every disk UUID is unique"
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::outstanding::Outstanding;
    use super::super::testkit::{Estate, codes, healthy};
    use super::*;
    use crate::provider::facts::Stage;

    fn reprotecting() -> OutstandingWork {
        OutstandingWork {
            offset: 0,
            list: vec![Some(Outstanding::new(Stage::FailedOver, Stage::Reprotected)); 2],
        }
    }

    fn run(estate: &Estate, facts: &Facts, work: &OutstandingWork) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut unchecked = Unchecked::default();
        let assignment = &estate.validation.assignment;
        master_targets(
            &estate.plan,
            assignment,
            facts,
            work,
            &mut out,
            &mut unchecked,
        );
        disk_uuids(
            &estate.plan,
            assignment,
            facts,
            work,
            &mut out,
            &mut unchecked,
        );
        unchecked.into_diagnostics(&mut out);
        out
    }

    #[test]
    fn a_snapshot_on_the_master_target_is_refused_at_its_name() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts
            .master_targets
            .get_mut("mt-linux-01")
            .expect("mt")
            .snapshots = Some(2);
        let out = run(&estate, &facts, &reprotecting());
        assert_eq!(codes(&out), [codes::PREFLIGHT_MASTER_TARGET_SNAPSHOTS]);
        assert_eq!(estate.labelled(&out[0]), "mt-linux-01");
    }

    #[test]
    fn a_machine_sharing_the_master_targets_disk_uuid_is_a_conflict() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts.machines.get_mut("web-02").expect("web-02").disk_uuids =
            Some(vec!["uuid-mt".to_string()]);
        let out = run(&estate, &facts, &reprotecting());
        assert_eq!(codes(&out), [codes::PREFLIGHT_DISK_UUID_CONFLICT]);
        assert!(out[0].message.contains("uuid-mt"), "{}", out[0].message);
    }

    #[test]
    fn nothing_to_reprotect_means_no_master_target_check() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::Reprotected);
        facts
            .master_targets
            .get_mut("mt-linux-01")
            .expect("mt")
            .snapshots = Some(2);
        let none = OutstandingWork {
            offset: 0,
            list: vec![Some(Outstanding::new(Stage::Reprotected, Stage::Committed)); 2],
        };
        assert!(run(&estate, &facts, &none).is_empty());
    }
}
