//! The server side of the protocol: any [`Provider`] served as a plugin over a pair of
//! streams (`lifeboat provider serve sim` serves the simulator on its stdin and stdout).
//!
//! Requests are handled concurrently, each in its own task, and answers are written whole,
//! one per line, by one writer task. `run` and `refresh` send `progress` every
//! [`protocol::HEARTBEAT_SECS`] seconds while they work. `shutdown` and the end of the
//! input close the provider (the sim folds its journal into the world) and end the serve.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_engine::provider::{OperationId, Provider};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::connection::{MAX_LINE_BYTES, read_line_capped};
use crate::protocol::{
    self, CancelResult, DescribeResult, ErrorObject, InitializeParams, InitializeResult,
    OperationParams, PluginInfo, ProgressParams, RefreshParams, RefreshResult, RunParams,
    RunResult, StatusResult, UnsupportedVersionData, convert, error_code, method,
};

/// Serves `provider` until `shutdown` or the end of `input`.
pub async fn serve<R, W>(
    provider: Arc<dyn Provider>,
    plugin: PluginInfo,
    mut input: R,
    output: W,
) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (lines, mut queue) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut output = output;
        while let Some(mut line) = queue.recv().await {
            line.push('\n');
            if output.write_all(line.as_bytes()).await.is_err() || output.flush().await.is_err() {
                break;
            }
        }
    });
    let out = Out(lines);
    let mut initialized = false;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let line = match read_line_capped(&mut input, MAX_LINE_BYTES).await? {
            None => break,
            Some(Err(cap)) => {
                out.error(
                    None,
                    error_code::INVALID_REQUEST,
                    format!("a request of more than {cap} bytes"),
                );
                continue;
            }
            Some(Ok(line)) => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request: serde_json::Value = match serde_json::from_slice(&line) {
            Ok(value) => value,
            Err(e) => {
                out.error(None, error_code::PARSE_ERROR, format!("not JSON: {e}"));
                continue;
            }
        };
        let Some((id, name, params)) = as_request(&request) else {
            out.error(
                None,
                error_code::INVALID_REQUEST,
                "not a JSON-RPC 2.0 request with an integer id".to_string(),
            );
            continue;
        };
        if name == method::SHUTDOWN {
            // Quick answers still due are given; a long `run` is left to the backend's record
            // (the sim's world), as after a crash, and the next process reconciles it.
            finish(&mut tasks).await;
            let closed = provider.close().await;
            match closed {
                Ok(()) => out.result(id, &serde_json::Value::Null),
                Err(error) => out.send_error(id, convert::error_object(&error)),
            }
            drop(out);
            let _ = writer.await;
            return Ok(());
        }
        if name == method::INITIALIZE {
            match parse::<InitializeParams>(&params) {
                Err(message) => out.error(Some(id), error_code::INVALID_PARAMS, message),
                Ok(offered) => match protocol::VERSIONS
                    .iter()
                    .rev()
                    .find(|v| offered.protocol_versions.contains(v))
                {
                    Some(version) => {
                        initialized = true;
                        out.result(
                            id,
                            &InitializeResult {
                                protocol_version: *version,
                                plugin: plugin.clone(),
                                capabilities: protocol::Capabilities {
                                    max_concurrency: provider
                                        .max_concurrency()
                                        .and_then(|n| u32::try_from(n).ok()),
                                    cancel: false,
                                },
                            },
                        );
                    }
                    None => out.send_error(
                        id,
                        ErrorObject {
                            code: error_code::UNSUPPORTED_VERSION,
                            message: format!(
                                "none of the protocol versions offered ({:?}) is spoken here",
                                offered.protocol_versions
                            ),
                            data: serde_json::to_value(UnsupportedVersionData {
                                supported: protocol::VERSIONS.to_vec(),
                            })
                            .ok(),
                        },
                    ),
                },
            }
            continue;
        }
        if !initialized {
            out.error(
                Some(id),
                error_code::NOT_INITIALIZED,
                format!("`{name}` before `initialize`"),
            );
            continue;
        }
        let provider = provider.clone();
        let out = out.clone();
        match name.as_str() {
            method::DESCRIBE => out.result(
                id,
                &DescribeResult {
                    identity: provider.describe().identity,
                },
            ),
            method::REFRESH => match parse::<RefreshParams>(&params) {
                Err(message) => out.error(Some(id), error_code::INVALID_PARAMS, message),
                Ok(params) => {
                    tasks.spawn(async move {
                        let request = params.into();
                        let facts = heartbeat(&out, None, provider.refresh(&request)).await;
                        match facts {
                            Ok(facts) => out.result(id, &RefreshResult::from(&facts)),
                            Err(error) => out.send_error(id, convert::error_object(&error)),
                        }
                    });
                }
            },
            method::RUN => match parse::<RunParams>(&params) {
                Err(message) => out.error(Some(id), error_code::INVALID_PARAMS, message),
                Ok(params) => {
                    tasks.spawn(async move {
                        let request = params.into();
                        let key = Some(request_id(&request));
                        match heartbeat(&out, key, provider.run(&request)).await {
                            Ok(outcome) => out.result(
                                id,
                                &RunResult {
                                    id: outcome.id.0,
                                    stage: outcome.stage,
                                },
                            ),
                            Err(error) => out.send_error(id, convert::error_object(&error)),
                        }
                    });
                }
            },
            method::STATUS => match parse::<OperationParams>(&params) {
                Err(message) => out.error(Some(id), error_code::INVALID_PARAMS, message),
                Ok(params) => {
                    tasks.spawn(async move {
                        match provider.status(&OperationId(params.id)).await {
                            Ok(status) => out.result(id, &StatusResult::from(&status)),
                            Err(error) => out.send_error(id, convert::error_object(&error)),
                        }
                    });
                }
            },
            // The providers served here cannot stop an operation once the backend has it
            // (ASR cannot either), so `cancel` says so; the operation carries on and its
            // `run` answers when it ends.
            method::CANCEL => match parse::<OperationParams>(&params) {
                Err(message) => out.error(Some(id), error_code::INVALID_PARAMS, message),
                Ok(_) => out.result(id, &CancelResult { cancelled: false }),
            },
            other => out.error(
                Some(id),
                error_code::METHOD_NOT_FOUND,
                format!("no method `{other}` in protocol v1"),
            ),
        }
        // Finished tasks are collected as they end, so a long serve does not keep them.
        while tasks.try_join_next().is_some() {}
    }
    // The end of the input: lifeboat has gone. What runs is left to the backend's record.
    finish(&mut tasks).await;
    let _ = provider.close().await;
    drop(out);
    let _ = writer.await;
    Ok(())
}

/// Lets the requests in flight finish for a moment, then drops the rest.
async fn finish(tasks: &mut tokio::task::JoinSet<()>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
}

fn request_id(request: &lifeboat_engine::provider::OperationRequest) -> String {
    request.id.0.clone()
}

/// `(id, method, params)` of a JSON-RPC 2.0 request.
fn as_request(value: &serde_json::Value) -> Option<(u64, String, serde_json::Value)> {
    let object = value.as_object()?;
    if object.get("jsonrpc")?.as_str()? != protocol::JSONRPC {
        return None;
    }
    let id = object.get("id")?.as_u64()?;
    let name = object.get("method")?.as_str()?.to_string();
    let params = object.get("params").cloned().unwrap_or_default();
    Some((id, name, params))
}

fn parse<T: DeserializeOwned>(params: &serde_json::Value) -> Result<T, String> {
    serde_json::from_value(params.clone()).map_err(|e| format!("invalid params: {e}"))
}

/// Awaits `work`, sending `progress` for `key` every heartbeat meanwhile.
async fn heartbeat<T>(
    out: &Out,
    key: Option<String>,
    work: impl std::future::Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let period = Duration::from_secs(protocol::HEARTBEAT_SECS);
    loop {
        match tokio::time::timeout(period, &mut work).await {
            Ok(done) => return done,
            Err(_) => out.notify(&ProgressParams {
                id: key.clone(),
                message: Some("working".to_string()),
                percent: None,
            }),
        }
    }
}

/// The writer's queue: whole lines, in the order they are sent.
#[derive(Debug, Clone)]
struct Out(mpsc::UnboundedSender<String>);

impl Out {
    fn send(&self, value: &serde_json::Value) {
        if let Ok(line) = serde_json::to_string(value) {
            let _ = self.0.send(line);
        }
    }

    fn result(&self, id: u64, result: &impl serde::Serialize) {
        self.send(&serde_json::json!({"jsonrpc": protocol::JSONRPC, "id": id, "result": result}));
    }

    fn send_error(&self, id: u64, error: ErrorObject) {
        self.send(&serde_json::json!({"jsonrpc": protocol::JSONRPC, "id": id, "error": error}));
    }

    fn error(&self, id: Option<u64>, code: i64, message: String) {
        let error = ErrorObject {
            code,
            message,
            data: None,
        };
        self.send(&serde_json::json!({"jsonrpc": protocol::JSONRPC, "id": id, "error": error}));
    }

    fn notify(&self, params: &ProgressParams) {
        self.send(&serde_json::json!({
            "jsonrpc": protocol::JSONRPC,
            "method": method::PROGRESS,
            "params": params,
        }));
    }
}

/// [`serve`] on this process's stdin and stdout.
pub async fn serve_stdio(provider: Arc<dyn Provider>, plugin: PluginInfo) -> std::io::Result<()> {
    serve(
        provider,
        plugin,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}
