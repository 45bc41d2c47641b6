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
    /// Print a JSON Schema.
    Schema {
        #[arg(value_enum)]
        which: SchemaKind,
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
    Markdown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The plan file.
    Plan,
    /// The report of `lifeboat diff --format json`.
    Diff,
}
