//! The engine's operations as a library: what `apply` does between the CLI's parsing and its
//! rendering, over a provider and a state backend, returning typed results and emitting typed
//! events.
//!
//! - [`reconcile`]: resolve what a previous run left pending, by operation id;
//! - [`journal`]: the state as the executor's write-ahead journal (group-committed deltas)
//!   and the per-operation preflight re-check.

pub mod journal;
pub mod reconcile;

pub use journal::{Recheck, StateJournal};
pub use reconcile::{ReconcileError, Reconciled, reconcile};
