//! `lifeboat provider serve sim` (the simulator served as a plugin on stdin and stdout) and
//! `lifeboat provider test` (the conformance kit). The protocol itself lives in
//! `lifeboat-provider-plugin`; this module parses, checks paths and renders.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_engine::model::ProviderConfig;
use lifeboat_engine::paths::Containment;
use lifeboat_engine::preflight;
use lifeboat_provider_plugin::conformance::{self, Case, Estate, Outcome};
use lifeboat_provider_plugin::protocol::PluginInfo;
use lifeboat_provider_plugin::{Spec, server};
use lifeboat_provider_sim::{SimProvider, store};

use super::Exit;
use crate::output::outln;

fn runtime() -> Result<tokio::runtime::Runtime, Exit> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| {
            eprintln!("error: cannot start the async runtime: {error}");
            Exit::Error
        })
}

/// The world a served sim may use: inside the repository of the current directory (the
/// plan's, since a plugin runs in its plan's directory) or an allowed directory, as if the
/// plan had named it, because its arguments come from the plan.
fn contained(path: &Path, flag: &str) -> Result<PathBuf, Exit> {
    let containment = Containment::for_plan(Path::new("lifeboat.yaml"), super::paths::allowed())
        .map_err(|error| {
            eprintln!("error: the current directory cannot be resolved: {error}");
            Exit::Error
        })?;
    containment.check(path).map_err(|refusal| {
        eprintln!(
            "error: `{flag}` `{}` {refusal}",
            path.display()
        );
        eprintln!(
            "  help: keep the world inside the repository; to allow a directory outside it, pass `--allow-path DIR` or set `LIFEBOAT_ALLOWED_PATHS`"
        );
        Exit::Error
    })
}

/// Serves the world at `world` until `shutdown` or the end of stdin. Nothing but protocol
/// messages is written to stdout; everything else goes to stderr, which lifeboat shows with
/// the plugin's name.
pub fn serve_sim(world: &Path, start_from: Option<&Path>) -> Exit {
    let real = match contained(world, "--world") {
        Ok(real) => real,
        Err(exit) => return exit,
    };
    if !world.exists()
        && let Some(start) = start_from
    {
        let start_real = match contained(start, "--start-from") {
            Ok(real) => real,
            Err(exit) => return exit,
        };
        let created = store::read(start).and_then(|w| {
            if let Some(dir) = world.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| {
                    lifeboat_provider_sim::WorldError::Write {
                        path: dir.to_path_buf(),
                        source,
                    }
                })?;
            }
            store::write(world, &w)
        });
        if let Err(error) = created {
            super::provider::report_world_error_as(&error, quotable(&start_real));
            return Exit::Error;
        }
        eprintln!(
            "created the world `{}` from `{}`",
            world.display(),
            start.display()
        );
    }
    let provider = match SimProvider::open(world) {
        Ok(provider) => provider,
        Err(error) => {
            super::provider::report_world_error_as(&error, quotable(&real));
            return Exit::Error;
        }
    };
    for warning in provider.warnings() {
        eprintln!("warning: {warning}");
    }
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(exit) => return exit,
    };
    let plugin = PluginInfo {
        name: "lifeboat-sim".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let served = runtime.block_on(server::serve_stdio(Arc::new(provider), plugin));
    match served {
        Ok(()) => Exit::Success,
        Err(error) => {
            eprintln!("error: serving the protocol failed: {error}");
            Exit::Error
        }
    }
}

/// A world is quoted in errors only when it is inside the repository (see `provider.rs`).
fn quotable(real: &Path) -> bool {
    Containment::for_plan(Path::new("lifeboat.yaml"), &[]).is_ok_and(|c| c.may_quote(real))
}

/// The conformance kit: one line per case, then a summary; exit 1 when a case failed.
pub fn test(plan: Option<&Path>, timeout: Duration, command: &[String]) -> Exit {
    let Some((program, args)) = command.split_first() else {
        eprintln!(
            "error: name the plugin after `--`, e.g. `lifeboat provider test -- ./my-plugin`"
        );
        return Exit::Error;
    };
    // The kit runs what its user typed, like a shell: no allow-list (the plan is not asked).
    // A program given as a path is made absolute, since the plugin runs in the plan's
    // directory.
    let mut spec = Spec {
        program: if Path::new(program).components().count() > 1 {
            std::path::absolute(program).unwrap_or_else(|_| PathBuf::from(program))
        } else {
            PathBuf::from(program)
        },
        args: args.to_vec(),
        dir: PathBuf::from("."),
        config: serde_json::Value::Null,
        timeout,
    };
    let estate = match plan {
        None => None,
        Some(plan) => match estate(plan, &mut spec) {
            Ok(estate) => Some(estate),
            Err(exit) => return exit,
        },
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(exit) => return exit,
    };
    let cases = runtime.block_on(conformance::run(&spec, estate.as_ref(), print_case));
    let count = |f: fn(&Outcome) -> bool| cases.iter().filter(|c| f(&c.outcome)).count();
    let passed = count(|o| matches!(o, Outcome::Pass));
    let failed = count(|o| matches!(o, Outcome::Fail(_)));
    let skipped = count(|o| matches!(o, Outcome::Skip(_)));
    outln!(
        "\n{} cases: {passed} passed, {failed} failed, {skipped} skipped",
        cases.len()
    );
    lifeboat_provider_plugin::stop_all(Duration::from_secs(2));
    if failed > 0 {
        Exit::Error
    } else {
        Exit::Success
    }
}

fn print_case(case: &Case) {
    match &case.outcome {
        Outcome::Pass => outln!("ok    {}", case.name),
        Outcome::Fail(why) => outln!("FAIL  {}: {why}", case.name),
        Outcome::Skip(why) => outln!("skip  {}: {why}", case.name),
    }
}

/// The plan's names, and the reprotect of each machine, for the cases that run one. A plan
/// with a `plugin` provider also gives the plugin its `config` and its directory, as `plan`
/// would.
fn estate(plan_path: &Path, spec: &mut Spec) -> Result<Estate, Exit> {
    let (_, plan, validation) = super::pipeline::load_valid(plan_path)?;
    if let ProviderConfig::Plugin(config) = &plan.provider.value {
        spec.config = config.config.clone().unwrap_or_default();
        spec.dir = plan_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    }
    let reprotect = (0..plan.machines.len())
        .filter_map(|m| {
            let name = plan.machines.get_index(m).0.value.clone();
            preflight::reprotect_settings(&plan, &validation.assignment, m).map(|s| (name, s))
        })
        .collect();
    Ok(Estate {
        refresh: preflight::refresh_request(&plan),
        reprotect,
    })
}
