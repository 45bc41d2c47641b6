//! The semantic diff of two plan files (`lifeboat diff OLD NEW`), for change review.
//!
//! Two plans are compared by meaning, not by text: entries are matched by name, so the order
//! of keys, comments and formatting never show up. What is compared is what the next `apply`
//! would act on, including what lifeboat derives: a machine's *effective* master target comes
//! from the validation's assignment, so an automatic assignment that shifts because of a change
//! elsewhere (a new master target, a bigger disk) is shown on the machine it moves.
//!
//! Each difference carries its consequence at the next apply, following DESIGN.md §2: the
//! master target, datastore, retention drive and recovery type of a reprotected machine are
//! locked (ASR cannot change them, so `plan` refuses the change with
//! `preflight::locked-setting` until the machine has failed back), a new process server is a
//! `switch-process-server` (no resync), and a machine removed from the plan is released from
//! state without any provider call. The diff reads no state and no provider, so consequences
//! are stated for the worst case: a machine that is already reprotected. A locked change is
//! dangerous: it stops the next plan of a reprotected machine.
//!
//! Both plans are expected to be valid (the CLI refuses to diff an invalid one, because the
//! assignment of an invalid plan is incomplete); the diff still never panics on one.
//!
//! Everything is linear in the size of the plans: names are matched through hash maps built
//! once per side.

use crate::address::Address;
use std::collections::{BTreeSet, HashMap, HashSet};

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::model::{Goal, Plan};
use crate::validate::{PlanIndex, Validation, join_names};

/// The version of the JSON diff report's shape.
pub const FORMAT_VERSION: &str = "1";

/// Names listed in one consequence before the rest are counted instead.
const MAX_NAMES_IN_TEXT: usize = 5;

/// What kind of difference a [`Difference`] is. The strings are a public contract (JSON output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ChangeKind {
    MachineAdded,
    MachineRemoved,
    MachineChanged,
    GroupAdded,
    GroupRemoved,
    GroupChanged,
    MasterTargetAdded,
    MasterTargetRemoved,
    MasterTargetChanged,
    BootOrderChanged,
    GoalChanged,
    MaintenanceWindowChanged,
    SiteChanged,
    ProviderChanged,
    StateChanged,
    MetadataChanged,
}

/// Whether a change adds, removes or modifies something; renderers pick their symbol by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Added,
    Removed,
    Changed,
}

impl ChangeKind {
    pub fn action(self) -> Action {
        match self {
            Self::MachineAdded | Self::GroupAdded | Self::MasterTargetAdded => Action::Added,
            Self::MachineRemoved | Self::GroupRemoved | Self::MasterTargetRemoved => {
                Action::Removed
            }
            _ => Action::Changed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MachineAdded => "machine-added",
            Self::MachineRemoved => "machine-removed",
            Self::MachineChanged => "machine-changed",
            Self::GroupAdded => "group-added",
            Self::GroupRemoved => "group-removed",
            Self::GroupChanged => "group-changed",
            Self::MasterTargetAdded => "master-target-added",
            Self::MasterTargetRemoved => "master-target-removed",
            Self::MasterTargetChanged => "master-target-changed",
            Self::BootOrderChanged => "boot-order-changed",
            Self::GoalChanged => "goal-changed",
            Self::MaintenanceWindowChanged => "maintenance-window-changed",
            Self::SiteChanged => "site-changed",
            Self::ProviderChanged => "provider-changed",
            Self::StateChanged => "state-changed",
            Self::MetadataChanged => "metadata-changed",
        }
    }
}

/// One semantic difference between the two plans.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
// The schema keeps the name published before the rename, for consumers of its `$defs`.
#[schemars(rename = "Change")]
pub struct Difference {
    /// `machine.NAME`, `group.NAME`, `master_target.NAME`, `boot_order` or `plan`.
    pub address: Address,
    pub kind: ChangeKind,
    /// The settings before: all of them for a removal, only those that differ for a change,
    /// `null` for an addition.
    #[schemars(required)]
    pub before: Option<Value>,
    /// The settings after: all of them for an addition, only those that differ for a change,
    /// `null` for a removal.
    #[schemars(required)]
    pub after: Option<Value>,
    /// What the difference causes at the next apply.
    pub consequence: String,
    /// Whether it locks a reprotected machine (a setting ASR cannot change), means
    /// application downtime, or takes an irreversible step.
    pub dangerous: bool,
    /// Upper bound of data (GiB) this change makes the next apply send: the reprotect of new
    /// machines. Machines without `disks_gib` count nothing.
    pub max_transfer_gib: u64,
}

/// Totals over all changes. Machines are counted once even when several changes affect them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
// The schema keeps the name published before the rename, for consumers of its `$defs`.
#[schemars(rename = "Summary")]
pub struct DiffSummary {
    pub changes: usize,
    pub dangerous: usize,
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    /// Upper bound of data (GiB) sent because of these changes: the new machines' reprotects.
    pub max_transfer_gib: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanDiff {
    /// Dangerous changes first, then by address.
    pub changes: Vec<Difference>,
    pub summary: DiffSummary,
}

impl PlanDiff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The JSON report of `lifeboat diff --format json`, documented in `schemas/diff.schema.json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(
    title = "lifeboat diff report",
    extend("$id" = "https://lifeboat.dev/schemas/diff.schema.json")
)]
pub struct DiffReport {
    /// Always "1" for this shape.
    pub format_version: String,
    /// The old plan file, as given on the command line.
    pub old: String,
    /// The new plan file, as given on the command line.
    pub new: String,
    pub changes: Vec<Difference>,
    pub summary: DiffSummary,
}

impl DiffReport {
    pub fn new(old: impl Into<String>, new: impl Into<String>, diff: PlanDiff) -> Self {
        Self {
            format_version: FORMAT_VERSION.to_string(),
            old: old.into(),
            new: new.into(),
            changes: diff.changes,
            summary: diff.summary,
        }
    }
}

/// `320 GiB`, `2.1 TiB`: an amount of data for people.
pub fn format_gib(gib: u64) -> String {
    if gib >= 1024 {
        format!("{:.1} TiB", gib as f64 / 1024.0)
    } else {
        format!("{gib} GiB")
    }
}

/// The validation of `new` that `plan` makes once `old` is applied: every machine starts on
/// the master target `old` gives it, and lifeboat's own choices stay there while they fit,
/// exactly as `plan` keeps them from the sites' facts. Diffing against this (not a fresh
/// validation of `new`) keeps the review from announcing moves and full resyncs that apply
/// will never make.
pub fn sticky_validation(old: &Plan, old_validation: &Validation, new: &Plan) -> Validation {
    let current: HashMap<&str, &str> = old
        .machines
        .names()
        .enumerate()
        .filter_map(|(m, name)| Some((name, old_validation.assignment.target_name(old, m)?)))
        .collect();
    crate::validate::validate_with(new, &current)
}

/// Compares two plans by meaning. Both validations must belong to their plans; the new one
/// should be [`sticky_validation`].
pub fn diff(
    old: &Plan,
    old_validation: &Validation,
    new: &Plan,
    new_validation: &Validation,
) -> PlanDiff {
    let old = Side::new(old, old_validation);
    let new = Side::new(new, new_validation);
    let mut differ = Differ {
        old: &old,
        new: &new,
        changes: Vec::new(),
        added: HashSet::new(),
    };
    differ.machines();
    differ.groups();
    differ.master_targets();
    differ.boot_order();
    differ.plan_settings();
    differ.finish()
}

/// One plan with the lookups the diff needs, built once.
struct Side<'p> {
    plan: &'p Plan,
    validation: &'p Validation,
    index: PlanIndex<'p>,
    boot_group_of: HashMap<&'p str, &'p str>,
    /// For each master target, the machines assigned to it.
    served: HashMap<&'p str, Vec<usize>>,
}

impl<'p> Side<'p> {
    fn new(plan: &'p Plan, validation: &'p Validation) -> Self {
        let mut boot_group_of = HashMap::new();
        for group in &plan.boot_order.value {
            for machine in &group.machines.value {
                boot_group_of
                    .entry(machine.value.as_str())
                    .or_insert(group.name.value.as_str());
            }
        }
        let mut served: HashMap<&str, Vec<usize>> = HashMap::new();
        for m in 0..plan.machines.len() {
            if let Some(target) = self_target(plan, validation, m) {
                served.entry(target).or_default().push(m);
            }
        }
        Self {
            plan,
            validation,
            index: PlanIndex::new(plan),
            boot_group_of,
            served,
        }
    }

    fn machine_name(&self, m: usize) -> &'p str {
        self.plan.machines.get_index(m).0.value.as_str()
    }

    fn target_of(&self, m: usize) -> Option<&'p str> {
        self_target(self.plan, self.validation, m)
    }

    fn disk_total(&self, m: usize) -> u64 {
        self.plan.machines.get_index(m).1.disk_total_gib()
    }

    /// Every setting of a machine the next apply acts on, resolved.
    fn machine_view(&self, m: usize) -> Map<String, Value> {
        let (name, machine) = self.plan.machines.get_index(m);
        let depends_on: BTreeSet<&str> = machine
            .depends_on
            .iter()
            .map(|d| d.value.as_str())
            .collect();
        let master_target = self.target_of(m).map(|target| {
            json!({
                "name": target,
                "assigned": self.validation.assignment.chosen.get(m).copied().unwrap_or(false),
            })
        });
        let group = self.index.group_of[m]
            .map(|g| self.plan.replication_groups.get_index(g).0.value.as_str());
        let view = json!({
            "os": machine.os.as_str(),
            "recovery": machine.recovery().as_str(),
            "datastore": machine.datastore.value,
            "disks_gib": machine.disks_gib.as_ref().map(|disks| {
                disks.value.iter().map(|d| d.value).collect::<Vec<_>>()
            }),
            "depends_on": depends_on,
            "master_target": master_target,
            "replication_group": group,
            "boot_group": self.boot_group_of.get(name.value.as_str()),
        });
        into_map(view)
    }

    fn group_view(&self, g: usize) -> Map<String, Value> {
        let group = self.plan.replication_groups.get_index(g).1;
        let members: BTreeSet<&str> = group
            .machines
            .value
            .iter()
            .map(|m| m.value.as_str())
            .collect();
        into_map(json!({
            "machines": members,
            "master_target": group.master_target.as_ref().map(|t| t.value.as_str()),
        }))
    }

    fn master_target_view(&self, t: usize) -> Map<String, Value> {
        let target = self.plan.master_targets.get_index(t).1;
        let datastores: BTreeSet<&str> =
            target.datastores.iter().map(|d| d.value.as_str()).collect();
        into_map(json!({
            "os": target.os.as_str(),
            "esxi_host": target.esxi_host.value,
            "retention_drive": target.retention_drive.value,
            "datastores": datastores,
        }))
    }

    fn site_view(&self) -> Map<String, Value> {
        let site = &self.plan.site.value;
        into_map(json!({
            "vcenter": site.vcenter.value,
            "configuration_server": site.configuration_server.value,
            "process_server": site.process_server.value,
            "failback_policy": site.failback_policy.value,
            "home": site.home.as_ref().map(|home| json!({
                "process_server": home.value.process_server.value,
                "run_as_account": home.value.run_as_account.value,
                "policy": home.value.policy.value,
            })),
        }))
    }

    fn window_view(&self) -> Value {
        self.plan.maintenance_window.as_ref().map_or(
            Value::Null,
            |w| json!({"start": w.start.value.to_string(), "end": w.end.value.to_string()}),
        )
    }
}

fn self_target<'p>(plan: &'p Plan, validation: &Validation, m: usize) -> Option<&'p str> {
    let target = (*validation.assignment.machine_target.get(m)?)?;
    (target < plan.master_targets.len())
        .then(|| plan.master_targets.get_index(target).0.value.as_str())
}

fn into_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The settings that differ, as two maps holding only those keys.
fn differing(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> (Map<String, Value>, Map<String, Value>) {
    let mut b = Map::new();
    let mut a = Map::new();
    for (key, old) in before {
        let new = after.get(key).unwrap_or(&Value::Null);
        if old != new {
            b.insert(key.clone(), old.clone());
            a.insert(key.clone(), new.clone());
        }
    }
    for (key, new) in after {
        if !before.contains_key(key) && !new.is_null() {
            b.insert(key.clone(), Value::Null);
            a.insert(key.clone(), new.clone());
        }
    }
    (b, a)
}

/// `a`, `b` and `c`, or `a`, `b`, `c`, `d`, `e` and 7 more.
fn some_names(names: &[&str]) -> String {
    if names.len() <= MAX_NAMES_IN_TEXT {
        join_names(names)
    } else {
        let shown = join_names(&names[..MAX_NAMES_IN_TEXT]).replace(" and ", ", ");
        format!("{shown} and {} more", names.len() - MAX_NAMES_IN_TEXT)
    }
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn name_of(value: Option<&Value>) -> Option<&str> {
    match value? {
        Value::String(s) => Some(s.as_str()),
        Value::Object(map) => map.get("name").and_then(Value::as_str),
        _ => None,
    }
}

struct Differ<'a, 'p> {
    old: &'a Side<'p>,
    new: &'a Side<'p>,
    changes: Vec<Difference>,
    /// Machines (of the new plan) that are new.
    added: HashSet<usize>,
}

impl<'p> Differ<'_, 'p> {
    fn push(
        &mut self,
        address: Address,
        kind: ChangeKind,
        before: Option<Value>,
        after: Option<Value>,
        consequence: String,
        dangerous: bool,
    ) -> &mut Difference {
        self.changes.push(Difference {
            address,
            kind,
            before,
            after,
            consequence,
            dangerous,
            max_transfer_gib: 0,
        });
        self.changes.last_mut().expect("just pushed")
    }

    /// The consequence of changing a locked setting of the new plan's machines `ms`.
    fn locked(&self, ms: &[usize], setting: &str) -> String {
        let names: Vec<&str> = ms.iter().map(|&m| self.new.machine_name(m)).collect();
        format!(
            "locks: ASR cannot change the {setting} of a reprotected machine, so `plan` refuses it for {} while reprotected (`preflight::locked-setting`); fail back first, or keep the old value",
            some_names(&names)
        )
    }

    fn goes_past_reprotect(&self) -> bool {
        self.new.plan.goal() >= Goal::FailedBack
    }

    fn machines(&mut self) {
        let (old, new) = (self.old, self.new);
        for m in 0..new.plan.machines.len() {
            let name = new.machine_name(m);
            let after = new.machine_view(m);
            match old.index.machine(name) {
                None => self.machine_added(m, name, after),
                Some(o) => self.machine_changed(o, m, name, after),
            }
        }
        for o in 0..old.plan.machines.len() {
            let name = old.machine_name(o);
            if new.index.machine(name).is_none() {
                self.push(
                    Address::Machine(name.to_string()),
                    ChangeKind::MachineRemoved,
                    Some(Value::Object(old.machine_view(o))),
                    None,
                    format!(
                        "`{name}` is no longer managed; nothing happens on either site \
                         (released from state)"
                    ),
                    false,
                );
            }
        }
    }

    fn machine_added(&mut self, m: usize, name: &str, after: Map<String, Value>) {
        let gib = self.new.disk_total(m);
        let mut text = format!("`{name}` will be reprotected");
        if gib > 0 {
            text.push_str(&format!(", sending up to {}", format_gib(gib)));
        }
        let downtime = self.goes_past_reprotect();
        if downtime {
            text.push_str(", then failed back (application downtime)");
        }
        self.added.insert(m);
        let change = self.push(
            Address::Machine(name.to_string()),
            ChangeKind::MachineAdded,
            None,
            Some(Value::Object(after)),
            text,
            downtime,
        );
        change.max_transfer_gib = gib;
    }

    fn machine_changed(&mut self, o: usize, m: usize, name: &str, after: Map<String, Value>) {
        let (before, after) = differing(&self.old.machine_view(o), &after);
        if before.is_empty() {
            return;
        }
        let changed = |key: &str| before.contains_key(key);
        let mut notes = Vec::new();

        let target_moves = changed("master_target")
            && name_of(before.get("master_target")) != name_of(after.get("master_target"));
        let locked: Vec<&str> = [
            ("master target", target_moves),
            ("datastore", changed("datastore")),
            ("recovery type", changed("recovery")),
        ]
        .into_iter()
        .filter_map(|(setting, moved)| moved.then_some(setting))
        .collect();
        let locks = !locked.is_empty();
        if locks {
            notes.push(self.locked(&[m], &join_names(&locked).replace('`', "")));
        } else if changed("master_target") {
            // Same target, only who chose it differs: nothing moves.
            let target = name_of(after.get("master_target")).unwrap_or("?");
            let assigned = after["master_target"]["assigned"]
                .as_bool()
                .unwrap_or(false);
            notes.push(if assigned {
                format!("lets lifeboat assign its master target (still `{target}`)")
            } else {
                format!("pins its master target `{target}` in the plan")
            });
        }
        if changed("replication_group") {
            let from = before["replication_group"].as_str();
            let to = after["replication_group"].as_str();
            notes.push(match (from, to) {
                (None, Some(to)) => {
                    format!("joins replication group `{to}`: reprotected together with its members")
                }
                (Some(from), None) => {
                    format!("leaves replication group `{from}`: reprotected on its own")
                }
                (Some(from), Some(to)) => {
                    format!("moves from replication group `{from}` to `{to}`")
                }
                (None, None) => String::new(),
            });
        }
        if changed("boot_group") || changed("depends_on") {
            notes.push("changes the failback order".to_string());
        }
        if changed("disks_gib") {
            notes.push(
                "changes its transfer estimate and the disks counted on its master target"
                    .to_string(),
            );
        }
        if changed("os") {
            let os = after["os"].as_str().unwrap_or("?");
            notes.push(format!("needs a master target running `{os}`"));
        }
        self.push(
            Address::Machine(name.to_string()),
            ChangeKind::MachineChanged,
            Some(Value::Object(before)),
            Some(Value::Object(after)),
            notes.join("; "),
            locks,
        );
    }

    fn groups(&mut self) {
        let (old, new) = (self.old, self.new);
        for g in 0..new.plan.replication_groups.len() {
            let name = new.plan.replication_groups.get_index(g).0.value.as_str();
            let after = new.group_view(g);
            match old.index.groups.get(name) {
                None => {
                    let text = format!(
                        "{} are reprotected together, on one master target",
                        some_names(&member_names(&after))
                    );
                    self.push(
                        Address::Group(name.to_string()),
                        ChangeKind::GroupAdded,
                        None,
                        Some(Value::Object(after)),
                        text,
                        false,
                    );
                }
                Some(&o) => {
                    // Membership changes are shown on the machines that join or leave; the
                    // group itself only has its master target.
                    let mut before = old.group_view(o);
                    let mut after = after;
                    before.remove("machines");
                    after.remove("machines");
                    let (before, after) = differing(&before, &after);
                    if before.is_empty() {
                        continue;
                    }
                    let text = match after["master_target"].as_str() {
                        Some(target) => format!(
                            "pins the group to master target `{target}`; its members' changes \
                             show whether they move"
                        ),
                        None => "lets lifeboat assign the group's master target; its members' \
                                 changes show whether they move"
                            .to_string(),
                    };
                    self.push(
                        Address::Group(name.to_string()),
                        ChangeKind::GroupChanged,
                        Some(Value::Object(before)),
                        Some(Value::Object(after)),
                        text,
                        false,
                    );
                }
            }
        }
        for o in 0..old.plan.replication_groups.len() {
            let name = old.plan.replication_groups.get_index(o).0.value.as_str();
            if !new.index.groups.contains_key(name) {
                let before = old.group_view(o);
                let text = format!(
                    "{} are no longer kept consistent together",
                    some_names(&member_names(&before))
                );
                self.push(
                    Address::Group(name.to_string()),
                    ChangeKind::GroupRemoved,
                    Some(Value::Object(before)),
                    None,
                    text,
                    false,
                );
            }
        }
    }

    fn master_targets(&mut self) {
        let (old, new) = (self.old, self.new);
        for t in 0..new.plan.master_targets.len() {
            let name = new.plan.master_targets.get_index(t).0.value.as_str();
            let after = new.master_target_view(t);
            let served: Vec<usize> = new.served.get(name).cloned().unwrap_or_default();
            match old.index.master_target(name) {
                None => {
                    let names: Vec<&str> = served.iter().map(|&m| new.machine_name(m)).collect();
                    let text = if names.is_empty() {
                        "available for assignment; serves no machine yet".to_string()
                    } else {
                        format!("serves {}", some_names(&names))
                    };
                    self.push(
                        Address::MasterTarget(name.to_string()),
                        ChangeKind::MasterTargetAdded,
                        None,
                        Some(Value::Object(after)),
                        text,
                        false,
                    );
                }
                Some(o) => {
                    let (before, after) = differing(&old.master_target_view(o), &after);
                    if before.is_empty() {
                        continue;
                    }
                    // Machines that stay on this target see its new settings; those that move
                    // are already reported through their own change.
                    let staying: Vec<usize> = served
                        .iter()
                        .copied()
                        .filter(|&m| {
                            old.index
                                .machine(new.machine_name(m))
                                .is_some_and(|o| old.target_of(o) == Some(name))
                        })
                        .collect();
                    let mut notes = Vec::new();
                    let mut dangerous = false;
                    if let (Some(from), Some(to)) = (
                        before.get("retention_drive").and_then(Value::as_str),
                        after.get("retention_drive").and_then(Value::as_str),
                    ) {
                        if crate::provider::same_retention_drive(from, to) {
                            notes.push(format!(
                                "`{from}` and `{to}` name the same retention volume: nothing changes"
                            ));
                        } else if !staying.is_empty() {
                            notes.push(self.locked(&staying, "retention drive"));
                            dangerous = true;
                        }
                    }
                    if before.contains_key("esxi_host") {
                        notes.push(format!(
                            "machines it serves are recovered through ESXi host `{}`; \
                             preflight checks that host's datastores",
                            after["esxi_host"].as_str().unwrap_or("?")
                        ));
                    }
                    if before.contains_key("os") || before.contains_key("datastores") {
                        notes.push("changes which machines lifeboat may assign to it".to_string());
                    }
                    if notes.is_empty() {
                        notes.push("no machine is affected".to_string());
                    }
                    self.push(
                        Address::MasterTarget(name.to_string()),
                        ChangeKind::MasterTargetChanged,
                        Some(Value::Object(before)),
                        Some(Value::Object(after)),
                        notes.join("; "),
                        dangerous,
                    );
                }
            }
        }
        for o in 0..old.plan.master_targets.len() {
            let name = old.plan.master_targets.get_index(o).0.value.as_str();
            if new.index.master_target(name).is_none() {
                let served = old.served.get(name).map_or(0, Vec::len);
                let text = if served == 0 {
                    "no longer available to lifeboat; it served no machine".to_string()
                } else {
                    format!(
                        "no longer available to lifeboat; the {} it served move (see their \
                         changes)",
                        plural(served, "machine")
                    )
                };
                self.push(
                    Address::MasterTarget(name.to_string()),
                    ChangeKind::MasterTargetRemoved,
                    Some(Value::Object(old.master_target_view(o))),
                    None,
                    text,
                    false,
                );
            }
        }
    }

    fn boot_order(&mut self) {
        let names = |side: &Side<'_>| -> Vec<String> {
            side.plan
                .boot_order
                .value
                .iter()
                .map(|g| g.name.value.clone())
                .collect()
        };
        let (before, after) = (names(self.old), names(self.new));
        if before != after {
            let mut text = "changes the failback order: each boot group starts when the \
                            previous one is done"
                .to_string();
            if !self.goes_past_reprotect() {
                text.push_str(&format!(
                    " (no effect while the goal is `{}`)",
                    self.new.plan.goal()
                ));
            }
            self.push(
                Address::BootOrder,
                ChangeKind::BootOrderChanged,
                Some(json!(before)),
                Some(json!(after)),
                text,
                false,
            );
        }
    }

    fn plan_settings(&mut self) {
        self.goal();
        self.window();
        self.site();
        let (old, new) = (self.old.plan, self.new.plan);
        if old.provider != new.provider {
            let (from, to) = (old.provider.kind(), new.provider.kind());
            let text = if from == to {
                format!("the next `plan` and `apply` talk to `{to}` with different settings")
            } else {
                format!("the next `plan` and `apply` talk to `{to}` instead of `{from}`")
            };
            let value = |p: &Plan| serde_json::to_value(&p.provider).unwrap_or(Value::Null);
            self.push(
                Address::Plan,
                ChangeKind::ProviderChanged,
                Some(value(old)),
                Some(value(new)),
                text,
                false,
            );
        }
        if old.state != new.state {
            let value = |p: &Plan| serde_json::to_value(&p.state).unwrap_or(Value::Null);
            self.push(
                Address::Plan,
                ChangeKind::StateChanged,
                Some(value(old)),
                Some(value(new)),
                "state is kept elsewhere: move the state file first, or lifeboat starts from an \
                 empty state"
                    .to_string(),
                false,
            );
        }
        let metadata = |p: &Plan| {
            into_map(json!({
                "name": p.name.value,
                "description": p.description.as_ref().map(|d| d.value.as_str()),
            }))
        };
        let (before, after) = differing(&metadata(old), &metadata(new));
        if !before.is_empty() {
            self.push(
                Address::Plan,
                ChangeKind::MetadataChanged,
                Some(Value::Object(before)),
                Some(Value::Object(after)),
                "nothing happens on either site; only reports show it".to_string(),
                false,
            );
        }
    }

    fn goal(&mut self) {
        let (from, to) = (self.old.plan.goal(), self.new.plan.goal());
        if from == to {
            return;
        }
        let (text, dangerous) = if to > from {
            let steps: Vec<&str> = [
                (Goal::FailedBack, "failed back (application downtime)"),
                (
                    Goal::Committed,
                    "committed (Azure replicas removed, no way back)",
                ),
                (Goal::Protected, "protected again toward Azure"),
            ]
            .into_iter()
            .filter(|(stage, _)| *stage > from && *stage <= to)
            .map(|(_, step)| step)
            .collect();
            let dangerous = from < Goal::Committed && to >= Goal::FailedBack;
            (
                format!(
                    "apply goes further: every machine is also {}",
                    steps.join(", then ")
                ),
                dangerous,
            )
        } else {
            (
                "lifeboat never moves a machine backwards; machines past the new goal are left \
                 as they are"
                    .to_string(),
                false,
            )
        };
        self.push(
            Address::Plan,
            ChangeKind::GoalChanged,
            Some(json!(from)),
            Some(json!(to)),
            text,
            dangerous,
        );
    }

    fn window(&mut self) {
        let (before, after) = (self.old.window_view(), self.new.window_view());
        if before == after {
            return;
        }
        let mut text = match &after {
            Value::Null => "failback and commit may run at any time".to_string(),
            window => format!(
                "failback and commit may run only between {} and {}",
                window["start"].as_str().unwrap_or("?"),
                window["end"].as_str().unwrap_or("?")
            ),
        };
        if !self.goes_past_reprotect() {
            text.push_str(&format!(
                " (no effect while the goal is `{}`)",
                self.new.plan.goal()
            ));
        }
        self.push(
            Address::Plan,
            ChangeKind::MaintenanceWindowChanged,
            Some(before),
            Some(after),
            text,
            false,
        );
    }

    fn site(&mut self) {
        let (before, after) = differing(&self.old.site_view(), &self.new.site_view());
        if before.is_empty() {
            return;
        }
        let mut notes = Vec::new();
        if let Some(ps) = after.get("process_server").and_then(Value::as_str) {
            // The one setting ASR can change on a reprotected machine (`reassociateGateway`):
            // reprotected machines switch, the others are reprotected through it.
            notes.push(format!(
                "machines replicate through process server `{ps}`; reprotected ones switch to it (`switch-process-server`: no resync, no downtime)"
            ));
        }
        if let Some(vcenter) = after.get("vcenter").and_then(Value::as_str) {
            notes.push(format!(
                "failback goes to vCenter `{vcenter}`: it and the master targets must be \
                 discovered there"
            ));
        }
        if let Some(cs) = after.get("configuration_server").and_then(Value::as_str) {
            notes.push(format!(
                "every machine must be in the database of configuration server `{cs}`"
            ));
        }
        if let Some(policy) = after.get("failback_policy").and_then(Value::as_str) {
            notes.push(format!(
                "reprotects from now on use failback policy `{policy}`"
            ));
        }
        if before.contains_key("home") {
            notes.push(
                "the reprotect back to Azure (`reprotect-home`) uses the new names".to_string(),
            );
        }
        self.push(
            Address::Plan,
            ChangeKind::SiteChanged,
            Some(Value::Object(before)),
            Some(Value::Object(after)),
            notes.join("; "),
            false,
        );
    }

    fn finish(mut self) -> PlanDiff {
        self.changes.sort_by(|a, b| {
            b.dangerous
                .cmp(&a.dangerous)
                .then_with(|| a.address.cmp(&b.address))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        let count = |action: Action| {
            self.changes
                .iter()
                .filter(|c| c.kind.action() == action)
                .count()
        };
        let total = |ms: &mut dyn Iterator<Item = usize>| {
            ms.map(|m| self.new.disk_total(m))
                .fold(0u64, u64::saturating_add)
        };
        let new_gib = total(&mut self.added.iter().copied());
        let summary = DiffSummary {
            changes: self.changes.len(),
            dangerous: self.changes.iter().filter(|c| c.dangerous).count(),
            added: count(Action::Added),
            removed: count(Action::Removed),
            changed: count(Action::Changed),
            max_transfer_gib: new_gib,
        };
        PlanDiff {
            changes: self.changes,
            summary,
        }
    }
}

fn member_names(view: &Map<String, Value>) -> Vec<&str> {
    view.get("machines")
        .and_then(Value::as_array)
        .map(|members| members.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_plan;
    use crate::source::SourceFile;
    use crate::validate::validate;

    fn plan(text: &str) -> (Plan, Validation) {
        let file = SourceFile::new("plan.yaml", "plan.yaml", text.to_string());
        let plan = load_plan(&file).expect("test plan loads");
        let validation = validate(&plan);
        assert!(!validation.has_errors(), "{:?}", validation.diagnostics);
        (plan, validation)
    }

    fn diff_texts(old: &str, new: &str) -> PlanDiff {
        let (old, old_v) = plan(old);
        let (new, new_v) = plan(new);
        diff(&old, &old_v, &new, &new_v)
    }

    const BASE: &str = "version: 1
name: t
provider: {sim: {world: w.yaml}}
site: {vcenter: vc, configuration_server: cs, process_server: ps}
master_targets:
  mt-a: {os: linux, esxi_host: esx-01, retention_drive: /r, datastores: [ds-1, ds-2]}
machines:
  db-01: {os: linux, datastore: ds-1, disks_gib: [100, 200]}
  web-01: {os: linux, datastore: ds-1}
";

    #[test]
    fn a_plan_does_not_differ_from_itself() {
        assert!(diff_texts(BASE, BASE).is_empty());
    }

    #[test]
    fn a_datastore_change_is_dangerous_because_it_locks_a_reprotected_machine() {
        let new = BASE.replace(
            "db-01: {os: linux, datastore: ds-1",
            "db-01: {os: linux, datastore: ds-2",
        );
        let diff = diff_texts(BASE, &new);
        assert_eq!(diff.changes.len(), 1);
        let change = &diff.changes[0];
        assert_eq!(change.address, Address::machine("db-01"));
        assert!(change.dangerous);
        assert!(
            change.consequence.contains("preflight::locked-setting"),
            "{change:?}"
        );
        assert!(!change.consequence.contains("resync"), "{change:?}");
        assert_eq!(change.before, Some(json!({"datastore": "ds-1"})));
        assert_eq!(diff.summary.max_transfer_gib, 0, "nothing is sent");
    }

    #[test]
    fn a_process_server_change_is_a_switch_not_a_danger() {
        let new = BASE.replace("process_server: ps}", "process_server: ps-2}");
        let diff = diff_texts(BASE, &new);
        assert_eq!(diff.changes.len(), 1);
        assert!(
            diff.changes[0]
                .consequence
                .contains("switch-process-server"),
            "{:?}",
            diff.changes[0]
        );
        assert_eq!(diff.summary.dangerous, 0);
    }

    #[test]
    fn r_and_r_colon_are_the_same_retention_drive() {
        let old = BASE.replace("retention_drive: /r", "retention_drive: R");
        assert_ne!(old, BASE);
        let new = old.replace("retention_drive: R", "retention_drive: \"R:\"");
        let diff = diff_texts(&old, &new);
        assert_eq!(diff.changes.len(), 1, "{:?}", diff.changes);
        assert!(!diff.changes[0].dangerous, "{:?}", diff.changes[0]);
        assert!(
            diff.changes[0]
                .consequence
                .contains("same retention volume"),
            "{:?}",
            diff.changes[0]
        );
    }

    #[test]
    fn past_the_reprotect_goal_a_new_machine_means_downtime() {
        let old = BASE.replace("site:", "goal: failed-back\nsite:");
        let new = old.replace(
            "  web-01: {os: linux, datastore: ds-1}\n",
            "  web-01: {os: linux, datastore: ds-1}\n  app-01: {os: linux, datastore: ds-2}\n",
        );
        let diff = diff_texts(&old, &new);
        let added = &diff.changes[0];
        assert_eq!(added.kind, ChangeKind::MachineAdded);
        assert!(added.dangerous);
        assert!(added.consequence.contains("downtime"), "{added:?}");

        // The same addition under the default goal only reprotects.
        let diff = diff_texts(BASE, &new.replace("goal: failed-back\n", ""));
        let added = diff
            .changes
            .iter()
            .find(|c| c.kind == ChangeKind::MachineAdded)
            .expect("the new machine");
        assert!(!added.dangerous, "{added:?}");
    }

    #[test]
    fn provider_and_state_changes_are_shown_at_the_plan() {
        let new = BASE
            .replace("{sim: {world: w.yaml}}", "{sim: {world: other.yaml}}")
            .replace("site:", "state: {local: {path: s.json}}\nsite:");
        let diff = diff_texts(BASE, &new);
        let kinds: Vec<ChangeKind> = diff.changes.iter().map(|c| c.kind).collect();
        assert_eq!(
            kinds,
            [ChangeKind::ProviderChanged, ChangeKind::StateChanged]
        );
        assert!(
            diff.changes
                .iter()
                .all(|c| c.address == Address::Plan && !c.dangerous)
        );
    }

    #[test]
    fn gib_reads_as_tib_from_one_tib() {
        assert_eq!(format_gib(1023), "1023 GiB");
        assert_eq!(format_gib(2150), "2.1 TiB");
    }
}
