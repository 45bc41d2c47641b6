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
    /// The CI run holding the lock, when the environment names one (GitHub Actions, Azure
    /// Pipelines, GitLab CI): a cancelled pipeline is then easy to find.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_run: Option<String>,
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
            ci_run: ci_run(|name| std::env::var(name).ok().filter(|v| !v.is_empty())),
        }
    }
}

/// The URL of the CI run this process belongs to, from the variables each CI system sets.
pub fn ci_run(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let (Some(server), Some(repository), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return Some(format!(
            "{}/{repository}/actions/runs/{run}",
            server.trim_end_matches('/')
        ));
    }
    if let (Some(collection), Some(build)) = (var("SYSTEM_COLLECTIONURI"), var("BUILD_BUILDID")) {
        let project = var("SYSTEM_TEAMPROJECT")
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        return Some(format!(
            "{}/{project}_build/results?buildId={build}",
            collection.trim_end_matches('/')
        ));
    }
    var("CI_JOB_URL")
}

impl fmt::Display for LockInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` (`{}`, pid {}, since {}, ",
            self.who, self.operation, self.pid, self.created
        )?;
        if let Some(run) = &self.ci_run {
            write!(f, "CI run {run}, ")?;
        }
        write!(f, "lock id `{}`)", self.id)
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

#[cfg(test)]
mod tests {
    use super::ci_run;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn the_ci_run_is_named_from_each_systems_variables() {
        assert_eq!(ci_run(env(&[])), None);
        assert_eq!(
            ci_run(env(&[
                ("GITHUB_SERVER_URL", "https://github.com"),
                ("GITHUB_REPOSITORY", "contoso/dr"),
                ("GITHUB_RUN_ID", "42"),
            ]))
            .as_deref(),
            Some("https://github.com/contoso/dr/actions/runs/42")
        );
        assert_eq!(
            ci_run(env(&[
                ("SYSTEM_COLLECTIONURI", "https://dev.azure.com/contoso/"),
                ("SYSTEM_TEAMPROJECT", "dr"),
                ("BUILD_BUILDID", "7"),
            ]))
            .as_deref(),
            Some("https://dev.azure.com/contoso/dr/_build/results?buildId=7")
        );
        assert_eq!(
            ci_run(env(&[("CI_JOB_URL", "https://gitlab.example/j/1")])).as_deref(),
            Some("https://gitlab.example/j/1")
        );
    }
}
