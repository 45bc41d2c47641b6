//! `lifeboat schema`: JSON Schemas generated from the types, the same ones committed under
//! `schemas/` (a test fails when the committed copies are stale).

use super::Exit;
use crate::cli::SchemaKind;
use crate::output::out;

pub fn run(which: SchemaKind, message: Option<&str>) -> Exit {
    if which != SchemaKind::Plugin {
        if message.is_some() {
            eprintln!("error: only `lifeboat schema plugin` takes a message name");
            return Exit::Error;
        }
        out!("{}", render(which));
        return Exit::Success;
    }
    let messages = lifeboat_provider_plugin::protocol::MESSAGES;
    match message {
        None => {
            for (name, _) in messages {
                out!("{name}\n");
            }
            Exit::Success
        }
        Some(name) => match lifeboat_provider_plugin::protocol::schema(name) {
            Some(schema) => {
                out!("{}", pretty(&schema));
                Exit::Success
            }
            None => {
                let names: Vec<&str> = messages.iter().map(|(n, _)| *n).collect();
                eprintln!(
                    "error: the plugin protocol has no message `{name}`; it has {}",
                    names.join(", ")
                );
                Exit::Error
            }
        },
    }
}

fn pretty(schema: &schemars::Schema) -> String {
    serde_json::to_string_pretty(schema).expect("a schema is plain JSON") + "\n"
}

pub fn render(which: SchemaKind) -> String {
    let schema = match which {
        SchemaKind::Plugin => lifeboat_provider_plugin::protocol::schema("request")
            .expect("the protocol has a request message"),
        SchemaKind::Plan => lifeboat_engine::schema::plan(),
        SchemaKind::PlanOutput => lifeboat_engine::schema::plan_output(),
        SchemaKind::World => lifeboat_provider_sim::world::schema(),
        SchemaKind::Diff => lifeboat_engine::schema::diff(),
        SchemaKind::State => lifeboat_engine::schema::state(),
        SchemaKind::SavedPlan => lifeboat_engine::schema::saved_plan(),
    };
    pretty(&schema)
}
