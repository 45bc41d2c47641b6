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

/// The state file (`.lifeboat/state.json`).
pub fn state() -> schemars::Schema {
    schemars::schema_for!(crate::state::State)
}

/// A saved plan (`plan --out FILE`).
pub fn saved_plan() -> schemars::Schema {
    let mut schema = schemars::schema_for!(crate::saved::SavedPlan);
    // The embedded plan output keeps the `$id` of its own schema, which would make its
    // `#/$defs/...` references resolve against that document instead of this one.
    if let Some(output) = schema
        .get_mut("$defs")
        .and_then(|defs| defs.get_mut("PlanOutput"))
        .and_then(|output| output.as_object_mut())
    {
        output.remove("$id");
    }
    schema
}
