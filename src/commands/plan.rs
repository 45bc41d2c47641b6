//! `lifeboat plan`: load and validate the plan, refresh the facts of both sites, run the
//! preflight checks, and build the ordered changes that `apply` would carry out.
//!
//! Human output puts diagnostics on stderr and the plan on stdout; `--format json` and
//! `--format markdown` put everything on stdout, diagnostics included, so CI can keep one
//! artefact. Exit codes (DESIGN.md §6): 1 on any error; with `--detailed-exitcode`, 0 when
//! there is nothing to do and 2 when there are changes.
//!
//! `plan` holds the state lock while it runs (so it never reads a state an apply is writing)
//! and creates the state when there is none, so that even the first plan has a lineage. It
//! changes nothing else: the state is written only at creation.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use lifeboat_engine::diagnostic::JsonDiagnostic;
use lifeboat_engine::model::ProviderConfig;
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::planner::output::PlanOutput;
use lifeboat_engine::provider::Provider;
use lifeboat_engine::saved::{self, PlanFileRef, ProviderRef, SavedPlan, SavedPlanKind};
use lifeboat_engine::state::State;
use lifeboat_engine::{Diagnostic, SourceFile, ops};

use super::Exit;
use super::pipeline::{self, Session};
use crate::cli::OutputFormat;
use crate::output::out;
use crate::render::diagnostics::{counts, render_human};
use crate::render::plan as render_plan;

#[derive(Debug)]
pub struct PlanArgs<'a> {
    pub plan: &'a Path,
    pub format: OutputFormat,
    pub detailed_exitcode: bool,
    pub targets: &'a [String],
    pub out: Option<&'a Path>,
    pub refresh_only: bool,
    pub parallelism: Option<usize>,
    /// `None`: `--lock=false`.
    pub lock: Option<Duration>,
}

pub fn run(args: &PlanArgs<'_>) -> Exit {
    match plan(args) {
        Ok(exit) | Err(exit) => exit,
    }
}

fn plan(args: &PlanArgs<'_>) -> Result<Exit, Exit> {
    // The session holds the state lock until `plan` returns, through the refresh and the
    // saved plan's write.
    let session = pipeline::open(args.plan, "plan", args.lock)?;
    let Session {
        file,
        plan,
        validation,
        state,
        provider,
        facts,
        ..
    } = &session;
    let planned = if args.refresh_only {
        ops::refresh_only(plan, validation, facts, state, args.targets)
    } else {
        ops::plan(
            plan,
            validation,
            facts,
            state,
            args.targets,
            Timestamp(jiff::Timestamp::now()),
        )
    }
    .map_err(|error| {
        eprintln!("error: {error}");
        Exit::Error
    })?;
    let ops::Planned {
        execution,
        mut diagnostics,
        drift,
    } = planned;
    // The expected schedule and whether failback and commit fit the window; a refresh-only
    // plan plans nothing to schedule.
    let schedule = if args.refresh_only || execution.is_empty() {
        None
    } else {
        let now = Timestamp(jiff::Timestamp::now());
        let parallelism = args
            .parallelism
            .unwrap_or(lifeboat_engine::apply::ApplyOptions::default().parallelism);
        let (schedule, fit) = session
            .runtime
            .block_on(ops::schedule(
                plan,
                &execution,
                provider.as_ref(),
                now,
                parallelism,
            ))
            .map_err(|error| {
                eprintln!(
                    "error: estimating durations through `{}` failed: {}",
                    provider.describe().identity,
                    error.message
                );
                Exit::Error
            })?;
        diagnostics.extend(fit);
        lifeboat_engine::diagnostic::sort(&mut diagnostics);
        Some(schedule)
    };

    let json_diagnostics: Vec<JsonDiagnostic> = diagnostics
        .iter()
        .map(|d| JsonDiagnostic::new(d, file))
        .collect();
    let mut output = PlanOutput::new(
        &execution,
        Some(state.lineage.clone()),
        Some(state.serial),
        json_diagnostics,
    );
    output.drift = drift;
    output.schedule = schedule;
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    // What the refresh changed (the simulator settles operations that ended) is folded into
    // the estate's file, so that the saved plan's digest is that of the estate it saw.
    if let Err(error) = session.runtime.block_on(provider.close()) {
        eprintln!(
            "error: closing `{}` failed: {}",
            provider.describe().identity,
            error.message
        );
        return Err(Exit::Error);
    }
    if let Some(out) = args.out {
        if has_errors {
            eprintln!(
                "error: the plan has errors; it was not saved to `{}`",
                out.display()
            );
        } else {
            save(args, out, file, plan, provider.as_ref(), state, &output)?;
        }
    }
    match args.format {
        OutputFormat::Human => {
            eprint!("{}", render_human(&diagnostics, file));
            out!(
                "{}",
                render_plan::render_human(&output, crate::render::stdout_colour())
            );
        }
        OutputFormat::Json => {
            // Streamed: the JSON plan of a large estate is megabytes, not worth building whole.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let written = serde_json::to_writer_pretty(&mut out, &output)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(out))
                .and_then(|()| out.flush());
            // A reader that stopped early is not an error of the plan (see `output`).
            if let Err(error) = written {
                crate::output::closed(&error);
            }
        }
        OutputFormat::Markdown => {
            out!(
                "{}",
                render_plan::render_markdown(&output, &plan.name.value)
            );
        }
    }

    let changed = match &output.drift {
        Some(drift) => !drift.is_empty(),
        None => !execution.is_empty(),
    };
    // The process ends next: release the lock and leave the memory to the operating system
    // (see `Session::finish`).
    let failed = has_errors.then(|| counts(&diagnostics));
    std::mem::forget((output, execution, diagnostics));
    session.finish();
    if let Some(counts) = failed {
        if args.format == OutputFormat::Human {
            eprintln!("preflight failed: {counts}");
        }
        Err(Exit::Error)
    } else if args.detailed_exitcode && changed {
        Ok(Exit::Changes)
    } else {
        Ok(Exit::Success)
    }
}

/// Writes the saved plan (atomically: a reader never sees half of one).
fn save(
    args: &PlanArgs<'_>,
    out: &Path,
    file: &SourceFile,
    plan: &lifeboat_engine::Plan,
    provider: &dyn Provider,
    state: &State,
    output: &PlanOutput,
) -> Result<(), Exit> {
    let info = provider.describe();
    // The world is read after the refresh (which may have advanced the simulated clock), so
    // the digest is that of the estate the plan saw.
    let world_sha256 = match &plan.provider.value {
        ProviderConfig::Sim(config) => {
            let path = super::provider::world_path(args.plan, &config.world);
            lifeboat_engine::input::read_capped(&path, lifeboat_engine::input::MAX_INPUT_BYTES)
                .ok()
                .map(|bytes| saved::sha256_hex(&bytes))
        }
        _ => None,
    };
    let saved_plan = SavedPlan {
        format_version: saved::FORMAT_VERSION.to_string(),
        kind: SavedPlanKind::SavedPlan,
        created_at: Timestamp(jiff::Timestamp::now()),
        plan_name: plan.name.value.clone(),
        plan_file: PlanFileRef {
            path: args.plan.display().to_string(),
            sha256: saved::sha256_hex(file.text().as_bytes()),
        },
        provider: ProviderRef {
            kind: info.kind.to_string(),
            identity: info.identity,
            world_sha256,
        },
        lineage: state.lineage.clone(),
        serial: state.serial,
        goal: output.goal,
        targets: args.targets.to_vec(),
        parallelism: args.parallelism,
        output: output.clone(),
    };
    let written = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
    .and_then(|()| {
        lifeboat_engine::state::local::write_atomically(out, saved_plan.to_json().as_bytes())
    });
    match written {
        Ok(()) => {
            eprintln!(
                "saved the plan to `{}`; review it with `lifeboat show {}`",
                out.display(),
                out.display()
            );
            Ok(())
        }
        Err(error) => {
            eprintln!(
                "error: cannot write the saved plan `{}`: {}",
                out.display(),
                lifeboat_engine::state::lower(&error)
            );
            Err(Exit::Error)
        }
    }
}
