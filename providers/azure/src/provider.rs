//! [`AzureProvider`]: the engine's [`Provider`] over ASR.
//!
//! - `refresh` lists the vault's fabrics, vCenters and protected items (vault-level lists,
//!   every page) and maps them with [`crate::mapping::facts`].
//! - `run` finds the item by `friendlyName` and, when a job runs on it
//!   (`currentScenario.jobId`), awaits that job first; then, if the item is at the
//!   operation's target stage, the operation is done. Otherwise, if a job whose `activityId` carries the operation id
//!   exists (ASR records `x-ms-client-request-id` there), that job is awaited instead of
//!   starting another; else the action is POSTed with `x-ms-client-request-id` =
//!   [`client_request_id`] of the operation id and its job followed ([`crate::lro`]). A job
//!   that failed with a transient code does not count: the action is sent again, which is
//!   what retrying means.
//! - `status` reads the job by `activityId`; no job is `Unknown`.
//!
//! # Client request ids
//!
//! ARM's RPC says `x-ms-client-request-id` is "a GUID with no decoration", and ASR copies it
//! into the job's `activityId` (`"<GUID> ActivityId: <correlation id>"` in Microsoft's
//! recorded sessions). lifeboat's operation ids are not GUIDs, so the header carries a GUID
//! derived from the operation id (SHA-256, the first 16 bytes as a version-8 UUID): the same
//! operation id always gives the same GUID, so after a crash the job is found again by the
//! operation id alone, with nothing else to remember.
//!
//! # `reprotect-home`
//!
//! `InMageAzureV2ReprotectInput` as the recorded session sends it: the plan's `site.home`
//! process server (its id also as `masterTargetId`, as recorded), run-as account and
//! VMware-to-Azure policy, all resolved from the configuration server's fabric.
//!
//! # Concurrency
//!
//! [`MAX_CONCURRENCY`] operations at once. Each running operation polls its job every
//! `Retry-After` seconds and starts with a few list reads, so eight keep well inside ARM's
//! per-principal budgets (about 12,000 reads and 1,200 writes an hour per subscription)
//! even during a long failback, and inside what one configuration server and process server
//! can carry: reprotect and failback jobs all go through them.

use std::sync::Arc;

use jiff::Timestamp;
use lifeboat_engine::provider::{
    EstimateRequest, OperationId, OperationKind, OperationOutcome, OperationRequest,
    OperationStatus, Provider, ProviderError, ProviderInfo, RefreshRequest,
};

use crate::arm::{
    Fabric, Job, JobState, Policy, ReplicationProtectedItem, ReplicationProviderSpecificSettings,
    VCenter,
};
use crate::client::{ArmClient, ArmRetryPolicy};
use crate::config::{AzureConfig, ConfigError, http_client};
use crate::credential::{Credential, TokenSource};
use crate::lro::{self, PollPolicy, Started};
use crate::mapping::{self, Inventory};
use crate::requests::{self, ProtectedItemRef, Resolver};

/// The most operations the provider runs at once (see the module documentation).
pub const MAX_CONCURRENCY: usize = 8;

/// ASR over ARM.
#[derive(Debug)]
pub struct AzureProvider {
    config: AzureConfig,
    client: ArmClient,
    poll: PollPolicy,
}

impl AzureProvider {
    /// The provider with the real credential chain (or the pinned source) and one HTTP
    /// client for ARM and tokens.
    pub fn new(config: AzureConfig) -> Result<Self, ConfigError> {
        let http = http_client()?;
        let credential = match config.credential {
            Some(kind) => Credential::pinned(kind, http.clone()),
            None => Credential::chain(http.clone()),
        };
        Ok(Self::with_tokens(
            config,
            http,
            Arc::new(credential),
            ArmRetryPolicy::default(),
            PollPolicy::default(),
        ))
    }

    /// The provider with another token source and other timings (tests).
    pub fn with_tokens(
        config: AzureConfig,
        http: reqwest::Client,
        tokens: Arc<dyn TokenSource>,
        retry: ArmRetryPolicy,
        poll: PollPolicy,
    ) -> Self {
        let client = ArmClient::new(http, config.endpoint.clone(), config.scope(), tokens, retry);
        Self {
            config,
            client,
            poll,
        }
    }

    pub fn client(&self) -> &ArmClient {
        &self.client
    }

    fn api(&self) -> &str {
        &self.config.api_version
    }

    async fn items(&self) -> Result<Vec<ReplicationProtectedItem>, ProviderError> {
        self.client
            .list(&requests::protected_items_path(
                &self.config.vault,
                self.api(),
            ))
            .await
    }

    async fn fabrics(&self) -> Result<Vec<Fabric>, ProviderError> {
        self.client
            .list(&requests::fabrics_path(&self.config.vault, self.api()))
            .await
    }

    async fn policies(&self) -> Result<Vec<Policy>, ProviderError> {
        self.client
            .list(&requests::policies_path(&self.config.vault, self.api()))
            .await
    }

    async fn jobs(&self) -> Result<Vec<Job>, ProviderError> {
        self.client.list(&jobs_path(&self.config)).await
    }

    /// The jobs started with this operation id, the most telling first: running, then
    /// succeeded, then failed, each group newest first.
    async fn jobs_of(&self, id: &OperationId) -> Result<Vec<Job>, ProviderError> {
        // The GUID lifeboat sends; the bare operation id is what lifeboat sent before it
        // sent GUIDs, so a job started by an older run is still found.
        let guid = client_request_id(id);
        let mut jobs: Vec<Job> = self
            .jobs()
            .await?
            .into_iter()
            .filter(|job| {
                job.properties
                    .activity_id
                    .as_deref()
                    .is_some_and(|activity| carries(activity, &guid) || carries(activity, &id.0))
            })
            .collect();
        // Within a group the newest comes first: an older transient failure must not hide a
        // newer permanent one (the retry that followed it). A job without a readable
        // `startTime` comes last in its group.
        jobs.sort_by_key(|job| {
            let group = match job.properties.job_state() {
                JobState::Succeeded => 1,
                JobState::Failed | JobState::Cancelled | JobState::Suspended => 2,
                _ => 0,
            };
            let started = job
                .properties
                .start_time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok());
            (group, std::cmp::Reverse(started))
        });
        Ok(jobs)
    }

    async fn item(&self, machine: &str) -> Result<ReplicationProtectedItem, ProviderError> {
        let mut found = self
            .items()
            .await?
            .into_iter()
            .filter(|item| item.properties.friendly_name.as_deref() == Some(machine));
        let item = found.next().ok_or_else(|| {
            ProviderError::permanent(
                Some("ItemNotFound".to_string()),
                format!(
                    "machine `{machine}` is not a protected item of the vault `{}`",
                    self.config.vault.name
                ),
            )
        })?;
        if found.next().is_some() {
            return Err(ProviderError::permanent(
                Some("AmbiguousItem".to_string()),
                format!(
                    "several protected items of the vault `{}` are named `{machine}`",
                    self.config.vault.name
                ),
            ));
        }
        Ok(item)
    }

    async fn wait_for_job(&self, job: &Job) -> Result<(), ProviderError> {
        let name = job.name.clone().ok_or_else(|| {
            ProviderError::permanent(
                Some("InvalidResponse".to_string()),
                "ASR listed a job without a name",
            )
        })?;
        self.wait_for_job_named(name).await
    }

    /// The item, once no job that this call has not already awaited runs on it. While a job
    /// runs, ASR empties `allowedOperations` and the stage rule can read the target stage too
    /// early (an `InMage` item at VMware with neither `Commit` nor `ReverseReplicate` reads
    /// `failed-back` during the failback itself), so the stage is judged only afterwards.
    /// It also keeps a second POST from racing a job the first one started but the job list
    /// does not show yet.
    async fn settled_item(&self, machine: &str) -> Result<ReplicationProtectedItem, ProviderError> {
        let mut awaited: Vec<String> = Vec::new();
        loop {
            let item = self.item(machine).await?;
            let Some(job) = running_job(&item).filter(|job| !awaited.contains(job)) else {
                return Ok(item);
            };
            tracing::debug!(%machine, %job, "a job runs on the item; awaiting it first");
            match self.wait_for_job_named(job.clone()).await {
                Ok(()) => {}
                Err(error) if error.is_transient() => return Err(error),
                // It ended badly, or cannot be read: whether it was this operation's job
                // is decided below, by its `activityId`.
                Err(error) => tracing::debug!(
                    %machine,
                    %job,
                    code = error.code().unwrap_or(""),
                    "the job on the item did not succeed"
                ),
            }
            awaited.push(job);
        }
    }

    async fn wait_for_job_named(&self, name: String) -> Result<(), ProviderError> {
        let operation = lro::Operation {
            job: name,
            async_operation: None,
            location: None,
            retry_after: None,
        };
        lro::wait(
            &self.client,
            &self.config.vault,
            self.api(),
            &operation,
            &self.poll,
        )
        .await
    }

    async fn request(
        &self,
        request: &OperationRequest,
        item: &ReplicationProtectedItem,
    ) -> Result<requests::Request, ProviderError> {
        let at = item
            .id
            .as_deref()
            .and_then(ProtectedItemRef::from_id)
            .ok_or_else(|| {
                ProviderError::permanent(
                    Some("InvalidResponse".to_string()),
                    format!(
                        "the protected item `{}` has no usable ARM id",
                        request.machine
                    ),
                )
            })?;
        let vault = &self.config.vault;
        let api = self.api();
        Ok(match request.kind {
            OperationKind::Reprotect => {
                let settings = request.reprotect.as_ref().ok_or_else(|| {
                    ProviderError::permanent(
                        None,
                        format!("reprotect of `{}` without its settings", request.machine),
                    )
                })?;
                let (fabrics, policies) = tokio::try_join!(self.fabrics(), self.policies())?;
                // The item lives under its configuration server's fabric (its ARM id says
                // which), so the ids come from the same configuration server as its facts.
                let ids = Resolver::new(&fabrics, &policies, &at.fabric)
                    .and_then(|resolver| resolver.reprotect(settings))
                    .map_err(|e| {
                        ProviderError::permanent(Some("UnresolvedName".to_string()), e.to_string())
                    })?;
                requests::reprotect(vault, &at, &ids, api)
            }
            OperationKind::Failback => requests::failback(vault, &at, api),
            OperationKind::Commit => requests::commit(vault, &at, api),
            OperationKind::ReprotectHome => {
                let home = request
                    .reprotect
                    .as_ref()
                    .and_then(|settings| settings.home.as_ref())
                    .ok_or_else(|| {
                        ProviderError::permanent(
                            Some("UnresolvedName".to_string()),
                            format!(
                                "the reprotect of `{}` to Azure needs `site.home` in the plan: ASR needs its process server and run-as account",
                                request.machine
                            ),
                        )
                    })?;
                let (fabrics, policies) = tokio::try_join!(self.fabrics(), self.policies())?;
                let ids = Resolver::new(&fabrics, &policies, &at.fabric)
                    .and_then(|resolver| resolver.home(home))
                    .map_err(|e| {
                        ProviderError::permanent(Some("UnresolvedName".to_string()), e.to_string())
                    })?;
                requests::reprotect_home(vault, &at, &ids, api)
            }
            OperationKind::SwitchProcessServer => {
                let settings = request.reprotect.as_ref().ok_or_else(|| {
                    ProviderError::permanent(
                        None,
                        format!(
                            "process-server switch of `{}` without its settings",
                            request.machine
                        ),
                    )
                })?;
                let source = current_process_server_id(item).ok_or_else(|| {
                    ProviderError::permanent(
                        Some("InvalidResponse".to_string()),
                        format!(
                            "ASR reports no process server for `{}`, so there is none to switch from",
                            request.machine
                        ),
                    )
                })?;
                let (fabrics, policies) = tokio::try_join!(self.fabrics(), self.policies())?;
                let target = Resolver::new(&fabrics, &policies, &at.fabric)
                    .and_then(|resolver| resolver.process_server_id(&settings.process_server))
                    .map_err(|e| {
                        ProviderError::permanent(Some("UnresolvedName".to_string()), e.to_string())
                    })?;
                requests::switch_process_server(vault, &at, &source, &target, api)
            }
        })
    }
}

impl AzureProvider {
    /// Whether the item replicates through the switch's process server already.
    async fn switched(
        &self,
        request: &OperationRequest,
        item: &ReplicationProtectedItem,
    ) -> Result<bool, ProviderError> {
        let Some(settings) = request.reprotect.as_ref() else {
            return Ok(false);
        };
        let Some(at) = item.id.as_deref().and_then(ProtectedItemRef::from_id) else {
            return Ok(false);
        };
        let fabrics = self.fabrics().await?;
        let target = Resolver::new(&fabrics, &[], &at.fabric)
            .and_then(|resolver| resolver.process_server_id(&settings.process_server))
            .map_err(|e| {
                ProviderError::permanent(Some("UnresolvedName".to_string()), e.to_string())
            })?;
        Ok(current_process_server_id(item)
            .is_some_and(|current| current.eq_ignore_ascii_case(&target)))
    }
}

/// The id of the process server an item replicates through, as its details report it.
pub fn current_process_server_id(item: &ReplicationProtectedItem) -> Option<String> {
    match item.properties.provider_specific_details.as_ref()? {
        ReplicationProviderSpecificSettings::InMage(details) => details.process_server_id.clone(),
        ReplicationProviderSpecificSettings::InMageAzureV2(details) => {
            details.process_server_id.clone()
        }
        ReplicationProviderSpecificSettings::Other { .. } => None,
    }
}

/// The `x-ms-client-request-id` of an operation: a GUID derived from its id (see the module
/// documentation), the same for every attempt of the operation.
pub fn client_request_id(id: &OperationId) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"lifeboat operation id\0")
        .chain_update(id.0.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// `ReplicationJobs_List` (vault-wide, paged by `nextLink`).
fn jobs_path(config: &AzureConfig) -> String {
    format!(
        "{}/replicationJobs?api-version={}",
        config.vault_id(),
        config.api_version
    )
}

/// The name of the job running on an item (`currentScenario.jobId`, an ARM id or a bare
/// name), if any. An idle item still has a `currentScenario`: `scenarioName: None` with the
/// job id `…/replicationJobs/None` (and a start in 1753) in Microsoft's recorded sessions.
/// That is no job, and is never awaited.
pub fn running_job(item: &ReplicationProtectedItem) -> Option<String> {
    let scenario = item.properties.current_scenario.as_ref()?;
    if scenario
        .scenario_name
        .as_deref()
        .is_some_and(|name| name.eq_ignore_ascii_case("None"))
    {
        return None;
    }
    scenario
        .job_id
        .as_deref()?
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|name| !name.is_empty() && !name.eq_ignore_ascii_case("None"))
        .map(str::to_string)
}

/// Whether a job's `activityId` carries an operation id: ASR keeps the client request id
/// verbatim, or followed by its own ` ActivityId: …`.
pub fn carries(activity: &str, id: &str) -> bool {
    !id.is_empty()
        && (activity == id
            || activity
                .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
                .any(|token| token == id))
}

fn done(request: &OperationRequest) -> OperationOutcome {
    OperationOutcome {
        id: request.id.clone(),
        stage: request.kind.to_stage(),
    }
}

#[async_trait::async_trait]
impl Provider for AzureProvider {
    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "azure",
            identity: self.config.vault_id(),
        }
    }

    fn max_concurrency(&self) -> Option<usize> {
        Some(MAX_CONCURRENCY)
    }

    async fn refresh(
        &self,
        request: &RefreshRequest,
    ) -> Result<lifeboat_engine::provider::Facts, ProviderError> {
        let vcenters_path = requests::vcenters_path(&self.config.vault, self.api());
        let (fabrics, vcenters, items) = tokio::try_join!(
            self.fabrics(),
            self.client.list::<VCenter>(&vcenters_path),
            self.items(),
        )?;
        let inventory = Inventory {
            fabrics,
            vcenters,
            items,
        };
        mapping::facts(request, &inventory, Timestamp::now()).map_err(|e| {
            ProviderError::permanent(Some("UnsupportedItem".to_string()), e.to_string())
        })
    }

    async fn run(&self, request: &OperationRequest) -> Result<OperationOutcome, ProviderError> {
        let item = self.settled_item(&request.machine).await?;
        let stage = mapping::stage(&item).map_err(|e| {
            ProviderError::permanent(Some("UnsupportedItem".to_string()), e.to_string())
        })?;
        // A switch keeps the stage: it is done when the item replicates through the new
        // process server already.
        let already = match request.kind {
            OperationKind::SwitchProcessServer => self.switched(request, &item).await?,
            _ => stage == request.kind.to_stage(),
        };
        if already {
            tracing::debug!(machine = %request.machine, %stage, "already there; nothing sent");
            return Ok(done(request));
        }
        let jobs = self.jobs_of(&request.id).await?;
        if let Some(job) = jobs.first() {
            match job.properties.job_state() {
                JobState::Succeeded => return Ok(done(request)),
                JobState::Failed | JobState::Cancelled | JobState::Suspended => {
                    let error = lro::job_error(job);
                    if !error.is_transient() {
                        return Err(error);
                    }
                    // Failed for a reason that passes: this run is the retry.
                }
                _ => {
                    tracing::debug!(
                        machine = %request.machine,
                        job = job.name.as_deref().unwrap_or(""),
                        "awaiting the job this operation already started"
                    );
                    self.wait_for_job(job).await?;
                    return Ok(done(request));
                }
            }
        }
        let http = self.request(request, &item).await?;
        let response = self
            .client
            .post(
                &http.path,
                http.body.as_ref(),
                &client_request_id(&request.id),
            )
            .await?;
        match lro::started(&self.client, &response)? {
            Started::Done => {}
            Started::Running(operation) => {
                lro::wait(
                    &self.client,
                    &self.config.vault,
                    self.api(),
                    &operation,
                    &self.poll,
                )
                .await?
            }
        }
        Ok(done(request))
    }

    async fn estimate(
        &self,
        request: &EstimateRequest,
    ) -> Result<Vec<Option<std::time::Duration>>, ProviderError> {
        Ok(request
            .operations
            .iter()
            .map(|op| crate::estimate::estimate(op, request.link_gbps))
            .collect())
    }

    async fn status(&self, id: &OperationId) -> Result<OperationStatus, ProviderError> {
        let jobs = self.jobs_of(id).await?;
        Ok(match jobs.first() {
            None => OperationStatus::Unknown,
            Some(job) => match job.properties.job_state() {
                JobState::Succeeded => OperationStatus::Succeeded,
                JobState::Failed | JobState::Cancelled | JobState::Suspended => {
                    OperationStatus::Failed(lro::job_error(job))
                }
                _ => OperationStatus::Running,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::carries;

    #[test]
    fn activity_ids() {
        assert!(carries("lb-1-2", "lb-1-2"));
        assert!(carries("lb-1-2 ActivityId: 7c1e", "lb-1-2"));
        assert!(!carries("lb-1-20 ActivityId: 7c1e", "lb-1-2"));
        assert!(!carries("lb-1-2", ""));
    }
}
