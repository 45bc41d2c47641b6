//! `lifeboat plan` runs every preflight check against the refreshed facts. Each test makes a
//! healthy world with `lifeboat sim init`, breaks exactly one fact, and expects exactly that
//! diagnostic code (and no other).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use lifeboat_engine::diagnostic::codes;
use lifeboat_engine::provider::facts::{
    AccountAccess, AzureReplica, DatastoreAccess, DatastoreType,
};
use lifeboat_provider_sim::{World, store};

/// A small estate: an OLR machine `web-01`, an ALR machine `app-01`, one Linux master target.
const PLAN: &str = "\
version: 1
name: preflight-test
provider:
  sim:
    world: .lifeboat/world.yaml
goal: GOAL
site:
  vcenter: vc-01
  configuration_server: cs-01
  process_server: ps-01
  home: {process_server: ps-home-01, run_as_account: vmware-admin}
master_targets:
  mt-linux-01:
    os: linux
    esxi_host: esx-01
    retention_drive: /mnt/retention
    datastores: [vsan-01]
machines:
  web-01:
    os: linux
    datastore: vsan-01
    disks_gib: [64, 256]
  app-01:
    os: linux
    recovery: alternate
    datastore: vsan-01
    disks_gib: [64]
WINDOW";

pub struct Estate {
    pub dir: tempfile::TempDir,
}

impl Estate {
    /// Writes the plan (with `goal` and an optional extra block) and runs `lifeboat sim init`.
    pub fn new(goal: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let plan = PLAN.replace("GOAL", goal).replace("WINDOW", extra);
        std::fs::write(dir.path().join("lifeboat.yaml"), plan).expect("the plan is written");
        let estate = Self { dir };
        estate.lifeboat(&["sim", "init"]).assert().success();
        estate
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn world_path(&self) -> PathBuf {
        self.path().join(".lifeboat/world.yaml")
    }

    pub fn lifeboat(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("lifeboat").expect("the binary is built");
        command
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .args(args);
        command
    }

    pub fn edit(&self, change: impl FnOnce(&mut World)) {
        let mut world = store::read(&self.world_path()).expect("the world reads");
        change(&mut world);
        store::write(&self.world_path(), &world).expect("the world is written");
    }

    pub fn plan(&self) -> Output {
        self.lifeboat(&["plan"]).output().expect("lifeboat runs")
    }
}

/// Every `preflight::*` code in the output.
fn preflight_codes(output: &Output) -> BTreeSet<String> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr
        .split(|c: char| c.is_whitespace() || c == '[' || c == ']')
        .filter(|word| word.starts_with("preflight::"))
        .map(str::to_string)
        .collect()
}

/// Breaks one fact and checks that exactly `code` is reported.
fn breaks(code: &str, goal: &str, extra: &str, change: impl FnOnce(&mut World)) -> Output {
    let estate = Estate::new(goal, extra);
    estate.edit(change);
    let output = estate.plan();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        preflight_codes(&output),
        BTreeSet::from([code.to_string()]),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

/// Breaks one fact that is an error: exit 1, and the rendered diagnostic as a snapshot.
fn error(name: &str, code: &str, change: impl FnOnce(&mut World)) {
    error_with(name, code, "reprotected", "", change);
}

fn error_with(name: &str, code: &str, goal: &str, extra: &str, change: impl FnOnce(&mut World)) {
    let output = breaks(code, goal, extra, change);
    assert_eq!(output.status.code(), Some(1), "an error fails `plan`");
    insta::assert_snapshot!(name, String::from_utf8_lossy(&output.stderr));
}

#[test]
fn a_healthy_world_passes_preflight_at_every_goal() {
    for goal in ["reprotected", "failed-back", "committed", "protected"] {
        let estate = Estate::new(goal, "");
        let output = estate.plan();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(preflight_codes(&output).is_empty());
        assert!(stdout.contains("Plan: 2 to reprotect"), "{stdout}");
        assert!(
            stdout.contains("machine.web-01") && stdout.contains("failed-over → reprotected"),
            "{stdout}"
        );
    }
}

#[test]
fn every_preflight_code_has_a_test() {
    // The codes this file breaks; keep in step with DESIGN.md §5.
    let tested = [
        codes::PREFLIGHT_CONFIGURATION_SERVER,
        codes::PREFLIGHT_PROCESS_SERVER,
        codes::PREFLIGHT_MASTER_TARGET_SNAPSHOTS,
        codes::PREFLIGHT_MASTER_TARGET,
        codes::PREFLIGHT_RETENTION_DRIVE,
        codes::PREFLIGHT_VCENTER,
        codes::PREFLIGHT_VCENTER_PERMISSIONS,
        codes::PREFLIGHT_DISK_UUID_CONFLICT,
        codes::PREFLIGHT_DATASTORE,
        codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
        codes::PREFLIGHT_AGENT_NOT_REGISTERED,
        codes::PREFLIGHT_VM_POWERED_ON,
        codes::PREFLIGHT_NAME_CLASH,
        codes::PREFLIGHT_ESXI_MEMORY,
        codes::PREFLIGHT_MAINTENANCE_WINDOW,
        codes::PREFLIGHT_LOCKED_SETTING,
        codes::PREFLIGHT_MACHINE_MISSING,
    ];
    assert_eq!(
        BTreeSet::from(tested),
        codes::PREFLIGHT.iter().copied().collect()
    );
}

#[test]
fn configuration_server_not_connected() {
    error(
        "configuration_server",
        codes::PREFLIGHT_CONFIGURATION_SERVER,
        |w| w.configuration_server.connected = false,
    );
}

#[test]
fn machine_missing_from_the_configuration_server() {
    error(
        "configuration_server_machine",
        codes::PREFLIGHT_CONFIGURATION_SERVER,
        |w| {
            w.machines
                .get_mut("web-01")
                .expect("exists")
                .in_configuration_server = false
        },
    );
}

#[test]
fn process_server_unhealthy() {
    error("process_server", codes::PREFLIGHT_PROCESS_SERVER, |w| {
        w.process_servers.get_mut("ps-01").expect("exists").healthy = false
    });
}

#[test]
fn master_target_snapshots() {
    error(
        "master_target_snapshots",
        codes::PREFLIGHT_MASTER_TARGET_SNAPSHOTS,
        |w| {
            w.master_targets
                .get_mut("mt-linux-01")
                .expect("exists")
                .snapshots = 2
        },
    );
}

#[test]
fn master_target_unhealthy() {
    error("master_target", codes::PREFLIGHT_MASTER_TARGET, |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .healthy = false
    });
}

#[test]
fn master_target_over_60_disks_with_what_is_attached() {
    breaks(codes::PREFLIGHT_MASTER_TARGET, "reprotected", "", |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .disks_attached = 58
    });
}

#[test]
fn retention_drive_missing() {
    error("retention_drive", codes::PREFLIGHT_RETENTION_DRIVE, |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .retention_volumes = vec!["/data".to_string()]
    });
}

#[test]
fn vcenter_not_connected() {
    error("vcenter", codes::PREFLIGHT_VCENTER, |w| {
        w.vcenters.get_mut("vc-01").expect("exists").connected = false
    });
}

#[test]
fn vcenter_read_only_account() {
    error(
        "vcenter_permissions",
        codes::PREFLIGHT_VCENTER_PERMISSIONS,
        |w| w.vcenters.get_mut("vc-01").expect("exists").account = AccountAccess::ReadOnly,
    );
}

#[test]
fn disk_uuid_shared_with_the_master_target() {
    error(
        "disk_uuid_conflict",
        codes::PREFLIGHT_DISK_UUID_CONFLICT,
        |w| {
            let uuid = w.master_targets["mt-linux-01"].disk_uuids[0].clone();
            w.machines.get_mut("web-01").expect("exists").disk_uuids[1] = uuid;
        },
    );
}

#[test]
fn datastore_is_nfs() {
    error("datastore_nfs", codes::PREFLIGHT_DATASTORE, |w| {
        w.datastores.get_mut("vsan-01").expect("exists").kind = DatastoreType::Nfs
    });
}

#[test]
fn datastore_mounted_read_only_on_the_master_targets_host() {
    error("datastore_read_only", codes::PREFLIGHT_DATASTORE, |w| {
        let mut mounts = lifeboat_engine::model::NamedMap::new();
        mounts.insert("vsan-01", DatastoreAccess::ReadOnly);
        w.esxi_hosts.get_mut("esx-01").expect("exists").datastores = mounts;
    });
}

#[test]
fn datastore_full() {
    breaks(codes::PREFLIGHT_DATASTORE, "reprotected", "", |w| {
        w.datastores.get_mut("vsan-01").expect("exists").free_gib = 10
    });
}

#[test]
fn azure_replica_deleted() {
    error(
        "unsupported_failback",
        codes::PREFLIGHT_UNSUPPORTED_FAILBACK,
        |w| w.machines.get_mut("web-01").expect("exists").azure_replica = AzureReplica::Deleted,
    );
}

#[test]
fn agent_not_registered_is_a_warning() {
    let output = breaks(
        codes::PREFLIGHT_AGENT_NOT_REGISTERED,
        "reprotected",
        "",
        |w| {
            w.timing.scale = 1.0;
            w.machines
                .get_mut("web-01")
                .expect("exists")
                .agent_registers_in_s = 100_000;
        },
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "a warning does not fail `plan`"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("apply` waits"));
}

#[test]
fn vmware_vm_powered_on() {
    error("vm_powered_on", codes::PREFLIGHT_VM_POWERED_ON, |w| {
        w.machines
            .get_mut("web-01")
            .expect("exists")
            .vmware_vm
            .powered_on = true
    });
}

#[test]
fn alternate_location_name_clash() {
    error("name_clash", codes::PREFLIGHT_NAME_CLASH, |w| {
        w.esxi_hosts
            .get_mut("esx-01")
            .expect("exists")
            .vms
            .push("app-01".to_string())
    });
}

#[test]
fn esxi_memory_at_failback() {
    error_with(
        "esxi_memory",
        codes::PREFLIGHT_ESXI_MEMORY,
        "failed-back",
        "",
        |w| {
            w.esxi_hosts
                .get_mut("esx-01")
                .expect("exists")
                .memory_free_gib = 12
        },
    );
}

#[test]
fn failback_outside_the_maintenance_window() {
    let window =
        "maintenance_window:\n  start: 2020-01-04T22:00:00Z\n  end: 2020-01-05T04:00:00Z\n";
    error_with(
        "maintenance_window",
        codes::PREFLIGHT_MAINTENANCE_WINDOW,
        "failed-back",
        window,
        |_| {},
    );
}

#[test]
fn a_window_only_matters_when_failback_or_commit_is_planned() {
    let window =
        "maintenance_window:\n  start: 2020-01-04T22:00:00Z\n  end: 2020-01-05T04:00:00Z\n";
    let estate = Estate::new("reprotected", window);
    assert!(estate.plan().status.success());
}

#[test]
fn machines_at_the_goal_are_not_checked() {
    let estate = Estate::new("reprotected", "");
    estate.edit(|w| {
        for machine in w.machines.values_mut() {
            machine.stage = lifeboat_engine::provider::Stage::Reprotected;
        }
        // Would fail a reprotect, but none is needed.
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .snapshots = 3;
    });
    let output = estate.plan();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("No changes."));
}

/// A machine the plan names that the site does not have is its own error, not one of the
/// unsupported-failback cases (whose message would be about something else).
#[test]
fn a_machine_missing_at_the_site() {
    let output = breaks(codes::PREFLIGHT_MACHINE_MISSING, "reprotected", "", |w| {
        w.machines.remove("web-01");
    });
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`web-01` is not a replicated item the provider knows"),
        "{stderr}"
    );
}
