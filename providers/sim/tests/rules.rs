//! The simulator enforces every rule at run time, with preflight bypassed: each test breaks
//! one fact of a healthy world and calls `run` directly.

mod common;

use common::{provider, reprotect, request, world};
use lifeboat_engine::Spanned;
use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::facts::{
    AccountAccess, AzureReplica, DatastoreAccess, DatastoreType, HypervisorEdition, SourceKind,
    Stage,
};
use lifeboat_engine::provider::{
    ErrorKind, OperationKind, OperationRequest, OperationStatus, Provider, ProviderError,
};
use lifeboat_provider_sim::World;
use lifeboat_provider_sim::world::{Event, Fault, FaultCode};

fn run(edit: impl FnOnce(&mut World), request: OperationRequest) -> Result<World, ProviderError> {
    let (_dir, path) = world(edit);
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        sim.run(&request).await?;
        Ok(sim.world().await.expect("the world reads"))
    })
}

/// Runs `request` on a world broken by `edit` and returns the refusal.
fn refused(edit: impl FnOnce(&mut World), request: OperationRequest) -> ProviderError {
    match run(edit, request) {
        Ok(_) => panic!("the simulator accepted an operation that breaks a rule"),
        Err(error) => error,
    }
}

fn permanent(code: &str, edit: impl FnOnce(&mut World)) {
    permanent_for(code, edit, reprotect("web-01"));
}

fn permanent_for(code: &str, edit: impl FnOnce(&mut World), request: OperationRequest) {
    let error = refused(edit, request);
    assert_eq!(error.code.as_deref(), Some(code), "{error:?}");
    assert_eq!(error.kind, ErrorKind::Permanent, "{error:?}");
    assert!(
        !error.message.is_empty() && !error.message.ends_with('.'),
        "{error:?}"
    );
}

/// A world where `machine` has been reprotected and waits for failback.
fn reprotected(world: &mut World, machine: &str) {
    let m = world.machines.get_mut(machine).expect("the machine exists");
    m.stage = Stage::Reprotected;
    m.settings.master_target = Some("mt-linux-01".to_string());
}

#[test]
fn a_healthy_world_runs_the_whole_lifecycle() {
    let (_dir, path) = world(|_| {});
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for kind in OperationKind::ALL {
            let outcome = sim
                .run(&request(&format!("{kind}-web"), "web-01", kind))
                .await
                .expect("the operation succeeds");
            assert_eq!(outcome.stage, kind.to_stage());
            let world = sim.world().await.expect("reads");
            let web = &world.machines["web-01"];
            assert_eq!(web.stage, kind.to_stage());
            match kind {
                OperationKind::Reprotect => {
                    assert_eq!(web.settings.master_target.as_deref(), Some("mt-linux-01"));
                    assert_eq!(web.settings.recovery, Some(Recovery::Original));
                    assert_eq!(world.master_targets["mt-linux-01"].disks_attached, 2);
                    assert!(!web.vmware_vm.powered_on);
                }
                OperationKind::Failback => {
                    assert!(web.vmware_vm.powered_on, "failback starts the VMware VM");
                    assert_eq!(world.master_targets["mt-linux-01"].disks_attached, 0);
                }
                OperationKind::Commit => assert_eq!(web.azure_replica, AzureReplica::Deleted),
                OperationKind::ReprotectHome => {}
                OperationKind::SwitchProcessServer => unreachable!("not a lifecycle operation"),
            }
        }
        let world = sim.world().await.expect("reads");
        let events: Vec<Event> = world.history.iter().map(|h| h.event).collect();
        assert_eq!(events.len(), 8);
        assert!(
            events
                .chunks(2)
                .all(|pair| pair == [Event::Started, Event::Finished])
        );
    });
}

#[test]
fn alternate_location_recovery_creates_the_vm_on_the_master_targets_host() {
    let world = run(|_| {}, reprotect("app-01")).expect("reprotect succeeds");
    let app = &world.machines["app-01"];
    assert!(app.vmware_vm.exists);
    assert_eq!(
        app.vmware_vm.esxi_host.as_ref().map(|h| h.value.as_str()),
        Some("esx-01")
    );
    assert_eq!(world.datastores["vsan-01"].free_gib, 50_000 - 64);
}

#[test]
fn configuration_server_disconnected_is_95226() {
    permanent("95226", |w| w.configuration_server.connected = false);
}

#[test]
fn machine_missing_from_the_configuration_server() {
    permanent("configuration-server", |w| {
        w.machines
            .get_mut("web-01")
            .expect("exists")
            .in_configuration_server = false
    });
}

#[test]
fn process_server_unhealthy_or_missing() {
    permanent("process-server", |w| {
        w.process_servers.get_mut("ps-01").expect("exists").healthy = false
    });
    permanent("process-server", |w| w.process_servers.clear());
}

#[test]
fn master_target_with_snapshots() {
    permanent("master-target-snapshots", |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .snapshots = 2
    });
}

#[test]
fn master_target_unhealthy_wrong_os_missing_or_full() {
    permanent("master-target", |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .healthy = false
    });
    permanent("master-target", |w| {
        w.master_targets.get_mut("mt-linux-01").expect("exists").os =
            lifeboat_engine::model::Os::Windows
    });
    permanent("master-target", |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .disks_attached = 59
    });
    permanent("master-target", |w| {
        w.master_targets.remove("mt-linux-01");
    });
}

#[test]
fn retention_drive_not_on_the_master_target() {
    permanent("retention-drive", |w| {
        w.master_targets
            .get_mut("mt-linux-01")
            .expect("exists")
            .retention_volumes = vec!["/mnt/other".to_string()]
    });
}

#[test]
fn vcenter_not_connected_or_not_discovered() {
    permanent("vcenter", |w| {
        w.vcenters.get_mut("vc-01").expect("exists").connected = false
    });
    permanent("vcenter", |w| {
        w.vcenters.get_mut("vc-01").expect("exists").discovered = false
    });
}

#[test]
fn read_only_vcenter_account_fails_reprotect() {
    permanent("vcenter-permissions", |w| {
        w.vcenters.get_mut("vc-01").expect("exists").account = AccountAccess::ReadOnly
    });
}

#[test]
fn disk_uuid_shared_with_the_master_target_or_another_machine() {
    permanent("disk-uuid-conflict", |w| {
        let uuid = w.master_targets["mt-linux-01"].disk_uuids[0].clone();
        w.machines.get_mut("web-01").expect("exists").disk_uuids[0] = uuid;
    });
    permanent("disk-uuid-conflict", |w| {
        let uuid = w.machines["app-01"].disk_uuids[0].clone();
        w.machines.get_mut("web-01").expect("exists").disk_uuids[1] = uuid;
    });
}

#[test]
fn nfs_missing_or_full_datastore() {
    permanent("datastore", |w| {
        w.datastores.get_mut("vsan-01").expect("exists").kind = DatastoreType::Nfs
    });
    permanent("datastore", |w| {
        w.datastores.remove("vsan-01");
        for host in w.esxi_hosts.values_mut() {
            host.datastores = Default::default();
        }
        for m in w.machines.values_mut() {
            m.vmware_vm.datastore = None;
        }
    });
    permanent_for(
        "datastore",
        |w| w.datastores.get_mut("vsan-01").expect("exists").free_gib = 10,
        reprotect("app-01"),
    );
}

#[test]
fn datastore_not_mounted_read_write_is_8061() {
    permanent("8061", |w| {
        let host = w.esxi_hosts.get_mut("esx-01").expect("exists");
        let mut mounts = lifeboat_engine::model::NamedMap::new();
        mounts.insert("vsan-01", DatastoreAccess::ReadOnly);
        host.datastores = mounts;
    });
}

#[test]
fn every_case_of_rule_8_is_unsupported() {
    type Edit = Box<dyn FnOnce(&mut World)>;
    let cases: Vec<Edit> = vec![
        Box::new(|w| {
            w.machines.get_mut("web-01").expect("exists").azure_replica = AzureReplica::Deleted
        }),
        Box::new(|w| {
            w.machines.get_mut("web-01").expect("exists").azure_replica = AzureReplica::Unprotected
        }),
        Box::new(|w| {
            w.machines.get_mut("web-01").expect("exists").azure_replica = AzureReplica::Moved
        }),
        Box::new(|w| {
            w.machines.get_mut("web-01").expect("exists").source = SourceKind::PhysicalWindows2008R2
        }),
        Box::new(|w| w.machines.get_mut("web-01").expect("exists").source = SourceKind::HyperV),
        Box::new(|w| w.machines.get_mut("web-01").expect("exists").migrated = true),
        Box::new(|w| {
            w.vcenters.get_mut("vc-01").expect("exists").edition = HypervisorEdition::FreeEsxi55
        }),
        Box::new(|w| {
            w.vcenters.get_mut("vc-01").expect("exists").edition = HypervisorEdition::FreeVsphere6
        }),
        // Original-location recovery without the original VM.
        Box::new(|w| {
            w.machines
                .get_mut("web-01")
                .expect("exists")
                .vmware_vm
                .exists = false
        }),
    ];
    for edit in cases {
        permanent("unsupported-failback", edit);
    }
}

#[test]
fn powered_on_vmware_vm_before_reprotect_and_before_failback() {
    permanent("vm-powered-on", |w| {
        w.machines
            .get_mut("web-01")
            .expect("exists")
            .vmware_vm
            .powered_on = true
    });
    permanent_for(
        "vm-powered-on",
        |w| {
            reprotected(w, "web-01");
            w.machines
                .get_mut("web-01")
                .expect("exists")
                .vmware_vm
                .powered_on = true;
        },
        request("failback-web", "web-01", OperationKind::Failback),
    );
}

#[test]
fn alternate_location_name_clash_is_78052() {
    permanent_for(
        "78052",
        |w| {
            w.esxi_hosts
                .get_mut("esx-01")
                .expect("exists")
                .vms
                .push("app-01".to_string())
        },
        reprotect("app-01"),
    );
}

#[test]
fn not_enough_esxi_memory_at_failback_is_8038() {
    permanent_for(
        "8038",
        |w| {
            reprotected(w, "web-01");
            w.esxi_hosts
                .get_mut("esx-01")
                .expect("exists")
                .memory_free_gib = 4;
        },
        request("failback-web", "web-01", OperationKind::Failback),
    );
}

#[test]
fn vcenter_disconnected_before_failback() {
    permanent_for(
        "vcenter",
        |w| {
            reprotected(w, "web-01");
            w.vcenters.get_mut("vc-01").expect("exists").connected = false;
        },
        request("failback-web", "web-01", OperationKind::Failback),
    );
}

#[test]
fn replication_group_members_share_one_master_target_and_os() {
    permanent_for(
        "replication-group",
        |w| {
            let db = w.machines.get_mut("db-01").expect("exists");
            db.stage = Stage::Reprotected;
            db.settings.master_target = Some("mt-linux-02".to_string());
        },
        reprotect("db-02"),
    );
    permanent_for(
        "replication-group",
        |w| w.machines.get_mut("db-01").expect("exists").os = lifeboat_engine::model::Os::Windows,
        reprotect("db-02"),
    );
}

#[test]
fn operations_start_only_from_their_stage() {
    permanent_for(
        "stage",
        |_| {},
        request("failback-web", "web-01", OperationKind::Failback),
    );
    permanent_for(
        "stage",
        |_| {},
        request("commit-web", "web-01", OperationKind::Commit),
    );
}

#[test]
fn an_unregistered_agent_is_transient_and_says_when_to_retry() {
    let error = refused(
        |w| {
            w.timing.scale = 1.0;
            w.machines
                .get_mut("web-01")
                .expect("exists")
                .agent_registers_in_s = 900;
        },
        reprotect("web-01"),
    );
    assert_eq!(error.kind, ErrorKind::Transient);
    assert_eq!(error.code.as_deref(), Some("agent-not-registered"));
    let after = error.retry_after.expect("the wait is known");
    assert!(after.as_secs() > 800 && after.as_secs() <= 900, "{after:?}");
}

#[test]
fn an_agent_registers_once_its_time_has_passed() {
    let (_dir, path) = world(|w| {
        w.timing.scale = 0.001;
        w.machines
            .get_mut("web-01")
            .expect("exists")
            .agent_registers_in_s = 200;
    });
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let first = sim
            .run(&reprotect("web-01"))
            .await
            .expect_err("the agent is not registered yet");
        assert!(first.is_transient());
        tokio::time::sleep(
            first.retry_after.expect("known") + std::time::Duration::from_millis(20),
        )
        .await;
        // The same id may be sent again after a transient refusal.
        sim.run(&reprotect("web-01"))
            .await
            .expect("the agent has registered");
    });
}

#[test]
fn injected_faults_are_consumed_in_order_and_classified() {
    let (_dir, path) = world(|w| {
        let fault = |code: &str| Fault {
            machine: Spanned::bare("web-01".to_string()),
            operation: OperationKind::Reprotect,
            code: FaultCode(code.to_string()),
            times: 1,
        };
        w.faults = vec![fault("429"), fault("503"), fault("78093")];
    });
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let id = |n: u32| {
            request(
                &format!("reprotect-web-{n}"),
                "web-01",
                OperationKind::Reprotect,
            )
        };
        let throttled = sim.run(&id(1)).await.expect_err("429");
        assert_eq!(
            (throttled.kind, throttled.code.as_deref()),
            (ErrorKind::Transient, Some("429"))
        );
        let server = sim.run(&id(1)).await.expect_err("503");
        assert_eq!(
            (server.kind, server.code.as_deref()),
            (ErrorKind::Transient, Some("503"))
        );
        let hung = sim.run(&id(1)).await.expect_err("78093");
        assert_eq!(
            (hung.kind, hung.code.as_deref()),
            (ErrorKind::Permanent, Some("78093"))
        );
        // A permanent failure is final for its id: the same id reports it again, nothing runs.
        let again = sim.run(&id(1)).await.expect_err("still failed");
        assert_eq!(again.code.as_deref(), Some("78093"));
        assert!(matches!(
            sim.status(&id(1).id).await,
            Ok(OperationStatus::Failed(_))
        ));
        // The faults are used up: a new attempt succeeds.
        sim.run(&id(2)).await.expect("no fault left");
        let world = sim.world().await.expect("reads");
        assert!(world.faults.is_empty());
    });
}

#[test]
fn a_fault_code_may_be_written_as_a_number() {
    let (_dir, path) = world(|_| {});
    let text = std::fs::read_to_string(&path).expect("reads") + "\n"; // keep the document as written, then replace the faults list
    let text = text.replace(
        "faults: []",
        "faults:\n- {machine: web-01, operation: reprotect, code: 78093, times: 1}",
    );
    std::fs::write(&path, text).expect("writes");
    let error = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(provider(&path).run(&reprotect("web-01")))
        .expect_err("the fault fires");
    assert_eq!(error.code.as_deref(), Some("78093"));
}

#[test]
fn a_second_operation_on_a_busy_machine_is_a_transient_conflict() {
    let (_dir, path) = world(|w| w.timing.scale = 1.0);
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let background = sim.clone();
        let task = tokio::spawn(async move { background.run(&reprotect("web-01")).await });
        while !matches!(
            sim.status(&reprotect("web-01").id).await,
            Ok(OperationStatus::Running)
        ) {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let other = request("another-reprotect", "web-01", OperationKind::Reprotect);
        let conflict = sim.run(&other).await.expect_err("busy");
        assert_eq!(
            (conflict.kind, conflict.code.as_deref()),
            (ErrorKind::Transient, Some("conflict"))
        );
        task.abort();
    });
}

#[test]
fn running_the_same_id_twice_starts_it_once() {
    let (_dir, path) = world(|_| {});
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        sim.run(&reprotect("web-01")).await.expect("runs");
        sim.run(&reprotect("web-01"))
            .await
            .expect("returns the finished operation");
        let world = sim.world().await.expect("reads");
        let starts = world
            .history
            .iter()
            .filter(|h| h.event == Event::Started)
            .count();
        assert_eq!(starts, 1);
        assert_eq!(
            world.master_targets["mt-linux-01"].disks_attached, 2,
            "the effect was applied once"
        );
    });
}

#[test]
fn concurrent_operations_on_one_world_are_all_recorded() {
    let (_dir, path) = world(|w| w.timing.scale = 0.0005);
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let tasks: Vec<_> = ["web-01", "app-01", "db-01", "db-02"]
            .into_iter()
            .map(|m| {
                // Two handles on the same file share one gate, as two tasks of one process do.
                let sim = lifeboat_provider_sim::SimProvider::open(sim.path()).expect("opens");
                tokio::spawn(async move { sim.run(&reprotect(m)).await })
            })
            .collect();
        for task in tasks {
            task.await
                .expect("the task ran")
                .expect("the reprotect succeeds");
        }
        let world = sim.world().await.expect("reads");
        assert!(
            world
                .machines
                .values()
                .all(|m| m.stage == Stage::Reprotected)
        );
        assert_eq!(
            world
                .history
                .iter()
                .filter(|h| h.event == Event::Started)
                .count(),
            4
        );
        assert_eq!(
            world
                .history
                .iter()
                .filter(|h| h.event == Event::Finished)
                .count(),
            4
        );
        // 2 + 1 + 1 + 1 disks, every effect applied exactly once despite interleaving.
        assert_eq!(world.master_targets["mt-linux-01"].disks_attached, 5);
    });
}

/// The provider keeps the parsed world between transactions; a write by anyone else (another
/// process, a person editing the file) must still be seen by the next transaction.
#[test]
fn a_world_changed_behind_the_providers_back_is_read_again() {
    let (_dir, path) = world(|_| {});
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let request = lifeboat_engine::provider::RefreshRequest {
        master_targets: vec!["mt-linux-01".to_string()],
        ..Default::default()
    };
    let snapshots =
        |facts: &lifeboat_engine::provider::Facts| facts.master_targets["mt-linux-01"].snapshots;
    let before = runtime.block_on(sim.refresh(&request)).expect("refreshes");
    assert_eq!(snapshots(&before), Some(0));

    let mut edited = lifeboat_provider_sim::store::read(&path).expect("reads");
    edited
        .master_targets
        .get_mut("mt-linux-01")
        .expect("exists")
        .snapshots = 3;
    lifeboat_provider_sim::store::write(&path, &edited).expect("writes");

    let after = runtime.block_on(sim.refresh(&request)).expect("refreshes");
    assert_eq!(snapshots(&after), Some(3));
}

/// ASR's `reassociateGateway`: the one change a reprotected machine allows. The switch moves
/// the replication and keeps the stage; a switch to the server it already uses, one that
/// would also move a locked setting, and a second reprotect (the old `replace`) are refused.
#[test]
fn a_reprotected_machine_switches_its_process_server_and_nothing_else() {
    let (_dir, path) = world(|w| {
        w.process_servers.insert(
            "ps-02".to_string(),
            lifeboat_provider_sim::world::ProcessServer { healthy: true },
        );
    });
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        sim.run(&reprotect("web-01")).await.expect("reprotects");
        let switch = |id: &str, mt: &str, ps: &str| {
            let mut settings = common::settings(mt, Recovery::Original);
            settings.process_server = ps.to_string();
            OperationRequest {
                id: id.into(),
                machine: "web-01".to_string(),
                kind: OperationKind::SwitchProcessServer,
                reprotect: Some(settings),
            }
        };
        let same = sim
            .run(&switch("same", "mt-linux-01", "ps-01"))
            .await
            .expect_err("already there");
        assert_eq!(same.code(), Some("process-server"), "{same}");
        let locked = sim
            .run(&switch("locked", "mt-linux-02", "ps-02"))
            .await
            .expect_err("the master target is locked");
        assert_eq!(locked.code(), Some("locked-setting"), "{locked}");
        let outcome = sim
            .run(&switch("moved", "mt-linux-01", "ps-02"))
            .await
            .expect("switches");
        assert_eq!(outcome.stage, Stage::Reprotected);
        let world = sim.world().await.expect("reads");
        let web = &world.machines["web-01"];
        assert_eq!(web.settings.process_server.as_deref(), Some("ps-02"));
        assert_eq!(web.settings.master_target.as_deref(), Some("mt-linux-01"));
        assert_eq!(web.stage, Stage::Reprotected);
        let again = sim
            .run(&request("again", "web-01", OperationKind::Reprotect))
            .await
            .expect_err("a reprotected machine is not reprotected again");
        assert_eq!(again.code(), Some("stage"), "{again}");
    });
}

/// The reprotect back to Azure needs `site.home`, and a run-as account the configuration
/// server has.
#[test]
fn the_reprotect_home_needs_the_home_names() {
    let (_dir, path) = world(|_| {});
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        for kind in [
            OperationKind::Reprotect,
            OperationKind::Failback,
            OperationKind::Commit,
        ] {
            sim.run(&request(&format!("{kind}"), "web-01", kind))
                .await
                .expect("runs");
        }
        let mut without = request("home-1", "web-01", OperationKind::ReprotectHome);
        if let Some(settings) = without.reprotect.as_mut() {
            settings.home = None;
        }
        let refused = sim.run(&without).await.expect_err("no home names");
        assert_eq!(refused.code(), Some("settings"), "{refused}");
        let mut stranger = request("home-2", "web-01", OperationKind::ReprotectHome);
        if let Some(home) = stranger.reprotect.as_mut().and_then(|s| s.home.as_mut()) {
            home.run_as_account = "nobody".to_string();
        }
        let refused = sim.run(&stranger).await.expect_err("unknown account");
        assert_eq!(refused.code(), Some("run-as-account"), "{refused}");
        let outcome = sim
            .run(&request("home-3", "web-01", OperationKind::ReprotectHome))
            .await
            .expect("protects again");
        assert_eq!(outcome.stage, Stage::Protected);
    });
}
