//! Parsing a large world on two cores.
//!
//! A world of 10,000 machines is about 5 MB of YAML, and parsing it was most of what `plan`
//! spent (BENCHMARKS.md); YAML parsing is sequential, but the machines of a world are
//! independent entries of one mapping. So the file is parsed as two documents at once: one
//! with the second half of the `machines` entries blanked out, one with everything but them
//! (and the `machines:` line) blanked out. Blanking replaces every byte but line breaks with a
//! space, so both documents have the file's exact byte offsets and line numbers: every span
//! in the result points into the real file.
//!
//! This is only a fast path. It is taken when the file has the shape lifeboat writes (a
//! top-level `machines:` line followed by indented entries); any doubt, any error, any
//! duplicate across the halves, and [`parse`] answers `None` so that the caller parses the
//! file whole, which reports problems exactly as before.

use std::collections::BTreeMap;

use lifeboat_engine::SourceFile;
use lifeboat_engine::load::{self, Duplicates};
use serde::Deserialize;

use super::{Machine, World, references};

/// Below this size one core parses the file faster than two threads can start.
const MIN_BYTES: usize = 1 << 20;

/// The second half: only the machines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachinesOnly {
    machines: BTreeMap<String, Machine>,
}

/// Where the `machines` section is, and where to cut it.
#[derive(Debug, PartialEq, Eq)]
struct Cut {
    /// The end of the `machines:` line (after its line break).
    header_end: usize,
    /// The first byte of the entry that starts the second half.
    at: usize,
    /// The end of the section: the start of the next top-level key, or the end of the text.
    end: usize,
    /// How many entries the section has.
    entries: usize,
}

pub(super) fn parse(file: &SourceFile) -> Option<World> {
    let text = file.text();
    if text.len() < MIN_BYTES
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get) < 2
    {
        return None;
    }
    let cut = find_cut(text)?;
    let first = SourceFile::new(
        file.name(),
        file.path(),
        blank(text, std::iter::once(cut.at..cut.end)),
    );
    let second = SourceFile::new(
        file.name(),
        file.path(),
        blank(
            text,
            [
                0..cut.header_end - "machines:\n".len(),
                cut.header_end..cut.at,
                cut.end..text.len(),
            ],
        ),
    );
    let (world, rest) = std::thread::scope(|scope| {
        let rest = scope.spawn(|| {
            load::parse_document::<MachinesOnly>(&second, "world", Duplicates::Reject).ok()
        });
        let world = load::parse_document::<World>(&first, "world", Duplicates::Reject).ok();
        (world, rest.join().ok().flatten())
    });
    let (mut world, rest) = (world?, rest?);
    for (name, machine) in rest.machines {
        if world.machines.insert(name, machine).is_some() {
            return None;
        }
    }
    (world.machines.len() == cut.entries && references(&world).is_empty()).then_some(world)
}

/// `text` with every byte in `ranges` but line breaks replaced by a space.
fn blank(text: &str, ranges: impl IntoIterator<Item = std::ops::Range<usize>>) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for range in ranges {
        for byte in &mut bytes[range] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Only ASCII was written, over whole ranges; a range that split a character would leave
    // invalid UTF-8, which `from_utf8` refuses rather than this function guessing.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Finds the `machines` section and the entry nearest the point that gives both halves the
/// same number of bytes to parse.
fn find_cut(text: &str) -> Option<Cut> {
    let header_end = if text.starts_with("machines:\n") {
        "machines:\n".len()
    } else {
        text.find("\nmachines:\n")? + "\nmachines:\n".len()
    };
    // A second top-level `machines:` line is not a shape this fast path understands.
    if text[header_end - 1..].contains("\nmachines:\n") {
        return None;
    }
    let mut entries = Vec::new();
    let mut indent = None;
    let mut end = text.len();
    let mut offset = header_end;
    for line in text[header_end..].split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_start_matches(' ');
        if content.trim().is_empty() || content.starts_with('#') {
            continue;
        }
        let spaces = line.len() - content.len();
        if spaces == 0 {
            end = start;
            break;
        }
        let indent = *indent.get_or_insert(spaces);
        if spaces == indent {
            if content.starts_with(['-', '?', '\t']) {
                return None;
            }
            entries.push(start);
        } else if spaces < indent {
            return None;
        }
    }
    if entries.len() < 2 {
        return None;
    }
    let target = end.saturating_sub(text.len() / 2);
    let nearest = entries.partition_point(|&entry| entry < target);
    let index = nearest.clamp(1, entries.len() - 1);
    Some(Cut {
        header_end,
        at: entries[index],
        end,
        entries: entries.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_section_and_cuts_at_an_entry() {
        let text = "a: 1\nmachines:\n  m1:\n    os: linux\n  m2:\n    os: linux\n  # note\n  m3:\n    os: linux\ntiming: {}\n";
        let cut = find_cut(text).expect("a cut");
        assert_eq!(cut.entries, 3);
        assert_eq!(&text[..cut.header_end], "a: 1\nmachines:\n");
        assert!(text[cut.at..].starts_with("  m"));
        assert!(text[cut.end..].starts_with("timing:"));
    }

    #[test]
    fn refuses_shapes_it_does_not_understand() {
        assert_eq!(
            find_cut("machines: {m1: {os: linux}, m2: {os: linux}}\n"),
            None
        );
        assert_eq!(find_cut("machines:\n  m1:\n    os: linux\n"), None);
        assert_eq!(
            find_cut("machines:\n  m1: {}\n  m2: {}\nx: 1\nmachines:\n  m3: {}\n"),
            None
        );
        assert_eq!(find_cut("machines:\n- m1\n- m2\n"), None);
    }

    #[test]
    fn blanking_keeps_every_offset() {
        let text = "ab\ncd\nef\n";
        let blanked = blank(text, std::iter::once(1..7));
        assert_eq!(blanked, "a \n  \n f\n");
        assert_eq!(blanked.len(), text.len());
    }
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
        assert!(text.len() > super::MIN_BYTES, "{} bytes", text.len());
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
}
