//! The second pass over a file that is YAML but not a valid document of its type: every
//! unknown key, unknown value, wrongly typed value and missing key, each with its span.
//!
//! serde stops at the first error, so a plan with three misspelt keys would need three runs.
//! This pass streams the parser's events once, checks each node against the JSON Schema that
//! is generated from the same types (`lifeboat schema plan`), and never stops. It only runs
//! after the typed parse has failed, so a valid file never pays for it, and it is
//! conservative: where the schema cannot say for sure (aliases, tags, `null`), it says
//! nothing, because the typed parse's own diagnostic is always reported as well.

use std::borrow::Cow;
use std::collections::HashSet;

use granit_parser::{Event, Parser, ScalarStyle};
use serde_json::Value;

use crate::diagnostic::{Diagnostic, codes, did_you_mean};
use crate::source::SourceFile;
use crate::span::Span;

/// At most this many problems: enough for any hand-written file, bounded for a generated one.
const MAX_PROBLEMS: usize = 200;

/// Every problem of `file` against `schema` (a generated JSON Schema with `$defs`), in file
/// order. `what` names the file kind in help texts (`plan`).
pub fn every_problem(file: &SourceFile, schema: &Value, what: &str) -> Vec<Diagnostic> {
    let mut walk = Walk {
        root: schema,
        what,
        stack: Vec::new(),
        problems: Vec::new(),
        documents: 0,
    };
    for event in Parser::new_from_str(file.text()) {
        // A parse error ends the pass; the typed parse has reported the file already.
        let Ok((event, span)) = event else { break };
        let span = match (span.start.byte_offset(), span.end.byte_offset()) {
            (Some(start), Some(end)) => Span::new(start, end.max(start)),
            _ => break,
        };
        if !walk.event(event, span) || walk.problems.len() >= MAX_PROBLEMS {
            break;
        }
    }
    walk.problems
}

struct Walk<'s> {
    root: &'s Value,
    what: &'s str,
    stack: Vec<Frame<'s>>,
    problems: Vec<Diagnostic>,
    documents: usize,
}

/// An open collection: what its entries must be.
enum Frame<'s> {
    Map {
        shape: Box<Shape<'s>>,
        /// `Some(schema)` while the next node is the value of the key just read (`None`: not
        /// checked); `None` while the next node is a key.
        value: Option<Option<&'s Value>>,
        /// The key the next value belongs to, for hints (`disks_gib` → "a number of GiB").
        key: Option<String>,
        seen: HashSet<String>,
        /// Keys suggested for a misspelt key: not reported missing as well (one typo, one
        /// diagnostic).
        suggested: HashSet<&'s str>,
        span: Span,
    },
    Seq {
        items: Option<&'s Value>,
        key: Option<String>,
    },
    /// A collection nobody checks (unknown key, alias, open schema): its depth only.
    Skip,
}

impl<'s> Walk<'s> {
    /// Handles one parser event; `false` ends the pass.
    fn event(&mut self, event: Event<'_>, span: Span) -> bool {
        match event {
            Event::DocumentStart(..) => {
                self.documents += 1;
                // Only the first document is the plan; the typed parse reports the others.
                self.documents == 1
            }
            Event::Scalar(text, style, _, tag) => {
                let (expected, key) = self.next_node();
                if expected.is_key() {
                    self.key(&text, span);
                } else if let Some(schema) = expected.schema()
                    && tag.is_none()
                {
                    self.scalar(schema, key.as_deref(), &text, style, span);
                }
                true
            }
            Event::Alias(_) => {
                if self.next_node().0.is_key() {
                    self.unchecked_value();
                }
                true
            }
            Event::MappingStart(..) => {
                let (expected, key) = self.next_node();
                let frame = match expected.schema() {
                    _ if expected.is_key() => {
                        self.unchecked_value();
                        Frame::Skip
                    }
                    Some(schema) => {
                        let shape = Shape::of(self.root, schema);
                        if shape.any {
                            Frame::Skip
                        } else if !shape.object {
                            self.wrong_type(&shape, key.as_deref(), "a mapping", span);
                            Frame::Skip
                        } else {
                            Frame::Map {
                                shape: Box::new(shape),
                                value: None,
                                key: None,
                                seen: HashSet::new(),
                                suggested: HashSet::new(),
                                span,
                            }
                        }
                    }
                    None => Frame::Skip,
                };
                self.stack.push(frame);
                true
            }
            Event::SequenceStart(..) => {
                let (expected, key) = self.next_node();
                let frame = match expected.schema() {
                    _ if expected.is_key() => {
                        self.unchecked_value();
                        Frame::Skip
                    }
                    Some(schema) => {
                        let shape = Shape::of(self.root, schema);
                        if shape.any {
                            Frame::Skip
                        } else if !shape.array {
                            self.wrong_type(&shape, key.as_deref(), "a list", span);
                            Frame::Skip
                        } else {
                            Frame::Seq {
                                items: shape.items,
                                key,
                            }
                        }
                    }
                    None => Frame::Skip,
                };
                self.stack.push(frame);
                true
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    shape,
                    seen,
                    suggested,
                    span,
                    ..
                }) = self.stack.pop()
                {
                    self.missing(&shape, &seen, &suggested, span);
                }
                true
            }
            Event::SequenceEnd => {
                self.stack.pop();
                true
            }
            _ => true,
        }
    }

    /// What the node that starts now must be, and the key it is the value of; advances the
    /// enclosing mapping from key to value and back.
    fn next_node(&mut self) -> (Expected<'s>, Option<String>) {
        match self.stack.last_mut() {
            None => (Expected::Node(Some(self.root)), None),
            Some(Frame::Skip) => (Expected::Node(None), None),
            Some(Frame::Seq { items, key }) => (Expected::Node(*items), key.clone()),
            Some(Frame::Map { value, key, .. }) => match value.take() {
                Some(schema) => (Expected::Node(schema), key.take()),
                None => (Expected::Key, None),
            },
        }
    }

    /// After a key that is not a plain scalar (an alias, a collection): its value is not
    /// checked. The typed parse reports such keys.
    fn unchecked_value(&mut self) {
        if let Some(Frame::Map { value, .. }) = self.stack.last_mut() {
            *value = Some(None);
        }
    }

    /// A key of the innermost mapping: known, a name in a map of names, or unknown.
    fn key(&mut self, text: &str, span: Span) {
        let Some(Frame::Map {
            shape,
            value,
            key,
            seen,
            suggested,
            ..
        }) = self.stack.last_mut()
        else {
            return;
        };
        *key = Some(text.to_string());
        seen.insert(text.to_string());
        if let Some((_, schema)) = shape.properties.iter().find(|(name, _)| *name == text) {
            *value = Some(Some(schema));
            return;
        }
        if let Some(schema) = shape.additional {
            *value = Some(Some(schema));
            return;
        }
        *value = Some(None);
        if !shape.closed {
            return;
        }
        let names: Vec<&str> = shape.properties.iter().map(|(name, _)| *name).collect();
        let help = match did_you_mean(text, names.iter().copied()) {
            Some(suggestion) => {
                suggested.insert(suggestion);
                format!("did you mean `{suggestion}`?")
            }
            None if names.is_empty() => "remove this key".to_string(),
            None => format!("expected one of {}", backticked(&names)),
        };
        self.problems.push(
            Diagnostic::error(codes::PLAN_SCHEMA, format!("unknown key `{}`", shown(text)))
                .with_label(span, "unknown key")
                .with_help(help),
        );
    }

    /// A scalar value against its schema.
    fn scalar(
        &mut self,
        schema: &'s Value,
        key: Option<&str>,
        text: &str,
        style: ScalarStyle,
        span: Span,
    ) {
        let shape = Shape::of(self.root, schema);
        let plain = style == ScalarStyle::Plain;
        if shape.any || plain && is_null(text) {
            return;
        }
        if let Some(values) = &shape.values {
            if !values.contains(&text) {
                self.problems.push(
                    Diagnostic::error(
                        codes::PLAN_SCHEMA,
                        format!("unknown value `{}`", shown(text)),
                    )
                    .with_label(span, "unknown value")
                    .with_help(super::unknown_value_help(text, values)),
                );
            }
            return;
        }
        if shape.string {
            return;
        }
        if shape.integer {
            match parse_integer(text) {
                Some(n) if n < 0 && shape.non_negative => {}
                Some(_) => return,
                None => {}
            }
        } else if shape.boolean {
            if matches!(text, "true" | "false" | "True" | "False" | "TRUE" | "FALSE") {
                return;
            }
        } else if shape.number && text.trim().parse::<f64>().is_ok() {
            return;
        }
        self.wrong_type(&shape, key, &format!("`{}`", shown(text)), span);
    }

    fn wrong_type(&mut self, shape: &Shape<'_>, key: Option<&str>, found: &str, span: Span) {
        let expected = shape.describe(key);
        let help = match hint(key) {
            Some(hint) => hint.to_string(),
            None => format!("see `lifeboat schema {}` for the format", self.what),
        };
        self.problems.push(
            Diagnostic::error(
                codes::PLAN_SCHEMA,
                format!("expected {expected}, found {found}"),
            )
            .with_label(span, format!("expected {expected}"))
            .with_help(help),
        );
    }

    /// Required keys a closed mapping lacks, labelled where the mapping starts.
    fn missing(
        &mut self,
        shape: &Shape<'_>,
        seen: &HashSet<String>,
        suggested: &HashSet<&str>,
        span: Span,
    ) {
        for field in shape
            .required
            .iter()
            .filter(|f| !seen.contains(**f) && !suggested.contains(**f))
        {
            self.problems.push(
                Diagnostic::error(
                    codes::PLAN_SCHEMA,
                    format!("missing required key `{field}`"),
                )
                .with_label(span, format!("`{field}` is required in this mapping"))
                .with_help(format!(
                    "add `{field}: …`; see `lifeboat schema {}` for the format",
                    self.what
                )),
            );
        }
    }
}

/// What the parser's next node is.
enum Expected<'s> {
    /// A key of the innermost mapping.
    Key,
    /// A value that must match the schema (`None`: not checked).
    Node(Option<&'s Value>),
}

impl<'s> Expected<'s> {
    fn is_key(&self) -> bool {
        matches!(self, Self::Key)
    }

    fn schema(&self) -> Option<&'s Value> {
        match self {
            Self::Key => None,
            Self::Node(schema) => *schema,
        }
    }
}

/// What a schema allows, flattened over `$ref`, `anyOf` and `oneOf`.
#[derive(Default)]
struct Shape<'s> {
    /// No constraint the pass understands: everything passes.
    any: bool,
    object: bool,
    array: bool,
    string: bool,
    integer: bool,
    number: bool,
    boolean: bool,
    non_negative: bool,
    properties: Vec<(&'s str, &'s Value)>,
    /// The schema of every other key (a map of names), if any.
    additional: Option<&'s Value>,
    /// Keys outside `properties` are errors.
    closed: bool,
    required: Vec<&'s str>,
    items: Option<&'s Value>,
    values: Option<Vec<&'s str>>,
    /// How many object alternatives were merged: `required` holds only for exactly one.
    objects: usize,
}

impl<'s> Shape<'s> {
    fn of(root: &'s Value, schema: &'s Value) -> Self {
        let mut shape = Self::default();
        shape.add(root, schema, 0);
        if shape.objects != 1 {
            shape.required.clear();
        }
        shape
    }

    fn add(&mut self, root: &'s Value, schema: &'s Value, depth: usize) {
        let Some(object) = schema.as_object() else {
            // `true` (or anything unexpected) allows everything.
            self.any = true;
            return;
        };
        if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
            match reference
                .strip_prefix("#/$defs/")
                .and_then(|name| root.get("$defs")?.get(name))
            {
                Some(target) if depth < 16 => self.add(root, target, depth + 1),
                _ => self.any = true,
            }
            return;
        }
        let mut constrained = false;
        for alternatives in ["anyOf", "oneOf"] {
            if let Some(branches) = object.get(alternatives).and_then(Value::as_array) {
                constrained = true;
                for branch in branches {
                    self.add(root, branch, depth + 1);
                }
            }
        }
        if let Some(values) = object.get("enum").and_then(Value::as_array) {
            constrained = true;
            self.values
                .get_or_insert_with(Vec::new)
                .extend(values.iter().filter_map(Value::as_str));
        }
        if let Some(value) = object.get("const").and_then(Value::as_str) {
            constrained = true;
            self.values.get_or_insert_with(Vec::new).push(value);
        }
        let types: Vec<&str> = match object.get("type") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for kind in &types {
            constrained = true;
            match *kind {
                "object" => self.object = true,
                "array" => self.array = true,
                // An enum's `"type": "string"` is covered by its values.
                "string" if !object.contains_key("enum") && !object.contains_key("const") => {
                    self.string = true;
                }
                "integer" => self.integer = true,
                "number" => self.number = true,
                "boolean" => self.boolean = true,
                _ => {}
            }
        }
        if object.get("minimum").and_then(Value::as_f64) == Some(0.0) {
            self.non_negative = true;
        }
        if types.contains(&"object") {
            self.objects += 1;
            if let Some(properties) = object.get("properties").and_then(Value::as_object) {
                self.properties.extend(
                    properties
                        .iter()
                        .map(|(name, schema)| (name.as_str(), schema)),
                );
            }
            match object.get("additionalProperties") {
                Some(Value::Bool(false)) => self.closed = true,
                Some(schema @ Value::Object(_)) => self.additional = Some(schema),
                _ => self.any = true,
            }
            if let Some(required) = object.get("required").and_then(Value::as_array) {
                self.required
                    .extend(required.iter().filter_map(Value::as_str));
            }
        }
        if let Some(items) = object.get("items") {
            self.items = Some(items);
        }
        if !constrained {
            self.any = true;
        }
    }

    /// "a mapping", "a list", "a whole number", … for "expected …".
    fn describe(&self, key: Option<&str>) -> String {
        if let Some(values) = &self.values {
            return format!("one of {}", backticked(values));
        }
        let mut kinds = Vec::new();
        if self.object {
            kinds.push("a mapping");
        }
        if self.array {
            kinds.push("a list");
        }
        if self.string {
            kinds.push("a string");
        }
        if self.integer {
            kinds.push(match key {
                Some("disks_gib") => "a number of GiB",
                _ => "a whole number",
            });
        } else if self.number {
            kinds.push("a number");
        }
        if self.boolean {
            kinds.push("`true` or `false`");
        }
        match kinds.as_slice() {
            [] => "something else".to_string(),
            [one] => (*one).to_string(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        }
    }
}

/// What to write instead, for the keys where a bare "expected a whole number" is not enough.
fn hint(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "disks_gib" => {
            Some("disk sizes are numbers of GiB without a unit, e.g. `disks_gib: [64, 256]`")
        }
        "version" => Some("the plan format version is `version: 1`"),
        _ => None,
    }
}

/// Longest value quoted in a message; the label points at the whole value anyway.
const MAX_SHOWN_CHARS: usize = 40;

/// A value for a message, cut short: a 10 MB string in the wrong place must not be copied
/// into the report.
fn shown(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

fn backticked(names: &[&str]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A YAML 1.2 core-schema integer (decimal, `0x`, `0o`), as serde-saphyr reads one.
fn parse_integer(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let digits: Cow<'_, str> = if digits.contains('_') {
        Cow::Owned(digits.replace('_', ""))
    } else {
        Cow::Borrowed(digits)
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(octal) = digits.strip_prefix("0o") {
        i128::from_str_radix(octal, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Diagnostic> {
        let file = SourceFile::new("plan.yaml", "plan.yaml", text.to_string());
        every_problem(&file, &Value::from(crate::schema::plan()), "plan")
    }

    /// The pass must never call a valid plan wrong: every valid fixture, every example and a
    /// generated estate give no problem.
    #[test]
    fn valid_plans_have_no_problems() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut paths: Vec<std::path::PathBuf> =
            std::fs::read_dir(root.join("tests/fixtures/validate/valid"))
                .expect("fixtures")
                .map(|e| e.expect("an entry").path())
                .collect();
        paths.push(root.join("examples/avs-failback/lifeboat.yaml"));
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("readable");
            assert!(crate::load::load_plan(&SourceFile::new("p", &path, text.clone())).is_ok());
            assert_eq!(problems(&text), [], "{}", path.display());
        }
        let generated = crate::generate::plan_yaml(&crate::generate::EstateShape {
            machines: 300,
            groups: 20,
            master_targets: 10,
            boot_groups: 4,
            seed: 7,
        });
        assert_eq!(problems(&generated), []);
    }

    #[test]
    fn a_complex_key_and_its_value_are_left_to_the_typed_parse() {
        let found = problems("version: 1\n? [a, b]\n: {gaol: x}\nnme: n\n");
        let messages: Vec<&str> = found.iter().map(|d| d.message.as_str()).collect();
        assert!(messages.contains(&"unknown key `nme`"), "{messages:?}");
        assert!(!messages.iter().any(|m| m.contains("gaol")), "{messages:?}");
    }

    #[test]
    fn integers_are_read_as_yaml_reads_them() {
        assert_eq!(parse_integer("64"), Some(64));
        assert_eq!(parse_integer("0x40"), Some(64));
        assert_eq!(parse_integer("-3"), Some(-3));
        assert_eq!(parse_integer("64G"), None);
        assert_eq!(parse_integer(""), None);
    }
}
