//! A small estate shared by the simulator's tests: one Linux master target on `esx-01`, an
//! OLR machine `web-01`, an ALR machine `app-01`, and a replication group `pair` of `db-01`
//! and `db-02`.

#![allow(dead_code)]

use std::path::PathBuf;

use lifeboat_engine::model::{Os, Recovery, Timestamp};
use lifeboat_engine::provider::{OperationKind, OperationRequest, ReprotectSettings};
use lifeboat_provider_sim::init::{InitMachine, InitMasterTarget, InitSpec, world_for};
use lifeboat_provider_sim::{SimProvider, World, store};

pub fn spec() -> InitSpec {
    let machine = |name: &str, recovery, disks: Vec<u64>| InitMachine {
        name: name.to_string(),
        os: Os::Linux,
        recovery,
        datastore: "vsan-01".to_string(),
        disks_gib: disks,
        master_target: Some("mt-linux-01".to_string()),
    };
    let mt = |name: &str, host: &str| InitMasterTarget {
        name: name.to_string(),
        os: Os::Linux,
        esxi_host: host.to_string(),
        retention_drive: "/mnt/retention".to_string(),
        datastores: vec!["vsan-01".to_string()],
    };
    InitSpec {
        vcenter: "vc-01".to_string(),
        configuration_server: "cs-01".to_string(),
        process_server: "ps-01".to_string(),
        home: Some(("ps-home-01".to_string(), "vmware-admin".to_string())),
        master_targets: vec![mt("mt-linux-01", "esx-01"), mt("mt-linux-02", "esx-01")],
        machines: vec![
            machine("web-01", Recovery::Original, vec![64, 256]),
            machine("app-01", Recovery::Alternate, vec![64]),
            machine("db-01", Recovery::Original, vec![128]),
            machine("db-02", Recovery::Original, vec![128]),
        ],
        replication_groups: vec![(
            "pair".to_string(),
            vec!["db-01".to_string(), "db-02".to_string()],
        )],
    }
}

/// A healthy world in a temporary directory, changed by `edit`.
pub fn world(edit: impl FnOnce(&mut World)) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("world.yaml");
    let mut world = world_for(&spec(), Timestamp(jiff::Timestamp::now()));
    edit(&mut world);
    store::write(&path, &world).expect("the world is written");
    (dir, path)
}

pub fn provider(path: &PathBuf) -> SimProvider {
    SimProvider::open(path).expect("the world opens")
}

pub fn settings(master_target: &str, recovery: Recovery) -> ReprotectSettings {
    ReprotectSettings {
        master_target: master_target.to_string(),
        process_server: "ps-01".to_string(),
        datastore: "vsan-01".to_string(),
        retention_drive: "/mnt/retention".to_string(),
        recovery,
        failback_policy: "auto".to_string(),
        home: Some(lifeboat_engine::provider::HomeSettings {
            process_server: "ps-home-01".to_string(),
            run_as_account: "vmware-admin".to_string(),
            policy: "auto".to_string(),
        }),
    }
}

pub fn request(id: &str, machine: &str, kind: OperationKind) -> OperationRequest {
    let recovery = if machine == "app-01" {
        Recovery::Alternate
    } else {
        Recovery::Original
    };
    OperationRequest {
        id: id.into(),
        machine: machine.to_string(),
        kind,
        reprotect: matches!(
            kind,
            OperationKind::Reprotect | OperationKind::ReprotectHome
        )
        .then(|| settings("mt-linux-01", recovery)),
    }
}

pub fn reprotect(machine: &str) -> OperationRequest {
    request(
        &format!("reprotect-{machine}"),
        machine,
        OperationKind::Reprotect,
    )
}
