//! `lifeboat show SAVED`: a saved plan, rendered by the same code as `plan`, so a reviewer
//! sees exactly what `plan` showed. `--format json` prints the plan itself, byte for byte the
//! JSON `plan --format json` printed; the human view adds one line saying what it was made
//! from.

use std::path::Path;

use lifeboat_engine::saved::SavedPlan;

use super::Exit;
use crate::cli::OutputFormat;
use crate::render::plan as render_plan;

/// Reads and parses a saved plan; a problem is printed, naming the file.
pub fn read(path: &Path) -> Result<SavedPlan, ()> {
    let bytes = lifeboat_engine::input::read_capped(path, lifeboat_engine::input::MAX_INPUT_BYTES)
        .map_err(|error| {
            eprintln!(
                "error: cannot read the saved plan `{}`: {}",
                path.display(),
                lifeboat_engine::state::lower(&error)
            );
        })?;
    let unusable = |reason: &str| {
        eprintln!(
            "error: `{}` is not a usable saved plan: {reason}",
            path.display()
        );
        eprintln!("  help: make a new one with `lifeboat plan --out FILE`");
    };
    let text = String::from_utf8(bytes).map_err(|_| unusable("not UTF-8 text"))?;
    SavedPlan::from_json(&text).map_err(|reason| unusable(&reason))
}

pub fn run(path: &Path, format: OutputFormat) -> Exit {
    let Ok(saved) = read(path) else {
        return Exit::Error;
    };
    match format {
        OutputFormat::Human => {
            println!(
                "Saved plan `{}` of `{}`: made {} from `{}` (sha256 {}), state lineage {} serial {}{}.\n",
                path.display(),
                saved.plan_name,
                saved.created_at,
                saved.plan_file.path,
                saved.plan_file.sha256,
                saved.lineage,
                saved.serial,
                if saved.allow_replace {
                    ", replaces allowed"
                } else {
                    ""
                }
            );
            print!("{}", render_plan::render_human(&saved.output));
        }
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&saved.output).expect("plan output is plain data")
        ),
        OutputFormat::Markdown => print!(
            "{}",
            render_plan::render_markdown(&saved.output, &saved.plan_name)
        ),
    }
    Exit::Success
}
