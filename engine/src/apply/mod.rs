//! Step 7 of the engine: carry out an [`ExecutionPlan`] through a provider.
//!
//! The executor walks the DAG on tokio: an operation starts as soon as everything it depends
//! on has succeeded, up to `parallelism` at once. Transient provider errors (the agent not yet
//! registered, throttling, server errors, a conflicting job) are retried with exponential
//! backoff and jitter until a per-operation deadline, honouring the provider's `Retry-After`.
//! A permanent failure skips everything that depends on it, while independent branches run
//! to the end; the report names root causes only, each skipped change pointing at its cause.
//!
//! Crash safety is the [`Journal`]'s part: it is told about an operation, and must have
//! recorded it durably, before the operation is sent, and is told the outcome after. The
//! executor chooses every operation id, so a journal that recorded one can ask the provider
//! about it after a crash (providers' `run` is idempotent by id).
//!
//! The failback night ([`window`]): reprotects run at once; failbacks and commits wait for
//! the maintenance window to open (or, with `no_wait`, are left for a later apply); a boot
//! group whose estimated end passes the window's end is not started. Steps between boot
//! groups are nodes too: checks and commands through a [`StepRunner`], manual gates through
//! the journal (a gate not yet approved pauses its branch of the DAG).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use tokio::task::JoinSet;
// The executor waits on tokio's clock (backoff sleeps, providers' polling), so it measures on
// it too: under a paused or scaled clock the report then agrees with what actually elapsed.
use tokio::time::Instant;

use crate::diagnostic::codes;
use crate::planner::{
    Action, Edge, ExecutionPlan, Graph, Node, PlannedChange, PlannedStep, StepAction,
};
use crate::provider::{OperationId, OperationOutcome, OperationRequest, Provider, ProviderError};

pub mod window;

pub use window::{Clock, GroupGate};

/// How long and how often to retry transient errors.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min_delay: Duration,
    pub max_delay: Duration,
    /// Give up on an operation when its retries have waited this long in total. ASR's agent
    /// needs up to 15 minutes to register after a failover; the default leaves a margin.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            deadline: Duration::from_secs(20 * 60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Operations in flight at once (DESIGN.md §6 `--parallelism`, default 10).
    pub parallelism: usize,
    pub retry: RetryPolicy,
    /// Failback and commit run only inside this window.
    pub window: Option<(jiff::Timestamp, jiff::Timestamp)>,
    /// Do not wait for the window to open: leave failbacks and commits for a later apply.
    pub no_wait: bool,
    /// How often a wait for the window reports itself ([`Event::WindowWait`]).
    pub wait_report_every: Duration,
    /// The boot groups, their failbacks and their estimated durations: a group is not
    /// started when its estimated end passes the window's end.
    pub groups: Vec<GroupGate>,
    /// Runs `tcp`, `http` and `command` steps; without one, such steps fail.
    pub steps: Option<Arc<dyn StepRunner>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            parallelism: 10,
            retry: RetryPolicy::default(),
            window: None,
            no_wait: false,
            wait_report_every: Duration::from_secs(60),
            groups: Vec::new(),
            steps: None,
        }
    }
}

/// Carries out the `tcp`, `http` and `command` steps (manual gates are the journal's).
#[async_trait::async_trait]
pub trait StepRunner: Send + Sync + std::fmt::Debug {
    /// Runs the step to its end (passed, failed, or timed out); `output` receives what a
    /// command prints, line by line.
    async fn run(
        &self,
        step: &PlannedStep,
        output: &(dyn Fn(StepOutput) + Send + Sync),
    ) -> Result<(), ProviderError>;
}

/// A line a command step printed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepOutput {
    pub step: String,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    pub line: String,
}

/// Whether a manual gate has been passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// `lifeboat approve` recorded it: by whom and when.
    Approved { by: String, at: String },
    /// Nobody has approved it yet.
    Waiting,
}

/// What happened, as it happens; the CLI turns these into progress lines or JSON events.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Started {
        change: String,
        operation: String,
    },
    Retrying {
        change: String,
        code: Option<String>,
        message: String,
        wait_ms: u64,
    },
    Succeeded {
        change: String,
        elapsed_ms: u64,
    },
    Failed {
        change: String,
        code: Option<String>,
        message: String,
    },
    Skipped {
        change: String,
        because: String,
    },
    /// A failure in a boot group with `on_failure: continue`: later groups proceed.
    Continuing {
        change: String,
    },
    /// Failbacks and commits wait for the maintenance window; repeated every
    /// `wait_report_every` while it lasts.
    WindowWait {
        opens_at: String,
        seconds_left: u64,
        waiting: usize,
    },
    /// Not started: the window has not opened and the apply does not wait (`--no-wait`), or
    /// its boot group would end after the window closes.
    Held {
        change: String,
        because: String,
    },
    /// A manual gate stopped its branch: approve it, then apply again.
    Paused {
        step: String,
        message: String,
    },
    /// A command step's output, line by line.
    StepOutput(StepOutput),
}

/// The executor's hooks around each provider call: a last check, then the durable
/// write-ahead record, then the outcome.
#[async_trait::async_trait]
pub trait Journal: Send + Sync {
    /// Called right before the operation is recorded and sent: the last chance to refuse it.
    /// `apply` re-runs the machine's preflight checks here, against fresh facts, because the
    /// sites keep changing while an apply runs. The default accepts every change.
    async fn check(&self, _change: &PlannedChange) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Called before `operation` is sent; it must be recorded when this returns `Ok`.
    async fn before(
        &self,
        change: &PlannedChange,
        operation: &OperationId,
    ) -> Result<(), JournalError>;
    /// Called with the provider's answer.
    async fn after(
        &self,
        change: &PlannedChange,
        operation: &OperationId,
        outcome: &Result<OperationOutcome, ProviderError>,
    ) -> Result<(), JournalError>;

    /// Whether the manual gate `step` was approved; when it was not, the journal records
    /// that the apply is waiting at it (so `lifeboat approve` can find it). The default:
    /// nobody approves.
    async fn gate(&self, _step: &PlannedStep) -> Result<Gate, JournalError> {
        Ok(Gate::Waiting)
    }

    /// Called when a step passed, so that no later apply runs it again.
    async fn step_passed(&self, _step: &PlannedStep) -> Result<(), JournalError> {
        Ok(())
    }
}

/// Why a journal could not record an operation; the operation then fails with
/// `apply::journal` (before it is sent, it is not sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JournalError {
    pub message: String,
}

impl JournalError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A journal that records nothing, for plans whose state is kept elsewhere (and tests).
#[derive(Debug, Default)]
pub struct NoJournal;

#[async_trait::async_trait]
impl Journal for NoJournal {
    async fn before(&self, _: &PlannedChange, _: &OperationId) -> Result<(), JournalError> {
        Ok(())
    }

    async fn after(
        &self,
        _: &PlannedChange,
        _: &OperationId,
        _: &Result<OperationOutcome, ProviderError>,
    ) -> Result<(), JournalError> {
        Ok(())
    }
}

/// The end of an apply: what succeeded, the root causes, and what was skipped because of them.
#[derive(Debug, Default)]
pub struct ApplyReport {
    pub succeeded: Vec<String>,
    /// Root causes: changes that failed themselves.
    pub failed: Vec<(String, ProviderError)>,
    /// Changes not run because something they depend on failed: (change, root cause).
    pub skipped: Vec<(String, String)>,
    /// Changes and steps not started: the apply was interrupted, or stopped at a gate or
    /// before the window.
    pub not_started: Vec<String>,
    /// Failures in boot groups with `on_failure: continue` (also in `failed`): later groups
    /// went on.
    pub continued: Vec<String>,
    /// Changes left for a later apply, and why: the window had not opened (`--no-wait`), or
    /// their boot group would have ended after it closed.
    pub held: Vec<(String, String)>,
    /// Manual gates waiting for `lifeboat approve`: (step, its message).
    pub paused: Vec<(String, String)>,
    pub elapsed: Duration,
}

impl ApplyReport {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
            && self.skipped.is_empty()
            && self.not_started.is_empty()
            && self.held.is_empty()
            && self.paused.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    /// A failback or commit ready to start, waiting for the window to open.
    Deferred,
    Running,
    Done,
    Failed,
    Skipped,
    /// Left for a later apply (`--no-wait`, a group that would overrun, a gate).
    Held,
}

/// How one node ended.
enum Ended {
    Done,
    Failed(ProviderError),
    /// A manual gate nobody approved yet.
    Paused(String),
}

/// Carries the plan out. `interrupted` is checked before each start: once it is true no new
/// operation starts, and the ones in flight are awaited (their outcome is recorded).
pub async fn execute(
    plan: &ExecutionPlan,
    provider: Arc<dyn Provider>,
    journal: Arc<dyn Journal>,
    options: &ApplyOptions,
    on_event: Arc<dyn Fn(Event) + Send + Sync>,
    interrupted: &(dyn Fn() -> bool + Send + Sync),
) -> ApplyReport {
    let started = Instant::now();
    let clock = Clock::start();
    let graph = &plan.graph;
    let mut run = Run {
        plan,
        waiting_on: graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, petgraph::Incoming).count())
            .collect(),
        status: vec![Status::Waiting; graph.node_count()],
        rank: remaining_chain(graph),
        ready: BinaryHeap::new(),
        report: ApplyReport::default(),
        on_event: on_event.clone(),
    };
    for n in graph.node_indices() {
        if run.waiting_on[n.index()] == 0 {
            run.push_ready(n);
        }
    }
    let mut gates = window::Gates::new(plan, options);
    let mut deferred: Vec<NodeIndex> = Vec::new();
    let mut next_report = Instant::now();
    let mut running: JoinSet<(NodeIndex, Ended)> = JoinSet::new();
    // Which node each task runs, so that a task that panics is that node's failure.
    let mut tasks: HashMap<tokio::task::Id, NodeIndex> = HashMap::new();
    let parallelism = match provider.max_concurrency() {
        Some(limit) => options.parallelism.min(limit),
        None => options.parallelism,
    }
    .max(1);

    loop {
        while running.len() < parallelism && !interrupted() {
            let Some(Reverse((_, n))) = run.ready.pop() else {
                break;
            };
            let n = NodeIndex::new(n);
            if run.status[n.index()] != Status::Waiting {
                continue;
            }
            match &graph[n] {
                Node::Checkpoint(_) => {
                    run.status[n.index()] = Status::Done;
                    run.release(n);
                }
                Node::Change(i) => {
                    let change = &plan.changes[*i];
                    match gates.admit(change, clock.now()) {
                        window::Admit::Start => {}
                        window::Admit::Defer => {
                            run.status[n.index()] = Status::Deferred;
                            deferred.push(n);
                            continue;
                        }
                        window::Admit::Hold(because) => {
                            run.hold(n, because);
                            continue;
                        }
                    }
                    run.status[n.index()] = Status::Running;
                    let change = change.clone();
                    let provider = provider.clone();
                    let journal = journal.clone();
                    let options = options.clone();
                    let operation = OperationId(format!(
                        "lb-{}-{}",
                        jiff::Timestamp::now().as_nanosecond(),
                        i
                    ));
                    on_event(Event::Started {
                        change: change.id.clone(),
                        operation: operation.0.clone(),
                    });
                    let on_event = on_event.clone();
                    let task = running.spawn(async move {
                        let result = run_one(
                            &change,
                            operation,
                            provider.as_ref(),
                            journal.as_ref(),
                            &options,
                            clock,
                            on_event.as_ref(),
                        )
                        .await;
                        (n, result.map_or_else(Ended::Failed, |()| Ended::Done))
                    });
                    tasks.insert(task.id(), n);
                }
                Node::Step(i) => {
                    run.status[n.index()] = Status::Running;
                    let step = plan.steps[*i].clone();
                    let journal = journal.clone();
                    let runner = options.steps.clone();
                    on_event(Event::Started {
                        change: step.id.clone(),
                        operation: format!("step {}", step.action.kind().as_str()),
                    });
                    let on_event = on_event.clone();
                    let task = running.spawn(async move {
                        let ended = run_step(
                            &step,
                            journal.as_ref(),
                            runner.as_deref(),
                            on_event.as_ref(),
                        )
                        .await;
                        (n, ended)
                    });
                    tasks.insert(task.id(), n);
                }
            }
        }

        // Failbacks and commits that wait for the window: released when it opens; with
        // `no_wait`, or once interrupted, left for a later apply.
        if !deferred.is_empty() {
            if options.no_wait {
                for n in std::mem::take(&mut deferred) {
                    run.status[n.index()] = Status::Waiting;
                    run.hold(n, gates.not_open_reason());
                }
                continue;
            }
            if gates.is_open(clock.now()) {
                for n in std::mem::take(&mut deferred) {
                    run.status[n.index()] = Status::Waiting;
                    run.push_ready(n);
                }
                continue;
            }
            if interrupted() && running.is_empty() {
                for n in std::mem::take(&mut deferred) {
                    run.status[n.index()] = Status::Waiting;
                }
                break;
            }
            if Instant::now() >= next_report {
                let left = gates.until_open(clock.now());
                on_event(Event::WindowWait {
                    opens_at: gates.opens_at(),
                    seconds_left: left.as_secs(),
                    waiting: deferred.len(),
                });
                next_report =
                    Instant::now() + options.wait_report_every.max(Duration::from_millis(10));
            }
        }
        // What to wait for: a task to end, or (while something waits for the window) the
        // window to open, the next report, or a look at Ctrl-C.
        let wake = (!deferred.is_empty()).then(|| {
            gates
                .until_open(clock.now())
                .min(next_report.saturating_duration_since(Instant::now()))
                .min(Duration::from_millis(500))
        });
        let joined = match (running.is_empty(), wake) {
            (true, None) => break,
            (true, Some(wake)) => {
                tokio::time::sleep(wake).await;
                continue;
            }
            (false, None) => running.join_next_with_id().await,
            (false, Some(wake)) => tokio::select! {
                joined = running.join_next_with_id() => joined,
                () = tokio::time::sleep(wake) => continue,
            },
        };
        let Some(joined) = joined else {
            break;
        };
        let (n, ended) = match joined {
            Ok((task, done)) => {
                tasks.remove(&task);
                done
            }
            // A panicking task is a bug in lifeboat or the provider. It is its node's
            // failure (a root cause, skipping what depends on it), not the end of the apply:
            // independent branches finish, and what it recorded as pending is reconciled by
            // the next run.
            Err(error) => {
                let Some(n) = tasks.remove(&error.id()) else {
                    continue;
                };
                let why = if error.is_panic() {
                    "panicked"
                } else {
                    "was cancelled"
                };
                let message = format!(
                    "the task that ran `{}` {why}: {error}",
                    plan.node_id(&graph[n])
                );
                (
                    n,
                    Ended::Failed(ProviderError::permanent(
                        Some(codes::APPLY_TASK_PANICKED.to_string()),
                        message,
                    )),
                )
            }
        };
        let id = plan.node_id(&graph[n]).to_string();
        match ended {
            Ended::Done => {
                run.status[n.index()] = Status::Done;
                on_event(Event::Succeeded {
                    change: id.clone(),
                    elapsed_ms: started.elapsed().as_millis() as u64,
                });
                run.report.succeeded.push(id);
                run.release(n);
            }
            Ended::Paused(message) => {
                run.status[n.index()] = Status::Held;
                on_event(Event::Paused {
                    step: id.clone(),
                    message: message.clone(),
                });
                run.report.paused.push((id, message));
            }
            Ended::Failed(error) => {
                run.status[n.index()] = Status::Failed;
                on_event(Event::Failed {
                    change: id.clone(),
                    code: error.code.clone(),
                    message: error.message.clone(),
                });
                run.report.failed.push((id.clone(), error));
                run.fail(n, &id);
            }
        }
    }
    for n in graph.node_indices() {
        if matches!(run.status[n.index()], Status::Waiting | Status::Deferred)
            && !matches!(graph[n], Node::Checkpoint(_))
        {
            run.report
                .not_started
                .push(plan.node_id(&graph[n]).to_string());
        }
    }
    run.report.elapsed = started.elapsed();
    run.report
}

/// The executor's bookkeeping over the DAG.
struct Run<'p> {
    plan: &'p ExecutionPlan,
    waiting_on: Vec<usize>,
    status: Vec<Status>,
    rank: Vec<usize>,
    // Ready nodes: checkpoints first (they cost nothing and release work), then the node
    // with the longest chain of work still behind it, so the critical path starts as early
    // as parallelism allows; ties go the way the plan lists them.
    ready: BinaryHeap<Reverse<((usize, usize), usize)>>,
    report: ApplyReport,
    on_event: Arc<dyn Fn(Event) + Send + Sync>,
}

impl Run<'_> {
    fn push_ready(&mut self, n: NodeIndex) {
        let order = match self.plan.graph[n] {
            Node::Checkpoint(_) => (0, 0),
            Node::Change(i) => (usize::MAX - self.rank[n.index()], i + 1),
            Node::Step(i) => (
                usize::MAX - self.rank[n.index()],
                self.plan.changes.len() + i + 1,
            ),
        };
        self.ready.push(Reverse((order, n.index())));
    }

    /// Marks `n`'s successors as one dependency closer, queueing those with none left.
    fn release(&mut self, n: NodeIndex) {
        let graph = &self.plan.graph;
        let next: Vec<NodeIndex> = graph
            .edges_directed(n, petgraph::Outgoing)
            .map(|e| e.target())
            .collect();
        for next in next {
            self.waiting_on[next.index()] -= 1;
            if self.waiting_on[next.index()] == 0 && self.status[next.index()] == Status::Waiting {
                self.push_ready(next);
            }
        }
    }

    /// What follows a failed (or skipped) node: through [`Edge::Needs`] it is skipped, with
    /// `cause` as its root cause; through [`Edge::Follows`] (a boot group with `on_failure:
    /// continue`) it goes on as if the node had passed. Each node is visited once.
    fn fail(&mut self, n: NodeIndex, cause: &str) {
        let graph = &self.plan.graph;
        let mut continued = false;
        let mut stack = vec![n];
        while let Some(from) = stack.pop() {
            let edges: Vec<(NodeIndex, Edge)> = graph
                .edges_directed(from, petgraph::Outgoing)
                .map(|e| (e.target(), *e.weight()))
                .collect();
            for (next, edge) in edges {
                if self.status[next.index()] != Status::Waiting {
                    continue;
                }
                match edge {
                    Edge::Follows => {
                        continued = true;
                        self.waiting_on[next.index()] -= 1;
                        if self.waiting_on[next.index()] == 0 {
                            self.push_ready(next);
                        }
                    }
                    Edge::Needs => {
                        self.status[next.index()] = Status::Skipped;
                        if !matches!(graph[next], Node::Checkpoint(_)) {
                            let id = self.plan.node_id(&graph[next]).to_string();
                            (self.on_event)(Event::Skipped {
                                change: id.clone(),
                                because: cause.to_string(),
                            });
                            self.report.skipped.push((id, cause.to_string()));
                        }
                        stack.push(next);
                    }
                }
            }
        }
        if continued {
            (self.on_event)(Event::Continuing {
                change: cause.to_string(),
            });
            self.report.continued.push(cause.to_string());
        }
    }

    /// Leaves `n` for a later apply, saying why; what depends on it is not started.
    fn hold(&mut self, n: NodeIndex, because: String) {
        self.status[n.index()] = Status::Held;
        let id = self.plan.node_id(&self.plan.graph[n]).to_string();
        (self.on_event)(Event::Held {
            change: id.clone(),
            because: because.clone(),
        });
        self.report.held.push((id, because));
    }
}

/// For each node, the number of changes and steps on the longest path from it to the end of
/// the DAG (itself included). Computed once in reverse topological order: O(nodes + edges).
fn remaining_chain(graph: &Graph) -> Vec<usize> {
    let mut rank = vec![0; graph.node_count()];
    // The planner only builds acyclic graphs; an empty order would leave every rank at 0,
    // which still schedules correctly, only less cleverly.
    let order = petgraph::algo::toposort(graph, None).unwrap_or_default();
    for &n in order.iter().rev() {
        let own = usize::from(!matches!(graph[n], Node::Checkpoint(_)));
        let after = graph
            .neighbors_directed(n, petgraph::Outgoing)
            .map(|m| rank[m.index()])
            .max()
            .unwrap_or(0);
        rank[n.index()] = own + after;
    }
    rank
}

/// One step: a manual gate through the journal, a check or command through the runner, and
/// the record that it passed.
async fn run_step(
    step: &PlannedStep,
    journal: &dyn Journal,
    runner: Option<&dyn StepRunner>,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Ended {
    let outcome = match &step.action {
        StepAction::Manual { message } => match journal.gate(step).await {
            Ok(Gate::Approved { .. }) => Ok(()),
            Ok(Gate::Waiting) => return Ended::Paused(message.clone()),
            Err(error) => Err(journal_error(error)),
        },
        _ => match runner {
            Some(runner) => {
                runner
                    .run(step, &|line| on_event(Event::StepOutput(line)))
                    .await
            }
            None => Err(ProviderError::permanent(
                Some(codes::STEP_FAILED.to_string()),
                format!("`{}` cannot run: this apply has no step runner", step.id),
            )),
        },
    };
    match outcome {
        Ok(()) => match journal.step_passed(step).await {
            Ok(()) => Ended::Done,
            Err(error) => Ended::Failed(journal_error(error)),
        },
        Err(error) => Ended::Failed(error),
    }
}

/// One change: the checks only the executor can make, the write-ahead record, the provider
/// call with retries, and the record of the outcome.
async fn run_one(
    change: &PlannedChange,
    operation: OperationId,
    provider: &dyn Provider,
    journal: &dyn Journal,
    options: &ApplyOptions,
    clock: Clock,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Result<(), ProviderError> {
    if matches!(change.action, Action::Failback | Action::Commit)
        && let Some((start, end)) = options.window
    {
        let now = clock.now();
        if now < start || now >= end {
            return Err(ProviderError::permanent(
                Some(crate::diagnostic::codes::PREFLIGHT_MAINTENANCE_WINDOW.to_string()),
                format!(
                    "`{}` may run only inside the maintenance window ({start} to {end}); it is {now}",
                    change.id
                ),
            ));
        }
    }
    let Some(kind) = change.action.operation() else {
        // `release`: the state forgets the machine; nothing is sent.
        let outcome = Ok(OperationOutcome {
            id: operation.clone(),
            stage: crate::provider::Stage::FailedOver,
        });
        journal
            .after(change, &operation, &outcome)
            .await
            .map_err(journal_error)?;
        return Ok(());
    };
    journal.check(change).await?;
    let request = OperationRequest {
        id: operation.clone(),
        machine: change.machine().to_string(),
        kind,
        reprotect: change.settings.clone(),
    };
    journal
        .before(change, &operation)
        .await
        .map_err(journal_error)?;
    let mut waited = Duration::ZERO;
    let backoff = ExponentialBuilder::default()
        .with_min_delay(options.retry.min_delay)
        .with_max_delay(options.retry.max_delay)
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(options.retry.deadline));
    let outcome = (|| provider.run(&request))
        .retry(backoff)
        .sleep(tokio::time::sleep)
        .when(ProviderError::is_transient)
        // The provider's `Retry-After` replaces the backoff's delay. backon counts only its own
        // delays against the deadline, so the real waits are counted here: the deadline is
        // the deadline, whatever the provider asks for.
        .adjust(move |error, delay| {
            let wait = error.retry_after.unwrap_or(delay?);
            // `Retry-After` comes from the provider, so it can be any size: saturate rather
            // than overflow, and a huge one simply passes the deadline.
            waited = waited.saturating_add(wait);
            (waited <= options.retry.deadline).then_some(wait)
        })
        .notify(|error, wait| {
            on_event(Event::Retrying {
                change: change.id.clone(),
                code: error.code.clone(),
                message: error.message.clone(),
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            })
        })
        .await;
    journal
        .after(change, &operation, &outcome)
        .await
        .map_err(journal_error)?;
    outcome.map(|_| ())
}

fn journal_error(error: JournalError) -> ProviderError {
    ProviderError::permanent(
        Some(codes::APPLY_JOURNAL.to_string()),
        format!("cannot record the operation in the state: {error}"),
    )
}
