//! Saved plans (`plan --out FILE`, DESIGN.md §4): the plan as it was shown, with what it was
//! made from, so that `apply FILE` carries out exactly that plan or refuses it as stale.
//!
//! A saved plan records the digest of the plan file, the provider and its estate, and the
//! state's lineage and serial. Every plan, even the first, has a lineage (the first `plan`
//! creates the state), so a plan made against an empty state cannot be applied twice: the
//! first apply bumps the serial.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Goal, Timestamp};
use crate::planner::output::PlanOutput;
use crate::state::State;

/// The value of `kind`, which tells a saved plan from every other JSON file.
pub const KIND: &str = "lifeboat-saved-plan";

/// The only saved-plan format version this build reads and writes.
pub const FORMAT_VERSION: &str = "1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SavedPlanKind {
    #[serde(rename = "lifeboat-saved-plan")]
    SavedPlan,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lifeboat saved plan", extend("$id" = "https://lifeboat.dev/schemas/saved-plan.schema.json"))]
pub struct SavedPlan {
    /// Saved-plan format version; this build reads `1`.
    pub format_version: String,
    /// Always `lifeboat-saved-plan`.
    pub kind: SavedPlanKind,
    pub created_at: Timestamp,
    /// The plan's `name`.
    pub plan_name: String,
    pub plan_file: PlanFileRef,
    pub provider: ProviderRef,
    /// The state's lineage when the plan was made.
    pub lineage: String,
    /// The state's serial when the plan was made.
    pub serial: u64,
    pub goal: Goal,
    /// The `--target` addresses the plan was limited to; empty: the whole estate.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Operations `apply` may run at once, as reviewed; `apply --parallelism` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
    /// The plan itself, exactly as `plan --format json` printed it.
    pub output: PlanOutput,
}

/// The plan file a saved plan was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanFileRef {
    /// As given on the command line.
    pub path: String,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub sha256: String,
}

/// The provider and the estate a saved plan was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderRef {
    /// `sim`, `azure` or `plugin`.
    pub kind: String,
    /// The estate: the world file for `sim`, the vault for `azure`.
    pub identity: String,
    /// `sim`: SHA-256 of the world file after the refresh, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_sha256: Option<String>,
}

/// SHA-256 of `bytes`, lowercase hex.
/// Why a lifeboat JSON document (a state file or a saved plan) was refused: a reason without
/// the file name, which the caller adds. Foreign documents are named for what they are,
/// because "unknown field `kind`" would not tell anyone what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the file is empty (truncated?)")]
    Empty,
    #[error("not valid JSON ({0}); truncated?")]
    NotJson(String),
    #[error("the document is not a JSON object")]
    NotAnObject,
    #[error("this is a saved plan, not a state file")]
    SavedPlanNotState,
    #[error("this is a lifeboat state file, not a saved plan")]
    StateNotSavedPlan,
    #[error("its `kind` is `{0}`, not `{KIND}`")]
    ForeignKind(String),
    #[error("not a saved plan (no `kind: {KIND}`)")]
    NoKind,
    #[error("`format_version` is missing{0}")]
    NoFormatVersion(&'static str),
    #[error(
        "format version {found} is not supported; this lifeboat reads version `{supported}` (written by a newer lifeboat?)"
    )]
    FormatVersion {
        found: String,
        supported: &'static str,
    },
    /// The document has the right kind and version but not the right shape.
    #[error("not {what}: {detail}")]
    Shape { what: &'static str, detail: String },
    #[error("`lineage` `{0}` is not a UUID")]
    Lineage(String),
    #[error("machine `{machine}` has a pending operation for machine `{other}`")]
    ForeignPending { machine: String, other: String },
}

/// Parses a lifeboat JSON file far enough to know it is a JSON object, with the messages
/// both the state and saved plans give for empty, truncated or non-object files.
pub(crate) fn json_object(text: &str) -> Result<serde_json::Value, DocumentError> {
    if text.trim().is_empty() {
        return Err(DocumentError::Empty);
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| DocumentError::NotJson(e.to_string()))?;
    if !value.is_object() {
        return Err(DocumentError::NotAnObject);
    }
    Ok(value)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use fmt::Write as _;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

impl SavedPlan {
    /// Parses a saved plan. The error is a reason without the file name (the caller adds it).
    /// State files and other JSON are recognised as foreign before the typed parse, so the
    /// message says what the file is instead of which field surprised the parser.
    pub fn from_json(text: &str) -> Result<SavedPlan, DocumentError> {
        let value = crate::saved::json_object(text)?;
        let object = value.as_object().expect("json_object returns an object");
        match object.get("kind").and_then(|k| k.as_str()) {
            Some(KIND) => {}
            Some(other) => return Err(DocumentError::ForeignKind(other.to_string())),
            None if object.contains_key("lineage") && object.contains_key("machines") => {
                return Err(DocumentError::StateNotSavedPlan);
            }
            None => return Err(DocumentError::NoKind),
        }
        match object.get("format_version") {
            Some(serde_json::Value::String(v)) if v == FORMAT_VERSION => {}
            Some(other) => {
                return Err(DocumentError::FormatVersion {
                    found: other.to_string(),
                    supported: FORMAT_VERSION,
                });
            }
            None => return Err(DocumentError::NoFormatVersion("")),
        }
        serde_json::from_value(value).map_err(|e| DocumentError::Shape {
            what: "a valid saved plan",
            detail: e.to_string(),
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a saved plan is plain data") + "\n"
    }
}

/// What changed since a saved plan was made; each entry is one reason it is stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleReason {
    /// The plan file's bytes are not those the plan was made from.
    PlanFile { path: String },
    /// The state is another state (or there is none any more).
    Lineage {
        saved: String,
        current: Option<String>,
    },
    /// The state changed since (an apply ran).
    Serial { saved: u64, current: u64 },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PlanFile { path } => write!(f, "the plan file `{path}` changed"),
            Self::Lineage {
                saved,
                current: Some(current),
            } => write!(
                f,
                "the state is another one (lineage `{current}`, the plan was made against `{saved}`)"
            ),
            Self::Lineage {
                saved,
                current: None,
            } => write!(
                f,
                "the state the plan was made against (lineage `{saved}`) no longer exists"
            ),
            Self::Serial { saved, current } => write!(
                f,
                "the state changed (serial {current}, the plan was made at serial {saved})"
            ),
        }
    }
}

/// A saved plan that must not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the saved plan is stale: {}; run `lifeboat plan --out` again", .reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Stale {
    pub reasons: Vec<StaleReason>,
}

/// Whether `saved` may still be applied, given the plan file's current bytes and the current
/// state. Every reason is reported, not only the first.
pub fn check_fresh(
    saved: &SavedPlan,
    plan_file: &[u8],
    state: Option<&State>,
) -> Result<(), Stale> {
    let mut reasons = Vec::new();
    if sha256_hex(plan_file) != saved.plan_file.sha256 {
        reasons.push(StaleReason::PlanFile {
            path: saved.plan_file.path.clone(),
        });
    }
    match state {
        Some(state) if state.lineage != saved.lineage => reasons.push(StaleReason::Lineage {
            saved: saved.lineage.clone(),
            current: Some(state.lineage.clone()),
        }),
        Some(state) if state.serial != saved.serial => reasons.push(StaleReason::Serial {
            saved: saved.serial,
            current: state.serial,
        }),
        Some(_) => {}
        None => reasons.push(StaleReason::Lineage {
            saved: saved.lineage.clone(),
            current: None,
        }),
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Stale { reasons })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::output::PlanSummary;
    use crate::provider::Stage;
    use crate::state::MachineState;

    fn saved(plan: &[u8], state: &State) -> SavedPlan {
        SavedPlan {
            format_version: FORMAT_VERSION.to_string(),
            kind: SavedPlanKind::SavedPlan,
            created_at: "2026-12-01T10:00:00Z".parse().expect("a timestamp"),
            plan_name: "estate".to_string(),
            plan_file: PlanFileRef {
                path: "lifeboat.yaml".to_string(),
                sha256: sha256_hex(plan),
            },
            provider: ProviderRef {
                kind: "sim".to_string(),
                identity: "world.yaml".to_string(),
                world_sha256: Some(sha256_hex(b"world")),
            },
            lineage: state.lineage.clone(),
            serial: state.serial,
            goal: Goal::Reprotected,
            targets: Vec::new(),
            parallelism: None,
            output: PlanOutput {
                format_version: "1".to_string(),
                lineage: Some(state.lineage.clone()),
                serial: Some(state.serial),
                goal: Goal::Reprotected,
                changes: Vec::new(),
                steps: Vec::new(),
                schedule: None,
                untouched: Vec::new(),
                diagnostics: Vec::new(),
                summary: PlanSummary {
                    changes: Default::default(),
                    downtime_machines: 0,
                    full_resync_changes: 0,
                    max_transfer_gib: 0,
                },
                drift: None,
            },
        }
    }

    #[test]
    fn sha256_is_the_standard_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_fresh_plan_passes() {
        let state = State::new();
        let plan = saved(b"plan", &state);
        assert_eq!(check_fresh(&plan, b"plan", Some(&state)), Ok(()));
    }

    #[test]
    fn every_kind_of_staleness_is_named() {
        let state = State::new();
        let plan = saved(b"plan", &state);

        let error = check_fresh(&plan, b"edited", Some(&state)).expect_err("stale");
        assert_eq!(
            error.reasons,
            [StaleReason::PlanFile {
                path: "lifeboat.yaml".into()
            }]
        );
        assert!(
            error
                .to_string()
                .contains("the plan file `lifeboat.yaml` changed")
        );

        let mut applied = state.clone();
        applied.commit([("a".to_string(), MachineState::at(Stage::Reprotected))].into());
        let error = check_fresh(&plan, b"plan", Some(&applied)).expect_err("stale");
        assert_eq!(
            error.reasons,
            [StaleReason::Serial {
                saved: 0,
                current: 1
            }]
        );

        let other = State::new();
        let error = check_fresh(&plan, b"edited", Some(&other)).expect_err("stale");
        assert_eq!(error.reasons.len(), 2, "both reasons: {error}");
        assert!(matches!(
            error.reasons[1],
            StaleReason::Lineage {
                current: Some(_),
                ..
            }
        ));

        let error = check_fresh(&plan, b"plan", None).expect_err("stale");
        assert!(error.to_string().contains("no longer exists"));
    }

    #[test]
    fn round_trips_and_refuses_foreign_corrupt_and_newer_files() {
        let state = State::new();
        let plan = saved(b"plan", &state);
        let text = plan.to_json();
        let parsed = SavedPlan::from_json(&text).expect("parses");
        assert_eq!(parsed.to_json(), text);

        let newer = text.replacen("\"format_version\": \"1\"", "\"format_version\": \"2\"", 1);
        let cases = [
            ("".to_string(), "empty"),
            (text[..text.len() / 2].to_string(), "not valid JSON"),
            (state.to_json(), "state file, not a saved plan"),
            ("{\"a\": 1}".to_string(), "not a saved plan"),
            ("{\"kind\": \"other\"}".to_string(), "`kind` is `other`"),
            (newer, "newer lifeboat"),
            (
                text.replacen("\"goal\"", "\"unexpected\": 1, \"goal\"", 1),
                "unknown field",
            ),
        ];
        for (text, expected) in cases {
            let error = SavedPlan::from_json(&text).expect_err(expected);
            assert!(error.to_string().contains(expected), "{expected}: {error}");
        }
    }
}
