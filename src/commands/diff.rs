//! `lifeboat diff OLD NEW`: a semantic diff of two plan files, for change review.
//!
//! Both files are loaded and validated first. A diff of an invalid plan would mislead (its
//! master-target assignment is incomplete, so "what moves" would be wrong), so either file
//! failing is reported with its diagnostics and exit 1. Otherwise the command exits 0 whether
//! or not the plans differ: DESIGN.md §6 reserves 2 for `plan --detailed-exitcode`.

use std::io::IsTerminal;
use std::path::Path;

use lifeboat_engine::diff::{DiffReport, diff, sticky_validation};
use lifeboat_engine::validate::{Validation, validate};
use lifeboat_engine::{Diagnostic, Plan, SourceFile, load};

use super::Exit;
use super::validate::read_plan;
use crate::cli::OutputFormat;
use crate::output::out;
use crate::render::diagnostics::{counts, render_human, use_colour};
use crate::render::diff as render;

/// A path of `-` reads the plan from standard input.
const STDIN: &str = "-";

pub fn run(old: &Path, new: &Path, format: OutputFormat) -> Exit {
    if old.as_os_str() == STDIN && new.as_os_str() == STDIN {
        eprintln!("error: only one of OLD and NEW can be `-` (standard input)");
        return Exit::Error;
    }
    // Both files are checked before giving up, so one run shows every problem in both.
    let old = checked(old);
    let new = checked(new);
    let (Some(old), Some(new)) = (old, new) else {
        return Exit::Error;
    };
    // The new file's assignment starts from the old one's, as `plan` starts from the state's.
    let sticky = sticky_validation(&old.plan, &old.validation, &new.plan);
    let new_validation = if sticky.has_errors() {
        &new.validation
    } else {
        &sticky
    };
    let changes = diff(&old.plan, &old.validation, &new.plan, new_validation);
    let report = DiffReport::new(old.file.name(), new.file.name(), changes);
    match format {
        OutputFormat::Human => {
            out!(
                "{}",
                render::human(&report, use_colour(std::io::stdout().is_terminal()))
            );
        }
        OutputFormat::Json => out!("{}", render::json(&report)),
        OutputFormat::Markdown => out!("{}", render::markdown(&report)),
    }
    Exit::Success
}

struct Checked {
    file: SourceFile,
    plan: Plan,
    validation: Validation,
}

/// Reads, loads and validates one side; on any error prints the diagnostics and returns `None`.
fn checked(path: &Path) -> Option<Checked> {
    let file = match read(path) {
        Ok(file) => file,
        Err(diagnostic) => {
            let empty = SourceFile::new(path.display().to_string(), path, String::new());
            eprint!("{}", render_human(&[*diagnostic], &empty));
            return None;
        }
    };
    let diagnostics = match load::load_plan_all(&file) {
        Ok(plan) => {
            let validation = validate(&plan);
            if !validation.has_errors() {
                return Some(Checked {
                    file,
                    plan,
                    validation,
                });
            }
            validation.diagnostics
        }
        Err(diagnostics) => diagnostics,
    };
    eprint!("{}", render_human(&diagnostics, &file));
    eprintln!(
        "`{}` is invalid: {}; fix it before diffing",
        file.name(),
        counts(&diagnostics)
    );
    None
}

fn read(path: &Path) -> Result<SourceFile, Box<Diagnostic>> {
    if path.as_os_str() != STDIN {
        return read_plan(path);
    }
    // Standard input is capped like a file, and read through the same reader.
    let text = lifeboat_engine::input::read_capped_from(
        std::io::stdin().lock(),
        lifeboat_engine::input::MAX_INPUT_BYTES,
        0,
    )
    .and_then(|bytes| {
        String::from_utf8(bytes).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "the input is not UTF-8")
        })
    })
    .map_err(|error| {
        Box::new(
            Diagnostic::error(
                lifeboat_engine::diagnostic::codes::PLAN_SYNTAX,
                format!("cannot read the plan from standard input: {error}"),
            )
            .with_help("pipe a UTF-8 plan file into lifeboat, e.g. from `git show`"),
        )
    })?;
    Ok(SourceFile::new("<stdin>", path, text))
}
