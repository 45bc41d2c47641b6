//! The JSON shape of a plan (DESIGN.md §6), shared by `plan --format json`, saved plans and
//! `show`. Documented as `schemas/plan-output.schema.json`, generated from these types.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Action, ExecutionPlan, PlannedChange, PlannedStep, Untouched};
use crate::diagnostic::JsonDiagnostic;
use crate::model::Goal;

pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "lifeboat plan output", extend("$id" = "https://lifeboat.dev/schemas/plan-output.schema.json"))]
pub struct PlanOutput {
    pub format_version: String,
    /// The state's lineage: set once when the state is created, never changed.
    pub lineage: Option<String>,
    /// The state's serial when the plan was made.
    pub serial: Option<u64>,
    pub goal: Goal,
    pub changes: Vec<PlannedChange>,
    /// Steps between boot groups that `apply` will run (checks, commands, manual gates), in
    /// order; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<PlannedStep>,
    /// The expected schedule: boot groups relative to the window's start, the critical
    /// path, and whether failback and commit fit the window. Absent without changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::Schedule>,
    /// Machines the plan leaves alone, and why.
    #[serde(default)]
    pub untouched: Vec<Untouched>,
    pub diagnostics: Vec<JsonDiagnostic>,
    pub summary: PlanSummary,
    /// Only under `plan --refresh-only` (then `changes` is empty): where the sites differ
    /// from what the state records. An empty list means no drift.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Vec<crate::state::drift::Drift>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// The schema keeps the name published before the rename, for consumers of its `$defs`.
#[schemars(rename = "Summary")]
pub struct PlanSummary {
    /// Changes per action; every action is present, with 0 when unused.
    pub changes: BTreeMap<Action, usize>,
    /// Machines that will have application downtime (a failback).
    pub downtime_machines: usize,
    /// Changes that copy every disk again.
    pub full_resync_changes: usize,
    /// Upper bound of data sent by all changes, in GiB.
    pub max_transfer_gib: u64,
}

impl PlanSummary {
    pub fn of(plan: &ExecutionPlan) -> Self {
        Self {
            changes: plan.counts(),
            downtime_machines: plan.changes.iter().filter(|c| c.risk.downtime).count(),
            full_resync_changes: plan.changes.iter().filter(|c| c.risk.full_resync).count(),
            max_transfer_gib: plan
                .changes
                .iter()
                .map(|c| c.risk.max_transfer_gib)
                .fold(0, u64::saturating_add),
        }
    }

    pub fn total(&self) -> usize {
        self.changes.values().sum()
    }
}

impl PlanOutput {
    pub fn new(
        plan: &ExecutionPlan,
        lineage: Option<String>,
        serial: Option<u64>,
        diagnostics: Vec<JsonDiagnostic>,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION.to_string(),
            lineage,
            serial,
            goal: plan.goal,
            changes: plan.changes.clone(),
            steps: plan.steps.clone(),
            schedule: None,
            untouched: plan.untouched.clone(),
            diagnostics,
            summary: PlanSummary::of(plan),
            drift: None,
        }
    }
}

/// Human size of an amount of GiB: `512 GiB`, `3.2 TiB`.
pub fn gib(amount: u64) -> String {
    if amount >= 1024 {
        format!("{:.1} TiB", amount as f64 / 1024.0)
    } else {
        format!("{amount} GiB")
    }
}
