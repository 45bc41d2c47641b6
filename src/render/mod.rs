//! Rendering engine values for people and machines. The engine never prints; this does.

pub mod diagnostics;
pub mod diff;
pub mod graph;
pub mod plan;
