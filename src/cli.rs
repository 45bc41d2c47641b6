//! The command line (DESIGN.md §6). Flag names are a public contract.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "lifeboat",
    version,
    about = "Declarative disaster-recovery failback from Azure to VMware"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a plan file against every static rule, without touching any site.
    Validate {
        /// The plan file.
        #[arg(default_value = "lifeboat.yaml")]
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
        format: DiagnosticFormat,
    },
    /// Refresh the facts of both sites and run every preflight check (a first version: it
    /// reports, it does not yet plan changes).
    Plan {
        /// The plan file.
        #[arg(default_value = "lifeboat.yaml")]
        plan: PathBuf,
    },
    /// Work with the simulated estate of the `sim` provider.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Print a JSON Schema.
    Schema {
        #[arg(value_enum)]
        which: SchemaKind,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Write a world consistent with the plan: every machine `failed-over`, every fact healthy.
    Init {
        /// The plan file; the world is written where its `provider.sim.world` points.
        #[arg(default_value = "lifeboat.yaml")]
        plan: PathBuf,
        /// Overwrite an existing world (its history is lost).
        #[arg(long)]
        force: bool,
        /// Copy this starting world instead of generating one from the plan.
        #[arg(long, value_name = "WORLD")]
        from: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagnosticFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The plan file.
    Plan,
    /// The `sim` provider's world file.
    World,
}
