//! Steps 5 and 6 of the engine: from the plan, its validation and the refreshed facts to an
//! ordered list of changes and the operation DAG that `apply` walks.
//!
//! For every machine the planner lists the operations from its current stage to the goal
//! (DESIGN.md §2), adds a `switch-process-server` first when a reprotected machine replicates
//! through another process server than the plan names, and never plans a step backwards. The
//! other reprotect settings (master target, datastore, retention drive, recovery type) cannot
//! change once a machine is reprotected: ASR has no operation for it, and disabling protection
//! would strand the machine in Azure (DESIGN.md §2), so their drift is a preflight error
//! (`preflight::locked-setting`), never a change. The DAG's edges say "must finish before":
//!
//! - a machine's own operations run in lifecycle order;
//! - a replication group's failbacks wait for every member's reprotect (one checkpoint node
//!   per group, not an edge per pair of members);
//! - boot groups fail back one after another (one checkpoint per boot group);
//! - `depends_on` orders failbacks machine by machine;
//! - a boot group's `before` steps run, in order, before its failbacks, and its `after`
//!   steps when they are done; the next group starts after them ([`steps`]).
//!
//! An edge is [`Edge::Needs`] (a failure before it skips what follows) except the edges that
//! carry the boot order out of a group with `on_failure: continue`, which are
//! [`Edge::Follows`]: a failure there is reported, and later groups proceed.
//!
//! Every step is linear in machines plus edges written in the file. The change list is in a
//! deterministic topological order (ties by plan order), so the same inputs always print the
//! same plan.

pub mod output;
pub mod steps;

use crate::address::{Address, AddressError, TARGET_KINDS};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::{Goal, Plan};
use crate::preflight::{home_settings, reprotect_settings};
use crate::provider::facts::{AppliedSettings, Facts};
use crate::provider::{OperationKind, ReprotectSettings, Stage};
use crate::validate::Validation;

pub use steps::{Phase, PlannedStep, StepAction};

/// What a change does (the `action` of a change in `plan --format json`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Reprotect,
    Failback,
    Commit,
    ReprotectHome,
    /// Move a reprotected machine's replication to the plan's process server (ASR's
    /// `reassociateGateway`); no resync, no downtime.
    SwitchProcessServer,
    /// Forget a machine that left the plan; no provider call.
    Release,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Self::Reprotect,
        Self::Failback,
        Self::Commit,
        Self::ReprotectHome,
        Self::SwitchProcessServer,
        Self::Release,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reprotect => "reprotect",
            Self::Failback => "failback",
            Self::Commit => "commit",
            Self::ReprotectHome => "reprotect-home",
            Self::SwitchProcessServer => "switch-process-server",
            Self::Release => "release",
        }
    }

    fn from_kind(kind: OperationKind) -> Self {
        match kind {
            OperationKind::Reprotect => Self::Reprotect,
            OperationKind::Failback => Self::Failback,
            OperationKind::Commit => Self::Commit,
            OperationKind::ReprotectHome => Self::ReprotectHome,
            OperationKind::SwitchProcessServer => Self::SwitchProcessServer,
        }
    }

    /// The provider operation that carries the action out; `None` for `release`.
    pub fn operation(self) -> Option<OperationKind> {
        match self {
            Self::Reprotect => Some(OperationKind::Reprotect),
            Self::SwitchProcessServer => Some(OperationKind::SwitchProcessServer),
            Self::Failback => Some(OperationKind::Failback),
            Self::Commit => Some(OperationKind::Commit),
            Self::ReprotectHome => Some(OperationKind::ReprotectHome),
            Self::Release => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What could go wrong for the business if the change runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Risk {
    /// The application is down between the Azure VM's shutdown and the VMware VM's start.
    pub downtime: bool,
    /// Every disk is copied again, not only the changes.
    pub full_resync: bool,
    /// Upper bound of data sent (between 0 and the sum of the disks: the real amount cannot be
    /// known in advance).
    pub max_transfer_gib: u64,
}

impl Risk {
    pub fn is_dangerous(&self) -> bool {
        self.downtime || self.full_resync
    }
}

/// One change of the plan: one action on one machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
// The schema keeps the name published before the rename, for consumers of its `$defs`.
#[schemars(rename = "Change")]
pub struct PlannedChange {
    /// `ACTION ADDRESS`, unique in a plan, e.g. `failback machine.db-01`.
    pub id: String,
    /// `machine.NAME`.
    pub address: Address,
    pub action: Action,
    pub reason: String,
    /// The machine's stage and settings before and after the change.
    pub before: BTreeMap<String, String>,
    pub after: BTreeMap<String, String>,
    /// Ids of the changes and checkpoints this change waits for.
    pub depends_on: Vec<String>,
    pub risk: Risk,
    /// What a reprotect, a process-server switch or a reprotect home sends to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ReprotectSettings>,
}

impl PlannedChange {
    pub fn machine(&self) -> &str {
        self.address.as_machine().unwrap_or_default()
    }
}

/// A node of the operation DAG: a change, a checkpoint that joins many changes, or a step
/// between boot groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Index into [`ExecutionPlan::changes`].
    Change(usize),
    /// A join point, e.g. `group.app reprotected`.
    Checkpoint(String),
    /// Index into [`ExecutionPlan::steps`].
    Step(usize),
}

/// What an edge of the DAG means when the node before it fails (or is skipped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Edge {
    /// The node after it cannot run: it is skipped, with the failure as its cause.
    #[default]
    Needs,
    /// The boot order out of a group with `on_failure: continue`: the node after it runs
    /// anyway, and the failure stays in the report.
    Follows,
}

/// The operation DAG.
pub type Graph = DiGraph<Node, Edge>;

/// A machine the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Untouched {
    pub address: Address,
    pub stage: Stage,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ExecutionPlan {
    pub goal: Goal,
    /// In a topological order of [`Self::graph`].
    pub changes: Vec<PlannedChange>,
    /// Steps between boot groups, in a topological order of [`Self::graph`].
    pub steps: Vec<PlannedStep>,
    pub graph: Graph,
    /// Machines ahead of the goal, or missing at the site.
    pub untouched: Vec<Untouched>,
}

impl ExecutionPlan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.steps.is_empty()
    }

    /// The id of a node: a change's or a step's id, or a checkpoint's label.
    pub fn node_id<'a>(&'a self, node: &'a Node) -> &'a str {
        match node {
            Node::Change(i) => &self.changes[*i].id,
            Node::Step(i) => &self.steps[*i].id,
            Node::Checkpoint(label) => label,
        }
    }

    /// How many changes of each action the plan has.
    pub fn counts(&self) -> BTreeMap<Action, usize> {
        let mut counts: BTreeMap<Action, usize> = Action::ALL.iter().map(|&a| (a, 0)).collect();
        for change in &self.changes {
            *counts.entry(change.action).or_default() += 1;
        }
        counts
    }
}

type Tuple<'a> = [(&'static str, Option<&'a str>); 5];

/// The settings as before/after maps show them; a setting the provider cannot tell is left
/// out rather than shown as a guess.
fn settings_map(stage: Stage, settings: Option<Tuple<'_>>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::from([("stage".to_string(), stage.as_str().to_string())]);
    for (key, value) in settings.into_iter().flatten() {
        if let Some(value) = value {
            map.insert(key.to_string(), value.to_string());
        }
    }
    map
}

fn applied_tuple(s: &AppliedSettings) -> Tuple<'_> {
    [
        ("master_target", s.master_target.as_deref()),
        ("process_server", s.process_server.as_deref()),
        ("datastore", s.datastore.as_deref()),
        ("retention_drive", s.retention_drive.as_deref()),
        ("recovery", s.recovery.map(crate::model::Recovery::as_str)),
    ]
}

fn desired_tuple(s: &ReprotectSettings) -> Tuple<'_> {
    [
        ("master_target", Some(s.master_target.as_str())),
        ("process_server", Some(s.process_server.as_str())),
        ("datastore", Some(s.datastore.as_str())),
        ("retention_drive", Some(s.retention_drive.as_str())),
        ("recovery", Some(s.recovery.as_str())),
    ]
}

/// Builds the execution plan. `released` lists machines the state knows but the plan no
/// longer names (with their last recorded stage). Every step is planned (none is recorded
/// done); see [`build_with_steps_done`].
pub fn build(
    plan: &Plan,
    validation: &Validation,
    facts: &Facts,
    released: &[(String, Stage)],
) -> Result<ExecutionPlan, CycleError> {
    build_with_steps_done(plan, validation, facts, released, &|_, _| false)
}

/// [`build`], leaving out the steps `done(id, digest)` says the state records as passed.
pub fn build_with_steps_done(
    plan: &Plan,
    validation: &Validation,
    facts: &Facts,
    released: &[(String, Stage)],
    done: &dyn Fn(&str, &str) -> bool,
) -> Result<ExecutionPlan, CycleError> {
    let goal = Stage::from_goal(plan.goal());
    let mut changes: Vec<PlannedChange> = Vec::new();
    let mut untouched = Vec::new();
    // Per machine, the change index of each action it gets.
    let mut by_machine: Vec<BTreeMap<Action, usize>> = vec![BTreeMap::new(); plan.machines.len()];

    for (m, (name, machine)) in plan.machines.iter().enumerate() {
        let address = Address::machine(name.value.clone());
        let Some(fact) = facts.machines.get(name.value.as_str()) else {
            untouched.push(Untouched {
                address,
                stage: Stage::FailedOver,
                reason: "not found at the site; see the preflight errors".to_string(),
            });
            continue;
        };
        let stage = fact.stage;
        if stage > goal {
            untouched.push(Untouched {
                address,
                stage,
                reason: format!(
                    "is {stage}, past the goal `{goal}`; lifeboat never moves a machine backwards"
                ),
            });
            continue;
        }
        let desired = reprotect_settings(plan, &validation.assignment, m);
        let transfer = machine.disk_total_gib();
        let chosen = validation
            .assignment
            .chosen
            .get(m)
            .copied()
            .unwrap_or(false);

        let mut push = |action: Action, reason: String, before, after, risk, settings| {
            by_machine[m].insert(action, changes.len());
            changes.push(PlannedChange {
                id: format!("{action} {address}"),
                address: address.clone(),
                action,
                reason,
                before,
                after,
                depends_on: Vec::new(),
                risk,
                settings,
            });
        };

        if stage == Stage::Reprotected
            && let (Some(applied), Some(desired)) = (&fact.settings, &desired)
            && let Some(current) = &applied.process_server
            && *current != desired.process_server
        {
            // The one setting ASR can change on a reprotected machine; the others are
            // preflight errors (`preflight::locked-setting`).
            let mut after = applied.clone();
            after.process_server = Some(desired.process_server.clone());
            push(
                Action::SwitchProcessServer,
                format!(
                    "replicates through process server `{current}`, the plan names `{}`: ASR moves the replication (no resync, no downtime)",
                    desired.process_server
                ),
                settings_map(stage, Some(applied_tuple(applied))),
                settings_map(stage, Some(applied_tuple(&after))),
                Risk::default(),
                Some(ReprotectSettings {
                    process_server: desired.process_server.clone(),
                    ..desired.clone()
                }),
            );
        }

        for kind in OperationKind::ALL {
            if kind.from_stage() < stage || kind.to_stage() > goal {
                continue;
            }
            let action = Action::from_kind(kind);
            let (reason, risk, settings) = match kind {
                OperationKind::Reprotect => {
                    let Some(desired) = &desired else { continue };
                    let how = if chosen {
                        " (assigned by lifeboat)"
                    } else {
                        ""
                    };
                    let recovery = match machine.recovery() {
                        crate::model::Recovery::Original => {
                            "original-location recovery: only changed blocks travel"
                        }
                        crate::model::Recovery::Alternate => {
                            "alternate-location recovery: a new VM, every disk travels"
                        }
                    };
                    (
                        format!(
                            "replicate back through master target `{}`{how} and process server `{}`; {recovery}",
                            desired.master_target, desired.process_server
                        ),
                        Risk {
                            downtime: false,
                            full_resync: machine.recovery() == crate::model::Recovery::Alternate,
                            max_transfer_gib: transfer,
                        },
                        Some(desired.clone()),
                    )
                }
                OperationKind::Failback => (
                    "shuts the Azure VM down and starts the VMware VM: application downtime"
                        .to_string(),
                    Risk {
                        downtime: true,
                        full_resync: false,
                        max_transfer_gib: 0,
                    },
                    None,
                ),
                OperationKind::Commit => (
                    "removes the Azure replicas; the failback can no longer be undone".to_string(),
                    Risk::default(),
                    None,
                ),
                OperationKind::ReprotectHome => (
                    match &plan.site.value.home {
                        Some(home) => format!(
                            "protects the machine again, VMware → Azure, through process server `{}` (initial replication)",
                            home.value.process_server.value
                        ),
                        None => "protects the machine again, VMware → Azure (initial replication)"
                            .to_string(),
                    },
                    Risk {
                        downtime: false,
                        full_resync: false,
                        max_transfer_gib: transfer,
                    },
                    desired.clone().map(|settings| ReprotectSettings {
                        home: home_settings(plan),
                        ..settings
                    }),
                ),
                // Planned above, from drift, not from the lifecycle.
                OperationKind::SwitchProcessServer => continue,
            };
            let before_settings = fact
                .settings
                .as_ref()
                .filter(|_| kind != OperationKind::Reprotect);
            let after_settings = desired
                .as_ref()
                .filter(|_| kind == OperationKind::Reprotect);
            push(
                action,
                reason,
                settings_map(kind.from_stage(), before_settings.map(applied_tuple)),
                settings_map(kind.to_stage(), after_settings.map(desired_tuple)),
                risk,
                settings,
            );
        }
    }

    for (name, stage) in released {
        changes.push(PlannedChange {
            id: format!("release machine.{name}"),
            address: Address::machine(name.clone()),
            action: Action::Release,
            reason: "no longer in the plan: forgotten by the state; nothing happens at either site"
                .to_string(),
            before: settings_map(*stage, None),
            after: BTreeMap::new(),
            depends_on: Vec::new(),
            risk: Risk::default(),
            settings: None,
        });
    }

    // Steps run on the failback night only; a plan that stops at `reprotected` has none.
    let steps = if plan.goal() >= Goal::FailedBack {
        planned_steps(plan, done)
    } else {
        Vec::new()
    };
    let graph = build_graph(plan, &changes, &by_machine, &steps);
    order(changes, steps, graph, plan.goal(), untouched)
}

/// Every step of the boot order the state does not record done, group by group; the
/// second value of each is the boot group's index.
fn planned_steps(plan: &Plan, done: &dyn Fn(&str, &str) -> bool) -> Vec<(usize, PlannedStep)> {
    let mut out = Vec::new();
    for (g, group) in plan.boot_order.iter().enumerate() {
        for (phase, list) in [(Phase::Before, &group.before), (Phase::After, &group.after)] {
            for (i, step) in list.iter().enumerate() {
                if let Some(planned) = PlannedStep::new(group, phase, i + 1, &step.value)
                    && !done(&planned.id, &planned.digest)
                {
                    out.push((g, planned));
                }
            }
        }
    }
    out
}

fn build_graph(
    plan: &Plan,
    changes: &[PlannedChange],
    by_machine: &[BTreeMap<Action, usize>],
    steps: &[(usize, PlannedStep)],
) -> Graph {
    let mut graph: Graph = DiGraph::with_capacity(
        changes.len() + steps.len() + 64,
        changes.len() * 2 + steps.len(),
    );
    for i in 0..changes.len() {
        graph.add_node(Node::Change(i));
    }
    let node = NodeIndex::new;
    // What a group's failbacks wait for: each member's reprotect, or its process-server
    // switch when it is reprotected already.
    let first_reprotect = |m: usize| {
        by_machine[m]
            .get(&Action::Reprotect)
            .or_else(|| by_machine[m].get(&Action::SwitchProcessServer))
            .copied()
    };
    let failback = |m: usize| by_machine[m].get(&Action::Failback).copied();

    // A machine's own operations, in lifecycle order (a process-server switch comes before
    // the failback it prepares).
    for actions in by_machine {
        let order = [
            Action::Reprotect,
            Action::SwitchProcessServer,
            Action::Failback,
            Action::Commit,
            Action::ReprotectHome,
        ];
        let chain: Vec<usize> = order
            .iter()
            .filter_map(|a| actions.get(a).copied())
            .collect();
        for pair in chain.windows(2) {
            graph.add_edge(node(pair[0]), node(pair[1]), Edge::Needs);
        }
    }

    let index = plan.machines.index();
    let resolve = |name: &str| index.get(name).copied();

    // A group fails back only when every member is reprotected.
    for (group_name, group) in plan.replication_groups.iter() {
        let members: Vec<usize> = group
            .machines
            .value
            .iter()
            .filter_map(|m| resolve(&m.value))
            .collect();
        let reprotects: Vec<usize> = members.iter().filter_map(|&m| first_reprotect(m)).collect();
        let failbacks: Vec<usize> = members.iter().filter_map(|&m| failback(m)).collect();
        if reprotects.is_empty() || failbacks.is_empty() {
            continue;
        }
        let checkpoint = graph.add_node(Node::Checkpoint(format!(
            "group.{} reprotected",
            group_name.value
        )));
        for r in reprotects {
            graph.add_edge(node(r), checkpoint, Edge::Needs);
        }
        for f in failbacks {
            graph.add_edge(checkpoint, node(f), Edge::Needs);
        }
    }

    // Boot groups fail back one after another, each with its steps before and after. The
    // boot order leaves a group through edges that follow its `on_failure`.
    let mut steps_of: Vec<(Vec<usize>, Vec<usize>)> =
        vec![Default::default(); plan.boot_order.len()];
    for (i, (g, step)) in steps.iter().enumerate() {
        let lists = &mut steps_of[*g];
        match step.phase {
            Phase::Before => lists.0.push(i),
            Phase::After => lists.1.push(i),
        }
    }
    let step_node = |graph: &mut Graph, i: usize| graph.add_node(Node::Step(i));
    let flow = |group: &crate::model::BootGroup| match group.on_failure() {
        crate::model::OnFailure::Stop => Edge::Needs,
        crate::model::OnFailure::Continue => Edge::Follows,
    };
    // The last node of the order so far, and how a failure there affects what follows.
    let mut previous: Option<(NodeIndex, Edge)> = None;
    for (g, group) in plan.boot_order.iter().enumerate() {
        let own = flow(group);
        let (before, after) = &steps_of[g];
        for &i in before {
            let n = step_node(&mut graph, i);
            if let Some((p, edge)) = previous {
                graph.add_edge(p, n, edge);
            }
            previous = Some((n, own));
        }
        let failbacks: Vec<usize> = group
            .machines
            .value
            .iter()
            .filter_map(|m| resolve(&m.value))
            .filter_map(failback)
            .collect();
        if !failbacks.is_empty() {
            let checkpoint = graph.add_node(Node::Checkpoint(format!(
                "boot group `{}` failed back",
                group.name.value
            )));
            for &f in &failbacks {
                if let Some((p, edge)) = previous {
                    graph.add_edge(p, node(f), edge);
                }
                graph.add_edge(node(f), checkpoint, own);
            }
            previous = Some((checkpoint, own));
        }
        for &i in after {
            let n = step_node(&mut graph, i);
            if let Some((p, edge)) = previous {
                graph.add_edge(p, n, edge);
            }
            previous = Some((n, own));
        }
    }

    // `depends_on` orders failbacks.
    for (m, (_, machine)) in plan.machines.iter().enumerate() {
        let Some(f) = failback(m) else { continue };
        for dep in &machine.depends_on {
            if let Some(d) = resolve(&dep.value).and_then(failback) {
                graph.add_edge(node(d), node(f), Edge::Needs);
            }
        }
    }
    graph
}

/// Puts the changes in a deterministic topological order (ties by the order they were made,
/// which is plan order) and fills in each change's `depends_on`.
fn order(
    changes: Vec<PlannedChange>,
    steps: Vec<(usize, PlannedStep)>,
    graph: Graph,
    goal: Goal,
    untouched: Vec<Untouched>,
) -> Result<ExecutionPlan, CycleError> {
    let mut in_degree: Vec<usize> = graph
        .node_indices()
        .map(|n| graph.neighbors_directed(n, petgraph::Incoming).count())
        .collect();
    let mut ready: BinaryHeap<Reverse<usize>> = graph
        .node_indices()
        .filter(|n| in_degree[n.index()] == 0)
        .map(|n| Reverse(n.index()))
        .collect();
    let mut topological = Vec::with_capacity(graph.node_count());
    while let Some(Reverse(n)) = ready.pop() {
        topological.push(n);
        for next in graph.neighbors_directed(NodeIndex::new(n), petgraph::Outgoing) {
            in_degree[next.index()] -= 1;
            if in_degree[next.index()] == 0 {
                ready.push(Reverse(next.index()));
            }
        }
    }
    let ids: Vec<String> = changes.iter().map(|c| c.id.clone()).collect();
    let step_ids: Vec<String> = steps.iter().map(|(_, s)| s.id.clone()).collect();
    let id_of = |n: NodeIndex| match &graph[n] {
        Node::Change(i) => ids[*i].clone(),
        Node::Step(i) => step_ids[*i].clone(),
        Node::Checkpoint(label) => label.clone(),
    };
    if topological.len() != graph.node_count() {
        // The nodes never freed are on a cycle or behind one.
        let through = graph
            .node_indices()
            .filter(|n| in_degree[n.index()] > 0)
            .take(10)
            .map(id_of)
            .collect();
        return Err(CycleError { through });
    }
    let mut position = vec![0usize; changes.len()];
    let mut ordered_ids = Vec::with_capacity(changes.len());
    let mut step_position = vec![0usize; steps.len()];
    let mut ordered_steps = Vec::with_capacity(steps.len());
    let mut step_slots: Vec<Option<PlannedStep>> =
        steps.into_iter().map(|(_, s)| Some(s)).collect();
    for n in &topological {
        match graph[NodeIndex::new(*n)] {
            Node::Change(i) => {
                position[i] = ordered_ids.len();
                ordered_ids.push(i);
            }
            Node::Step(i) => {
                step_position[i] = ordered_steps.len();
                let mut step = step_slots[i].take().expect("each step is placed once");
                let mut deps: Vec<String> = graph
                    .neighbors_directed(NodeIndex::new(*n), petgraph::Incoming)
                    .map(id_of)
                    .collect();
                deps.sort();
                step.depends_on = deps;
                ordered_steps.push(step);
            }
            Node::Checkpoint(_) => {}
        }
    }
    let mut slots: Vec<Option<PlannedChange>> = changes.into_iter().map(Some).collect();
    let mut ordered = Vec::with_capacity(ordered_ids.len());
    for &i in &ordered_ids {
        let mut change = slots[i].take().expect("each change is placed once");
        // Change `i` is node `i`: the graph adds the changes first.
        let mut deps: Vec<String> = graph
            .neighbors_directed(NodeIndex::new(i), petgraph::Incoming)
            .map(id_of)
            .collect();
        deps.sort();
        change.depends_on = deps;
        ordered.push(change);
    }
    // Renumber the graph's change and step nodes to the new order.
    let graph = graph.map(
        |_, node| match node {
            Node::Change(i) => Node::Change(position[*i]),
            Node::Step(i) => Node::Step(step_position[*i]),
            other => other.clone(),
        },
        |_, edge| *edge,
    );
    Ok(ExecutionPlan {
        goal,
        changes: ordered,
        steps: ordered_steps,
        graph,
        untouched,
    })
}

/// A `--target` address that is malformed or names nothing the plan has.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("`{0}` is not an address; use {TARGET_KINDS}")]
    NotAnAddress(String),
    #[error("`{0}` names nothing in the plan")]
    NamesNothing(String),
}

impl From<AddressError> for TargetError {
    fn from(error: AddressError) -> Self {
        Self::NotAnAddress(error.0)
    }
}

/// The operation graph could not be ordered. Validation rejects every cycle a plan file can
/// express and the planner adds none, so this is a defect of lifeboat, reported with the
/// nodes involved instead of aborting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the operation graph has a cycle through {}; this is a defect of lifeboat, please report it with the plan",
    .through.join(", ")
)]
pub struct CycleError {
    /// Ids of the changes and checkpoints left unordered (at most ten).
    pub through: Vec<String>,
}

/// The machines `--target` addresses select: `machine.NAME`, `group.NAME` (its members),
/// `boot_group.NAME` (its members) or `master_target.NAME` (the machines it serves).
pub fn resolve_targets(
    plan: &Plan,
    validation: &Validation,
    addresses: &[String],
) -> Result<std::collections::HashSet<String>, TargetError> {
    let mut machines = std::collections::HashSet::new();
    for text in addresses {
        let address: Address = text.parse()?;
        let known = match &address {
            Address::Machine(name) => {
                let known = plan.machines.names().any(|n| n == name);
                if known {
                    machines.insert(name.clone());
                }
                known
            }
            Address::Group(name) => plan
                .replication_groups
                .iter()
                .find(|(n, _)| n.value == *name)
                .inspect(|(_, group)| {
                    machines.extend(group.machines.value.iter().map(|m| m.value.clone()));
                })
                .is_some(),
            Address::BootGroup(name) => plan
                .boot_order
                .iter()
                .find(|g| g.name.value == *name)
                .inspect(|group| {
                    machines.extend(group.machines.value.iter().map(|m| m.value.clone()));
                })
                .is_some(),
            Address::MasterTarget(name) => {
                for (m, (machine, _)) in plan.machines.iter().enumerate() {
                    if validation.assignment.target_name(plan, m) == Some(name.as_str()) {
                        machines.insert(machine.value.clone());
                    }
                }
                plan.master_targets.names().any(|n| n == name)
            }
            Address::BootOrder | Address::Plan => {
                return Err(TargetError::NotAnAddress(text.clone()));
            }
        };
        if !known && !plan.machines.is_empty() {
            return Err(TargetError::NamesNothing(text.clone()));
        }
    }
    Ok(machines)
}

impl ExecutionPlan {
    /// The plan restricted to the changes of `machines` and everything they depend on.
    ///
    /// Dependencies are followed through the DAG (checkpoints included), so targeting one
    /// member of a replication group pulls in the whole group's reprotects, and targeting a
    /// failback pulls in the failbacks of earlier boot groups.
    pub fn restrict(&self, machines: &std::collections::HashSet<String>) -> ExecutionPlan {
        let mut keep = vec![false; self.graph.node_count()];
        let mut stack: Vec<NodeIndex> = self
            .graph
            .node_indices()
            .filter(|&n| matches!(&self.graph[n], Node::Change(i) if machines.contains(self.changes[*i].machine())))
            .collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut keep[n.index()], true) {
                continue;
            }
            stack.extend(self.graph.neighbors_directed(n, petgraph::Incoming));
        }
        let mut node_of = vec![None; self.changes.len()];
        for n in self.graph.node_indices() {
            if let Node::Change(i) = self.graph[n] {
                node_of[i] = Some(n);
            }
        }
        let mut renumber = vec![usize::MAX; self.changes.len()];
        let mut changes = Vec::new();
        for (i, change) in self.changes.iter().enumerate() {
            if node_of[i].is_some_and(|n| keep[n.index()]) {
                renumber[i] = changes.len();
                changes.push(change.clone());
            }
        }
        let mut step_node = vec![None; self.steps.len()];
        for n in self.graph.node_indices() {
            if let Node::Step(i) = self.graph[n] {
                step_node[i] = Some(n);
            }
        }
        let mut renumber_step = vec![usize::MAX; self.steps.len()];
        let mut steps = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            if step_node[i].is_some_and(|n| keep[n.index()]) {
                renumber_step[i] = steps.len();
                steps.push(step.clone());
            }
        }
        let graph = self.graph.filter_map(
            |n, node| {
                keep[n.index()].then(|| match node {
                    Node::Change(i) => Node::Change(renumber[*i]),
                    Node::Step(i) => Node::Step(renumber_step[*i]),
                    other => other.clone(),
                })
            },
            |_, edge| Some(*edge),
        );
        let untouched = self
            .untouched
            .iter()
            .filter(|u| u.address.as_machine().is_some_and(|m| machines.contains(m)))
            .cloned()
            .collect();
        ExecutionPlan {
            goal: self.goal,
            changes,
            steps,
            graph,
            untouched,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph the planner can never make (validation rejects every cycle a file can
    /// express); if one ever appears, planning says so with the nodes instead of aborting.
    #[test]
    fn a_cycle_is_an_error_naming_its_nodes() {
        let mut graph = Graph::new();
        let free = graph.add_node(Node::Checkpoint("group.db reprotected".to_string()));
        let a = graph.add_node(Node::Checkpoint("a".to_string()));
        let b = graph.add_node(Node::Checkpoint("b".to_string()));
        graph.add_edge(free, a, Edge::Needs);
        graph.add_edge(a, b, Edge::Needs);
        graph.add_edge(b, a, Edge::Needs);
        let error = order(Vec::new(), Vec::new(), graph, Goal::Reprotected, Vec::new())
            .expect_err("a cycle cannot be ordered");
        assert_eq!(error.through, ["a", "b"]);
        assert!(error.to_string().contains("cycle through a, b"), "{error}");
    }

    #[test]
    fn a_graph_without_cycle_is_ordered() {
        let mut graph = Graph::new();
        let a = graph.add_node(Node::Checkpoint("a".to_string()));
        let b = graph.add_node(Node::Checkpoint("b".to_string()));
        graph.add_edge(a, b, Edge::Needs);
        let plan =
            order(Vec::new(), Vec::new(), graph, Goal::Reprotected, Vec::new()).expect("ordered");
        assert!(plan.is_empty());
    }
}
