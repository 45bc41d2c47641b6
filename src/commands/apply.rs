//! `lifeboat apply`: carry a plan out, crash-safe.
//!
//! 1. Open the session (plan, state lock, provider, facts). `apply SAVED` opens the plan the
//!    saved plan was made from, and refuses a stale one.
//! 2. Reconcile: operations a previous run recorded as pending are resolved by asking the
//!    provider about their id (finished → recorded; running → awaited; never started →
//!    dropped and planned again), before anything new is planned.
//! 3. Plan, preflight, show the plan and ask for `yes` (unless `--auto-approve`, or a saved
//!    plan, which was reviewed when it was saved).
//! 4. Execute the DAG. The state is the journal: each operation is recorded as pending before
//!    it is sent and completed after, each write atomic, so a crash at any moment leaves a
//!    state the next run can reconcile, and no operation is sent twice.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_engine::apply::{self, ApplyOptions, Event, Journal, RetryPolicy};
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::planner::output::PlanOutput;
use lifeboat_engine::planner::{self, Action, Change, ExecutionPlan};
use lifeboat_engine::provider::{
    OperationId, OperationOutcome, OperationRequest, OperationStatus, ProviderError, Stage,
};
use lifeboat_engine::saved::{self, SavedPlan};
use lifeboat_engine::state::{LocalBackend, PendingOperation, State, StateBackend};
use lifeboat_engine::{Diagnostic, diagnostic, preflight};

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
    let (execution, diagnostics) = build(&session, targets)?;
    if diagnostics.iter().any(Diagnostic::is_error) {
        eprint!("{}", render_human(&diagnostics, &session.file));
        eprintln!(
            "preflight failed: {}; nothing was changed",
            counts(&diagnostics)
        );
        return Err(Exit::Error);
    }
    if let Some(saved) = &saved
        && !same_changes(&saved.output, &execution)
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
        confirm(&session, &execution, &diagnostics)?;
    } else if !printer.json && !diagnostics.is_empty() {
        eprint!("{}", render_human(&diagnostics, &session.file));
    }

    let options = ApplyOptions {
        parallelism: args
            .parallelism
            .or(saved.as_ref().and_then(|s| s.parallelism))
            .unwrap_or(ApplyOptions::default().parallelism),
        retry: RetryPolicy {
            deadline: args.retry_deadline,
            ..RetryPolicy::default()
        },
        window: session
            .plan
            .maintenance_window
            .as_ref()
            .map(|w| (w.start.value.0, w.end.value.0)),
    };
    let journal = Arc::new(StateJournal {
        backend: session.backend.clone(),
        state: Mutex::new(Versioned {
            state: session.state.clone(),
            version: 0,
        }),
        written: tokio::sync::Mutex::new(0),
        preflight: Recheck {
            plan: session.plan.clone(),
            assignment: session.validation.assignment.clone(),
            provider: session.provider.clone(),
            index: session
                .plan
                .machines
                .names()
                .enumerate()
                .map(|(m, name)| (name.to_string(), m))
                .collect(),
        },
        stages: session
            .facts
            .machines
            .iter()
            .map(|(name, fact)| (name.clone(), fact.stage))
            .collect(),
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    session.runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let printer = printer.with_bar(execution.changes.len());
    let events = printer.clone();
    let on_event: Arc<dyn Fn(Event) + Send + Sync> = Arc::new(move |event| events.event(&event));
    let report = session.runtime.block_on(apply::execute(
        &execution,
        session.provider.clone(),
        journal,
        &options,
        on_event,
        &|| interrupted.load(Ordering::SeqCst),
    ));

    let seconds = report.elapsed.as_secs_f64();
    let summary = serde_json::json!({
        "event": "summary",
        "succeeded": report.succeeded.len(),
        "failed": report.failed.len(),
        "skipped": report.skipped.len(),
        "not_started": report.not_started.len(),
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
    let mut text = format!(
        "Apply failed: {} succeeded, {} failed, {} skipped, {} not started, in {seconds:.1}s.",
        report.succeeded.len(),
        report.failed.len(),
        report.skipped.len(),
        report.not_started.len()
    );
    for (change, error) in &report.failed {
        let code = error
            .code
            .as_deref()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        text.push_str(&format!(
            "\n  root cause: `{change}`{code}: {}",
            error.message
        ));
    }
    if !report.not_started.is_empty() {
        text.push_str("\n  interrupted: run `lifeboat apply` again to continue; the state records where it stopped");
    }
    printer.line(&text, &summary);
    Err(Exit::Error)
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

/// Resolves the operations a previous run left pending, by asking the provider.
fn reconcile(session: &mut Session, printer: &Printer) -> Result<(), Exit> {
    let pending: Vec<PendingOperation> = session
        .state
        .machines
        .values()
        .filter_map(|m| m.pending.clone())
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    for operation in pending {
        let status = session
            .runtime
            .block_on(session.provider.status(&operation.id))
            .map_err(|error| {
                eprintln!(
                    "error: cannot read the status of operation `{}`: {}",
                    operation.id, error.message
                );
                Exit::Error
            })?;
        let what = format!(
            "{} machine.{} (operation `{}`)",
            operation.kind, operation.machine, operation.id
        );
        let outcome = match status {
            OperationStatus::Succeeded => Some(Ok(operation.kind.to_stage())),
            OperationStatus::Running => {
                printer.note(&format!(
                    "waiting for {what}, still running from a previous run"
                ));
                let request = OperationRequest {
                    id: operation.id.clone(),
                    machine: operation.machine.clone(),
                    kind: operation.kind,
                    reprotect: operation.settings.clone(),
                };
                Some(
                    session
                        .runtime
                        .block_on(session.provider.run(&request))
                        .map(|o| o.stage),
                )
            }
            OperationStatus::Unknown => None,
            OperationStatus::Failed(error) => Some(Err(error)),
        };
        let result = match outcome {
            Some(Ok(stage)) => {
                printer.note(&format!(
                    "recorded {what}: it finished while lifeboat was away"
                ));
                session
                    .state
                    .complete(&operation.id, stage, BTreeMap::new())
            }
            Some(Err(error)) => {
                printer.note(&format!(
                    "{what} failed in the previous run: {}",
                    error.message
                ));
                session.state.abandon(&operation.id)
            }
            None => {
                printer.note(&format!(
                    "{what} never reached the provider; it is planned again"
                ));
                session.state.abandon(&operation.id)
            }
        };
        result.map_err(|error| {
            super::state::report(&error);
            Exit::Error
        })?;
        session.write_state()?;
    }
    session.refresh()
}

/// The changes and the preflight diagnostics, as `plan` computes them.
fn build(session: &Session, targets: &[String]) -> Result<(ExecutionPlan, Vec<Diagnostic>), Exit> {
    let mut diagnostics = session.validation.diagnostics.clone();
    diagnostics.extend(preflight::preflight(
        &session.plan,
        &session.validation.assignment,
        &session.facts,
        Timestamp(jiff::Timestamp::now()),
    ));
    let released = session.state.released(session.plan.machines.names());
    let mut execution = planner::build(
        &session.plan,
        &session.validation,
        &session.facts,
        &released,
    );
    if !targets.is_empty() {
        let selected = planner::resolve_targets(&session.plan, &session.validation, targets)
            .map_err(|message| {
                eprintln!("error: {message}");
                Exit::Error
            })?;
        execution = execution.restrict(&selected);
    }
    diagnostic::sort(&mut diagnostics);
    Ok((execution, diagnostics))
}

/// Whether a fresh plan still does what the saved one showed: same changes, same settings.
fn same_changes(saved: &PlanOutput, fresh: &ExecutionPlan) -> bool {
    saved.changes.len() == fresh.changes.len()
        && saved
            .changes
            .iter()
            .zip(&fresh.changes)
            .all(|(a, b)| a.id == b.id && a.settings == b.settings)
}

fn confirm(
    session: &Session,
    execution: &ExecutionPlan,
    diagnostics: &[Diagnostic],
) -> Result<(), Exit> {
    let output = PlanOutput::new(
        execution,
        Some(session.state.lineage.clone()),
        Some(session.state.serial),
        Vec::new(),
    );
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

/// The state as the write-ahead journal of the executor, and the per-operation preflight.
///
/// Writes are committed in groups: a change is made to the state in memory at once, and the
/// caller then waits until a write that contains it is on disk. One write (with its fsync)
/// at a time runs; the changes made meanwhile share the next one. One write per change made
/// every operation wait for two fsyncs in a queue of all the others, so an apply of many
/// short operations was bound by the disk's flush latency, not by the operations.
struct StateJournal {
    backend: LocalBackend,
    state: Mutex<Versioned>,
    /// Held by the one write in progress; the version of the state on disk.
    written: tokio::sync::Mutex<u64>,
    /// Each machine's stage when the apply started, for machines new to the state.
    stages: HashMap<String, Stage>,
    preflight: Recheck,
}

/// What re-running one machine's preflight checks needs. Owned (the executor's tasks outlive
/// any borrow of the session), and cheap: one targeted refresh per operation.
struct Recheck {
    plan: lifeboat_engine::Plan,
    assignment: lifeboat_engine::assign::Assignment,
    provider: Arc<dyn lifeboat_engine::provider::Provider>,
    index: HashMap<String, usize>,
}

impl Recheck {
    async fn check(&self, change: &Change) -> Result<(), ProviderError> {
        let Some(&m) = self.index.get(change.machine()) else {
            return Ok(());
        };
        let request = preflight::refresh_request_for(&self.plan, &self.assignment, m);
        let facts = self.provider.refresh(&request).await?;
        let now = Timestamp(jiff::Timestamp::now());
        let diagnostics =
            preflight::preflight_machine(&self.plan, &self.assignment, &facts, now, m);
        match diagnostics.into_iter().find(Diagnostic::is_error) {
            None => Ok(()),
            Some(error) => Err(ProviderError::permanent(
                Some(error.code.to_string()),
                format!(
                    "preflight, right before `{}`: {}{}",
                    change.id,
                    error.message,
                    error.help.map(|h| format!(" ({h})")).unwrap_or_default()
                ),
            )),
        }
    }
}

/// The state in memory, and how many changes it has had since the apply started.
struct Versioned {
    state: State,
    version: u64,
}

impl StateJournal {
    /// Changes the state, and returns once a write that contains the change is on disk.
    async fn update(
        &self,
        change: impl FnOnce(&mut State) -> Result<bool, String>,
    ) -> Result<(), String> {
        let mine = {
            // A poisoned lock means a panic elsewhere mid-update; every change either
            // returns an error before touching the state or completes, so it is consistent.
            let mut current = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !change(&mut current.state)? {
                return Ok(());
            }
            current.version += 1;
            current.version
        };
        let mut written = self.written.lock().await;
        if *written >= mine {
            // Another task's write, made while this one waited, already holds the change.
            return Ok(());
        }
        let (snapshot, version) = {
            let current = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (current.state.clone(), current.version)
        };
        let backend = self.backend.clone();
        tokio::task::spawn_blocking(move || backend.write(&snapshot))
            .await
            .map_err(|e| format!("the state write was interrupted: {e}"))?
            .map_err(|e| e.to_string())?;
        *written = version;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Journal for StateJournal {
    async fn check(&self, change: &Change) -> Result<(), ProviderError> {
        self.preflight.check(change).await
    }

    async fn before(&self, change: &Change, operation: &OperationId) -> Result<(), String> {
        let Some(kind) = change.action.operation() else {
            return Ok(());
        };
        let machine = change.machine().to_string();
        let current = self
            .stages
            .get(&machine)
            .copied()
            .unwrap_or(Stage::FailedOver);
        self.update(|state| {
            state
                .record_pending(
                    current,
                    PendingOperation {
                        id: operation.clone(),
                        kind,
                        machine,
                        started_at: Timestamp(jiff::Timestamp::now()),
                        settings: change.settings.clone(),
                    },
                )
                .map_err(|e| e.to_string())
        })
        .await
    }

    async fn after(
        &self,
        change: &Change,
        operation: &OperationId,
        outcome: &Result<OperationOutcome, ProviderError>,
    ) -> Result<(), String> {
        self.update(|state| {
            if change.action == Action::Release {
                return Ok(state.release(change.machine()));
            }
            match outcome {
                Ok(done) => state.complete(operation, done.stage, BTreeMap::new()),
                Err(_) => state.abandon(operation),
            }
            .map_err(|e| e.to_string())
        })
        .await
    }
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
                serde_json::to_string(event).expect("events are plain data")
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

    fn note(&self, text: &str) {
        if self.json {
            outln!(
                "{}",
                serde_json::json!({"event": "reconciled", "message": text})
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
            outln!("{json}");
        } else {
            outln!("{text}");
        }
    }
}
