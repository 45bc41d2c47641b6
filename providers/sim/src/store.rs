//! Reading and writing the world file safely.
//!
//! Every change is one transaction: take the process-wide async mutex of this world (so the
//! tasks of one lifeboat process queue instead of blocking threads), then an exclusive file
//! lock on `WORLD.lock` (so two processes never interleave a read-modify-write), read, change,
//! and write the result to a temporary file in the same directory that is renamed over the
//! world. A reader therefore sees the old world or the new one, never half of either, and a
//! process killed mid-write leaves the old world intact.
//!
//! The transactions of one process are committed in groups ([`Gate`]): whoever holds the
//! mutex runs every transaction queued by then in one read-modify-write, and each caller
//! learns its result only once the write that contains it is on disk. Rewriting the whole file
//! costs time in proportion to the world, so one write per transaction made an apply of many
//! short operations quadratic; grouped, the writes per second are bounded by the write's own
//! cost and concurrent operations share them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use lifeboat_engine::SourceFile;
use lifeboat_engine::diagnostic::Diagnostic;
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::state::local::{remove_stale_temps, write_atomically};

use crate::world::{self, World};

/// Why the world file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error("cannot read the world file `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the world file `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot lock the world file `{path}`: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not a valid world; the diagnostics label the world file.
    #[error("the world file `{}` is invalid: {}", .file.name(), first_message(.diagnostics))]
    Invalid {
        file: Box<SourceFile>,
        diagnostics: Vec<Diagnostic>,
    },
    #[error("cannot serialise the world: {0}")]
    Serialise(String),
}

fn first_message(diagnostics: &[Diagnostic]) -> String {
    let first = diagnostics
        .first()
        .map_or_else(String::new, |d| d.message.clone());
    match diagnostics.len() {
        0 | 1 => first,
        n => format!("{first} (and {} more problems)", n - 1),
    }
}

/// The async mutex of each world file in this process, keyed by its absolute path.
pub(crate) fn gate(path: &Path) -> Arc<Gate> {
    static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<Gate>>>> = OnceLock::new();
    let key = std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let gates = GATES.get_or_init(Default::default);
    // A poisoned map only means another thread panicked while inserting; the map itself is
    // still a valid map of mutexes.
    let mut gates = gates
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    gates.entry(key).or_default().clone()
}

/// Reads and parses a world file.
pub fn read(path: &Path) -> Result<World, WorldError> {
    let file = SourceFile::read(path).map_err(|source| WorldError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    world::parse(&file).map_err(|diagnostics| WorldError::Invalid {
        file: Box::new(file),
        diagnostics,
    })
}

/// Writes a world atomically (see [`write_atomically`]): a reader sees the old world or the
/// new one, never half of either.
pub fn write(path: &Path, world: &World) -> Result<String, WorldError> {
    let text = world::to_yaml(world).map_err(WorldError::Serialise)?;
    write_atomically(path, text.as_bytes()).map_err(|source| WorldError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(text)
}

/// [`write`] under the world's lock, for a world written outside a transaction (created from
/// a starting world, by `sim init` or `sim generate`): every write then holds the lock, which
/// is what lets [`lock`] remove a killed writer's temporary files.
pub fn write_locked(path: &Path, world: &World) -> Result<String, WorldError> {
    let _lock = lock(path)?;
    write(path, world)
}

/// The lock file beside a world: `world.yaml` → `world.yaml.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Holds the exclusive file lock until dropped (closing the file releases it).
pub(crate) struct FileLock(#[allow(dead_code)] File);

pub(crate) fn lock(path: &Path) -> Result<FileLock, WorldError> {
    let lock_path = lock_path(path);
    let lock_error = |source| WorldError::Lock {
        path: lock_path.clone(),
        source,
    };
    // Nothing is created beside a device or directory (`/dev/zero.lock`).
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return Err(WorldError::Read {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a directory, device, FIFO or socket is never read)",
            ),
        });
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(lock_error)?;
    file.lock().map_err(lock_error)?;
    // Every write of the world happens under this lock, so a temporary file of the world
    // found now was left by a writer that was killed.
    remove_stale_temps(path);
    Ok(FileLock(file))
}

/// One transaction waiting for its group: it runs on the world, and then learns whether the
/// write that holds its change succeeded.
pub(crate) trait Transaction: Send {
    fn apply(&mut self, world: &mut World, now: Timestamp);
    fn finish(self: Box<Self>, written: Result<(), WorldError>);
}

/// The process-wide entry to one world: the parsed-world cache, held by the task that is
/// committing a group, and the transactions queued for the next group.
#[derive(Default)]
pub(crate) struct Gate {
    pub(crate) cache: Arc<tokio::sync::Mutex<ParsedCache>>,
    queue: Mutex<Vec<Box<dyn Transaction>>>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate").finish_non_exhaustive()
    }
}

impl Gate {
    pub(crate) fn enqueue(&self, transaction: Box<dyn Transaction>) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(transaction);
    }

    /// Everything queued so far; called by the holder of `cache`.
    pub(crate) fn take(&self) -> Vec<Box<dyn Transaction>> {
        std::mem::take(
            &mut *self
                .queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Commits one group at time `now`: one read-modify-write in which `before` runs first (settling what has
/// finished), then every transaction in queue order. Each transaction is told the outcome of
/// the write; a group that could not be read is refused as a whole.
pub(crate) fn commit_group(
    path: &Path,
    cache: &mut ParsedCache,
    now: Timestamp,
    before: impl FnOnce(&mut World, Timestamp),
    mut group: Vec<Box<dyn Transaction>>,
) {
    let outcome = transact_blocking(path, cache, |world| {
        before(world, now);
        for transaction in &mut group {
            transaction.apply(world, now);
        }
    });
    for transaction in group {
        transaction.finish(match &outcome {
            Ok(()) => Ok(()),
            Err(error) => Err(error.duplicate()),
        });
    }
}

impl WorldError {
    /// The same error for another waiter of a failed group (`io::Error` is not `Clone`).
    fn duplicate(&self) -> Self {
        let io = |source: &std::io::Error| std::io::Error::new(source.kind(), source.to_string());
        match self {
            Self::Read { path, source } => Self::Read {
                path: path.clone(),
                source: io(source),
            },
            Self::Write { path, source } => Self::Write {
                path: path.clone(),
                source: io(source),
            },
            Self::Lock { path, source } => Self::Lock {
                path: path.clone(),
                source: io(source),
            },
            Self::Invalid { file, diagnostics } => Self::Invalid {
                file: file.clone(),
                diagnostics: diagnostics.clone(),
            },
            Self::Serialise(message) => Self::Serialise(message.clone()),
        }
    }
}

/// The last world a provider read or wrote, keyed by the exact bytes of the file.
///
/// Every transaction and every read must see what other processes wrote, so each reads the file
/// (a transaction under the lock; a read without it, since writes replace the file whole and a
/// reader sees one world or the next); but parsing a large world costs far more than reading it. When the bytes are the
/// ones this cache holds, the parsed world is reused. Any change by anyone changes the bytes,
/// so the cache can never hide a write.
#[derive(Debug, Default)]
pub(crate) struct ParsedCache {
    bytes: Vec<u8>,
    world: Option<World>,
}

/// Reads the world through the cache: parsed only when the file's bytes changed, and lent,
/// not copied, to the caller.
pub(crate) fn load<'c>(path: &Path, cache: &'c mut ParsedCache) -> Result<&'c World, WorldError> {
    let bytes = lifeboat_engine::input::read_capped(path, lifeboat_engine::input::MAX_INPUT_BYTES)
        .map_err(|source| WorldError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if cache.world.is_none() || cache.bytes != bytes {
        cache.world = None;
        let file = SourceFile::from_bytes(path, bytes).map_err(|source| WorldError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let world = world::parse(&file).map_err(|diagnostics| WorldError::Invalid {
            file: Box::new(file.clone()),
            diagnostics,
        })?;
        // The text moves into the cache rather than being copied: for a large world it is
        // tens of megabytes.
        cache.bytes = file.into_text().into_bytes();
        cache.world = Some(world);
    }
    cache.world.as_ref().ok_or_else(|| {
        WorldError::Serialise("the parsed world went missing from the cache".to_string())
    })
}

/// One read-modify-write of the world under both locks. The world is written only when the
/// change function changed it; the cache holds the world as read, so it doubles as the
/// "before" to compare with.
pub(crate) fn transact_blocking<R>(
    path: &Path,
    cache: &mut ParsedCache,
    change: impl FnOnce(&mut World) -> R,
) -> Result<R, WorldError> {
    let _lock = lock(path)?;
    let mut world = load(path, cache)?.clone();
    let result = change(&mut world);
    if cache.world.as_ref() != Some(&world) {
        let text = write(path, &world)?;
        cache.bytes = text.into_bytes();
        cache.world = Some(world);
    }
    Ok(result)
}
