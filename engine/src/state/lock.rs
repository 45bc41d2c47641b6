//! Who holds a state lock, and the guard that releases it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::Timestamp;

/// The owner of a lock, written beside the lock so that a second process can say who holds
/// it and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockInfo {
    /// A random id; `lifeboat state unlock ID` must name it.
    pub id: String,
    /// `user@host`.
    pub who: String,
    /// The command holding the lock: `plan`, `apply`, …
    pub operation: String,
    pub created: Timestamp,
    pub pid: u32,
}

impl LockInfo {
    /// The lock this process would take for `operation`, owned by the current user and host.
    pub fn new(operation: &str) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            who: format!("{}@{}", user(), host()),
            operation: operation.to_string(),
            created: Timestamp(jiff::Timestamp::now()),
            pid: std::process::id(),
        }
    }
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (`{}`, pid {}, since {}, lock id `{}`)",
            self.who, self.operation, self.pid, self.created, self.id
        )
    }
}

fn user() -> String {
    ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}

fn host() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Holds a state lock; dropping it releases the lock. Backends put whatever they need to
/// release the lock in `release`, whose `Drop` does the work.
pub struct LockGuard {
    info: LockInfo,
    _release: Box<dyn Send>,
}

impl LockGuard {
    pub(crate) fn new(info: LockInfo, release: Box<dyn Send>) -> Self {
        Self {
            info,
            _release: release,
        }
    }

    pub fn info(&self) -> &LockInfo {
        &self.info
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}
