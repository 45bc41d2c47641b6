//! Boot-group steps, carried out (`apply` only): `tcp` and `http` checks polled until they
//! pass or time out, and `command`s run in their own process group. Manual gates are the
//! journal's part (`apply::Journal::gate`).
//!
//! Security: a plan file is untrusted input, so nothing here is reachable from `validate`,
//! `plan`, `graph`, `diff` or `show`; only the executor calls [`Runner`], and only for a
//! plan that was reviewed and applied. A command's program was checked against the plan's
//! repository (`plan::path-outside`) when the plan was validated, on this same run.

mod command;
mod http;
mod tcp;

use std::path::PathBuf;
use std::time::Duration;

use crate::apply::{StepOutput, StepRunner};
use crate::diagnostic::codes;
use crate::planner::{PlannedStep, StepAction};
use crate::provider::ProviderError;

/// How long a check waits between attempts.
const POLL_EVERY: Duration = Duration::from_millis(500);

/// Runs steps for one apply.
#[derive(Debug, Clone)]
pub struct Runner {
    /// The plan's directory: a command's working directory, and what its program is
    /// relative to.
    pub plan_dir: PathBuf,
    /// `LIFEBOAT_RUN_ID` of the commands.
    pub run_id: String,
}

#[async_trait::async_trait]
impl StepRunner for Runner {
    async fn run(
        &self,
        step: &PlannedStep,
        output: &(dyn Fn(StepOutput) + Send + Sync),
    ) -> Result<(), ProviderError> {
        let timeout = step
            .timeout()
            .unwrap_or_else(|| step.action.kind().default_timeout());
        match &step.action {
            StepAction::Tcp { address } => tcp::poll(&step.id, address, timeout).await,
            StepAction::Http { url, expect_status } => {
                http::poll(&step.id, url, *expect_status, timeout).await
            }
            StepAction::Command { argv } => command::run(self, step, argv, timeout, output).await,
            StepAction::Manual { .. } => Err(failed(format!(
                "`{}` is a manual gate; it is passed with `lifeboat approve boot_group.{}`",
                step.id, step.boot_group
            ))),
        }
    }
}

fn failed(message: String) -> ProviderError {
    ProviderError::permanent(Some(codes::STEP_FAILED.to_string()), message)
}

fn timed_out(message: String) -> ProviderError {
    ProviderError::permanent(Some(codes::STEP_TIMEOUT.to_string()), message)
}
