//! Parsing a large document on two cores.
//!
//! A plan or world of many machines is megabytes of YAML, and parsing it is most of what
//! `plan` spends (BENCHMARKS.md). YAML parsing is sequential, but the machines are independent
//! entries of one top-level mapping. So the file is parsed as two documents at once: one with
//! the second half of that mapping's entries blanked out, one with everything but them (and
//! the section's key line) blanked out. Blanking replaces every byte but line breaks with a
//! space, so both documents keep the file's exact byte offsets and line numbers: every span in
//! either half points into the real file.
//!
//! This is only a fast path. It is taken when the file has the shape lifeboat and people
//! usually write (a top-level `KEY:` line followed by indented entries). The caller merges the
//! halves and checks them; on any doubt or error it parses the file whole, which reports
//! problems exactly as before.

use serde::de::DeserializeOwned;

use super::{Duplicates, parse_document};
use crate::SourceFile;

/// Below this size one core parses a file faster than two threads can start.
pub const MIN_BYTES: usize = 1 << 20;

/// Where a section is, and where to cut it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The start of the `KEY:` line.
    pub header: usize,
    /// The end of the `KEY:` line (after its line break).
    pub header_end: usize,
    /// The first byte of the entry that starts the second half.
    pub at: usize,
    /// The end of the section: the start of the next top-level key, or the end of the text.
    pub end: usize,
    /// How many entries the section has.
    pub entries: usize,
}

/// Both halves of `file`, parsed at once: the whole document type for the first, and a type
/// holding only the section for the second. `None` when the file is small, has another shape,
/// either half fails to parse, or the machine has one core.
pub fn parse_in_halves<First, Second>(
    file: &SourceFile,
    what: &str,
    duplicates: Duplicates,
    key: &str,
) -> Option<(First, Second, Cut)>
where
    First: DeserializeOwned + Send,
    Second: DeserializeOwned + Send,
{
    let text = file.text();
    if text.len() < MIN_BYTES
        || std::thread::available_parallelism().map_or(1, std::num::NonZero::get) < 2
    {
        return None;
    }
    let cut = find_cut(text, key)?;
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
            [0..cut.header, cut.header_end..cut.at, cut.end..text.len()],
        ),
    );
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| parse_document::<Second>(&second, what, duplicates).ok());
        let first = parse_document::<First>(&first, what, duplicates).ok();
        (first, second.join().ok().flatten())
    });
    Some((first?, second?, cut))
}

/// `text` with every byte in `ranges` but line breaks replaced by a space.
pub fn blank(text: &str, ranges: impl IntoIterator<Item = std::ops::Range<usize>>) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for range in ranges {
        for byte in &mut bytes[range] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
    }
    // Only ASCII was written, over whole lines' worth of bytes; were a character ever split,
    // `from_utf8` would refuse it, and the empty text would fail to parse: no fast path.
    String::from_utf8(bytes).unwrap_or_default()
}

/// Finds the top-level section `key` and the entry nearest the point that gives both halves
/// the same number of bytes to parse.
pub fn find_cut(text: &str, key: &str) -> Option<Cut> {
    let line = format!("{key}:\n");
    let header = if text.starts_with(&line) {
        0
    } else {
        text.find(&format!("\n{line}"))? + 1
    };
    let header_end = header + line.len();
    // A second top-level `KEY:` line is not a shape this fast path understands.
    if text[header_end - 1..].contains(&format!("\n{line}")) {
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
            if content.starts_with(['-', '?', '\t', '"', '\'', '&', '*', '!', '{', '[']) {
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
        header,
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
        let cut = find_cut(text, "machines").expect("a cut");
        assert_eq!(cut.entries, 3);
        assert_eq!(&text[cut.header..cut.header_end], "machines:\n");
        assert!(text[cut.at..].starts_with("  m"));
        assert!(text[cut.end..].starts_with("timing:"));
    }

    #[test]
    fn refuses_shapes_it_does_not_understand() {
        let cut = |text| find_cut(text, "machines");
        assert_eq!(cut("machines: {m1: {os: linux}, m2: {os: linux}}\n"), None);
        assert_eq!(cut("machines:\n  m1:\n    os: linux\n"), None);
        assert_eq!(
            cut("machines:\n  m1: {}\n  m2: {}\nx: 1\nmachines:\n  m3: {}\n"),
            None
        );
        assert_eq!(cut("machines:\n- m1\n- m2\n"), None);
        assert_eq!(cut("machines:\n  m1: {}\n  *alias : {}\n"), None);
        assert_eq!(cut("other:\n  m1: {}\n  m2: {}\n"), None);
    }

    #[test]
    fn blanking_keeps_every_offset() {
        let text = "ab\ncd\nef\n";
        let blanked = blank(text, std::iter::once(1..7));
        assert_eq!(blanked, "a \n  \n f\n");
        assert_eq!(blanked.len(), text.len());
    }
}
