//! Diagnostics: what every check returns, and the JSON shape of DESIGN.md §6.
//!
//! The engine only builds these values; rendering them (miette, colours, terminals) is the
//! CLI's business. A diagnostic's code is a `&'static str` from [`codes`] so a typo in a code
//! is a compile error, not a silently different contract.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::source::{Position, SourceFile};
use crate::span::Span;

/// Every diagnostic code lifeboat emits. These strings are a public contract (DESIGN.md §5).
pub mod codes {
    pub const PLAN_SYNTAX: &str = "plan::syntax";
    pub const PLAN_SCHEMA: &str = "plan::schema";
    pub const PLAN_UNKNOWN_REFERENCE: &str = "plan::unknown-reference";
    pub const PLAN_DUPLICATE: &str = "plan::duplicate";
    pub const GROUP_MIXED_OS: &str = "group::mixed-os";
    pub const GROUP_MASTER_TARGET_OS: &str = "group::master-target-os";
    pub const GROUP_CONFLICTING_MASTER_TARGET: &str = "group::conflicting-master-target";
    pub const GROUP_MULTIPLE_GROUPS: &str = "group::multiple-groups";
    pub const GROUP_NO_MASTER_TARGET: &str = "group::no-master-target";
    pub const MASTER_TARGET_DISK_LIMIT: &str = "master-target::disk-limit";
    pub const MASTER_TARGET_DATASTORE: &str = "master-target::datastore";
    pub const BOOT_ORDER_CYCLE: &str = "boot-order::cycle";
    pub const BOOT_ORDER_MULTIPLE_GROUPS: &str = "boot-order::multiple-groups";
    pub const MAINTENANCE_WINDOW_INVALID: &str = "maintenance-window::invalid";
    /// Warning: `--target` limits the plan to part of the estate.
    pub const PLAN_TARGETED: &str = "plan::targeted";

    pub const PREFLIGHT_CONFIGURATION_SERVER: &str = "preflight::configuration-server";
    pub const PREFLIGHT_PROCESS_SERVER: &str = "preflight::process-server";
    pub const PREFLIGHT_MASTER_TARGET_SNAPSHOTS: &str = "preflight::master-target-snapshots";
    pub const PREFLIGHT_MASTER_TARGET: &str = "preflight::master-target";
    pub const PREFLIGHT_RETENTION_DRIVE: &str = "preflight::retention-drive";
    pub const PREFLIGHT_VCENTER: &str = "preflight::vcenter";
    pub const PREFLIGHT_VCENTER_PERMISSIONS: &str = "preflight::vcenter-permissions";
    pub const PREFLIGHT_DISK_UUID_CONFLICT: &str = "preflight::disk-uuid-conflict";
    pub const PREFLIGHT_DATASTORE: &str = "preflight::datastore";
    pub const PREFLIGHT_UNSUPPORTED_FAILBACK: &str = "preflight::unsupported-failback";
    pub const PREFLIGHT_AGENT_NOT_REGISTERED: &str = "preflight::agent-not-registered";
    pub const PREFLIGHT_VM_POWERED_ON: &str = "preflight::vm-powered-on";
    pub const PREFLIGHT_NAME_CLASH: &str = "preflight::name-clash";
    pub const PREFLIGHT_ESXI_MEMORY: &str = "preflight::esxi-memory";
    pub const PREFLIGHT_MAINTENANCE_WINDOW: &str = "preflight::maintenance-window";
    /// The plan names a machine the provider does not know (not a replicated item).
    pub const PREFLIGHT_MACHINE_MISSING: &str = "preflight::machine-missing";

    /// The preflight codes, in the order DESIGN.md §5 lists them.
    pub const PREFLIGHT: &[&str] = &[
        PREFLIGHT_CONFIGURATION_SERVER,
        PREFLIGHT_PROCESS_SERVER,
        PREFLIGHT_MASTER_TARGET_SNAPSHOTS,
        PREFLIGHT_MASTER_TARGET,
        PREFLIGHT_RETENTION_DRIVE,
        PREFLIGHT_VCENTER,
        PREFLIGHT_VCENTER_PERMISSIONS,
        PREFLIGHT_DISK_UUID_CONFLICT,
        PREFLIGHT_DATASTORE,
        PREFLIGHT_UNSUPPORTED_FAILBACK,
        PREFLIGHT_AGENT_NOT_REGISTERED,
        PREFLIGHT_VM_POWERED_ON,
        PREFLIGHT_NAME_CLASH,
        PREFLIGHT_ESXI_MEMORY,
        PREFLIGHT_MAINTENANCE_WINDOW,
        PREFLIGHT_MACHINE_MISSING,
    ];

    // Failures of an apply that are lifeboat's, not the provider's.
    /// The state journal could not record an operation.
    pub const APPLY_JOURNAL: &str = "apply::journal";
    /// The task that ran an operation panicked (a bug in lifeboat or the provider).
    pub const APPLY_TASK_PANICKED: &str = "apply::task-panicked";

    /// Problems in a `sim` world file (not a plan file, so not `plan::*`).
    pub const WORLD_SYNTAX: &str = "world::syntax";
    pub const WORLD_SCHEMA: &str = "world::schema";
    pub const WORLD_UNKNOWN_REFERENCE: &str = "world::unknown-reference";
    /// The plan's `provider.sim.world` names no file.
    pub const WORLD_MISSING: &str = "world::missing";

    /// The static codes, in the order DESIGN.md §5 lists them.
    pub const STATIC: &[&str] = &[
        PLAN_SYNTAX,
        PLAN_SCHEMA,
        PLAN_UNKNOWN_REFERENCE,
        PLAN_DUPLICATE,
        GROUP_MIXED_OS,
        GROUP_MASTER_TARGET_OS,
        GROUP_CONFLICTING_MASTER_TARGET,
        GROUP_MULTIPLE_GROUPS,
        GROUP_NO_MASTER_TARGET,
        MASTER_TARGET_DISK_LIMIT,
        MASTER_TARGET_DATASTORE,
        BOOT_ORDER_CYCLE,
        BOOT_ORDER_MULTIPLE_GROUPS,
        MAINTENANCE_WINDOW_INVALID,
    ];
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A labelled span in the plan file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    /// The first label is the primary one: the value that is wrong.
    pub labels: Vec<Label>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            help: None,
            labels: Vec::new(),
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The position of the primary label, for sorting reports in file order.
    pub fn primary_start(&self) -> usize {
        self.labels.first().map_or(0, |label| label.span.start)
    }
}

/// Sorts diagnostics into the order a reader wants: by position in the file, then by code.
/// The sort is stable, so diagnostics at one position keep the order the checks produced.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (a.primary_start(), a.code, &a.message).cmp(&(b.primary_start(), b.code, &b.message))
    });
}

/// The JSON report of `validate --format json` (DESIGN.md §6).
#[derive(Debug, Serialize)]
pub struct JsonReport {
    pub format_version: &'static str,
    pub valid: bool,
    pub error_count: usize,
    pub warning_count: usize,
    pub diagnostics: Vec<JsonDiagnostic>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JsonDiagnostic {
    pub severity: Severity,
    pub code: String,
    pub message: String,
    pub help: Option<String>,
    pub labels: Vec<JsonLabel>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct JsonLabel {
    pub file: String,
    pub message: String,
    pub start: Position,
    pub end: Position,
}

impl JsonDiagnostic {
    pub fn new(diagnostic: &Diagnostic, file: &SourceFile) -> Self {
        Self {
            severity: diagnostic.severity,
            code: diagnostic.code.to_string(),
            message: diagnostic.message.clone(),
            help: diagnostic.help.clone(),
            labels: diagnostic
                .labels
                .iter()
                .map(|label| JsonLabel {
                    file: file.name().to_string(),
                    message: label.message.clone(),
                    start: file.position(label.span.start),
                    end: file.position(label.span.end),
                })
                .collect(),
        }
    }
}

impl JsonReport {
    pub fn new(diagnostics: &[Diagnostic], file: &SourceFile) -> Self {
        let error_count = diagnostics.iter().filter(|d| d.is_error()).count();
        Self {
            format_version: "1",
            valid: error_count == 0,
            error_count,
            warning_count: diagnostics.len() - error_count,
            diagnostics: diagnostics
                .iter()
                .map(|d| JsonDiagnostic::new(d, file))
                .collect(),
        }
    }
}

/// The closest candidate to a misspelt name, if one is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(name, candidate), candidate))
        .filter(|&(score, _)| score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}
