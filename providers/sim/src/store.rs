//! Reading and writing the world file safely.
//!
//! Every change is one transaction: take the process-wide async mutex of this world (so the
//! tasks of one lifeboat process queue instead of blocking threads), then an exclusive file
//! lock on `WORLD.lock` (so two processes never interleave a read-modify-write), read, change,
//! and record the change.
//!
//! Changes are recorded in a journal beside the world (`WORLD.journal`): one JSON record per
//! line with what a group of transactions changed (the history entries appended, the
//! machines they touched and the objects those refer to, the running operations and faults),
//! flushed to disk before any caller learns its result. Rewriting the whole world per change
//! cost time in proportion to the world, which made an apply of many short operations
//! quadratic; a record costs in proportion to the change. The journal's first line names the
//! world it continues by the SHA-256 of the world file, so a journal left beside a world that
//! was since rewritten (by `store::write`, or by hand) is recognised and ignored. A record
//! cut short by a crash mid-append is the journal's last line and is ignored too: nobody was
//! told it was written. The journal is folded into the world file (compaction: the world
//! written whole, atomically, then the journal removed) when it grows past the world's own
//! size, when a provider opens the world, and when it is closed, so between runs the world
//! file alone is the readable truth.
//!
//! The transactions of one process are committed in groups ([`Gate`]): whoever holds the
//! mutex runs every transaction queued by then and appends one record for all of them, and
//! each caller learns its result only once that record is on disk.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use lifeboat_engine::SourceFile;
use lifeboat_engine::diagnostic::Diagnostic;
use lifeboat_engine::model::Timestamp;
use lifeboat_engine::state::local::{remove_stale_temps, write_atomically};

use serde::{Deserialize, Serialize};

use crate::world::{
    self, Datastore, EsxiHost, Fault, HistoryEntry, Machine, MasterTarget, ProcessServer,
    RunningOperation, World,
};

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
    #[error("the world's journal `{path}` is unusable: {reason}; it was left untouched")]
    Journal { path: PathBuf, reason: String },
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

/// Reads and parses a world file, with the changes its journal holds.
pub fn read(path: &Path) -> Result<World, WorldError> {
    if !journal_path(path).exists() {
        // Without a journal the file is the whole world, and it is only ever replaced whole,
        // so it can be read without the lock (and without creating a lock file beside a
        // world that nobody writes, such as a committed example).
        return read_file(path);
    }
    let _lock = lock(path)?;
    let mut cache = ParsedCache::default();
    load(path, &mut cache)?;
    cache.world.take().ok_or_else(|| {
        WorldError::Serialise("the parsed world went missing from the cache".to_string())
    })
}

/// Reads and parses the world file alone.
fn read_file(path: &Path) -> Result<World, WorldError> {
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
/// new one, never half of either. The world replaces whatever the journal held.
pub fn write(path: &Path, world: &World) -> Result<String, WorldError> {
    let _lock = lock(path)?;
    write_locked(path, world)
}

/// [`write`] by a caller that holds the lock.
fn write_locked(path: &Path, world: &World) -> Result<String, WorldError> {
    let text = world::to_yaml(world)?;
    write_atomically(path, text.as_bytes()).map_err(|source| WorldError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    // The world now holds everything the journal did; a journal that survives a crash here
    // names the previous world's digest and is ignored.
    match std::fs::remove_file(journal_path(path)) {
        Ok(()) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(text),
        Err(source) => Err(WorldError::Write {
            path: journal_path(path),
            source,
        }),
    }
}

/// The journal beside a world: `world.yaml` → `world.yaml.journal`.
pub fn journal_path(path: &Path) -> PathBuf {
    with_suffix(path, ".journal")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The lock file beside a world: `world.yaml` → `world.yaml.lock`.
pub fn lock_path(path: &Path) -> PathBuf {
    with_suffix(path, ".lock")
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

/// Commits one group at time `now`: under the file lock, `before` runs first (settling what
/// has finished), then every transaction in queue order, on the cached world; then one record
/// of what changed is appended to the journal. Each transaction is told the outcome of that
/// append; a group that could not be read is refused as a whole.
pub(crate) fn commit_group(
    path: &Path,
    cache: &mut ParsedCache,
    now: Timestamp,
    before: impl FnOnce(&mut World, Timestamp),
    mut group: Vec<Box<dyn Transaction>>,
) {
    let outcome = (|| {
        let _lock = lock(path)?;
        let world = load(path, cache)?;
        let mark = Mark::of(world);
        before(world, now);
        for transaction in &mut group {
            transaction.apply(world, now);
        }
        let record = mark.record(world);
        if record.is_empty() {
            return Ok(());
        }
        if let Err(error) = append(path, cache, &record) {
            // The world in memory is ahead of the disk: forget it, so the next transaction
            // reads what is really there.
            *cache = ParsedCache::default();
            return Err(error);
        }
        if cache.journal_len > cache.world_len.saturating_mul(2).max(COMPACT_AT) {
            // The records are durable already; a compaction that fails is tried again later.
            let _ = compact_locked(path, cache);
        }
        Ok(())
    })();
    for transaction in group {
        transaction.finish(match &outcome {
            Ok(()) => Ok(()),
            Err(error) => Err(error.duplicate()),
        });
    }
}

/// The journal is folded into the world once it is larger than this and than twice the world.
const COMPACT_AT: u64 = 4 << 20;

/// Folds the journal into the world file, when there is one. Takes the lock.
pub(crate) fn compact(path: &Path, cache: &mut ParsedCache) -> Result<(), WorldError> {
    let _lock = lock(path)?;
    load(path, cache)?;
    if journal_path(path).exists() {
        compact_locked(path, cache)?;
    }
    Ok(())
}

/// Writes the cached world (which [`load`] just brought up to date) whole, removing the
/// journal.
fn compact_locked(path: &Path, cache: &mut ParsedCache) -> Result<(), WorldError> {
    let Some(world) = &cache.world else {
        return Ok(());
    };
    let text = write_locked(path, world)?;
    let metadata = std::fs::metadata(path).map_err(|source| WorldError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    cache.file = Some(FileId::of(&metadata));
    cache.digest = lifeboat_engine::saved::sha256_hex(text.as_bytes());
    cache.world_len = metadata.len();
    cache.journal_len = 0;
    cache.journal_stale = false;
    cache.folded = false;
    Ok(())
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
            Self::Journal { path, reason } => Self::Journal {
                path: path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

/// The last world a provider read or wrote, with how far it has read the journal.
///
/// Every transaction and every read must see what other processes wrote, so each looks at
/// the files under the lock; but parsing a large world costs far more than looking. While the
/// world file is the one this cache parsed (same inode, size and modification time) and the
/// journal has grown by nothing, the cached world is current; when the journal grew, only the
/// new records are read. Any rewrite of the world file changes its identity, so the cache can
/// never hide a write.
#[derive(Debug, Default)]
pub(crate) struct ParsedCache {
    world: Option<World>,
    /// The world file `world` was parsed from.
    file: Option<FileId>,
    /// The SHA-256 of that file: a journal continues the world whose digest it names.
    digest: String,
    /// Size of the world file, for the compaction threshold.
    world_len: u64,
    /// Bytes of the journal folded into `world`: the end of its last whole record.
    journal_len: u64,
    /// The journal continues another world (it outlived a rewrite): it is ignored, and the
    /// next append starts it over.
    journal_stale: bool,
    /// Whether records of the journal were folded into `world`.
    folded: bool,
}

impl ParsedCache {
    /// The world as last read or written, if any.
    pub(crate) fn world(&self) -> Option<&World> {
        self.world.as_ref()
    }
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl FileId {
    fn of(metadata: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt as _;
        Self {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            #[cfg(unix)]
            inode: (metadata.dev(), metadata.ino()),
        }
    }
}

/// One line of the journal. The first line of a journal names the world it continues; each
/// other holds what one group of transactions changed: objects whole, history appended.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    world_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed_over_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    faults: Option<Vec<Fault>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    running: Option<Vec<RunningOperation>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    history: Vec<HistoryEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    machines: BTreeMap<String, Machine>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    master_targets: BTreeMap<String, MasterTarget>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    datastores: BTreeMap<String, Datastore>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    esxi_hosts: BTreeMap<String, EsxiHost>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    process_servers: BTreeMap<String, ProcessServer>,
}

impl Record {
    fn is_empty(&self) -> bool {
        self.failed_over_at.is_none()
            && self.faults.is_none()
            && self.running.is_none()
            && self.history.is_empty()
            && self.machines.is_empty()
    }

    fn apply(self, world: &mut World) {
        if let Some(at) = self.failed_over_at {
            world.failed_over_at = Some(at);
        }
        if let Some(faults) = self.faults {
            world.faults = faults;
        }
        if let Some(running) = self.running {
            world.running = running;
        }
        world.history.extend(self.history);
        world.machines.extend(self.machines);
        world.master_targets.extend(self.master_targets);
        world.datastores.extend(self.datastores);
        world.esxi_hosts.extend(self.esxi_hosts);
        world.process_servers.extend(self.process_servers);
    }
}

/// The parts of a world a group may change, as they were before it ran.
struct Mark {
    history: usize,
    failed_over_at: Option<Timestamp>,
    faults: Vec<Fault>,
    running: Vec<RunningOperation>,
}

impl Mark {
    fn of(world: &World) -> Self {
        Self {
            history: world.history.len(),
            failed_over_at: world.failed_over_at,
            faults: world.faults.clone(),
            running: world.running.clone(),
        }
    }

    /// What changed since the mark. The simulator changes a machine only by starting, ending
    /// or refusing an operation on it, and each of those appends a history entry naming the
    /// machine; the operation changes only the machine and the objects it refers to (its
    /// master target and that one's host, its datastores, its VM's host, its process server).
    /// So those, for the machines of the new entries, are all that can have changed.
    fn record(self, world: &World) -> Record {
        let mut record = Record {
            history: world.history[self.history.min(world.history.len())..].to_vec(),
            ..Record::default()
        };
        if world.failed_over_at != self.failed_over_at {
            record.failed_over_at = world.failed_over_at;
        }
        if world.faults != self.faults {
            record.faults = Some(world.faults.clone());
        }
        if world.running != self.running {
            record.running = Some(world.running.clone());
        }
        for entry in &record.history {
            let Some(machine) = world.machines.get(&entry.machine) else {
                continue;
            };
            record
                .machines
                .insert(entry.machine.clone(), machine.clone());
            let settings = &machine.settings;
            if let Some(name) = &settings.master_target
                && let Some(mt) = world.master_targets.get(name)
            {
                if let Some(host) = world.esxi_hosts.get(&mt.esxi_host.value) {
                    record
                        .esxi_hosts
                        .insert(mt.esxi_host.value.clone(), host.clone());
                }
                record.master_targets.insert(name.clone(), mt.clone());
            }
            if let Some(name) = &settings.process_server
                && let Some(ps) = world.process_servers.get(name)
            {
                record.process_servers.insert(name.clone(), ps.clone());
            }
            let vm = &machine.vmware_vm;
            let datastores = [
                settings.datastore.as_ref(),
                vm.datastore.as_ref().map(|d| &d.value),
            ];
            for name in datastores.into_iter().flatten() {
                if let Some(ds) = world.datastores.get(name) {
                    record.datastores.insert(name.clone(), ds.clone());
                }
            }
            if let Some(host) = &vm.esxi_host
                && let Some(found) = world.esxi_hosts.get(&host.value)
            {
                record.esxi_hosts.insert(host.value.clone(), found.clone());
            }
        }
        record
    }
}

/// Brings the cached world up to date with the files and lends it out; the caller holds the
/// file lock. The world is parsed only when the world file changed; records other processes
/// appended to the journal are folded in.
pub(crate) fn load<'c>(
    path: &Path,
    cache: &'c mut ParsedCache,
) -> Result<&'c mut World, WorldError> {
    let read_error = |source| WorldError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Twice at most: a journal that was cut back under a world that stayed the same (someone
    // removed it) means the cached world holds records that are gone; it is read afresh.
    for _ in 0..2 {
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        let id = FileId::of(&metadata);
        if cache.world.is_none() || cache.file.as_ref() != Some(&id) {
            *cache = ParsedCache::default();
            let bytes =
                lifeboat_engine::input::read_capped(path, lifeboat_engine::input::MAX_INPUT_BYTES)
                    .map_err(read_error)?;
            let digest = lifeboat_engine::saved::sha256_hex(&bytes);
            let file = SourceFile::from_bytes(path, bytes).map_err(read_error)?;
            let world = world::parse(&file).map_err(|diagnostics| WorldError::Invalid {
                file: Box::new(file),
                diagnostics,
            })?;
            cache.world_len = metadata.len();
            cache.file = Some(id);
            cache.digest = digest;
            cache.world = Some(world);
        }
        if fold_journal(path, cache)? {
            break;
        }
        *cache = ParsedCache::default();
    }
    cache.world.as_mut().ok_or_else(|| {
        WorldError::Serialise("the parsed world went missing from the cache".to_string())
    })
}

/// Folds the records appended to the journal since the cache last looked. `false`: the
/// cached world holds records the journal no longer has, so it must be read afresh.
fn fold_journal(path: &Path, cache: &mut ParsedCache) -> Result<bool, WorldError> {
    let journal = journal_path(path);
    let read_error = |source| WorldError::Read {
        path: journal.clone(),
        source,
    };
    let len = match std::fs::metadata(&journal) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
        Err(source) => return Err(read_error(source)),
    };
    if len == cache.journal_len {
        return Ok(true);
    }
    if len < cache.journal_len || cache.journal_stale {
        if cache.folded {
            return Ok(false);
        }
        // A stale journal was started over by another process, or an ignored one removed:
        // read it from the start.
        cache.journal_len = 0;
        cache.journal_stale = false;
        if len == 0 {
            return Ok(true);
        }
    }
    let mut file = File::open(&journal).map_err(read_error)?;
    file.seek(SeekFrom::Start(cache.journal_len))
        .map_err(read_error)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(read_error)?;
    let mut lines = bytes.split_inclusive(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        let record = match serde_json::from_slice::<Record>(line) {
            Ok(record) if line.ends_with(b"\n") => record,
            // A record cut short by a crash mid-append: nobody was told it was written.
            _ if last => break,
            Ok(_) | Err(_) => {
                return Err(WorldError::Journal {
                    path: journal.clone(),
                    reason: format!(
                        "a record at byte {} is not a world record",
                        cache.journal_len
                    ),
                });
            }
        };
        let first = cache.journal_len == 0;
        cache.journal_len += line.len() as u64;
        if first {
            if record.world_sha256.as_deref() != Some(cache.digest.as_str()) {
                // This journal continues another version of the world file: ignore it.
                cache.journal_stale = true;
                cache.journal_len = len;
                return Ok(true);
            }
            continue;
        }
        if let Some(world) = cache.world.as_mut() {
            record.apply(world);
            cache.folded = true;
        }
    }
    Ok(true)
}

/// Appends one record to the journal and flushes it to disk; the caller holds the lock and has
/// just [`load`]ed, so `cache.journal_len` is the end of the journal's last whole record (a
/// torn record after it is cut off first).
fn append(path: &Path, cache: &mut ParsedCache, record: &Record) -> Result<(), WorldError> {
    let journal = journal_path(path);
    let write_error = |source| WorldError::Write {
        path: journal.clone(),
        source,
    };
    let mut bytes = Vec::new();
    let start = if cache.journal_stale {
        0
    } else {
        cache.journal_len
    };
    if start == 0 {
        let header = Record {
            world_sha256: Some(cache.digest.clone()),
            ..Record::default()
        };
        serde_json::to_writer(&mut bytes, &header)
            .map_err(|e| WorldError::Serialise(e.to_string()))?;
        bytes.push(b'\n');
    }
    serde_json::to_writer(&mut bytes, record).map_err(|e| WorldError::Serialise(e.to_string()))?;
    bytes.push(b'\n');
    let created = !journal.exists();
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&journal)
        .map_err(write_error)?;
    file.set_len(start).map_err(write_error)?;
    file.seek(SeekFrom::Start(start)).map_err(write_error)?;
    file.write_all(&bytes).map_err(write_error)?;
    file.sync_data().map_err(write_error)?;
    #[cfg(unix)]
    if created
        && let Some(dir) = journal.parent()
        && let Ok(dir) = File::open(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        })
    {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = created;
    cache.journal_len = start + bytes.len() as u64;
    cache.journal_stale = false;
    cache.folded = true;
    Ok(())
}
