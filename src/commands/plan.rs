//! `lifeboat plan`: load and validate the plan, refresh the facts of both sites, run the
//! preflight checks, and build the ordered changes that `apply` would carry out.
//!
//! Human output puts diagnostics on stderr and the plan on stdout; `--format json` and
//! `--format markdown` put everything on stdout, diagnostics included, so CI can keep one
//! artefact. Exit codes (DESIGN.md §6): 1 on any error; with `--detailed-exitcode`, 0 when
//! there is nothing to do and 2 when there are changes.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use lifeboat_engine::diagnostic::{JsonDiagnostic, codes};
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::planner::output::PlanOutput;
use lifeboat_engine::provider::Provider;
use lifeboat_engine::{Diagnostic, SourceFile, diagnostic, load, planner, preflight, validate};

use super::Exit;
use crate::cli::OutputFormat;
use crate::render::diagnostics::{counts, render_human};
use crate::render::plan as render_plan;

#[derive(Debug)]
pub struct PlanArgs<'a> {
    pub plan: &'a Path,
    pub format: OutputFormat,
    pub detailed_exitcode: bool,
    pub targets: &'a [String],
}

pub fn run(args: &PlanArgs<'_>) -> Exit {
    let plan_path = args.plan;
    let file = match super::validate::read_plan(plan_path) {
        Ok(file) => file,
        Err(diagnostic) => {
            let empty = SourceFile::new(plan_path.display().to_string(), plan_path, String::new());
            eprint!("{}", render_human(&[*diagnostic], &empty));
            return Exit::Error;
        }
    };
    let plan = match load::load_plan(&file) {
        Ok(plan) => plan,
        Err(diagnostic) => {
            eprint!("{}", render_human(&[*diagnostic], &file));
            return Exit::Error;
        }
    };
    let validation = validate::validate(&plan);
    if validation.has_errors() {
        eprint!("{}", render_human(&validation.diagnostics, &file));
        eprintln!(
            "`{}` is invalid: {}",
            file.name(),
            counts(&validation.diagnostics)
        );
        return Exit::Error;
    }
    let targets = match planner::resolve_targets(&plan, &validation, args.targets) {
        Ok(targets) => targets,
        Err(message) => {
            eprintln!("error: {message}");
            return Exit::Error;
        }
    };
    let Ok(provider) = super::provider::open(plan_path, &plan, &file) else {
        return Exit::Error;
    };

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Error;
        }
    };
    let request = preflight::refresh_request(&plan);
    let facts = match runtime.block_on(provider.refresh(&request)) {
        Ok(facts) => facts,
        Err(error) => {
            let code = error
                .code
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            eprintln!(
                "error: refreshing from `{}` failed{code}: {}",
                provider.describe().identity,
                error.message
            );
            return Exit::Error;
        }
    };

    // Assign again knowing where machines replicate today, so lifeboat's own earlier choices
    // stay put (see `assign`); the plan was already checked above, this only moves nothing.
    let current: HashMap<&str, &str> = facts
        .machines
        .iter()
        .filter_map(|(name, fact)| {
            Some((
                name.as_str(),
                fact.settings.as_ref()?.master_target.as_str(),
            ))
        })
        .collect();
    let validation = validate::validate_with(&plan, &current);

    let mut diagnostics = validation.diagnostics.clone();
    diagnostics.extend(preflight::preflight(
        &plan,
        &validation.assignment,
        &facts,
        Timestamp(jiff::Timestamp::now()),
    ));
    let mut execution = planner::build(&plan, &validation, &facts, &[]);
    if !args.targets.is_empty() {
        execution = execution.restrict(&targets);
        diagnostics.push(targeted_warning(args.targets, &targets));
    }
    diagnostic::sort(&mut diagnostics);

    let json_diagnostics: Vec<JsonDiagnostic> = diagnostics
        .iter()
        .map(|d| JsonDiagnostic::new(d, &file))
        .collect();
    let output = PlanOutput::new(&execution, None, None, json_diagnostics);
    match args.format {
        OutputFormat::Human => {
            eprint!("{}", render_human(&diagnostics, &file));
            print!("{}", render_plan::render_human(&output));
        }
        OutputFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&output).expect("plan output is plain data")
            );
        }
        OutputFormat::Markdown => {
            print!(
                "{}",
                render_plan::render_markdown(&output, &plan.name.value)
            );
        }
    }

    if diagnostics.iter().any(Diagnostic::is_error) {
        if args.format == OutputFormat::Human {
            eprintln!("preflight failed: {}", counts(&diagnostics));
        }
        Exit::Error
    } else if args.detailed_exitcode && !execution.is_empty() {
        Exit::Changes
    } else {
        Exit::Success
    }
}

/// A targeted plan is partial; say so, the way Terraform does, because the rest of the estate
/// is not being checked for what it needs.
fn targeted_warning(addresses: &[String], machines: &HashSet<String>) -> Diagnostic {
    Diagnostic::warning(
        codes::PLAN_TARGETED,
        format!(
            "this plan is limited to {} ({} machines) and what they depend on",
            addresses.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
            machines.len()
        ),
    )
    .with_help("use `--target` to recover from a problem, not routinely: the rest of the estate is not planned")
}
