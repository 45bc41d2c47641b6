//! The world file (DESIGN.md §7): the simulated estate, both sites, in one YAML document.
//!
//! The types are the single source of the world's JSON Schema (`lifeboat schema world`).
//! Unknown keys are errors, as in the plan. Values that refer to other entries (a master
//! target's `esxi_host`, a fault's `machine`) are [`Spanned`] so that a dangling reference
//! gets a diagnostic pointing at it in the world file.

use std::collections::BTreeMap;
use std::fmt;

use lifeboat_engine::diagnostic::{Diagnostic, codes};
use lifeboat_engine::model::{NamedMap, Os, Recovery, Timestamp};
use lifeboat_engine::provider::facts::{
    AccountAccess, AzureReplica, DatastoreAccess, DatastoreType, HypervisorEdition, SourceKind,
    Stage,
};
use lifeboat_engine::provider::{OperationId, OperationKind, ReprotectSettings};
use lifeboat_engine::{SourceFile, Spanned, load};
use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod split;

/// The simulated estate.
///
/// Every section is required, even when empty (`running: []`), and written in this order:
/// a file cut short by a crash or a truncated copy then lacks at least its last section and
/// is refused, instead of loading as a smaller estate with its running operations and
/// history gone (and being written back that way).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "lifeboat sim world", extend("$id" = "https://lifeboat.dev/schemas/world.schema.json"))]
pub struct World {
    /// The configuration server on the VMware site.
    pub configuration_server: ConfigurationServer,
    /// Process servers, by name: those in Azure (the failback leg) and those on the VMware
    /// site (the leg home, `site.home.process_server`).
    pub process_servers: BTreeMap<String, ProcessServer>,
    /// vCenters known to the configuration server, by name.
    pub vcenters: BTreeMap<String, Vcenter>,
    /// ESXi hosts on the VMware site, by name.
    pub esxi_hosts: BTreeMap<String, EsxiHost>,
    /// Datastores on the VMware site, by name.
    pub datastores: BTreeMap<String, Datastore>,
    /// Master target servers, by name.
    pub master_targets: BTreeMap<String, MasterTarget>,
    /// The replicated items, by name.
    pub machines: BTreeMap<String, Machine>,
    /// Multi-VM consistency groups as ASR knows them: members share one master target and OS.
    pub replication_groups: BTreeMap<String, ReplicationGroup>,
    /// When the machines failed over to Azure; agents register `agent_registers_in_s` after
    /// it. Absent, the first run stamps the current time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_over_at: Option<Timestamp>,
    pub timing: Timing,
    /// Injected failures, consumed in order.
    pub faults: Vec<Fault>,
    /// Operations in progress. Written by the simulator; a new process finds them here.
    pub running: Vec<RunningOperation>,
    /// Every operation the simulated service ran, appended.
    pub history: Vec<HistoryEntry>,
    /// Lookups built on first use; never written (see [`crate::index`]).
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) index: crate::index::Index,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigurationServer {
    pub name: String,
    /// Running and connected to Azure.
    #[serde(default = "yes")]
    pub connected: bool,
    /// The run-as accounts registered with it (`RunAsAccount.accountName`); the reprotect
    /// back to Azure must name one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_as_accounts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessServer {
    #[serde(default = "yes")]
    pub healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Vcenter {
    #[serde(default = "yes")]
    pub connected: bool,
    /// Discovery by the configuration server has finished.
    #[serde(default = "yes")]
    pub discovered: bool,
    /// The discovery account: `read-only` makes reprotect fail.
    #[serde(default = "read_write")]
    pub account: AccountAccess,
    /// The hypervisor licence: the free editions cannot be failed back to.
    #[serde(default = "licensed")]
    pub edition: HypervisorEdition,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EsxiHost {
    /// The vCenter managing the host.
    pub vcenter: Spanned<String>,
    #[serde(default)]
    pub memory_free_gib: u64,
    /// Datastores the host mounts: `read-write` or `read-only`.
    #[serde(default)]
    pub datastores: NamedMap<DatastoreAccess>,
    /// Other VMs registered on the host, by name (alternate-location recovery clashes with
    /// them: ASR 78052).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Datastore {
    #[serde(rename = "type")]
    pub kind: DatastoreType,
    #[serde(default)]
    pub free_gib: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MasterTarget {
    pub os: Os,
    pub esxi_host: Spanned<String>,
    #[serde(default = "yes")]
    pub healthy: bool,
    /// Snapshots on the master target VM: reprotect fails while there are any.
    #[serde(default)]
    pub snapshots: u32,
    /// Disks of protected machines attached to it (at most 60).
    #[serde(default)]
    pub disks_attached: u32,
    #[serde(default)]
    pub retention_volumes: Vec<String>,
    #[serde(default)]
    pub disk_uuids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub os: Os,
    #[serde(default = "failed_over")]
    pub stage: Stage,
    /// The configuration server's database still has the machine.
    #[serde(default = "yes")]
    pub in_configuration_server: bool,
    /// Simulated seconds after `failed_over_at` until the agent registers.
    #[serde(default)]
    pub agent_registers_in_s: u64,
    #[serde(default = "present")]
    pub azure_replica: AzureReplica,
    #[serde(default = "vmware")]
    pub source: SourceKind,
    #[serde(default)]
    pub migrated: bool,
    /// The VM on the VMware site.
    #[serde(default)]
    pub vmware_vm: VmwareVm,
    #[serde(default)]
    pub disk_uuids: Vec<String>,
    #[serde(default)]
    pub disks_gib: Vec<u64>,
    /// Memory the VM needs to start on its ESXi host.
    #[serde(default = "default_memory")]
    pub memory_gib: u64,
    /// Filled in by reprotect.
    #[serde(default)]
    pub settings: Settings,
    /// This machine's own durations, where they differ from `timing`: a reprotect copies up to
    /// every disk, so a large machine takes longer than a small one.
    #[serde(default, skip_serializing_if = "MachineTiming::is_empty")]
    pub timing: MachineTiming,
}

/// Simulated seconds one machine's operations take; an absent value falls back to the
/// world's `timing`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MachineTiming {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprotect_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprotect_home_s: Option<u64>,
}

impl MachineTiming {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub fn seconds(&self, kind: OperationKind) -> Option<u64> {
        match kind {
            OperationKind::Reprotect => self.reprotect_s,
            OperationKind::Failback => self.failback_s,
            OperationKind::Commit => self.commit_s,
            OperationKind::ReprotectHome => self.reprotect_home_s,
            // A short job without data transfer, like a commit (lifeboat's choice: the world
            // has no key of its own for it).
            OperationKind::SwitchProcessServer => self.commit_s,
        }
    }
}

impl Machine {
    /// Disks the machine puts on a master target; a machine always has its OS disk.
    pub fn disk_count(&self) -> u32 {
        u32::try_from(self.disks_gib.len().max(1)).unwrap_or(u32::MAX)
    }

    pub fn disk_total_gib(&self) -> u64 {
        self.disks_gib.iter().copied().fold(0, u64::saturating_add)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmwareVm {
    #[serde(default)]
    pub exists: bool,
    #[serde(default)]
    pub powered_on: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub esxi_host: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<Spanned<String>>,
}

/// The settings the last reprotect applied.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_drive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback_policy: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplicationGroup {
    pub machines: Vec<Spanned<String>>,
}

/// Simulated durations, and how they map to real time.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timing {
    /// Real seconds per simulated second: 0 makes every operation instant, 0.01 runs a
    /// 1,200 s reprotect in 12 s.
    #[serde(default)]
    pub scale: f64,
    #[serde(default = "reprotect_s")]
    pub reprotect_s: u64,
    #[serde(default = "failback_s")]
    pub failback_s: u64,
    #[serde(default = "commit_s")]
    pub commit_s: u64,
    #[serde(default = "reprotect_s")]
    pub reprotect_home_s: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            scale: 0.0,
            reprotect_s: reprotect_s(),
            failback_s: failback_s(),
            commit_s: commit_s(),
            reprotect_home_s: reprotect_s(),
        }
    }
}

impl World {
    /// Delays that cannot show at `timing.scale: 0` (the default), where every simulated
    /// duration is instant: an agent set to register 900 s after failover is registered at
    /// once, so the rehearsal silently skips the wait it was written to show.
    pub fn timing_warnings(&self) -> Vec<String> {
        if self.timing.scale.is_finite() && self.timing.scale > 0.0 {
            return Vec::new();
        }
        let delayed: Vec<&str> = self
            .machines
            .iter()
            .filter(|(_, machine)| machine.agent_registers_in_s > 0)
            .map(|(name, _)| name.as_str())
            .collect();
        if delayed.is_empty() {
            return Vec::new();
        }
        let shown: Vec<String> = delayed.iter().take(5).map(|n| format!("`{n}`")).collect();
        let more = if delayed.len() > 5 {
            format!(" and {} more", delayed.len() - 5)
        } else {
            String::new()
        };
        vec![format!(
            "`agent_registers_in_s` of {}{more} has no effect at `timing.scale: 0`, where every simulated duration is instant; set `timing.scale` (e.g. `0.01`) to rehearse the wait, or add a fault with code `agent-not-registered`",
            shown.join(", ")
        )]
    }
}

impl Timing {
    /// Simulated seconds an operation takes.
    pub fn seconds(&self, kind: OperationKind) -> u64 {
        match kind {
            OperationKind::Reprotect => self.reprotect_s,
            OperationKind::Failback => self.failback_s,
            OperationKind::Commit => self.commit_s,
            OperationKind::ReprotectHome => self.reprotect_home_s,
            OperationKind::SwitchProcessServer => self.commit_s,
        }
    }

    /// Real time for `simulated` seconds. A negative or non-finite scale counts as 0 (the
    /// loader rejects neither, so the simulator must not panic on them).
    pub fn real(&self, simulated: u64) -> jiff::SignedDuration {
        let scale = if self.scale.is_finite() && self.scale > 0.0 {
            self.scale
        } else {
            0.0
        };
        // Capped at about 30 years so that converting cannot overflow.
        let seconds = (simulated as f64 * scale).min(1e9);
        jiff::SignedDuration::from_secs_f64(seconds)
    }
}

/// `at` plus a duration, saturating at the end of time instead of failing.
pub fn after(at: Timestamp, duration: jiff::SignedDuration) -> Timestamp {
    Timestamp(
        at.0.saturating_add(duration)
            .unwrap_or(jiff::Timestamp::MAX),
    )
}

/// An injected failure: the next `times` attempts of `operation` on `machine` fail with `code`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub machine: Spanned<String>,
    pub operation: OperationKind,
    /// An ASR code (`78093`, `8061`, …), an HTTP status (`429`, `503`), or one of the
    /// simulator's rule codes (`agent-not-registered`, `conflict`, …).
    pub code: FaultCode,
    #[serde(default = "one")]
    pub times: u32,
}

/// A fault code as written: `78093` (a number) and `"78093"` mean the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultCode(pub String);

impl Serialize for FaultCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.parse::<u64>() {
            Ok(number) => serializer.serialize_u64(number),
            Err(_) => serializer.serialize_str(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for FaultCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CodeVisitor;
        impl Visitor<'_> for CodeVisitor {
            type Value = FaultCode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error code (a number or a string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FaultCode, E> {
                Ok(FaultCode(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FaultCode, E> {
                Ok(FaultCode(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FaultCode, E> {
                Ok(FaultCode(v.to_string()))
            }
        }
        deserializer.deserialize_any(CodeVisitor)
    }
}

impl JsonSchema for FaultCode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FaultCode".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["integer", "string"]})
    }
}

/// An operation the simulated service is running.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunningOperation {
    pub id: OperationId,
    pub machine: String,
    pub kind: OperationKind,
    pub started_at: Timestamp,
    /// When it finishes, in real time (`timing` × `timing.scale` after the start).
    pub ends_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<ReprotectSettings>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// The operation was accepted and started.
    Started,
    /// It finished successfully.
    Finished,
    /// It failed permanently; the id will not run again.
    Failed,
    /// It was refused with a transient error and may be sent again with the same id.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HistoryEntry {
    pub at: Timestamp,
    pub event: Event,
    pub operation: OperationId,
    pub machine: String,
    pub kind: OperationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn yes() -> bool {
    true
}
fn one() -> u32 {
    1
}
fn read_write() -> AccountAccess {
    AccountAccess::ReadWrite
}
fn licensed() -> HypervisorEdition {
    HypervisorEdition::Licensed
}
fn failed_over() -> Stage {
    Stage::FailedOver
}
fn present() -> AzureReplica {
    AzureReplica::Present
}
fn vmware() -> SourceKind {
    SourceKind::Vmware
}
fn default_memory() -> u64 {
    8
}
fn reprotect_s() -> u64 {
    1200
}
fn failback_s() -> u64 {
    600
}
fn commit_s() -> u64 {
    120
}

/// The JSON Schema of the world file.
pub fn schema() -> schemars::Schema {
    schemars::schema_for!(World)
}

/// Parses a world file: a syntax or type error is one diagnostic, then every dangling
/// reference is reported at once. Codes are `world::*`; labels point into the world file.
pub fn parse(file: &SourceFile) -> Result<World, Vec<Diagnostic>> {
    if let Some(world) = split::parse(file) {
        return Ok(world);
    }
    parse_whole(file)
}

/// [`parse`] in one piece, on one core.
pub(crate) fn parse_whole(file: &SourceFile) -> Result<World, Vec<Diagnostic>> {
    let world: World =
        load::parse_document(file, "world", load::Duplicates::Reject).map_err(|diagnostic| {
            let mut diagnostic = *diagnostic;
            diagnostic.code = match diagnostic.code {
                codes::PLAN_SYNTAX => codes::WORLD_SYNTAX,
                _ => codes::WORLD_SCHEMA,
            };
            if let Some(section) = missing_section(&diagnostic.message) {
                diagnostic.help = Some(format!(
                    "a world lists every section, even empty ones (`{section}: []` or `{{}}`); a missing section usually means the file was cut short, so restore it from a copy rather than add it"
                ));
            } else if diagnostic.message.ends_with("is empty") {
                diagnostic.help = Some(
                    "create a world with `lifeboat sim init`; see `lifeboat schema world`"
                        .to_string(),
                );
            }
            vec![diagnostic]
        })?;
    let problems = references(&world);
    if problems.is_empty() {
        Ok(world)
    } else {
        Err(problems)
    }
}

/// The top-level sections of a world, in the order they are written.
pub const SECTIONS: &[&str] = &[
    "configuration_server",
    "process_servers",
    "vcenters",
    "esxi_hosts",
    "datastores",
    "master_targets",
    "machines",
    "replication_groups",
    "timing",
    "faults",
    "running",
    "history",
];

/// The section a "missing required key" message names, when it is a top-level one.
fn missing_section(message: &str) -> Option<&'static str> {
    let key = message
        .strip_prefix("missing required key `")?
        .strip_suffix('`')?;
    SECTIONS.iter().copied().find(|section| *section == key)
}

/// The names of one section for suggestions, indexed on first use.
fn names<'c, 'w, V>(
    cell: &'c std::cell::OnceCell<lifeboat_engine::diagnostic::Suggestions<'w>>,
    section: &'w BTreeMap<String, V>,
) -> &'c lifeboat_engine::diagnostic::Suggestions<'w> {
    cell.get_or_init(|| {
        lifeboat_engine::diagnostic::Suggestions::new(section.keys().map(String::as_str))
    })
}

/// Every reference in the world must name an entry that exists.
pub(crate) fn references(world: &World) -> Vec<Diagnostic> {
    use lifeboat_engine::diagnostic::Suggestions;
    use std::cell::OnceCell;
    let mut out = Vec::new();
    // One index per set, built on the first dangling reference into it: a world with every
    // reference dangling costs one index, not one scan of the set per reference.
    let (vcenters, datastores, hosts, machines) = (
        OnceCell::new(),
        OnceCell::new(),
        OnceCell::new(),
        OnceCell::new(),
    );
    let mut dangling = |reference: &Spanned<String>, what: &str, known: &Suggestions<'_>| {
        let help = match known.best(&reference.value) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!(
                "add `{}` under `{what}s`, or name one that exists",
                reference.value
            ),
        };
        out.push(
            Diagnostic::error(
                codes::WORLD_UNKNOWN_REFERENCE,
                format!("unknown {what} `{}`", reference.value),
            )
            .with_label(
                reference.span,
                format!("no {what} of this name in the world"),
            )
            .with_help(help),
        );
    };
    for host in world.esxi_hosts.values() {
        if !world.vcenters.contains_key(&host.vcenter.value) {
            dangling(&host.vcenter, "vcenter", names(&vcenters, &world.vcenters));
        }
        for (datastore, _) in host.datastores.iter() {
            if !world.datastores.contains_key(&datastore.value) {
                dangling(
                    datastore,
                    "datastore",
                    names(&datastores, &world.datastores),
                );
            }
        }
    }
    for target in world.master_targets.values() {
        if !world.esxi_hosts.contains_key(&target.esxi_host.value) {
            dangling(
                &target.esxi_host,
                "esxi_host",
                names(&hosts, &world.esxi_hosts),
            );
        }
    }
    for machine in world.machines.values() {
        if let Some(host) = &machine.vmware_vm.esxi_host
            && !world.esxi_hosts.contains_key(&host.value)
        {
            dangling(host, "esxi_host", names(&hosts, &world.esxi_hosts));
        }
        if let Some(datastore) = &machine.vmware_vm.datastore
            && !world.datastores.contains_key(&datastore.value)
        {
            dangling(
                datastore,
                "datastore",
                names(&datastores, &world.datastores),
            );
        }
    }
    for group in world.replication_groups.values() {
        for member in &group.machines {
            if !world.machines.contains_key(&member.value) {
                dangling(member, "machine", names(&machines, &world.machines));
            }
        }
    }
    for fault in &world.faults {
        if !world.machines.contains_key(&fault.machine.value) {
            dangling(&fault.machine, "machine", names(&machines, &world.machines));
        }
    }
    lifeboat_engine::diagnostic::sort(&mut out);
    out
}

/// The world as YAML, with a header saying what the file is.
pub fn to_yaml(world: &World) -> Result<String, crate::WorldError> {
    let body =
        serde_saphyr::to_string(world).map_err(|e| crate::WorldError::Serialise(e.to_string()))?;
    Ok(format!(
        "# The simulated estate of lifeboat's `sim` provider (see docs/world.md).\n# lifeboat rewrites this file as operations run; comments are not kept.\n{body}"
    ))
}
