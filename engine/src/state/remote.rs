//! Remote state backends: what PostgreSQL and Azure Blob share.
//!
//! A [`RemoteStore`] is the small async part that talks to one service. [`RemoteBackend`]
//! makes any store a [`StateBackend`] with the guarantees a team's CI needs:
//!
//! - **compare-and-swap**: every write names the version it read (a row version, an ETag)
//!   and fails with [`StateError::Conflict`] if another write came first; never a blind
//!   overwrite;
//! - **leases, not eternal locks**: the lock records its owner, is renewed every third of its
//!   lease by a task that lives exactly as long as the process, and expires by itself `lease`
//!   after the process dies (SIGKILL, a cancelled pipeline). Acquiring is idempotent by lock
//!   id: an acquire retried because its answer was lost finds the lock already its own;
//! - **fencing**: each acquisition raises an epoch stored with the state, and every write
//!   carries the writer's lease; a write from an older one is refused
//!   ([`StateError::Fenced`]), so a process paused past its lease never writes after another
//!   took over;
//! - **the write-ahead journal is remote**: pending operations are part of the stored state
//!   and appended records go to the store, so another runner reconciles them by id.
//!
//! [`StateBackend`] is synchronous (the local backend's file calls are), so the stores'
//! futures run on one background runtime owned by this module and shared by every remote
//! backend of the process: callers wait on a channel, from a plain thread or from inside
//! another runtime alike. The renewal task runs there too, unaffected by how busy the
//! caller's runtime is.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use super::{LockGuard, LockInfo, State, StateBackend, StateDelta, StateError};

/// How long one call to the service may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a waiting `lock` asks again.
const POLL: Duration = Duration::from_millis(500);

/// Attempts of an idempotent call (read, acquire, renew, release) that fails transiently.
const ATTEMPTS: u32 = 4;

/// A stored document's version, as the service spells it (a row version, an ETag). Opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version(pub String);

/// What a lock holder carries with each write: its lock id and the epoch its acquisition
/// set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: String,
    pub epoch: u64,
    pub duration: Duration,
}

/// A state as stored: the document with its journal folded in (`None`: no state yet), and
/// the version a write must name (`None`: nothing stored at all).
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: Option<State>,
    pub version: Option<Version>,
}

/// Who holds, or last held, a lock.
#[derive(Debug, Clone)]
pub struct Holder {
    /// `None` when the holder has not said who it is yet.
    pub info: Option<LockInfo>,
    /// Whether the lease is still running (its holder renews it).
    pub live: bool,
}

/// The answer to an acquire.
#[derive(Debug, Clone)]
pub enum Acquired {
    /// The lock is ours, at this epoch (unchanged when it already was ours).
    Ours { epoch: u64 },
    /// Someone else holds a live lease.
    Held(Holder),
}

/// A store's failure, before [`RemoteBackend`] names the state in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    /// The service could not be reached or failed for now; an idempotent call is retried.
    #[error("{0}")]
    Unavailable(String),
    /// The service refused (credentials, permissions, configuration).
    #[error("{0}")]
    Refused(String),
    /// What is stored is not a state lifeboat can read.
    #[error("{0}")]
    Invalid(String),
    /// Compare-and-swap: the stored version is not the one named.
    #[error("the state was changed by another writer")]
    Conflict,
    /// Fencing: the lease named is no longer the lock's; the new holder if known.
    #[error("the lock was taken over")]
    Fenced(Option<Box<LockInfo>>),
}

/// The service-specific part of a remote backend. Every write names the lease it holds and
/// the version it read, and the store refuses it unless both are still current.
#[async_trait::async_trait]
pub trait RemoteStore: Send + Sync + fmt::Debug {
    /// Where the state is, for messages; never contains a secret.
    fn location(&self) -> String;

    /// The stored state and its version. Takes no lock.
    async fn read(&self) -> Result<Snapshot, RemoteError>;

    /// Takes the lock for `owner` for `duration`, or reports the live holder. Acquiring a
    /// lock whose id is `owner.id` again extends it and keeps its epoch; any other
    /// acquisition raises the epoch.
    async fn acquire(&self, owner: &LockInfo, duration: Duration) -> Result<Acquired, RemoteError>;

    /// Extends the lease; [`RemoteError::Fenced`] when it is no longer ours.
    async fn renew(&self, lease: &Lease) -> Result<(), RemoteError>;

    /// Gives the lock up, if it is still ours.
    async fn release(&self, lease: &Lease) -> Result<(), RemoteError>;

    /// Replaces the document (and empties the journal), if the stored version is `expected`
    /// (`None`: nothing is stored) and the lease is current.
    async fn write(
        &self,
        lease: &Lease,
        expected: Option<&Version>,
        state: &State,
    ) -> Result<Version, RemoteError>;

    /// Makes `delta` durable, on the same conditions as `write`.
    async fn append(
        &self,
        lease: &Lease,
        expected: &Version,
        delta: &StateDelta,
    ) -> Result<Version, RemoteError>;

    /// Folds the journal into the document (`state` is the document with it folded), on the
    /// same conditions as `write`; returns `expected` when there is nothing to fold.
    async fn compact(
        &self,
        lease: &Lease,
        expected: &Version,
        state: &State,
    ) -> Result<Version, RemoteError>;

    /// The lock's holder, live or not; `None` when no lock is recorded.
    async fn holder(&self) -> Result<Option<Holder>, RemoteError>;

    /// Removes the record of the lock `id` when its lease has ended.
    async fn clear(&self, id: &str) -> Result<(), RemoteError>;
}

/// Folds journal records into `state`, by the local journal's rules: a record the document
/// already has is skipped; one that does not continue it is an error.
pub fn fold(
    state: &mut State,
    records: impl IntoIterator<Item = StateDelta>,
) -> Result<(), String> {
    for (n, delta) in records.into_iter().enumerate() {
        if delta.lineage != state.lineage {
            return Err(format!(
                "journal record {} belongs to the state of lineage `{}`, not `{}`",
                n + 1,
                delta.lineage,
                state.lineage
            ));
        }
        if delta.to <= state.serial {
            continue;
        }
        if delta.from != state.serial {
            return Err(format!(
                "journal record {} continues serial {}, but the state is at serial {}",
                n + 1,
                delta.from,
                state.serial
            ));
        }
        state.apply_delta(&delta);
    }
    Ok(())
}

/// The background runtime every remote backend's calls and renewals run on. Never dropped
/// (a runtime cannot be dropped from inside another one, where the last backend might go).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("lifeboat-state")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the state's runtime: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `future` on the background runtime and waits for it.
fn block<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, StateError> {
    let interrupted = |reason: String| StateError::Interrupted { reason };
    let runtime = runtime().map_err(interrupted)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv()
        .map_err(|_| interrupted("the state's task stopped".to_string()))
}

/// One call, bounded in time.
async fn once<T>(call: impl Future<Output = Result<T, RemoteError>>) -> Result<T, RemoteError> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(RemoteError::Unavailable(format!(
                "no answer within {}s",
                CALL_TIMEOUT.as_secs()
            )))
        })
}

/// An idempotent call, retried with backoff while it fails transiently.
async fn retried<T, F, Fut>(mut call: F) -> Result<T, RemoteError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RemoteError>>,
{
    let mut wait = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match once(call()).await {
            Err(RemoteError::Unavailable(_)) if attempt < ATTEMPTS => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A [`RemoteStore`] as a [`StateBackend`]. Clones share the lock and the version read.
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn RemoteStore>,
    lease: Duration,
    /// The lease this process holds, if any.
    held: Mutex<Option<Lease>>,
    /// The version of the last read or write: what the next write names.
    version: Mutex<Option<Version>>,
}

impl fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("store", &self.inner.store)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl RemoteBackend {
    /// A backend over `store` whose locks are leases of `lease`.
    pub fn new(store: Arc<dyn RemoteStore>, lease: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                lease,
                held: Mutex::new(None),
                version: Mutex::new(None),
            }),
        }
    }

    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    fn store(&self) -> Arc<dyn RemoteStore> {
        self.inner.store.clone()
    }

    fn error(&self, error: RemoteError) -> StateError {
        let location = self.inner.store.location();
        match error {
            RemoteError::Unavailable(message) | RemoteError::Refused(message) => {
                StateError::Remote { location, message }
            }
            RemoteError::Invalid(reason) => StateError::Invalid {
                path: PathBuf::from(location),
                reason,
            },
            RemoteError::Conflict => StateError::Conflict { location },
            RemoteError::Fenced(info) => StateError::Fenced {
                location,
                lease: self.inner.lease,
                info,
            },
        }
    }

    fn held(&self) -> Result<Lease, StateError> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| StateError::Remote {
                location: self.inner.store.location(),
                message: "writing the state needs its lock, and this process does not hold it"
                    .to_string(),
            })
    }

    fn version(&self) -> Option<Version> {
        self.inner
            .version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set_version(&self, version: Option<Version>) {
        *self
            .inner
            .version
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = version;
    }

    fn read_version(&self) -> Result<Version, StateError> {
        self.version().ok_or_else(|| StateError::Remote {
            location: self.inner.store.location(),
            message: "a change was written before the state was read".to_string(),
        })
    }

    fn holder(&self) -> Result<Option<Holder>, StateError> {
        let store = self.store();
        block(retried(move || {
            let store = store.clone();
            async move { store.holder().await }
        }))?
        .map_err(|e| self.error(e))
    }
}

/// Renews `lease` every third of it until aborted, or until it turns out to be lost (then
/// the next write is refused and says why).
async fn renew(store: Arc<dyn RemoteStore>, lease: Lease) {
    let period = lease.duration / 3;
    let mut wait = period;
    loop {
        tokio::time::sleep(wait).await;
        match tokio::time::timeout(period, store.renew(&lease)).await {
            Ok(Ok(())) => wait = period,
            Ok(Err(RemoteError::Fenced(_))) => return,
            // A failed renewal is tried again soon: the lease still has two periods.
            Ok(Err(_)) | Err(_) => wait = (period / 4).max(Duration::from_millis(250)),
        }
    }
}

/// Stops the renewal and gives the lock up, when the guard is dropped.
struct Release {
    inner: Arc<Inner>,
    lease: Lease,
    renewal: tokio::task::AbortHandle,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.renewal.abort();
        {
            let mut held = self
                .inner
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if held.as_ref() == Some(&self.lease) {
                *held = None;
            }
        }
        let store = self.inner.store.clone();
        let lease = self.lease.clone();
        // A lock that cannot be released now ends with its lease.
        let _ = block(async move { once(store.release(&lease)).await });
    }
}

impl StateBackend for RemoteBackend {
    fn location(&self) -> String {
        self.inner.store.location()
    }

    fn read(&self) -> Result<Option<State>, StateError> {
        let store = self.store();
        let snapshot = block(retried(move || {
            let store = store.clone();
            async move { store.read().await }
        }))?
        .map_err(|e| self.error(e))?;
        self.set_version(snapshot.version);
        Ok(snapshot.state)
    }

    fn write(&self, state: &State) -> Result<(), StateError> {
        let lease = self.held()?;
        let expected = self.version();
        let store = self.store();
        let state = state.clone();
        let version =
            block(async move { once(store.write(&lease, expected.as_ref(), &state)).await })?
                .map_err(|e| self.error(e))?;
        self.set_version(Some(version));
        Ok(())
    }

    fn append(&self, delta: &StateDelta) -> Result<(), StateError> {
        let lease = self.held()?;
        let expected = self.read_version()?;
        let store = self.store();
        let delta = delta.clone();
        let version = block(async move { once(store.append(&lease, &expected, &delta)).await })?
            .map_err(|e| self.error(e))?;
        self.set_version(Some(version));
        Ok(())
    }

    fn compact(&self, state: &State) -> Result<(), StateError> {
        let lease = self.held()?;
        let expected = self.read_version()?;
        let store = self.store();
        let state = state.clone();
        let version = block(async move { once(store.compact(&lease, &expected, &state)).await })?
            .map_err(|e| self.error(e))?;
        self.set_version(Some(version));
        Ok(())
    }

    fn lock(&self, owner: LockInfo, timeout: Duration) -> Result<LockGuard, StateError> {
        let deadline = Instant::now() + timeout;
        let duration = self.inner.lease;
        let epoch = loop {
            let store = self.store();
            let info = owner.clone();
            // The same lock id on every attempt: an acquire that succeeded but whose answer
            // was lost is recognised as ours by the next one.
            let acquired = block(retried(move || {
                let store = store.clone();
                let info = info.clone();
                async move { store.acquire(&info, duration).await }
            }))?
            .map_err(|e| self.error(e))?;
            match acquired {
                Acquired::Ours { epoch } => break epoch,
                Acquired::Held(holder) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(StateError::Locked {
                            path: PathBuf::from(self.location()),
                            info: holder.info.map(Box::new),
                        });
                    }
                    std::thread::sleep(POLL.min(deadline - now));
                }
            }
        };
        let lease = Lease {
            id: owner.id.clone(),
            epoch,
            duration,
        };
        *self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(lease.clone());
        let runtime = runtime().map_err(|reason| StateError::Interrupted { reason })?;
        let renewal = runtime
            .spawn(renew(self.store(), lease.clone()))
            .abort_handle();
        let release = Release {
            inner: self.inner.clone(),
            lease,
            renewal,
        };
        Ok(LockGuard::new(owner, Box::new(release)))
    }

    fn lock_info(&self) -> Result<Option<LockInfo>, StateError> {
        Ok(self.holder()?.and_then(|h| h.info))
    }

    fn unlock(&self, id: &str) -> Result<LockInfo, StateError> {
        let location = self.location();
        let Some(Holder {
            info: Some(info),
            live,
        }) = self.holder()?
        else {
            return Err(StateError::NotLocked {
                path: PathBuf::from(location),
            });
        };
        if info.id != id {
            return Err(StateError::WrongLockId {
                path: PathBuf::from(location),
                given: id.to_string(),
                info: Box::new(info),
            });
        }
        if live {
            return Err(StateError::LeaseRenewed {
                location,
                lease: self.inner.lease,
                info: Box::new(info),
            });
        }
        let store = self.store();
        let id = id.to_string();
        block(async move { once(store.clear(&id)).await })?.map_err(|e| self.error(e))?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests;
