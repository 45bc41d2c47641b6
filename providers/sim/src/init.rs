//! A healthy starting world for an estate: every machine `failed-over`, every fact healthy.
//!
//! The CLI describes the estate in an [`InitSpec`] built from the plan (the simulator never
//! reads the plan file itself). Names and shapes are taken from the spec; everything the plan
//! does not say (memory, free space, disk UUIDs) gets generous, deterministic values, so the
//! same plan always gives the same world apart from its timestamp.

use std::collections::BTreeMap;

use lifeboat_engine::Spanned;
use lifeboat_engine::model::{NamedMap, Os, Recovery, Timestamp};
use lifeboat_engine::provider::facts::{
    AccountAccess, AzureReplica, DatastoreAccess, DatastoreType, HypervisorEdition, SourceKind,
    Stage,
};

use crate::world::{
    ConfigurationServer, Datastore, EsxiHost, Machine, MasterTarget, ProcessServer,
    ReplicationGroup, Settings, Timing, Vcenter, VmwareVm, World,
};

/// The estate a world is made for.
#[derive(Debug, Clone, Default)]
pub struct InitSpec {
    pub vcenter: String,
    pub configuration_server: String,
    pub process_server: String,
    /// The leg home's process server and run-as account (`site.home`), when the plan names
    /// them.
    pub home: Option<(String, String)>,
    pub master_targets: Vec<InitMasterTarget>,
    pub machines: Vec<InitMachine>,
    /// Replication groups: name and members.
    pub replication_groups: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone)]
pub struct InitMasterTarget {
    pub name: String,
    pub os: Os,
    pub esxi_host: String,
    pub retention_drive: String,
    pub datastores: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct InitMachine {
    pub name: String,
    pub os: Os,
    pub recovery: Recovery,
    pub datastore: String,
    pub disks_gib: Vec<u64>,
    /// The master target the machine will use, when known: an OLR machine's original VM is
    /// placed on that target's host.
    pub master_target: Option<String>,
}

const MEMORY_GIB: u64 = 8;
const MIN_HOST_MEMORY_GIB: u64 = 1024;
const MIN_DATASTORE_FREE_GIB: u64 = 50_000;

/// Builds the world for `spec`, failed over at `now`.
pub fn world_for(spec: &InitSpec, now: Timestamp) -> World {
    let mut datastores: BTreeMap<String, Datastore> = BTreeMap::new();
    let mut add_datastore = |name: &str| {
        datastores
            .entry(name.to_string())
            .or_insert_with(|| Datastore {
                kind: if name.contains("vsan") {
                    DatastoreType::Vsan
                } else {
                    DatastoreType::Vmfs
                },
                free_gib: MIN_DATASTORE_FREE_GIB,
            });
    };
    for mt in &spec.master_targets {
        mt.datastores.iter().for_each(|d| add_datastore(d));
    }
    for machine in &spec.machines {
        add_datastore(&machine.datastore);
    }

    let host_of: BTreeMap<&str, &str> = spec
        .master_targets
        .iter()
        .map(|mt| (mt.name.as_str(), mt.esxi_host.as_str()))
        .collect();
    let fallback_host = spec.master_targets.first().map(|mt| mt.esxi_host.as_str());

    // Each host mounts the datastores of its master targets and of the machines they serve,
    // read/write, and has room for every VM that may start on it.
    let mut hosts: BTreeMap<String, EsxiHost> = BTreeMap::new();
    fn host_entry<'h>(
        hosts: &'h mut BTreeMap<String, EsxiHost>,
        vcenter: &str,
        name: &str,
    ) -> &'h mut EsxiHost {
        hosts.entry(name.to_string()).or_insert_with(|| EsxiHost {
            vcenter: Spanned::bare(vcenter.to_string()),
            memory_free_gib: MIN_HOST_MEMORY_GIB,
            datastores: NamedMap::new(),
            vms: Vec::new(),
        })
    }
    let mount = |host: &mut EsxiHost, datastore: &str| {
        if !host.datastores.names().any(|d| d == datastore) {
            host.datastores
                .insert(datastore.to_string(), DatastoreAccess::ReadWrite);
        }
    };
    for mt in &spec.master_targets {
        let host = host_entry(&mut hosts, &spec.vcenter, &mt.esxi_host);
        mt.datastores.iter().for_each(|d| mount(host, d));
        host.vms.push(mt.name.clone());
    }
    let mut memory: BTreeMap<&str, u64> = BTreeMap::new();
    let mut alr_gib: BTreeMap<&str, u64> = BTreeMap::new();
    for machine in &spec.machines {
        let host = machine
            .master_target
            .as_deref()
            .and_then(|mt| host_of.get(mt).copied())
            .or(fallback_host);
        if let Some(host) = host {
            mount(
                host_entry(&mut hosts, &spec.vcenter, host),
                &machine.datastore,
            );
            *memory.entry(host).or_default() += MEMORY_GIB;
        }
        if machine.recovery == Recovery::Alternate {
            *alr_gib.entry(machine.datastore.as_str()).or_default() +=
                machine.disks_gib.iter().sum::<u64>();
        }
    }
    for (host, need) in memory {
        if let Some(entry) = hosts.get_mut(host) {
            entry.memory_free_gib = entry.memory_free_gib.max(need * 2);
        }
    }
    for (name, need) in alr_gib {
        if let Some(ds) = datastores.get_mut(name) {
            ds.free_gib = ds.free_gib.max(need * 2);
        }
    }

    let master_targets = spec
        .master_targets
        .iter()
        .enumerate()
        .map(|(i, mt)| {
            (
                mt.name.clone(),
                MasterTarget {
                    os: mt.os,
                    esxi_host: Spanned::bare(mt.esxi_host.clone()),
                    healthy: true,
                    snapshots: 0,
                    disks_attached: 0,
                    retention_volumes: vec![mt.retention_drive.clone()],
                    disk_uuids: (0..2)
                        .map(|d| format!("6000c29a-0000-{:04x}-{d:04x}-000000000000", i & 0xffff))
                        .collect(),
                },
            )
        })
        .collect();

    let machines = spec
        .machines
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let host = m
                .master_target
                .as_deref()
                .and_then(|mt| host_of.get(mt).copied())
                .or(fallback_host);
            let original = m.recovery == Recovery::Original;
            let disks = m.disks_gib.len().max(1);
            (
                m.name.clone(),
                Machine {
                    os: m.os,
                    stage: Stage::FailedOver,
                    in_configuration_server: true,
                    agent_registers_in_s: 0,
                    azure_replica: AzureReplica::Present,
                    source: SourceKind::Vmware,
                    migrated: false,
                    vmware_vm: VmwareVm {
                        exists: original,
                        powered_on: false,
                        esxi_host: host
                            .filter(|_| original)
                            .map(|h| Spanned::bare(h.to_string())),
                        datastore: original.then(|| Spanned::bare(m.datastore.clone())),
                    },
                    disk_uuids: (0..disks)
                        .map(|d| {
                            format!(
                                "6000c29b-{:04x}-{:04x}-{d:04x}-000000000000",
                                (i >> 16) & 0xffff,
                                i & 0xffff
                            )
                        })
                        .collect(),
                    disks_gib: m.disks_gib.clone(),
                    memory_gib: MEMORY_GIB,
                    settings: Settings::default(),
                    timing: Default::default(),
                },
            )
        })
        .collect();

    World {
        configuration_server: ConfigurationServer {
            name: spec.configuration_server.clone(),
            connected: true,
            run_as_accounts: spec
                .home
                .iter()
                .map(|(_, account)| account.clone())
                .collect(),
        },
        process_servers: std::iter::once(&spec.process_server)
            .chain(spec.home.iter().map(|(ps, _)| ps))
            .map(|ps| (ps.clone(), ProcessServer { healthy: true }))
            .collect(),
        vcenters: BTreeMap::from([(
            spec.vcenter.clone(),
            Vcenter {
                connected: true,
                discovered: true,
                account: AccountAccess::ReadWrite,
                edition: HypervisorEdition::Licensed,
            },
        )]),
        esxi_hosts: hosts,
        datastores,
        master_targets,
        machines,
        replication_groups: spec
            .replication_groups
            .iter()
            .map(|(name, members)| {
                (
                    name.clone(),
                    ReplicationGroup {
                        machines: members.iter().cloned().map(Spanned::bare).collect(),
                    },
                )
            })
            .collect(),
        failed_over_at: Some(now),
        timing: Timing::default(),
        faults: Vec::new(),
        running: Vec::new(),
        history: Vec::new(),
        index: Default::default(),
    }
}
