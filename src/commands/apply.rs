//! `lifeboat apply`: carry a plan out, crash-safe. This module parses, asks and renders; the
//! engine's `ops` does the work.
//!
//! 1. Open the session (plan, state lock, provider, facts). `apply SAVED` opens the plan the
//!    saved plan was made from, and refuses a stale one.
//! 2. Reconcile (`ops::reconcile`): operations a previous run recorded as pending are
//!    resolved by asking the provider about their id (finished → recorded; running → awaited;
//!    never started → dropped and planned again), before anything new is planned.
//! 3. Plan (`ops::plan`, the same assembly as `lifeboat plan`), show the plan and ask for
//!    `yes` (unless `--auto-approve`, or a saved plan, which was reviewed when it was saved).
//! 4. Execute the DAG (`ops::apply`). The state is the journal: each operation is recorded as
//!    pending before it is sent and completed after, each record flushed to disk, so a crash
//!    at any moment leaves a state the next run can reconcile, and no operation is sent twice.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_engine::Diagnostic;
use lifeboat_engine::apply::{ApplyOptions, Event, GroupGate, RetryPolicy};
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::ops::{self, ReconcileError, Reconciled};
use lifeboat_engine::planner::ExecutionPlan;
use lifeboat_engine::planner::output::PlanOutput;
use lifeboat_engine::saved::{self, SavedPlan};
use lifeboat_engine::state::PendingOperation;

use super::Exit;
use super::pipeline::{self, Session};
use crate::cli::DiagnosticFormat;
use crate::output::{out, outln};
use crate::render::diagnostics::{counts, render_human};
use crate::render::plan as render_plan;

#[derive(Debug)]
pub struct ApplyArgs<'a> {
    pub plan: &'a Path,
    /// `--target` addresses; a saved plan carries its own.
    pub targets: &'a [String],
    pub auto_approve: bool,
    /// `None`: the saved plan's, else 10.
    pub parallelism: Option<usize>,
    pub format: DiagnosticFormat,
    pub lock_timeout: Duration,
    pub retry_deadline: Duration,
    /// Do not wait for the window: stop with [`Exit::WindowNotOpen`] instead.
    pub no_wait: bool,
}

pub fn run(args: &ApplyArgs<'_>) -> Exit {
    match apply(args) {
        Ok(exit) | Err(exit) => exit,
    }
}

fn apply(args: &ApplyArgs<'_>) -> Result<Exit, Exit> {
    let saved = read_saved(args.plan)?;
    let plan_path: PathBuf = saved.as_ref().map_or_else(
        || args.plan.to_path_buf(),
        |s| PathBuf::from(&s.plan_file.path),
    );
    let mut session = pipeline::open(&plan_path, "apply", Some(args.lock_timeout))?;
    let printer = Printer::new(args.format == DiagnosticFormat::Json);

    if let Some(saved) = &saved
        && let Err(stale) =
            saved::check_fresh(saved, session.file.text().as_bytes(), Some(&session.state))
    {
        let reasons: Vec<String> = stale.reasons.iter().map(ToString::to_string).collect();
        eprintln!(
            "error: the saved plan `{}` is stale: {}",
            args.plan.display(),
            reasons.join("; ")
        );
        eprintln!(
            "  help: make a new one with `lifeboat plan --out {}` and review it",
            args.plan.display()
        );
        return Err(Exit::Error);
    }

    reconcile(&mut session, &printer)?;

    if saved.is_some() && !args.targets.is_empty() {
        eprintln!(
            "error: `--target` cannot narrow a saved plan: `{}` applies exactly what was reviewed",
            args.plan.display()
        );
        eprintln!("  help: save a targeted plan with `lifeboat plan --target ADDR --out FILE`");
        return Err(Exit::Error);
    }
    let targets = saved.as_ref().map_or(args.targets, |s| &s.targets[..]);
    let ops::Planned {
        execution,
        diagnostics,
        ..
    } = ops::plan(
        &session.plan,
        &session.validation,
        &session.facts,
        &session.state,
        targets,
        Timestamp(jiff::Timestamp::now()),
    )
    .map_err(|error| {
        eprintln!("error: {error}");
        Exit::Error
    })?;
    let parallelism = args
        .parallelism
        .or(saved.as_ref().and_then(|s| s.parallelism))
        .unwrap_or(ApplyOptions::default().parallelism);
    let now = Timestamp(jiff::Timestamp::now());
    let (schedule, fit) = session
        .runtime
        .block_on(ops::schedule(
            &session.plan,
            &execution,
            session.provider.as_ref(),
            now,
            parallelism,
        ))
        .map_err(|error| {
            eprintln!(
                "error: estimating durations through `{}` failed: {}",
                session.provider.describe().identity,
                error.message
            );
            Exit::Error
        })?;
    // Whether a boot group fits the window is decided again when it is about to start,
    // against the real clock: the executor does not start a group that would overrun, and
    // everything before it (reprotects, earlier groups) still runs. So here an overrun is a
    // warning about what the executor will hold back, not a reason to do nothing.
    let mut diagnostics = diagnostics;
    diagnostics.extend(fit.into_iter().map(|mut d| {
        d.severity = lifeboat_engine::Severity::Warning;
        d
    }));
    lifeboat_engine::diagnostic::sort(&mut diagnostics);
    if diagnostics.iter().any(Diagnostic::is_error) {
        eprint!("{}", render_human(&diagnostics, &session.file));
        eprintln!(
            "preflight failed: {}; nothing was changed",
            counts(&diagnostics)
        );
        return Err(Exit::Error);
    }
    if let Some(saved) = &saved
        && !ops::same_changes(&saved.output, &execution)
    {
        eprintln!(
            "error: the saved plan `{}` is stale: the sites changed since it was saved, so it would no longer do what was reviewed",
            args.plan.display()
        );
        eprintln!(
            "  help: make a new one with `lifeboat plan --out {}` and review it",
            args.plan.display()
        );
        return Err(Exit::Error);
    }
    if execution.is_empty() {
        printer.line(
            "No changes. Every machine is at its goal.",
            &serde_json::json!({"event": "no-changes"}),
        );
        return Ok(Exit::Success);
    }
    if saved.is_none() && !args.auto_approve {
        confirm(&session, &execution, &diagnostics, &schedule)?;
    } else {
        if !printer.json && !diagnostics.is_empty() {
            eprint!("{}", render_human(&diagnostics, &session.file));
        }
        // As Terraform does: a CI log shows what an unattended apply is about to carry out.
        if saved.is_none() {
            printer.plan(&plan_output(&session, &execution, &schedule));
        }
    }

    let on_terminal = !printer.json && std::io::stdout().is_terminal();
    let options = ApplyOptions {
        parallelism,
        retry: RetryPolicy {
            deadline: args.retry_deadline,
            ..RetryPolicy::default()
        },
        window: session
            .plan
            .maintenance_window
            .as_ref()
            .map(|w| (w.start.value.0, w.end.value.0)),
        no_wait: args.no_wait,
        // A countdown on a terminal; a line a minute in a CI log.
        wait_report_every: if on_terminal {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(60)
        },
        groups: schedule
            .boot_groups
            .iter()
            .map(|g| GroupGate {
                name: g.name.clone(),
                failbacks: g.failbacks.clone(),
                duration: g.duration_s.map(Duration::from_secs),
            })
            .collect(),
        steps: None,
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let printer = printer.with_bar(execution.changes.len() + execution.steps.len());
    watch_interrupts(&session.runtime, interrupted.clone(), printer.clone());
    let events = printer.clone();
    let on_event: Arc<dyn Fn(Event) + Send + Sync> = Arc::new(move |event| events.event(&event));
    let input = ops::ApplyInput {
        plan: Arc::new(session.plan.clone()),
        assignment: Arc::new(session.validation.assignment.clone()),
        backend: session.backend.clone(),
        state: session.state.clone(),
        provider: session.provider.clone(),
        options,
        plan_dir: plan_dir(&plan_path),
    };
    let report = match session.runtime.block_on(ops::apply(
        input,
        &execution,
        &session.facts,
        on_event,
        &|| interrupted.load(Ordering::SeqCst),
    )) {
        Ok((report, state)) => {
            session.state = state;
            report
        }
        Err(ops::ApplyError::State(error)) => {
            super::state::report(&error);
            return Err(Exit::Error);
        }
        Err(error) => {
            eprintln!("error: {error}");
            return Err(Exit::Error);
        }
    };

    let seconds = report.elapsed.as_secs_f64();
    let summary = serde_json::json!({
        "event": "summary",
        "succeeded": report.succeeded.len(),
        "failed": report.failed.len(),
        "skipped": report.skipped.len(),
        "not_started": report.not_started.len(),
        "held": report.held.len(),
        "paused": report.paused.len(),
        "continued": report.continued.len(),
        "elapsed_ms": report.elapsed.as_millis() as u64,
    });
    if report.is_success() {
        printer.line(
            &format!(
                "Apply complete: {} in {seconds:.1}s.",
                crate::render::plural(report.succeeded.len(), "change")
            ),
            &summary,
        );
        return Ok(Exit::Success);
    }
    let failed = !report.failed.is_empty() || !report.skipped.is_empty();
    let held_by_window = report.held.iter().any(|(_, why)| why.contains("--no-wait"));
    let (verdict, exit) = if failed {
        ("Apply failed", Exit::Error)
    } else if !report.paused.is_empty() {
        ("Apply stopped at a manual gate", Exit::Gate)
    } else if held_by_window && report.held.iter().all(|(_, why)| why.contains("--no-wait")) {
        (
            "Apply stopped before the maintenance window",
            Exit::WindowNotOpen,
        )
    } else {
        ("Apply incomplete", Exit::Error)
    };
    let mut text = format!(
        "{verdict}: {} succeeded, {} failed, {} skipped, {} held, {} not started, in {seconds:.1}s.",
        report.succeeded.len(),
        report.failed.len(),
        report.skipped.len(),
        report.held.len(),
        report.not_started.len()
    );
    for (change, error) in &report.failed {
        let code = error
            .code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        let went_on = if report.continued.contains(change) {
            " (on_failure: continue: later boot groups went on)"
        } else {
            ""
        };
        text.push_str(&format!(
            "\n  root cause: `{change}`{code}: {}{went_on}",
            error.message
        ));
    }
    // One line per reason, not per change: a held boot group of 500 machines is one line.
    let mut reasons: Vec<&str> = Vec::new();
    for (_, why) in &report.held {
        if !reasons.contains(&why.as_str()) {
            reasons.push(why);
        }
    }
    for why in reasons {
        let count = report.held.iter().filter(|(_, w)| w == why).count();
        text.push_str(&format!(
            "\n  held ({}): {why}",
            crate::render::plural(count, "change")
        ));
    }
    for (step, message) in &report.paused {
        let group = step.split_whitespace().next().unwrap_or("boot_group.NAME");
        text.push_str(&format!(
            "\n  waiting at `{step}`: {message}\n  when it is done, run `lifeboat approve {group}`, then `lifeboat apply` again; nothing that ran is repeated"
        ));
    }
    if !report.not_started.is_empty() && report.paused.is_empty() && report.held.is_empty() {
        text.push_str("\n  interrupted: run `lifeboat apply` again to continue; the state records where it stopped");
    } else if held_by_window {
        text.push_str("\n  run `lifeboat apply` again inside the window to continue; what ran is recorded in the state");
    }
    printer.line(&text, &summary);
    Err(exit)
}

/// The plan's directory, where command steps run.
fn plan_dir(plan_path: &Path) -> PathBuf {
    match plan_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Ctrl-C: the first stops new operations from starting and says so; the second explains
/// what happens to the operations in flight, and exits (130, as a shell does): they go on at
/// the service, and the next `apply` finds them by the ids the state recorded.
fn watch_interrupts(
    runtime: &tokio::runtime::Runtime,
    interrupted: Arc<AtomicBool>,
    printer: Printer,
) {
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        interrupted.store(true, Ordering::SeqCst);
        let running = printer.running();
        printer.notice(&format!(
            "stopping: {} in flight, no new ones start (Ctrl-C again to leave them running and exit now)",
            crate::render::plural(running, "operation")
        ));
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        printer.notice(&format!(
            "exiting: the {} in flight go on at the service (an ASR job is not cancelled by lifeboat leaving); each is recorded as pending in the state, and the next `lifeboat apply` finds it by its operation id, waits for it or records its result, and never starts it twice",
            crate::render::plural(printer.running(), "operation")
        ));
        crate::output::flush();
        std::process::exit(130);
    });
}

/// `apply FILE` where FILE is a saved plan; `None` for a plan file.
fn read_saved(path: &Path) -> Result<Option<SavedPlan>, Exit> {
    let Some(text) =
        lifeboat_engine::input::read_capped(path, lifeboat_engine::input::MAX_INPUT_BYTES)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    else {
        // Unreadable files are reported by the plan loader, with the usual diagnostic.
        return Ok(None);
    };
    if !text.trim_start().starts_with('{') {
        return Ok(None);
    }
    SavedPlan::from_json(&text).map(Some).map_err(|message| {
        eprintln!(
            "error: `{}` is not a saved plan lifeboat can apply: {message}",
            path.display()
        );
        Exit::Error
    })
}

/// Resolves the operations a previous run left pending, by asking the provider (the engine's
/// [`ops::reconcile`]), printing a note for each.
fn reconcile(session: &mut Session, printer: &Printer) -> Result<(), Exit> {
    if session.state.machines.values().all(|m| m.pending.is_none()) {
        return Ok(());
    }
    let mut note = |event: Reconciled| {
        let what = |operation: &PendingOperation| {
            format!(
                "{} machine.{} (operation `{}`)",
                operation.kind, operation.machine, operation.id
            )
        };
        printer.note(&match event {
            Reconciled::Waiting { operation } => format!(
                "waiting for {}, still running from a previous run",
                what(&operation)
            ),
            Reconciled::Recorded { operation, .. } => format!(
                "recorded {}: it finished while lifeboat was away",
                what(&operation)
            ),
            Reconciled::Failed { operation, error } => format!(
                "{} failed in the previous run: {}",
                what(&operation),
                error.message
            ),
            Reconciled::NeverStarted { operation } => format!(
                "{} never reached the provider; it is planned again",
                what(&operation)
            ),
        });
    };
    let Session {
        runtime,
        state,
        backend,
        provider,
        ..
    } = session;
    runtime
        .block_on(ops::reconcile(
            state,
            backend.as_ref(),
            provider.as_ref(),
            &mut note,
        ))
        .map_err(|error| {
            match error {
                ReconcileError::State(error) => super::state::report(&error),
                other => eprintln!("error: {other}"),
            }
            Exit::Error
        })?;
    session.refresh()
}

/// The plan as `lifeboat plan` shows it, for the confirmation and the unattended log.
fn plan_output(
    session: &Session,
    execution: &ExecutionPlan,
    schedule: &lifeboat_engine::schedule::Schedule,
) -> PlanOutput {
    let mut output = PlanOutput::new(
        execution,
        Some(session.state.lineage.clone()),
        Some(session.state.serial),
        Vec::new(),
    );
    output.schedule = Some(schedule.clone());
    output
}

fn confirm(
    session: &Session,
    execution: &ExecutionPlan,
    diagnostics: &[Diagnostic],
    schedule: &lifeboat_engine::schedule::Schedule,
) -> Result<(), Exit> {
    let output = plan_output(session, execution, schedule);
    eprint!("{}", render_human(diagnostics, &session.file));
    out!(
        "{}",
        render_plan::render_human(&output, crate::render::stdout_colour())
    );
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: refusing to apply without confirmation: standard input is not a terminal"
        );
        eprintln!(
            "  help: review the plan, then run again with `--auto-approve`, or apply a saved plan (`plan --out FILE`, `apply FILE`)"
        );
        return Err(Exit::Error);
    }
    out!("\nDo you want to carry out these changes? Only `yes` is accepted: ");
    crate::output::flush();
    let mut answer = String::new();
    if std::io::stdin().read_line(&mut answer).is_err() || answer.trim() != "yes" {
        eprintln!("apply cancelled; nothing was changed");
        return Err(Exit::Error);
    }
    Ok(())
}

/// Progress for people or machines: on a terminal a bar (done, running, failed, elapsed)
/// with each finished operation printed above it; otherwise a line per finished operation;
/// with `--format json` one JSON object per event.
#[derive(Debug, Clone)]
struct Printer {
    json: bool,
    bar: Option<ProgressBar>,
    counts: Arc<Mutex<Counts>>,
}

#[derive(Debug, Default)]
struct Counts {
    running: usize,
    failed: usize,
}

impl Printer {
    fn new(json: bool) -> Self {
        Self {
            json,
            bar: None,
            counts: Arc::default(),
        }
    }

    /// Shows a progress bar for `total` changes when stdout is a terminal.
    fn with_bar(mut self, total: usize) -> Self {
        if !self.json && std::io::stdout().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} done · {msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            self.bar = Some(bar);
        }
        self
    }

    fn event(&self, event: &Event) {
        if self.json {
            outln!(
                "{}",
                stamped(serde_json::to_value(event).expect("events are plain data"))
            );
            return;
        }
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let line = match event {
            Event::Started { .. } => {
                counts.running += 1;
                None
            }
            Event::Retrying {
                change,
                code,
                message,
                wait_ms,
            } => Some(format!(
                "  ↻ {change}: {}{message}; retrying in {:.1}s",
                code.as_deref()
                    .map(|c| format!("[{c}] "))
                    .unwrap_or_default(),
                *wait_ms as f64 / 1000.0
            )),
            Event::Succeeded { change, elapsed_ms } => {
                counts.running = counts.running.saturating_sub(1);
                Some(format!(
                    "  ✓ {change} ({:.1}s)",
                    *elapsed_ms as f64 / 1000.0
                ))
            }
            Event::Failed {
                change,
                code,
                message,
            } => {
                counts.running = counts.running.saturating_sub(1);
                counts.failed += 1;
                Some(format!(
                    "  ✗ {change}: {}{message}",
                    code.as_deref()
                        .map(|c| format!("[{c}] "))
                        .unwrap_or_default()
                ))
            }
            Event::Skipped { change, because } => {
                Some(format!("  - {change} skipped: `{because}` failed"))
            }
            Event::Continuing { change } => Some(format!(
                "  → `{change}` failed in a boot group with `on_failure: continue`: later groups go on"
            )),
            Event::WindowWait {
                opens_at,
                seconds_left,
                waiting,
            } => {
                let text = format!(
                    "waiting for the maintenance window: opens at {opens_at}, in {} ({waiting} failbacks and commits wait)",
                    lifeboat_engine::model::human_duration(Duration::from_secs(*seconds_left)),
                );
                match &self.bar {
                    // A countdown on the bar, not a line a second.
                    Some(bar) => {
                        bar.set_message(text);
                        return;
                    }
                    None => Some(format!("  … {text}")),
                }
            }
            Event::Held { change, because } => Some(format!("  ‖ {change} held: {because}")),
            Event::Paused { step, message } => Some(format!("  ⏸ {step}: {message}")),
            Event::StepOutput(output) => Some(format!(
                "    │ {} {}: {}",
                output.step, output.stream, output.line
            )),
        };
        match &self.bar {
            Some(bar) => {
                if matches!(
                    event,
                    Event::Succeeded { .. } | Event::Failed { .. } | Event::Skipped { .. }
                ) {
                    bar.inc(1);
                }
                bar.set_message(format!(
                    "{} running, {} failed",
                    counts.running, counts.failed
                ));
                if let Some(line) = line {
                    bar.println(line);
                }
            }
            None => {
                if let Some(line) = line {
                    outln!("{line}");
                }
            }
        }
    }

    /// The plan an unattended apply is about to carry out.
    fn plan(&self, output: &PlanOutput) {
        if self.json {
            outln!(
                "{}",
                stamped(serde_json::json!({"event": "plan", "plan": output}))
            );
        } else {
            out!(
                "{}",
                render_plan::render_human(output, crate::render::stdout_colour())
            );
            outln!();
        }
    }

    /// Operations in flight now.
    fn running(&self) -> usize {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .running
    }

    /// A message about the apply itself (Ctrl-C), on stderr so it never mixes into events.
    fn notice(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    fn note(&self, text: &str) {
        if self.json {
            outln!(
                "{}",
                stamped(serde_json::json!({"event": "reconciled", "message": text}))
            );
        } else {
            outln!("  ⟳ {text}");
        }
    }

    fn line(&self, text: &str, json: &serde_json::Value) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.json {
            outln!("{}", stamped(json.clone()));
        } else {
            outln!("{text}");
        }
    }
}

/// A JSON event line with its wall-clock time (RFC 3339, UTC, milliseconds) under
/// `timestamp`, so a CI log says when each step happened.
fn stamped(mut event: serde_json::Value) -> String {
    if let Some(object) = event.as_object_mut() {
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Millisecond)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        object.insert(
            "timestamp".to_string(),
            serde_json::Value::String(now.to_string()),
        );
    }
    event.to_string()
}
