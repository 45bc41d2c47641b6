//! The engine's operations as a library: what the commands do between the CLI's parsing and
//! its rendering, over a provider and a state backend, returning typed results and emitting
//! typed events.
//!
//! - [`session`]: lock and read the state, refresh the facts, validate again with the master
//!   targets machines replicate through today;
//! - [`assemble`]: the one plan assembly (`plan`, `plan --refresh-only`, `apply`, saved plans);
//! - [`reconcile`]: resolve what a previous run left pending, by operation id;
//! - [`run`]: `apply` itself, with [`journal`]: the state as the executor's write-ahead journal
//!   (group-committed deltas) and the per-operation preflight re-check.
//!
//! `validate` is [`crate::load::load_plan`] then [`crate::validate::validate`].

pub mod approve;
pub mod assemble;
pub mod journal;
pub mod reconcile;
pub mod run;
pub mod session;

pub use approve::{ApproveError, Approved, approve};
pub use assemble::{Planned, TargetError, plan, refresh_only, same_changes, schedule};
pub use journal::{Recheck, StateJournal};
pub use reconcile::{ReconcileError, Reconciled, reconcile};
pub use run::{ApplyError, ApplyInput, apply};
