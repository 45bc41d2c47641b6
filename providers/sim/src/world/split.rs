//! Parsing a large world on two cores (see [`lifeboat_engine::load::split`]): the world's
//! `machines` are parsed in two halves at once, then merged and checked. Anything the halves
//! cannot settle for certain (a duplicate across them, a dangling reference, an entry that did
//! not become a machine) leaves the file to the whole parse, which reports it as before.

use std::collections::BTreeMap;

use lifeboat_engine::SourceFile;
use lifeboat_engine::load::Duplicates;
use lifeboat_engine::load::split::parse_in_halves;
use serde::Deserialize;

use super::{Machine, World, references};

/// The second half: only the machines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachinesOnly {
    machines: BTreeMap<String, Machine>,
}

pub(super) fn parse(file: &SourceFile) -> Option<World> {
    let (mut world, rest, cut) =
        parse_in_halves::<World, MachinesOnly>(file, "world", Duplicates::Reject, "machines")?;
    for (name, machine) in rest.machines {
        if world.machines.insert(name, machine).is_some() {
            return None;
        }
    }
    (world.machines.len() == cut.entries && references(&world).is_empty()).then_some(world)
}

/// The fast path must give exactly what one parse gives: the same world (spans included) for
/// a valid file, and nothing for a file with any problem, so that the whole parse reports it.
#[cfg(test)]
mod equivalence {
    use lifeboat_engine::model::{Os, Recovery, Timestamp};

    use super::super::{parse_whole, to_yaml};
    use crate::init::{InitMachine, InitMasterTarget, InitSpec, world_for};

    /// A world of `n` machines, as lifeboat writes it (over 1 MiB from about 2,500 machines).
    fn world_text(n: usize) -> String {
        let spec = InitSpec {
            vcenter: "vc-01".into(),
            configuration_server: "cs-01".into(),
            process_server: "ps-01".into(),
            home: None,
            master_targets: vec![InitMasterTarget {
                name: "mt-01".into(),
                os: Os::Linux,
                esxi_host: "esx-01".into(),
                retention_drive: "/mnt/retention".into(),
                datastores: vec!["vsan-01".into()],
            }],
            machines: (0..n)
                .map(|i| InitMachine {
                    name: format!("vm-{i:06}"),
                    os: Os::Linux,
                    recovery: if i % 3 == 0 {
                        Recovery::Alternate
                    } else {
                        Recovery::Original
                    },
                    datastore: "vsan-01".into(),
                    disks_gib: vec![64, 128 + i as u64],
                    master_target: Some("mt-01".into()),
                })
                .collect(),
            replication_groups: Vec::new(),
        };
        let now = Timestamp("2026-11-24T00:00:00Z".parse().expect("a timestamp"));
        to_yaml(&world_for(&spec, now)).expect("serialisable")
    }

    fn file(text: String) -> lifeboat_engine::SourceFile {
        lifeboat_engine::SourceFile::new("world.yaml", "world.yaml", text)
    }

    #[test]
    fn a_large_world_parses_the_same_in_two_halves() {
        let text = world_text(4000);
        assert!(
            text.len() > lifeboat_engine::load::split::MIN_BYTES,
            "{} bytes",
            text.len()
        );
        let split = super::parse(&file(text.clone())).expect("the fast path is taken");
        let whole = parse_whole(&file(text)).expect("a valid world");
        assert_eq!(split.machines.len(), 4000);
        assert_eq!(split, whole);
        // Spans point into the real file, not into a half of it.
        let host = |w: &crate::World| {
            w.machines["vm-003998"]
                .vmware_vm
                .esxi_host
                .as_ref()
                .map(|h| h.span)
        };
        assert_eq!(host(&split), host(&whole));
        assert!(host(&split).is_some());
    }

    #[test]
    fn any_problem_in_either_half_leaves_it_to_the_whole_parse() {
        let text = world_text(4000);
        let broken = [
            // a type error late in the second half
            text.replacen("vm-003998:\n    os: linux", "vm-003998:\n    os: beos", 1),
            // a dangling reference in the second half
            {
                let at = text
                    .rfind("esxi_host: esx-01")
                    .expect("a machine's VM host");
                format!("{}esxi_host: esx-99{}", &text[..at], &text[at + 17..])
            },
            // the same machine in both halves
            text.replacen("vm-003999:", "vm-000001:", 1),
            // a syntax error in the first half
            text.replacen("vm-000002:\n", "vm-000002:\n  - [\n", 1),
        ];
        for (i, broken) in broken.into_iter().enumerate() {
            assert_ne!(broken, text, "case {i} breaks nothing");
            let text = broken;
            assert!(super::parse(&file(text.clone())).is_none(), "case {i}");
            assert!(parse_whole(&file(text)).is_err(), "case {i}");
        }
    }

    mod mutations {
        use proptest::prelude::*;

        use super::super::super::parse_whole;
        use super::{file, world_text};

        /// Bits of YAML that change structure: the fast path must never answer differently
        /// from the whole parse, whatever they break.
        const SNIPPETS: &[&str] = &[
            "\n",
            ": ",
            "- ",
            "  ",
            " ",
            "#",
            "\"",
            "{",
            "}",
            "[",
            "&a ",
            "*a",
            "\t",
            "machines:\n",
            "---\n",
            "\n  vm-000001:\n    os: linux\n",
            "esx-01",
        ];

        proptest! {
            #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

            #[test]
            fn the_halves_agree_with_the_whole_parse(
                edits in proptest::collection::vec((0.0f64..1.0, 0..SNIPPETS.len()), 1..4)
            ) {
                let mut text = world_text(4000);
                for (at, snippet) in edits {
                    let mut at = (text.len() as f64 * at) as usize;
                    while !text.is_char_boundary(at) {
                        at -= 1;
                    }
                    text.insert_str(at, SNIPPETS[snippet]);
                }
                let halves = crate::world::parse(&file(text.clone()));
                let one = parse_whole(&file(text));
                match (&halves, &one) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                    (Err(a), Err(b)) => prop_assert_eq!(a, b),
                    _ => prop_assert!(false, "one parse failed and the other did not"),
                }
            }
        }
    }
}
