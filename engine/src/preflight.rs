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

use std::collections::{BTreeMap, HashMap};

use crate::assign::{Assignment, MAX_DISKS_PER_MASTER_TARGET};
use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Machine, Plan, Recovery, Timestamp};
use crate::provider::facts::{
    AccountAccess, AppliedSettings, AzureReplica, DatastoreAccess, DatastoreType, Facts,
    HypervisorEdition, MachineFacts, SourceKind, Stage,
};
use crate::provider::{
    HomeSettings, OperationKind, RefreshRequest, ReprotectSettings, same_retention_drive,
};
use crate::span::{Span, Spanned};

/// Labels shown on one aggregated diagnostic before the rest are only counted.
const MAX_LABELS: usize = 6;

/// The names the engine needs facts about for this plan.
pub fn refresh_request(plan: &Plan) -> RefreshRequest {
    let mut esxi_hosts: Vec<String> = plan
        .master_targets
        .iter()
        .map(|(_, t)| t.esxi_host.value.clone())
        .collect();
    esxi_hosts.sort_unstable();
    esxi_hosts.dedup();
    let mut datastores: Vec<String> = plan
        .master_targets
        .iter()
        .flat_map(|(_, t)| t.datastores.iter().map(|d| d.value.clone()))
        .chain(plan.machines.iter().map(|(_, m)| m.datastore.value.clone()))
        .collect();
    datastores.sort_unstable();
    datastores.dedup();
    RefreshRequest {
        vcenter: plan.site.vcenter.value.clone(),
        configuration_server: plan.site.configuration_server.value.clone(),
        process_server: plan.site.process_server.value.clone(),
        esxi_hosts,
        datastores,
        master_targets: plan.master_targets.names().map(str::to_string).collect(),
        machines: plan.machines.names().map(str::to_string).collect(),
        home_process_server: home_process_server(plan),
    }
}

/// The reprotect settings the plan asks for machine `m`, once it has a master target.
pub fn reprotect_settings(
    plan: &Plan,
    assignment: &Assignment,
    m: usize,
) -> Option<ReprotectSettings> {
    let mt = assignment.machine_target.get(m).copied().flatten()?;
    let (mt_name, target) = plan.master_targets.get_index(mt);
    let machine = plan.machines.get_index(m).1;
    Some(ReprotectSettings {
        master_target: mt_name.value.clone(),
        process_server: plan.site.process_server.value.clone(),
        datastore: machine.datastore.value.clone(),
        retention_drive: target.retention_drive.value.clone(),
        recovery: machine.recovery(),
        failback_policy: plan.site.failback_policy.value.clone(),
        home: None,
    })
}

fn home_process_server(plan: &Plan) -> Option<String> {
    plan.site
        .home
        .as_ref()
        .map(|home| home.value.process_server.value.clone())
}

/// The names the leg home needs, from the plan's `site.home`.
pub fn home_settings(plan: &Plan) -> Option<HomeSettings> {
    plan.site.home.as_ref().map(|home| HomeSettings {
        process_server: home.value.process_server.value.clone(),
        run_as_account: home.value.run_as_account.value.clone(),
        policy: home.value.policy.value.clone(),
    })
}

/// Which operations a machine still needs to reach the goal.
#[derive(Debug, Clone, Copy)]
struct Pending {
    reprotect: bool,
    failback: bool,
    commit: bool,
    reprotect_home: bool,
}

impl Pending {
    fn new(stage: Stage, goal: Stage) -> Self {
        let needs = |kind: OperationKind| stage <= kind.from_stage() && kind.to_stage() <= goal;
        Self {
            reprotect: needs(OperationKind::Reprotect),
            failback: needs(OperationKind::Failback),
            commit: needs(OperationKind::Commit),
            reprotect_home: needs(OperationKind::ReprotectHome),
        }
    }

    fn any(self) -> bool {
        self.reprotect || self.failback || self.commit || self.reprotect_home
    }
}

/// What each selected machine (a contiguous range of the plan's machines: all of them, or
/// one) still has to go through; `None` for a machine the site does not have.
struct Pendings {
    offset: usize,
    list: Vec<Option<Pending>>,
}

impl Pendings {
    fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.list.len()
    }
}

/// Machines outside the range have nothing pending here.
impl std::ops::Index<usize> for Pendings {
    type Output = Option<Pending>;

    fn index(&self, m: usize) -> &Option<Pending> {
        m.checked_sub(self.offset)
            .and_then(|i| self.list.get(i))
            .unwrap_or(&None)
    }
}

/// The plan's machines in `range`, with their positions.
fn machines_in(
    plan: &Plan,
    range: std::ops::Range<usize>,
) -> impl Iterator<Item = (usize, (&Spanned<String>, &Spanned<Machine>))> + '_ {
    range.map(|m| (m, plan.machines.get_index(m)))
}

/// Facts a provider could not observe, gathered per check so each check warns once.
#[derive(Default)]
struct Unchecked {
    by_check: BTreeMap<(&'static str, &'static str), (usize, Vec<Span>)>,
}

impl Unchecked {
    fn note(&mut self, code: &'static str, fact: &'static str, span: Span) {
        let entry = self.by_check.entry((code, fact)).or_default();
        entry.0 += 1;
        if entry.1.len() < MAX_LABELS {
            entry.1.push(span);
        }
    }

    fn into_diagnostics(self, out: &mut Vec<Diagnostic>) {
        for ((code, fact), (count, spans)) in self.by_check {
            let entries = if count == 1 {
                "1 entry".to_string()
            } else {
                format!("{count} entries")
            };
            let mut diagnostic = Diagnostic::warning(
                code,
                format!("{fact} not checked for {entries}: the provider cannot observe it"),
            )
            .with_help(format!("check {fact} at the site by hand before `apply`"));
            for span in spans {
                diagnostic = diagnostic.with_label(span, "not checked");
            }
            out.push(diagnostic);
        }
    }
}

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

/// The names one machine's checks need facts about.
pub fn refresh_request_for(plan: &Plan, assignment: &Assignment, m: usize) -> RefreshRequest {
    let (name, machine) = plan.machines.get_index(m);
    let mut esxi_hosts = Vec::new();
    let mut datastores = vec![machine.datastore.value.clone()];
    let mut master_targets = Vec::new();
    if let Some(mt) = assignment.machine_target.get(m).copied().flatten() {
        let (mt_name, target) = plan.master_targets.get_index(mt);
        master_targets.push(mt_name.value.clone());
        esxi_hosts.push(target.esxi_host.value.clone());
        datastores.extend(target.datastores.iter().map(|d| d.value.clone()));
    }
    datastores.sort_unstable();
    datastores.dedup();
    RefreshRequest {
        vcenter: plan.site.vcenter.value.clone(),
        configuration_server: plan.site.configuration_server.value.clone(),
        process_server: plan.site.process_server.value.clone(),
        esxi_hosts,
        datastores,
        master_targets,
        machines: vec![name.value.clone()],
        home_process_server: home_process_server(plan),
    }
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
    let pending = Pendings {
        offset: range.start,
        list: machines_in(plan, range.clone())
            .map(|(_, (name, _))| {
                facts
                    .machines
                    .get(name.value.as_str())
                    .map(|f| Pending::new(f.stage, goal))
            })
            .collect(),
    };
    let any = |pick: fn(Pending) -> bool| pending.list.iter().flatten().any(|p| pick(*p));
    let any_reprotect = any(|p| p.reprotect);
    let any_failback = any(|p| p.failback);
    let any_commit = any(|p| p.commit);
    let any_reprotect_home = any(|p| p.reprotect_home);
    let any_work = any(Pending::any);

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

/// A reprotected machine whose master target, datastore, retention drive or recovery type at
/// the site differs from the plan. ASR has no operation that changes them, and disabling
/// protection removes the item, after which the replica can never fail back (DESIGN.md §2),
/// so the only ways forward are the user's: put the plan's value back, or fail back with the
/// site's settings and change the plan afterwards. A setting the provider cannot tell is not
/// compared. The process server is not locked: it becomes a `switch-process-server` change.
fn locked_settings(
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

/// The ESXi host a machine's reprotect goes through: its master target's, as the site reports
/// it, or as the plan says when the site does not.
fn machine_host<'a>(
    plan: &'a Plan,
    assignment: &Assignment,
    facts: &'a Facts,
    m: usize,
) -> Option<&'a str> {
    let mt = assignment.machine_target[m]?;
    let (mt_name, target) = plan.master_targets.get_index(mt);
    let observed = facts
        .master_targets
        .get(mt_name.value.as_str())
        .and_then(|f| f.esxi_host.as_deref());
    Some(observed.unwrap_or(target.esxi_host.value.as_str()))
}

/// Where the VM starts at failback: the original VM's host (OLR), or the master target's
/// host where ALR created the new VM.
fn failback_host<'a>(check: &MachineCheck<'a>, machine: &Machine) -> Option<&'a str> {
    if machine.recovery() == Recovery::Original
        && let Some(vm) = &check.facts.vmware_vm
        && let Some(host) = &vm.esxi_host
    {
        return Some(host.as_str());
    }
    if let Some(settings) = &check.facts.settings
        && settings.recovery == Some(Recovery::Original)
        && let Some(vm) = &check.facts.vmware_vm
    {
        return vm.esxi_host.as_deref();
    }
    check.host
}

#[derive(Default)]
struct HostDemand {
    gib: u64,
    count: usize,
    spans: Vec<Span>,
}

impl HostDemand {
    fn add(&mut self, gib: u64, span: Span) {
        self.gib = self.gib.saturating_add(gib);
        self.count += 1;
        if self.spans.len() < MAX_LABELS {
            self.spans.push(span);
        }
    }
}

fn configuration_server(
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

fn process_server(
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
fn home(plan: &Plan, facts: &Facts, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
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

fn vcenter(
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

fn master_targets(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    pending: &Pendings,
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
enum Owner {
    MasterTarget(usize),
    Machine(usize),
}

fn disk_uuids(
    plan: &Plan,
    assignment: &Assignment,
    facts: &Facts,
    pending: &Pendings,
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

struct MachineCheck<'a> {
    name: &'a Spanned<String>,
    machine: &'a Spanned<Machine>,
    facts: &'a MachineFacts,
    /// The ESXi host of the machine's master target.
    host: Option<&'a str>,
}

impl MachineCheck<'_> {
    fn in_configuration_server(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
        match self.facts.in_configuration_server {
            Some(false) => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_CONFIGURATION_SERVER,
                    format!("machine `{}` is missing from the configuration server's database", self.name.value),
                )
                .with_label(self.name.span, "not in the configuration server's database")
                .with_help(format!(
                    "`{}` must still be registered with the configuration server for reprotect and failback; re-register it (do not remove it from the configuration server)",
                    self.name.value
                )),
            ),
            None => unchecked.note(codes::PREFLIGHT_CONFIGURATION_SERVER, "configuration-server registration", self.name.span),
            Some(true) => {}
        }
    }

    fn unsupported(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
        let f = self.facts;
        let mut reasons = Vec::new();
        match f.azure_replica {
            Some(AzureReplica::Present) => {}
            Some(AzureReplica::Deleted) => reasons.push("its Azure replica was deleted"),
            Some(AzureReplica::Unprotected) => reasons.push("its Azure replica is not protected"),
            Some(AzureReplica::Moved) => {
                reasons.push("its Azure VM was moved to another resource group")
            }
            None => unchecked.note(
                codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
                "the Azure replica",
                self.name.span,
            ),
        }
        match f.source {
            Some(SourceKind::Vmware) => {}
            Some(SourceKind::PhysicalWindows2008R2) => {
                reasons.push("it was a physical Windows Server 2008 R2 SP1 server")
            }
            Some(SourceKind::HyperV) => {
                reasons.push("it came from Hyper-V, and a failback to VMware is not possible")
            }
            None => unchecked.note(
                codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
                "the machine's source",
                self.name.span,
            ),
        }
        match f.migrated {
            Some(true) => reasons.push("it was migrated, not failed over"),
            None => unchecked.note(
                codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
                "migration status",
                self.name.span,
            ),
            Some(false) => {}
        }
        if self.machine.recovery() == Recovery::Original && self.facts.stage == Stage::FailedOver {
            match &f.vmware_vm {
                Some(vm) if !vm.exists => reasons.push("original-location recovery needs the original VMware VM, which no longer exists"),
                _ => {}
            }
        }
        if reasons.is_empty() {
            return;
        }
        let help = if reasons.iter().any(|r| r.starts_with("original-location"))
            && reasons.len() == 1
        {
            format!(
                "set `recovery: alternate` on `{}` to create a new VM on the master target's host",
                self.name.value
            )
        } else {
            format!(
                "ASR cannot fail back `{}`: remove it from the plan and recover it another way",
                self.name.value
            )
        };
        out.push(
            Diagnostic::error(
                codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
                format!(
                    "machine `{}` cannot be failed back: {}",
                    self.name.value,
                    reasons.join("; ")
                ),
            )
            .with_label(self.name.span, "failback not possible")
            .with_help(help),
        );
    }

    fn agent(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
        match self.facts.agent_registered {
            Some(false) => {
                let wait = match self.facts.agent_registers_in {
                    Some(d) => format!(" (in about {} s)", d.as_secs().max(1)),
                    None => String::new(),
                };
                out.push(
                    Diagnostic::warning(
                        codes::PREFLIGHT_AGENT_NOT_REGISTERED,
                        format!("the agent of machine `{}` has not registered with the configuration server yet", self.name.value),
                    )
                    .with_label(self.name.span, format!("agent not registered yet{wait}"))
                    .with_help("after a failover the agent needs up to 15 minutes to register; `apply` waits and retries the reprotect"),
                );
            }
            None => unchecked.note(
                codes::PREFLIGHT_AGENT_NOT_REGISTERED,
                "agent registration",
                self.name.span,
            ),
            Some(true) => {}
        }
    }

    fn powered_on(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
        let before = if self.facts.stage == Stage::FailedOver {
            "reprotect"
        } else {
            "failback"
        };
        match &self.facts.vmware_vm {
            Some(vm) if vm.exists => match vm.powered_on {
                Some(true) => out.push(
                    Diagnostic::error(
                        codes::PREFLIGHT_VM_POWERED_ON,
                        format!("the VMware VM of machine `{}` is powered on", self.name.value),
                    )
                    .with_label(self.name.span, format!("powered on before {before}"))
                    .with_help(format!(
                        "power off `{}` in vCenter and leave it off until failback; it must stay off while Azure replicates back to it",
                        self.name.value
                    )),
                ),
                None => unchecked.note(codes::PREFLIGHT_VM_POWERED_ON, "VMware power state", self.name.span),
                Some(false) => {}
            },
            Some(_) => {}
            None => unchecked.note(codes::PREFLIGHT_VM_POWERED_ON, "VMware power state", self.name.span),
        }
    }

    fn datastore(
        &self,
        plan: &Plan,
        assignment: &Assignment,
        facts: &Facts,
        m: usize,
        out: &mut Vec<Diagnostic>,
        unchecked: &mut Unchecked,
    ) {
        let ds = &self.machine.datastore;
        let Some(observed) = facts.datastores.get(ds.value.as_str()) else {
            out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_DATASTORE,
                    format!("datastore `{}` does not exist", ds.value),
                )
                .with_label(ds.span, "not found in vCenter")
                .with_help(format!(
                    "create `{}` or place `{}` on an existing datastore",
                    ds.value, self.name.value
                )),
            );
            return;
        };
        match observed.kind {
            Some(DatastoreType::Nfs) => out.push(
                Diagnostic::error(
                    codes::PREFLIGHT_DATASTORE,
                    format!(
                        "datastore `{}` is NFS, which failback does not support",
                        ds.value
                    ),
                )
                .with_label(ds.span, "an NFS datastore")
                .with_help(format!(
                    "place `{}` on a VMFS or vSAN datastore",
                    self.name.value
                )),
            ),
            None => unchecked.note(codes::PREFLIGHT_DATASTORE, "the datastore type", ds.span),
            Some(_) => {}
        }
        let Some(host) = self.host else { return };
        let Some(mounts) = facts
            .esxi_hosts
            .get(host)
            .and_then(|h| h.datastores.as_ref())
        else {
            if !facts.esxi_hosts.contains_key(host) {
                out.push(
                    Diagnostic::error(
                        codes::PREFLIGHT_DATASTORE,
                        format!("ESXi host `{host}` does not exist"),
                    )
                    .with_label(ds.span, format!("cannot be mounted on `{host}`"))
                    .with_help(format!(
                        "the master target of `{}` must run on an ESXi host vCenter knows",
                        self.name.value
                    )),
                );
            } else {
                unchecked.note(codes::PREFLIGHT_DATASTORE, "datastore mounts", ds.span);
            }
            return;
        };
        let mt_name = assignment.target_name(plan, m).unwrap_or("?");
        let mut mounted = |datastore: &str, span: Span, what: &str| match mounts.get(datastore) {
            Some(DatastoreAccess::ReadWrite) => {}
            access => {
                let how = if access.is_some() {
                    "mounted read-only"
                } else {
                    "not mounted"
                };
                out.push(
                    Diagnostic::error(
                        codes::PREFLIGHT_DATASTORE,
                        format!("{what} `{datastore}` is {how} on `{host}`, the ESXi host of master target `{mt_name}`"),
                    )
                    .with_label(span, format!("{how} on `{host}`"))
                    .with_help(format!(
                        "mount `{datastore}` read/write on ESXi host `{host}` in vCenter; otherwise ASR fails with 8061 (datastore not accessible)"
                    )),
                );
            }
        };
        mounted(ds.value.as_str(), ds.span, "datastore");
        // OLR writes into the original VM's disks: its datastore must be writable from the
        // master target's host too (the tutorial's "mount the VM's datastore read/write").
        if self.machine.recovery() == Recovery::Original
            && let Some(vm) = &self.facts.vmware_vm
            && let Some(vm_ds) = &vm.datastore
            && vm.exists
            && vm_ds != &ds.value
        {
            mounted(
                vm_ds.as_str(),
                self.name.span,
                "the original VM's datastore",
            );
        }
    }

    fn name_clash(&self, facts: &Facts, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
        if self.machine.recovery() != Recovery::Alternate {
            return;
        }
        let Some(host) = self.host else { return };
        let span = self
            .machine
            .recovery
            .as_ref()
            .map_or(self.name.span, |r| r.span);
        let on_host = facts
            .esxi_hosts
            .get(host)
            .and_then(|h| h.vms.as_ref())
            .map(|vms| vms.contains(&self.name.value));
        let original_here = self
            .facts
            .vmware_vm
            .as_ref()
            .is_some_and(|vm| vm.exists && vm.esxi_host.as_deref() == Some(host));
        match on_host {
            None if !original_here => unchecked.note(
                codes::PREFLIGHT_NAME_CLASH,
                "VM names on the master target's host",
                span,
            ),
            Some(false) if !original_here => {}
            _ => {
                out.push(
                    Diagnostic::error(
                        codes::PREFLIGHT_NAME_CLASH,
                        format!("a VM named `{}` already exists on ESXi host `{host}`", self.name.value),
                    )
                    .with_label(span, format!("alternate-location recovery creates `{}` on `{host}`", self.name.value))
                    .with_help(format!(
                        "rename or remove the existing VM `{}` on `{host}` in vCenter, or use `recovery: original` if it is the original VM (ASR 78052)",
                        self.name.value
                    )),
                );
            }
        }
    }
}

fn datastore_capacity(
    facts: &Facts,
    demand: &HashMap<&str, HostDemand>,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let mut names: Vec<&&str> = demand.keys().collect();
    names.sort_unstable();
    for name in names {
        let need = &demand[*name];
        let Some(observed) = facts.datastores.get(*name) else {
            continue;
        };
        match observed.free_gib {
            Some(free) if free == 0 || need.gib > free => {
                let mut diagnostic = Diagnostic::error(
                    codes::PREFLIGHT_DATASTORE,
                    format!(
                        "datastore `{name}` is full: {free} GiB free, {} GiB needed",
                        need.gib
                    ),
                );
                for span in &need.spans {
                    diagnostic = diagnostic.with_label(*span, "placed on this datastore");
                }
                out.push(diagnostic.with_help(format!(
                    "free at least {} GiB on `{name}`, or place some machines on another datastore; alternate-location recovery copies every disk in full",
                    need.gib.saturating_sub(free).max(1)
                )));
            }
            None => {
                if let Some(span) = need.spans.first() {
                    unchecked.note(codes::PREFLIGHT_DATASTORE, "free datastore space", *span);
                }
            }
            Some(_) => {}
        }
    }
}

fn esxi_memory(
    facts: &Facts,
    demand: &HashMap<&str, HostDemand>,
    out: &mut Vec<Diagnostic>,
    unchecked: &mut Unchecked,
) {
    let mut hosts: Vec<&&str> = demand.keys().collect();
    hosts.sort_unstable();
    for host in hosts {
        let need = &demand[*host];
        match facts.esxi_hosts.get(*host).and_then(|h| h.memory_free_gib) {
            Some(free) if need.gib > free => {
                let machines = if need.count == 1 {
                    "1 machine".to_string()
                } else {
                    format!("{} machines", need.count)
                };
                let mut diagnostic = Diagnostic::error(
                    codes::PREFLIGHT_ESXI_MEMORY,
                    format!(
                        "ESXi host `{host}` has {free} GiB of memory free; {machines} failing back to it need {} GiB",
                        need.gib
                    ),
                );
                for span in &need.spans {
                    diagnostic =
                        diagnostic.with_label(*span, format!("starts on `{host}` at failback"));
                }
                out.push(diagnostic.with_help(format!(
                    "free at least {} GiB of memory on `{host}` (or move VMs off it) before failback; otherwise ASR fails with 8038",
                    need.gib - free
                )));
            }
            Some(_) => {}
            None => {
                if let Some(span) = need.spans.first() {
                    unchecked.note(
                        codes::PREFLIGHT_ESXI_MEMORY,
                        "ESXi memory at failback",
                        *span,
                    );
                }
            }
        }
    }
}

fn maintenance_window(plan: &Plan, pending: &Pendings, now: Timestamp, out: &mut Vec<Diagnostic>) {
    let Some(window) = &plan.maintenance_window else {
        return;
    };
    let count = pending
        .list
        .iter()
        .flatten()
        .filter(|p| p.failback || p.commit)
        .count();
    let machines = if count == 1 {
        "1 machine".to_string()
    } else {
        format!("{count} machines")
    };
    if now >= window.end.value {
        out.push(
            Diagnostic::error(
                codes::PREFLIGHT_MAINTENANCE_WINDOW,
                format!("the maintenance window ended at {}; failback and commit of {machines} cannot run", window.end.value),
            )
            .with_label(window.end.span, "this window has passed")
            .with_help("agree a new window for the downtime and set `maintenance_window` to it"),
        );
    } else if now < window.start.value {
        out.push(
            Diagnostic::warning(
                codes::PREFLIGHT_MAINTENANCE_WINDOW,
                format!(
                    "the maintenance window opens at {}; failback and commit of {machines} will not run before then",
                    window.start.value
                ),
            )
            .with_label(window.start.span, "not open yet")
            .with_help("run `apply` inside the window, or set `goal: reprotected` to replicate now and fail back later"),
        );
    }
}
