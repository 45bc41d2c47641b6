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
use crate::planner::{Action, ExecutionPlan, Node, PlannedChange};
use crate::provider::{OperationId, OperationOutcome, OperationRequest, Provider, ProviderError};

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
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            parallelism: 10,
            retry: RetryPolicy::default(),
            window: None,
        }
    }
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
    /// Changes not started because the apply was interrupted.
    pub not_started: Vec<String>,
    pub elapsed: Duration,
}

impl ApplyReport {
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.skipped.is_empty() && self.not_started.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Done,
    Failed,
    Skipped,
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
    let graph = &plan.graph;
    let mut waiting_on: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, petgraph::Incoming).count())
        .collect();
    let mut status = vec![Status::Waiting; graph.node_count()];
    // Ready nodes: checkpoints first (they cost nothing and release work), then the change
    // with the longest chain of changes still behind it, so the critical path starts as early
    // as parallelism allows; ties go the way the plan lists the changes.
    let rank = remaining_chain(graph);
    let order = |n: NodeIndex| match graph[n] {
        Node::Checkpoint(_) => (0, 0),
        Node::Change(i) => (usize::MAX - rank[n.index()], i + 1),
    };
    let mut ready: BinaryHeap<Reverse<((usize, usize), usize)>> = graph
        .node_indices()
        .filter(|&n| waiting_on[n.index()] == 0)
        .map(|n| Reverse((order(n), n.index())))
        .collect();
    let mut running: JoinSet<(NodeIndex, Result<(), ProviderError>)> = JoinSet::new();
    // Which change each task runs, so that a task that panics is that change's failure.
    let mut tasks: HashMap<tokio::task::Id, NodeIndex> = HashMap::new();
    let mut report = ApplyReport::default();
    let parallelism = match provider.max_concurrency() {
        Some(limit) => options.parallelism.min(limit),
        None => options.parallelism,
    }
    .max(1);
    let id_of = |n: NodeIndex| match &graph[n] {
        Node::Change(i) => plan.changes[*i].id.clone(),
        Node::Checkpoint(label) => label.clone(),
    };

    loop {
        while running.len() < parallelism && !interrupted() {
            let Some(Reverse((_, n))) = ready.pop() else {
                break;
            };
            let n = NodeIndex::new(n);
            if status[n.index()] != Status::Waiting {
                continue;
            }
            match &graph[n] {
                Node::Checkpoint(_) => {
                    status[n.index()] = Status::Done;
                    release(graph, n, &mut waiting_on, &status, &mut ready, order);
                }
                Node::Change(i) => {
                    status[n.index()] = Status::Running;
                    let change = plan.changes[*i].clone();
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
                            on_event.as_ref(),
                        )
                        .await;
                        (n, result)
                    });
                    tasks.insert(task.id(), n);
                }
            }
        }
        let Some(joined) = running.join_next_with_id().await else {
            break;
        };
        let (n, result) = match joined {
            Ok((task, done)) => {
                tasks.remove(&task);
                done
            }
            // A panicking task is a bug in lifeboat or the provider. It is its change's
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
                let message = format!("the task that ran `{}` {why}: {error}", id_of(n));
                (
                    n,
                    Err(ProviderError::permanent(
                        Some(codes::APPLY_TASK_PANICKED.to_string()),
                        message,
                    )),
                )
            }
        };
        let id = id_of(n);
        match result {
            Ok(()) => {
                status[n.index()] = Status::Done;
                on_event(Event::Succeeded {
                    change: id.clone(),
                    elapsed_ms: started.elapsed().as_millis() as u64,
                });
                report.succeeded.push(id);
                release(graph, n, &mut waiting_on, &status, &mut ready, order);
            }
            Err(error) => {
                status[n.index()] = Status::Failed;
                on_event(Event::Failed {
                    change: id.clone(),
                    code: error.code.clone(),
                    message: error.message.clone(),
                });
                for skipped in descendants(graph, n) {
                    if status[skipped.index()] == Status::Waiting {
                        status[skipped.index()] = Status::Skipped;
                        if let Node::Change(_) = graph[skipped] {
                            let skipped_id = id_of(skipped);
                            on_event(Event::Skipped {
                                change: skipped_id.clone(),
                                because: id.clone(),
                            });
                            report.skipped.push((skipped_id, id.clone()));
                        }
                    }
                }
                report.failed.push((id, error));
            }
        }
    }
    for n in graph.node_indices() {
        if status[n.index()] == Status::Waiting && matches!(graph[n], Node::Change(_)) {
            report.not_started.push(id_of(n));
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// Marks `n`'s successors as one dependency closer, queueing those with none left.
fn release(
    graph: &petgraph::graph::DiGraph<Node, ()>,
    n: NodeIndex,
    waiting_on: &mut [usize],
    status: &[Status],
    ready: &mut BinaryHeap<Reverse<((usize, usize), usize)>>,
    order: impl Fn(NodeIndex) -> (usize, usize),
) {
    for edge in graph.edges_directed(n, petgraph::Outgoing) {
        let next = edge.target();
        waiting_on[next.index()] -= 1;
        if waiting_on[next.index()] == 0 && status[next.index()] == Status::Waiting {
            ready.push(Reverse((order(next), next.index())));
        }
    }
}

/// For each node, the number of changes on the longest path from it to the end of the DAG
/// (itself included). Computed once in reverse topological order: O(nodes + edges).
fn remaining_chain(graph: &petgraph::graph::DiGraph<Node, ()>) -> Vec<usize> {
    let mut rank = vec![0; graph.node_count()];
    // The planner only builds acyclic graphs; an empty order would leave every rank at 0,
    // which still schedules correctly, only less cleverly.
    let order = petgraph::algo::toposort(graph, None).unwrap_or_default();
    for &n in order.iter().rev() {
        let own = usize::from(matches!(graph[n], Node::Change(_)));
        let after = graph
            .neighbors_directed(n, petgraph::Outgoing)
            .map(|m| rank[m.index()])
            .max()
            .unwrap_or(0);
        rank[n.index()] = own + after;
    }
    rank
}

fn descendants(graph: &petgraph::graph::DiGraph<Node, ()>, n: NodeIndex) -> Vec<NodeIndex> {
    let mut seen = vec![false; graph.node_count()];
    let mut stack: Vec<NodeIndex> = graph.neighbors_directed(n, petgraph::Outgoing).collect();
    let mut out = Vec::new();
    while let Some(next) = stack.pop() {
        if std::mem::replace(&mut seen[next.index()], true) {
            continue;
        }
        out.push(next);
        stack.extend(graph.neighbors_directed(next, petgraph::Outgoing));
    }
    out
}

/// One change: the checks only the executor can make, the write-ahead record, the provider
/// call with retries, and the record of the outcome.
async fn run_one(
    change: &PlannedChange,
    operation: OperationId,
    provider: &dyn Provider,
    journal: &dyn Journal,
    options: &ApplyOptions,
    on_event: &(dyn Fn(Event) + Send + Sync),
) -> Result<(), ProviderError> {
    if matches!(change.action, Action::Failback | Action::Commit)
        && let Some((start, end)) = options.window
    {
        let now = jiff::Timestamp::now();
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
