//! [`PluginProvider`]: the engine's `Provider` trait over a plugin process.
//!
//! One process serves a whole lifeboat run. When it dies (it exited, or closed its stdout),
//! it is started again, at most [`MAX_RESTARTS`] times per run, and every operation that was
//! waiting on it is reconciled through `status` in the new process: finished ones are
//! reported as finished, failed ones as failed, and the others are sent again with the same
//! operation id, which the plugin must treat as the same operation. So nothing runs twice as
//! long as the plugin keeps the protocol's one promise: `run` is idempotent by id, and
//! `status` answers from the backend's record, not from the process's memory.
//!
//! A plugin that breaks the protocol (garbage on stdout) or hangs is not started again: it
//! would do the same. Its error names it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lifeboat_engine::provider::{
    Facts, OperationId, OperationOutcome, OperationRequest, OperationStatus, Provider,
    ProviderError, ProviderInfo, RefreshRequest,
};
use serde::de::DeserializeOwned;

use crate::connection::{CallError, Connection, Spec, Wait};
use crate::protocol::{
    self, DescribeResult, InitializeParams, InitializeResult, OperationParams, ProviderErrorData,
    RefreshParams, RefreshResult, RunParams, RunResult, StatusResult, UnsupportedVersionData,
    error_code, method,
};

/// How many times a plugin that died is started again in one lifeboat run.
pub const MAX_RESTARTS: u32 = 3;

/// How long a plugin has to exit after `shutdown` (or the end of its stdin) before its
/// process group is killed.
pub const GRACE: Duration = Duration::from_secs(5);

/// A plugin that could not be started, or broke the protocol while starting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// The process serving requests now, and which start it is (to restart once per death).
#[derive(Debug)]
struct Current {
    generation: u64,
    connection: Arc<Connection>,
}

/// The `plugin` provider.
#[derive(Debug)]
pub struct PluginProvider {
    spec: Spec,
    current: tokio::sync::Mutex<Current>,
    init: InitializeResult,
    identity: String,
    restarts: AtomicU32,
}

impl PluginProvider {
    /// Starts the plugin, agrees on a protocol version and learns which estate it serves.
    /// Must run inside a tokio runtime, which then carries the plugin's I/O for its life.
    pub async fn start(spec: Spec) -> Result<Self, StartError> {
        let (connection, init) = handshake(&spec).await?;
        let identity = describe(&connection, &spec).await?;
        Ok(Self {
            spec,
            current: tokio::sync::Mutex::new(Current {
                generation: 0,
                connection: Arc::new(connection),
            }),
            init,
            identity,
            restarts: AtomicU32::new(0),
        })
    }

    /// What the plugin said about itself in `initialize`.
    pub fn plugin(&self) -> &protocol::PluginInfo {
        &self.init.plugin
    }

    async fn current(&self) -> (u64, Arc<Connection>) {
        let current = self.current.lock().await;
        (current.generation, current.connection.clone())
    }

    /// Starts the plugin again after the process of `generation` died (`why`); when another
    /// caller already did, uses that process.
    async fn restart(&self, generation: u64, why: &str) -> Result<(), ProviderError> {
        let mut current = self.current.lock().await;
        if current.generation != generation {
            return Ok(());
        }
        let restarts = self.restarts.fetch_add(1, Ordering::SeqCst) + 1;
        if restarts > MAX_RESTARTS {
            return Err(ProviderError::permanent(
                None,
                format!(
                    "{why}; it was started again {MAX_RESTARTS} times already, so lifeboat gives up on it"
                ),
            ));
        }
        eprintln!("warning: {why}; starting it again ({restarts} of {MAX_RESTARTS})");
        let (connection, _) = handshake(&self.spec)
            .await
            .map_err(|e| ProviderError::permanent(None, e.0))?;
        let identity = describe(&connection, &self.spec)
            .await
            .map_err(|e| ProviderError::permanent(None, e.0))?;
        if identity != self.identity {
            return Err(ProviderError::permanent(
                None,
                format!(
                    "the plugin `{}` describes another estate after a restart (`{identity}`, before `{}`)",
                    self.init.plugin.name, self.identity
                ),
            ));
        }
        *current = Current {
            generation: generation + 1,
            connection: Arc::new(connection),
        };
        Ok(())
    }

    /// A request that is safe to repeat (`refresh`, `status`), sent again to a new process
    /// when the plugin dies under it.
    async fn call<T: DeserializeOwned>(
        &self,
        name: &str,
        params: serde_json::Value,
        progress_key: Option<&str>,
    ) -> Result<T, ProviderError> {
        loop {
            let (generation, connection) = self.current().await;
            let wait = match progress_key {
                Some(key) => Wait::Progressing(self.spec.timeout, key),
                None => Wait::Within(self.spec.timeout),
            };
            match connection.call(name, Some(params.clone()), wait).await {
                Ok(value) => return self.parse(name, value),
                Err(CallError::Gone(why)) => self.restart(generation, &why).await?,
                Err(error) => return Err(self.provider_error(name, error)),
            }
        }
    }

    fn parse<T: DeserializeOwned>(
        &self,
        name: &str,
        value: serde_json::Value,
    ) -> Result<T, ProviderError> {
        serde_json::from_value(value).map_err(|e| {
            ProviderError::permanent(
                None,
                format!(
                    "the plugin `{}` answered `{name}` with something that does not fit the protocol: {e}",
                    self.init.plugin.name
                ),
            )
        })
    }

    fn provider_error(&self, name: &str, error: CallError) -> ProviderError {
        match error {
            CallError::Rpc(error) => rpc_error(&self.init.plugin.name, name, error),
            other => ProviderError::permanent(None, other.to_string()),
        }
    }
}

/// A JSON-RPC error as the engine's error: a provider error keeps its kind, code and wait;
/// any other (invalid params, unknown method) is the plugin refusing lifeboat, permanently.
fn rpc_error(plugin: &str, name: &str, error: protocol::ErrorObject) -> ProviderError {
    if error.code == error_code::PROVIDER_ERROR {
        let data = error
            .data
            .clone()
            .and_then(|d| serde_json::from_value::<ProviderErrorData>(d).ok());
        if let Some(data) = data {
            let mut out = ProviderError {
                kind: data.kind.into(),
                code: data.code,
                message: error.message,
                retry_after: None,
            };
            if let Some(ms) = data.retry_after_ms {
                out = out.with_retry_after(Duration::from_millis(ms));
            }
            return out;
        }
        return ProviderError::permanent(
            None,
            format!(
                "{} (the plugin `{plugin}` sent a provider error without a valid `data`: it needs `kind`)",
                error.message
            ),
        );
    }
    ProviderError::permanent(
        None,
        format!(
            "the plugin `{plugin}` refused `{name}`: {} (JSON-RPC error {})",
            error.message, error.code
        ),
    )
}

/// Starts a process and runs `initialize`.
pub(crate) async fn handshake(spec: &Spec) -> Result<(Connection, InitializeResult), StartError> {
    let connection = Connection::spawn(spec).map_err(StartError)?;
    let params = InitializeParams {
        protocol_versions: protocol::VERSIONS.to_vec(),
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        config: spec.config.clone(),
    };
    let name = connection.name();
    let answer = connection
        .call(
            method::INITIALIZE,
            serde_json::to_value(params).ok(),
            Wait::Within(spec.timeout),
        )
        .await;
    let init: InitializeResult = match answer {
        Ok(value) => serde_json::from_value(value).map_err(|e| {
            StartError(format!(
                "the plugin `{name}` answered `initialize` with something that does not fit the protocol: {e}"
            ))
        })?,
        Err(CallError::Rpc(error)) if error.code == error_code::UNSUPPORTED_VERSION => {
            let supported = error
                .data
                .and_then(|d| serde_json::from_value::<UnsupportedVersionData>(d).ok())
                .map(|d| versions(&d.supported))
                .unwrap_or_else(|| "other versions".to_string());
            return Err(StartError(format!(
                "the plugin `{name}` speaks protocol {supported}, and this lifeboat speaks {}: use a plugin and a lifeboat that share a version",
                versions(protocol::VERSIONS)
            )));
        }
        Err(error) => {
            return Err(StartError(format!(
                "the plugin `{name}` did not start: {error}"
            )));
        }
    };
    if !protocol::VERSIONS.contains(&init.protocol_version) {
        connection.kill();
        return Err(StartError(format!(
            "the plugin `{name}` chose protocol version {}, which lifeboat did not offer (it speaks {})",
            init.protocol_version,
            versions(protocol::VERSIONS)
        )));
    }
    connection.set_name(&init.plugin.name);
    Ok((connection, init))
}

fn versions(list: &[u32]) -> String {
    let list: Vec<String> = list.iter().map(|v| format!("v{v}")).collect();
    list.join(", ")
}

async fn describe(connection: &Connection, spec: &Spec) -> Result<String, StartError> {
    let name = connection.name();
    let value = connection
        .call(method::DESCRIBE, None, Wait::Within(spec.timeout))
        .await
        .map_err(|e| {
            StartError(format!(
                "the plugin `{name}` did not describe its estate: {e}"
            ))
        })?;
    let described: DescribeResult = serde_json::from_value(value).map_err(|e| {
        StartError(format!(
            "the plugin `{name}` answered `describe` with something that does not fit the protocol: {e}"
        ))
    })?;
    Ok(described.identity)
}

#[async_trait::async_trait]
impl Provider for PluginProvider {
    fn describe(&self) -> ProviderInfo {
        ProviderInfo {
            kind: "plugin",
            identity: self.identity.clone(),
        }
    }

    fn max_concurrency(&self) -> Option<usize> {
        self.init
            .capabilities
            .max_concurrency
            .map(|n| usize::try_from(n.max(1)).unwrap_or(usize::MAX))
    }

    async fn refresh(&self, request: &RefreshRequest) -> Result<Facts, ProviderError> {
        let params = serde_json::to_value(RefreshParams::from(request))
            .map_err(|e| ProviderError::permanent(None, e.to_string()))?;
        let result: RefreshResult = self.call(method::REFRESH, params, Some("")).await?;
        Ok(result.into())
    }

    async fn run(&self, request: &OperationRequest) -> Result<OperationOutcome, ProviderError> {
        let params = serde_json::to_value(RunParams::from(request))
            .map_err(|e| ProviderError::permanent(None, e.to_string()))?;
        loop {
            let (generation, connection) = self.current().await;
            let answer = connection
                .call(
                    method::RUN,
                    Some(params.clone()),
                    Wait::Progressing(self.spec.timeout, &request.id.0),
                )
                .await;
            match answer {
                Ok(value) => {
                    let result: RunResult = self.parse(method::RUN, value)?;
                    if result.id != request.id.0 {
                        return Err(ProviderError::permanent(
                            None,
                            format!(
                                "the plugin `{}` answered `run` of operation `{}` with the outcome of `{}`",
                                self.init.plugin.name, request.id, result.id
                            ),
                        ));
                    }
                    return Ok(OperationOutcome {
                        id: request.id.clone(),
                        stage: result.stage,
                    });
                }
                Err(CallError::Gone(why)) => {
                    self.restart(generation, &why).await?;
                    // The operation may have finished, failed, be running or never have
                    // started: the backend's record says which.
                    match self.status(&request.id).await? {
                        OperationStatus::Succeeded => {
                            return Ok(OperationOutcome {
                                id: request.id.clone(),
                                stage: request.kind.to_stage(),
                            });
                        }
                        OperationStatus::Failed(error) => return Err(error),
                        // `run` again with the same id: it awaits the running operation, or
                        // starts the one that never started.
                        OperationStatus::Running | OperationStatus::Unknown => {}
                    }
                }
                Err(error) => return Err(self.provider_error(method::RUN, error)),
            }
        }
    }

    async fn status(&self, id: &OperationId) -> Result<OperationStatus, ProviderError> {
        let params = serde_json::to_value(OperationParams { id: id.0.clone() })
            .map_err(|e| ProviderError::permanent(None, e.to_string()))?;
        let result: StatusResult = self.call(method::STATUS, params, None).await?;
        Ok(result.into())
    }

    async fn close(&self) -> Result<(), ProviderError> {
        let (_, connection) = self.current().await;
        connection.close(GRACE).await;
        Ok(())
    }
}
