pub mod diff;
pub mod schema;
pub mod validate;

/// What a command asks the process to exit with (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    Error = 1,
}
