//! The local state backend: one JSON file (`state.local.path`, default
//! `.lifeboat/state.json` beside the plan).
//!
//! Writes go to a temporary file in the same directory, are flushed to disk, then renamed over
//! the state: a rename within one directory is atomic, so a crash leaves the old document or
//! the new one, never half of one.
//!
//! Between full writes, `apply` appends each group of changes to a journal beside the state
//! (`state.json.journal`, one JSON record per line, each flushed to disk before the changes'
//! callers go on), so a change costs in proportion to itself and not to the estate. Reading
//! the state folds the journal in; a record cut short by a crash mid-append is the last line
//! and is ignored (its callers never learned it was written). A full write folds everything:
//! the state is written atomically, then the journal removed; a journal left behind by a crash
//! between the two holds only records the state already has, which reading skips by serial.
//!
//! The lock is an OS lock (`File::try_lock`) on `state.json.lock`, plus `state.json.lock.info`
//! holding the owner as JSON. The OS lock is the truth: it ends with the process that holds
//! it, however that process ends, so a crash never leaves the state locked. The info file
//! only says who holds it; one left behind by a crashed process is stale, is replaced by the
//! next lock, and can be removed with `lifeboat state unlock ID`.
//!
//! The lock file itself is never deleted: a process could otherwise lock a file that another
//! process has just unlinked, and both would believe they hold the lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{LockGuard, LockInfo, State, StateBackend, StateDelta, StateError};

/// How often a waiting `lock` tries again.
const POLL: Duration = Duration::from_millis(200);

/// How long a contender waits for the new holder to say who it is.
const INFO_GRACE: Duration = Duration::from_millis(500);

/// An owner file is a few hundred bytes; anything larger is not one.
const MAX_INFO_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct LocalBackend {
    path: PathBuf,
}

impl LocalBackend {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with_suffix(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    pub fn lock_path(&self) -> PathBuf {
        self.with_suffix(".lock")
    }

    pub fn lock_info_path(&self) -> PathBuf {
        self.with_suffix(".lock.info")
    }

    /// The journal of changes not yet folded into the state file.
    pub fn journal_path(&self) -> PathBuf {
        self.with_suffix(".journal")
    }

    /// Folds the journal's records into `state`, which was read from the state file.
    fn replay(&self, state: &mut State) -> Result<(), StateError> {
        let path = self.journal_path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StateError::Read { path, source }),
        };
        let invalid = |reason: String| StateError::Invalid {
            path: path.clone(),
            reason,
        };
        let mut lines = bytes.split_inclusive(|&b| b == b'\n').peekable();
        let mut number = 0;
        while let Some(line) = lines.next() {
            number += 1;
            let last = lines.peek().is_none();
            let complete = line.ends_with(b"\n");
            let delta = match serde_json::from_slice::<StateDelta>(line) {
                Ok(delta) if complete => delta,
                // A record cut short by a crash mid-append: nobody was told it was written.
                _ if last => break,
                Ok(_) | Err(_) => {
                    return Err(invalid(format!(
                        "line {number} of the journal is not a state record"
                    )));
                }
            };
            if delta.lineage != state.lineage {
                return Err(invalid(format!(
                    "the journal belongs to the state of lineage `{}`, not `{}`",
                    delta.lineage, state.lineage
                )));
            }
            if delta.to <= state.serial {
                // Already in the state file: a crash came between a full write and the
                // journal's removal.
                continue;
            }
            if delta.from != state.serial {
                return Err(invalid(format!(
                    "line {number} of the journal continues serial {}, but the state is at serial {}",
                    delta.from, state.serial
                )));
            }
            state.apply_delta(&delta);
        }
        Ok(())
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    fn ensure_dir(&self) -> Result<(), StateError> {
        fs::create_dir_all(self.dir()).map_err(|source| StateError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn open_lock_file(&self) -> Result<File, StateError> {
        self.refuse_non_regular()?;
        self.ensure_dir()?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.lock_path())
            .map_err(|source| StateError::Lock {
                path: self.path.clone(),
                source,
            })
    }

    /// A state path that names a device, directory or FIFO is refused before anything is
    /// created beside it (`/dev/full.lock` must never appear).
    fn refuse_non_regular(&self) -> Result<(), StateError> {
        match fs::metadata(&self.path) {
            Ok(metadata) if !metadata.is_file() => Err(StateError::Read {
                path: self.path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a regular file (a directory, device, FIFO or socket is never read)",
                ),
            }),
            _ => Ok(()),
        }
    }

    /// The owner information, but only while the process that wrote it is alive and holds
    /// it: every holder keeps an exclusive OS lock on its own info file (see [`Held`]), so an
    /// info file that can be locked shared was left by a process that is gone. Contenders
    /// only ever take shared locks on it, so they never mistake one another for the holder.
    fn live_info(&self) -> Option<LockInfo> {
        let path = self.lock_info_path();
        let file = File::open(&path).ok()?;
        match file.try_lock_shared() {
            Err(TryLockError::WouldBlock) => {}
            // Nobody alive holds it. An error says nothing about liveness either.
            Ok(()) | Err(TryLockError::Error(_)) => return None,
        }
        let bytes = crate::input::read_capped_from(&file, MAX_INFO_BYTES, 0).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// [`Self::live_info`], waiting a moment for a holder that has just taken the lock and is
    /// still writing who it is.
    fn holder(&self) -> Option<LockInfo> {
        let deadline = Instant::now() + INFO_GRACE;
        loop {
            if let Some(info) = self.live_info() {
                return Some(info);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn read_once(&self) -> Result<Option<State>, StateError> {
        let bytes = match crate::input::read_capped(&self.path, crate::input::MAX_INPUT_BYTES) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let invalid = |reason: String| StateError::Invalid {
            path: self.path.clone(),
            reason,
        };
        let text = String::from_utf8(bytes).map_err(|_| invalid("not UTF-8 text".to_string()))?;
        let mut state = State::from_json(&text).map_err(|e| invalid(e.to_string()))?;
        self.replay(&mut state)?;
        Ok(Some(state))
    }

    fn write_whole(&self, state: &State) -> Result<(), StateError> {
        self.ensure_dir()?;
        write_atomically(&self.path, state.to_json().as_bytes()).map_err(|source| {
            StateError::Write {
                path: self.path.clone(),
                source,
            }
        })?;
        // The document now holds everything the journal did.
        match fs::remove_file(self.journal_path()) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write {
                path: self.journal_path(),
                source,
            }),
        }
    }

    fn append_record(&self, delta: &StateDelta) -> Result<(), StateError> {
        let path = self.journal_path();
        let error = |source| StateError::Write {
            path: path.clone(),
            source,
        };
        let mut line = serde_json::to_vec(delta).expect("a state record is plain data");
        line.push(b'\n');
        let created = !path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(error)?;
        // One write call per record: a crash leaves a prefix of it at most, never a mix.
        file.write_all(&line).map_err(error)?;
        file.sync_data().map_err(error)?;
        // A new journal's name must survive a power cut too.
        #[cfg(unix)]
        if created && let Ok(dir) = File::open(self.dir()) {
            let _ = dir.sync_all();
        }
        #[cfg(not(unix))]
        let _ = created;
        Ok(())
    }

    fn read_info(&self) -> Result<Option<LockInfo>, StateError> {
        let path = self.lock_info_path();
        match crate::input::read_capped(&path, MAX_INFO_BYTES) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path, source }),
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed, then
/// renamed over `path`, then the directory flushed so the rename itself survives a power cut.
///
/// A temporary file is private (0600); the file keeps the permissions it had, and a new file
/// gets the usual 0644, so that a plan or world written here is not silently locked away
/// from the people and tools that read it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let permissions = match fs::metadata(path) {
        // Renaming over a device or directory is never what was meant, and the temporary
        // file would be left beside it.
        Ok(metadata) if !metadata.is_file() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file (a directory, device, FIFO or socket is never written)",
            ));
        }
        Ok(metadata) => Some(metadata.permissions()),
        Err(_) => default_permissions(),
    };
    let mut temp = temp_beside(path)?;
    if let Some(permissions) = permissions {
        temp.as_file().set_permissions(permissions)?;
    }
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    // Directories cannot be opened for syncing on every platform; where they can, the rename
    // is made durable too.
    #[cfg(unix)]
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// Every temporary file lifeboat writes ends with this, after `.NAME.` (`NAME` being the file
/// it will replace) and a random part, so the leftovers of a killed writer can be recognised.
const TEMP_SUFFIX: &str = ".lifeboat-tmp";

/// A new temporary file beside `path`, named `.NAME.RANDOM.lifeboat-tmp`.
fn temp_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
}

fn temp_prefix(path: &Path) -> std::ffi::OsString {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".");
    prefix
}

/// Removes the temporary files that writers of `path` killed mid-write left beside it, and
/// returns how many there were.
///
/// Call it only while holding the lock that every writer of `path` holds while it writes
/// (the state's lock for the state and its owner file, the world's lock for a world): then
/// no temporary file of `path` can belong to a live writer. Only files named as
/// [`write_atomically`] names them are touched.
pub fn remove_stale_temps(path: &Path) -> usize {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let prefix = temp_prefix(path);
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let ours = prefix.to_str().is_some_and(|p| name.starts_with(p))
            && name.ends_with(TEMP_SUFFIX)
            && name.len() > prefix.len() + TEMP_SUFFIX.len();
        // Only regular files: a directory or link of that name is not something we wrote.
        if ours
            && entry.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(unix)]
fn default_permissions() -> Option<fs::Permissions> {
    use std::os::unix::fs::PermissionsExt;
    Some(fs::Permissions::from_mode(0o644))
}

#[cfg(not(unix))]
fn default_permissions() -> Option<fs::Permissions> {
    None
}

/// Releases the OS lock when dropped, after removing the owner information.
///
/// `info` is the open owner file, on which the holder keeps an exclusive OS lock for as long
/// as it holds the state lock: a contender that can lock the owner file shared knows that it
/// was left by a process that is gone, and never names that process as the holder.
struct Held {
    file: File,
    info: Option<File>,
    info_path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        // The info goes first: once the OS lock is released another process may write its own.
        let _ = fs::remove_file(&self.info_path);
        drop(self.info.take());
        let _ = self.file.unlock();
    }
}

/// Writes the owner file atomically with an exclusive lock already on it, so that it is
/// never visible without the lock that proves its writer alive.
fn write_owner(path: &Path, bytes: &[u8]) -> std::io::Result<File> {
    let mut temp = temp_beside(path)?;
    temp.write_all(bytes)?;
    temp.as_file().sync_all()?;
    temp.as_file().lock()?;
    temp.persist(path).map_err(|e| e.error)
}

impl StateBackend for LocalBackend {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        // Reading takes no lock: a reader that saw the state before a full write and the
        // journal after it finds records that do not continue its state. Those two reads
        // raced a writer, so they are made once more.
        match self.read_once() {
            Err(StateError::Invalid { .. }) if self.journal_path().exists() => self.read_once(),
            other => other,
        }
    }

    fn write(&self, state: &State) -> Result<(), StateError> {
        self.write_whole(state)
    }

    fn append(&self, delta: &StateDelta) -> Result<(), StateError> {
        self.append_record(delta)
    }

    fn compact(&self, state: &State) -> Result<(), StateError> {
        if self.journal_path().exists() {
            self.write_whole(state)?;
        }
        Ok(())
    }

    fn lock(&self, owner: LockInfo, timeout: Duration) -> Result<LockGuard, StateError> {
        let file = self.open_lock_file()?;
        let deadline = Instant::now() + timeout;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(StateError::Locked {
                            path: self.path.clone(),
                            info: self.holder().map(Box::new),
                        });
                    }
                    std::thread::sleep(POLL.min(deadline - now));
                }
                Err(TryLockError::Error(source)) => {
                    return Err(StateError::Lock {
                        path: self.path.clone(),
                        source,
                    });
                }
            }
        }
        // From here the lock is ours; `Held` releases it on every path out, errors included.
        // Every writer of the state and its owner file holds this lock, so any temporary file
        // of theirs is what a killed writer left behind.
        remove_stale_temps(&self.path);
        remove_stale_temps(&self.lock_info_path());
        let mut held = Held {
            file,
            info: None,
            info_path: self.lock_info_path(),
        };
        let json = serde_json::to_string_pretty(&owner).expect("lock info is plain data") + "\n";
        held.info = Some(
            write_owner(&held.info_path, json.as_bytes()).map_err(|source| StateError::Lock {
                path: self.path.clone(),
                source,
            })?,
        );
        Ok(LockGuard::new(owner, Box::new(held)))
    }

    fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        self.read_info()
    }

    fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        let Some(info) = self.read_info()? else {
            return Err(StateError::NotLocked {
                path: self.path.clone(),
            });
        };
        if info.id != id {
            return Err(StateError::WrongLockId {
                path: self.path.clone(),
                given: id.to_string(),
                info: Box::new(info),
            });
        }
        // An OS lock cannot be taken from a live process. If it is still held, the owner is
        // running; if not, the info is what a crashed process left behind.
        let file = self.open_lock_file()?;
        match file.try_lock() {
            Ok(()) => {
                let removed = fs::remove_file(self.lock_info_path());
                let _ = file.unlock();
                removed.map_err(|source| StateError::Write {
                    path: self.lock_info_path(),
                    source,
                })?;
                Ok(info)
            }
            // Held, but perhaps by a process that took the lock after the one that wrote
            // `info` died, and has not said who it is yet: only the live holder is named.
            Err(TryLockError::WouldBlock) => match self.holder() {
                Some(live) => Err(StateError::LockInUse {
                    path: self.path.clone(),
                    info: Box::new(live),
                }),
                None => Err(StateError::Locked {
                    path: self.path.clone(),
                    info: None,
                }),
            },
            Err(TryLockError::Error(source)) => Err(StateError::Lock {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Stage;
    use crate::state::MachineState;

    fn backend() -> (tempfile::TempDir, LocalBackend) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let backend = LocalBackend::new(dir.path().join(".lifeboat/state.json"));
        (dir, backend)
    }

    #[test]
    fn a_missing_file_is_no_state_and_a_written_one_reads_back() {
        let (_dir, backend) = backend();
        assert!(backend.read().expect("reads").is_none());
        let mut state = State::new();
        state.commit([("a".to_string(), MachineState::at(Stage::Reprotected))].into());
        backend
            .write(&state)
            .expect("writes, creating the directory");
        assert_eq!(backend.read().expect("reads"), Some(state));
    }

    #[test]
    fn write_replaces_the_file_whole_and_leaves_no_temporary_files() {
        let (_dir, backend) = backend();
        let first = State::new();
        backend.write(&first).expect("writes");
        let mut second = first.clone();
        second.commit([("b".to_string(), MachineState::at(Stage::FailedBack))].into());
        backend.write(&second).expect("writes");
        let text = fs::read_to_string(backend.path()).expect("readable");
        assert_eq!(text, second.to_json());
        let entries: Vec<_> = fs::read_dir(backend.path().parent().expect("a directory"))
            .expect("listable")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it_and_stays_as_it_was() {
        let (_dir, backend) = backend();
        fs::create_dir_all(backend.path().parent().expect("a directory")).expect("mkdir");
        let bytes = b"{\"format_version\": \"1\", \"lineage\": ";
        fs::write(backend.path(), bytes).expect("writes");
        let error = backend.read().expect_err("corrupt").to_string();
        assert!(error.contains("state.json"), "{error}");
        assert!(error.contains("not valid JSON"), "{error}");
        assert_eq!(fs::read(backend.path()).expect("readable"), bytes);
    }

    #[test]
    fn a_second_lock_fails_fast_naming_the_holder_then_succeeds_after_release() {
        let (_dir, backend) = backend();
        let guard = backend
            .lock(LockInfo::new("apply"), Duration::ZERO)
            .expect("locks");
        let started = Instant::now();
        let error = backend
            .lock(LockInfo::new("plan"), Duration::ZERO)
            .expect_err("held");
        assert!(started.elapsed() < Duration::from_secs(1), "fails fast");
        match &error {
            StateError::Locked {
                info: Some(info), ..
            } => {
                assert_eq!(info.id, guard.info().id);
                assert_eq!(info.operation, "apply");
            }
            other => panic!("expected Locked with info, got {other:?}"),
        }
        assert!(error.to_string().contains(&guard.info().id));
        drop(guard);
        assert!(backend.lock_info().expect("reads").is_none());
        backend
            .lock(LockInfo::new("plan"), Duration::ZERO)
            .expect("free again");
    }

    #[test]
    fn lock_waits_up_to_the_timeout() {
        let (_dir, backend) = backend();
        let guard = backend
            .lock(LockInfo::new("apply"), Duration::ZERO)
            .expect("locks");
        let started = Instant::now();
        let waiting = backend.clone();
        let handle = std::thread::spawn(move || {
            waiting
                .lock(LockInfo::new("plan"), Duration::from_secs(10))
                .map(|g| g.info().operation.clone())
        });
        std::thread::sleep(Duration::from_millis(500));
        drop(guard);
        let got = handle.join().expect("no panic").expect("got the lock");
        assert_eq!(got, "plan");
        assert!(started.elapsed() >= Duration::from_millis(500));

        let _held = backend
            .lock(LockInfo::new("apply"), Duration::ZERO)
            .expect("locks");
        let started = Instant::now();
        assert!(
            backend
                .lock(LockInfo::new("plan"), Duration::from_millis(600))
                .is_err()
        );
        assert!(started.elapsed() >= Duration::from_millis(600));
    }

    /// The owner file a holder killed with SIGKILL leaves behind: its pid is gone.
    fn plant_dead_owner(backend: &LocalBackend) -> LockInfo {
        let mut dead = LockInfo::new("apply");
        dead.id = "dead-holder-0000".to_string();
        dead.pid = u32::MAX;
        fs::create_dir_all(backend.path().parent().expect("a directory")).expect("mkdir");
        fs::write(
            backend.lock_info_path(),
            serde_json::to_string(&dead).expect("serialises"),
        )
        .expect("writes");
        dead
    }

    #[test]
    fn contenders_never_name_a_dead_holder() {
        // Eight contenders race for a lock whose last holder died; the losers must name the
        // winner (or nobody yet), never the dead one whose owner file is still there.
        for round in 0..25 {
            let (_dir, backend) = backend();
            let dead = plant_dead_owner(&backend);
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let backend = backend.clone();
                    let barrier = barrier.clone();
                    std::thread::spawn(move || {
                        barrier.wait();
                        match backend.lock(LockInfo::new("plan"), Duration::ZERO) {
                            Ok(guard) => {
                                // Hold it long enough for every loser to look.
                                std::thread::sleep(Duration::from_millis(300));
                                Ok(guard.info().id.clone())
                            }
                            Err(error) => Err(error),
                        }
                    })
                })
                .collect();
            let results: Vec<_> = handles
                .into_iter()
                .map(|h| h.join().expect("no panic"))
                .collect();
            let winners: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert!(!winners.is_empty(), "round {round}: somebody got the lock");
            for result in &results {
                if let Err(error) = result {
                    let text = error.to_string();
                    assert!(
                        !text.contains(&dead.id),
                        "round {round}: a loser named the dead holder: {text}"
                    );
                    if let StateError::Locked {
                        info: Some(info), ..
                    } = error
                    {
                        assert!(winners.contains(&&info.id), "round {round}: {text}");
                    }
                }
            }
        }
    }

    #[test]
    fn unlock_never_calls_a_dead_holder_running() {
        let (_dir, backend) = backend();
        let dead = plant_dead_owner(&backend);
        // A new holder has the OS lock but has not replaced the dead owner file yet.
        let file = backend.open_lock_file().expect("opens");
        file.try_lock().expect("locks");
        let error = backend.unlock(&dead.id).expect_err("held by someone");
        assert!(
            !matches!(error, StateError::LockInUse { ref info, .. } if info.id == dead.id),
            "{error}"
        );
        file.unlock().expect("unlocks");
        assert_eq!(backend.unlock(&dead.id).expect("stale").id, dead.id);
    }

    #[test]
    fn temporary_files_a_killed_writer_left_are_removed_by_the_next_lock() {
        let (_dir, backend) = backend();
        backend.write(&State::new()).expect("writes");
        let dir = backend.path().parent().expect("a directory").to_path_buf();
        // What a writer killed between creating its temporary file and renaming it leaves.
        let left = [
            dir.join(".state.json.a1b2c3.lifeboat-tmp"),
            dir.join(".state.json.lock.info.d4e5f6.lifeboat-tmp"),
        ];
        for path in &left {
            fs::write(path, "partial").expect("writes");
        }
        // Not ours: a file that merely looks similar, and a temporary file of another file.
        let kept = [
            dir.join("notes.lifeboat-tmp"),
            dir.join(".world.yaml.x.lifeboat-tmp"),
        ];
        for path in &kept {
            fs::write(path, "keep").expect("writes");
        }
        let guard = backend
            .lock(LockInfo::new("apply"), Duration::ZERO)
            .expect("locks");
        for path in &left {
            assert!(!path.exists(), "{} was left", path.display());
        }
        for path in &kept {
            assert!(path.exists(), "{} was removed", path.display());
        }
        drop(guard);
    }

    #[cfg(unix)]
    #[test]
    fn nothing_is_created_beside_a_device() {
        let backend = LocalBackend::new("/dev/null");
        assert!(backend.lock(LockInfo::new("plan"), Duration::ZERO).is_err());
        assert!(backend.read().is_err());
        assert!(!Path::new("/dev/null.lock").exists());
    }

    #[test]
    fn unlock_removes_only_a_stale_lock_with_the_right_id() {
        let (_dir, backend) = backend();
        assert!(matches!(
            backend.unlock("x"),
            Err(StateError::NotLocked { .. })
        ));
        let guard = backend
            .lock(LockInfo::new("apply"), Duration::ZERO)
            .expect("locks");
        let id = guard.info().id.clone();
        assert!(matches!(
            backend.unlock("wrong"),
            Err(StateError::WrongLockId { .. })
        ));
        // The holder is alive: its lock cannot be broken.
        assert!(matches!(
            backend.unlock(&id),
            Err(StateError::LockInUse { .. })
        ));
        // A crashed holder leaves its info but not its OS lock.
        let stale = fs::read(backend.lock_info_path()).expect("info");
        drop(guard);
        fs::write(backend.lock_info_path(), stale).expect("writes");
        assert_eq!(backend.unlock(&id).expect("removed").id, id);
        assert!(!backend.lock_info_path().exists());
    }

    /// A state with one machine pending, written whole, then `n` changes appended as records.
    fn journaled(backend: &LocalBackend, n: usize) -> State {
        let mut state = State::new();
        backend.write(&state).expect("writes");
        for i in 0..n {
            let from = state.serial;
            let name = format!("m-{i}");
            state.commit({
                let mut machines = state.machines.clone();
                machines.insert(name.clone(), MachineState::at(Stage::Reprotected));
                machines
            });
            backend
                .append(&state.delta(from, [name.as_str()]))
                .expect("appends");
        }
        state
    }

    #[test]
    fn appended_records_are_read_back_and_a_full_write_folds_them() {
        let (_dir, backend) = backend();
        let state = journaled(&backend, 3);
        assert!(backend.journal_path().exists());
        assert_eq!(backend.read().expect("reads"), Some(state.clone()));
        // The state file alone is still the state before the records.
        let file = fs::read_to_string(backend.path()).expect("readable");
        assert_eq!(State::from_json(&file).expect("valid").serial, 0);
        backend.compact(&state).expect("folds");
        assert!(!backend.journal_path().exists());
        assert_eq!(
            State::from_json(&fs::read_to_string(backend.path()).expect("readable"))
                .expect("valid"),
            state
        );
    }

    #[test]
    fn a_record_cut_short_by_a_crash_is_ignored_and_a_broken_one_before_the_end_is_not() {
        let (_dir, backend) = backend();
        let state = journaled(&backend, 2);
        let whole = fs::read(backend.journal_path()).expect("readable");
        // A crash mid-append leaves a prefix of the next record after the whole ones.
        let mut torn = whole.clone();
        torn.extend_from_slice(b"{\"lineage\": \"");
        fs::write(backend.journal_path(), &torn).expect("writes");
        assert_eq!(backend.read().expect("reads"), Some(state.clone()));
        // The same bytes before a whole record are corruption, not a crash.
        let mut broken = b"{\"lineage\": \"\n".to_vec();
        broken.extend_from_slice(&whole);
        fs::write(backend.journal_path(), &broken).expect("writes");
        let error = backend.read().expect_err("corrupt").to_string();
        assert!(error.contains("line 1 of the journal"), "{error}");
        assert_eq!(fs::read(backend.journal_path()).expect("readable"), broken);
    }

    #[test]
    fn records_the_state_file_already_has_are_skipped_and_a_gap_is_an_error() {
        let (_dir, backend) = backend();
        let state = journaled(&backend, 2);
        let journal = fs::read(backend.journal_path()).expect("readable");
        // A crash between the full write and the journal's removal leaves both.
        backend.write(&state).expect("writes");
        fs::write(backend.journal_path(), &journal).expect("writes");
        assert_eq!(backend.read().expect("reads"), Some(state.clone()));
        // A record that does not continue the state is refused.
        let mut other = state.clone();
        other.serial = 10;
        let from = other.serial;
        other.commit([("x".to_string(), MachineState::at(Stage::FailedBack))].into());
        let mut line = serde_json::to_vec(&other.delta(from + 5, ["x"])).expect("json");
        line.push(b'\n');
        fs::write(backend.journal_path(), line).expect("writes");
        let error = backend.read().expect_err("a gap").to_string();
        assert!(error.contains("continues serial"), "{error}");
    }
}
