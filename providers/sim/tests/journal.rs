//! The world's journal: what operations change is recorded as appended records, and reading
//! the world file with its journal gives exactly the world the provider holds in memory, before
//! and after the journal is folded into the file; a record cut short by a crash is ignored.

mod common;

use common::{provider, request, world};
use lifeboat_engine::provider::{OperationKind, Provider};
use lifeboat_provider_sim::store;
use lifeboat_provider_sim::world::{Fault, FaultCode};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

#[test]
fn the_world_read_with_its_journal_is_the_world_in_memory() {
    let (_dir, path) = world(|w| {
        // A permanent fault consumed on the first failback of `db-02`, and every lifecycle
        // step on the others: objects of every kind change (master targets, hosts,
        // datastores through the ALR machine), and the fault list shrinks.
        w.faults.push(Fault {
            machine: lifeboat_engine::Spanned::bare("db-02".to_string()),
            operation: OperationKind::Failback,
            code: FaultCode("78093".to_string()),
            times: 1,
        });
    });
    let sim = provider(&path);
    runtime().block_on(async {
        for machine in ["web-01", "app-01", "db-01", "db-02"] {
            for kind in [
                OperationKind::Reprotect,
                OperationKind::Failback,
                OperationKind::Commit,
            ] {
                let id = format!("{kind}-{machine}");
                let _ = sim.run(&request(&id, machine, kind)).await;
            }
        }
        let in_memory = sim.world().await.expect("reads");
        assert!(
            store::journal_path(&path).exists(),
            "the changes were journaled"
        );
        assert!(in_memory.faults.is_empty(), "the fault was consumed");
        // Started and finished for nine operations; `db-02`'s failback failed on the fault
        // and its commit was refused (not failed back): one entry each.
        assert_eq!(in_memory.history.len(), 9 * 2 + 2 + 2);
        // Another reader (a fresh parse of the file, then the journal) sees the same world.
        let read = store::read(&path).expect("reads");
        assert_eq!(read, in_memory);
        // Folded into the file, the file alone is the world.
        sim.close().await.expect("folds");
        assert!(!store::journal_path(&path).exists());
        let file = lifeboat_engine::SourceFile::read(&path).expect("readable");
        let parsed = lifeboat_provider_sim::world::parse(&file).expect("valid");
        assert_eq!(parsed, in_memory);
    });
}

#[test]
fn a_record_cut_short_is_ignored_and_the_next_append_replaces_it() {
    let (_dir, path) = world(|_| {});
    let sim = provider(&path);
    let runtime = runtime();
    runtime.block_on(async {
        sim.run(&request("r-web", "web-01", OperationKind::Reprotect))
            .await
            .expect("runs");
    });
    let journal = store::journal_path(&path);
    let whole = std::fs::read(&journal).expect("a journal");
    let before = store::read(&path).expect("reads");
    // A crash mid-append leaves a prefix of a record.
    let mut torn = whole.clone();
    torn.extend_from_slice(b"{\"history\":[{\"at\":");
    std::fs::write(&journal, &torn).expect("writes");
    assert_eq!(store::read(&path).expect("reads"), before);
    // A new process appends after the last whole record.
    let sim = provider(&path);
    runtime.block_on(async {
        sim.run(&request("r-app", "app-01", OperationKind::Reprotect))
            .await
            .expect("runs");
    });
    let after = store::read(&path).expect("reads");
    assert_eq!(after.history.len(), before.history.len() + 2);
    // Bytes before the end that are not a record are corruption, reported, not skipped.
    if journal.exists() {
        let mut broken = std::fs::read(&journal).expect("a journal");
        broken.extend_from_slice(b"not a record\n{}\n");
        std::fs::write(&journal, &broken).expect("writes");
        let error = store::read(&path).expect_err("corrupt").to_string();
        assert!(error.contains("journal"), "{error}");
    }
}

#[test]
fn a_journal_left_beside_a_rewritten_world_is_ignored() {
    let (_dir, path) = world(|_| {});
    let sim = provider(&path);
    runtime().block_on(async {
        sim.run(&request("r-web", "web-01", OperationKind::Reprotect))
            .await
            .expect("runs");
    });
    let journal = std::fs::read(store::journal_path(&path)).expect("a journal");
    // The world is rewritten (by a person, or a crash after a compaction's write and
    // before the journal's removal): the old journal names another world.
    let mut edited = store::read(&path).expect("reads");
    edited.history.clear();
    store::write(&path, &edited).expect("writes");
    std::fs::write(store::journal_path(&path), journal).expect("writes");
    assert_eq!(store::read(&path).expect("reads"), edited);
}
