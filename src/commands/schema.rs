//! `lifeboat schema`: JSON Schemas generated from the types, the same ones committed under
//! `schemas/` (a test fails when the committed copies are stale).

use super::Exit;
use crate::cli::SchemaKind;
use crate::output::out;

pub fn run(which: SchemaKind) -> Exit {
    out!("{}", render(which));
    Exit::Success
}

pub fn render(which: SchemaKind) -> String {
    let schema = match which {
        SchemaKind::Plan => lifeboat_engine::schema::plan(),
        SchemaKind::PlanOutput => lifeboat_engine::schema::plan_output(),
        SchemaKind::World => lifeboat_provider_sim::world::schema(),
        SchemaKind::Diff => lifeboat_engine::schema::diff(),
        SchemaKind::State => lifeboat_engine::schema::state(),
        SchemaKind::SavedPlan => lifeboat_engine::schema::saved_plan(),
    };
    serde_json::to_string_pretty(&schema).expect("a schema is plain JSON") + "\n"
}
