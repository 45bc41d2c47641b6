//! `lifeboat sim init` and `lifeboat sim generate`: make the simulated estate a plan
//! rehearses against, for a plan you have or for a generated one.

use std::path::Path;

use lifeboat_engine::model::{Plan, ProviderConfig, Timestamp};
use lifeboat_engine::validate::Validation;
use lifeboat_engine::{load, validate};
use lifeboat_provider_sim::init::{InitMachine, InitMasterTarget, InitSpec};
use lifeboat_provider_sim::{World, store};

use super::Exit;
use super::provider::report_world_error;
use crate::output::outln;
use crate::render::diagnostics::{counts, render_human};

pub fn init(plan_path: &Path, force: bool, from: Option<&Path>) -> Exit {
    let file = match super::validate::read_plan(plan_path) {
        Ok(file) => file,
        Err(diagnostic) => {
            eprint!(
                "{}",
                render_human(
                    &[*diagnostic],
                    &lifeboat_engine::SourceFile::new(
                        plan_path.display().to_string(),
                        plan_path,
                        String::new()
                    )
                )
            );
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
            "`{}` is invalid: {}; fix it before making a world for it",
            file.name(),
            counts(&validation.diagnostics)
        );
        return Exit::Error;
    }
    let ProviderConfig::Sim(config) = &plan.provider.value else {
        eprintln!(
            "error: `{}` uses the `{}` provider; `sim init` needs `provider: {{sim: {{world: …}}}}`",
            file.name(),
            plan.provider.value.kind()
        );
        return Exit::Error;
    };
    let path = match super::provider::contained(plan_path, &config.world, "provider.sim.world") {
        Ok(contained) => contained.path,
        Err(diagnostic) => {
            eprint!("{}", render_human(&[*diagnostic], &file));
            return Exit::Error;
        }
    };
    if path.exists() && !force {
        eprintln!(
            "error: the world file `{}` already exists; pass `--force` to replace it (its history is lost)",
            path.display()
        );
        return Exit::Error;
    }
    let world: World = match from {
        Some(start) => match store::read(start) {
            Ok(world) => world,
            Err(error) => {
                report_world_error(&error);
                return Exit::Error;
            }
        },
        None => lifeboat_provider_sim::init::world_for(
            &spec(&plan, &validation),
            Timestamp(jiff::Timestamp::now()),
        ),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Err(error) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "error: cannot create the directory `{}`: {error}",
            dir.display()
        );
        return Exit::Error;
    }
    if let Err(error) = store::write(&path, &world) {
        eprintln!("error: {error}");
        return Exit::Error;
    }
    let source = from.map_or_else(
        || "generated from the plan".to_string(),
        |f| format!("copied from `{}`", f.display()),
    );
    outln!(
        "wrote the world `{}` ({source}): {}",
        path.display(),
        crate::render::plural(world.machines.len(), "machine")
    );
    Exit::Success
}

/// The estate the plan describes, as the simulator's typed input.
fn spec(plan: &Plan, validation: &Validation) -> InitSpec {
    InitSpec {
        vcenter: plan.site.vcenter.value.clone(),
        configuration_server: plan.site.configuration_server.value.clone(),
        process_server: plan.site.process_server.value.clone(),
        home: plan.site.home.as_ref().map(|home| {
            (
                home.value.process_server.value.clone(),
                home.value.run_as_account.value.clone(),
            )
        }),
        master_targets: plan
            .master_targets
            .iter()
            .map(|(name, mt)| InitMasterTarget {
                name: name.value.clone(),
                os: mt.os.value,
                esxi_host: mt.esxi_host.value.clone(),
                retention_drive: mt.retention_drive.value.clone(),
                datastores: mt.datastores.iter().map(|d| d.value.clone()).collect(),
            })
            .collect(),
        machines: plan
            .machines
            .iter()
            .enumerate()
            .map(|(m, (name, machine))| InitMachine {
                name: name.value.clone(),
                os: machine.os.value,
                recovery: machine.recovery(),
                datastore: machine.datastore.value.clone(),
                disks_gib: machine
                    .disks_gib
                    .as_ref()
                    .map(|d| d.value.iter().map(|g| g.value).collect())
                    .unwrap_or_default(),
                master_target: validation
                    .assignment
                    .target_name(plan, m)
                    .map(str::to_string),
            })
            .collect(),
        replication_groups: plan
            .replication_groups
            .iter()
            .map(|(name, group)| {
                (
                    name.value.clone(),
                    group
                        .machines
                        .value
                        .iter()
                        .map(|m| m.value.clone())
                        .collect(),
                )
            })
            .collect(),
    }
}

/// The shape `sim generate` writes.
#[derive(Debug, Clone, Copy)]
pub struct Generate<'a> {
    pub shape: lifeboat_engine::generate::EstateShape,
    pub link_gbps: f64,
    pub out: &'a Path,
    pub force: bool,
}

pub fn generate(args: &Generate<'_>) -> Exit {
    let plan_path = args.out.join("lifeboat.yaml");
    if plan_path.exists() && !args.force {
        eprintln!(
            "error: `{}` already exists; pass `--force` to replace it and its world",
            plan_path.display()
        );
        return Exit::Error;
    }
    let text = lifeboat_engine::generate::plan_yaml(&args.shape);
    let written = std::fs::create_dir_all(args.out).and_then(|()| {
        lifeboat_engine::state::local::write_atomically(&plan_path, text.as_bytes())
    });
    if let Err(error) = written {
        eprintln!("error: cannot write `{}`: {error}", plan_path.display());
        return Exit::Error;
    }
    outln!(
        "wrote the plan `{}`: {} machines, {} replication groups, {} master targets",
        plan_path.display(),
        args.shape.machines,
        args.shape.groups,
        args.shape.master_targets
    );
    match init(&plan_path, args.force, None) {
        Exit::Success => with_durations(&args.out.join(".lifeboat/world.yaml"), args.link_gbps),
        failed => failed,
    }
}

/// Gives every machine of a generated world durations that follow its disks: a reprotect
/// copies every disk for alternate-location recovery, about a tenth (the changed blocks) for
/// original-location recovery; protecting again copies everything; a failback takes longer
/// with more disks to attach.
fn with_durations(world_path: &Path, link_gbps: f64) -> Exit {
    const SETUP_S: f64 = 300.0;
    let seconds_per_gib = 8.0 * 1.073_741_824 / link_gbps.max(0.001);
    let mut world = match store::read(world_path) {
        Ok(world) => world,
        Err(error) => {
            report_world_error(&error);
            return Exit::Error;
        }
    };
    for machine in world.machines.values_mut() {
        let gib = machine.disks_gib.iter().sum::<u64>() as f64;
        let changed = if machine.vmware_vm.exists { 0.1 } else { 1.0 };
        machine.timing = lifeboat_provider_sim::world::MachineTiming {
            reprotect_s: Some((SETUP_S + gib * changed * seconds_per_gib).round() as u64),
            failback_s: Some(300 + 60 * u64::from(machine.disk_count())),
            commit_s: Some(60),
            reprotect_home_s: Some((SETUP_S + gib * seconds_per_gib).round() as u64),
        };
    }
    match store::write(world_path, &world) {
        Ok(_) => Exit::Success,
        Err(error) => {
            report_world_error(&error);
            Exit::Error
        }
    }
}

/// `lifeboat sim serve`: serve the world as the ASR REST API until SIGINT or SIGTERM.
pub fn serve(mut config: lifeboat_sim_serve::Config) -> Exit {
    use std::io::Write;

    // The secret comes from the environment only, never from a flag (it would show in `ps`).
    config.client_secret = std::env::var(lifeboat_sim_serve::SECRET_ENV)
        .ok()
        .filter(|secret| !secret.is_empty());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return Exit::Error;
        }
    };
    runtime.block_on(async {
        let server = match lifeboat_sim_serve::serve(config).await {
            Ok(server) => server,
            Err(error) => {
                eprintln!("error: {error}");
                return Exit::Error;
            }
        };
        let mut stdout = std::io::stdout().lock();
        // A closed stdout must not stop the server: whoever started it may not read on.
        let _ = stdout.write_all(server.ready_lines().as_bytes());
        let _ = stdout.flush();
        drop(stdout);
        shutdown_signal().await;
        server.shutdown().await;
        Exit::Success
    })
}

/// SIGINT (Ctrl-C) or, on Unix, SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
