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
    /// Allow the files a plan names (world, state) to be in DIR, outside the plan's
    /// repository; repeatable. `LIFEBOAT_ALLOWED_PATHS` (separated by `:`) adds more. A plan
    /// can never allow itself a path.
    #[arg(long = "allow-path", value_name = "DIR", global = true)]
    pub allow_paths: Vec<PathBuf>,
    /// Allow a `plugin` provider's executable to run (an absolute path, or a name found on
    /// `PATH`); repeatable. `LIFEBOAT_ALLOWED_PLUGINS` (separated by `:`) adds more. A plugin
    /// runs at `plan` too, so a plan can never allow itself one.
    #[arg(long = "allow-plugin", value_name = "PATH", global = true)]
    pub allow_plugins: Vec<PathBuf>,
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
        /// Limit the plan to an address (`machine.NAME`, `group.NAME`, `boot_group.NAME`,
        /// `master_target.NAME`) and what it depends on; repeatable.
        #[arg(long = "target", value_name = "ADDR")]
        targets: Vec<String>,
        /// Save the plan to FILE for review (`lifeboat show FILE`) and for `apply FILE`.
        #[arg(long, value_name = "FILE", conflicts_with = "refresh_only")]
        out: Option<PathBuf>,
        /// Only compare the state with both sites and report the drift; plan no changes.
        #[arg(long)]
        refresh_only: bool,
        /// Removed: refused with an explanation (ASR cannot replace a reprotected machine).
        #[arg(long, hide = true)]
        allow_replace: bool,
        /// Record in the saved plan how many operations `apply` may run at once (default 10).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        parallelism: Option<u16>,
        /// `--lock=false`: read the state without its lock, e.g. while an apply runs. The plan
        /// is then only as current as the state it read; a missing state is not created.
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
              num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        lock: bool,
        /// How long to wait for the state lock, e.g. `30s`, `5m`; by default fail at once.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Carry the plan out: reprotect, fail back, commit, protect again, as the DAG allows.
    Apply {
        /// A plan file, or a saved plan from `plan --out` (applied as saved, without asking).
        #[arg(default_value = "lifeboat.yaml", value_name = "PLAN")]
        plan: PathBuf,
        /// Limit the apply to an address (`machine.NAME`, `group.NAME`, `boot_group.NAME`,
        /// `master_target.NAME`) and what it depends on; repeatable. A saved plan keeps its own.
        #[arg(long = "target", value_name = "ADDR")]
        targets: Vec<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        auto_approve: bool,
        /// Removed: refused with an explanation (ASR cannot replace a reprotected machine).
        #[arg(long, hide = true)]
        allow_replace: bool,
        /// Operations in flight at once [default: the saved plan's, else 10].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        parallelism: Option<u16>,
        /// `json`: newline-delimited events, one per line.
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
        format: DiagnosticFormat,
        /// How long to wait for the state lock, e.g. `30s`, `5m`; by default fail at once.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
        /// How long to keep retrying an operation's transient errors (the agent registering,
        /// throttling, server errors) before giving up on it.
        #[arg(long, value_name = "DURATION", default_value = "20m", value_parser = parse_duration)]
        retry_deadline: std::time::Duration,
        /// Do not wait for the maintenance window to open: run what may run now (reprotects),
        /// then stop with exit code 4; a later apply continues.
        #[arg(long)]
        no_wait: bool,
    },
    /// Pass a manual gate an apply stopped at: records who and when in the state, so the
    /// next `apply` continues after it.
    Approve {
        /// `boot_group.NAME`: the boot group whose gate to pass.
        #[arg(value_name = "ADDR")]
        address: String,
        /// The plan file whose state to use.
        #[arg(long, default_value = "lifeboat.yaml")]
        plan: PathBuf,
        /// How long to wait for the state lock, e.g. `30s`, `5m`; by default fail at once.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Show a saved plan (`plan --out FILE`) in any format.
    Show {
        /// The saved plan.
        saved: PathBuf,
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        format: OutputFormat,
    },
    /// Inspect the state, move it between backends (`pull`, `push`), or remove a stale lock.
    State {
        /// The plan file whose state to use (its `state` setting says where the state is).
        #[arg(long, global = true, default_value = "lifeboat.yaml")]
        plan: PathBuf,
        #[command(subcommand)]
        command: StateCommand,
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
        /// Draw the order towards this goal instead of the plan's `goal:` (`reprotected`,
        /// `failed-back`, `committed`, `protected`), e.g. the failback order of a plan whose
        /// goal is still `reprotected`.
        #[arg(long, value_name = "GOAL", value_parser = parse_goal)]
        goal: Option<lifeboat_engine::model::Goal>,
        /// `--lock=false`: read the state without its lock, e.g. while an apply runs. The plan
        /// is then only as current as the state it read; a missing state is not created.
        #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
              num_args = 0..=1, require_equals = true, default_missing_value = "true")]
        lock: bool,
        /// How long to wait for the state lock, e.g. `30s`, `5m`; by default fail at once.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
    /// Print a JSON Schema.
    Schema {
        #[arg(value_enum)]
        which: SchemaKind,
        /// With `plugin`: the protocol message (`run.params`, `refresh.result`, …); without
        /// one, the list of messages.
        message: Option<String>,
    },
    /// The plugin protocol: serve a built-in provider as a plugin, or check a plugin.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// Serve a built-in provider as a plugin on stdin and stdout (protocol v1, see
    /// docs/plugin-protocol.md), for `provider: {plugin: {command: [lifeboat, provider, serve, sim, …]}}`.
    Serve {
        #[command(subcommand)]
        provider: ServeProvider,
    },
    /// Run the protocol's conformance cases against a plugin: one line per case, a summary,
    /// exit 1 when any case fails.
    ///
    /// Example: `lifeboat provider test --plan lifeboat.yaml -- ./my-plugin --flag`. With
    /// `--plan`, the kit also reprotects one `failed-over` machine of that plan (point it at a
    /// test estate); without, those cases are skipped.
    Test {
        /// A plan naming the plugin's estate; enables the cases that run an operation.
        #[arg(long, value_name = "PLAN")]
        plan: Option<PathBuf>,
        /// How long the plugin may take to answer a request.
        #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// The plugin's executable and arguments, after `--`. Passed as `config` in
        /// `initialize`: `null`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServeProvider {
    /// The simulated estate of a world file.
    Sim {
        /// The world file, relative to the current directory (a plugin runs in its plan's
        /// directory); it must be inside the repository, like a plan's paths.
        #[arg(long)]
        world: PathBuf,
        /// A starting world copied to `--world` when that does not exist yet.
        #[arg(long, value_name = "WORLD")]
        start_from: Option<PathBuf>,
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
    /// Serve a world as the Azure Site Recovery REST API (and an OAuth token endpoint) over
    /// HTTPS on loopback, to rehearse the `azure` provider without Azure.
    ///
    /// Prints `listening on https://127.0.0.1:PORT` first, then the settings to export, and
    /// runs until interrupted (SIGINT or SIGTERM), then exits 0. See docs/azure.md.
    Serve {
        /// The world file to serve; operations change it as the `sim` provider would.
        #[arg(long)]
        world: PathBuf,
        /// A loopback address; port 0 picks a free port (the first line says which).
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: std::net::SocketAddr,
        /// Where to write the generated certificate (PEM) [default: `<world>.serve.pem`].
        #[arg(long, value_name = "FILE")]
        cert_out: Option<PathBuf>,
        /// Items per page of every list.
        #[arg(long, default_value_t = 100)]
        page_size: usize,
        /// Seconds sent as `Retry-After` with every 202.
        #[arg(long, default_value_t = 1, value_name = "S")]
        retry_after: u64,
        /// Long-running-operation headers of a 202: `both`, `async` (Azure-AsyncOperation),
        /// `location`, or `rotate` (the three in turn).
        #[arg(long, default_value = "both")]
        lro_headers: lifeboat_sim_serve::LroHeaders,
        /// Seconds an access token is valid.
        #[arg(long, default_value_t = 3600, value_name = "SECS")]
        token_lifetime: u64,
        /// Answer every Nth ARM request with 429 Too Many Requests.
        #[arg(long, value_name = "N")]
        throttle_every: Option<u64>,
        #[arg(long, default_value = "00000000-0000-0000-0000-000000000000")]
        subscription: String,
        #[arg(long, default_value = "rg-lifeboat")]
        resource_group: String,
        #[arg(long, default_value = "vault-lifeboat")]
        vault: String,
    },
    /// Write a large, realistic estate (a plan and its world) for benchmarks and rehearsals.
    Generate {
        #[arg(long, default_value_t = 1_000)]
        machines: usize,
        /// Replication groups of equal size; the rest of the machines stay ungrouped.
        #[arg(long, default_value_t = 100)]
        groups: usize,
        #[arg(long, default_value_t = 48)]
        master_targets: usize,
        #[arg(long, default_value_t = 5)]
        boot_groups: usize,
        /// The same seed always gives the same estate, byte for byte.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The link between the sites, in Gbit/s: a machine's reprotect takes as long as its
        /// data needs on it (every disk for alternate-location recovery, a tenth of them as
        /// changed blocks for original-location recovery).
        #[arg(long, default_value_t = 1.0)]
        link_gbps: f64,
        /// The folder for `lifeboat.yaml` and its world (`.lifeboat/world.yaml`).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Replace an existing plan and world there.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Every machine the state knows, with its stage and any pending operation.
    List {
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
        format: DiagnosticFormat,
    },
    /// One machine's state: stage, applied settings, provider ids, pending operation.
    Show {
        /// `machine.NAME`.
        address: String,
        #[arg(long, value_enum, default_value_t = DiagnosticFormat::Human)]
        format: DiagnosticFormat,
    },
    /// Remove a lock left behind by a process that is gone; only with the lock's id. A
    /// remote backend's lease that its holder still renews is not broken.
    Unlock {
        /// The id a locked command printed.
        lock_id: String,
    },
    /// Print the stored state (JSON) from the plan's backend, e.g. to keep a copy.
    Pull,
    /// Write a state file to the plan's backend, under its lock: how a team moves from
    /// `local` to `postgres` or `azure_blob`. Refuses another lineage or an older serial
    /// unless `--force`.
    Push {
        /// The state file, e.g. `.lifeboat/state.json` or the output of `state pull`.
        file: PathBuf,
        /// Replace the stored state even if it is of another lineage or a newer serial.
        #[arg(long)]
        force: bool,
        /// Wait up to this long for the state's lock (e.g. `30s`, `5m`); default: fail at once.
        #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
        lock_timeout: std::time::Duration,
    },
}

/// A goal by the name the plan file uses.
fn parse_goal(text: &str) -> Result<lifeboat_engine::model::Goal, String> {
    use lifeboat_engine::model::Goal;
    [
        Goal::Reprotected,
        Goal::FailedBack,
        Goal::Committed,
        Goal::Protected,
    ]
    .into_iter()
    .find(|goal| goal.as_str() == text)
    .ok_or_else(|| {
        format!(
            "`{text}` is not a goal; use `reprotected`, `failed-back`, `committed` or `protected`"
        )
    })
}

/// `30s`, `5m`, `1h 30m` or an ISO 8601 duration; never negative.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let duration: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("`{text}` is not a duration like `30s` or `5m`: {e}"))?;
    std::time::Duration::try_from(duration)
        .map_err(|_| format!("`{text}` is negative; use a duration like `30s` or `5m`"))
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
    /// The state file (`.lifeboat/state.json`).
    State,
    /// A saved plan (`plan --out FILE`).
    SavedPlan,
    /// A message of the plugin protocol (`lifeboat schema plugin` lists them).
    Plugin,
}
