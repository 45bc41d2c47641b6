//! A world cut short (a crash of something that copied it, a truncated download) is refused
//! with `world::schema` naming the file, and is never written back: cut at any boundary
//! between two sections, it lacks a required section.

mod common;

use lifeboat_engine::diagnostic::codes;
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::provider::{OperationId, OperationKind};
use lifeboat_provider_sim::world::{Event, HistoryEntry, RunningOperation, SECTIONS};
use lifeboat_provider_sim::{SimProvider, WorldError, store};

/// A world with something in every list, so a cut drops real content.
fn full_world() -> (tempfile::TempDir, std::path::PathBuf, String) {
    let (dir, path) = common::world(|world| {
        let at = Timestamp("2026-11-24T00:00:00Z".parse().expect("a timestamp"));
        world.running.push(RunningOperation {
            id: OperationId("op-1".to_string()),
            machine: "web-01".to_string(),
            kind: OperationKind::Reprotect,
            started_at: at,
            ends_at: Timestamp("2099-01-01T00:00:00Z".parse().expect("a timestamp")),
            settings: None,
        });
        world.history.push(HistoryEntry {
            at,
            event: Event::Started,
            operation: OperationId("op-1".to_string()),
            machine: "web-01".to_string(),
            kind: OperationKind::Reprotect,
            code: None,
            message: None,
        });
    });
    let text = std::fs::read_to_string(&path).expect("the world");
    (dir, path, text)
}

/// Byte offsets where each top-level section starts.
fn boundaries(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if let Some((key, _)) = line.split_once(':')
            && !line.starts_with([' ', '#', '-'])
        {
            out.push((offset, key.to_string()));
        }
        offset += line.len();
    }
    out
}

#[test]
fn the_sim_writes_every_section_even_empty_ones() {
    let (_dir, _path, text) = full_world();
    let found: Vec<String> = boundaries(&text).into_iter().map(|(_, k)| k).collect();
    for section in SECTIONS {
        assert!(
            found.iter().any(|k| k == section),
            "`{section}` is not written:\n{text}"
        );
    }
    // Even empty: a world without faults or groups still lists them.
    let (_dir, _path) = common::world(|world| {
        world.replication_groups.clear();
        world.faults.clear();
    });
    let text = std::fs::read_to_string(&_path).expect("the world");
    assert!(text.contains("\nreplication_groups: {}\n"), "{text}");
    assert!(text.contains("\nfaults: []\n"), "{text}");
}

#[test]
fn a_world_cut_at_any_section_boundary_is_refused_and_left_alone() {
    let (_dir, path, text) = full_world();
    let cuts = boundaries(&text);
    assert!(cuts.len() >= SECTIONS.len(), "{cuts:?}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for (offset, section) in cuts.iter().skip(1) {
        let cut = &text[..*offset];
        std::fs::write(&path, cut).expect("writes");
        match store::read(&path) {
            Err(WorldError::Invalid { file, diagnostics }) => {
                assert_eq!(file.path(), path.as_path());
                assert!(
                    diagnostics.iter().any(|d| d.code == codes::WORLD_SCHEMA
                        && d.message.contains("missing required key")),
                    "cut before `{section}`: {diagnostics:?}"
                );
            }
            other => panic!("cut before `{section}` loaded: {other:?}"),
        }
        let error = SimProvider::open(&path).expect_err("refused").to_string();
        assert!(error.contains("world.yaml"), "{error}");
        // A provider opened on the whole world, then handed the cut one, refuses it too and
        // writes nothing.
        std::fs::write(&path, &text).expect("writes");
        let provider = SimProvider::open(&path).expect("the whole world opens");
        std::fs::write(&path, cut).expect("writes");
        let result = runtime.block_on(provider.world());
        assert!(result.is_err(), "cut before `{section}` was read");
        assert_eq!(
            std::fs::read_to_string(&path).expect("readable"),
            cut,
            "cut before `{section}`: the file was rewritten"
        );
    }
}
