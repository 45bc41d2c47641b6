//! The rules the simulated service enforces at run time, and the changes operations make.
//!
//! These checks are deliberately independent of lifeboat's preflight: a simulator that trusts
//! the planner proves nothing. Each refusal carries ASR's code where ASR documents one
//! (95226, 78052, 78093, 8061, 8038); other rule violations carry the simulator's code, which
//! is the name of the matching preflight check without its `preflight::` prefix:
//!
//! | code | refused when |
//! |---|---|
//! | `95226` | the configuration server is not connected |
//! | `configuration-server` | the machine is missing from the configuration server's database |
//! | `agent-not-registered` (transient) | the agent has not registered yet |
//! | `process-server` | the process server is missing or unhealthy |
//! | `master-target` | the master target is missing, unhealthy, of another OS, or over 60 disks |
//! | `master-target-snapshots` | the master target has snapshots |
//! | `retention-drive` | the retention drive is not a volume of the master target |
//! | `replication-group` | group members on different master targets or OS |
//! | `vcenter` | vCenter missing, not connected or not discovered |
//! | `vcenter-permissions` | read-only discovery account (reprotect only) |
//! | `disk-uuid-conflict` | a disk UUID shared with the master target or another machine |
//! | `datastore` | the datastore is missing, NFS, or too full |
//! | `8061` | the datastore is not mounted read/write on the ESXi host |
//! | `unsupported-failback` | any case of rule 8, or OLR without the original VM |
//! | `vm-powered-on` | the VMware VM is powered on before reprotect or failback |
//! | `78052` | ALR: a VM of that name exists on the master target's host |
//! | `8038` | not enough ESXi memory to start the VM at failback |
//! | `locked-setting` | a process-server switch that would also change the master target, datastore, retention drive or recovery type of a reprotected machine |
//! | `run-as-account` | the reprotect back to Azure names a run-as account the configuration server does not have |
//! | `settings` | an operation without the settings it needs (`site.home` for the reprotect back to Azure) |
//! | `stage` | the machine is not at the stage the operation starts from (a reprotected machine cannot be reprotected again: there is no replace) |
//! | `conflict` (transient) | another operation is running on the machine |

use std::collections::HashSet;
use std::time::Duration;

use lifeboat_engine::model::{Recovery, Timestamp};
use lifeboat_engine::provider::facts::{
    AccountAccess, AzureReplica, DatastoreAccess, DatastoreType, HypervisorEdition, SourceKind,
};
use lifeboat_engine::provider::{
    OperationKind, OperationRequest, ProviderError, ReprotectSettings, same_retention_drive,
};
use lifeboat_engine::{Spanned, assign::MAX_DISKS_PER_MASTER_TARGET};

use crate::world::{Machine, RunningOperation, Settings, World};

fn refuse(code: &str, message: String) -> ProviderError {
    ProviderError::permanent(Some(code.to_string()), message)
}

/// Whether a fault code is transient for lifeboat (DESIGN.md §1.2): throttling, server
/// errors, an agent not registered yet, a conflicting job. Everything else needs a person.
pub fn is_transient_code(code: &str) -> bool {
    match code.parse::<u16>() {
        Ok(status) => status == 429 || (500..=599).contains(&status),
        Err(_) => matches!(code, "agent-not-registered" | "conflict"),
    }
}

fn fault_message(code: &str, machine: &str) -> String {
    match code {
        "95226" => format!("the Azure VM `{machine}` cannot reach the configuration server"),
        "78052" => {
            format!("a VM named `{machine}` already exists on the master target's ESXi host")
        }
        "78093" => format!("the VM `{machine}` is not running, hung or not accessible"),
        "8061" => "the datastore is not accessible from the ESXi host".to_string(),
        "8038" => format!("not enough memory on the ESXi host to start `{machine}`"),
        "429" => "Azure throttled the request (HTTP 429)".to_string(),
        "agent-not-registered" => {
            format!("the agent of `{machine}` is not installed or not registered yet")
        }
        "conflict" => format!("another job is running on `{machine}`"),
        code if is_transient_code(code) => format!("Azure returned a server error (HTTP {code})"),
        code => format!("injected fault `{code}`"),
    }
}

/// When the machine's agent registers: `agent_registers_in_s` simulated seconds after the
/// failover, scaled like every other duration. `None`: it has registered already.
pub fn agent_registers_at(world: &World, machine: &Machine) -> Option<Timestamp> {
    if machine.agent_registers_in_s == 0 {
        return None;
    }
    let failed_over = world.failed_over_at?;
    Some(crate::world::after(
        failed_over,
        world.timing.real(machine.agent_registers_in_s),
    ))
}

/// Checks that `request` may start now, consuming an injected fault if one applies.
pub fn start(
    world: &mut World,
    now: Timestamp,
    request: &OperationRequest,
) -> Result<(), ProviderError> {
    let name = request.machine.as_str();
    if !world.machines.contains_key(name) {
        return Err(refuse(
            "unsupported-failback",
            format!("machine `{name}` is not a replicated item of this vault"),
        ));
    }
    if let Some(other) = world.running.iter().find(|op| op.machine == name) {
        return Err(ProviderError::transient(
            Some("conflict".to_string()),
            format!(
                "`{}` of `{name}` (operation `{}`) is still running",
                other.kind, other.id
            ),
        )
        .with_retry_after(Duration::from_secs(1)));
    }
    if let Some(index) = world
        .faults
        .iter()
        .position(|f| f.machine.value == name && f.operation == request.kind && f.times > 0)
    {
        let code = world.faults[index].code.0.clone();
        world.faults[index].times -= 1;
        if world.faults[index].times == 0 {
            world.faults.remove(index);
        }
        let message = fault_message(&code, name);
        return Err(if is_transient_code(&code) {
            let after = world.timing.real(30).try_into().unwrap_or(Duration::ZERO);
            ProviderError::transient(Some(code), message).with_retry_after(after)
        } else {
            ProviderError::permanent(Some(code), message)
        });
    }
    let machine = &world.machines[name];
    if machine.stage != request.kind.from_stage() {
        return Err(refuse(
            "stage",
            format!(
                "machine `{name}` is `{}`; `{}` starts from `{}`",
                machine.stage,
                request.kind,
                request.kind.from_stage()
            ),
        ));
    }
    match request.kind {
        OperationKind::Reprotect => {
            let Some(settings) = &request.reprotect else {
                return Err(refuse(
                    "settings",
                    format!("reprotect of `{name}` needs settings"),
                ));
            };
            reprotect(world, now, name, settings)
        }
        OperationKind::Failback => failback(world, name),
        OperationKind::Commit => Ok(()),
        OperationKind::ReprotectHome => reprotect_home(world, name, request.reprotect.as_ref()),
        OperationKind::SwitchProcessServer => {
            switch_process_server(world, name, request.reprotect.as_ref())
        }
    }
}

/// A process server that exists and is healthy, as ASR requires of every server it sends
/// replication through.
fn healthy_process_server(world: &World, ps: &str) -> Result<(), ProviderError> {
    match world.process_servers.get(ps) {
        None => Err(refuse(
            "process-server",
            format!("process server `{ps}` does not exist"),
        )),
        Some(server) if !server.healthy => Err(refuse(
            "process-server",
            format!("process server `{ps}` is unhealthy"),
        )),
        Some(_) => Ok(()),
    }
}

/// ASR's `reassociateGateway`: a reprotected machine's replication moves to another process
/// server. Nothing else of a reprotected machine can change (see [`locked`]).
fn switch_process_server(
    world: &World,
    name: &str,
    settings: Option<&ReprotectSettings>,
) -> Result<(), ProviderError> {
    let Some(settings) = settings else {
        return Err(refuse(
            "settings",
            format!("the process-server switch of `{name}` names no process server"),
        ));
    };
    let current = world.machines[name].settings.process_server.as_deref();
    if current == Some(settings.process_server.as_str()) {
        return Err(refuse(
            "process-server",
            format!(
                "machine `{name}` already replicates through process server `{}`",
                settings.process_server
            ),
        ));
    }
    healthy_process_server(world, &settings.process_server)?;
    locked(world, name, settings)
}

/// Refuses a change of the settings ASR cannot change on a reprotected machine: its master
/// target, datastore, retention drive and recovery type.
fn locked(world: &World, name: &str, settings: &ReprotectSettings) -> Result<(), ProviderError> {
    let applied = &world.machines[name].settings;
    let same = |site: Option<&str>, asked: &str| site.is_none_or(|site| site == asked);
    let drive_same = applied
        .retention_drive
        .as_deref()
        .is_none_or(|site| same_retention_drive(site, &settings.retention_drive));
    let recovery_same = applied
        .recovery
        .is_none_or(|site| site == settings.recovery);
    if same(applied.master_target.as_deref(), &settings.master_target)
        && same(applied.datastore.as_deref(), &settings.datastore)
        && drive_same
        && recovery_same
    {
        return Ok(());
    }
    Err(refuse(
        "locked-setting",
        format!(
            "machine `{name}` is reprotected: its master target, datastore, retention drive and recovery type cannot change"
        ),
    ))
}

/// The reprotect back to Azure (`InMageAzureV2ReprotectInput`): ASR needs the process server
/// on the VMware site and a run-as account of the configuration server.
fn reprotect_home(
    world: &World,
    name: &str,
    settings: Option<&ReprotectSettings>,
) -> Result<(), ProviderError> {
    configuration_server(world, name)?;
    let Some(home) = settings.and_then(|s| s.home.as_ref()) else {
        return Err(refuse(
            "settings",
            format!("the reprotect of `{name}` to Azure names no process server (`site.home`)"),
        ));
    };
    healthy_process_server(world, &home.process_server)?;
    if !world
        .configuration_server
        .run_as_accounts
        .contains(&home.run_as_account)
    {
        return Err(refuse(
            "run-as-account",
            format!(
                "configuration server `{}` has no run-as account `{}`",
                world.configuration_server.name, home.run_as_account
            ),
        ));
    }
    Ok(())
}

fn configuration_server(world: &World, name: &str) -> Result<(), ProviderError> {
    if !world.configuration_server.connected {
        return Err(refuse(
            "95226",
            format!(
                "the Azure VM `{name}` cannot reach configuration server `{}`: it is not connected",
                world.configuration_server.name
            ),
        ));
    }
    if !world.machines[name].in_configuration_server {
        return Err(refuse(
            "configuration-server",
            format!(
                "machine `{name}` is not in the database of configuration server `{}`",
                world.configuration_server.name
            ),
        ));
    }
    Ok(())
}

fn supported(world: &World, name: &str, host: Option<&str>) -> Result<(), ProviderError> {
    let machine = &world.machines[name];
    let reason = match (machine.azure_replica, machine.source, machine.migrated) {
        (AzureReplica::Deleted, _, _) => Some("its Azure replica was deleted"),
        (AzureReplica::Unprotected, _, _) => Some("its Azure replica is not protected"),
        (AzureReplica::Moved, _, _) => Some("its Azure VM was moved to another resource group"),
        (_, SourceKind::PhysicalWindows2008R2, _) => {
            Some("it was a physical Windows Server 2008 R2 SP1 server")
        }
        (_, SourceKind::HyperV, _) => Some("it came from Hyper-V"),
        (_, _, true) => Some("it was migrated"),
        _ => None,
    };
    if let Some(reason) = reason {
        return Err(refuse(
            "unsupported-failback",
            format!("machine `{name}` cannot be failed back: {reason}"),
        ));
    }
    let vcenter = host
        .and_then(|h| world.esxi_hosts.get(h))
        .and_then(|h| world.vcenters.get(&h.vcenter.value));
    if let Some(vc) = vcenter
        && vc.edition != HypervisorEdition::Licensed
    {
        return Err(refuse(
            "unsupported-failback",
            format!(
                "failback to the free hypervisor edition `{}` is not supported",
                vc.edition.as_str()
            ),
        ));
    }
    Ok(())
}

fn vcenter_of(world: &World, host: &str, reprotect: bool) -> Result<(), ProviderError> {
    let Some(esxi) = world.esxi_hosts.get(host) else {
        return Err(refuse(
            "vcenter",
            format!("ESXi host `{host}` is not managed by any discovered vCenter"),
        ));
    };
    let vc_name = &esxi.vcenter.value;
    let Some(vc) = world.vcenters.get(vc_name) else {
        return Err(refuse(
            "vcenter",
            format!("vCenter `{vc_name}` is not known to the configuration server"),
        ));
    };
    if !vc.connected {
        return Err(refuse(
            "vcenter",
            format!("vCenter `{vc_name}` is not connected"),
        ));
    }
    if !vc.discovered {
        return Err(refuse(
            "vcenter",
            format!("vCenter `{vc_name}` has not been discovered"),
        ));
    }
    if reprotect && vc.account == AccountAccess::ReadOnly {
        return Err(refuse(
            "vcenter-permissions",
            format!(
                "datastores of vCenter `{vc_name}` cannot be discovered with its read-only account"
            ),
        ));
    }
    Ok(())
}

fn mounted(world: &World, host: &str, datastore: &str) -> Result<(), ProviderError> {
    let access = world.esxi_hosts.get(host).and_then(|h| {
        h.datastores
            .iter()
            .find(|(k, _)| k.value == datastore)
            .map(|(_, v)| v.value)
    });
    match access {
        Some(DatastoreAccess::ReadWrite) => Ok(()),
        _ => Err(refuse(
            "8061",
            format!("datastore `{datastore}` is not accessible read/write from ESXi host `{host}`"),
        )),
    }
}

fn reprotect(
    world: &World,
    now: Timestamp,
    name: &str,
    settings: &ReprotectSettings,
) -> Result<(), ProviderError> {
    let machine = &world.machines[name];
    let mt_name = settings.master_target.as_str();
    let Some(mt) = world.master_targets.get(mt_name) else {
        return Err(refuse(
            "master-target",
            format!("master target `{mt_name}` does not exist"),
        ));
    };
    let host = mt.esxi_host.value.as_str();
    supported(world, name, Some(host))?;
    configuration_server(world, name)?;
    if let Some(at) = agent_registers_at(world, machine)
        && at > now
    {
        let left: Duration =
            at.0.duration_since(now.0)
                .try_into()
                .unwrap_or(Duration::ZERO);
        return Err(ProviderError::transient(
            Some("agent-not-registered".to_string()),
            format!("the agent of `{name}` is not installed: it has not registered with the configuration server yet"),
        )
        .with_retry_after(left));
    }
    match world.process_servers.get(&settings.process_server) {
        None => {
            return Err(refuse(
                "process-server",
                format!(
                    "process server `{}` does not exist",
                    settings.process_server
                ),
            ));
        }
        Some(ps) if !ps.healthy => {
            return Err(refuse(
                "process-server",
                format!("process server `{}` is unhealthy", settings.process_server),
            ));
        }
        Some(_) => {}
    }
    if !mt.healthy {
        return Err(refuse(
            "master-target",
            format!("master target `{mt_name}` is unhealthy"),
        ));
    }
    if mt.os != machine.os {
        return Err(refuse(
            "master-target",
            format!(
                "master target `{mt_name}` runs {}; the {} machine `{name}` needs a {} master target",
                mt.os, machine.os, machine.os
            ),
        ));
    }
    if mt.snapshots > 0 {
        return Err(refuse(
            "master-target-snapshots",
            format!("master target `{mt_name}` has {} snapshots", mt.snapshots),
        ));
    }
    let disks = mt.disks_attached as usize + machine.disk_count() as usize;
    if disks > MAX_DISKS_PER_MASTER_TARGET {
        return Err(refuse(
            "master-target",
            format!(
                "master target `{mt_name}` would serve {disks} disks, more than {MAX_DISKS_PER_MASTER_TARGET}"
            ),
        ));
    }
    if !mt
        .retention_volumes
        .iter()
        .any(|v| same_retention_drive(v, &settings.retention_drive))
    {
        return Err(refuse(
            "retention-drive",
            format!(
                "retention drive `{}` is not a volume of master target `{mt_name}`",
                settings.retention_drive
            ),
        ));
    }
    replication_group(world, name, mt_name)?;
    vcenter_of(world, host, true)?;
    disk_uuids(world, name, mt_name)?;

    let ds_name = settings.datastore.as_str();
    let Some(ds) = world.datastores.get(ds_name) else {
        return Err(refuse(
            "datastore",
            format!("datastore `{ds_name}` does not exist"),
        ));
    };
    if ds.kind == DatastoreType::Nfs {
        return Err(refuse(
            "datastore",
            format!("datastore `{ds_name}` is NFS, which failback does not support"),
        ));
    }
    mounted(world, host, ds_name)?;
    let vm = &machine.vmware_vm;
    match settings.recovery {
        Recovery::Original => {
            if !vm.exists {
                return Err(refuse(
                    "unsupported-failback",
                    format!(
                        "original-location recovery of `{name}` needs the original VMware VM, which does not exist"
                    ),
                ));
            }
            if let Some(vm_ds) = &vm.datastore {
                mounted(world, host, &vm_ds.value)?;
            }
        }
        Recovery::Alternate => {
            let on_host = vm.exists && vm.esxi_host.as_ref().is_some_and(|h| h.value == host);
            let registered = world
                .esxi_hosts
                .get(host)
                .is_some_and(|h| h.vms.iter().any(|v| v == name));
            if on_host || registered {
                return Err(refuse(
                    "78052",
                    format!("a VM named `{name}` already exists on ESXi host `{host}`"),
                ));
            }
            if ds.free_gib < machine.disk_total_gib() {
                return Err(refuse(
                    "datastore",
                    format!(
                        "datastore `{ds_name}` has {} GiB free, `{name}` needs {} GiB",
                        ds.free_gib,
                        machine.disk_total_gib()
                    ),
                ));
            }
        }
    }
    if vm.exists && vm.powered_on {
        return Err(refuse(
            "vm-powered-on",
            format!("the VMware VM `{name}` is powered on; power it off before reprotect"),
        ));
    }
    Ok(())
}

/// Rule 1 at run time: a group's members share one OS and one master target, whichever member
/// is reprotected first.
fn replication_group(world: &World, name: &str, mt_name: &str) -> Result<(), ProviderError> {
    let Some((group_name, group)) = world
        .index
        .group_of(world, name)
        .and_then(|group| world.replication_groups.get_key_value(group))
    else {
        return Ok(());
    };
    let os = world.machines[name].os;
    for member in &group.machines {
        let Some(other) = world.machines.get(&member.value) else {
            continue;
        };
        if member.value == name {
            continue;
        }
        if other.os != os {
            return Err(refuse(
                "replication-group",
                format!(
                    "replication group `{group_name}` mixes {os} `{name}` and {} `{}`",
                    other.os, member.value
                ),
            ));
        }
        let running_on = world
            .running
            .iter()
            .find(|op| op.machine == member.value && op.kind == OperationKind::Reprotect)
            .and_then(|op| op.settings.as_ref().map(|s| s.master_target.as_str()));
        let applied = if other.stage > lifeboat_engine::provider::Stage::FailedOver {
            other.settings.master_target.as_deref()
        } else {
            None
        };
        if let Some(theirs) = running_on.or(applied)
            && theirs != mt_name
        {
            return Err(refuse(
                "replication-group",
                format!(
                    "replication group `{group_name}` uses master target `{theirs}` (for `{}`), not `{mt_name}`",
                    member.value
                ),
            ));
        }
    }
    Ok(())
}

fn disk_uuids(world: &World, name: &str, mt_name: &str) -> Result<(), ProviderError> {
    let mine: HashSet<&str> = world.machines[name]
        .disk_uuids
        .iter()
        .map(String::as_str)
        .collect();
    if let Some(uuid) = world.master_targets[mt_name]
        .disk_uuids
        .iter()
        .find(|u| mine.contains(u.as_str()))
    {
        return Err(refuse(
            "disk-uuid-conflict",
            format!("disk UUID `{uuid}` of `{name}` is also a disk of master target `{mt_name}`"),
        ));
    }
    // The first other machine in name order that shares a disk, found through the index of
    // disk owners rather than by reading every machine.
    let other_name = mine
        .iter()
        .flat_map(|uuid| world.index.disk_owners(world, uuid))
        .filter(|owner| owner.as_str() != name)
        .min();
    if let Some(other_name) = other_name
        && let Some(other) = world.machines.get(other_name)
        && let Some(uuid) = other.disk_uuids.iter().find(|u| mine.contains(u.as_str()))
    {
        return Err(refuse(
            "disk-uuid-conflict",
            format!("disk UUID `{uuid}` of `{name}` is also a disk of `{other_name}`"),
        ));
    }
    Ok(())
}

/// The ESXi host where the VM starts at failback.
fn failback_host(machine: &Machine) -> Option<&str> {
    machine
        .vmware_vm
        .esxi_host
        .as_ref()
        .map(|h| h.value.as_str())
}

fn failback(world: &World, name: &str) -> Result<(), ProviderError> {
    let machine = &world.machines[name];
    let host = failback_host(machine);
    supported(world, name, host)?;
    configuration_server(world, name)?;
    let Some(host) = host else {
        return Err(refuse(
            "unsupported-failback",
            format!("machine `{name}` has no VMware VM to fail back to"),
        ));
    };
    vcenter_of(world, host, false)?;
    if machine.vmware_vm.powered_on {
        return Err(refuse(
            "vm-powered-on",
            format!("the VMware VM `{name}` was powered on after reprotect"),
        ));
    }
    if let Some(ds) = &machine.vmware_vm.datastore {
        mounted(world, host, &ds.value)?;
    }
    let free = world.esxi_hosts.get(host).map_or(0, |h| h.memory_free_gib);
    if free < machine.memory_gib {
        return Err(refuse(
            "8038",
            format!(
                "ESXi host `{host}` has {free} GiB of memory free; `{name}` needs {} GiB",
                machine.memory_gib
            ),
        ));
    }
    Ok(())
}

/// Applies a finished operation to the world, as ASR changes the estate.
pub fn complete(world: &mut World, op: &RunningOperation) -> Result<(), ProviderError> {
    let Some(machine) = world.machines.get(&op.machine) else {
        return Err(refuse(
            "unsupported-failback",
            format!(
                "machine `{}` disappeared while `{}` ran",
                op.machine, op.kind
            ),
        ));
    };
    let disks = machine.disk_count();
    let memory = machine.memory_gib;
    let total = machine.disk_total_gib();
    match op.kind {
        OperationKind::Reprotect => {
            let Some(settings) = op.settings.clone() else {
                return Err(refuse(
                    "settings",
                    format!("reprotect of `{}` lost its settings", op.machine),
                ));
            };
            let host = world
                .master_targets
                .get(&settings.master_target)
                .map(|mt| mt.esxi_host.value.clone());
            if let Some(mt) = world.master_targets.get_mut(&settings.master_target) {
                mt.disks_attached = mt.disks_attached.saturating_add(disks);
            }
            if settings.recovery == Recovery::Alternate
                && let Some(ds) = world.datastores.get_mut(&settings.datastore)
            {
                ds.free_gib = ds.free_gib.saturating_sub(total);
            }
            let machine = world.machines.get_mut(&op.machine).expect("checked above");
            if settings.recovery == Recovery::Alternate {
                // ALR creates a new VM on the master target's host and datastore.
                machine.vmware_vm.exists = true;
                machine.vmware_vm.esxi_host = host.map(Spanned::bare);
                machine.vmware_vm.datastore = Some(Spanned::bare(settings.datastore.clone()));
            }
            // The VMware VM is powered off for the reprotect and must stay off until failback.
            machine.vmware_vm.powered_on = false;
            machine.settings = Settings {
                master_target: Some(settings.master_target),
                process_server: Some(settings.process_server),
                datastore: Some(settings.datastore),
                retention_drive: Some(settings.retention_drive),
                recovery: Some(settings.recovery),
                failback_policy: Some(settings.failback_policy),
            };
        }
        OperationKind::Failback => {
            let mt = machine.settings.master_target.clone();
            let host = failback_host(machine).map(str::to_string);
            if let Some(mt) = mt.and_then(|mt| world.master_targets.get_mut(&mt)) {
                mt.disks_attached = mt.disks_attached.saturating_sub(disks);
            }
            if let Some(host) = host.and_then(|h| world.esxi_hosts.get_mut(&h)) {
                host.memory_free_gib = host.memory_free_gib.saturating_sub(memory);
            }
            // The Azure VM is shut down and the VMware VM started: application downtime.
            world
                .machines
                .get_mut(&op.machine)
                .expect("checked above")
                .vmware_vm
                .powered_on = true;
        }
        OperationKind::Commit => {
            // Committing removes the Azure replica.
            world
                .machines
                .get_mut(&op.machine)
                .expect("checked above")
                .azure_replica = AzureReplica::Deleted;
        }
        OperationKind::ReprotectHome => {}
        OperationKind::SwitchProcessServer => {
            if let Some(settings) = &op.settings {
                world
                    .machines
                    .get_mut(&op.machine)
                    .expect("checked above")
                    .settings
                    .process_server = Some(settings.process_server.clone());
            }
        }
    }
    world
        .machines
        .get_mut(&op.machine)
        .expect("checked above")
        .stage = op.kind.to_stage();
    Ok(())
}
