//! `lifeboat graph`: the operation DAG `apply` would walk, as DOT or Mermaid.

use std::path::Path;
use std::time::Duration;

use lifeboat_engine::model::Goal;
use lifeboat_engine::{Spanned, ops};

use super::Exit;
use super::pipeline;
use crate::cli::GraphFormat;
use crate::output::out;
use crate::render::graph;

pub fn run(
    plan_path: &Path,
    format: GraphFormat,
    goal: Option<Goal>,
    lock_timeout: Option<Duration>,
) -> Exit {
    let mut session = match pipeline::open(plan_path, "graph", lock_timeout) {
        Ok(session) => session,
        Err(exit) => return exit,
    };
    if let Some(goal) = goal {
        session.plan.goal = Some(Spanned::bare(goal));
    }
    let execution = match ops::graph(
        &session.plan,
        &session.validation,
        &session.facts,
        &session.state,
    ) {
        Ok(execution) => execution,
        Err(error) => {
            eprintln!("error: {error}");
            return Exit::Error;
        }
    };
    if execution.is_empty() {
        // An empty diagram is easy to mistake for a rendering failure; say why it is empty.
        eprintln!(
            "no changes: every machine of `{}` is at the goal `{}`; `--goal` draws the order towards another",
            session.file.name(),
            session.plan.goal()
        );
    }
    let text = match format {
        GraphFormat::Dot => graph::dot(&execution),
        GraphFormat::Mermaid => {
            let (text, collapsed) = graph::mermaid(&execution, &session.plan);
            if let Some(note) = collapsed {
                eprintln!("note: {note}");
            }
            text
        }
    };
    out!("{text}");
    Exit::Success
}
