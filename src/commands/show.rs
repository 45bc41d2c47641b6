//! `lifeboat show SAVED`: a saved plan, rendered by the same code as `plan`, so a reviewer
//! sees exactly what `plan` showed. `--format json` prints the plan itself, byte for byte the
//! JSON `plan --format json` printed; the human view adds what it was made from, the saved
//! warnings, and whether `apply` would still take it.

use std::path::Path;

use lifeboat_engine::diagnostic::JsonDiagnostic;
use lifeboat_engine::saved::{self, SavedPlan};
use lifeboat_engine::{Severity, SourceFile, load};

use super::Exit;
use crate::cli::OutputFormat;
use crate::output::{out, outln};
use crate::render::plan as render_plan;

/// Reads and parses a saved plan; a problem is printed, naming the file.
pub fn read(path: &Path) -> Result<SavedPlan, Exit> {
    let bytes = lifeboat_engine::input::read_capped(path, lifeboat_engine::input::MAX_INPUT_BYTES)
        .map_err(|error| {
            eprintln!(
                "error: cannot read the saved plan `{}`: {}",
                path.display(),
                lifeboat_engine::state::lower(&error)
            );
            Exit::Error
        })?;
    let unusable = |reason: &str| {
        eprintln!(
            "error: `{}` is not a usable saved plan: {reason}",
            path.display()
        );
        eprintln!("  help: make a new one with `lifeboat plan --out FILE`");
        Exit::Error
    };
    let text = String::from_utf8(bytes).map_err(|_| unusable("not UTF-8 text"))?;
    SavedPlan::from_json(&text).map_err(|reason| unusable(&reason.to_string()))
}

pub fn run(path: &Path, format: OutputFormat) -> Exit {
    let saved = match read(path) {
        Ok(saved) => saved,
        Err(exit) => return exit,
    };
    let freshness = freshness(&saved);
    match format {
        OutputFormat::Human => {
            outln!(
                "Saved plan `{}` of `{}`: made {} from `{}` (sha256 {}), state lineage {} serial {}.",
                path.display(),
                saved.plan_name,
                saved.created_at,
                saved.plan_file.path,
                saved.plan_file.sha256,
                saved.lineage,
                saved.serial,
            );
            outln!("{freshness}\n");
            out!("{}", diagnostics_human(&saved.output.diagnostics));
            out!(
                "{}",
                render_plan::render_human(&saved.output, crate::render::stdout_colour())
            );
        }
        // Byte for byte what `plan --format json` printed; whether it is still current goes
        // to stderr, so the JSON stays the plan's.
        OutputFormat::Json => {
            eprintln!("{freshness}");
            outln!(
                "{}",
                serde_json::to_string_pretty(&saved.output).expect("plan output is plain data")
            );
        }
        OutputFormat::Markdown => {
            eprintln!("{freshness}");
            out!(
                "{}",
                render_plan::render_markdown(&saved.output, &saved.plan_name)
            );
        }
    }
    Exit::Success
}

/// Whether `apply` would still accept the saved plan, judged as `apply` judges it first: the
/// plan file's digest and the state's lineage and serial. (`apply` then also refreshes the
/// sites and refuses a plan whose changes would differ; that needs the provider.)
fn freshness(saved: &SavedPlan) -> String {
    let plan_path = Path::new(&saved.plan_file.path);
    let Ok(bytes) =
        lifeboat_engine::input::read_capped(plan_path, lifeboat_engine::input::MAX_INPUT_BYTES)
    else {
        return format!(
            "Stale: the plan file `{}` cannot be read from here, so `apply` would refuse this plan.",
            plan_path.display()
        );
    };
    let state = SourceFile::from_bytes(plan_path, bytes.clone())
        .ok()
        .and_then(|file| load::load_plan(&file).ok())
        .map(|plan| super::state::backend(plan_path, &plan));
    let state = match state {
        Some(Ok(backend)) => match backend.read() {
            Ok(state) => state,
            Err(error) => return format!("Cannot tell whether this plan is current: {error}."),
        },
        // A state path outside the plan's repository is not read.
        Some(Err(diagnostic)) => {
            return format!(
                "Cannot tell whether this plan is current: {}.",
                diagnostic.message
            );
        }
        None => None,
    };
    match saved::check_fresh(saved, &bytes, state.as_ref()) {
        Ok(()) => "Current: the plan file and the state are as they were when it was saved; \
                   `apply` refreshes the sites before carrying it out."
            .to_string(),
        Err(stale) => {
            let reasons: Vec<String> = stale.reasons.iter().map(ToString::to_string).collect();
            format!(
                "Stale: {}; `apply` would refuse this plan. Make a new one with `lifeboat plan --out FILE`.",
                reasons.join("; ")
            )
        }
    }
}

/// The saved plan's diagnostics (errors never: a plan with errors is not saved), each with
/// its code, where it points and its help, as `plan` showed them.
fn diagnostics_human(diagnostics: &[JsonDiagnostic]) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let severity = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        out.push_str(&format!("{severity}[{}]: {}\n", d.code, d.message));
        if let Some(label) = d.labels.first() {
            out.push_str(&format!(
                "  --> {}:{}:{}: {}\n",
                label.file, label.start.line, label.start.column, label.message
            ));
        }
        if let Some(help) = &d.help {
            out.push_str(&format!("  help: {help}\n"));
        }
    }
    if !diagnostics.is_empty() {
        out.push('\n');
    }
    out
}
