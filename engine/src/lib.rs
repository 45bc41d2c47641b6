//! lifeboat-engine: the plan model, validation, planning and apply for disaster-recovery
//! failback. See the repository README for the code map and the invariants.
//!
//! Architecture invariant: the engine never prints and never touches a terminal; it returns
//! values (diagnostics, plans, events) that the CLI renders. It knows no provider by name.

pub mod address;
pub mod apply;
pub mod assign;
pub mod diagnostic;
pub mod diff;
pub mod generate;
pub mod input;
pub mod load;
pub mod model;
pub mod ops;
pub mod paths;
pub mod planner;
pub mod preflight;
pub mod provider;
pub mod saved;
pub mod schedule;
pub mod schema;
pub mod source;
pub mod span;
pub mod state;
pub mod steps;
pub mod validate;

pub use diagnostic::{Diagnostic, Severity};
pub use model::Plan;
pub use source::SourceFile;
pub use span::{Span, Spanned};
