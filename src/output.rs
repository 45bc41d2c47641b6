//! Standard output for every command. A reader that stops early (`lifeboat state list | head
//! -1`, a pager quit before the end) closes the pipe; `println!` would panic with exit 101.
//! Writes go through [`write`] instead: after a broken pipe the rest of the output is dropped
//! quietly and the command ends with its own exit code; any other write error is reported once
//! and makes the exit code 1.

use std::fmt;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once stdout cannot take more output; later writes are skipped.
static CLOSED: AtomicBool = AtomicBool::new(false);
/// Set when stdout failed for another reason than a closed reader (a full disk).
static FAILED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout (used by [`out!`] and [`outln!`]).
pub fn write(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_fmt(args) {
        closed(&error);
    }
}

/// Flushes stdout, for a prompt without a newline.
pub fn flush() {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if let Err(error) = std::io::stdout().flush() {
        closed(&error);
    }
}

/// Records a failed write to stdout: quietly for a closed pipe, once on stderr otherwise.
pub fn closed(error: &std::io::Error) {
    CLOSED.store(true, Ordering::Relaxed);
    if error.kind() != std::io::ErrorKind::BrokenPipe && !FAILED.swap(true, Ordering::Relaxed) {
        eprintln!("error: cannot write to standard output: {error}");
    }
}

/// Whether some output was lost for another reason than a reader that stopped reading.
pub fn failed() -> bool {
    FAILED.load(Ordering::Relaxed)
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write(format_args!($($arg)*))
    };
}

/// `println!` that survives a closed stdout.
macro_rules! outln {
    () => {
        $crate::output::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
