//! The expected schedule of a plan: when each boot group starts and ends, relative to the
//! maintenance window's start, the critical path, and whether failback and commit fit the
//! window (`preflight::maintenance-window`).
//!
//! The schedule replays the executor's own policy on the estimated durations: an operation
//! starts when everything before it is done and one of `parallelism` slots is free, the
//! ready operation with the longest chain behind it first; failbacks and commits not before
//! the window opens. A discrete-event simulation in O((nodes + edges) log nodes), so it stays
//! linear in machines up to the logarithm. What the provider cannot time stays unknown: an
//! unknown duration makes every time after it unknown rather than a guess. Steps count as
//! taking no time (a check may pass at once; a person at a gate takes what they take); the
//! output says so.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use petgraph::graph::NodeIndex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diagnostic::{Diagnostic, codes};
use crate::model::{Plan, human_duration};
use crate::planner::{Action, ExecutionPlan, Node};

/// A window shorter than this fraction of its length left at the end is tight.
const TIGHT_MARGIN: f64 = 0.1;

/// The schedule as `plan --format json` shows it (`schedule`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Schedule {
    /// What every `*_s` value is relative to: the window's start, or the time of the plan
    /// when it has no window.
    pub origin: String,
    /// `window` when `origin` is the maintenance window's start, `now` otherwise.
    pub origin_is: String,
    /// The window's end relative to `origin`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end_s: Option<i64>,
    /// The parallelism the schedule assumes.
    pub parallelism: usize,
    /// Each boot group with failbacks, commits or steps in this plan, in the boot order.
    pub boot_groups: Vec<GroupSchedule>,
    /// When the last failback, commit or step ends (`None`: unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_s: Option<i64>,
    /// The chain of changes and steps that decides `end_s`, first to last.
    pub critical_path: Vec<String>,
    /// `fits`, `tight`, `overruns`, `unknown` (an estimate is missing), or `no-window`.
    pub fit: Fit,
    /// Changes the provider could not time (at most 20 named).
    pub unknown: Vec<String>,
    pub unknown_count: usize,
    /// Steps are counted as taking no time.
    pub steps_counted: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupSchedule {
    pub name: String,
    /// Start of its first step or failback, relative to `origin`, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_s: Option<i64>,
    /// End of its last failback, commit or step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_s: Option<i64>,
    /// How long it takes from start to end: `apply` does not start the group when its end,
    /// counted from the moment it would start, passes the window's end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<u64>,
    /// Its failback changes.
    pub failbacks: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Fit {
    Fits,
    Tight,
    Overruns,
    Unknown,
    NoWindow,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fits => "fits",
            Self::Tight => "tight",
            Self::Overruns => "overruns",
            Self::Unknown => "unknown",
            Self::NoWindow => "no-window",
        }
    }
}

/// Milliseconds from the time of the plan.
type Ms = i64;

fn ms(duration: Duration) -> Ms {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

/// Whether a node belongs to the failback night: it waits for the window and counts toward
/// the fit.
fn in_window(plan: &ExecutionPlan, node: &Node) -> bool {
    match node {
        Node::Change(i) => matches!(plan.changes[*i].action, Action::Failback | Action::Commit),
        Node::Step(_) => true,
        Node::Checkpoint(_) => false,
    }
}

/// Builds the schedule. `durations` has one estimate per change of `execution` (in its
/// order); `now` is the time of the plan.
pub fn build(
    plan: &Plan,
    execution: &ExecutionPlan,
    durations: &[Option<Duration>],
    now: jiff::Timestamp,
    parallelism: usize,
) -> Schedule {
    let window = plan
        .maintenance_window
        .as_ref()
        .map(|w| (w.start.value.0, w.end.value.0));
    let offset = |t: jiff::Timestamp| -> Ms {
        i64::try_from(t.duration_since(now).as_millis()).unwrap_or(0)
    };
    let opens: Option<Ms> = window.map(|(start, _)| offset(start).max(0));
    let mut sim = Sim::new(execution, durations, opens);
    sim.run(parallelism.max(1));

    // Times relative to the window's start (or the plan's time).
    let origin: Ms = window.map_or(0, |(start, _)| offset(start));
    let rel = |t: Ms| (t - origin).div_euclid(1000);
    let graph = &execution.graph;

    // Each boot group's nodes: its failbacks and their commits (by machine), its steps.
    let mut group_of_machine: HashMap<&str, usize> = HashMap::new();
    for (g, group) in plan.boot_order.iter().enumerate() {
        for m in &group.machines.value {
            group_of_machine.entry(m.value.as_str()).or_insert(g);
        }
    }
    let group_index: HashMap<&str, usize> = plan
        .boot_order
        .iter()
        .enumerate()
        .map(|(g, group)| (group.name.value.as_str(), g))
        .collect();
    let mut spans: Vec<Option<(Ms, Ms, bool)>> = vec![None; plan.boot_order.len()];
    let mut failbacks: Vec<Vec<String>> = vec![Vec::new(); plan.boot_order.len()];
    let mut last: Option<(Ms, NodeIndex)> = None;
    let mut any_unknown = false;
    for n in graph.node_indices() {
        let node = &graph[n];
        if !in_window(execution, node) {
            continue;
        }
        let i = n.index();
        any_unknown |= sim.unknown[i];
        if last.is_none_or(|(t, _)| sim.end[i] > t) {
            last = Some((sim.end[i], n));
        }
        let g = match node {
            Node::Change(c) => {
                let change = &execution.changes[*c];
                let g = group_of_machine.get(change.machine()).copied();
                if let (Some(g), Action::Failback) = (g, change.action) {
                    failbacks[g].push(change.id.clone());
                }
                g
            }
            Node::Step(s) => group_index
                .get(execution.steps[*s].boot_group.as_str())
                .copied(),
            Node::Checkpoint(_) => None,
        };
        if let Some(g) = g {
            let span = spans[g].get_or_insert((sim.start[i], sim.end[i], false));
            span.0 = span.0.min(sim.start[i]);
            span.1 = span.1.max(sim.end[i]);
            span.2 |= sim.unknown[i];
        }
    }
    let boot_groups = plan
        .boot_order
        .iter()
        .enumerate()
        .filter_map(|(g, group)| {
            let (start, end, unknown) = spans[g]?;
            Some(GroupSchedule {
                name: group.name.value.clone(),
                start_s: (!unknown).then(|| rel(start)),
                end_s: (!unknown).then(|| rel(end)),
                duration_s: (!unknown).then(|| u64::try_from((end - start) / 1000).unwrap_or(0)),
                failbacks: std::mem::take(&mut failbacks[g]),
            })
        })
        .collect();

    let window_end = window.map(|(_, end)| offset(end));
    let end = last.map(|(t, _)| t);
    let fit = match (window, end) {
        (None, _) => Fit::NoWindow,
        (Some(_), _) if any_unknown => Fit::Unknown,
        (Some(_), None) => Fit::Fits,
        (Some((start, close)), Some(end)) => {
            let close_ms = offset(close);
            let length = (close_ms - offset(start)).max(1) as f64;
            if end > close_ms {
                Fit::Overruns
            } else if ((close_ms - end) as f64) < TIGHT_MARGIN * length {
                Fit::Tight
            } else {
                Fit::Fits
            }
        }
    };
    let mut unknown_changes: Vec<String> = execution
        .changes
        .iter()
        .enumerate()
        .filter(|(i, _)| durations.get(*i).copied().flatten().is_none())
        .map(|(_, c)| c.id.clone())
        .collect();
    let unknown_count = unknown_changes.len();
    unknown_changes.truncate(20);
    Schedule {
        origin: window.map_or(now, |(start, _)| start).to_string(),
        origin_is: if window.is_some() { "window" } else { "now" }.to_string(),
        window_end_s: window_end.map(rel),
        parallelism: parallelism.max(1),
        boot_groups,
        end_s: end.filter(|_| !any_unknown).map(rel),
        critical_path: last.map_or_else(Vec::new, |(_, n)| sim.path_to(n)),
        fit,
        unknown: unknown_changes,
        unknown_count,
        steps_counted: execution.steps.len(),
    }
}

/// The simulation's state: per node, when it became ready, started and ended.
struct Sim<'p> {
    plan: &'p ExecutionPlan,
    durations: &'p [Option<Duration>],
    opens: Option<Ms>,
    rank: Vec<usize>,
    waiting: Vec<usize>,
    release: Vec<Ms>,
    start: Vec<Ms>,
    end: Vec<Ms>,
    unknown: Vec<bool>,
    /// The predecessor whose end released the node last (for the critical path).
    bound_by: Vec<Option<NodeIndex>>,
    available: BinaryHeap<Reverse<(Ms, usize)>>,
}

impl<'p> Sim<'p> {
    fn new(plan: &'p ExecutionPlan, durations: &'p [Option<Duration>], opens: Option<Ms>) -> Self {
        let graph = &plan.graph;
        let count = graph.node_count();
        let mut rank = vec![0usize; count];
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
        let waiting = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, petgraph::Incoming).count())
            .collect();
        let mut sim = Self {
            plan,
            durations,
            opens,
            rank,
            waiting,
            release: vec![0; count],
            start: vec![0; count],
            end: vec![0; count],
            unknown: vec![false; count],
            bound_by: vec![None; count],
            available: BinaryHeap::new(),
        };
        for n in graph.node_indices() {
            if sim.waiting[n.index()] == 0 {
                sim.make_available(n);
            }
        }
        sim
    }

    /// Failbacks, commits and steps not before the window opens.
    fn make_available(&mut self, n: NodeIndex) {
        let i = n.index();
        if let Some(opens) = self.opens
            && in_window(self.plan, &self.plan.graph[n])
        {
            self.release[i] = self.release[i].max(opens);
        }
        self.available.push(Reverse((self.release[i], i)));
    }

    fn cost(&self, n: NodeIndex) -> (Ms, bool) {
        match self.plan.graph[n] {
            Node::Change(i) => match self.durations.get(i).copied().flatten() {
                Some(d) => (ms(d), false),
                None => (0, true),
            },
            _ => (0, false),
        }
    }

    fn finish(&mut self, n: usize) {
        let graph = &self.plan.graph;
        let next: Vec<NodeIndex> = graph
            .neighbors_directed(NodeIndex::new(n), petgraph::Outgoing)
            .collect();
        for m in next {
            let j = m.index();
            self.unknown[j] |= self.unknown[n];
            if self.end[n] >= self.release[j] {
                self.release[j] = self.end[n];
                self.bound_by[j] = Some(NodeIndex::new(n));
            }
            self.waiting[j] -= 1;
            if self.waiting[j] == 0 {
                self.make_available(m);
            }
        }
    }

    fn run(&mut self, slots: usize) {
        let graph = &self.plan.graph;
        let mut ready: BinaryHeap<(usize, Reverse<usize>)> = BinaryHeap::new();
        let mut running: BinaryHeap<Reverse<(Ms, usize)>> = BinaryHeap::new();
        let mut t: Ms = 0;
        loop {
            while let Some(&Reverse((at, n))) = self.available.peek() {
                if at > t {
                    break;
                }
                self.available.pop();
                ready.push((self.rank[n], Reverse(n)));
            }
            let mut instant = Vec::new();
            while let Some(&(_, Reverse(n))) = ready.peek() {
                let node = NodeIndex::new(n);
                // Only provider operations take a slot, as in the executor's `parallelism`.
                if matches!(graph[node], Node::Change(_)) && running.len() >= slots {
                    break;
                }
                ready.pop();
                let (own, own_unknown) = self.cost(node);
                self.start[n] = t;
                self.end[n] = t + own;
                self.unknown[n] |= own_unknown;
                if own == 0 {
                    instant.push(n);
                } else {
                    running.push(Reverse((self.end[n], n)));
                }
            }
            if !instant.is_empty() {
                for n in instant {
                    self.finish(n);
                }
                continue;
            }
            let next = match (running.peek(), self.available.peek()) {
                (Some(Reverse((a, _))), Some(Reverse((b, _)))) => (*a).min(*b),
                (Some(Reverse((a, _))), None) => *a,
                (None, Some(Reverse((b, _)))) => *b,
                (None, None) => break,
            };
            t = next;
            while let Some(&Reverse((at, n))) = running.peek() {
                if at > t {
                    break;
                }
                running.pop();
                self.finish(n);
            }
        }
    }

    /// The changes and steps on the chain that ends at `n`, first to last.
    fn path_to(&self, n: NodeIndex) -> Vec<String> {
        let mut path = Vec::new();
        let mut at = Some(n);
        while let Some(node) = at {
            if !matches!(self.plan.graph[node], Node::Checkpoint(_)) {
                path.push(self.plan.node_id(&self.plan.graph[node]).to_string());
            }
            at = self.bound_by[node.index()];
        }
        path.reverse();
        path
    }
}

/// `preflight::maintenance-window` from the schedule: an error naming the boot group (or
/// the machines in no group) that would end after the window closes; a warning when less
/// than a tenth of the window is left at the end.
pub fn fit_diagnostics(plan: &Plan, schedule: &Schedule, now: jiff::Timestamp) -> Vec<Diagnostic> {
    let Some(window) = &plan.maintenance_window else {
        return Vec::new();
    };
    // A window that has passed is reported by the preflight check of its own.
    if now >= window.end.value.0 {
        return Vec::new();
    }
    let Some(close) = schedule.window_end_s else {
        return Vec::new();
    };
    let at = |s: i64| human_offset(s);
    match schedule.fit {
        Fit::Overruns => {
            let over: Vec<&GroupSchedule> = schedule
                .boot_groups
                .iter()
                .filter(|g| g.end_s.is_some_and(|end| end > close))
                .collect();
            let (who, end) = match over.first() {
                Some(group) => (
                    format!("boot group `{}`", group.name),
                    group.end_s.unwrap_or_default(),
                ),
                None => (
                    "the failbacks of machines in no boot group".to_string(),
                    schedule.end_s.unwrap_or_default(),
                ),
            };
            let others = if over.len() > 1 {
                format!(
                    " (and {} after it)",
                    crate::validate::join_names(
                        &over[1..].iter().map(|g| g.name.as_str()).collect::<Vec<_>>()
                    )
                )
            } else {
                String::new()
            };
            vec![
                Diagnostic::error(
                    codes::PREFLIGHT_MAINTENANCE_WINDOW,
                    format!(
                        "{who} would end at {} into the maintenance window, {} after it closes at {}{others}",
                        at(end),
                        human_duration(Duration::from_secs(u64::try_from(end - close).unwrap_or(0))),
                        at(close),
                    ),
                )
                .with_label(window.end.span, "closes before the failback is done")
                .with_help("widen the window, split the failback over two windows (`--target boot_group.NAME`), or raise `--parallelism`; `apply` will not start a group that cannot end inside the window"),
            ]
        }
        Fit::Tight => vec![
            Diagnostic::warning(
                codes::PREFLIGHT_MAINTENANCE_WINDOW,
                format!(
                    "the failback is estimated to end at {} into the maintenance window, less than a tenth of it before it closes at {}",
                    at(schedule.end_s.unwrap_or_default()),
                    at(close)
                ),
            )
            .with_label(window.end.span, "little room left")
            .with_help("a slower operation or a long step would make a boot group miss the window; `apply` does not start a group that cannot end inside it"),
        ],
        _ => Vec::new(),
    }
}

/// `+1h 20m`, `-5m`, `+0s`: an offset from the window's start.
pub fn human_offset(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "+" };
    format!(
        "{sign}{}",
        human_duration(Duration::from_secs(seconds.unsigned_abs()))
    )
}
