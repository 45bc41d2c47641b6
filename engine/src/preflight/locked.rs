//! Settings ASR cannot change once a machine is reprotected (`preflight::locked-setting`).

use crate::assign::Assignment;
use crate::diagnostic::{Diagnostic, codes};
use crate::model::Plan;
use crate::provider::facts::AppliedSettings;
use crate::provider::same_retention_drive;
use crate::span::Span;

/// A reprotected machine whose master target, datastore, retention drive or recovery type at
/// the site differs from the plan. ASR has no operation that changes them, and disabling
/// protection removes the item, after which the replica can never fail back (DESIGN.md §2),
/// so the only ways forward are the user's: put the plan's value back, or fail back with the
/// site's settings and change the plan afterwards. A setting the provider cannot tell is not
/// compared. The process server is not locked: it becomes a `switch-process-server` change.
pub(super) fn locked_settings(
    plan: &Plan,
    assignment: &Assignment,
    m: usize,
    applied: &AppliedSettings,
    out: &mut Vec<Diagnostic>,
) {
    let (name, machine) = plan.machines.get_index(m);
    let Some(mt) = assignment.machine_target.get(m).copied().flatten() else {
        return;
    };
    let (mt_name, target) = plan.master_targets.get_index(mt);
    let recovery = machine.recovery();
    let mut locked: Vec<(&str, String, String, Span)> = Vec::new();
    if let Some(site) = &applied.master_target
        && *site != mt_name.value
    {
        // The plan's value: where the machine or its group names it, or the machine's name
        // when lifeboat assigned it. The group is looked up only here, for a drifted
        // machine, so the check stays linear in machines.
        let group_target = plan
            .replication_groups
            .iter()
            .find(|(_, g)| {
                g.machines
                    .value
                    .iter()
                    .any(|member| member.value == name.value)
            })
            .and_then(|(_, g)| g.master_target.as_ref());
        let mt_span = machine
            .master_target
            .as_ref()
            .or(group_target)
            .map_or(name.span, |named| named.span);
        locked.push((
            "master target",
            site.clone(),
            mt_name.value.clone(),
            mt_span,
        ));
    }
    if let Some(site) = &applied.datastore
        && *site != machine.datastore.value
    {
        locked.push((
            "datastore",
            site.clone(),
            machine.datastore.value.clone(),
            machine.datastore.span,
        ));
    }
    if let Some(site) = &applied.retention_drive
        && !same_retention_drive(site, &target.retention_drive.value)
    {
        locked.push((
            "retention drive",
            site.clone(),
            target.retention_drive.value.clone(),
            target.retention_drive.span,
        ));
    }
    if let Some(site) = applied.recovery
        && site != recovery
    {
        locked.push((
            "recovery",
            site.as_str().to_string(),
            recovery.as_str().to_string(),
            machine.recovery.as_ref().map_or(name.span, |r| r.span),
        ));
    }
    for (setting, site, planned, span) in locked {
        out.push(
            Diagnostic::error(
                codes::PREFLIGHT_LOCKED_SETTING,
                format!(
                    "machine `{}` is reprotected with {setting} `{site}`, the plan says `{planned}`: ASR cannot change the {setting} of a reprotected machine",
                    name.value
                ),
            )
            .with_label(span, format!("the site has `{site}`"))
            .with_help(format!(
                "put `{site}` back in the plan, or fail `{}` back with the site's settings and change the plan afterwards; disabling protection to reprotect again would remove the replica, and an unprotected replica can never fail back",
                name.value
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Estate, codes};
    use super::*;
    use crate::model::Recovery;

    fn as_planned() -> AppliedSettings {
        AppliedSettings {
            master_target: Some("mt-linux-01".to_string()),
            process_server: Some("ps-01".to_string()),
            datastore: Some("vsan-01".to_string()),
            retention_drive: Some("/mnt/retention".to_string()),
            recovery: Some(Recovery::Original),
        }
    }

    fn check(estate: &Estate, applied: &AppliedSettings) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        locked_settings(
            &estate.plan,
            &estate.validation.assignment,
            0,
            applied,
            &mut out,
        );
        out
    }

    #[test]
    fn settings_as_planned_and_a_process_server_change_are_not_locked() {
        let estate = Estate::new();
        assert!(check(&estate, &as_planned()).is_empty());
        let switched = AppliedSettings {
            process_server: Some("ps-02".to_string()),
            ..as_planned()
        };
        assert!(check(&estate, &switched).is_empty(), "a switch, not a lock");
    }

    #[test]
    fn a_changed_datastore_is_locked_at_the_plans_value() {
        let estate = Estate::new();
        let moved = AppliedSettings {
            datastore: Some("vsan-02".to_string()),
            ..as_planned()
        };
        let out = check(&estate, &moved);
        assert_eq!(codes(&out), [codes::PREFLIGHT_LOCKED_SETTING]);
        assert_eq!(estate.labelled(&out[0]), "vsan-01");
        assert!(out[0].message.contains("`vsan-02`"), "{}", out[0].message);
    }

    #[test]
    fn an_assigned_master_target_that_differs_points_at_the_machine() {
        let estate = Estate::new();
        let other = AppliedSettings {
            master_target: Some("mt-linux-02".to_string()),
            ..as_planned()
        };
        let out = check(&estate, &other);
        assert_eq!(codes(&out), [codes::PREFLIGHT_LOCKED_SETTING]);
        // lifeboat chose the master target: the label is the machine's name.
        assert_eq!(estate.labelled(&out[0]), "web-01");
    }

    #[test]
    fn retention_drives_compare_as_asr_reports_them() {
        let estate = Estate::new();
        let unknown = AppliedSettings {
            retention_drive: None,
            recovery: None,
            ..as_planned()
        };
        assert!(
            check(&estate, &unknown).is_empty(),
            "what the site cannot tell is not compared"
        );
    }
}
