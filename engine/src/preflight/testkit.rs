//! A small estate for the preflight modules' unit tests: a plan, and facts in which every
//! check passes, so each test breaks exactly one fact and sees exactly its diagnostic.

use std::collections::{HashMap, HashSet};

use crate::diagnostic::Diagnostic;
use crate::model::{Os, Plan};
use crate::provider::facts::{
    AccountAccess, AzureReplica, ConfigurationServerFacts, DatastoreAccess, DatastoreFacts,
    DatastoreType, EsxiHostFacts, Facts, HypervisorEdition, MachineFacts, MasterTargetFacts,
    ProcessServerFacts, SourceKind, Stage, VcenterFacts, VmwareVmFacts,
};
use crate::validate::{self, Validation};
use crate::{SourceFile, load};

pub const PLAN: &str = "\
version: 1
name: unit
provider: {sim: {world: world.yaml}}
goal: committed
site: {vcenter: vc-01, configuration_server: cs-01, process_server: ps-01}
master_targets:
  mt-linux-01: {os: linux, esxi_host: esx-01, retention_drive: /mnt/retention, datastores: [vsan-01]}
machines:
  web-01: {os: linux, datastore: vsan-01, disks_gib: [64]}
  web-02: {os: linux, datastore: vsan-01, disks_gib: [32, 32]}
maintenance_window: {start: 2026-12-05T22:00:00Z, end: 2026-12-06T04:00:00Z}
";

pub struct Estate {
    pub file: SourceFile,
    pub plan: Plan,
    pub validation: Validation,
}

impl Estate {
    pub fn new() -> Self {
        Self::from(PLAN)
    }

    pub fn from(text: &str) -> Self {
        let file = SourceFile::new("plan.yaml", "plan.yaml", text.to_string());
        let plan = load::load_plan(&file).expect("the plan loads");
        let validation = validate::validate(&plan);
        assert!(!validation.has_errors(), "{:#?}", validation.diagnostics);
        Self {
            file,
            plan,
            validation,
        }
    }

    /// The text a diagnostic's first label points at.
    pub fn labelled<'a>(&'a self, diagnostic: &Diagnostic) -> &'a str {
        let span = diagnostic.labels.first().expect("a label").span;
        &self.file.text()[span.start..span.end]
    }
}

/// Facts in which every check of the unit estate passes, with every machine at `stage`.
pub fn healthy(stage: Stage) -> Facts {
    let machine = |name: &str, uuid: &str, disks: Vec<u64>| {
        let facts = MachineFacts {
            stage,
            os: Some(Os::Linux),
            in_configuration_server: Some(true),
            agent_registered: Some(true),
            agent_registers_in: None,
            azure_replica: Some(AzureReplica::Present),
            source: Some(SourceKind::Vmware),
            migrated: Some(false),
            vmware_vm: Some(VmwareVmFacts {
                exists: true,
                powered_on: Some(false),
                esxi_host: Some("esx-01".to_string()),
                datastore: Some("vsan-01".to_string()),
            }),
            disk_uuids: Some(vec![uuid.to_string()]),
            disks_gib: Some(disks),
            memory_gib: Some(8),
            settings: None,
            running: None,
        };
        (name.to_string(), facts)
    };
    Facts {
        configuration_server: Some(ConfigurationServerFacts {
            connected: Some(true),
        }),
        process_server: Some(ProcessServerFacts {
            healthy: Some(true),
        }),
        home_process_server: None,
        run_as_accounts: None,
        vcenter: Some(VcenterFacts {
            connected: Some(true),
            discovered: Some(true),
            account: Some(AccountAccess::ReadWrite),
            edition: Some(HypervisorEdition::Licensed),
        }),
        esxi_hosts: HashMap::from([(
            "esx-01".to_string(),
            EsxiHostFacts {
                vcenter: Some("vc-01".to_string()),
                memory_free_gib: Some(64),
                datastores: Some(HashMap::from([(
                    "vsan-01".to_string(),
                    DatastoreAccess::ReadWrite,
                )])),
                vms: Some(HashSet::from(["mt-linux-01".to_string()])),
            },
        )]),
        datastores: HashMap::from([(
            "vsan-01".to_string(),
            DatastoreFacts {
                kind: Some(DatastoreType::Vsan),
                free_gib: Some(1024),
            },
        )]),
        master_targets: HashMap::from([(
            "mt-linux-01".to_string(),
            MasterTargetFacts {
                os: Some(Os::Linux),
                esxi_host: Some("esx-01".to_string()),
                healthy: Some(true),
                snapshots: Some(0),
                disks_attached: Some(0),
                retention_volumes: Some(vec!["/mnt/retention".to_string()]),
                disk_uuids: Some(vec!["uuid-mt".to_string()]),
            },
        )]),
        machines: HashMap::from([
            machine("web-01", "uuid-web-01", vec![64]),
            machine("web-02", "uuid-web-02", vec![32, 32]),
        ]),
    }
}

/// The codes of `diagnostics`, in order.
pub fn codes(diagnostics: &[Diagnostic]) -> Vec<&'static str> {
    diagnostics.iter().map(|d| d.code).collect()
}
