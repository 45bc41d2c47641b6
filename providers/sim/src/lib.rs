//! The `sim` provider: a simulated Azure Site Recovery estate (both sites) in a world file.
//!
//! The simulator is only useful if it is faithful, so it trusts nothing the engine decided:
//! every rule of DESIGN.md §1.1 and §1.2 is checked again here, at run time, and fails the
//! way ASR fails, with ASR's codes where ASR documents one ([`rules`]). Operations take time
//! on a real clock scaled by `timing.scale`, and live in the world file while they run, so a
//! lifeboat process that dies mid-operation finds them running or finished when it comes
//! back: completion is applied by whichever process next looks after the end time.
//!
//! Architecture invariant: this crate never sees a plan file. It answers the engine's typed
//! requests; `lifeboat sim init` hands it an [`init::InitSpec`] the CLI built from the plan.

mod index;
pub mod init;
pub mod rules;
pub mod store;
pub mod world;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_engine::model::Timestamp;
use lifeboat_engine::provider::facts::{
    AppliedSettings, ConfigurationServerFacts, DatastoreFacts, EsxiHostFacts, MachineFacts,
    MasterTargetFacts, ProcessServerFacts, RunningFact, VcenterFacts, VmwareVmFacts,
};
use lifeboat_engine::provider::{
    EstimateRequest, Facts, OperationId, OperationOutcome, OperationRequest, OperationStatus,
    Provider, ProviderError, ProviderInfo, RefreshRequest,
};

pub use store::WorldError;
pub use world::World;

use world::{Event, HistoryEntry, RunningOperation};

/// The longest a waiting `run` sleeps before it looks at the world again, so that it notices
/// when another process finished (or a person edited) the operation.
const MAX_POLL: Duration = Duration::from_millis(500);

/// The `sim` provider over one world file.
#[derive(Debug, Clone)]
pub struct SimProvider {
    path: PathBuf,
    /// Serialises this process's transactions on the world, groups them, and holds the
    /// parsed-world cache they share (see [`store::Gate`]).
    gate: Arc<store::Gate>,
    /// What in the world cannot show as written (see [`World::timing_warnings`]).
    warnings: Vec<String>,
}

impl SimProvider {
    /// Opens a world, checking that it exists and is valid, so that a bad world is reported
    /// with its diagnostics before any operation runs.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, WorldError> {
        let path = path.into();
        let gate = store::gate(&path);
        // Parse once now so a bad world is reported before anything runs, and fold what a
        // previous process left in the journal into the world file; the parsed world stays
        // in the cache for the first transaction. When another task of this process is in a
        // transaction on the world, check it without the cache rather than wait.
        let warnings = match gate.cache.try_lock() {
            Ok(mut cache) => {
                // Loaded before anything is locked or folded, so a file that is no world is
                // refused as such (and nothing is created beside it).
                store::load(&path, &mut cache)?;
                store::compact(&path, &mut cache)?;
                cache
                    .world()
                    .map(World::timing_warnings)
                    .unwrap_or_default()
            }
            Err(_) => store::read(&path)?.timing_warnings(),
        };
        Ok(Self {
            path,
            gate,
            warnings,
        })
    }

    /// Settings of the world that have no effect as written, for the CLI to warn about.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Folds the journal into the world file, so that the file alone is the world again.
    /// `apply` calls it (through [`Provider::close`]) when it is done.
    pub async fn compact(&self) -> Result<(), WorldError> {
        let mut cache = self.gate.cache.clone().lock_owned().await;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || store::compact(&path, &mut cache))
            .await
            .map_err(|e| {
                WorldError::Serialise(format!("folding the journal was interrupted: {e}"))
            })?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the world as it is now (completions that are due applied).
    pub async fn world(&self) -> Result<World, ProviderError> {
        self.read(|world, _| world.clone()).await
    }

    /// A look at the world that changes nothing, without copying it. When something has to
    /// be settled first (an operation's end time has passed), it becomes a transaction.
    async fn read<R: Send + 'static>(
        &self,
        look: impl FnOnce(&World, Timestamp) -> R + Send + 'static,
    ) -> Result<R, ProviderError> {
        let mut cache = self.gate.cache.clone().lock_owned().await;
        let path = self.path.clone();
        // Under the file lock: the world file and its journal are read as one.
        let looked = tokio::task::spawn_blocking(move || {
            let _lock = store::lock(&path)?;
            store::load(&path, &mut cache).map(|world| {
                let world = &*world;
                let now = Timestamp(jiff::Timestamp::now());
                if needs_settling(world, now) {
                    Err(look)
                } else {
                    Ok(look(world, now))
                }
            })
        })
        .await
        .map_err(|e| {
            ProviderError::permanent(None, format!("reading the world was interrupted: {e}"))
        })?
        .map_err(world_error)?;
        match looked {
            Ok(result) => Ok(result),
            Err(look) => self.transact(move |world, now| look(world, now)).await,
        }
    }

    /// One transaction on the world: settle what has finished, then `change`. It is queued,
    /// and committed together with whatever else this process queued meanwhile (group commit,
    /// see [`store`]); the result comes back once the world holding it is written.
    async fn transact<R: Send + 'static>(
        &self,
        change: impl FnOnce(&mut World, Timestamp) -> R + Send + 'static,
    ) -> Result<R, ProviderError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.gate.enqueue(Box::new(QueuedTransaction {
            change: Some(change),
            result: None,
            reply,
        }));
        let mut cache = self.gate.cache.clone().lock_owned().await;
        // Another task may have committed this transaction in its group while this one waited
        // for the mutex; then there is nothing to do but read the answer.
        let group = self.gate.take();
        if !group.is_empty() {
            let path = self.path.clone();
            tokio::task::spawn_blocking(move || {
                let now = Timestamp(jiff::Timestamp::now());
                store::commit_group(&path, &mut cache, now, settle, group);
            })
            .await
            .map_err(|e| {
                ProviderError::permanent(
                    None,
                    format!("the world transaction was interrupted: {e}"),
                )
            })?;
        } else {
            drop(cache);
        }
        match answer.await {
            Ok(result) => result.map_err(world_error),
            Err(_) => Err(ProviderError::permanent(
                None,
                "the world transaction was interrupted before it was committed",
            )),
        }
    }
}

/// A queued [`SimProvider::transact`]: the change, then its result until the write is known.
struct QueuedTransaction<F, R> {
    change: Option<F>,
    result: Option<R>,
    reply: tokio::sync::oneshot::Sender<Result<R, WorldError>>,
}

impl<F, R> store::Transaction for QueuedTransaction<F, R>
where
    F: FnOnce(&mut World, Timestamp) -> R + Send,
    R: Send,
{
    fn apply(&mut self, world: &mut World, now: Timestamp) {
        if let Some(change) = self.change.take() {
            self.result = Some(change(world, now));
        }
    }

    fn finish(self: Box<Self>, written: Result<(), WorldError>) {
        let answer = match (written, self.result) {
            (Ok(()), Some(result)) => Ok(result),
            (Err(error), _) => Err(error),
            (Ok(()), None) => Err(WorldError::Serialise(
                "a transaction was committed without running".to_string(),
            )),
        };
        // The caller may have gone away (its task was cancelled); nothing is waiting then.
        let _ = self.reply.send(answer);
    }
}

fn world_error(error: WorldError) -> ProviderError {
    ProviderError::permanent(Some("world".to_string()), error.to_string())
}

/// Whether [`settle`] would change the world.
fn needs_settling(world: &World, now: Timestamp) -> bool {
    world.failed_over_at.is_none() || world.running.iter().any(|op| op.ends_at <= now)
}

/// Applies every running operation whose end time has passed, in the order they end.
fn settle(world: &mut World, now: Timestamp) {
    if world.failed_over_at.is_none() {
        world.failed_over_at = Some(now);
    }
    let (mut done, running): (Vec<_>, Vec<_>) =
        world.running.drain(..).partition(|op| op.ends_at <= now);
    world.running = running;
    done.sort_by_key(|op| op.ends_at);
    for op in done {
        let result = rules::complete(world, &op);
        let (event, code, message) = match result {
            Ok(()) => (Event::Finished, None, None),
            Err(error) => (
                Event::Failed,
                error.code.clone(),
                Some(error.message.clone()),
            ),
        };
        world.history.push(HistoryEntry {
            at: op.ends_at,
            event,
            operation: op.id,
            machine: op.machine,
            kind: op.kind,
            code,
            message,
        });
    }
}

/// What `run` does next after one look at the world.
enum Step {
    Done(Result<OperationOutcome, ProviderError>),
    Wait(Timestamp),
}

/// The status of an operation id in a settled world.
fn status_of(world: &World, id: &OperationId) -> OperationStatus {
    if world.running.iter().any(|op| &op.id == id) {
        return OperationStatus::Running;
    }
    let last = world
        .index
        .last_end(&world.history, id)
        .map(|i| &world.history[i]);
    match last {
        Some(entry) if entry.event == Event::Finished => OperationStatus::Succeeded,
        Some(entry) => OperationStatus::Failed(ProviderError::permanent(
            entry.code.clone(),
            entry
                .message
                .clone()
                .unwrap_or_else(|| format!("operation `{id}` failed")),
        )),
        None => OperationStatus::Unknown,
    }
}

fn step(world: &mut World, now: Timestamp, request: &OperationRequest) -> Step {
    let outcome = || OperationOutcome {
        id: request.id.clone(),
        stage: request.kind.to_stage(),
    };
    match status_of(world, &request.id) {
        OperationStatus::Running => {
            let ends = world
                .running
                .iter()
                .find(|op| op.id == request.id)
                .map_or(now, |op| op.ends_at);
            return Step::Wait(ends);
        }
        OperationStatus::Succeeded => return Step::Done(Ok(outcome())),
        OperationStatus::Failed(error) => return Step::Done(Err(error)),
        OperationStatus::Unknown => {}
    }
    let entry = |event, code: Option<String>, message: Option<String>| HistoryEntry {
        at: now,
        event,
        operation: request.id.clone(),
        machine: request.machine.clone(),
        kind: request.kind,
        code,
        message,
    };
    if let Err(error) = rules::start(world, now, request) {
        let event = if error.is_transient() {
            Event::Rejected
        } else {
            Event::Failed
        };
        world.history.push(entry(
            event,
            error.code.clone(),
            Some(error.message.clone()),
        ));
        return Step::Done(Err(error));
    }
    let seconds = world
        .machines
        .get(&request.machine)
        .and_then(|machine| machine.timing.seconds(request.kind))
        .unwrap_or_else(|| world.timing.seconds(request.kind));
    let ends_at = world::after(now, world.timing.real(seconds));
    world.history.push(entry(Event::Started, None, None));
    world.running.push(RunningOperation {
        id: request.id.clone(),
        machine: request.machine.clone(),
        kind: request.kind,
        started_at: now,
        ends_at,
        settings: request.reprotect.clone(),
    });
    if ends_at <= now {
        settle(world, now);
        return Step::Done(match status_of(world, &request.id) {
            OperationStatus::Failed(error) => Err(error),
            _ => Ok(outcome()),
        });
    }
    Step::Wait(ends_at)
}

#[async_trait::async_trait]
impl Provider for SimProvider {
    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "sim",
            identity: self.path.display().to_string(),
        }
    }

    async fn refresh(&self, request: &RefreshRequest) -> Result<Facts, ProviderError> {
        let request = request.clone();
        self.read(move |world, now| facts(world, now, &request))
            .await
    }

    async fn run(&self, request: &OperationRequest) -> Result<OperationOutcome, ProviderError> {
        loop {
            let owned = request.clone();
            match self
                .transact(move |world, now| step(world, now, &owned))
                .await?
            {
                Step::Done(result) => return result,
                Step::Wait(until) => {
                    let now = jiff::Timestamp::now();
                    let left = until
                        .0
                        .duration_since(now)
                        .try_into()
                        .unwrap_or(Duration::ZERO);
                    tokio::time::sleep(left.clamp(Duration::from_millis(5), MAX_POLL)).await;
                }
            }
        }
    }

    async fn status(&self, id: &OperationId) -> Result<OperationStatus, ProviderError> {
        let id = id.clone();
        self.read(move |world, _| status_of(world, &id)).await
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.compact().await.map_err(world_error)
    }

    /// The simulator knows exactly how long its operations take: the machine's own timing or
    /// the world's, scaled into real time by `timing.scale` (so every estimate is 0 at the
    /// default scale 0, where operations are instant). One read of the world for the plan.
    async fn estimate(
        &self,
        request: &EstimateRequest,
    ) -> Result<Vec<Option<Duration>>, ProviderError> {
        let operations = request.operations.clone();
        self.read(move |world, _| {
            operations
                .iter()
                .map(|op| {
                    let seconds = world
                        .machines
                        .get(&op.machine)
                        .and_then(|machine| machine.timing.seconds(op.kind))
                        .unwrap_or_else(|| world.timing.seconds(op.kind));
                    Duration::try_from(world.timing.real(seconds)).ok()
                })
                .collect()
        })
        .await
    }
}

/// The facts of a world, for the names the engine asked about. The simulator sees
/// everything, so no fact is unknown.
fn facts(world: &World, now: Timestamp, request: &RefreshRequest) -> Facts {
    let mut facts = Facts::default();
    if world.configuration_server.name == request.configuration_server {
        facts.configuration_server = Some(ConfigurationServerFacts {
            connected: Some(world.configuration_server.connected),
        });
        facts.run_as_accounts = Some(world.configuration_server.run_as_accounts.clone());
    }
    facts.home_process_server = request
        .home_process_server
        .as_ref()
        .and_then(|name| world.process_servers.get(name))
        .map(|ps| ProcessServerFacts {
            healthy: Some(ps.healthy),
        });
    facts.process_server = world
        .process_servers
        .get(&request.process_server)
        .map(|ps| ProcessServerFacts {
            healthy: Some(ps.healthy),
        });
    facts.vcenter = world.vcenters.get(&request.vcenter).map(|vc| VcenterFacts {
        connected: Some(vc.connected),
        discovered: Some(vc.discovered),
        account: Some(vc.account),
        edition: Some(vc.edition),
    });
    // Hosts the plan names, and the hosts the machines' VMs live on (failback starts them there).
    let vm_hosts = request
        .machines
        .iter()
        .filter_map(|m| world.machines.get(m))
        .filter_map(|m| m.vmware_vm.esxi_host.as_ref().map(|h| h.value.clone()));
    for name in request.esxi_hosts.iter().cloned().chain(vm_hosts) {
        if facts.esxi_hosts.contains_key(&name) {
            continue;
        }
        if let Some(host) = world.esxi_hosts.get(&name) {
            facts.esxi_hosts.insert(
                name,
                EsxiHostFacts {
                    vcenter: Some(host.vcenter.value.clone()),
                    memory_free_gib: Some(host.memory_free_gib),
                    datastores: Some(
                        host.datastores
                            .iter()
                            .map(|(k, v)| (k.value.clone(), v.value))
                            .collect(),
                    ),
                    vms: Some(host.vms.iter().cloned().collect()),
                },
            );
        }
    }
    for name in &request.datastores {
        if let Some(ds) = world.datastores.get(name) {
            facts.datastores.insert(
                name.clone(),
                DatastoreFacts {
                    kind: Some(ds.kind),
                    free_gib: Some(ds.free_gib),
                },
            );
        }
    }
    for name in &request.master_targets {
        if let Some(mt) = world.master_targets.get(name) {
            facts.master_targets.insert(
                name.clone(),
                MasterTargetFacts {
                    os: Some(mt.os),
                    esxi_host: Some(mt.esxi_host.value.clone()),
                    healthy: Some(mt.healthy),
                    snapshots: Some(mt.snapshots),
                    disks_attached: Some(mt.disks_attached),
                    retention_volumes: Some(mt.retention_volumes.clone()),
                    disk_uuids: Some(mt.disk_uuids.clone()),
                },
            );
        }
    }
    for name in &request.machines {
        let Some(machine) = world.machines.get(name) else {
            continue;
        };
        let registers_at = rules::agent_registers_at(world, machine);
        let registered = registers_at.is_none_or(|at| at <= now);
        let settings = &machine.settings;
        let applied = match (
            &settings.master_target,
            &settings.process_server,
            &settings.datastore,
            &settings.retention_drive,
            settings.recovery,
        ) {
            (Some(mt), Some(ps), Some(ds), Some(rd), Some(recovery)) => Some(AppliedSettings {
                master_target: Some(mt.clone()),
                process_server: Some(ps.clone()),
                datastore: Some(ds.clone()),
                retention_drive: Some(rd.clone()),
                recovery: Some(recovery),
            }),
            _ => None,
        };
        let running = world
            .running
            .iter()
            .find(|op| &op.machine == name)
            .map(|op| RunningFact {
                operation: op.id.clone(),
                kind: op.kind,
            });
        let vm = &machine.vmware_vm;
        facts.machines.insert(
            name.clone(),
            MachineFacts {
                stage: machine.stage,
                os: Some(machine.os),
                in_configuration_server: Some(machine.in_configuration_server),
                agent_registered: Some(registered),
                agent_registers_in: registers_at
                    .filter(|_| !registered)
                    .and_then(|at| at.0.duration_since(now.0).try_into().ok()),
                azure_replica: Some(machine.azure_replica),
                source: Some(machine.source),
                migrated: Some(machine.migrated),
                vmware_vm: Some(VmwareVmFacts {
                    exists: vm.exists,
                    powered_on: Some(vm.powered_on),
                    esxi_host: vm.esxi_host.as_ref().map(|h| h.value.clone()),
                    datastore: vm.datastore.as_ref().map(|d| d.value.clone()),
                }),
                disk_uuids: Some(machine.disk_uuids.clone()),
                disks_gib: Some(machine.disks_gib.clone()),
                memory_gib: Some(machine.memory_gib),
                settings: applied,
                running,
            },
        );
    }
    facts
}
