//! The engine's operations as a library: what the commands do between the CLI's parsing and
//! its rendering, over a provider and a state backend, returning typed results and emitting
//! typed events.
//!
//! - [`session`]: lock and read the state, refresh the facts, validate again with the master
//!   targets machines replicate through today;
//! - [`assemble`]: the one plan assembly (`plan`, `plan --refresh-only`, `apply`, saved plans);
//! - [`reconcile`]: resolve what a previous run left pending, by operation id;
//! - [`push`]: `state push`, a state written to a backend only over an older one of its lineage;
//! - [`run`]: `apply` itself, with [`journal`]: the state as the executor's write-ahead journal
//!   (group-committed deltas) and the per-operation preflight re-check.
//!
//! - [`check`]: `validate`: the plan's rules and where the files it names may be.

pub mod approve;
pub mod assemble;
pub mod check;
pub mod journal;
pub mod push;
pub mod reconcile;
pub mod run;
pub mod session;

pub use approve::{ApproveError, Approved, approve};
pub use assemble::{
    CycleError, PlanError, Planned, TargetError, graph, plan, refresh_only, same_changes, schedule,
};
pub use check::validate;
pub use journal::{Recheck, StateJournal};
pub use push::{PushError, Pushed, push};
pub use reconcile::{ReconcileError, Reconciled, reconcile};
pub use run::{ApplyError, ApplyInput, apply};
