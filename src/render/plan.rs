//! Plans for people: the terminal view and the Markdown of pull-request comments.
//!
//! Both read a [`PlanOutput`] (the JSON shape), so `plan`, `show SAVED` and CI all render the
//! same data the same way. Dangerous changes (downtime, full resync) come first in
//! both views: they are what a reviewer must see.

use std::fmt::Write as _;

use lifeboat_engine::model::human_duration;
use lifeboat_engine::planner::output::{PlanOutput, PlanSummary, gib};
use lifeboat_engine::planner::{Action, PlannedChange, PlannedStep};
use lifeboat_engine::schedule::{Fit, Schedule, human_offset};
use lifeboat_engine::state::drift::Drift;

use super::plural;

/// GitHub refuses comments over 65,536 characters; leave room for a note.
pub const MARKDOWN_LIMIT: usize = 65_000;

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Reprotect => "+",
        Action::SwitchProcessServer => "~",
        Action::Failback => ">",
        Action::Commit => "=",
        Action::ReprotectHome => "^",
        Action::Release => "-",
    }
}

fn risk_words(change: &PlannedChange) -> String {
    let mut words = Vec::new();
    if is_irreversible(change) {
        words.push("irreversible: the Azure replica is removed".to_string());
    }
    if change.risk.downtime {
        words.push("downtime".to_string());
    }
    if change.risk.full_resync {
        words.push("full resync".to_string());
    }
    if change.risk.max_transfer_gib > 0 {
        words.push(format!("up to {}", gib(change.risk.max_transfer_gib)));
    }
    words.join(", ")
}

fn is_dangerous(change: &PlannedChange) -> bool {
    change.risk.is_dangerous()
}

/// A commit removes the replica in Azure: after it there is no way back to Azure without a
/// new replication, so a reviewer must see it beside the dangerous changes.
fn is_irreversible(change: &PlannedChange) -> bool {
    change.action == Action::Commit
}

/// Changes a reviewer must look at first: dangerous or irreversible.
fn is_flagged(change: &PlannedChange) -> bool {
    is_dangerous(change) || is_irreversible(change)
}

/// What the change alters, compactly: the stage move, settings that change as `key: old →
/// new` (one line each, they are what a reviewer checks), settings that appear on one line,
/// and settings that end (a failback ends the replication) on one line naming the master
/// target, not each setting again.
fn setting_lines(change: &PlannedChange) -> Vec<String> {
    let mut lines = Vec::new();
    let mut added = Vec::new();
    for (key, after) in &change.after {
        match change.before.get(key) {
            Some(before) if before == after => {}
            Some(before) => lines.push(format!("~ {key}: {before} → {after}")),
            None => added.push(format!("{key}={after}")),
        }
    }
    if !added.is_empty() {
        lines.push(format!("+ {}", added.join(", ")));
    }
    let removed: Vec<&String> = change
        .before
        .keys()
        .filter(|key| !change.after.contains_key(*key))
        .collect();
    if !removed.is_empty() {
        match change.before.get("master_target") {
            Some(target) => lines.push(format!(
                "- replication through `{target}` ends ({} settings)",
                removed.len()
            )),
            None => {
                let keys: Vec<&str> = removed.iter().map(|k| k.as_str()).collect();
                lines.push(format!("- {}", keys.join(", ")));
            }
        }
    }
    lines
}

/// "Plan: 12 to reprotect, 0 to fail back, …; downtime for 0 machines; up to 3.2 TiB to transfer"
pub fn summary_line(summary: &PlanSummary) -> String {
    let count = |action: Action| summary.changes.get(&action).copied().unwrap_or(0);
    let machines = |n: usize| plural(n, "machine");
    format!(
        "Plan: {} to reprotect, {} to fail back, {} to commit, {} to reprotect home, {} to switch process server, {} to release; downtime for {}; up to {} to transfer.",
        count(Action::Reprotect),
        count(Action::Failback),
        count(Action::Commit),
        count(Action::ReprotectHome),
        count(Action::SwitchProcessServer),
        count(Action::Release),
        machines(summary.downtime_machines),
        gib(summary.max_transfer_gib),
    )
}

/// The view of a refresh-only plan: the drift, one line per difference.
fn render_drift_human(drift: &[Drift]) -> String {
    let mut out = String::new();
    if drift.is_empty() {
        out.push_str("No drift: every machine in the state is as the state records it.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "The sites differ from the state ({}); nothing was changed:\n",
        plural(drift.len(), "difference")
    );
    for d in drift {
        let _ = writeln!(out, "~ {:<32} {}", d.address, d.message);
    }
    let _ = writeln!(
        out,
        "\nDrift: {}. Run `lifeboat plan` to see what apply would do about it.",
        plural(drift.len(), "difference")
    );
    out
}

const BOLD_RED: &str = "\x1b[1;31m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The colour of an action's symbol: additions green, moves yellow, removals red.
fn action_colour(action: Action) -> &'static str {
    match action {
        Action::Reprotect | Action::ReprotectHome => GREEN,
        Action::Failback | Action::SwitchProcessServer => YELLOW,
        Action::Commit | Action::Release => RED,
    }
}

/// Above this many machines, the plan adds one line per master target (machines and data).
const MASTER_TARGET_SUMMARY_FROM: usize = 50;

/// The terminal view. `colour` (a terminal without `NO_COLOR`) marks dangerous changes red
/// and additions green, as the diagnostics are coloured.
pub fn render_human(output: &PlanOutput, colour: bool) -> String {
    if let Some(drift) = &output.drift {
        return render_drift_human(drift);
    }
    let paint = |code: &str, text: &str| {
        if colour {
            format!("{code}{text}{RESET}")
        } else {
            text.to_string()
        }
    };
    let mut out = String::new();
    if output.changes.is_empty() && output.steps.is_empty() {
        let _ = writeln!(
            out,
            "No changes. Every machine is at the goal `{}` or left alone for a reason shown below.",
            output.goal
        );
    } else if output.changes.is_empty() {
        let _ = writeln!(
            out,
            "No changes to machines; steps between boot groups remain (below)."
        );
    } else {
        let _ = writeln!(
            out,
            "lifeboat will make these changes to reach the goal `{}`:",
            output.goal
        );
        let (flagged, safe): (Vec<&PlannedChange>, Vec<&PlannedChange>) =
            output.changes.iter().partition(|c| is_flagged(c));
        for (title, changes) in [
            ("Dangerous or irreversible changes", flagged),
            ("Other changes", safe),
        ] {
            if changes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "\n{title} ({}):", changes.len());
            for change in changes {
                let marker = if is_flagged(change) {
                    paint(BOLD_RED, "!")
                } else {
                    " ".to_string()
                };
                let risk = risk_words(change);
                let symbol = format!("{:<3}", symbol(change.action));
                let _ = writeln!(
                    out,
                    "{marker} {} {:<15} {:<32} {}",
                    paint(action_colour(change.action), &symbol),
                    change.action.as_str(),
                    change.address,
                    if is_flagged(change) && !risk.is_empty() {
                        paint(RED, &risk)
                    } else {
                        risk
                    }
                );
                let _ = writeln!(out, "        {}", paint(DIM, &change.reason));
                for line in setting_lines(change) {
                    let _ = writeln!(out, "        {line}");
                }
                if !change.depends_on.is_empty() {
                    let _ = writeln!(out, "        after: {}", change.depends_on.join("; "));
                }
            }
        }
    }
    if !output.untouched.is_empty() {
        let _ = writeln!(out, "\nLeft alone ({}):", output.untouched.len());
        for machine in &output.untouched {
            let _ = writeln!(out, "  {:<32} {}", machine.address, machine.reason);
        }
    }
    out.push_str(&steps_human(&output.steps));
    if let Some(schedule) = &output.schedule {
        out.push_str(&schedule_human(schedule));
    }
    out.push_str(&master_target_lines(output));
    let _ = writeln!(out, "\n{}", summary_line(&output.summary));
    out
}

/// Critical-path entries shown before the rest are counted.
const PATH_SHOWN: usize = 8;

fn step_timeout(step: &PlannedStep) -> String {
    step.timeout()
        .map(|t| format!("timeout {}", human_duration(t)))
        .unwrap_or_else(|| "waits for `lifeboat approve`".to_string())
}

/// The steps `apply` will run between boot groups: what each does, and when it gives up.
fn steps_human(steps: &[PlannedStep]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\nSteps between boot groups ({}), run by `apply` only:\n",
        steps.len()
    );
    for step in steps {
        let _ = writeln!(
            out,
            "  {:<34} {} ({}, on failure: {})",
            step.id,
            step.action.describe(),
            step_timeout(step),
            step.on_failure.as_str()
        );
    }
    out
}

/// One line on whether the failback fits the window.
pub fn fit_line(schedule: &Schedule) -> String {
    let close = schedule.window_end_s.map(human_offset).unwrap_or_default();
    let end = schedule.end_s.map(human_offset).unwrap_or_default();
    match schedule.fit {
        Fit::NoWindow => {
            "no maintenance window: failback and commit may run at any time".to_string()
        }
        Fit::Unknown => format!(
            "cannot tell whether failback and commit fit the window (closes at {close}): the provider has no estimate for {} ({})",
            plural(schedule.unknown_count, "change"),
            schedule
                .unknown
                .iter()
                .take(3)
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", ")
                + if schedule.unknown_count > 3 {
                    ", …"
                } else {
                    ""
                }
        ),
        Fit::Fits if schedule.end_s.is_none() => {
            "nothing in this plan needs the window (no failback, commit or step)".to_string()
        }
        Fit::Fits => format!("fits the window: ends at {end}, the window closes at {close}"),
        Fit::Tight => format!("tight: ends at {end}, the window closes at {close}"),
        Fit::Overruns => format!("does not fit: ends at {end}, the window closes at {close}"),
    }
}

fn origin_words(schedule: &Schedule) -> String {
    if schedule.origin_is == "window" {
        format!(
            "relative to the maintenance window's start, {}",
            schedule.origin
        )
    } else {
        format!("relative to now, {}", schedule.origin)
    }
}

fn schedule_human(schedule: &Schedule) -> String {
    let mut out = format!(
        "\nSchedule ({}; {} at a time):\n",
        origin_words(schedule),
        schedule.parallelism
    );
    for group in &schedule.boot_groups {
        let when = match (group.start_s, group.end_s) {
            (Some(start), Some(end)) => format!("{} → {}", human_offset(start), human_offset(end)),
            _ => "unknown (no estimate)".to_string(),
        };
        let _ = writeln!(out, "  {:<24} {when}", group.name);
    }
    if !schedule.critical_path.is_empty() {
        let shown: Vec<&str> = schedule
            .critical_path
            .iter()
            .take(PATH_SHOWN)
            .map(String::as_str)
            .collect();
        let more = schedule.critical_path.len().saturating_sub(PATH_SHOWN);
        let _ = writeln!(
            out,
            "  critical path: {}{}",
            shown.join(" → "),
            if more > 0 {
                format!(" → … ({more} more)")
            } else {
                String::new()
            }
        );
    }
    let _ = writeln!(out, "  {}", fit_line(schedule));
    if schedule.steps_counted > 0 {
        let _ = writeln!(
            out,
            "  steps are counted as taking no time (up to their timeouts; a manual gate as long as a person takes)"
        );
    }
    out
}

/// For a large estate, what each master target takes on: the machines reprotected through it
/// and the upper bound of their data, so an overloaded target shows without reading every
/// change.
fn master_target_lines(output: &PlanOutput) -> String {
    let machines: std::collections::HashSet<&str> =
        output.changes.iter().map(PlannedChange::machine).collect();
    if machines.len() <= MASTER_TARGET_SUMMARY_FROM {
        return String::new();
    }
    let mut per_target: std::collections::BTreeMap<&str, (usize, u64)> = Default::default();
    for change in &output.changes {
        if let Some(settings) = &change.settings {
            let entry = per_target.entry(&settings.master_target).or_default();
            entry.0 += 1;
            entry.1 += change.risk.max_transfer_gib;
        }
    }
    if per_target.is_empty() {
        return String::new();
    }
    let mut out = format!("\nPer master target ({}):\n", per_target.len());
    for (target, (count, transfer)) in per_target {
        let _ = writeln!(
            out,
            "  {target:<32} {} to reprotect, up to {}",
            plural(count, "machine"),
            gib(transfer)
        );
    }
    out
}

/// The severity of a diagnostic in Markdown, readable without colour.
fn severity_marker(severity: lifeboat_engine::Severity) -> &'static str {
    match severity {
        lifeboat_engine::Severity::Error => "❌ **error**",
        lifeboat_engine::Severity::Warning => "⚠️ **warning**",
    }
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Markdown for a pull-request comment, never longer than [`MARKDOWN_LIMIT`] characters.
pub fn render_markdown(output: &PlanOutput, plan_name: &str) -> String {
    let mut head = String::new();
    if let Some(drift) = &output.drift {
        let _ = writeln!(head, "### lifeboat drift: `{}`\n", escape(plan_name));
        if drift.is_empty() {
            head.push_str("No drift.\n");
            return head;
        }
        head.push_str("| machine | drift | state | site |\n|---|---|---|---|\n");
        for d in drift {
            let row = format!(
                "| `{}` | {} | {} | {} |\n",
                escape(&d.address.to_string()),
                escape(&d.message),
                escape(d.state.as_deref().unwrap_or("—")),
                escape(d.site.as_deref().unwrap_or("—"))
            );
            if head.len() + row.len() > MARKDOWN_LIMIT - 200 {
                let _ = writeln!(
                    head,
                    "\n_Not every machine is shown: the comment would be over {MARKDOWN_LIMIT} characters._"
                );
                break;
            }
            head.push_str(&row);
        }
        return head;
    }
    let _ = writeln!(
        head,
        "### lifeboat plan: `{}` → goal `{}`\n",
        escape(plan_name),
        output.goal
    );
    let summary = &output.summary;
    let _ = writeln!(head, "| action | changes |\n|---|---:|");
    for (action, count) in &summary.changes {
        let _ = writeln!(head, "| {} | {count} |", action.as_str());
    }
    let _ = writeln!(
        head,
        "\n**Downtime:** {} · **Full resync:** {} · **Transfer:** up to {}\n",
        plural(summary.downtime_machines, "machine"),
        plural(summary.full_resync_changes, "change"),
        gib(summary.max_transfer_gib)
    );
    if let Some(schedule) = &output.schedule {
        let _ = writeln!(
            head,
            "**Schedule** ({}): {}\n",
            origin_words(schedule),
            escape(&fit_line(schedule))
        );
        if !schedule.boot_groups.is_empty() {
            head.push_str("| boot group | start | end |\n|---|---|---|\n");
            for group in schedule.boot_groups.iter().take(50) {
                let at = |t: Option<i64>| t.map_or_else(|| "unknown".to_string(), human_offset);
                let _ = writeln!(
                    head,
                    "| `{}` | {} | {} |",
                    escape(&group.name),
                    at(group.start_s),
                    at(group.end_s)
                );
            }
            head.push('\n');
        }
    }
    if !output.steps.is_empty() {
        let _ = writeln!(
            head,
            "**Steps `apply` runs between boot groups ({}):**\n\n| step | does | limit | on failure |\n|---|---|---|---|",
            output.steps.len()
        );
        for step in output.steps.iter().take(50) {
            let _ = writeln!(
                head,
                "| `{}` | {} | {} | {} |",
                escape(&step.id),
                escape(&step.action.describe()),
                escape(&step_timeout(step)),
                step.on_failure.as_str()
            );
        }
        if output.steps.len() > 50 {
            let _ = writeln!(
                head,
                "\n_{} more steps not shown._",
                output.steps.len() - 50
            );
        }
        head.push('\n');
    }
    let errors = output
        .diagnostics
        .iter()
        .filter(|d| d.severity == lifeboat_engine::Severity::Error)
        .count();
    if !output.diagnostics.is_empty() {
        let _ = writeln!(
            head,
            "**Preflight:** {}, {}\n",
            plural(errors, "error"),
            plural(output.diagnostics.len() - errors, "warning")
        );
        for d in output.diagnostics.iter().take(20) {
            let _ = writeln!(
                head,
                "- {} `{}` {}",
                severity_marker(d.severity),
                d.code,
                escape(&d.message)
            );
        }
        head.push('\n');
    }
    if output.changes.is_empty() {
        head.push_str(if output.steps.is_empty() {
            "No changes.\n"
        } else {
            "No changes; only the steps above.\n"
        });
        return head;
    }

    // Rows are added while they fit; the rest are counted in a closing note.
    let reserve = 400;
    let budget = MARKDOWN_LIMIT.saturating_sub(head.len() + reserve);
    let mut body = String::new();
    let mut shown = 0usize;
    let dangerous: Vec<&PlannedChange> = output.changes.iter().filter(|c| is_flagged(c)).collect();
    let others: Vec<&PlannedChange> = output.changes.iter().filter(|c| !is_flagged(c)).collect();
    let mut full = false;
    for (title, changes, folded) in [
        ("⚠️ Dangerous or irreversible changes", &dangerous, false),
        ("Other changes", &others, true),
    ] {
        if changes.is_empty() || full {
            continue;
        }
        let mut section = String::new();
        if folded {
            let _ = writeln!(
                section,
                "<details><summary>{title} ({})</summary>\n",
                changes.len()
            );
        } else {
            let _ = writeln!(section, "#### {title} ({})\n", changes.len());
        }
        section.push_str("| change | risk | reason |\n|---|---|---|\n");
        let closing = if folded { "\n</details>\n" } else { "\n" };
        for change in changes.iter() {
            let row = format!(
                "| `{}` | {} | {} |\n",
                escape(&change.id),
                escape(&risk_words(change)),
                escape(&change.reason)
            );
            if body.len() + section.len() + row.len() + closing.len() > budget {
                full = true;
                break;
            }
            section.push_str(&row);
            shown += 1;
        }
        section.push_str(closing);
        body.push_str(&section);
    }
    let mut out = head + &body;
    let left_out = output.changes.len() - shown;
    if left_out > 0 {
        let _ = writeln!(
            out,
            "\n_{left_out} of {} changes not shown to keep this comment under {MARKDOWN_LIMIT} characters; run `lifeboat show` on the saved plan for all of them._",
            output.changes.len()
        );
    }
    out
}
