//! Rendering engine values for people and machines. The engine never prints; this does.

pub mod diagnostics;
pub mod diff;
pub mod graph;
pub mod plan;

/// "1 machine", "2 machines": every count in a sentence agrees with its noun.
pub fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Whether stdout may be coloured: a terminal, and `NO_COLOR` unset.
pub fn stdout_colour() -> bool {
    diagnostics::use_colour(std::io::IsTerminal::is_terminal(&std::io::stdout()))
}
