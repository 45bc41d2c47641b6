//! Boot-group steps as nodes of the operation DAG.
//!
//! A step is planned while the goal includes failback and the state does not record it
//! done in this form (its digest: an edited step is a new step). It runs once: `apply`
//! records it in the state when it passes (or, for a manual gate, when it is approved and
//! passed), so an apply that stopped at a gate continues after it without repeating
//! anything.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{BootGroup, OnFailure, Step, StepKind};

/// Before the group's first failback, or after its last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Before,
    After,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::After => "after",
        }
    }
}

/// What a step does, as `apply` carries it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepAction {
    /// Poll until a TCP connection to `HOST:PORT` succeeds.
    Tcp { address: String },
    /// Poll until the URL answers with `expect_status` (any 2xx when absent).
    Http {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect_status: Option<u16>,
    },
    /// Run the program (relative to the plan's directory) with its arguments.
    Command { argv: Vec<String> },
    /// Stop until a person runs `lifeboat approve boot_group.NAME`.
    Manual { message: String },
}

impl StepAction {
    pub fn kind(&self) -> StepKind {
        match self {
            Self::Tcp { .. } => StepKind::Tcp,
            Self::Http { .. } => StepKind::Http,
            Self::Command { .. } => StepKind::Command,
            Self::Manual { .. } => StepKind::Manual,
        }
    }

    /// One line for people: `tcp db-01:1433`, `command ./check.sh --max 30s`.
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp { address } => format!("tcp {address}"),
            Self::Http { url, expect_status } => match expect_status {
                Some(status) => format!("http {url} (expect {status})"),
                None => format!("http {url}"),
            },
            Self::Command { argv } => format!("command {}", argv.join(" ")),
            Self::Manual { message } => format!("manual: {message}"),
        }
    }
}

/// One step of the plan: a node of the DAG.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PlannedStep {
    /// `boot_group.NAME PHASE[N]` (N from 1), unique in a plan; also the step's key in the
    /// state.
    pub id: String,
    pub boot_group: String,
    pub phase: Phase,
    /// The step's position in its list, from 1.
    pub position: usize,
    pub action: StepAction,
    /// How long it may take, in seconds; absent for a manual step (it waits for a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// The group's `on_failure`: whether later groups proceed when this step fails.
    pub on_failure: OnFailure,
    /// The group's machines (`LIFEBOAT_MACHINES` of a command).
    pub machines: Vec<String>,
    /// SHA-256 of the step as written: the state records which form of a step passed.
    pub digest: String,
    /// Ids of the changes, checkpoints and steps this step waits for.
    pub depends_on: Vec<String>,
}

impl PlannedStep {
    /// The step at `position` (from 1) of a boot group's list; `None` for a step validation
    /// refuses (no kind).
    pub fn new(group: &BootGroup, phase: Phase, position: usize, step: &Step) -> Option<Self> {
        let action = if let Some(address) = &step.tcp {
            StepAction::Tcp {
                address: address.value.clone(),
            }
        } else if let Some(http) = &step.http {
            StepAction::Http {
                url: http.value.url.value.clone(),
                expect_status: http.value.expect_status.as_ref().map(|s| s.value),
            }
        } else if let Some(command) = &step.command {
            StepAction::Command {
                argv: command.value.iter().map(|a| a.value.clone()).collect(),
            }
        } else {
            StepAction::Manual {
                message: step.manual.as_ref()?.value.clone(),
            }
        };
        let name = &group.name.value;
        let timeout_s = (action.kind() != StepKind::Manual).then(|| step.timeout().as_secs());
        let digest = {
            let mut hash = Sha256::new();
            hash.update(serde_json::to_vec(&action).expect("plain data"));
            hash.update(timeout_s.unwrap_or(0).to_le_bytes());
            hash.finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        Some(Self {
            id: format!("boot_group.{name} {}[{position}]", phase.as_str()),
            boot_group: name.clone(),
            phase,
            position,
            action,
            timeout_s,
            on_failure: group.on_failure(),
            machines: group
                .machines
                .value
                .iter()
                .map(|m| m.value.clone())
                .collect(),
            digest,
            depends_on: Vec::new(),
        })
    }

    pub fn timeout(&self) -> Option<std::time::Duration> {
        self.timeout_s.map(std::time::Duration::from_secs)
    }
}
