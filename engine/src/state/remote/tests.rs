//! The generic layer over an in-memory store that keeps PostgreSQL's rules (a row version,
//! an epoch raised by each acquisition, a lease with an expiry): compare-and-swap, fencing,
//! idempotent acquire, expiry, unlock. The real services are tested end to end in
//! `tests/integration/remote_state.rs`.

use std::sync::atomic::{AtomicBool, Ordering};

use super::*;
use crate::provider::Stage;
use crate::state::MachineState;

#[derive(Debug, Default)]
struct Memory {
    row: Mutex<Row>,
    /// When set, the next acquire is carried out but answered as lost.
    lose_next_acquire: AtomicBool,
    /// When set, renewals do not arrive.
    cut_off: AtomicBool,
}

#[derive(Debug, Default)]
struct Row {
    version: u64,
    epoch: u64,
    document: Option<State>,
    journal: Vec<StateDelta>,
    lock: Option<(LockInfo, Instant)>,
}

impl Row {
    fn check(&self, lease: &Lease, expected: Option<&Version>) -> Result<(), RemoteError> {
        match &self.lock {
            Some((info, _)) if info.id == lease.id && self.epoch == lease.epoch => {}
            other => {
                return Err(RemoteError::Fenced(
                    other.as_ref().map(|(i, _)| Box::new(i.clone())),
                ));
            }
        }
        if expected.map(|v| v.0.as_str()) != Some(self.version.to_string().as_str()) {
            return Err(RemoteError::Conflict);
        }
        Ok(())
    }
}

impl Memory {
    fn row(&self) -> std::sync::MutexGuard<'_, Row> {
        self.row.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait::async_trait]
impl RemoteStore for Memory {
    fn location(&self) -> String {
        "memory".to_string()
    }

    async fn read(&self) -> Result<Snapshot, RemoteError> {
        let row = self.row();
        let mut state = row.document.clone();
        if let Some(state) = &mut state {
            fold(state, row.journal.clone()).map_err(RemoteError::Invalid)?;
        }
        Ok(Snapshot {
            state,
            version: Some(Version(row.version.to_string())),
        })
    }

    async fn acquire(&self, owner: &LockInfo, duration: Duration) -> Result<Acquired, RemoteError> {
        let mut row = self.row();
        let now = Instant::now();
        match &row.lock {
            Some((info, expires)) if info.id != owner.id && *expires > now => {
                return Ok(Acquired::Held(Holder {
                    info: Some(info.clone()),
                    live: true,
                }));
            }
            Some((info, _)) if info.id == owner.id => {}
            _ => row.epoch += 1,
        }
        row.lock = Some((owner.clone(), now + duration));
        let epoch = row.epoch;
        drop(row);
        if self.lose_next_acquire.swap(false, Ordering::SeqCst) {
            return Err(RemoteError::Unavailable("the answer was lost".to_string()));
        }
        Ok(Acquired::Ours { epoch })
    }

    async fn renew(&self, lease: &Lease) -> Result<(), RemoteError> {
        if self.cut_off.load(Ordering::SeqCst) {
            return Err(RemoteError::Unavailable("cut off".to_string()));
        }
        let mut row = self.row();
        let version = Version(row.version.to_string());
        row.check(lease, Some(&version))?;
        if let Some((_, expires)) = &mut row.lock {
            *expires = Instant::now() + lease.duration;
        }
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), RemoteError> {
        let mut row = self.row();
        if row.lock.as_ref().is_some_and(|(i, _)| i.id == lease.id) {
            row.lock = None;
        }
        Ok(())
    }

    async fn write(
        &self,
        lease: &Lease,
        expected: Option<&Version>,
        state: &State,
    ) -> Result<Version, RemoteError> {
        let mut row = self.row();
        row.check(lease, expected)?;
        row.document = Some(state.clone());
        row.journal.clear();
        row.version += 1;
        Ok(Version(row.version.to_string()))
    }

    async fn append(
        &self,
        lease: &Lease,
        expected: &Version,
        delta: &StateDelta,
    ) -> Result<Version, RemoteError> {
        let mut row = self.row();
        row.check(lease, Some(expected))?;
        row.journal.push(delta.clone());
        row.version += 1;
        Ok(Version(row.version.to_string()))
    }

    async fn compact(
        &self,
        lease: &Lease,
        expected: &Version,
        state: &State,
    ) -> Result<Version, RemoteError> {
        self.write(lease, Some(expected), state).await
    }

    async fn holder(&self) -> Result<Option<Holder>, RemoteError> {
        Ok(self.row().lock.as_ref().map(|(info, expires)| Holder {
            info: Some(info.clone()),
            live: *expires > Instant::now(),
        }))
    }

    async fn clear(&self, id: &str) -> Result<(), RemoteError> {
        let mut row = self.row();
        if row
            .lock
            .as_ref()
            .is_some_and(|(i, e)| i.id == id && *e <= Instant::now())
        {
            row.lock = None;
        }
        Ok(())
    }
}

fn two_backends(lease: Duration) -> (Arc<Memory>, RemoteBackend, RemoteBackend) {
    let memory = Arc::new(Memory::default());
    let a = RemoteBackend::new(memory.clone(), lease);
    let b = RemoteBackend::new(memory.clone(), lease);
    (memory, a, b)
}

fn with_machine(state: &State, name: &str) -> State {
    let mut next = state.clone();
    let mut machines = next.machines.clone();
    machines.insert(name.to_string(), MachineState::at(Stage::Reprotected));
    next.commit(machines);
    next
}

#[test]
fn a_write_names_the_version_it_read_and_a_second_lock_names_the_holder() {
    let (_memory, a, b) = two_backends(Duration::from_secs(30));
    let guard = a
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .expect("locks");
    assert!(a.read().expect("reads").is_none());
    let state = State::new();
    a.write(&state).expect("writes");
    let next = with_machine(&state, "web-01");
    a.append(&next.delta(state.serial, ["web-01"]))
        .expect("appends");
    assert_eq!(
        b.read().expect("reads"),
        Some(next.clone()),
        "the journal is remote"
    );

    match b.lock(LockInfo::new("plan"), Duration::ZERO) {
        Err(StateError::Locked {
            info: Some(info), ..
        }) => assert_eq!(info.id, guard.info().id),
        other => panic!("expected Locked naming the holder, got {other:?}"),
    }
    // A write behind the holder's back (here: a stale version) is refused, not overwritten.
    a.set_version(Some(Version("0".to_string())));
    assert!(matches!(a.write(&next), Err(StateError::Conflict { .. })));
    drop(guard);
    let _b = b
        .lock(LockInfo::new("plan"), Duration::ZERO)
        .expect("free after release");
}

#[test]
fn a_holder_whose_lease_ran_out_is_fenced_once_another_took_over() {
    let (memory, a, b) = two_backends(Duration::from_millis(300));
    let _guard = a
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .expect("locks");
    a.read().expect("reads");
    a.write(&State::new()).expect("writes");
    // The holder is cut off: its renewals no longer arrive (SIGSTOP is tested end to end).
    memory.cut_off.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(500));
    let taker = b
        .lock(LockInfo::new("apply"), Duration::from_secs(2))
        .expect("the lease ran out");
    let state = b.read().expect("reads").expect("a state");
    b.write(&with_machine(&state, "db-01"))
        .expect("the new holder writes");
    let error = a
        .write(&with_machine(&state, "web-01"))
        .expect_err("fenced");
    match &error {
        StateError::Fenced {
            info: Some(info), ..
        } => assert_eq!(info.id, taker.info().id),
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert!(error.to_string().contains("wrote nothing"), "{error}");
    let stored = b.read().expect("reads").expect("a state");
    assert!(stored.machines.contains_key("db-01") && !stored.machines.contains_key("web-01"));
}

#[test]
fn an_acquire_whose_answer_was_lost_is_retried_as_ours() {
    let (memory, a, b) = two_backends(Duration::from_secs(30));
    memory.lose_next_acquire.store(true, Ordering::SeqCst);
    let guard = a
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .expect("the retry finds the lock ours");
    assert_eq!(
        memory.row().epoch,
        1,
        "the retry did not count as a second acquisition"
    );
    a.read().expect("reads");
    a.write(&State::new())
        .expect("the holder writes at its epoch");
    assert!(matches!(
        b.lock(LockInfo::new("plan"), Duration::ZERO),
        Err(StateError::Locked { .. })
    ));
    drop(guard);
    assert!(memory.row().lock.is_none(), "released, not orphaned");
}

#[test]
fn unlock_needs_the_id_and_refuses_a_lease_still_renewed() {
    let (_memory, a, b) = two_backends(Duration::from_secs(30));
    assert!(matches!(b.unlock("x"), Err(StateError::NotLocked { .. })));
    let guard = a
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .expect("locks");
    let id = guard.info().id.clone();
    assert!(matches!(
        b.unlock("wrong"),
        Err(StateError::WrongLockId { .. })
    ));
    let error = b.unlock(&id).expect_err("live");
    assert!(matches!(error, StateError::LeaseRenewed { .. }), "{error}");
    assert!(error.to_string().contains("still being renewed"), "{error}");
}
