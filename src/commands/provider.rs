//! Choosing the provider a plan names. This is the one place that knows every provider crate:
//! the engine only sees `dyn Provider`.

use std::path::{Path, PathBuf};

use lifeboat_engine::diagnostic::{Diagnostic, codes};
use lifeboat_engine::model::{Plan, ProviderConfig};
use lifeboat_engine::{SourceFile, Spanned};
use lifeboat_provider_sim::{SimProvider, WorldError, store};

use crate::render::diagnostics::render_human;

/// Where a plan's world file is: `provider.sim.world`, relative to the plan file.
pub fn world_path(plan_path: &Path, world: &Spanned<String>) -> PathBuf {
    let dir = plan_path.parent().unwrap_or(Path::new(""));
    dir.join(&world.value)
}

/// Starts parsing the `sim` world in the background, so that [`open`] finds it parsed. The sim
/// keeps one parsed world per file for the whole process, keyed by the file's exact bytes, so
/// a warm-up can never hand out a world that changed since.
pub fn warm_up(plan_path: &Path, plan: &Plan) -> Option<std::thread::JoinHandle<()>> {
    let ProviderConfig::Sim(config) = &plan.provider.value else {
        return None;
    };
    let path = world_path(plan_path, &config.world);
    path.is_file().then(|| {
        std::thread::spawn(move || {
            let _ = SimProvider::open(&path);
        })
    })
}

/// A provider ready to use, or the report of why not (already printed).
pub fn open(plan_path: &Path, plan: &Plan, file: &SourceFile) -> Result<SimProvider, ()> {
    let config = match &plan.provider.value {
        ProviderConfig::Sim(config) => config,
        other => {
            let diagnostic = Diagnostic::error(
                codes::PLAN_SCHEMA,
                format!(
                    "the `{}` provider is not available in this build yet",
                    other.kind()
                ),
            )
            .with_label(plan.provider.span, "only `sim` is implemented")
            .with_help(
                "use `provider: {sim: {world: world.yaml}}` to rehearse against a simulated estate",
            );
            eprint!("{}", render_human(&[diagnostic], file));
            return Err(());
        }
    };
    let path = world_path(plan_path, &config.world);
    if !path.exists()
        && let Some(start) = &config.start_from
    {
        let start_path = world_path(plan_path, start);
        let created = store::read(&start_path).and_then(|world| {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| WorldError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            store::write(&path, &world)
        });
        match created {
            Ok(_) => eprintln!(
                "created the world `{}` from `{}` (delete it to start the rehearsal over)",
                path.display(),
                start_path.display()
            ),
            Err(error) => {
                report_world_error(&error);
                return Err(());
            }
        }
    }
    if !path.exists() {
        let diagnostic = Diagnostic::error(
            codes::WORLD_SYNTAX,
            format!("the world file `{}` does not exist", path.display()),
        )
        .with_label(config.world.span, "no world here")
        .with_help(format!(
            "create it with `lifeboat sim init {}` (every machine failed over, every fact healthy), or copy a starting world with `--from`",
            plan_path.display()
        ));
        eprint!("{}", render_human(&[diagnostic], file));
        return Err(());
    }
    SimProvider::open(&path).map_err(|error| report_world_error(&error))
}

/// Prints a world error: the diagnostics against the world file where there are some.
pub fn report_world_error(error: &WorldError) {
    match error {
        WorldError::Invalid { file, diagnostics } => {
            eprint!("{}", render_human(diagnostics, file));
            eprintln!("the world file `{}` is invalid", file.name());
        }
        other => eprintln!("error: {other}"),
    }
}
