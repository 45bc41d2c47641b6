pub mod apply;
pub mod approve;
pub mod diff;
pub mod graph;
pub mod paths;
pub mod pipeline;
pub mod plan;
pub mod plugin;
pub mod provider;
pub mod schema;
pub mod show;
pub mod sim;
pub mod state;
pub mod validate;

/// What a command asks the process to exit with (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Error = 1,
    /// Success with changes, under `--detailed-exitcode`.
    Changes = 2,
    /// `apply` stopped at a manual gate: `lifeboat approve boot_group.NAME`, then apply again.
    Gate = 3,
    /// `apply --no-wait` stopped before the maintenance window opened; apply again inside it.
    WindowNotOpen = 4,
}
