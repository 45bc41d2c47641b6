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
    /// Refresh both sites, run the preflight checks and show the changes `apply` would make.
    Plan {
        /// The plan file.
        #[arg(default_value = "lifeboat.yaml")]
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
        /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on errors.
        #[arg(long)]
        detailed_exitcode: bool,
        /// Limit the plan to an address (`machine.NAME`, `group.NAME`, `master_target.NAME`)
        /// and what it depends on; repeatable.
        #[arg(long = "target", value_name = "ADDR")]
        targets: Vec<String>,
    },
    /// Work with the simulated estate of the `sim` provider.
    Sim {
        #[command(subcommand)]
        command: SimCommand,
    },
    /// Compare two plan files by meaning, and say what each difference causes at the next apply.
    ///
    /// Exits 0 whether or not the plans differ, 1 when either file is unreadable or invalid.
    /// Either file may be `-` for standard input, e.g.
    /// `git show main:lifeboat.yaml | lifeboat diff - lifeboat.yaml`.
    Diff {
        /// The plan before the change (e.g. from `git show main:lifeboat.yaml > /tmp/old.yaml`).
        old: PathBuf,
        /// The plan after the change.
        new: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Print the operation graph `apply` would walk (Mermaid renders in pull requests).
    Graph {
        /// The plan file.
        #[arg(default_value = "lifeboat.yaml")]
        plan: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
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

/// Output of commands that report changes: for people, for machines, for pull requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Human,
    Json,
    /// For pull-request comments: summary first, never over 65,000 characters.
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz.
    Dot,
    Mermaid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The plan file.
    Plan,
    /// The output of `plan --format json` and of saved plans.
    PlanOutput,
    /// The `sim` provider's world file.
    World,
    /// The report of `lifeboat diff --format json`.
    Diff,
}
