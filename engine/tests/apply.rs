//! Engine-level tests of the apply executor (DESIGN.md §4 step 7, §9).
//!
//! The executor runs against a fake provider whose operations `tokio::time::sleep` for a
//! configured duration. Every test runs on a paused tokio clock, so durations are virtual and
//! exact: a test can assert that an apply took precisely its critical path, or that a retry
//! waited precisely the provider's `Retry-After`, and still finish in milliseconds.
//!
//! Plans come from small YAML texts through the real loader, validator and planner, so the
//! DAG under test is the one `lifeboat apply` would walk.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeboat_engine::apply::{
    self, ApplyOptions, ApplyReport, Event, Journal, JournalError, RetryPolicy,
};
use lifeboat_engine::model::Recovery;
use lifeboat_engine::planner::{self, ExecutionPlan, Node, PlannedChange};
use lifeboat_engine::provider::facts::{AppliedSettings, Facts, MachineFacts};
use lifeboat_engine::provider::{
    OperationId, OperationKind, OperationOutcome, OperationRequest, OperationStatus, Provider,
    ProviderError, ProviderInfo, RefreshRequest, ReprotectSettings, Stage,
};
use lifeboat_engine::{SourceFile, load, validate};
use petgraph::graph::NodeIndex;
use tokio::time::Instant;

// ---------------------------------------------------------------------------------------------
// Plans
// ---------------------------------------------------------------------------------------------

/// Everything a plan needs besides its machines: one Linux master target on datastore `ds`.
fn plan_text(goal: &str, body: &str) -> String {
    format!(
        "version: 1\nname: t\nprovider: {{sim: {{world: w}}}}\ngoal: {goal}\n\
         site: {{vcenter: v, configuration_server: c, process_server: p}}\n\
         master_targets:\n  mt-l: {{os: linux, esxi_host: e, retention_drive: /r, datastores: [ds]}}\n\
         {body}"
    )
}

/// Loads, validates and plans `body` with the given facts per machine. The plan must be valid:
/// a test about the executor must not silently run on a plan the validator rejected.
fn build_with(goal: &str, body: &str, fact: impl Fn(&str) -> MachineFacts) -> ExecutionPlan {
    let file = SourceFile::new("t.yaml", "t.yaml", plan_text(goal, body));
    let plan = load::load_plan(&file).expect("the test plan loads");
    let validation = validate::validate(&plan);
    assert!(
        !validation.has_errors(),
        "the test plan is invalid: {:?}",
        validation.diagnostics
    );
    let mut facts = Facts::default();
    for name in plan.machines.names() {
        facts.machines.insert(name.to_string(), fact(name));
    }
    planner::build(&plan, &validation, &facts, &[]).expect("no cycle")
}

/// Every machine failed over: each gets reprotect → failback (→ commit) depending on `goal`.
fn build(goal: &str, body: &str) -> ExecutionPlan {
    build_with(goal, body, |_| MachineFacts::unknown(Stage::FailedOver))
}

/// `n` machines with no group, boot order or dependency between them.
fn independent_machines(n: usize) -> String {
    let mut body = String::from("machines:\n");
    for i in 0..n {
        body.push_str(&format!("  m{i}: {{os: linux, datastore: ds}}\n"));
    }
    body
}

/// A plan with every kind of edge: a replication group (`g1`, `g2`), two boot groups, a
/// `depends_on` (`app` on `g1`) and a machine outside all of them (`solo`).
const RICH: &str = "machines:
  dc: {os: linux, datastore: ds}
  g1: {os: linux, datastore: ds}
  g2: {os: linux, datastore: ds}
  app: {os: linux, datastore: ds, depends_on: [g1]}
  solo: {os: linux, datastore: ds}
replication_groups:
  g: {machines: [g1, g2]}
boot_order:
  - name: first
    machines: [dc]
  - name: second
    machines: [g1, g2, app]
";

/// Durations for [`RICH`], chosen so that every kind of edge matters: `g2`'s long reprotect
/// holds back `g1`'s failback (group), `dc`'s failback holds back the second boot group, and
/// `app`'s failback waits for `g1`'s long failback (`depends_on`). An executor ignoring any
/// one edge would start something early. Critical path: g2 reprotect (40) → g1 failback (20)
/// → app failback (6) → app commit (7) = 73 s.
fn rich_durations(fake: &mut Fake) {
    let table = [
        ("dc", [30, 5, 2]),
        ("g1", [10, 20, 3]),
        ("g2", [40, 4, 1]),
        ("app", [5, 6, 7]),
        ("solo", [15, 15, 15]),
    ];
    for (machine, secs) in table {
        let kinds = [
            OperationKind::Reprotect,
            OperationKind::Failback,
            OperationKind::Commit,
        ];
        for (kind, s) in kinds.into_iter().zip(secs) {
            fake.duration(machine, kind, Duration::from_secs(s));
        }
    }
}

fn change_ids(plan: &ExecutionPlan) -> Vec<String> {
    plan.changes.iter().map(|c| c.id.clone()).collect()
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

// ---------------------------------------------------------------------------------------------
// The fake provider and journal
// ---------------------------------------------------------------------------------------------

/// One provider call, as the fake saw it (virtual times).
#[derive(Debug, Clone)]
struct Call {
    id: OperationId,
    machine: String,
    kind: OperationKind,
    start: Instant,
    end: Instant,
    reprotect: Option<ReprotectSettings>,
    ok: bool,
}

/// Journal and provider steps in the order they happened, to check write-ahead ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Before(String),
    RunStart(String),
    RunEnd(String),
    After(String),
}

type Trace = Arc<Mutex<Vec<Step>>>;

type Key = (String, OperationKind);

/// A provider whose operations take a configured (virtual) time and fail as scripted.
#[derive(Debug, Default)]
struct Fake {
    durations: HashMap<Key, Duration>,
    /// Errors returned by the next calls, in order; once used up, calls succeed.
    script: Mutex<HashMap<Key, VecDeque<ProviderError>>>,
    /// An error returned by every call, for ever.
    forever: HashMap<Key, ProviderError>,
    calls: Mutex<Vec<Call>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    trace: Trace,
    /// The provider's own concurrency limit, if any.
    limit: Option<usize>,
    /// Calls that panic (a bug in a provider), before they are sent anywhere.
    panics: HashSet<Key>,
}

fn key(machine: &str, kind: OperationKind) -> Key {
    (machine.to_string(), kind)
}

impl Fake {
    fn duration(&mut self, machine: &str, kind: OperationKind, duration: Duration) {
        self.durations.insert(key(machine, kind), duration);
    }

    fn fail(&mut self, machine: &str, kind: OperationKind, error: ProviderError) {
        self.script
            .get_mut()
            .expect("script lock")
            .entry(key(machine, kind))
            .or_default()
            .push_back(error);
    }

    fn fail_forever(&mut self, machine: &str, kind: OperationKind, error: ProviderError) {
        self.forever.insert(key(machine, kind), error);
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    fn calls_to(&self, machine: &str, kind: OperationKind) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.machine == machine && c.kind == kind)
            .collect()
    }

    fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Provider for Fake {
    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "fake",
            identity: "apply tests".to_string(),
        }
    }

    fn max_concurrency(&self) -> Option<usize> {
        self.limit
    }

    async fn refresh(&self, _: &RefreshRequest) -> Result<Facts, ProviderError> {
        Err(ProviderError::permanent(None, "apply never refreshes"))
    }

    async fn run(&self, request: &OperationRequest) -> Result<OperationOutcome, ProviderError> {
        let start = Instant::now();
        let k = key(&request.machine, request.kind);
        assert!(!self.panics.contains(&k), "the fake provider panics here");
        let id = request.id.0.clone();
        self.trace
            .lock()
            .expect("trace lock")
            .push(Step::RunStart(id.clone()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);

        let scripted = self
            .script
            .lock()
            .expect("script lock")
            .get_mut(&k)
            .and_then(VecDeque::pop_front);
        let outcome = match scripted.or_else(|| self.forever.get(&k).cloned()) {
            // A refused call returns at once, as a throttled or conflicting request does.
            Some(error) => Err(error),
            None => {
                let duration = self.durations.get(&k).copied().unwrap_or_default();
                tokio::time::sleep(duration).await;
                Ok(OperationOutcome {
                    id: request.id.clone(),
                    stage: request.kind.to_stage(),
                })
            }
        };

        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.calls.lock().expect("calls lock").push(Call {
            id: request.id.clone(),
            machine: request.machine.clone(),
            kind: request.kind,
            start,
            end: Instant::now(),
            reprotect: request.reprotect.clone(),
            ok: outcome.is_ok(),
        });
        self.trace
            .lock()
            .expect("trace lock")
            .push(Step::RunEnd(id));
        outcome
    }

    async fn status(&self, _: &OperationId) -> Result<OperationStatus, ProviderError> {
        Ok(OperationStatus::Unknown)
    }
}

/// Records `before`/`after` into the same trace as the fake's calls.
#[derive(Debug)]
struct RecordingJournal {
    trace: Trace,
}

#[async_trait::async_trait]
impl Journal for RecordingJournal {
    async fn before(&self, _: &PlannedChange, operation: &OperationId) -> Result<(), JournalError> {
        self.trace
            .lock()
            .expect("trace lock")
            .push(Step::Before(operation.0.clone()));
        Ok(())
    }

    async fn after(
        &self,
        _: &PlannedChange,
        operation: &OperationId,
        _: &Result<OperationOutcome, ProviderError>,
    ) -> Result<(), JournalError> {
        self.trace
            .lock()
            .expect("trace lock")
            .push(Step::After(operation.0.clone()));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Running the executor
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Outcome {
    report: ApplyReport,
    events: Vec<Event>,
    /// Virtual time the whole `execute` took.
    elapsed: Duration,
    /// Operation id of each started change.
    operation_of: HashMap<String, String>,
}

impl Outcome {
    fn retries(&self, change: &str) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Retrying {
                    change: c, wait_ms, ..
                } if c == change => Some(*wait_ms),
                _ => None,
            })
            .collect()
    }

    fn started(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Started { change, .. } => Some(change.clone()),
                _ => None,
            })
            .collect()
    }

    fn failed_ids(&self) -> Vec<String> {
        self.report
            .failed
            .iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn error_of(&self, change: &str) -> &ProviderError {
        &self
            .report
            .failed
            .iter()
            .find(|(id, _)| id == change)
            .unwrap_or_else(|| panic!("`{change}` did not fail: {:?}", self.report))
            .1
    }
}

async fn execute(plan: &ExecutionPlan, fake: Fake, options: &ApplyOptions) -> (Outcome, Arc<Fake>) {
    execute_interrupted(plan, fake, options, usize::MAX).await
}

/// Runs the plan; `interrupt_after` starts, `interrupted` turns true (as Ctrl-C would).
async fn execute_interrupted(
    plan: &ExecutionPlan,
    fake: Fake,
    options: &ApplyOptions,
    interrupt_after: usize,
) -> (Outcome, Arc<Fake>) {
    let fake = Arc::new(fake);
    let journal = Arc::new(RecordingJournal {
        trace: fake.trace.clone(),
    });
    let events: Arc<Mutex<Vec<Event>>> = Arc::default();
    let starts = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let on_event = {
        let events = events.clone();
        let starts = starts.clone();
        let stop = stop.clone();
        Arc::new(move |event: Event| {
            if matches!(event, Event::Started { .. })
                && starts.fetch_add(1, Ordering::SeqCst) + 1 >= interrupt_after
            {
                stop.store(true, Ordering::SeqCst);
            }
            events.lock().expect("events lock").push(event);
        })
    };
    let interrupted = move || stop.load(Ordering::SeqCst);

    let begin = Instant::now();
    let report = apply::execute(plan, fake.clone(), journal, options, on_event, &interrupted).await;
    let elapsed = begin.elapsed();

    let events = events.lock().expect("events lock").clone();
    let operation_of = events
        .iter()
        .filter_map(|e| match e {
            Event::Started { change, operation } => Some((change.clone(), operation.clone())),
            _ => None,
        })
        .collect();
    let outcome = Outcome {
        report,
        events,
        elapsed,
        operation_of,
    };
    assert_write_ahead(&fake);
    assert_accounted_for(plan, &outcome);
    (outcome, fake)
}

/// Write-ahead (DESIGN.md §4 step 7): every operation sent to the provider was recorded
/// before its first call and its outcome after its last one (retries reuse the id).
fn assert_write_ahead(fake: &Fake) {
    let trace = fake.trace.lock().expect("trace lock").clone();
    let position = |step: &Step| trace.iter().position(|s| s == step);
    let last_position = |step: &Step| trace.iter().rposition(|s| s == step);
    let sent: HashSet<String> = trace
        .iter()
        .filter_map(|s| match s {
            Step::RunStart(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    for id in sent {
        let before = position(&Step::Before(id.clone()))
            .unwrap_or_else(|| panic!("`{id}` was sent without a write-ahead record"));
        let first_run = position(&Step::RunStart(id.clone())).expect("sent");
        let last_end = last_position(&Step::RunEnd(id.clone()))
            .unwrap_or_else(|| panic!("`{id}` never returned"));
        let after = last_position(&Step::After(id.clone()))
            .unwrap_or_else(|| panic!("the outcome of `{id}` was never recorded"));
        assert!(before < first_run, "`{id}`: recorded after it was sent");
        assert!(last_end < after, "`{id}`: outcome recorded before it came");
    }
}

/// Every change ends in exactly one of succeeded, failed, skipped and not started.
fn assert_accounted_for(plan: &ExecutionPlan, outcome: &Outcome) {
    let report = &outcome.report;
    let mut seen: Vec<String> = report.succeeded.clone();
    seen.extend(report.failed.iter().map(|(id, _)| id.clone()));
    seen.extend(report.skipped.iter().map(|(id, _)| id.clone()));
    seen.extend(report.not_started.iter().cloned());
    seen.extend(report.held.iter().map(|(id, _)| id.clone()));
    seen.extend(report.paused.iter().map(|(id, _)| id.clone()));
    let mut all = change_ids(plan);
    all.extend(plan.steps.iter().map(|s| s.id.clone()));
    assert_eq!(
        sorted(seen),
        sorted(all),
        "every change and step must be reported exactly once"
    );
}

/// Options with unlimited parallelism and quick retries.
fn options() -> ApplyOptions {
    ApplyOptions {
        parallelism: 1000,
        retry: RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            deadline: Duration::from_secs(60),
        },
        ..ApplyOptions::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Graph helpers
// ---------------------------------------------------------------------------------------------

fn node_of_change(plan: &ExecutionPlan, id: &str) -> NodeIndex {
    plan.graph
        .node_indices()
        .find(|&n| matches!(plan.graph[n], Node::Change(i) if plan.changes[i].id == id))
        .unwrap_or_else(|| panic!("no node for `{id}`"))
}

/// The changes `n` transitively waits for, looking through checkpoints.
fn change_ancestors(plan: &ExecutionPlan, n: NodeIndex) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut out = HashSet::new();
    let mut stack: Vec<NodeIndex> = plan
        .graph
        .neighbors_directed(n, petgraph::Incoming)
        .collect();
    while let Some(p) = stack.pop() {
        if !seen.insert(p) {
            continue;
        }
        if let Node::Change(i) = plan.graph[p] {
            out.insert(plan.changes[i].id.clone());
        }
        stack.extend(plan.graph.neighbors_directed(p, petgraph::Incoming));
    }
    out
}

/// The longest path through the DAG, weighting each change with its duration (checkpoints
/// take no time): the least time any executor needs with unlimited parallelism.
fn critical_path(plan: &ExecutionPlan, duration: impl Fn(&PlannedChange) -> Duration) -> Duration {
    let order = petgraph::algo::toposort(&plan.graph, None).expect("the plan's DAG is acyclic");
    let mut finish: HashMap<NodeIndex, Duration> = HashMap::new();
    for n in order {
        let ready = plan
            .graph
            .neighbors_directed(n, petgraph::Incoming)
            .map(|p| finish[&p])
            .max()
            .unwrap_or_default();
        let own = match plan.graph[n] {
            Node::Change(i) => duration(&plan.changes[i]),
            Node::Checkpoint(_) | Node::Step(_) => Duration::ZERO,
        };
        finish.insert(n, ready + own);
    }
    finish.into_values().max().unwrap_or_default()
}

fn has_checkpoint(plan: &ExecutionPlan, label: &str) -> bool {
    plan.graph
        .node_weights()
        .any(|n| matches!(n, Node::Checkpoint(l) if l == label))
}

// ---------------------------------------------------------------------------------------------
// 1. Order: each change once, after everything it depends on
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn every_change_runs_once_after_all_its_predecessors() {
    let plan = build("committed", RICH);
    // The plan really has the edges this test is about.
    assert!(has_checkpoint(&plan, "group.g reprotected"));
    assert!(has_checkpoint(&plan, "boot group `first` failed back"));
    assert!(has_checkpoint(&plan, "boot group `second` failed back"));
    assert!(
        change_ancestors(&plan, node_of_change(&plan, "failback machine.app"))
            .contains("failback machine.g1"),
        "`depends_on` orders app's failback after g1's"
    );

    let mut fake = Fake::default();
    rich_durations(&mut fake);
    let (outcome, fake) = execute(&plan, fake, &options()).await;

    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    assert_eq!(sorted(outcome.started()), sorted(change_ids(&plan)));
    let calls = fake.calls();
    assert_eq!(
        calls.len(),
        plan.changes.len(),
        "one provider call per change"
    );

    let call_of = |change: &str| -> &Call {
        let operation = &outcome.operation_of[change];
        let mut matching = calls.iter().filter(|c| &c.id.0 == operation);
        let call = matching
            .next()
            .unwrap_or_else(|| panic!("`{change}` was never sent"));
        assert!(matching.next().is_none(), "`{change}` was sent twice");
        call
    };
    for change in &plan.changes {
        let call = call_of(&change.id);
        assert_eq!(call.machine, change.machine());
        assert_eq!(Some(call.kind), change.action.operation());
        assert!(call.ok, "`{}` was not refused", change.id);
        for before in change_ancestors(&plan, node_of_change(&plan, &change.id)) {
            let predecessor = call_of(&before);
            assert!(
                predecessor.end <= call.start,
                "`{}` started {:?} before `{before}` finished",
                change.id,
                predecessor.end - call.start
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Parallelism
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn parallelism_bounds_the_operations_in_flight() {
    let plan = build("committed", &independent_machines(8));
    let equal_durations = || {
        let mut fake = Fake::default();
        for i in 0..8 {
            for kind in OperationKind::ALL {
                fake.duration(&format!("m{i}"), kind, Duration::from_secs(10));
            }
        }
        fake
    };

    let three = ApplyOptions {
        parallelism: 3,
        ..options()
    };
    let (outcome, fake) = execute(&plan, equal_durations(), &three).await;
    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    assert_eq!(fake.max_in_flight(), 3);
    // 24 operations of 10 s, 3 at a time, cannot take less than 80 s; starting the longest
    // remaining chain first reaches that bound.
    assert!(outcome.elapsed >= Duration::from_secs(80));
    assert!(
        outcome.elapsed <= Duration::from_secs(90),
        "{:?}",
        outcome.elapsed
    );

    let ten = ApplyOptions {
        parallelism: 10,
        ..options()
    };
    let (outcome, fake) = execute(&plan, equal_durations(), &ten).await;
    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    assert_eq!(fake.max_in_flight(), 8, "only 8 machines can be in flight");
    assert_eq!(outcome.elapsed, Duration::from_secs(30));

    // A provider's own limit wins over a larger `--parallelism`.
    let mut limited = equal_durations();
    limited.limit = Some(2);
    let (outcome, fake) = execute(&plan, limited, &ten).await;
    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    assert_eq!(fake.max_in_flight(), 2, "the provider allows 2 at once");
}

// ---------------------------------------------------------------------------------------------
// 3. Critical path (DESIGN.md §9: within 10% of the critical-path lower bound)
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn unlimited_parallelism_takes_exactly_the_critical_path() {
    let plan = build("committed", RICH);
    let mut fake = Fake::default();
    rich_durations(&mut fake);
    let durations = fake.durations.clone();
    let critical = critical_path(&plan, |change| {
        let kind = change.action.operation().expect("no release here");
        durations[&key(change.machine(), kind)]
    });
    // Worked out by hand in `rich_durations`, so a wrong `critical_path` cannot hide a bug.
    assert_eq!(critical, Duration::from_secs(73));

    let (outcome, _) = execute(&plan, fake, &options()).await;
    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    assert_eq!(outcome.elapsed, critical, "virtual time is exact");

    let reported = outcome.report.elapsed.as_secs_f64();
    let bound = critical.as_secs_f64();
    assert!(
        (reported - bound).abs() <= bound * 0.1,
        "report.elapsed is {:?}, the critical path {critical:?}",
        outcome.report.elapsed
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Transient errors and Retry-After
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_until_success() {
    let plan = build("reprotected", &independent_machines(1));
    let mut fake = Fake::default();
    for _ in 0..2 {
        fake.fail(
            "m0",
            OperationKind::Reprotect,
            ProviderError::transient(Some("429".to_string()), "throttled"),
        );
    }
    let (outcome, fake) = execute(&plan, fake, &options()).await;

    assert_eq!(outcome.report.succeeded, ["reprotect machine.m0"]);
    assert_eq!(outcome.retries("reprotect machine.m0").len(), 2);
    let calls = fake.calls_to("m0", OperationKind::Reprotect);
    assert_eq!(calls.len(), 3);
    // A retry is the same operation: the provider de-duplicates by id (crash safety).
    assert!(calls.iter().all(|c| c.id == calls[0].id));
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let plan = build("reprotected", &independent_machines(1));
    let mut fake = Fake::default();
    // 7 s is well outside what the backoff would wait (1 s to 2 s with jitter).
    fake.fail(
        "m0",
        OperationKind::Reprotect,
        ProviderError::transient(None, "agent not registered yet")
            .with_retry_after(Duration::from_secs(7)),
    );
    let (outcome, fake) = execute(&plan, fake, &options()).await;

    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    assert_eq!(outcome.retries("reprotect machine.m0"), [7000]);
    let calls = fake.calls_to("m0", OperationKind::Reprotect);
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].start - calls[0].end, Duration::from_secs(7));
}

// ---------------------------------------------------------------------------------------------
// 5. The retry deadline
// ---------------------------------------------------------------------------------------------

const DEADLINE: Duration = Duration::from_secs(30);

fn deadline_options() -> ApplyOptions {
    ApplyOptions {
        retry: RetryPolicy {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            deadline: DEADLINE,
        },
        ..options()
    }
}

#[tokio::test(start_paused = true)]
async fn transient_errors_for_ever_fail_at_the_deadline() {
    let plan = build("committed", &independent_machines(1));
    let mut fake = Fake::default();
    fake.fail_forever(
        "m0",
        OperationKind::Reprotect,
        ProviderError::transient(Some("500".to_string()), "server error"),
    );
    let (outcome, fake) = execute(&plan, fake, &deadline_options()).await;

    assert_eq!(outcome.failed_ids(), ["reprotect machine.m0"]);
    assert!(outcome.error_of("reprotect machine.m0").is_transient());
    // The deadline bounds the total wait (`RetryPolicy::deadline`): the executor gives up
    // when the next wait would pass it, so it fails inside the deadline but no earlier than
    // one jittered maximum delay (2 × 4 s) before it.
    let calls = fake.calls_to("m0", OperationKind::Reprotect);
    assert!(calls.iter().all(|c| !c.ok));
    let waited = calls.last().expect("called").end - calls[0].start;
    assert!(waited <= DEADLINE, "waited {waited:?}, past the deadline");
    assert!(
        waited >= DEADLINE - 2 * Duration::from_secs(4),
        "gave up after {waited:?}, well before the deadline"
    );
    assert_eq!(
        outcome.retries("reprotect machine.m0").len(),
        calls.len() - 1
    );
    assert_eq!(
        sorted(
            outcome
                .report
                .skipped
                .iter()
                .map(|(id, _)| id.clone())
                .collect()
        ),
        ["commit machine.m0", "failback machine.m0"]
    );
}

/// The executor's own comment: "The provider's `Retry-After` replaces the backoff's delay, but
/// never revives a retry the backoff has given up on (the deadline is the deadline)".
#[tokio::test(start_paused = true)]
async fn retry_after_does_not_extend_the_deadline() {
    let plan = build("reprotected", &independent_machines(1));
    let mut fake = Fake::default();
    fake.fail_forever(
        "m0",
        OperationKind::Reprotect,
        ProviderError::transient(Some("429".to_string()), "throttled")
            .with_retry_after(Duration::from_secs(10)),
    );
    let (outcome, fake) = execute(&plan, fake, &deadline_options()).await;

    assert_eq!(outcome.failed_ids(), ["reprotect machine.m0"]);
    let calls = fake.calls_to("m0", OperationKind::Reprotect);
    let waited = calls.last().expect("called").end - calls[0].start;
    assert!(
        waited <= DEADLINE,
        "waited {waited:?} over {} retries of 10 s with a {DEADLINE:?} deadline",
        calls.len() - 1
    );
}

/// A provider may ask for any `Retry-After`; a huge one after a short one must end the
/// retries at the deadline, not overflow the executor's running total.
#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_fails_at_the_deadline_without_overflow() {
    let plan = build("reprotected", &independent_machines(1));
    let mut fake = Fake::default();
    fake.fail(
        "m0",
        OperationKind::Reprotect,
        ProviderError::transient(Some("429".to_string()), "throttled")
            .with_retry_after(Duration::from_secs(1)),
    );
    fake.fail_forever(
        "m0",
        OperationKind::Reprotect,
        ProviderError::transient(Some("429".to_string()), "throttled")
            .with_retry_after(Duration::MAX),
    );
    let (outcome, fake) = execute(&plan, fake, &deadline_options()).await;

    assert_eq!(outcome.failed_ids(), ["reprotect machine.m0"]);
    assert!(outcome.error_of("reprotect machine.m0").is_transient());
    assert_eq!(fake.calls_to("m0", OperationKind::Reprotect).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// 6. A permanent failure skips its dependents and nothing else
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_skips_exactly_its_dependents() {
    let body = "machines:
  early: {os: linux, datastore: ds}
  g1: {os: linux, datastore: ds}
  g2: {os: linux, datastore: ds}
  g3: {os: linux, datastore: ds}
  late: {os: linux, datastore: ds}
  solo: {os: linux, datastore: ds}
replication_groups:
  g: {machines: [g1, g2, g3]}
boot_order:
  - name: one
    machines: [early]
  - name: two
    machines: [g1, g2, g3]
  - name: three
    machines: [late]
";
    let plan = build("committed", body);
    let mut fake = Fake::default();
    for machine in ["early", "g1", "g2", "g3", "late", "solo"] {
        for kind in OperationKind::ALL {
            fake.duration(machine, kind, Duration::from_secs(5));
        }
    }
    fake.fail(
        "g2",
        OperationKind::Reprotect,
        ProviderError::permanent(Some("78093".to_string()), "the master target is full"),
    );
    let (outcome, _) = execute(&plan, fake, &options()).await;
    let report = &outcome.report;

    let cause = "reprotect machine.g2";
    assert_eq!(outcome.failed_ids(), [cause], "one root cause");
    assert_eq!(outcome.error_of(cause).code(), Some("78093"));

    let expected_skipped = [
        "failback machine.g1",
        "failback machine.g2",
        "failback machine.g3",
        "commit machine.g1",
        "commit machine.g2",
        "commit machine.g3",
        "failback machine.late",
        "commit machine.late",
    ];
    let mut skipped: Vec<(String, String)> = report.skipped.clone();
    skipped.sort();
    let mut expected: Vec<(String, String)> = expected_skipped
        .iter()
        .map(|id| (id.to_string(), cause.to_string()))
        .collect();
    expected.sort();
    assert_eq!(skipped, expected);
    for (id, because) in &report.skipped {
        assert!(
            outcome.events.contains(&Event::Skipped {
                change: id.clone(),
                because: because.clone(),
            }),
            "no skipped event for `{id}`"
        );
    }

    let expected_succeeded = [
        "reprotect machine.early",
        "failback machine.early",
        "commit machine.early",
        "reprotect machine.g1",
        "reprotect machine.g3",
        "reprotect machine.late",
        "reprotect machine.solo",
        "failback machine.solo",
        "commit machine.solo",
    ];
    assert_eq!(
        sorted(report.succeeded.clone()),
        sorted(expected_succeeded.iter().map(|s| s.to_string()).collect())
    );
    assert!(report.not_started.is_empty());
}

// ---------------------------------------------------------------------------------------------
// 7. A process-server switch, and no replace
// ---------------------------------------------------------------------------------------------

fn reprotected_through(mt: &str, ps: &str) -> MachineFacts {
    MachineFacts {
        settings: Some(AppliedSettings {
            master_target: Some(mt.to_string()),
            process_server: Some(ps.to_string()),
            datastore: Some("ds".to_string()),
            retention_drive: Some("/r".to_string()),
            recovery: Some(Recovery::Original),
        }),
        ..MachineFacts::unknown(Stage::Reprotected)
    }
}

/// `m0` replicates through process server `p-old`, the plan says `p`: a
/// `switch-process-server` comes before the failback, and sends the plan's process server.
#[tokio::test(start_paused = true)]
async fn a_process_server_change_is_switched_before_the_failback() {
    let plan = build_with("committed", &independent_machines(1), |_| {
        reprotected_through("mt-l", "p-old")
    });
    assert_eq!(
        change_ids(&plan),
        [
            "switch-process-server machine.m0",
            "failback machine.m0",
            "commit machine.m0"
        ]
    );
    assert!(
        !plan.changes[0].risk.is_dangerous(),
        "no resync, no downtime"
    );
    let (outcome, fake) = execute(&plan, Fake::default(), &options()).await;

    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    let calls = fake.calls_to("m0", OperationKind::SwitchProcessServer);
    assert_eq!(calls.len(), 1);
    let sent = calls[0]
        .reprotect
        .as_ref()
        .expect("a switch sends settings");
    assert_eq!(sent.process_server, "p", "the plan's process server");
    assert_eq!(sent.master_target, "mt-l");
}

/// A reprotected machine whose master target differs from the plan gets no change for it:
/// ASR cannot change it (preflight reports `preflight::locked-setting`), and there is no
/// `replace` any more.
#[test]
fn a_locked_setting_is_never_a_change() {
    let plan = build_with("committed", &independent_machines(1), |_| {
        reprotected_through("mt-old", "p")
    });
    assert_eq!(
        change_ids(&plan),
        ["failback machine.m0", "commit machine.m0"]
    );
}

// ---------------------------------------------------------------------------------------------
// 8. Maintenance window
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn failbacks_outside_the_window_fail_and_reprotects_run() {
    let plan = build("committed", &independent_machines(2));
    // The window check reads the wall clock (jiff), not tokio's: put the window well in the
    // past so that the paused clock cannot matter.
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let past = ApplyOptions {
        window: Some((
            now.checked_sub(hour * 3).expect("in range"),
            now.checked_sub(hour * 2).expect("in range"),
        )),
        ..options()
    };
    let (outcome, fake) = execute(&plan, Fake::default(), &past).await;
    let report = &outcome.report;

    assert_eq!(
        sorted(report.succeeded.clone()),
        ["reprotect machine.m0", "reprotect machine.m1"]
    );
    assert_eq!(
        sorted(outcome.failed_ids()),
        ["failback machine.m0", "failback machine.m1"]
    );
    for (id, error) in &report.failed {
        assert!(
            error.message.contains("maintenance window"),
            "`{id}`: {}",
            error.message
        );
    }
    assert_eq!(
        sorted(report.skipped.iter().map(|(id, _)| id.clone()).collect()),
        ["commit machine.m0", "commit machine.m1"]
    );
    assert!(
        fake.calls()
            .iter()
            .all(|c| c.kind == OperationKind::Reprotect),
        "no failback may reach the provider outside the window"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Interruption
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_interruption_stops_new_starts_and_lets_running_ones_finish() {
    let plan = build("committed", &independent_machines(5));
    for after in [1, 3] {
        let mut fake = Fake::default();
        for i in 0..5 {
            fake.duration(
                &format!("m{i}"),
                OperationKind::Reprotect,
                Duration::from_secs(10),
            );
        }
        let (outcome, fake) = execute_interrupted(&plan, fake, &options(), after).await;
        let report = &outcome.report;

        let started = outcome.started();
        assert_eq!(started.len(), after, "no start after the interruption");
        // The running operations were awaited, not abandoned: each finished at the provider.
        assert_eq!(sorted(report.succeeded.clone()), sorted(started.clone()));
        assert_eq!(fake.calls().len(), after);
        assert_eq!(outcome.elapsed, Duration::from_secs(10));
        assert!(report.failed.is_empty() && report.skipped.is_empty());
        let rest: Vec<String> = change_ids(&plan)
            .into_iter()
            .filter(|id| !started.contains(id))
            .collect();
        assert_eq!(sorted(report.not_started.clone()), sorted(rest));
        assert!(!report.is_success());
    }
}

/// A provider task that panics is its change's failure, a root cause with its own code: what
/// depends on it is skipped and the independent machines finish.
#[tokio::test(start_paused = true)]
async fn a_provider_task_that_panics_is_a_root_cause_not_an_abort() {
    let plan = build("failed-back", &independent_machines(3));
    let mut fake = Fake::default();
    fake.panics.insert(key("m1", OperationKind::Reprotect));
    let (outcome, _) = execute(&plan, fake, &options()).await;

    assert_eq!(outcome.failed_ids(), ["reprotect machine.m1"]);
    let error = outcome.error_of("reprotect machine.m1");
    assert_eq!(error.code.as_deref(), Some("apply::task-panicked"));
    assert!(error.message.contains("panicked"), "{}", error.message);
    assert_eq!(
        outcome.report.skipped,
        [(
            "failback machine.m1".to_string(),
            "reprotect machine.m1".to_string()
        )]
    );
    assert_eq!(outcome.report.succeeded.len(), 4, "{:?}", outcome.report);
}

// ---------------------------------------------------------------------------------------------
// The failback night: the window, boot groups that would overrun it, steps, failure policy
// ---------------------------------------------------------------------------------------------

/// Two boot groups of one machine each, `first` then `second`, with `extra` added to the
/// second group's entry (steps, `on_failure`) and to the first's (`first_extra`).
fn two_groups(first_extra: &str, second_extra: &str) -> String {
    format!(
        "machines:\n  a: {{os: linux, datastore: ds}}\n  b: {{os: linux, datastore: ds}}\n\
         boot_order:\n  - name: first\n    machines: [a]\n{first_extra}  - name: second\n    machines: [b]\n{second_extra}"
    )
}

/// A window starting `start` and ending `end` from now (negative: in the past).
fn window(start: i64, end: i64) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    let now = jiff::Timestamp::now();
    let at = |s: i64| {
        now.checked_add(jiff::SignedDuration::from_secs(s))
            .expect("in range")
    };
    Some((at(start), at(end)))
}

fn timed(reprotect: u64, failback: u64, commit: u64) -> Fake {
    let mut fake = Fake::default();
    for machine in ["a", "b"] {
        fake.duration(
            machine,
            OperationKind::Reprotect,
            Duration::from_secs(reprotect),
        );
        fake.duration(
            machine,
            OperationKind::Failback,
            Duration::from_secs(failback),
        );
        fake.duration(machine, OperationKind::Commit, Duration::from_secs(commit));
    }
    fake
}

#[tokio::test(start_paused = true)]
async fn failbacks_wait_for_the_window_and_start_when_it_opens() {
    let plan = build("committed", &two_groups("", ""));
    let options = ApplyOptions {
        window: window(3600, 3 * 3600),
        wait_report_every: Duration::from_secs(600),
        ..options()
    };
    let (outcome, _) = execute(&plan, timed(10, 5, 1), &options).await;
    assert!(outcome.report.is_success(), "{:?}", outcome.report);
    // Reprotects at once (10 s), then nothing until the window opens an hour in, then the
    // two groups one after the other: 1 h + 2 × (5 s + 1 s) at least (the commits of the
    // first group overlap the second group's failback).
    assert!(
        outcome.elapsed >= Duration::from_secs(3600 + 10),
        "{:?}",
        outcome.elapsed
    );
    assert!(
        outcome.elapsed <= Duration::from_secs(3600 + 15),
        "{:?}",
        outcome.elapsed
    );
    let waits: Vec<u64> = outcome
        .events
        .iter()
        .filter_map(|e| match e {
            Event::WindowWait { seconds_left, .. } => Some(*seconds_left),
            _ => None,
        })
        .collect();
    // Reported at once and then every 10 minutes, counting down.
    assert!(waits.len() >= 5, "{waits:?}");
    assert!(waits.windows(2).all(|w| w[0] > w[1]), "{waits:?}");
    let first_failback = outcome
        .started()
        .iter()
        .position(|c| c.starts_with("failback"))
        .expect("a failback started");
    let waited = outcome
        .events
        .iter()
        .position(|e| matches!(e, Event::WindowWait { .. }))
        .expect("a wait was reported");
    assert!(
        outcome.events.iter().position(
            |e| matches!(e, Event::Started { change, .. } if change.starts_with("failback"))
        ) > Some(waited),
        "the first failback ({first_failback}) starts after the wait"
    );
}

#[tokio::test(start_paused = true)]
async fn no_wait_runs_the_reprotects_and_holds_the_failbacks() {
    let plan = build("committed", &two_groups("", ""));
    let options = ApplyOptions {
        window: window(3600, 3 * 3600),
        no_wait: true,
        ..options()
    };
    let (outcome, fake) = execute(&plan, timed(10, 5, 1), &options).await;
    let report = &outcome.report;
    assert_eq!(
        sorted(report.succeeded.clone()),
        ["reprotect machine.a", "reprotect machine.b"]
    );
    // Only the first group's failback was ready; it is held, and everything after it waits.
    assert_eq!(report.held.len(), 1, "{report:?}");
    assert_eq!(report.held[0].0, "failback machine.a");
    assert!(report.held[0].1.contains("--no-wait"), "{:?}", report.held);
    assert!(report.failed.is_empty() && report.skipped.is_empty());
    assert!(fake.calls_to("a", OperationKind::Failback).is_empty());
    assert!(
        outcome.elapsed < Duration::from_secs(11),
        "{:?}",
        outcome.elapsed
    );
}

#[tokio::test(start_paused = true)]
async fn a_boot_group_that_would_overrun_the_window_is_not_started() {
    let plan = build("committed", &two_groups("", ""));
    // The window is open and closes in 30 s; the first group takes 6 s, the second 60 s.
    let gate = |name: &str, machine: &str, seconds: u64| lifeboat_engine::apply::GroupGate {
        name: name.to_string(),
        failbacks: vec![format!("failback machine.{machine}")],
        duration: Some(Duration::from_secs(seconds)),
    };
    let options = ApplyOptions {
        window: window(-60, 30),
        groups: vec![gate("first", "a", 6), gate("second", "b", 60)],
        ..options()
    };
    let (outcome, fake) = execute(&plan, timed(1, 5, 1), &options).await;
    let report = &outcome.report;
    assert!(
        report.succeeded.contains(&"commit machine.a".to_string()),
        "{report:?}"
    );
    assert_eq!(report.held.len(), 1, "{report:?}");
    assert_eq!(report.held[0].0, "failback machine.b");
    let why = &report.held[0].1;
    assert!(
        why.contains("boot group `second`") && why.contains("1m"),
        "{why}"
    );
    assert!(why.contains("stay where they are"), "{why}");
    assert!(fake.calls_to("b", OperationKind::Failback).is_empty());
    assert_eq!(report.not_started, ["commit machine.b"]);
}

/// A step runner that fails every step whose id is listed, and counts what it ran.
#[derive(Debug, Default)]
struct FakeSteps {
    failing: Vec<String>,
    ran: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl apply::StepRunner for FakeSteps {
    async fn run(
        &self,
        step: &planner::PlannedStep,
        _: &(dyn Fn(apply::StepOutput) + Send + Sync),
    ) -> Result<(), ProviderError> {
        self.ran.lock().expect("ran lock").push(step.id.clone());
        tokio::time::sleep(Duration::from_secs(2)).await;
        if self.failing.contains(&step.id) {
            Err(ProviderError::permanent(
                Some("step::failed".to_string()),
                "exit status 1",
            ))
        } else {
            Ok(())
        }
    }
}

fn with_steps(steps: &Arc<FakeSteps>) -> ApplyOptions {
    ApplyOptions {
        steps: Some(steps.clone()),
        ..options()
    }
}

const FAILING_CHECK: &str = "    after:\n      - command: [./check.sh]\n      - tcp: db:1433\n";

#[tokio::test(start_paused = true)]
async fn a_failing_after_step_stops_later_groups_by_default() {
    let plan = build("failed-back", &two_groups(FAILING_CHECK, ""));
    let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        ["boot_group.first after[1]", "boot_group.first after[2]"]
    );
    let steps = Arc::new(FakeSteps {
        failing: vec!["boot_group.first after[1]".to_string()],
        ..FakeSteps::default()
    });
    let (outcome, fake) = execute(&plan, timed(1, 1, 1), &with_steps(&steps)).await;
    let report = &outcome.report;
    assert_eq!(outcome.failed_ids(), ["boot_group.first after[1]"]);
    // The rest of the order is skipped, with the step as its root cause.
    let skipped: Vec<&str> = report.skipped.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        sorted(skipped.iter().map(|s| s.to_string()).collect()),
        ["boot_group.first after[2]", "failback machine.b"]
    );
    assert!(
        report
            .skipped
            .iter()
            .all(|(_, cause)| cause == "boot_group.first after[1]")
    );
    assert!(report.continued.is_empty());
    assert!(fake.calls_to("b", OperationKind::Failback).is_empty());
    assert_eq!(
        *steps.ran.lock().expect("ran"),
        ["boot_group.first after[1]"]
    );
}

#[tokio::test(start_paused = true)]
async fn with_on_failure_continue_later_groups_proceed_and_the_failure_is_reported() {
    let first = format!("{FAILING_CHECK}    on_failure: continue\n");
    let plan = build("failed-back", &two_groups(&first, ""));
    let steps = Arc::new(FakeSteps {
        failing: vec!["boot_group.first after[1]".to_string()],
        ..FakeSteps::default()
    });
    let (outcome, fake) = execute(&plan, timed(1, 1, 1), &with_steps(&steps)).await;
    let report = &outcome.report;
    assert_eq!(outcome.failed_ids(), ["boot_group.first after[1]"]);
    assert!(report.skipped.is_empty(), "{report:?}");
    assert_eq!(report.continued, ["boot_group.first after[1]"]);
    assert!(
        report
            .succeeded
            .contains(&"boot_group.first after[2]".to_string())
    );
    assert_eq!(fake.calls_to("b", OperationKind::Failback).len(), 1);
    assert!(!report.is_success(), "a failure is still a failure");
}

#[tokio::test(start_paused = true)]
async fn a_manual_gate_pauses_its_branch_and_independent_work_finishes() {
    // `solo` is in no boot group: nothing holds it back.
    let body = "machines:\n  a: {os: linux, datastore: ds}\n  b: {os: linux, datastore: ds}\n  \
                solo: {os: linux, datastore: ds}\nboot_order:\n  - name: first\n    machines: [a]\n    \
                after:\n      - manual: Check the AG listener\n  - name: second\n    machines: [b]\n";
    let plan = build("failed-back", body);
    let (outcome, fake) = execute(&plan, timed(1, 1, 1), &options()).await;
    let report = &outcome.report;
    assert_eq!(report.paused.len(), 1, "{report:?}");
    assert_eq!(report.paused[0].0, "boot_group.first after[1]");
    assert_eq!(report.paused[0].1, "Check the AG listener");
    assert_eq!(report.not_started, ["failback machine.b"]);
    assert_eq!(fake.calls_to("solo", OperationKind::Failback).len(), 1);
    assert!(report.failed.is_empty() && report.skipped.is_empty());
}
