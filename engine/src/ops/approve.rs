//! `lifeboat approve boot_group.NAME`: pass the manual gates an apply stopped at, recording
//! who and when in the state, so that the next apply continues after them.

use std::time::Duration;

use crate::model::{Plan, Timestamp};
use crate::state::{LockInfo, StateBackend, StateError};

/// Why nothing was approved.
#[derive(Debug, thiserror::Error)]
pub enum ApproveError {
    #[error("`{0}` is not a boot group's address; use `boot_group.NAME`")]
    Address(String),
    #[error("the plan has no boot group `{0}`")]
    UnknownGroup(String),
    /// No apply is waiting at a gate of the group; `waiting` lists gates of other groups.
    #[error("no apply is waiting at a manual gate of boot group `{group}`{}", others(.waiting))]
    NothingWaiting { group: String, waiting: Vec<String> },
    #[error(transparent)]
    State(#[from] StateError),
}

fn others(waiting: &[String]) -> String {
    if waiting.is_empty() {
        String::new()
    } else {
        format!("; gates waiting: {}", waiting.join(", "))
    }
}

/// What was approved, by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved {
    pub steps: Vec<String>,
    pub by: String,
    pub at: Timestamp,
}

pub fn approve(
    plan: &Plan,
    backend: &dyn StateBackend,
    address: &str,
    lock_timeout: Duration,
) -> Result<Approved, ApproveError> {
    let name = address
        .strip_prefix("boot_group.")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApproveError::Address(address.to_string()))?;
    if !plan.boot_order.iter().any(|g| g.name.value == name) {
        return Err(ApproveError::UnknownGroup(name.to_string()));
    }
    let info = LockInfo::new("approve");
    let by = info.who.clone();
    let (_lock, mut state) = super::session::open_state(backend, "approve", Some(lock_timeout))?;
    let at = Timestamp(jiff::Timestamp::now());
    let steps = state.approve(name, &by, at);
    if steps.is_empty() {
        let waiting = state
            .steps
            .iter()
            .filter(|(_, r)| r.passed_at.is_none())
            .filter_map(|(id, r)| {
                let gate = r.gate.as_ref()?;
                gate.approved_by.is_none().then(|| format!("`{id}`"))
            })
            .collect();
        return Err(ApproveError::NothingWaiting {
            group: name.to_string(),
            waiting,
        });
    }
    backend.write(&state)?;
    Ok(Approved { steps, by, at })
}
