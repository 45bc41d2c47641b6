//! `lifeboat graph`: the operation DAG `apply` would walk, as DOT or Mermaid.

use std::path::Path;
use std::time::Duration;

use lifeboat_engine::planner;

use super::Exit;
use super::pipeline;
use crate::cli::GraphFormat;
use crate::render::graph;

pub fn run(plan_path: &Path, format: GraphFormat, lock_timeout: Duration) -> Exit {
    let session = match pipeline::open(plan_path, "graph", lock_timeout) {
        Ok(session) => session,
        Err(exit) => return exit,
    };
    let released = session.state.released(session.plan.machines.names());
    let execution = planner::build(
        &session.plan,
        &session.validation,
        &session.facts,
        &released,
    );
    if execution.is_empty() {
        // An empty diagram is easy to mistake for a rendering failure; say why it is empty.
        eprintln!(
            "no changes: every machine of `{}` is at its goal",
            session.file.name()
        );
    }
    print!(
        "{}",
        match format {
            GraphFormat::Dot => graph::dot(&execution),
            GraphFormat::Mermaid => graph::mermaid(&execution),
        }
    );
    Exit::Success
}
