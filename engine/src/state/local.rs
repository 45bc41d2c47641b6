//! The local state backend: one JSON file (`state.local.path`, default
//! `.lifeboat/state.json` beside the plan).
//!
//! Writes go to a temporary file in the same directory, are flushed to disk, then renamed over
//! the state: a rename within one directory is atomic, so a crash leaves the old document or
//! the new one, never half of one.
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

use super::{LockGuard, LockInfo, State, StateBackend, StateError};

/// How often a waiting `lock` tries again.
const POLL: Duration = Duration::from_millis(200);

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

    fn read_info(&self) -> Result<Option<LockInfo>, StateError> {
        let path = self.lock_info_path();
        match fs::read_to_string(&path) {
            Ok(text) => Ok(serde_json::from_str(&text).ok()),
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
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    let permissions = match fs::metadata(path) {
        Ok(metadata) => Some(metadata.permissions()),
        Err(_) => default_permissions(),
    };
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
struct Held {
    file: File,
    info_path: PathBuf,
}

impl Drop for Held {
    fn drop(&mut self) {
        // The info goes first: once the OS lock is released another process may write its own.
        let _ = fs::remove_file(&self.info_path);
        let _ = self.file.unlock();
    }
}

impl StateBackend for LocalBackend {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let bytes = match fs::read(&self.path) {
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
        State::from_json(&text).map(Some).map_err(invalid)
    }

    fn write(&self, state: &State) -> Result<(), StateError> {
        self.ensure_dir()?;
        write_atomically(&self.path, state.to_json().as_bytes()).map_err(|source| {
            StateError::Write {
                path: self.path.clone(),
                source,
            }
        })
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
                            info: self.read_info().unwrap_or(None).map(Box::new),
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
        let held = Held {
            file,
            info_path: self.lock_info_path(),
        };
        let json = serde_json::to_string_pretty(&owner).expect("lock info is plain data") + "\n";
        write_atomically(&held.info_path, json.as_bytes()).map_err(|source| StateError::Lock {
            path: self.path.clone(),
            source,
        })?;
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
            Err(TryLockError::WouldBlock) => Err(StateError::LockInUse {
                path: self.path.clone(),
                info: Box::new(info),
            }),
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
}
