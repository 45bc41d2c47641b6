//! A process killed mid-operation: the operation lives in the world file, so a new process
//! finds it running or finished, never lost and never started twice.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{provider, reprotect, world};
use lifeboat_engine::provider::{OperationStatus, Provider};
use lifeboat_provider_sim::store;
use lifeboat_provider_sim::world::Event;

#[test]
fn killing_the_process_mid_operation_neither_loses_nor_repeats_it() {
    // 1,200 simulated seconds at 0.003: the reprotect takes 3.6 s of real time.
    let (_dir, path) = world(|w| w.timing.scale = 0.003);
    let request = reprotect("web-01");
    let settings = request.reprotect.clone().expect("a reprotect has settings");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat-sim-run"))
        .arg(&path)
        .args(["web-01", "reprotect", &request.id.0])
        .args([
            &settings.master_target,
            &settings.process_server,
            &settings.datastore,
            &settings.retention_drive,
            "original",
        ])
        .spawn()
        .expect("the driver starts");

    // Wait until the world shows the operation running, then kill the process (SIGKILL).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(world) = store::read(&path)
            && world.running.iter().any(|op| op.id == request.id)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the driver never started the operation"
        );
        assert!(
            child.try_wait().expect("the driver is alive").is_none(),
            "the driver exited early"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().expect("the driver is killed");
    child.wait().expect("the driver is reaped");

    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let status = sim.status(&request.id).await.expect("the status reads");
        assert!(
            matches!(
                status,
                OperationStatus::Running | OperationStatus::Succeeded
            ),
            "the operation was lost: {status:?}"
        );
        // Reconciliation: running the same id again awaits the operation the dead process
        // started instead of starting another.
        let outcome = sim.run(&request).await.expect("the operation finishes");
        assert_eq!(outcome.id, request.id);
        assert_eq!(
            sim.status(&request.id).await.expect("reads"),
            OperationStatus::Succeeded
        );

        let world = sim.world().await.expect("reads");
        let events: Vec<Event> = world
            .history
            .iter()
            .filter(|h| h.operation == request.id)
            .map(|h| h.event)
            .collect();
        assert_eq!(
            events,
            [Event::Started, Event::Finished],
            "started exactly once, finished exactly once"
        );
        assert_eq!(world.master_targets["mt-linux-01"].disks_attached, 2);
        assert!(world.running.is_empty());
    });
}

#[test]
fn a_new_process_finds_a_dead_processs_operation_finished() {
    let (_dir, path) = world(|w| w.timing.scale = 0.0002);
    let request = reprotect("web-01");
    let settings = request.reprotect.clone().expect("a reprotect has settings");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat-sim-run"))
        .arg(&path)
        .args(["web-01", "reprotect", &request.id.0])
        .args([
            &settings.master_target,
            &settings.process_server,
            &settings.datastore,
            &settings.retention_drive,
            "original",
        ])
        .spawn()
        .expect("the driver starts");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store::read(&path).is_ok_and(|w| w.history.iter().any(|h| h.operation == request.id)) {
        assert!(
            Instant::now() < deadline,
            "the driver never started the operation"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    child.wait().expect("the driver is reaped");
    // 1,200 × 0.0002 = 0.24 s: by now the operation has ended, whether or not anyone watched.
    std::thread::sleep(Duration::from_millis(300));
    let sim = provider(&path);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        assert_eq!(
            sim.status(&request.id).await.expect("reads"),
            OperationStatus::Succeeded
        );
        let world = sim.world().await.expect("reads");
        let starts = world
            .history
            .iter()
            .filter(|h| h.operation == request.id && h.event == Event::Started)
            .count();
        assert_eq!(starts, 1);
        assert_eq!(
            world.machines["web-01"].stage,
            lifeboat_engine::provider::Stage::Reprotected
        );
    });
}

#[cfg(unix)]
#[test]
fn writing_keeps_the_worlds_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let (_dir, path) = world(|_| {});
    assert_eq!(
        std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let world = store::read(&path).expect("reads");
    store::write(&path, &world).expect("writes");
    assert_eq!(
        std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
}
