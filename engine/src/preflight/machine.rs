//! The checks of one machine against its own facts: registration, support for failback,
//! power, the agent, its datastore and a name clash on the ESXi host.

use super::unchecked::Unchecked;
use crate::assign::Assignment;
use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Machine, Plan, Recovery};
use crate::provider::facts::{
    AzureReplica, DatastoreAccess, DatastoreType, Facts, MachineFacts, SourceKind, Stage,
};
use crate::span::{Span, Spanned};

/// The ESXi host a machine's reprotect goes through: its master target's, as the site reports
/// it, or as the plan says when the site does not.
pub(super) fn machine_host<'a>(
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
pub(super) fn failback_host<'a>(check: &MachineCheck<'a>, machine: &Machine) -> Option<&'a str> {
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

pub(super) struct MachineCheck<'a> {
    pub(super) name: &'a Spanned<String>,
    pub(super) machine: &'a Spanned<Machine>,
    pub(super) facts: &'a MachineFacts,
    /// The ESXi host of the machine's master target.
    pub(super) host: Option<&'a str>,
}

impl MachineCheck<'_> {
    pub(super) fn in_configuration_server(
        &self,
        out: &mut Vec<Diagnostic>,
        unchecked: &mut Unchecked,
    ) {
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

    pub(super) fn unsupported(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
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

    pub(super) fn agent(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
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

    pub(super) fn powered_on(&self, out: &mut Vec<Diagnostic>, unchecked: &mut Unchecked) {
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

    pub(super) fn datastore(
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

    pub(super) fn name_clash(
        &self,
        facts: &Facts,
        out: &mut Vec<Diagnostic>,
        unchecked: &mut Unchecked,
    ) {
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
