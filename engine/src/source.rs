//! A source file with a line index, to turn byte offsets into 1-based lines and columns.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::span::Span;

/// The text of one input file and where its lines start.
///
/// Building the index is one pass over the bytes, made the first time a position is asked
/// for (a large file that parses cleanly never needs it); each lookup is a binary search, so
/// rendering N diagnostics costs O(N log L), not O(N·L).
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    path: PathBuf,
    text: String,
    line_index: std::sync::OnceLock<Vec<usize>>,
}

/// A position as diagnostics report it: line and column 1-based, byte 0-based.
///
/// Columns count Unicode scalar values, the way editors and rustc count them, so a label
/// after a `é` still lands under the right character.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Position {
    pub line: usize,
    pub column: usize,
    pub byte: usize,
}

impl SourceFile {
    /// `name` is how diagnostics refer to the file (usually the path as the user typed it).
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, text: String) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            text,
            line_index: std::sync::OnceLock::new(),
        }
    }

    /// Where each line starts, in bytes.
    fn line_starts(&self) -> &[usize] {
        self.line_index.get_or_init(|| {
            std::iter::once(0)
                .chain(
                    self.text
                        .bytes()
                        .enumerate()
                        .filter(|&(_, b)| b == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect()
        })
    }

    /// Reads a file as UTF-8, through the size-capped reader ([`crate::input`]): only a
    /// regular file of at most [`crate::input::MAX_INPUT_BYTES`]. Invalid UTF-8 is an error the
    /// caller turns into a diagnostic.
    pub fn read(path: &Path) -> std::io::Result<Self> {
        let bytes = crate::input::read_capped(path, crate::input::MAX_INPUT_BYTES)?;
        Self::from_bytes(path, bytes)
    }

    /// A file already read, as UTF-8; invalid UTF-8 is an error, as for [`SourceFile::read`].
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> std::io::Result<Self> {
        let text = String::from_utf8(bytes).map_err(|e| {
            let at = e.utf8_error().valid_up_to();
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("the file is not valid UTF-8 (first invalid byte at offset {at})"),
            )
        })?;
        Ok(Self::new(path.display().to_string(), path, text))
    }

    /// The text, giving the file up.
    pub fn into_text(self) -> String {
        self.text
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text a span covers, or `""` when the span does not fit this file.
    pub fn slice(&self, span: Span) -> &str {
        self.text.get(span.range()).unwrap_or("")
    }

    /// The 0-based line containing a byte offset.
    pub fn line_of(&self, byte: usize) -> usize {
        self.line_starts().partition_point(|&start| start <= byte) - 1
    }

    /// The byte range of lines `first..=last` (0-based, clamped), newlines included.
    pub fn lines_range(&self, first: usize, last: usize) -> std::ops::Range<usize> {
        let last = last.min(self.line_starts().len() - 1);
        let start = self.line_starts()[first.min(last)];
        let end = self
            .line_starts()
            .get(last + 1)
            .copied()
            .unwrap_or(self.text.len());
        start..end
    }

    /// The byte offset of a 1-based line and character column, clamped to the line's end.
    pub fn byte_at(&self, line: usize, column: usize) -> Option<usize> {
        let range = self.lines_range(line.checked_sub(1)?, line - 1);
        if line > self.line_starts().len() {
            return None;
        }
        let text = &self.text[range.clone()];
        let offset = text
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(text.len(), |(i, _)| i);
        Some(range.start + offset)
    }

    /// The position of a byte offset, clamped to the end of the file and to a char boundary.
    pub fn position(&self, byte: usize) -> Position {
        let mut byte = byte.min(self.text.len());
        while !self.text.is_char_boundary(byte) {
            byte -= 1;
        }
        let line = self.line_of(byte);
        let line_start = self.line_starts()[line];
        let column = self.text[line_start..byte].chars().count() + 1;
        Position {
            line: line + 1,
            column,
            byte,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_char_columns() {
        let file = SourceFile::new("t", "t", "ab\ncé x\n".to_string());
        assert_eq!(
            file.position(0),
            Position {
                line: 1,
                column: 1,
                byte: 0
            }
        );
        assert_eq!(
            file.position(3),
            Position {
                line: 2,
                column: 1,
                byte: 3
            }
        );
        // `x` follows a two-byte `é`: byte 7, but column 4.
        assert_eq!(
            file.position(7),
            Position {
                line: 2,
                column: 4,
                byte: 7
            }
        );
        assert_eq!(file.position(999).line, 3);
    }
}
