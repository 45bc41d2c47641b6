//! Diagnostics as miette graphical reports (human) or the JSON report of DESIGN.md §6.

use std::fmt;
use std::io::IsTerminal;

use lifeboat_engine::diagnostic::JsonReport;
use lifeboat_engine::{Diagnostic, Severity, SourceFile};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};

/// Whether human output may use colour: only on a terminal, and never with `NO_COLOR` set.
pub fn use_colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Renders diagnostics as miette reports, one after another, for stderr.
pub fn render_human(diagnostics: &[Diagnostic], file: &SourceFile) -> String {
    let terminal = std::io::stderr().is_terminal();
    let theme = if use_colour(terminal) {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    // Off a terminal the width is fixed, so CI logs and snapshots do not depend on the runner.
    let width = if terminal {
        terminal_width().unwrap_or(100)
    } else {
        100
    };
    // Lines wrap at spaces outside backticks only: a name is never cut in two (`mt-` /
    // `linux-01`), and a name longer than the line stays whole.
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(width)
        .with_context_lines(1)
        .with_break_words(false)
        .with_word_splitter(textwrap::WordSplitter::NoHyphenation)
        .with_word_separator(textwrap::WordSeparator::Custom(words_outside_backticks));
    let source = IndexedSource(file);
    let mut out = String::new();
    for diagnostic in diagnostics {
        let located;
        let diagnostic = if has_huge_line(diagnostic, file) {
            located = without_snippet(diagnostic, file);
            &located
        } else {
            diagnostic
        };
        let report = Report {
            diagnostic,
            source: &source,
        };
        // Writing into a String cannot fail; a failure would be a miette bug, and losing one
        // report's decoration is better than losing the run.
        if handler.render_report(&mut out, &report).is_err() {
            out.push_str(&format!("{}: {}\n", diagnostic.code, diagnostic.message));
        }
        out.push('\n');
    }
    out
}

pub fn render_json(diagnostics: &[Diagnostic], file: &SourceFile) -> String {
    let report = JsonReport::new(diagnostics, file);
    serde_json::to_string_pretty(&report).expect("the JSON report is plain data") + "\n"
}

/// "2 errors, 1 warning" for summaries.
pub fn counts(diagnostics: &[Diagnostic]) -> String {
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    match (errors, warnings) {
        (e, 0) => plural(e, "error"),
        (0, w) => plural(w, "warning"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

/// The width of the terminal stderr is on, as the terminal reports it; `COLUMNS` (which
/// shells set but do not export) overrides it when it is exported.
fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|&c: &usize| c > 0)
    {
        return Some(columns);
    }
    let (terminal_size::Width(columns), _) = terminal_size::terminal_size_of(std::io::stderr())?;
    (columns > 0).then_some(usize::from(columns))
}

/// Splits a line into words at spaces, except inside backticks: a backticked name (which may
/// hold spaces or hyphens) is one word, so wrapping never breaks it.
fn words_outside_backticks(line: &str) -> Box<dyn Iterator<Item = textwrap::core::Word<'_>> + '_> {
    let mut words = Vec::new();
    let mut start = 0;
    let mut inside = false;
    let mut after_space = false;
    for (i, c) in line.char_indices() {
        if c == ' ' && !inside {
            after_space = true;
            continue;
        }
        if after_space {
            words.push(textwrap::core::Word::from(&line[start..i]));
            start = i;
            after_space = false;
        }
        if c == '`' {
            inside = !inside;
        }
    }
    if start < line.len() {
        words.push(textwrap::core::Word::from(&line[start..]));
    }
    Box::new(words.into_iter())
}

struct Report<'a> {
    diagnostic: &'a Diagnostic,
    source: &'a IndexedSource<'a>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("code", &self.diagnostic.code)
            .finish()
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        (!self.diagnostic.labels.is_empty()).then_some(self.source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let text = self.source.0.text();
        let labels = self
            .diagnostic
            .labels
            .iter()
            .enumerate()
            .map(move |(i, label)| {
                let span = SourceSpan::from(shorten(text, label.span.start, label.span.end));
                let text = Some(label.message.clone());
                if i == 0 {
                    LabeledSpan::new_primary_with_span(text, span)
                } else {
                    LabeledSpan::new_with_span(text, span)
                }
            });
        Some(Box::new(labels))
    }
}

/// Lines longer than this are not quoted: a snippet of a 10 MB line helps nobody.
const MAX_QUOTED_LINE_BYTES: usize = 4096;

fn has_huge_line(diagnostic: &Diagnostic, file: &SourceFile) -> bool {
    diagnostic.labels.iter().any(|label| {
        let line = file.line_of(label.span.start);
        file.lines_range(line, line).len() > MAX_QUOTED_LINE_BYTES
    })
}

/// The diagnostic with its labels folded into the message as `file:line:column`.
fn without_snippet(diagnostic: &Diagnostic, file: &SourceFile) -> Diagnostic {
    let mut plain = diagnostic.clone();
    if let Some(label) = plain.labels.first() {
        let at = file.position(label.span.start);
        plain.message = format!(
            "{} (at {}:{}:{}: {})",
            plain.message,
            file.name(),
            at.line,
            at.column,
            label.message
        );
    }
    plain.labels.clear();
    plain
}

/// Longest label a human report underlines; JSON keeps the exact span.
const MAX_LABEL_BYTES: usize = 120;

/// Cuts a label down to its first line and at most [`MAX_LABEL_BYTES`], so a 10 MB value or
/// a 500-line mapping does not end up copied into the terminal.
fn shorten(text: &str, start: usize, end: usize) -> std::ops::Range<usize> {
    let mut end = end
        .min(text.len())
        .min(start.saturating_add(MAX_LABEL_BYTES));
    if let Some(newline) = text.get(start..end).and_then(|s| s.find('\n')) {
        end = start + newline;
    }
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    start..end.max(start)
}

/// A miette source that finds the lines around a span through the file's line index.
///
/// miette's own `str` source scans from the first byte for every span it reads, so a report
/// of N diagnostics over a large plan costs N × file size. This one cuts out the few lines
/// the span needs and lets miette work on that window only.
struct IndexedSource<'a>(&'a SourceFile);

impl SourceCode for IndexedSource<'_> {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let file = self.0;
        let text = file.text();
        let (start, end) = (span.offset(), span.offset() + span.len());
        if end > text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let first = file.line_of(start).saturating_sub(context_lines_before);
        let last = file.line_of(end.saturating_sub(1).max(start)) + context_lines_after;
        let window = file.lines_range(first, last);
        let local = SourceSpan::from((start - window.start, span.len()));
        let contents =
            text[window.clone()].read_span(&local, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            file.name().to_string(),
            contents.data(),
            SourceSpan::from((
                contents.span().offset() + window.start,
                contents.span().len(),
            )),
            contents.line() + first,
            contents.column(),
            contents.line_count(),
        )))
    }
}
