//! The remote state backends end to end, against a real PostgreSQL and a real Azurite on
//! loopback (see `servers.rs`): every guarantee of issue 13, each for both backends.
//!
//! - five concurrent applies: exactly one runs, the others fail at once naming the holder,
//!   and one started with `--lock-timeout` waits for it;
//! - the holder SIGKILLed mid-apply: the next apply waits out its lease, reconciles what it
//!   left pending by operation id, and converges, no operation started twice;
//! - the holder SIGSTOPped past its lease while another takes over: once SIGCONTed it writes
//!   nothing and stops, saying why;
//! - an acquire whose answer is lost, retried, is ours (not a lock held by a stranger);
//! - `state push` / `state pull` round-trip, refusing another lineage or an older serial;
//! - a saved plan made before another apply is refused as stale;
//! - no password or key appears in any output.

use std::process::{Child, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lifeboat_engine::state::remote::{
    Acquired, Holder, Lease, RemoteError, RemoteStore, Snapshot, Version,
};
use lifeboat_engine::state::{LockInfo, RemoteBackend, State, StateBackend, StateDelta};
use lifeboat_provider_sim::World;
use lifeboat_provider_sim::world::Event;

use crate::plan::Example;
use crate::servers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Azurite,
}

/// The example estate with its state in a fresh remote place (its own row or blob).
struct Estate {
    example: Example,
    kind: Kind,
    env: Vec<(&'static str, String)>,
    /// What must never appear in any output.
    secret: String,
    unique: String,
    lease: Duration,
}

impl Estate {
    fn new(kind: Kind, goal: &str) -> Self {
        let example = Example::open_window(goal);
        let unique = servers::uuid_like();
        let (block, env, secret, lease) = match kind {
            Kind::Postgres => {
                let server = servers::postgres();
                (
                    format!("state:\n  postgres:\n    name: test-{unique}\n    lease: 5s\n"),
                    server.env(),
                    server.password.clone(),
                    Duration::from_secs(5),
                )
            }
            Kind::Azurite => {
                let server = servers::azurite();
                (
                    format!(
                        "state:\n  azure_blob:\n    account_url: {}\n    container: lifeboat-tests\n    blob: test-{unique}.json\n    lease: 15s\n",
                        server.account_url()
                    ),
                    server.env(),
                    servers::AZURITE_KEY.to_string(),
                    Duration::from_secs(15),
                )
            }
        };
        let path = example.dir.path().join("lifeboat.yaml");
        let plan = std::fs::read_to_string(&path).expect("the plan");
        let plan = plan.replacen("provider:\n", &format!("{block}\nprovider:\n"), 1);
        std::fs::write(&path, plan).expect("write the plan");
        Self {
            example,
            kind,
            env,
            secret,
            unique,
            lease,
        }
    }

    fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        command
            .current_dir(self.example.dir.path())
            .env("NO_COLOR", "1");
        for name in [
            "DATABASE_URL",
            "AZURE_STORAGE_CONNECTION_STRING",
            "AZURE_STORAGE_KEY",
            "GITHUB_RUN_ID",
        ] {
            command.env_remove(name);
        }
        for (name, value) in &self.env {
            command.env(name, value);
        }
        command
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("lifeboat starts")
    }

    /// Both streams of a finished process, checked for secrets.
    fn text(&self, output: &Output) -> String {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !text.contains(&self.secret),
            "a secret appeared in the output:\n{text}"
        );
        text
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let output = self.command().args(args).output().expect("runs");
        (output.status.code(), self.text(&output))
    }

    fn world(&self) -> World {
        lifeboat_provider_sim::store::read(&self.example.world_path()).expect("the world reads")
    }

    /// Creates the world (and the remote state) with a `plan`, then slows the simulated
    /// operations down so that they are in flight long enough to interrupt.
    fn slow(&self, scale: f64) {
        let (code, text) = self.run(&["plan"]);
        assert_eq!(code, Some(0), "{text}");
        let mut world = self.world();
        world.timing.scale = scale;
        lifeboat_provider_sim::store::write(&self.example.world_path(), &world)
            .expect("the world writes");
    }

    fn pulled(&self) -> State {
        let (code, text) = self.run(&["state", "pull"]);
        assert_eq!(code, Some(0), "{text}");
        State::from_json(&text).expect("`state pull` prints a state")
    }

    /// Waits until the stored state records an operation in flight.
    fn wait_pending(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let (code, text) = self.run(&["state", "list", "--format", "json"]);
            if code == Some(0)
                && let Ok(rows) = serde_json::from_str::<Vec<serde_json::Value>>(&text)
                && rows.iter().any(|row| !row["pending"].is_null())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no operation became pending within a minute");
    }

    /// SIGSTOPs `child` at a moment it does not hold the simulated world's file lock (which
    /// the sim takes for each transaction): a paused process would otherwise keep every
    /// other one off the simulated sites, which a real provider's sites never are.
    fn stop_outside_the_world_lock(&self, child: &Child) {
        let lock = lifeboat_provider_sim::store::lock_path(&self.example.world_path());
        for _ in 0..200 {
            signal(child, "STOP");
            std::thread::sleep(Duration::from_millis(20));
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&lock)
                .expect("the world's lock file");
            if file.try_lock().is_ok() {
                let _ = file.unlock();
                return;
            }
            signal(child, "CONT");
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("the apply never let go of the world's lock");
    }

    fn assert_converged(&self) {
        let (code, text) = self.run(&["plan", "--detailed-exitcode"]);
        assert_eq!(code, Some(0), "plan after apply:\n{text}");
    }

    /// A store for this estate's state, built from the same variables the binary gets.
    fn store(&self) -> Arc<dyn RemoteStore> {
        let var = |name: &str| {
            self.env
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        };
        match self.kind {
            Kind::Postgres => Arc::new(
                lifeboat_state_remote::postgres::PostgresStore::from_vars(
                    &format!("test-{}", self.unique),
                    "lifeboat",
                    var,
                )
                .expect("a store"),
            ),
            Kind::Azurite => Arc::new(
                lifeboat_state_remote::azure_blob::AzureBlobStore::from_vars(
                    &servers::azurite().account_url(),
                    "lifeboat-tests",
                    &format!("test-{}.json", self.unique),
                    var,
                )
                .expect("a store"),
            ),
        }
    }
}

/// Every operation the simulated service started, per (machine, kind) and per id: each once.
fn assert_nothing_ran_twice(world: &World) -> usize {
    let mut by_work = std::collections::BTreeMap::new();
    let mut by_id = std::collections::HashMap::new();
    for entry in world.history.iter().filter(|h| h.event == Event::Started) {
        *by_work
            .entry((entry.machine.clone(), entry.kind))
            .or_insert(0) += 1;
        *by_id.entry(entry.operation.0.clone()).or_insert(0) += 1;
    }
    for (work, count) in &by_work {
        assert_eq!(*count, 1, "{work:?} was started {count} times");
    }
    for (id, count) in &by_id {
        assert_eq!(*count, 1, "operation `{id}` was started {count} times");
    }
    by_work.len()
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{name}");
}

/// Waits for every child on its own thread, timing each from `start`.
fn finish_all(children: Vec<Child>, start: Instant) -> Vec<(Output, Duration)> {
    let handles: Vec<_> = children
        .into_iter()
        .map(|child| {
            std::thread::spawn(move || {
                let output = child.wait_with_output().expect("ends");
                (output, start.elapsed())
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("no panic"))
        .collect()
}

fn five_concurrent_applies(kind: Kind) {
    let estate = Estate::new(kind, "reprotected");
    estate.slow(0.002); // a reprotect takes 2.4 s
    let start = Instant::now();
    let five: Vec<Child> = (0..5)
        .map(|_| estate.spawn(&["apply", "--auto-approve"]))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let waiter = estate.spawn(&["apply", "--auto-approve", "--lock-timeout", "2m"]);
    let results = finish_all(five, start);
    let (waited, _) = finish_all(vec![waiter], start).remove(0);

    let texts: Vec<String> = results.iter().map(|(o, _)| estate.text(o)).collect();
    let winners: Vec<usize> = (0..5).filter(|&i| results[i].0.status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one apply runs:\n{texts:#?}");
    let winner = &texts[winners[0]];
    assert!(
        winner.contains("Plan: 8 to reprotect") && winner.contains("Apply complete: 8 changes"),
        "the winner printed its plan, then carried it out:\n{winner}"
    );
    for (i, (output, elapsed)) in results.iter().enumerate() {
        if winners.contains(&i) {
            continue;
        }
        let text = &texts[i];
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains("is locked by") && text.contains("`apply`"),
            "a loser names the holder:\n{text}"
        );
        assert!(
            *elapsed < Duration::from_secs(15),
            "a loser fails at once, not after {elapsed:?}"
        );
    }
    let waited = estate.text(&waited);
    assert!(
        waited.contains("No changes"),
        "`--lock-timeout` waited for the holder, then found nothing to do:\n{waited}"
    );
    assert_eq!(assert_nothing_ran_twice(&estate.world()), 8);
    estate.assert_converged();
}

fn a_holder_killed_mid_apply_is_reconciled_after_its_lease(kind: Kind) {
    let estate = Estate::new(kind, "reprotected");
    estate.slow(0.004); // a reprotect takes 4.8 s
    let mut holder = estate.spawn(&["apply", "--auto-approve"]);
    estate.wait_pending();
    holder.kill().expect("SIGKILL");
    holder.wait().expect("reaped");

    // The lease outlives the process for a while: a second apply at once is refused.
    let (code, text) = estate.run(&["apply", "--auto-approve"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is locked by"), "{text}");

    // Waiting, it gets the lock once the lease ran out, and reconciles by operation id.
    let started = Instant::now();
    let (code, text) = estate.run(&["apply", "--auto-approve", "--lock-timeout", "2m"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains('⟳'),
        "what the killed run left pending is reconciled:\n{text}"
    );
    assert!(
        started.elapsed() < estate.lease + Duration::from_secs(20),
        "the lease expired by itself, in {:?}",
        started.elapsed()
    );
    assert_eq!(assert_nothing_ran_twice(&estate.world()), 8);
    let state = estate.pulled();
    assert!(state.machines.values().all(|m| m.pending.is_none()));
    estate.assert_converged();
}

fn a_holder_paused_past_its_lease_writes_nothing(kind: Kind) {
    let estate = Estate::new(kind, "reprotected");
    estate.slow(0.004);
    let paused = estate.spawn(&["apply", "--auto-approve"]);
    estate.wait_pending();
    estate.stop_outside_the_world_lock(&paused);

    let (code, text) = estate.run(&["apply", "--auto-approve", "--lock-timeout", "2m"]);
    if code != Some(0) {
        signal(&paused, "CONT");
    }
    assert_eq!(code, Some(0), "another took over after the lease:\n{text}");
    let after_takeover = estate.pulled();

    signal(&paused, "CONT");
    let output = paused.wait_with_output().expect("ends");
    let text = estate.text(&output);
    assert!(!output.status.success(), "the paused holder stops:\n{text}");
    assert!(
        text.contains("lost its lock") && text.contains("wrote nothing"),
        "it says why:\n{text}"
    );
    assert_eq!(
        estate.pulled(),
        after_takeover,
        "the paused holder wrote nothing"
    );
    assert_eq!(assert_nothing_ran_twice(&estate.world()), 8);
    estate.assert_converged();
}

/// A store whose first successful acquire is carried out but answered as lost, as a
/// connection that drops right after the server committed.
#[derive(Debug)]
struct LoseFirstAnswer {
    inner: Arc<dyn RemoteStore>,
    lost: AtomicBool,
}

#[async_trait::async_trait]
impl RemoteStore for LoseFirstAnswer {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn read(&self) -> Result<Snapshot, RemoteError> {
        self.inner.read().await
    }
    async fn acquire(&self, owner: &LockInfo, duration: Duration) -> Result<Acquired, RemoteError> {
        let answer = self.inner.acquire(owner, duration).await;
        if matches!(answer, Ok(Acquired::Ours { .. })) && !self.lost.swap(true, Ordering::SeqCst) {
            return Err(RemoteError::Unavailable("the answer was lost".to_string()));
        }
        answer
    }
    async fn renew(&self, lease: &Lease) -> Result<(), RemoteError> {
        self.inner.renew(lease).await
    }
    async fn release(&self, lease: &Lease) -> Result<(), RemoteError> {
        self.inner.release(lease).await
    }
    async fn write(
        &self,
        lease: &Lease,
        expected: Option<&Version>,
        state: &State,
    ) -> Result<Version, RemoteError> {
        self.inner.write(lease, expected, state).await
    }
    async fn append(
        &self,
        lease: &Lease,
        expected: &Version,
        delta: &StateDelta,
    ) -> Result<Version, RemoteError> {
        self.inner.append(lease, expected, delta).await
    }
    async fn compact(
        &self,
        lease: &Lease,
        expected: &Version,
        state: &State,
    ) -> Result<Version, RemoteError> {
        self.inner.compact(lease, expected, state).await
    }
    async fn holder(&self) -> Result<Option<Holder>, RemoteError> {
        self.inner.holder().await
    }
    async fn clear(&self, id: &str) -> Result<(), RemoteError> {
        self.inner.clear(id).await
    }
}

fn a_lost_acquire_answer_retried_is_ours(kind: Kind) {
    let estate = Estate::new(kind, "reprotected");
    let (code, text) = estate.run(&["plan"]);
    assert_eq!(code, Some(0), "{text}");
    let store = Arc::new(LoseFirstAnswer {
        inner: estate.store(),
        lost: AtomicBool::new(false),
    });
    let backend = RemoteBackend::new(store.clone(), estate.lease);
    let guard = backend
        .lock(LockInfo::new("apply"), Duration::ZERO)
        .expect("the retried acquire finds the lock its own, not held by a stranger");
    assert!(store.lost.load(Ordering::SeqCst), "an answer was lost");
    // The retry kept the epoch: this process can still write.
    let state = backend.read().expect("reads").expect("a state");
    backend
        .write(&state)
        .expect("the holder writes at its epoch");
    let (code, text) = estate.run(&["plan"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&guard.info().id), "held by us:\n{text}");
    drop(guard);
    let (code, text) = estate.run(&["plan"]);
    assert_eq!(code, Some(0), "released, not orphaned:\n{text}");
}

fn push_and_pull_round_trip(kind: Kind) {
    // A team's local state, moved to the remote backend.
    let local = Example::open_window("reprotected");
    let output = local
        .lifeboat()
        .args(["apply", "--auto-approve"])
        .output()
        .expect("runs");
    assert!(output.status.success());
    let local_file = local.dir.path().join(".lifeboat/state.json");
    let local_state =
        State::from_json(&std::fs::read_to_string(&local_file).expect("the local state"))
            .expect("valid");

    let estate = Estate::new(kind, "reprotected");
    let file = local_file.to_string_lossy().into_owned();
    let (code, text) = estate.run(&["state", "push", &file]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(estate.pulled(), local_state, "pull returns what was pushed");
    let (code, text) = estate.run(&["state", "push", &file]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("already holds"), "{text}");

    // An older serial of the same lineage, or another lineage, is refused unless forced.
    let dir = estate.example.dir.path();
    let mut older = local_state.clone();
    older.serial -= 1;
    std::fs::write(dir.join("older.json"), older.to_json()).expect("writes");
    let (code, text) = estate.run(&["state", "push", "older.json"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("newer than the file's"), "{text}");
    let other = State::new();
    std::fs::write(dir.join("other.json"), other.to_json()).expect("writes");
    let (code, text) = estate.run(&["state", "push", "other.json"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("lineage"), "{text}");
    let (code, text) = estate.run(&["state", "push", "other.json", "--force"]);
    assert_eq!(code, Some(0), "{text}");
    assert_eq!(estate.pulled(), other);
}

fn a_saved_plan_made_before_another_apply_is_stale(kind: Kind) {
    let estate = Estate::new(kind, "reprotected");
    let (code, text) = estate.run(&["plan", "--out", "saved.json"]);
    assert_eq!(code, Some(0), "{text}");
    // Another apply runs first; every event it prints carries a wall-clock timestamp.
    let (code, text) = estate.run(&["apply", "--auto-approve", "--format", "json"]);
    assert_eq!(code, Some(0), "{text}");
    let events: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(events[0]["event"], "plan", "the plan comes first: {text}");
    assert_eq!(
        events[0]["plan"]["summary"]["changes"]["reprotect"], 8,
        "{text}"
    );
    for event in &events {
        let stamp = event["timestamp"].as_str().expect("a timestamp");
        stamp
            .parse::<jiff::Timestamp>()
            .unwrap_or_else(|e| panic!("`{stamp}` is not RFC 3339: {e}"));
    }
    let (code, text) = estate.run(&["apply", "saved.json"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("is stale"), "{text}");
    assert_eq!(assert_nothing_ran_twice(&estate.world()), 8);
}

fn a_wrong_secret_is_refused_without_showing_it(kind: Kind) {
    let mut estate = Estate::new(kind, "reprotected");
    let wrong = "wrong-secret-d0e5c4a7";
    match kind {
        Kind::Postgres => {
            for (name, value) in &mut estate.env {
                if *name == "PGPASSWORD" {
                    *value = wrong.to_string();
                }
            }
        }
        // Azurite does not check keys (by design), so a key that is not even base64 is used.
        Kind::Azurite => {
            estate.env = vec![("AZURE_STORAGE_KEY", format!("{wrong}!"))];
        }
    }
    estate.secret = wrong.to_string();
    let (code, text) = estate.run(&["plan"]);
    assert_eq!(code, Some(1), "{text}");
    let reason = match kind {
        Kind::Postgres => "password authentication failed",
        Kind::Azurite => "AZURE_STORAGE_KEY",
    };
    assert!(text.contains(reason), "{text}");
}

/// The same tests for each backend, as separate tests so they run side by side.
macro_rules! for_backend {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            fn skip(test: &str) -> bool {
                servers::skipped(&format!("{}::{test}", stringify!($module)))
            }

            #[test]
            fn five_concurrent_applies_one_runs_the_others_name_the_holder_or_wait() {
                if !skip("five_concurrent_applies") {
                    five_concurrent_applies($kind);
                }
            }

            #[test]
            fn a_holder_killed_mid_apply_is_reconciled_after_its_lease_nothing_twice() {
                if !skip("killed") {
                    a_holder_killed_mid_apply_is_reconciled_after_its_lease($kind);
                }
            }

            #[test]
            fn a_holder_paused_past_its_lease_writes_nothing_after_another_took_over() {
                if !skip("paused") {
                    a_holder_paused_past_its_lease_writes_nothing($kind);
                }
            }

            #[test]
            fn a_lost_acquire_answer_retried_is_not_a_stale_lock() {
                if !skip("lost_acquire") {
                    a_lost_acquire_answer_retried_is_ours($kind);
                }
            }

            #[test]
            fn push_and_pull_round_trip_and_refuse_other_lineages_and_older_serials() {
                if !skip("push_pull") {
                    push_and_pull_round_trip($kind);
                }
            }

            #[test]
            fn a_saved_plan_made_before_another_apply_is_refused_as_stale() {
                if !skip("stale") {
                    a_saved_plan_made_before_another_apply_is_stale($kind);
                }
            }

            #[test]
            fn a_wrong_secret_is_refused_and_never_shown() {
                if !skip("wrong_secret") {
                    a_wrong_secret_is_refused_without_showing_it($kind);
                }
            }
        }
    };
}

for_backend!(postgres, Kind::Postgres);
for_backend!(azurite, Kind::Azurite);
