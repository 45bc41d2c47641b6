//! Reading input files with a size cap: plans, worlds, state files, saved plans and standard
//! input all come through here.
//!
//! A plan under review may name any path, and a wrong path may be a device that never ends
//! (`/dev/zero`) or a file far larger than any estate. Reading stops one byte past the cap,
//! so memory stays bounded whatever the path names, and only regular files are opened at all
//! (opening a FIFO would block, and a device is never a lifeboat file).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The largest plan, world, state or saved plan lifeboat reads: 256 MiB. A 100,000-machine
/// plan is about 20 MB and its world about 60 MB, so real files stay far below it; the cap
/// exists so that a wrong path fails fast instead of eating the runner's memory.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Reads a whole regular file of at most `cap` bytes.
///
/// A directory, device, FIFO or socket is refused before it is opened; a file larger than the
/// cap is refused from its size, and a file that grows while it is read (or reports no size,
/// as `/proc` files do) is read only up to one byte past the cap.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    // `metadata` follows symlinks: what counts is the file that would be read.
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(not_regular());
    }
    if metadata.len() > cap {
        return Err(too_large(cap));
    }
    let file = File::open(path)?;
    // The path could have been replaced between the check and the open; the open file is
    // what is read, so check it again.
    let opened = file.metadata()?;
    if !opened.is_file() {
        return Err(not_regular());
    }
    let capacity = usize::try_from(opened.len().min(cap)).unwrap_or(0);
    read_capped_from(file, cap, capacity)
}

/// Reads a stream (standard input) of at most `cap` bytes; `capacity` is a size hint.
pub fn read_capped_from(reader: impl Read, cap: u64, capacity: usize) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(capacity);
    reader.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(too_large(cap));
    }
    Ok(bytes)
}

/// Whether an error came from [`read_capped`]'s refusal of a file that is too large or not a
/// regular file (as opposed to the operating system's errors).
pub fn is_refusal(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::FileTooLarge | io::ErrorKind::InvalidInput
    )
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file (a directory, device, FIFO or socket is never read)",
    )
}

fn too_large(cap: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than the {} MiB limit for lifeboat files", cap >> 20),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_cap_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("writes");
        assert_eq!(read_capped(&path, 10).expect("reads"), b"0123456789");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_by_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").expect("writes");
        let error = read_capped(&path, 9).expect_err("too large");
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert!(is_refusal(&error));
    }

    #[test]
    fn a_stream_stops_one_byte_past_the_cap() {
        // An endless stream: reading it whole would never return.
        let endless = io::repeat(b'x');
        let error = read_capped_from(endless, 1024, 0).expect_err("too large");
        assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(
            read_capped_from(&b"abc"[..], 3, 0).expect("fits"),
            b"abc".to_vec()
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_directories_are_not_read() {
        for path in ["/dev/zero", "/dev/null", "/"] {
            let error = read_capped(Path::new(path), MAX_INPUT_BYTES).expect_err(path);
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{path}");
        }
    }
}
