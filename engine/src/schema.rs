//! JSON Schemas of the files lifeboat reads and writes, generated from the types.

use crate::model::Plan;

pub fn plan() -> schemars::Schema {
    schemars::schema_for!(Plan)
}

pub fn plan_output() -> schemars::Schema {
    schemars::schema_for!(crate::planner::output::PlanOutput)
}
