//! The `lifeboat` binary: argument parsing, dispatch and rendering. All behaviour lives in
//! `lifeboat-engine`; this crate turns its values into text and exit codes.

mod cli;
mod commands;
mod output;
mod render;

use clap::Parser as _;

use cli::{Cli, Command};

/// Debug logs (ARM request and correlation ids for support cases, retries, token renewals) go
/// to stderr when `LIFEBOAT_LOG` is set, e.g. `LIFEBOAT_LOG=debug` or
/// `LIFEBOAT_LOG=lifeboat_provider_azure=debug`; without it nothing is logged.
fn init_logging() {
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("LIFEBOAT_LOG") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// mimalloc instead of the system allocator: parsing a large plan and world makes millions of
/// small allocations on two threads at once, and glibc's malloc spent a sixth of `plan`'s
/// time on them (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `--allow-replace` is gone: a `replace` (disable protection, reprotect again) would strand
/// the machine in Azure, as an unprotected replica can never fail back. Scripts that still
/// pass it get this explanation instead of clap's "unexpected argument".
fn removed_allow_replace() -> commands::Exit {
    eprintln!(
        "error: `--allow-replace` was removed: lifeboat no longer replaces reprotected machines, because disabling protection removes the replica and an unprotected replica can never fail back\n  help: drop the flag; a reprotected machine whose master target, datastore, retention drive or recovery type differs from the plan is reported as `preflight::locked-setting`, and a process-server change is planned as `switch-process-server`"
    );
    commands::Exit::Error
}

fn main() -> std::process::ExitCode {
    init_logging();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            // clap exits 2 on a usage error, but 2 means "success with changes" under
            // `--detailed-exitcode` (DESIGN.md §6): a typo in CI must not read as changes.
            // Help and version requests are not errors.
            return std::process::ExitCode::from(if error.use_stderr() { 1 } else { 0 });
        }
    };
    commands::paths::allow(cli.allow_paths);
    commands::paths::allow_plugins(cli.allow_plugins);
    let exit = match cli.command {
        Command::Apply {
            allow_replace: true,
            ..
        }
        | Command::Plan {
            allow_replace: true,
            ..
        } => removed_allow_replace(),
        Command::Validate { plan, format } => commands::validate::run(&plan, format),
        Command::Diff { old, new, format } => commands::diff::run(&old, &new, format),
        Command::Graph {
            plan,
            format,
            goal,
            lock,
            lock_timeout,
        } => commands::graph::run(&plan, format, goal, lock.then_some(lock_timeout)),
        Command::Apply {
            plan,
            targets,
            auto_approve,
            allow_replace: _,
            parallelism,
            format,
            lock_timeout,
            retry_deadline,
            no_wait,
        } => commands::apply::run(&commands::apply::ApplyArgs {
            plan: &plan,
            targets: &targets,
            auto_approve,
            parallelism: parallelism.map(usize::from),
            format,
            lock_timeout,
            retry_deadline,
            no_wait,
        }),
        Command::Schema { which, message } => commands::schema::run(which, message.as_deref()),
        Command::Provider {
            command:
                cli::ProviderCommand::Serve {
                    provider: cli::ServeProvider::Sim { world, start_from },
                },
        } => commands::plugin::serve_sim(&world, start_from.as_deref()),
        Command::Provider {
            command:
                cli::ProviderCommand::Test {
                    plan,
                    timeout,
                    command,
                },
        } => commands::plugin::test(plan.as_deref(), timeout, &command),
        Command::Approve {
            address,
            plan,
            lock_timeout,
        } => commands::approve::run(&plan, &address, lock_timeout),
        Command::Plan {
            plan,
            format,
            detailed_exitcode,
            targets,
            out,
            refresh_only,
            allow_replace: _,
            parallelism,
            lock,
            lock_timeout,
        } => commands::plan::run(&commands::plan::PlanArgs {
            plan: &plan,
            format,
            detailed_exitcode,
            targets: &targets,
            out: out.as_deref(),
            refresh_only,
            parallelism: parallelism.map(usize::from),
            lock: lock.then_some(lock_timeout),
        }),
        Command::Show { saved, format } => commands::show::run(&saved, format),
        Command::State { plan, command } => commands::state::run(&plan, command),
        Command::Sim {
            command: cli::SimCommand::Init { plan, force, from },
        } => commands::sim::init(&plan, force, from.as_deref()),
        Command::Sim {
            command:
                cli::SimCommand::Serve {
                    world,
                    listen,
                    cert_out,
                    page_size,
                    retry_after,
                    lro_headers,
                    token_lifetime,
                    throttle_every,
                    subscription,
                    resource_group,
                    vault,
                },
        } => commands::sim::serve(lifeboat_sim_serve::Config {
            listen,
            cert_out,
            page_size,
            retry_after,
            lro_headers,
            token_lifetime: std::time::Duration::from_secs(token_lifetime),
            throttle_every,
            vault: lifeboat_sim_serve::Vault {
                subscription,
                resource_group,
                name: vault,
            },
            ..lifeboat_sim_serve::Config::new(world)
        }),
        Command::Sim {
            command:
                cli::SimCommand::Generate {
                    machines,
                    groups,
                    master_targets,
                    boot_groups,
                    seed,
                    link_gbps,
                    out,
                    force,
                },
        } => commands::sim::generate(&commands::sim::Generate {
            link_gbps,
            shape: lifeboat_engine::generate::EstateShape {
                machines,
                groups,
                master_targets,
                boot_groups,
                seed,
            },
            out: &out,
            force,
        }),
    };
    // A plugin the command did not close (it ended on an error) does not outlive lifeboat.
    lifeboat_provider_plugin::stop_all(std::time::Duration::from_secs(2));
    // Output lost to a failing stdout (not a reader that stopped early) is a failed command.
    if output::failed() {
        return std::process::ExitCode::from(commands::Exit::Error as u8);
    }
    std::process::ExitCode::from(exit as u8)
}
