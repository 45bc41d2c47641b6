//! The names preflight and apply ask the provider about, and the settings an operation sends.

use crate::assign::Assignment;
use crate::model::Plan;
use crate::provider::{HomeSettings, RefreshRequest, ReprotectSettings};

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
