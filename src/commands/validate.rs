//! `lifeboat validate`: load and check a plan file; report every problem at once.

use std::path::Path;

use lifeboat_engine::{Diagnostic, SourceFile, load, ops};

use super::Exit;
use crate::cli::DiagnosticFormat;
use crate::output::{out, outln};
use crate::render::diagnostics::{counts, render_human, render_json};

pub fn run(path: &Path, format: DiagnosticFormat) -> Exit {
    let file = match read_plan(path) {
        Ok(file) => file,
        Err(diagnostic) => {
            // Unreadable input has no text to label, so it is reported the same way in both
            // formats' spirit: JSON for machines, one line for people.
            let empty = SourceFile::new(path.display().to_string(), path, String::new());
            emit(&[*diagnostic], &empty, format);
            return Exit::Error;
        }
    };
    let diagnostics = match load::load_plan_all(&file) {
        Ok(plan) => ops::validate(&plan, super::paths::containment(path).as_ref()).diagnostics,
        Err(diagnostics) => diagnostics,
    };
    emit(&diagnostics, &file, format);
    if diagnostics.iter().any(Diagnostic::is_error) {
        Exit::Error
    } else {
        Exit::Success
    }
}

/// Reads a plan file; a missing file or invalid UTF-8 becomes a `plan::syntax` diagnostic.
pub fn read_plan(path: &Path) -> Result<SourceFile, Box<Diagnostic>> {
    super::paths::check_plan_file(path)?;
    SourceFile::read(path).map_err(|error| {
        let help = match error.kind() {
            std::io::ErrorKind::NotFound => {
                "pass the plan file as an argument, or run lifeboat where `lifeboat.yaml` is"
                    .to_string()
            }
            _ => "check the path and the file's permissions and encoding".to_string(),
        };
        Box::new(
            Diagnostic::error(
                lifeboat_engine::diagnostic::codes::PLAN_SYNTAX,
                format!(
                    "cannot read `{}`: {}",
                    path.display(),
                    lowercase(&error.to_string())
                ),
            )
            .with_help(help),
        )
    })
}

fn lowercase(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

fn emit(diagnostics: &[Diagnostic], file: &SourceFile, format: DiagnosticFormat) {
    match format {
        DiagnosticFormat::Json => out!("{}", render_json(diagnostics, file)),
        DiagnosticFormat::Human => {
            eprint!("{}", render_human(diagnostics, file));
            if diagnostics.iter().any(Diagnostic::is_error) {
                eprintln!("`{}` is invalid: {}", file.name(), counts(diagnostics));
            } else if diagnostics.is_empty() {
                outln!("`{}` is valid", file.name());
            } else {
                outln!("`{}` is valid, with {}", file.name(), counts(diagnostics));
            }
        }
    }
}
