//! JSON Schemas of the files lifeboat reads and writes, generated from the types.

use crate::diff::DiffReport;
use crate::model::Plan;

pub fn plan() -> schemars::Schema {
    schemars::schema_for!(Plan)
}

pub fn plan_output() -> schemars::Schema {
    schemars::schema_for!(crate::planner::output::PlanOutput)
}

/// The report of `lifeboat diff --format json`.
pub fn diff() -> schemars::Schema {
    schemars::schema_for!(DiffReport)
}
