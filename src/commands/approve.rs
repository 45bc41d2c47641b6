//! `lifeboat approve boot_group.NAME`: pass a manual gate (the engine's `ops::approve`).

use std::path::Path;
use std::time::Duration;

use lifeboat_engine::ops::{self, ApproveError};

use super::Exit;

pub fn run(plan_path: &Path, address: &str, lock_timeout: Duration) -> Exit {
    let Ok((file, plan, _)) = super::pipeline::load_valid(plan_path) else {
        return Exit::Error;
    };
    let backend = match super::state::backend(plan_path, &plan) {
        Ok(backend) => backend,
        Err(diagnostic) => {
            eprint!(
                "{}",
                crate::render::diagnostics::render_human(&[*diagnostic], &file)
            );
            return Exit::Error;
        }
    };
    match ops::approve(&plan, backend.as_ref(), address, lock_timeout) {
        Ok(approved) => {
            for step in &approved.steps {
                crate::output::outln!("approved `{step}` as `{}` at {}", approved.by, approved.at);
            }
            crate::output::outln!("run `lifeboat apply` to continue after the gate");
            Exit::Success
        }
        Err(ApproveError::State(error)) => {
            super::state::report(&error);
            Exit::Error
        }
        Err(error @ ApproveError::NothingWaiting { .. }) => {
            eprintln!("error: {error}");
            eprintln!(
                "  help: a gate is approved after `apply` stops at it (exit code 3); `lifeboat state list` shows the state"
            );
            Exit::Error
        }
        Err(error) => {
            eprintln!("error: {error}");
            Exit::Error
        }
    }
}
