//! Between the wire types and the engine's: both directions, since lifeboat is the client of
//! a plugin and `lifeboat provider serve` is the server of one.

use std::time::Duration;

use lifeboat_engine::provider::{self as engine, facts as ef};

use super::*;

impl From<&engine::RefreshRequest> for RefreshParams {
    fn from(r: &engine::RefreshRequest) -> Self {
        Self {
            vcenter: r.vcenter.clone(),
            configuration_server: r.configuration_server.clone(),
            process_server: r.process_server.clone(),
            home_process_server: r.home_process_server.clone(),
            esxi_hosts: r.esxi_hosts.clone(),
            datastores: r.datastores.clone(),
            master_targets: r.master_targets.clone(),
            machines: r.machines.clone(),
        }
    }
}

impl From<RefreshParams> for engine::RefreshRequest {
    fn from(r: RefreshParams) -> Self {
        Self {
            vcenter: r.vcenter,
            configuration_server: r.configuration_server,
            process_server: r.process_server,
            esxi_hosts: r.esxi_hosts,
            datastores: r.datastores,
            master_targets: r.master_targets,
            machines: r.machines,
            home_process_server: r.home_process_server,
        }
    }
}

impl From<RefreshResult> for engine::Facts {
    fn from(r: RefreshResult) -> Self {
        Self {
            configuration_server: r
                .configuration_server
                .map(|cs| ef::ConfigurationServerFacts {
                    connected: cs.connected,
                }),
            process_server: r.process_server.map(|ps| ef::ProcessServerFacts {
                healthy: ps.healthy,
            }),
            home_process_server: r.home_process_server.map(|ps| ef::ProcessServerFacts {
                healthy: ps.healthy,
            }),
            run_as_accounts: r.run_as_accounts,
            vcenter: r.vcenter.map(|vc| ef::VcenterFacts {
                connected: vc.connected,
                discovered: vc.discovered,
                account: vc.account,
                edition: vc.edition,
            }),
            esxi_hosts: r
                .esxi_hosts
                .into_iter()
                .map(|(name, h)| {
                    let host = ef::EsxiHostFacts {
                        vcenter: h.vcenter,
                        memory_free_gib: h.memory_free_gib,
                        datastores: h.datastores.map(|d| d.into_iter().collect()),
                        vms: h.vms.map(|v| v.into_iter().collect()),
                    };
                    (name, host)
                })
                .collect(),
            datastores: r
                .datastores
                .into_iter()
                .map(|(name, d)| {
                    let facts = ef::DatastoreFacts {
                        kind: d.kind,
                        free_gib: d.free_gib,
                    };
                    (name, facts)
                })
                .collect(),
            master_targets: r
                .master_targets
                .into_iter()
                .map(|(name, mt)| {
                    let facts = ef::MasterTargetFacts {
                        os: mt.os,
                        esxi_host: mt.esxi_host,
                        healthy: mt.healthy,
                        snapshots: mt.snapshots,
                        disks_attached: mt.disks_attached,
                        retention_volumes: mt.retention_volumes,
                        disk_uuids: mt.disk_uuids,
                    };
                    (name, facts)
                })
                .collect(),
            machines: r
                .machines
                .into_iter()
                .map(|(name, m)| (name, m.into()))
                .collect(),
        }
    }
}

impl From<MachineFacts> for ef::MachineFacts {
    fn from(m: MachineFacts) -> Self {
        Self {
            stage: m.stage,
            os: m.os,
            in_configuration_server: m.in_configuration_server,
            agent_registered: m.agent_registered,
            agent_registers_in: m.agent_registers_in_s.map(Duration::from_secs),
            azure_replica: m.azure_replica,
            source: m.source,
            migrated: m.migrated,
            vmware_vm: m.vmware_vm.map(|vm| ef::VmwareVmFacts {
                exists: vm.exists,
                powered_on: vm.powered_on,
                esxi_host: vm.esxi_host,
                datastore: vm.datastore,
            }),
            disk_uuids: m.disk_uuids,
            disks_gib: m.disks_gib,
            memory_gib: m.memory_gib,
            settings: m.settings.map(|s| ef::AppliedSettings {
                master_target: s.master_target,
                process_server: s.process_server,
                datastore: s.datastore,
                retention_drive: s.retention_drive,
                recovery: s.recovery,
            }),
            running: m.running.map(|r| ef::RunningFact {
                operation: engine::OperationId(r.id),
                kind: r.kind,
            }),
        }
    }
}

impl From<&engine::Facts> for RefreshResult {
    fn from(f: &engine::Facts) -> Self {
        Self {
            configuration_server: f.configuration_server.as_ref().map(|cs| {
                ConfigurationServerFacts {
                    connected: cs.connected,
                }
            }),
            process_server: f.process_server.as_ref().map(|ps| ProcessServerFacts {
                healthy: ps.healthy,
            }),
            home_process_server: f.home_process_server.as_ref().map(|ps| ProcessServerFacts {
                healthy: ps.healthy,
            }),
            run_as_accounts: f.run_as_accounts.clone(),
            vcenter: f.vcenter.as_ref().map(|vc| VcenterFacts {
                connected: vc.connected,
                discovered: vc.discovered,
                account: vc.account,
                edition: vc.edition,
            }),
            esxi_hosts: f
                .esxi_hosts
                .iter()
                .map(|(name, h)| {
                    let mut vms = h
                        .vms
                        .as_ref()
                        .map(|v| v.iter().cloned().collect::<Vec<_>>());
                    if let Some(vms) = &mut vms {
                        // A set in the engine; sorted on the wire so answers are stable.
                        vms.sort();
                    }
                    let host = EsxiHostFacts {
                        vcenter: h.vcenter.clone(),
                        memory_free_gib: h.memory_free_gib,
                        datastores: h
                            .datastores
                            .as_ref()
                            .map(|d| d.iter().map(|(k, v)| (k.clone(), *v)).collect()),
                        vms,
                    };
                    (name.clone(), host)
                })
                .collect(),
            datastores: f
                .datastores
                .iter()
                .map(|(name, d)| {
                    let facts = DatastoreFacts {
                        kind: d.kind,
                        free_gib: d.free_gib,
                    };
                    (name.clone(), facts)
                })
                .collect(),
            master_targets: f
                .master_targets
                .iter()
                .map(|(name, mt)| {
                    let facts = MasterTargetFacts {
                        os: mt.os,
                        esxi_host: mt.esxi_host.clone(),
                        healthy: mt.healthy,
                        snapshots: mt.snapshots,
                        disks_attached: mt.disks_attached,
                        retention_volumes: mt.retention_volumes.clone(),
                        disk_uuids: mt.disk_uuids.clone(),
                    };
                    (name.clone(), facts)
                })
                .collect(),
            machines: f
                .machines
                .iter()
                .map(|(name, m)| (name.clone(), m.into()))
                .collect(),
        }
    }
}

impl From<&ef::MachineFacts> for MachineFacts {
    fn from(m: &ef::MachineFacts) -> Self {
        Self {
            stage: m.stage,
            os: m.os,
            in_configuration_server: m.in_configuration_server,
            agent_registered: m.agent_registered,
            // Rounded up: "registers in 0 s" would read as registered.
            agent_registers_in_s: m
                .agent_registers_in
                .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0)),
            azure_replica: m.azure_replica,
            source: m.source,
            migrated: m.migrated,
            vmware_vm: m.vmware_vm.as_ref().map(|vm| VmwareVmFacts {
                exists: vm.exists,
                powered_on: vm.powered_on,
                esxi_host: vm.esxi_host.clone(),
                datastore: vm.datastore.clone(),
            }),
            disk_uuids: m.disk_uuids.clone(),
            disks_gib: m.disks_gib.clone(),
            memory_gib: m.memory_gib,
            settings: m.settings.as_ref().map(|s| AppliedSettings {
                master_target: s.master_target.clone(),
                process_server: s.process_server.clone(),
                datastore: s.datastore.clone(),
                retention_drive: s.retention_drive.clone(),
                recovery: s.recovery,
            }),
            running: m.running.as_ref().map(|r| RunningOperation {
                id: r.operation.0.clone(),
                kind: r.kind,
            }),
        }
    }
}

impl From<&engine::OperationRequest> for RunParams {
    fn from(r: &engine::OperationRequest) -> Self {
        Self {
            id: r.id.0.clone(),
            machine: r.machine.clone(),
            kind: r.kind,
            reprotect: r.reprotect.clone(),
        }
    }
}

impl From<RunParams> for engine::OperationRequest {
    fn from(r: RunParams) -> Self {
        Self {
            id: engine::OperationId(r.id),
            machine: r.machine,
            kind: r.kind,
            reprotect: r.reprotect,
        }
    }
}

impl From<ErrorKind> for engine::ErrorKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Transient => Self::Transient,
            ErrorKind::Permanent => Self::Permanent,
        }
    }
}

impl From<engine::ErrorKind> for ErrorKind {
    fn from(kind: engine::ErrorKind) -> Self {
        match kind {
            engine::ErrorKind::Transient => Self::Transient,
            engine::ErrorKind::Permanent => Self::Permanent,
        }
    }
}

/// A provider error as a JSON-RPC error object.
pub fn error_object(error: &engine::ProviderError) -> ErrorObject {
    let data = ProviderErrorData {
        kind: error.kind.into(),
        code: error.code.clone(),
        retry_after_ms: error
            .retry_after
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    ErrorObject {
        code: error_code::PROVIDER_ERROR,
        message: error.message.clone(),
        data: serde_json::to_value(data).ok(),
    }
}

impl From<&engine::OperationStatus> for StatusResult {
    fn from(status: &engine::OperationStatus) -> Self {
        let (status, error) = match status {
            engine::OperationStatus::Unknown => (OperationState::Unknown, None),
            engine::OperationStatus::Running => (OperationState::Running, None),
            engine::OperationStatus::Succeeded => (OperationState::Succeeded, None),
            engine::OperationStatus::Failed(error) => (
                OperationState::Failed,
                Some(StatusError {
                    message: error.message.clone(),
                    kind: error.kind.into(),
                    code: error.code.clone(),
                }),
            ),
        };
        Self { status, error }
    }
}

impl From<StatusResult> for engine::OperationStatus {
    fn from(result: StatusResult) -> Self {
        match result.status {
            OperationState::Unknown => Self::Unknown,
            OperationState::Running => Self::Running,
            OperationState::Succeeded => Self::Succeeded,
            OperationState::Failed => {
                let error = result.error.unwrap_or(StatusError {
                    message: "the plugin reports the operation failed, without saying why"
                        .to_string(),
                    kind: ErrorKind::Permanent,
                    code: None,
                });
                Self::Failed(engine::ProviderError {
                    kind: error.kind.into(),
                    code: error.code,
                    message: error.message,
                    retry_after: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_survive_the_wire_both_ways() {
        let mut facts = engine::Facts {
            run_as_accounts: Some(vec!["admin".into()]),
            ..Default::default()
        };
        let mut machine = ef::MachineFacts::unknown(Stage::Reprotected);
        machine.agent_registers_in = Some(Duration::from_secs(90));
        machine.settings = Some(ef::AppliedSettings {
            master_target: Some("mt".into()),
            ..Default::default()
        });
        facts.machines.insert("web-01".into(), machine);
        facts.esxi_hosts.insert(
            "esx-01".into(),
            ef::EsxiHostFacts {
                vms: Some(["b".to_string(), "a".to_string()].into_iter().collect()),
                ..Default::default()
            },
        );
        let wire = RefreshResult::from(&facts);
        let json = serde_json::to_string(&wire).expect("serialises");
        let back: RefreshResult = serde_json::from_str(&json).expect("parses");
        assert_eq!(engine::Facts::from(back), facts);
        // An unobservable fact is absent on the wire, never `null` or a default.
        assert!(!json.contains("null"), "{json}");
        assert!(!json.contains("\"os\""), "{json}");
    }
}
