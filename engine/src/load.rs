//! Step 1 of the engine: text → typed [`Plan`], or its diagnostics.
//!
//! Text that is not YAML has no structure to check further, so it gives its first syntax
//! error. YAML that is not a plan gives one `plan::schema` diagnostic from [`load_plan`], and
//! every one of them from [`load_plan_all`] (a second pass, [`every_problem`]). Everything
//! after loading reports all problems at once.

mod every_problem;
pub mod split;

use serde_saphyr::{DuplicateKeyPolicy, Error as YamlError};

use crate::diagnostic::{Diagnostic, codes, did_you_mean};
use crate::model::Plan;
use crate::source::SourceFile;
use crate::span::Span;

/// Largest plan file we read: [`crate::input::MAX_INPUT_BYTES`], which the reader enforces
/// before anything is parsed.
pub const MAX_PLAN_BYTES: usize = crate::input::MAX_INPUT_BYTES as usize;

/// serde-saphyr's defaults (250,000 nodes) fit hand-written configs; a 100,000-machine plan
/// has about 2 million nodes. Depth stays at the default: a plan is five levels deep, so
/// deeper input is an error, and a bounded depth keeps hostile input from exhausting the stack.
pub(crate) fn yaml_options(duplicates: Duplicates) -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: match duplicates {
            Duplicates::PassThrough => DuplicateKeyPolicy::PassThrough,
            Duplicates::Reject => DuplicateKeyPolicy::Error,
        },
        budget: serde_saphyr::budget! {
            max_nodes: 50_000_000,
            max_events: 100_000_000,
            max_total_scalar_bytes: MAX_PLAN_BYTES,
            max_reader_input_bytes: Some(MAX_PLAN_BYTES),
        },
    }
}

/// Parses a plan file. On failure the diagnostic is `plan::syntax` when the text is not YAML
/// at all, `plan::schema` when it is YAML but not a plan.
pub fn load_plan(file: &SourceFile) -> Result<Plan, Box<Diagnostic>> {
    if let Some(plan) = load_plan_in_halves(file) {
        return Ok(plan);
    }
    parse_document(file, "plan", Duplicates::PassThrough)
}

/// [`load_plan`], but a file that is YAML and not a plan gets every `plan::schema` problem
/// (unknown keys and values, wrong types, missing keys) at once, in file order, instead of
/// the first: `validate` promises every problem in one run.
pub fn load_plan_all(file: &SourceFile) -> Result<Plan, Vec<Diagnostic>> {
    let first = match load_plan(file) {
        Ok(plan) => return Ok(plan),
        Err(first) => *first,
    };
    // A syntax error leaves no tree to walk; a file over the size limit is not read twice.
    if first.code != codes::PLAN_SCHEMA || first.labels.is_empty() {
        return Err(vec![first]);
    }
    let schema = serde_json::Value::from(crate::schema::plan());
    let mut all = every_problem::every_problem(file, &schema, "plan");
    // Where both passes saw the same value, the second pass's wording stands (it knows the
    // key); the typed parse's own findings (timestamps, versions, two providers) are kept.
    let start = first.primary_start();
    if !all.iter().any(|d| d.primary_start() == start) {
        all.push(first);
    }
    crate::diagnostic::sort(&mut all);
    Err(all)
}

/// "did you mean …?" for an unknown enum value, including the abbreviations people write
/// (`ALR` for alternate-location recovery), else the list of values.
pub(crate) fn unknown_value_help(value: &str, expected: &[&str]) -> String {
    let suggestion = abbreviation(value)
        .filter(|full| expected.contains(full))
        .or_else(|| did_you_mean(value, expected.iter().copied()));
    match suggestion {
        Some(suggestion) => format!("did you mean `{suggestion}`?"),
        None => format!(
            "expected one of {}",
            expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The value an abbreviation from the ASR documentation stands for: original-location and
/// alternate-location recovery are written OLR and ALR there and in every runbook.
fn abbreviation(value: &str) -> Option<&'static str> {
    match value.to_ascii_lowercase().as_str() {
        "olr" => Some("original"),
        "alr" => Some("alternate"),
        _ => None,
    }
}

/// The second half of a plan's `machines` (see [`split`]).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanMachines {
    machines: crate::Spanned<crate::model::NamedMap<crate::model::Machine>>,
}

/// [`load_plan`] on two cores, for a large plan; `None` leaves it to the whole parse.
fn load_plan_in_halves(file: &SourceFile) -> Option<Plan> {
    let (mut plan, rest, cut) = split::parse_in_halves::<Plan, PlanMachines>(
        file,
        "plan",
        Duplicates::PassThrough,
        "machines",
    )?;
    // The section's own span stays the first half's: the parser marks where a mapping
    // starts, which is where the first half's starts.
    let machines = &mut plan.machines;
    for (name, machine) in rest.machines.value.into_entries() {
        machines.value.push(name, machine);
    }
    // Every entry line became an entry (duplicates included: the plan reports them later).
    (machines.value.len() == cut.entries).then_some(plan)
}

/// What the parser does with a key that appears twice in one mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    /// Hand both entries to the type, which reports them (the plan's `NamedMap`s do, with a
    /// label on each definition).
    PassThrough,
    /// Refuse the document: for types built on ordinary maps, which would keep one silently.
    Reject,
}

/// Parses any YAML document of ours (plan, world) with the same rules and diagnostics.
pub fn parse_document<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    what: &str,
    duplicates: Duplicates,
) -> Result<T, Box<Diagnostic>> {
    let text = file.text();
    if text.len() > MAX_PLAN_BYTES {
        return Err(Box::new(
            Diagnostic::error(
                codes::PLAN_SCHEMA,
                format!(
                    "the {what} file is larger than {} MiB",
                    MAX_PLAN_BYTES >> 20
                ),
            )
            .with_help("check that the path names a lifeboat file"),
        ));
    }
    if is_blank(text) {
        return Err(Box::new(
            Diagnostic::error(codes::PLAN_SCHEMA, format!("the {what} file is empty"))
                .with_label(Span::new(0, 0), "expected a YAML mapping here")
                .with_help(format!(
                    "a {what} file starts with `version: 1`; see `lifeboat schema {what}`"
                )),
        ));
    }
    match serde_saphyr::from_str_with_options::<T>(text, yaml_options(duplicates)) {
        Ok(value) => Ok(value),
        Err(typed_error) => {
            // Only on failure, parse again without types: if even that fails, the text is not
            // YAML and the parser's error is the one to show.
            let syntax = serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(
                text,
                yaml_options(Duplicates::PassThrough),
            )
            .err();
            Err(Box::new(match syntax {
                Some(error) => yaml_diagnostic(file, &error, codes::PLAN_SYNTAX, what),
                None => yaml_diagnostic(file, &typed_error, codes::PLAN_SCHEMA, what),
            }))
        }
    }
}

const SYNTAX_HELP: &str = "fix the YAML at the marked position: check brackets, quotes and indentation (spaces, not tabs)";

fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#') || line == "---" || line == "..."
    })
}

fn yaml_diagnostic(
    file: &SourceFile,
    error: &YamlError,
    code: &'static str,
    what: &str,
) -> Diagnostic {
    let error = unwrap_snippet(error);
    let span = error.location().and_then(|l| locate(file, &l));
    let (message, label, help) = if code == codes::PLAN_SYNTAX {
        let (message, _, _) = describe(error, what);
        (
            message,
            "the YAML is broken here".to_string(),
            Some(SYNTAX_HELP.to_string()),
        )
    } else {
        describe(error, what)
    };
    let span = span.or_else(|| duplicate_key_span(file, error));
    let mut diagnostic = Diagnostic::error(code, message);
    if let Some(span) = span {
        diagnostic = diagnostic.with_label(span, label);
    }
    match help {
        Some(help) => diagnostic.with_help(help),
        None => diagnostic,
    }
}

/// The byte span of a location. Parser errors carry only line, column and a length in
/// characters; for those the span is rebuilt through the file's line index.
fn locate(file: &SourceFile, location: &serde_saphyr::Location) -> Option<Span> {
    if let Some(span) = Span::from_location(location) {
        return Some(span);
    }
    let line = usize::try_from(location.line()).ok().filter(|&l| l > 0)?;
    let column = usize::try_from(location.column()).ok()?;
    let start = file.byte_at(line, column)?;
    let chars = usize::try_from(location.span().len()).unwrap_or(0);
    let len: usize = file.text()[start..]
        .chars()
        .take(chars)
        .map(char::len_utf8)
        .sum();
    Some(Span::new(start, start + len))
}

fn unwrap_snippet(mut error: &YamlError) -> &YamlError {
    while let YamlError::WithSnippet { error: inner, .. }
    | YamlError::AliasError { error: inner, .. } = error
    {
        error = inner;
    }
    error
}

/// Turns serde-saphyr's error into our wording: lowercase, names in backticks, a did-you-mean
/// where a name was misspelt, and no "at line …" (the label carries the position).
fn describe(error: &YamlError, what: &str) -> (String, String, Option<String>) {
    let one_of = |expected: &[&str]| {
        expected
            .iter()
            .map(|e| format!("`{e}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match error {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => {
            let help = match did_you_mean(field, expected.iter().copied()) {
                Some(suggestion) => format!("did you mean `{suggestion}`?"),
                None if expected.is_empty() => "remove this key".to_string(),
                None => format!("expected one of {}", one_of(expected)),
            };
            (
                format!("unknown key `{field}`"),
                "unknown key".to_string(),
                Some(help),
            )
        }
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (
            format!("unknown value `{variant}`"),
            "unknown value".to_string(),
            Some(unknown_value_help(variant, expected)),
        ),
        YamlError::SerdeMissingField { field, .. } => (
            format!("missing required key `{field}`"),
            format!("`{field}` is required in this mapping"),
            Some(format!(
                "add `{field}: …`; see `lifeboat schema {what}` for the format"
            )),
        ),
        YamlError::Budget { breach, .. } => (
            format!(
                "the {what} file exceeds a parser limit: {}",
                describe_breach(breach)
            ),
            "limit reached here".to_string(),
            Some(format!(
                "a lifeboat {what} nests a few levels deep and uses few aliases; check that this is the intended file"
            )),
        ),
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (
            format!("expected {expected}, found {unexpected}"),
            format!("expected {expected}"),
            None,
        ),
        YamlError::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => (
            format!("invalid value {unexpected}, expected {expected}"),
            format!("expected {expected}"),
            None,
        ),
        other => {
            let text = other.to_string();
            // serde-saphyr appends " at line L, column C"; the label shows the position.
            let text = match text.rfind(" at line ") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            // serde's derived structs say "duplicate field `k`"; the parser, under
            // `Duplicates::Reject`, says "duplicate mapping key: k, set DuplicateKeyPolicy…".
            let duplicate = text
                .strip_prefix("duplicate field `")
                .and_then(|rest| rest.split('`').next())
                .or_else(|| {
                    text.strip_prefix("duplicate mapping key: ")
                        .and_then(|rest| rest.split(',').next())
                });
            if let Some(key) = duplicate {
                return (
                    format!("key `{key}` appears twice in one mapping"),
                    "defined again here".to_string(),
                    Some(format!("remove one of the two `{key}` keys")),
                );
            }
            (
                lowercase_first(&text),
                "here".to_string(),
                Some(format!("see `lifeboat schema {what}` for the format")),
            )
        }
    }
}

fn describe_breach(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Depth { depth } => format!("nested {depth} levels deep"),
        B::Aliases { aliases } => format!("{aliases} alias references"),
        B::Anchors { anchors } => format!("{anchors} anchors"),
        B::Events { events } => format!("{events} parser events"),
        B::Documents { documents } => format!("{documents} documents"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// serde's derived structs reject a repeated key without a location. Find the second
/// `key:` in the file so the diagnostic can still point at it. This is a textual search, so
/// it is only used for this one error, whose message names the key.
fn duplicate_key_span(file: &SourceFile, error: &YamlError) -> Option<Span> {
    let text = error.to_string();
    let key = text.strip_prefix("duplicate field `")?.split('`').next()?;
    let needle = format!("{key}:");
    let mut seen = 0;
    let mut offset = 0;
    for line in file.text().split_inclusive('\n') {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with(&needle) || trimmed.starts_with(&format!("\"{key}\":")) {
            seen += 1;
            if seen == 2 {
                let start = offset + indent;
                return Some(Span::new(start, start + key.len()));
            }
        }
        offset += line.len();
    }
    None
}
