//! `lifeboat graph`: the operation DAG `apply` would walk, as DOT or Mermaid.

use std::path::Path;

use super::Exit;
use super::pipeline;
use crate::cli::GraphFormat;
use crate::render::graph;

pub fn run(plan_path: &Path, format: GraphFormat) -> Exit {
    let refreshed = match pipeline::refresh(plan_path) {
        Ok(refreshed) => refreshed,
        Err(exit) => return exit,
    };
    let execution = refreshed.execution_plan();
    if execution.is_empty() {
        // An empty diagram is easy to mistake for a rendering failure; say why it is empty.
        eprintln!(
            "no changes: every machine of `{}` is at its goal",
            refreshed.file.name()
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
