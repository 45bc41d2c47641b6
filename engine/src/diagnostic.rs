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
    /// A path the plan names resolves outside its repository (see `paths`).
    pub const PLAN_PATH_OUTSIDE: &str = "plan::path-outside";
    /// A `plugin` provider whose command is not allowed from outside the plan
    /// (`--allow-plugin`, `LIFEBOAT_ALLOWED_PLUGINS`): a plan cannot make lifeboat run code.
    pub const PLAN_PLUGIN_NOT_ALLOWED: &str = "plan::plugin-not-allowed";
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
    /// A boot group's `before`/`after` step that cannot run as written: no kind or several,
    /// an empty command, a bad address or URL, a timeout that is zero, over a day, or set on a
    /// manual step.
    pub const BOOT_ORDER_STEP: &str = "boot-order::step";
    /// Warning: a machine that will fail back is in no boot group.
    pub const BOOT_ORDER_UNORDERED: &str = "boot-order::unordered";
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
    pub const PREFLIGHT_LOCKED_SETTING: &str = "preflight::locked-setting";
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
        PREFLIGHT_LOCKED_SETTING,
        PREFLIGHT_MACHINE_MISSING,
    ];

    // Failures of an apply that are lifeboat's, not the provider's.
    /// The state journal could not record an operation.
    pub const APPLY_JOURNAL: &str = "apply::journal";
    /// The task that ran an operation panicked (a bug in lifeboat or the provider).
    pub const APPLY_TASK_PANICKED: &str = "apply::task-panicked";
    /// A boot-group step failed: a check that never passed, a command that exited non-zero
    /// or could not start.
    pub const STEP_FAILED: &str = "step::failed";
    /// A boot-group step ran out of time (a command's whole process group is killed).
    pub const STEP_TIMEOUT: &str = "step::timeout";

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
        PLAN_PATH_OUTSIDE,
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
        BOOT_ORDER_STEP,
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
///
/// For one lookup among few names; a check that looks up many names in one set builds a
/// [`Suggestions`] once instead.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    Suggestions::new(candidates).best(name)
}

/// Names longer than this (in characters) are neither suggested nor given suggestions:
/// comparing two names costs the product of their lengths, and a name this long is not a
/// typo of a short one.
pub const MAX_SUGGESTED_CHARS: usize = 64;

/// Up to this many names, a lookup compares the name with every one of them.
const SCAN_LIMIT: usize = 256;

/// At most this many names are compared per lookup in a larger set.
const MAX_COMPARED: usize = 64;

/// The names a misspelt reference may have meant, indexed so that each lookup compares it
/// with a bounded number of names: suggestions for a plan with every one of 100,000
/// references misspelt cost time linear in the plan, not quadratic.
///
/// A small set (up to 256 names) is compared whole, by Jaro-Winkler similarity. A larger one
/// is indexed by each name and its one-character deletions: a lookup finds the names one
/// edit away (a character inserted, deleted, replaced, or two neighbours swapped), compares
/// at most 64 of them, and suggests the most similar as before.
#[derive(Debug)]
pub struct Suggestions<'a> {
    names: Vec<&'a str>,
    /// Sorted `(hash of a name or a one-character deletion of it, index into names)`; only
    /// for sets over [`SCAN_LIMIT`].
    index: Vec<(u64, u32)>,
}

impl<'a> Suggestions<'a> {
    pub fn new(candidates: impl IntoIterator<Item = &'a str>) -> Self {
        let names: Vec<&'a str> = candidates.into_iter().collect();
        let mut index = Vec::new();
        if names.len() > SCAN_LIMIT {
            let mut keys = Vec::new();
            for (i, name) in names.iter().enumerate() {
                let Ok(i) = u32::try_from(i) else { break };
                if deletion_keys(name, &mut keys) {
                    index.extend(keys.iter().map(|&key| (key, i)));
                }
            }
            index.sort_unstable();
            index.dedup();
        }
        Self { names, index }
    }

    /// The closest name to `name`, if one is close enough to be a likely typo.
    pub fn best(&self, name: &str) -> Option<&'a str> {
        if name.chars().nth(MAX_SUGGESTED_CHARS).is_some() {
            return None;
        }
        let score = |candidate: &'a str| {
            (candidate.chars().nth(MAX_SUGGESTED_CHARS).is_none())
                .then(|| (strsim::jaro_winkler(name, candidate), candidate))
        };
        let best = |scored: &mut dyn Iterator<Item = (f64, &'a str)>| {
            scored
                .filter(|&(score, _)| score > 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, candidate)| candidate)
        };
        if self.names.len() <= SCAN_LIMIT {
            return best(&mut self.names.iter().filter_map(|c| score(c)));
        }
        let mut keys = Vec::new();
        deletion_keys(name, &mut keys);
        let mut found: Vec<u32> = Vec::new();
        'keys: for key in keys {
            let start = self.index.partition_point(|&(k, _)| k < key);
            for &(k, i) in &self.index[start..] {
                if k != key {
                    break;
                }
                if found.len() >= MAX_COMPARED {
                    break 'keys;
                }
                found.push(i);
            }
        }
        // In the order of the set, so the answer does not depend on the hashes.
        found.sort_unstable();
        found.dedup();
        best(&mut found.iter().filter_map(|&i| score(self.names[i as usize])))
    }
}

/// The hashes of `name` and of each string made by deleting one of its characters, into
/// `keys`; `false` (and no keys) for a name over [`MAX_SUGGESTED_CHARS`]. Two names share a
/// key when they are one edit apart. Polynomial hashes of prefixes and suffixes give every
/// deletion's hash in O(1), so a name costs O(length).
fn deletion_keys(name: &str, keys: &mut Vec<u64>) -> bool {
    const BASE: u64 = 0x0000_0100_0000_01b3;
    keys.clear();
    let chars: Vec<u64> = name.chars().map(|c| u64::from(c) + 1).collect();
    let n = chars.len();
    if n > MAX_SUGGESTED_CHARS {
        return false;
    }
    // prefix[i]: hash of chars[..i]; suffix[i]: hash of chars[i..]; power[k] = BASE^k.
    let mut prefix = vec![0u64; n + 1];
    let mut power = vec![1u64; n + 1];
    for i in 0..n {
        prefix[i + 1] = prefix[i].wrapping_mul(BASE).wrapping_add(chars[i]);
        power[i + 1] = power[i].wrapping_mul(BASE);
    }
    let mut suffix = vec![0u64; n + 1];
    for i in (0..n).rev() {
        suffix[i] = chars[i]
            .wrapping_mul(power[n - 1 - i])
            .wrapping_add(suffix[i + 1]);
    }
    // The length goes into each key, so that strings of different lengths rarely meet.
    let key = |hash: u64, len: usize| hash ^ (len as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    keys.push(key(prefix[n], n));
    for i in 0..n {
        let deleted = prefix[i]
            .wrapping_mul(power[n - 1 - i])
            .wrapping_add(suffix[i + 1]);
        keys.push(key(deleted, n - 1));
    }
    true
}

#[cfg(test)]
mod suggestion_tests {
    use super::*;

    fn large(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("app-{i:06}")).collect()
    }

    #[test]
    fn deletion_keys_meet_exactly_for_one_edit() {
        let keys = |s: &str| {
            let mut k = Vec::new();
            deletion_keys(s, &mut k);
            k.into_iter().collect::<std::collections::HashSet<_>>()
        };
        let meet = |a: &str, b: &str| !keys(a).is_disjoint(&keys(b));
        assert!(meet("web-01", "web-01"));
        assert!(meet("web-01", "web01"), "deletion");
        assert!(meet("web-01", "webb-01"), "insertion");
        assert!(meet("web-01", "wib-01"), "substitution");
        assert!(meet("web-01", "ewb-01"), "swap");
        assert!(!meet("web-01", "db-02x"));
    }

    #[test]
    fn a_large_set_suggests_names_one_edit_away() {
        let names = large(10_000);
        let suggestions = Suggestions::new(names.iter().map(String::as_str));
        assert_eq!(suggestions.best("app-0004217"), Some("app-004217"));
        assert_eq!(suggestions.best("app_004217"), Some("app-004217"));
        assert_eq!(suggestions.best("apq-004217"), Some("app-004217"));
        assert_eq!(suggestions.best("zzzzzzzz"), None);
    }

    #[test]
    fn small_sets_keep_the_whole_comparison() {
        let names = ["web-01", "db-01"];
        assert_eq!(did_you_mean("wb-1", names), Some("web-01"));
        assert_eq!(did_you_mean("zzz", names), None);
    }

    #[test]
    fn very_long_names_get_no_suggestion() {
        let long = "a".repeat(200_000);
        assert_eq!(did_you_mean(&long, ["aaaa"]), None);
        let names = large(1_000);
        let suggestions = Suggestions::new(names.iter().map(String::as_str));
        let started = std::time::Instant::now();
        assert_eq!(suggestions.best(&long), None);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn lookups_in_a_large_set_take_bounded_time() {
        // Every name alike: the worst case for an index that would not cap its comparisons.
        let names = large(100_000);
        let suggestions = Suggestions::new(names.iter().map(String::as_str));
        let started = std::time::Instant::now();
        for i in 0..20_000 {
            let _ = suggestions.best(&format!("app-{i:06}x"));
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < std::time::Duration::from_secs(5),
            "20,000 lookups among 100,000 names took {elapsed:?}"
        );
    }
}
