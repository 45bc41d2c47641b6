//! The site-wide checks: configuration server, process servers (the failback leg's and the
//! leg home's), run-as account and vCenter.

use super::unchecked::Unchecked;
use crate::diagnostic::{Diagnostic, codes};
use crate::model::Plan;
use crate::provider::facts::{AccountAccess, Facts, HypervisorEdition};

pub(super) fn configuration_server(
    plan: &Plan,
    facts: &Facts,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let name = &plan.site.configuration_server;
    match &facts.configuration_server {
        None => out.push(
            Diagnostic::error(
                codes::PREFLIGHT_CONFIGURATION_SERVER,
                format!("configuration server `{}` does not exist", name.value),
            )
            .with_label(name.span, "not found at the VMware site")
            .with_help("check `site.configuration_server` against the configuration servers registered in the vault"),
        ),
        Some(cs) => match cs.connected {
            Some(true) => {}
            Some(false) => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_CONFIGURATION_SERVER,
                    format!("configuration server `{}` is not connected to Azure", name.value),
                )
                .with_label(name.span, "not connected")
                .with_help(format!(
                    "start `{}` and check its connection to Azure (port 443) in the vault; reprotect and failback need it (ASR 95226)",
                    name.value
                )),
            ),
            None => unchecked.note(codes::PREFLIGHT_CONFIGURATION_SERVER, "the configuration server's connection", name.span),
        },
    }
}

pub(super) fn process_server(
    plan: &Plan,
    facts: &Facts,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let name = &plan.site.process_server;
    match &facts.process_server {
        None => out.push(
            Diagnostic::error(codes::PREFLIGHT_PROCESS_SERVER, format!("process server `{}` does not exist", name.value))
                .with_label(name.span, "not found in Azure")
                .with_help("deploy a process server in Azure for failback, or fix `site.process_server`"),
        ),
        Some(ps) => match ps.healthy {
            Some(true) => {}
            Some(false) => out.push(
                Diagnostic::error(codes::PREFLIGHT_PROCESS_SERVER, format!("process server `{}` is unhealthy", name.value))
                    .with_label(name.span, "unhealthy")
                    .with_help(format!(
                        "resolve the health errors of `{}` in the vault (and check that port 9443 is open to it) before reprotecting",
                        name.value
                    )),
            ),
            None => unchecked.note(codes::PREFLIGHT_PROCESS_SERVER, "the process server's health", name.span),
        },
    }
}

/// The names of the leg home, checked like the failback leg's: the process server on the
/// VMware site exists and is healthy, and the run-as account is one of the configuration
/// server's. (The policy is checked when `reprotect-home` runs: refresh reads no policies.)
pub(super) fn home(
    plan: &Plan,
    facts: &Facts,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    // Validation requires `site.home` for goal `protected`, the only goal with a reprotect
    // home; without it there is nothing to check here.
    let Some(home) = &plan.site.home else { return };
    let name = &home.value.process_server;
    match &facts.home_process_server {
        None => out.push(
            Diagnostic::error(codes::PREFLIGHT_PROCESS_SERVER, format!("process server `{}` does not exist", name.value))
                .with_label(name.span, "not registered with the configuration server")
                .with_help("register the process server on the VMware site with the configuration server, or fix `site.home.process_server`"),
        ),
        Some(ps) => match ps.healthy {
            Some(true) => {}
            Some(false) => out.push(
                Diagnostic::error(codes::PREFLIGHT_PROCESS_SERVER, format!("process server `{}` is unhealthy", name.value))
                    .with_label(name.span, "unhealthy")
                    .with_help(format!(
                        "resolve the health errors of `{}` in the vault before protecting the machines again",
                        name.value
                    )),
            ),
            None => unchecked.note(codes::PREFLIGHT_PROCESS_SERVER, "the process server's health", name.span),
        },
    }
    let account = &home.value.run_as_account;
    match &facts.run_as_accounts {
        Some(accounts) if !accounts.contains(&account.value) => {
            let have = if accounts.is_empty() {
                "it has none".to_string()
            } else {
                format!("it has {}", crate::validate::join_names(accounts))
            };
            out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_CONFIGURATION_SERVER,
                    format!(
                        "the configuration server has no run-as account `{}`",
                        account.value
                    ),
                )
                .with_label(account.span, format!("not an account of the configuration server: {have}"))
                .with_help("add the account to the configuration server, or set `site.home.run_as_account` to one it has"),
            );
        }
        Some(_) => {}
        None => unchecked.note(
            codes::PREFLIGHT_CONFIGURATION_SERVER,
            "the run-as account",
            account.span,
        ),
    }
}

pub(super) fn vcenter(
    plan: &Plan,
    facts: &Facts,
    reprotect: bool,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let name = &plan.site.vcenter;
    let Some(vc) = &facts.vcenter else {
        out.push(
            Diagnostic::error(codes::PREFLIGHT_VCENTER, format!("vCenter `{}` is not known to the vault", name.value))
                .with_label(name.span, "not discovered")
                .with_help(format!(
                    "add `{}` to the configuration server and let it discover the master target; failing back to another vCenter needs both discovered",
                    name.value
                )),
        );
        return;
    };
    match vc.connected {
        Some(false) => out.push(
            Diagnostic::error(codes::PREFLIGHT_VCENTER, format!("vCenter `{}` is not connected", name.value))
                .with_label(name.span, "not connected")
                .with_help(format!(
                    "reconnect `{}` on the configuration server (port 443) before failback; without it detaching and attaching disks fails",
                    name.value
                )),
        ),
        None => unchecked.note(codes::PREFLIGHT_VCENTER, "vCenter's connection", name.span),
        Some(true) => {}
    }
    match vc.discovered {
        Some(false) => out.push(
            Diagnostic::error(codes::PREFLIGHT_VCENTER, format!("vCenter `{}` has not been discovered", name.value))
                .with_label(name.span, "not discovered")
                .with_help(format!(
                    "run discovery of `{}` on the configuration server and wait for it to finish; its datastores are not visible to reprotect until then",
                    name.value
                )),
        ),
        None => unchecked.note(codes::PREFLIGHT_VCENTER, "vCenter discovery", name.span),
        Some(true) => {}
    }
    if reprotect {
        match vc.account {
            Some(AccountAccess::ReadOnly) => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_VCENTER_PERMISSIONS,
                    format!("vCenter `{}` was discovered with a read-only account", name.value),
                )
                .with_label(name.span, "read-only discovery account")
                .with_help(format!(
                    "update the credentials of `{}` on the configuration server to an account that can discover datastores, then refresh; reprotect fails with a read-only account",
                    name.value
                )),
            ),
            None => unchecked.note(codes::PREFLIGHT_VCENTER_PERMISSIONS, "vCenter's account permissions", name.span),
            Some(AccountAccess::ReadWrite) => {}
        }
    }
    match vc.edition {
        Some(edition @ (HypervisorEdition::FreeEsxi55 | HypervisorEdition::FreeVsphere6)) => out.push(
            Diagnostic::error(
                codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
                format!("failback to the free hypervisor edition `{}` is not supported", edition.as_str()),
            )
            .with_label(name.span, format!("runs `{}`", edition.as_str()))
            .with_help("upgrade the ESXi hosts to a licensed edition; ASR cannot fail back to free ESXi 5.5 or free vSphere 6 Hypervisor"),
        ),
        None => unchecked.note(codes::PREFLIGHT_UNSUPPORTED_FAILBACK, "the hypervisor edition", name.span),
        Some(HypervisorEdition::Licensed) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Estate, codes, healthy};
    use super::*;
    use crate::diagnostic::Severity;
    use crate::provider::facts::{ProcessServerFacts, Stage};

    fn run(estate: &Estate, facts: &Facts) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let mut unchecked = Unchecked::default();
        configuration_server(&estate.plan, facts, &mut out, &mut unchecked);
        process_server(&estate.plan, facts, &mut out, &mut unchecked);
        vcenter(&estate.plan, facts, true, &mut out, &mut unchecked);
        unchecked.into_diagnostics(&mut out);
        out
    }

    #[test]
    fn an_unhealthy_process_server_is_an_error_at_its_name() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts.process_server = Some(ProcessServerFacts {
            healthy: Some(false),
        });
        let out = run(&estate, &facts);
        assert_eq!(codes(&out), [codes::PREFLIGHT_PROCESS_SERVER]);
        assert_eq!(estate.labelled(&out[0]), "ps-01");
        assert!(out[0].message.contains("unhealthy"), "{}", out[0].message);
    }

    #[test]
    fn a_read_only_vcenter_account_is_refused_only_for_reprotect() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts.vcenter.as_mut().expect("vCenter").account = Some(AccountAccess::ReadOnly);
        let out = run(&estate, &facts);
        assert_eq!(codes(&out), [codes::PREFLIGHT_VCENTER_PERMISSIONS]);
        assert_eq!(estate.labelled(&out[0]), "vc-01");

        let mut out = Vec::new();
        let mut unchecked = Unchecked::default();
        vcenter(&estate.plan, &facts, false, &mut out, &mut unchecked);
        assert!(out.is_empty(), "failback needs no write access: {out:#?}");
    }

    #[test]
    fn an_unknown_connection_is_not_checked_never_fine() {
        let estate = Estate::new();
        let mut facts = healthy(Stage::FailedOver);
        facts.configuration_server = Some(Default::default());
        let out = run(&estate, &facts);
        assert_eq!(codes(&out), [codes::PREFLIGHT_CONFIGURATION_SERVER]);
        assert_eq!(out[0].severity, Severity::Warning);
        assert!(out[0].message.contains("not checked"), "{}", out[0].message);
    }
}
