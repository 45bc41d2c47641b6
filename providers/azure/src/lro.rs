//! Long-running operations: from an action's answer to the end of its ASR job.
//!
//! - 200, 201 or 204: the action is done.
//! - 202: `Azure-AsyncOperation` and/or `Location` name the operation; the last path segment
//!   of either URL is the ASR job's name (the wire contract, and what ASR does). The job
//!   (`replicationJobs/{job}`) is polled for its state: `Succeeded` ends the operation,
//!   `Failed` or `Cancelled` becomes a [`ProviderError`] with ASR's code and message
//!   (transient only for the codes [`is_transient_code`] names). When the job cannot be read
//!   (a permanent error), the header URL's own status is followed instead.
//! - Between polls the client waits `Retry-After` (integer seconds; 0 means "now", made
//!   [`PollPolicy::floor`] so a server cannot make it spin), or [`PollPolicy::default_interval`]
//!   when there is none, never more than [`PollPolicy::max_interval`].
//! - One operation is followed for at most [`PollPolicy::max_wait`]: the engine puts no
//!   deadline on `run`, so a job that never ends (stuck in `NotStarted`, or reporting no state)
//!   would otherwise hold the failback forever. Running out is a transient `JobTimeout`, so a
//!   later `run` with the same operation id picks the job up again.
//! - `Suspended` is permanent: ASR suspends a job when it needs a person to act.

use std::time::Duration;

use lifeboat_engine::provider::ProviderError;
use reqwest::StatusCode;
use serde::Deserialize;
use url::Url;

use crate::arm::{ErrorDetail, Job, JobState};
use crate::client::{ArmClient, ArmResponse};
use crate::requests::{Vault, job_path};

/// How often a running operation is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// Without `Retry-After`.
    pub default_interval: Duration,
    /// The shortest wait, also for `Retry-After: 0`.
    pub floor: Duration,
    /// The longest wait, whatever `Retry-After` says: a job that ends is noticed soon.
    pub max_interval: Duration,
    /// The longest one operation is followed before giving up with a transient `JobTimeout`.
    pub max_wait: Duration,
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(10),
            floor: Duration::from_millis(100),
            max_interval: Duration::from_secs(60),
            // ASR jobs can run for hours; a day is far beyond any healthy failback job.
            max_wait: Duration::from_secs(24 * 60 * 60),
        }
    }
}

impl PollPolicy {
    pub fn wait(&self, retry_after: Option<Duration>) -> Duration {
        retry_after
            .unwrap_or(self.default_interval)
            .clamp(self.floor, self.max_interval.max(self.floor))
    }
}

/// When following one operation must stop.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: tokio::time::Instant,
    max_wait: Duration,
}

impl Deadline {
    fn new(policy: &PollPolicy) -> Self {
        let now = tokio::time::Instant::now();
        Self {
            at: now
                .checked_add(policy.max_wait)
                .unwrap_or(now + Duration::from_secs(365 * 24 * 60 * 60)),
            max_wait: policy.max_wait,
        }
    }

    /// Sleeps `wait`, or returns the timeout error when the deadline comes first.
    async fn sleep(&self, wait: Duration, job: &str) -> Result<(), ProviderError> {
        let now = tokio::time::Instant::now();
        if now >= self.at {
            return Err(self.error(job));
        }
        let left = self.at - now;
        if wait >= left {
            tokio::time::sleep(left).await;
            return Err(self.error(job));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn error(&self, job: &str) -> ProviderError {
        ProviderError::transient(
            Some("JobTimeout".to_string()),
            format!(
                "ASR job `{job}` has not ended after {}s; it is left running and looked for again on the next try",
                self.max_wait.as_secs()
            ),
        )
    }
}

/// An operation ARM accepted (202).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// The ASR job's name.
    pub job: String,
    pub async_operation: Option<Url>,
    pub location: Option<Url>,
    pub retry_after: Option<Duration>,
}

/// What an action's answer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// 200, 201 or 204: nothing to wait for.
    Done,
    /// 202: a job to follow.
    Running(Box<Operation>),
}

/// Reads an action's answer.
pub fn started(client: &ArmClient, response: &ArmResponse) -> Result<Started, ProviderError> {
    if response.status != StatusCode::ACCEPTED {
        return Ok(Started::Done);
    }
    let link = |name: &str| -> Result<Option<Url>, ProviderError> {
        response
            .header(name)
            .filter(|v| !v.is_empty())
            .map(|v| client.url(v))
            .transpose()
    };
    let async_operation = link("azure-asyncoperation")?;
    let location = link("location")?;
    let job = async_operation
        .iter()
        .chain(location.iter())
        .find_map(last_segment)
        .ok_or_else(|| {
            ProviderError::permanent(
                Some("InvalidResponse".to_string()),
                format!(
                    "{} answered 202 without an `Azure-AsyncOperation` or `Location` header naming the job",
                    response.what
                ),
            )
        })?;
    Ok(Started::Running(Box::new(Operation {
        job,
        async_operation,
        location,
        retry_after: response.retry_after(),
    })))
}

fn last_segment(url: &Url) -> Option<String> {
    url.path_segments()?
        .rev()
        .find(|s| !s.is_empty())
        .map(str::to_string)
}

/// Whether an ASR job's error code means "wait and retry" (DESIGN.md §1.2): throttling and
/// server errors (HTTP status codes as codes), the agent not registered yet and another job
/// running on the item (the codes the simulated estate and `sim serve` use). ASR's
/// documented numeric codes (95226, 78052, 78093, 8061, 8038) all need a person.
pub fn is_transient_code(code: &str) -> bool {
    match code.parse::<u32>() {
        Ok(status) => status == 429 || (500..=599).contains(&status),
        Err(_) => matches!(
            code,
            "agent-not-registered"
                | "conflict"
                | "TooManyRequests"
                | "ProtectionOperationInProgress"
                | "ServerBusy"
                | "InternalServerError"
                | "ServiceUnavailable"
        ),
    }
}

fn asr_error(code: Option<String>, message: String) -> ProviderError {
    match code {
        Some(code) if is_transient_code(&code) => ProviderError::transient(Some(code), message),
        code => ProviderError::permanent(code, message),
    }
}

/// The error of a job that did not succeed.
pub fn job_error(job: &Job) -> ProviderError {
    let name = job.name.as_deref().unwrap_or("?");
    let props = &job.properties;
    let target = props
        .target_object_name
        .as_deref()
        .map(|t| format!(" on `{t}`"))
        .unwrap_or_default();
    let scenario = props
        .scenario_name
        .as_deref()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    match props.job_state() {
        JobState::Cancelled => {
            return ProviderError::permanent(
                Some("JobCancelled".to_string()),
                format!("ASR job `{name}`{scenario}{target} was cancelled"),
            );
        }
        JobState::Suspended => {
            // ASR suspends a job that waits for a person (a manual action in a recovery plan,
            // or a step it cannot take alone); waiting longer does not help.
            let reason = props
                .state_description
                .as_deref()
                .filter(|d| !d.is_empty())
                .unwrap_or("no description");
            return ProviderError::permanent(
                Some("JobSuspended".to_string()),
                format!(
                    "ASR job `{name}`{scenario}{target} is suspended and needs a person to act in ASR: {reason}"
                ),
            );
        }
        _ => {}
    }
    let first = props.errors.first();
    let code = first.and_then(|e| e.code());
    let reason = first
        .and_then(|e| e.message())
        .or_else(|| props.state_description.clone())
        .unwrap_or_else(|| "no error details".to_string());
    asr_error(
        code,
        format!("ASR job `{name}`{scenario}{target} failed: {reason}"),
    )
}

/// Follows a job to its end.
pub async fn wait(
    client: &ArmClient,
    vault: &Vault,
    api_version: &str,
    operation: &Operation,
    policy: &PollPolicy,
) -> Result<(), ProviderError> {
    let path = job_path(vault, &operation.job, api_version);
    let deadline = Deadline::new(policy);
    let mut retry_after = operation.retry_after;
    loop {
        deadline
            .sleep(policy.wait(retry_after), &operation.job)
            .await?;
        let response = match client.get(&path).await {
            Ok(response) => response,
            Err(error) if error.is_transient() => return Err(error),
            Err(error) => {
                if operation.async_operation.is_none() && operation.location.is_none() {
                    return Err(error);
                }
                tracing::debug!(
                    job = %operation.job,
                    code = error.code().unwrap_or(""),
                    "the ASR job cannot be read; following the operation's own URL"
                );
                return follow_header(client, operation, policy, &deadline).await;
            }
        };
        let job: Job = response.json()?;
        match job.properties.job_state() {
            JobState::Succeeded => return Ok(()),
            JobState::Failed | JobState::Cancelled | JobState::Suspended => {
                return Err(job_error(&job));
            }
            state => {
                tracing::debug!(job = %operation.job, ?state, "ASR job still running");
                retry_after = response.retry_after().or(retry_after);
            }
        }
    }
}

/// The `Azure-AsyncOperation` status body.
#[derive(Debug, Deserialize)]
struct OperationStatus {
    status: Option<String>,
    error: Option<ErrorDetail>,
}

/// Follows `Azure-AsyncOperation` (its `status`) or else `Location` (202 while running, 2xx
/// when done, an ARM error when failed).
async fn follow_header(
    client: &ArmClient,
    operation: &Operation,
    policy: &PollPolicy,
    deadline: &Deadline,
) -> Result<(), ProviderError> {
    let mut retry_after = operation.retry_after;
    let mut first = true;
    loop {
        if !first {
            deadline
                .sleep(policy.wait(retry_after), &operation.job)
                .await?;
        }
        first = false;
        if let Some(url) = &operation.async_operation {
            let response = client.get(url.as_str()).await?;
            let status: OperationStatus = response.json()?;
            match (
                JobState::parse(status.status.as_deref()),
                status.status.as_deref(),
            ) {
                (JobState::Succeeded, _) => return Ok(()),
                (JobState::Failed | JobState::Cancelled, Some(state)) => {
                    let detail = status.error.unwrap_or_default();
                    let reason = detail
                        .message
                        .unwrap_or_else(|| format!("the operation ended `{state}`"));
                    return Err(asr_error(
                        detail.code,
                        format!("ASR job `{}` failed: {reason}", operation.job),
                    ));
                }
                _ => retry_after = response.retry_after().or(retry_after),
            }
        } else if let Some(url) = &operation.location {
            let response = client.get(url.as_str()).await?;
            if response.status != StatusCode::ACCEPTED {
                return Ok(());
            }
            retry_after = response.retry_after().or(retry_after);
        } else {
            return Ok(());
        }
    }
}
