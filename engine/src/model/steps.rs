//! Steps between boot groups (`before`/`after` lists on a boot group) and the failure policy
//! of a boot group (`on_failure`).
//!
//! A step is a map with exactly one of `tcp`, `http`, `command` or `manual`, and an optional
//! `timeout`. The shape is a struct of optional keys rather than an enum so that every key
//! keeps its span and unknown keys get the plan's usual did-you-mean; `validate` checks that
//! exactly one kind is given (`boot-order::step`).
//!
//! Security: the plan file is untrusted input. Nothing here runs or connects; only `apply`
//! does (`engine::steps`), after review.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::span::{Span, Spanned};

/// One step: a check or an action between boot groups.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `HOST:PORT`: polled until a TCP connection succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Spanned<String>>,
    /// An HTTP(S) URL polled until it answers with the expected status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Spanned<HttpCheck>>,
    /// A program and its arguments; the program is a path relative to the plan file, inside
    /// the plan's repository. Runs with the plan's directory as working directory and
    /// `LIFEBOAT_BOOT_GROUP`, `LIFEBOAT_MACHINES`, `LIFEBOAT_RUN_ID` in its environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Spanned<Vec<Spanned<String>>>>,
    /// A message for a person: `apply` stops here until `lifeboat approve boot_group.NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manual: Option<Spanned<String>>,
    /// How long the step may take (`30s`, `10m`, `1h`); default 5 minutes for checks,
    /// 10 minutes for commands. A manual step waits for a person and takes none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<StepTimeout>>,
}

/// `http:`: what to poll and what counts as ready.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpCheck {
    pub url: Spanned<String>,
    /// The status that means ready; any 2xx when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_status: Option<Spanned<u16>>,
}

/// The kind of a step, once validation has checked that there is exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Tcp,
    Http,
    Command,
    Manual,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Http => "http",
            Self::Command => "command",
            Self::Manual => "manual",
        }
    }

    /// The timeout when the step names none.
    pub fn default_timeout(self) -> std::time::Duration {
        match self {
            Self::Command => std::time::Duration::from_secs(10 * 60),
            _ => std::time::Duration::from_secs(5 * 60),
        }
    }
}

impl Step {
    /// The kinds this step names, with the span of each key's value (exactly one is valid).
    pub fn kinds(&self) -> Vec<(StepKind, Span)> {
        let mut kinds = Vec::new();
        if let Some(v) = &self.tcp {
            kinds.push((StepKind::Tcp, v.span));
        }
        if let Some(v) = &self.http {
            kinds.push((StepKind::Http, v.span));
        }
        if let Some(v) = &self.command {
            kinds.push((StepKind::Command, v.span));
        }
        if let Some(v) = &self.manual {
            kinds.push((StepKind::Manual, v.span));
        }
        kinds
    }

    /// The step's kind: the first it names (validation refuses a step with none or several).
    pub fn kind(&self) -> Option<StepKind> {
        self.kinds().first().map(|(kind, _)| *kind)
    }

    /// The timeout that applies.
    pub fn timeout(&self) -> std::time::Duration {
        match (&self.timeout, self.kind()) {
            (Some(t), _) => t.value.0,
            (None, Some(kind)) => kind.default_timeout(),
            (None, None) => StepKind::Tcp.default_timeout(),
        }
    }
}

/// What a boot group does when one of its failbacks or steps fails.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Later boot groups do not start (the default).
    #[default]
    Stop,
    /// Later boot groups proceed; the failure is reported.
    Continue,
}

impl OnFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Continue => "continue",
        }
    }
}

/// A step's timeout as the plan writes it: `30s`, `10m`, `1h 30m` (jiff's friendly format)
/// or ISO 8601 (`PT10M`). Validation checks that it is positive and at most a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTimeout(pub std::time::Duration);

impl FromStr for StepTimeout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let signed: jiff::SignedDuration = s
            .parse()
            .map_err(|_| format!("`{s}` is not a duration; write it like `30s`, `10m` or `1h`"))?;
        std::time::Duration::try_from(signed)
            .map(StepTimeout)
            .map_err(|_| format!("`{s}` is negative; a timeout is a duration like `30s` or `10m`"))
    }
}

impl fmt::Display for StepTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", human_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for StepTimeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for StepTimeout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for StepTimeout {
    fn schema_name() -> Cow<'static, str> {
        "StepTimeout".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as `30s`, `10m`, `1h 30m` or `PT10M`.",
            "examples": ["30s", "10m"]
        })
    }
}

/// `2h 5m`, `10m`, `45s`, `0s`: whole seconds, the largest units first.
pub fn human_duration(duration: std::time::Duration) -> String {
    let total = duration.as_secs();
    let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_in_friendly_and_iso_forms() {
        for (text, seconds) in [("30s", 30), ("10m", 600), ("1h 30m", 5400), ("PT2M", 120)] {
            assert_eq!(
                text.parse::<StepTimeout>().expect(text).0.as_secs(),
                seconds,
                "{text}"
            );
        }
        assert!("ten minutes".parse::<StepTimeout>().is_err());
        assert!("-5m".parse::<StepTimeout>().is_err());
        assert_eq!(
            human_duration(std::time::Duration::from_secs(5400)),
            "1h 30m"
        );
        assert_eq!(human_duration(std::time::Duration::ZERO), "0s");
    }
}
