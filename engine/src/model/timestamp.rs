//! An RFC 3339 timestamp as the plan file writes it.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with an explicit offset. A bare local time is refused: a maintenance
/// window that means different instants on different CI runners is a failback at the wrong
/// hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub jiff::Timestamp);

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        jiff::Timestamp::from_str(s).map(Timestamp).map_err(|e| {
            // A local date and time is the usual slip: show it fixed, both ways.
            if let Ok(local) = jiff::civil::DateTime::from_str(s) {
                let local = local.strftime("%Y-%m-%dT%H:%M:%S");
                return format!(
                    "`{s}` has no offset: write `{local}Z` for UTC, or the site's offset, e.g. `{local}+01:00`"
                );
            }
            format!("`{s}` is not an RFC 3339 timestamp with an offset (like `2026-12-05T22:00:00Z`): {e}")
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}
