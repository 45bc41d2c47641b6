//! The report of `lifeboat diff` for people (terminal), machines (JSON) and pull requests
//! (Markdown).

use std::fmt::Write as _;

use lifeboat_engine::diff::{Action, ChangeKind, DiffReport, DiffSummary, Difference, format_gib};
use serde_json::Value;
use similar::{Algorithm, DiffTag, capture_diff_slices};

/// GitHub refuses comments over 65,536 characters; this leaves room for a bot's own header.
pub const MAX_MARKDOWN_BYTES: usize = 65_000;

/// Bytes kept free for the truncation note and the closing lines.
const MARKDOWN_RESERVE: usize = 400;

const RED: &str = "\x1b[31m";
const BOLD_RED: &str = "\x1b[1;31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

pub fn json(report: &DiffReport) -> String {
    serde_json::to_string_pretty(report).expect("the diff report is plain data") + "\n"
}

/// One line per change with its symbol, the consequence indented under it, then a summary.
pub fn human(report: &DiffReport, colour: bool) -> String {
    let paint = |code: &str, text: &str| {
        if colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    for change in &report.changes {
        let (symbol, code) = match (change.dangerous, change.kind.action()) {
            (true, _) => ("!", BOLD_RED),
            (false, Action::Added) => ("+", GREEN),
            (false, Action::Removed) => ("-", RED),
            (false, Action::Changed) => ("~", YELLOW),
        };
        let _ = write!(out, "{} {}", paint(code, symbol), change.address);
        let details = details(change);
        if !details.is_empty() {
            let _ = write!(out, ": {details}");
        }
        out.push('\n');
        let _ = writeln!(out, "    {}", paint(DIM, &change.consequence));
    }
    if !report.changes.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary_line(&report.summary));
    out
}

/// "3 differences: 1 dangerous, 1 added, …".
pub fn summary_line(summary: &DiffSummary) -> String {
    if summary.changes == 0 {
        return "no differences: both files describe the same plan".to_string();
    }
    let mut parts = Vec::new();
    if summary.dangerous > 0 {
        parts.push(format!("{} dangerous", summary.dangerous));
    }
    for (n, word) in [
        (summary.added, "added"),
        (summary.removed, "removed"),
        (summary.changed, "changed"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let mut line = format!(
        "{}: {}",
        plural(summary.changes, "difference"),
        parts.join(", ")
    );
    if summary.max_transfer_gib > 0 {
        let _ = write!(
            line,
            "; the next apply sends up to {}",
            format_gib(summary.max_transfer_gib)
        );
    }
    line
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// What changed, compactly: `datastore: vsan-01 → vmfs-01; depends_on: [dc-01, -pg-01]`.
/// Additions and removals show nothing here: the consequence names what matters.
fn details(change: &Difference) -> String {
    if change.kind.action() != Action::Changed {
        return String::new();
    }
    let (before, after) = (
        change.before.as_ref().unwrap_or(&Value::Null),
        change.after.as_ref().unwrap_or(&Value::Null),
    );
    match (before, after) {
        (Value::Object(b), Value::Object(a)) if is_settings(change.kind) => b
            .iter()
            .map(|(key, old)| {
                let new = a.get(key).unwrap_or(&Value::Null);
                format!("{key}: {}", transition(old, new))
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => format!("{}: {}", label(change.kind), transition(before, after)),
    }
}

/// Changes whose before/after are maps of individual settings.
fn is_settings(kind: ChangeKind) -> bool {
    matches!(
        kind,
        ChangeKind::MachineChanged
            | ChangeKind::GroupChanged
            | ChangeKind::MasterTargetChanged
            | ChangeKind::SiteChanged
            | ChangeKind::MetadataChanged
    )
}

fn label(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::BootOrderChanged => "boot groups",
        ChangeKind::GoalChanged => "goal",
        ChangeKind::MaintenanceWindowChanged => "maintenance window",
        ChangeKind::ProviderChanged => "provider",
        ChangeKind::StateChanged => "state",
        _ => kind.as_str(),
    }
}

/// `a → b`, or for two lists one list with `-removed` and `+added` items in place.
fn transition(old: &Value, new: &Value) -> String {
    match (old, new) {
        (Value::Array(b), Value::Array(a)) => {
            let b: Vec<String> = b.iter().map(scalar).collect();
            let a: Vec<String> = a.iter().map(scalar).collect();
            format!("[{}]", inline_list_diff(&b, &a).join(", "))
        }
        _ => format!("{} → {}", scalar(old), scalar(new)),
    }
}

/// The items of both lists in order, unchanged ones bare, removed ones `-x`, added ones `+x`.
fn inline_list_diff(before: &[String], after: &[String]) -> Vec<String> {
    let mut items = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, before, after) {
        let (tag, old, new) = op.as_tag_tuple();
        match tag {
            DiffTag::Equal => items.extend(before[old].iter().cloned()),
            DiffTag::Delete => items.extend(before[old].iter().map(|x| format!("-{x}"))),
            DiffTag::Insert => items.extend(after[new].iter().map(|x| format!("+{x}"))),
            DiffTag::Replace => {
                items.extend(before[old].iter().map(|x| format!("-{x}")));
                items.extend(after[new].iter().map(|x| format!("+{x}")));
            }
        }
    }
    items
}

/// A value for a sentence: strings bare, `none` for null, a master target as `mt (assigned)`.
fn scalar(value: &Value) -> String {
    match value {
        Value::Null => "none".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(scalar).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => {
            if let Some(name) = map.get("name").and_then(Value::as_str) {
                let assigned = map.get("assigned").and_then(Value::as_bool) == Some(true);
                return if assigned {
                    format!("{name} (assigned)")
                } else {
                    name.to_string()
                };
            }
            if let (Some(start), Some(end)) = (
                map.get("start").and_then(Value::as_str),
                map.get("end").and_then(Value::as_str),
            ) {
                return format!("{start} to {end}");
            }
            value.to_string()
        }
        other => other.to_string(),
    }
}

/// For pull-request comments: a summary table first, then the changes (dangerous first), then
/// the settings before and after, folded. Never longer than [`MAX_MARKDOWN_BYTES`]: changes
/// that do not fit are left out, with a note saying how many.
pub fn markdown(report: &DiffReport) -> String {
    let mut head = String::new();
    let _ = writeln!(
        head,
        "### lifeboat diff: `{}` → `{}`\n",
        code(&report.old),
        code(&report.new)
    );
    let _ = writeln!(head, "{}\n", summary_line(&report.summary));
    if report.changes.is_empty() {
        return head;
    }
    head.push_str(&summary_table(&report.summary));

    // Each change costs its table row and its folded details; keep the longest prefix (in
    // the dangerous-first order) that fits.
    let rows: Vec<String> = report.changes.iter().map(row).collect();
    let folds: Vec<String> = report.changes.iter().map(fold).collect();
    let frame = head.len()
        + TABLE_HEADER.len() * 2
        + "#### dangerous changes\n\n#### other changes\n\n".len()
        + DETAILS_OPEN.len()
        + DETAILS_CLOSE.len()
        + MARKDOWN_RESERVE;
    let mut used = frame;
    let mut shown = 0;
    for (row, fold) in rows.iter().zip(&folds) {
        if used + row.len() + fold.len() > MAX_MARKDOWN_BYTES {
            break;
        }
        used += row.len() + fold.len();
        shown += 1;
    }

    let mut out = head;
    let dangerous = report.changes[..shown]
        .iter()
        .filter(|c| c.dangerous)
        .count();
    for (title, range) in [
        ("dangerous changes", 0..dangerous),
        ("other changes", dangerous..shown),
    ] {
        if range.is_empty() {
            continue;
        }
        let _ = writeln!(out, "#### {title}\n");
        out.push_str(TABLE_HEADER);
        for row in &rows[range] {
            out.push_str(row);
        }
        out.push('\n');
    }
    if shown > 0 {
        out.push_str(DETAILS_OPEN);
        for fold in &folds[..shown] {
            out.push_str(fold);
        }
        out.push_str(DETAILS_CLOSE);
    }
    let left_out = report.changes.len() - shown;
    if left_out > 0 {
        let _ = writeln!(
            out,
            "\n**{} left out** to stay under GitHub's comment limit; run `lifeboat diff` to see all \
             of them.",
            plural(left_out, "change")
        );
    }
    out
}

const TABLE_HEADER: &str = "| | address | change | consequence |\n|---|---|---|---|\n";
const DETAILS_OPEN: &str = "<details><summary>settings before and after</summary>\n\n";
const DETAILS_CLOSE: &str = "</details>\n";

fn summary_table(summary: &DiffSummary) -> String {
    let mut table = String::from("| | changes |\n|---|---:|\n");
    let transfer = if summary.max_transfer_gib > 0 {
        format!("up to {}", format_gib(summary.max_transfer_gib))
    } else {
        "0".to_string()
    };
    for (what, value) in [
        ("❗ dangerous", summary.dangerous.to_string()),
        ("added", summary.added.to_string()),
        ("removed", summary.removed.to_string()),
        ("changed", summary.changed.to_string()),
        ("data sent at the next apply", transfer),
    ] {
        let _ = writeln!(table, "| {what} | {value} |");
    }
    table.push('\n');
    table
}

fn row(change: &Difference) -> String {
    let symbol = match (change.dangerous, change.kind.action()) {
        (true, _) => "❗",
        (false, Action::Added) => "➕",
        (false, Action::Removed) => "➖",
        (false, Action::Changed) => "✏️",
    };
    format!(
        "| {symbol} | `{}` | {} | {} |\n",
        code(&change.address.to_string()),
        change.kind.as_str(),
        cell(&change.consequence)
    )
}

/// The settings of one change as a `diff` block: `-` before, `+` after.
fn fold(change: &Difference) -> String {
    let mut out = format!(
        "`{}` ({})\n\n```diff\n",
        code(&change.address.to_string()),
        change.kind.as_str()
    );
    let lines = |value: &Option<Value>| -> Vec<String> {
        match value {
            None => Vec::new(),
            Some(Value::Object(map)) => map
                .iter()
                .map(|(key, v)| format!("{key}: {}", scalar(v)))
                .collect(),
            Some(v) => vec![format!("{}: {}", label(change.kind), scalar(v))],
        }
    };
    for line in lines(&change.before) {
        let _ = writeln!(out, "- {line}");
    }
    for line in lines(&change.after) {
        let _ = writeln!(out, "+ {line}");
    }
    out.push_str("```\n\n");
    out
}

/// Text inside a table cell: a `|` would end the cell, a newline the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Text inside an inline code span: a backtick would end it.
fn code(text: &str) -> String {
    text.replace('`', "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Dropping the `+` items gives the old list, dropping the `-` items the new one.
    #[test]
    fn an_inline_list_diff_contains_both_lists() {
        let before = strings(&["infra", "data", "app", "batch"]);
        let after = strings(&["infra", "app", "data", "web"]);
        let items = inline_list_diff(&before, &after);
        let side = |keep: char, drop: char| -> Vec<String> {
            items
                .iter()
                .filter(|i| !i.starts_with(drop))
                .map(|i| i.trim_start_matches(keep).to_string())
                .collect()
        };
        assert_eq!(side('-', '+'), before, "{items:?}");
        assert_eq!(side('+', '-'), after, "{items:?}");
        assert!(items.iter().any(|i| i.starts_with('-')), "{items:?}");
        assert_eq!(items[0], "infra", "unchanged items stay bare");
    }

    #[test]
    fn colour_is_used_only_when_asked_for() {
        use lifeboat_engine::diff::{DiffSummary, PlanDiff};
        let change = Difference {
            address: lifeboat_engine::address::Address::machine("db-01"),
            kind: ChangeKind::MachineRemoved,
            before: None,
            after: None,
            consequence: "released".to_string(),
            dangerous: false,
            max_transfer_gib: 0,
        };
        let diff = PlanDiff {
            changes: vec![change],
            summary: DiffSummary {
                changes: 1,
                removed: 1,
                ..DiffSummary::default()
            },
        };
        let report = DiffReport::new("old.yaml", "new.yaml", diff);
        let plain = human(&report, false);
        assert!(!plain.contains('\x1b'), "{plain}");
        assert!(
            plain.starts_with("- machine.db-01\n    released\n"),
            "{plain}"
        );
        let coloured = human(&report, true);
        assert!(
            coloured.starts_with(&format!("{RED}-{RESET} machine.db-01")),
            "{coloured}"
        );
    }

    #[test]
    fn table_cells_cannot_be_broken_by_a_pipe() {
        assert_eq!(cell("a | b\nc"), "a \\| b c");
    }
}
