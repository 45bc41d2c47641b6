//! The conformance kit (`lifeboat provider test -- COMMAND…`): the protocol's contract,
//! case by case, against any plugin. Each case says exactly what the plugin did wrong, so a
//! plugin author can fix it without reading lifeboat's source.
//!
//! The cases that change an estate (`run` twice with one id, `status` after a restart) need
//! an estate the kit may change and a plan naming it (`--plan`): the kit reprotects the first
//! machine of the plan that the plugin reports `failed-over`. Without one they are skipped,
//! and said to be.

use std::time::{Duration, Instant};

use lifeboat_engine::provider::{OperationKind, RefreshRequest, ReprotectSettings, Stage};
use serde::de::DeserializeOwned;

use crate::connection::{CallError, Connection, Spec, Wait};
use crate::protocol::{
    self, DescribeResult, InitializeParams, InitializeResult, OperationParams, OperationState,
    RefreshParams, RefreshResult, RunParams, RunResult, StatusResult, error_code, method,
};

/// What a case found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

/// One case's result, as the kit prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// The estate the changing cases may use.
#[derive(Debug, Clone)]
pub struct Estate {
    /// What to refresh (the plan's names).
    pub refresh: RefreshRequest,
    /// Machines the kit may reprotect, with their settings, in the plan's order.
    pub reprotect: Vec<(String, ReprotectSettings)>,
}

/// How long the kit waits for a plugin that should already have done something (written
/// nothing, exited).
const SETTLE: Duration = Duration::from_millis(500);

/// Runs every case against the plugin `spec` starts, calling `report` after each.
pub async fn run(spec: &Spec, estate: Option<&Estate>, mut report: impl FnMut(&Case)) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut record = |name: &'static str, outcome: Outcome| {
        let case = Case { name, outcome };
        report(&case);
        cases.push(case);
    };

    let quiet = quiet_before_initialize(spec).await;
    let noisy = matches!(quiet, Outcome::Fail(_));
    record("nothing on stdout before `initialize`", quiet);
    let (handshake, connection) = if noisy {
        (
            Outcome::Skip("needs a plugin whose stdout carries protocol messages only".to_string()),
            None,
        )
    } else {
        handshake(spec).await
    };
    let Some(connection) = connection else {
        record("handshake", handshake);
        return cases;
    };
    record("handshake", handshake);
    record(
        "unsupported protocol version refused",
        version_refusal(spec).await,
    );
    record(
        "`describe` is deterministic",
        describe_deterministic(spec, &connection).await,
    );
    record(
        "`refresh` answers in the schema's shape",
        refresh_shape(spec, &connection, estate).await,
    );
    record(
        "unknown method rejected with -32601",
        unknown_method(spec, &connection).await,
    );
    record(
        "bad params rejected with -32602",
        bad_params(spec, &connection).await,
    );
    record("`cancel` answered in time", cancel(spec, &connection).await);
    match estate {
        None => {
            let why = "needs an estate the kit may change: pass `--plan PLAN`".to_string();
            record(
                "`run` twice with one id runs once",
                Outcome::Skip(why.clone()),
            );
            record("`status` after a restart is definite", Outcome::Skip(why));
        }
        Some(estate) => match run_twice(spec, &connection, estate).await {
            Err(outcome) => {
                record("`run` twice with one id runs once", outcome);
                record(
                    "`status` after a restart is definite",
                    Outcome::Skip("needs the operation of the case before".to_string()),
                );
            }
            Ok(id) => {
                record("`run` twice with one id runs once", Outcome::Pass);
                record(
                    "`status` after a restart is definite",
                    status_after_restart(spec, &connection, &id).await,
                );
            }
        },
    }
    record(
        "exits on `shutdown`",
        exits_on_shutdown(spec, &connection).await,
    );
    record("exits at the end of stdin", exits_on_eof(spec).await);
    cases
}

fn fail(message: impl Into<String>) -> Outcome {
    Outcome::Fail(message.into())
}

async fn quiet_before_initialize(spec: &Spec) -> Outcome {
    let connection = match Connection::spawn(spec) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    tokio::time::sleep(SETTLE).await;
    let before = connection.over_reason();
    // A slow starter may print its banner later: the first line on stdout must then be the
    // answer to `initialize`.
    let answer = match before {
        Some(_) => None,
        None => Some(
            connection
                .call(
                    method::INITIALIZE,
                    Some(initialize_params(spec, protocol::VERSIONS.to_vec())),
                    Wait::Within(spec.timeout),
                )
                .await,
        ),
    };
    connection.kill();
    match (before, answer) {
        (Some(CallError::Protocol(message)), _) => fail(format!("before `initialize`, {message}")),
        (Some(other), _) => fail(format!("before `initialize`, {other}")),
        (None, Some(Err(CallError::Protocol(message)))) => {
            fail(format!("before answering `initialize`, {message}"))
        }
        // Any other answer is the handshake case's business.
        _ => Outcome::Pass,
    }
}

fn initialize_params(spec: &Spec, versions: Vec<u32>) -> serde_json::Value {
    serde_json::to_value(InitializeParams {
        protocol_versions: versions,
        lifeboat_version: env!("CARGO_PKG_VERSION").to_string(),
        config: spec.config.clone(),
    })
    .unwrap_or_default()
}

/// Checks `value` against the message schema `name` and parses it.
fn checked<T: DeserializeOwned>(name: &str, value: serde_json::Value) -> Result<T, Outcome> {
    if let Some(schema) = protocol::schema(name) {
        let schema = serde_json::to_value(schema).unwrap_or_default();
        if let Ok(validator) = jsonschema::validator_for(&schema) {
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .take(3)
                .map(|e| format!("at `{}`: {e}", e.instance_path))
                .collect();
            if !errors.is_empty() {
                return Err(fail(format!(
                    "the answer does not fit `schemas/plugin/{name}.schema.json`: {}",
                    errors.join("; ")
                )));
            }
        }
    }
    serde_json::from_value(value).map_err(|e| {
        fail(format!(
            "the answer does not fit `schemas/plugin/{name}.schema.json`: {e}"
        ))
    })
}

async fn call(
    connection: &Connection,
    spec: &Spec,
    name: &str,
    params: Option<serde_json::Value>,
) -> Result<serde_json::Value, Outcome> {
    connection
        .call(name, params, Wait::Within(spec.timeout))
        .await
        .map_err(|e| match e {
            CallError::Rpc(error) => fail(format!(
                "`{name}` answered with error {}: {}",
                error.code, error.message
            )),
            other => fail(format!("`{name}`: {other}")),
        })
}

/// A fresh process, initialized with protocol v1; the case's outcome and the connection.
async fn handshake(spec: &Spec) -> (Outcome, Option<Connection>) {
    let connection = match Connection::spawn(spec) {
        Ok(c) => c,
        Err(e) => return (fail(e), None),
    };
    let answer = call(
        &connection,
        spec,
        method::INITIALIZE,
        Some(initialize_params(spec, protocol::VERSIONS.to_vec())),
    )
    .await;
    let init: InitializeResult = match answer.and_then(|v| checked("initialize.result", v)) {
        Ok(init) => init,
        Err(outcome) => return (outcome, None),
    };
    if !protocol::VERSIONS.contains(&init.protocol_version) {
        return (
            fail(format!(
                "`initialize` chose protocol version {}, which was not offered (offered: {:?})",
                init.protocol_version,
                protocol::VERSIONS
            )),
            None,
        );
    }
    if init.plugin.name.trim().is_empty() || init.plugin.version.trim().is_empty() {
        return (
            fail("`initialize` must give the plugin's `name` and `version`, not empty strings"),
            None,
        );
    }
    connection.set_name(&init.plugin.name);
    (Outcome::Pass, Some(connection))
}

async fn version_refusal(spec: &Spec) -> Outcome {
    let connection = match Connection::spawn(spec) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let answer = connection
        .call(
            method::INITIALIZE,
            Some(initialize_params(spec, vec![9_999])),
            Wait::Within(spec.timeout),
        )
        .await;
    connection.kill();
    match answer {
        Err(CallError::Rpc(error)) if error.code == error_code::UNSUPPORTED_VERSION => {
            match error
                .data
                .map(|d| checked::<protocol::UnsupportedVersionData>("unsupported-version-data", d))
            {
                Some(Ok(_)) => Outcome::Pass,
                Some(Err(outcome)) => outcome,
                None => fail(
                    "the -32001 error must say which versions the plugin speaks in `data.supported`",
                ),
            }
        }
        Err(CallError::Rpc(error)) => fail(format!(
            "`initialize` offering only version 9999 must be refused with error -32001, not {} ({})",
            error.code, error.message
        )),
        Err(other) => fail(format!("`initialize` offering only version 9999: {other}")),
        Ok(value) => fail(format!(
            "`initialize` offering only version 9999 was accepted (`{value}`): a plugin must refuse versions it does not speak with error -32001"
        )),
    }
}

async fn describe_deterministic(spec: &Spec, connection: &Connection) -> Outcome {
    let identity = |value: Result<serde_json::Value, Outcome>| {
        value.and_then(|v| checked::<DescribeResult>("describe.result", v))
    };
    let first = match identity(call(connection, spec, method::DESCRIBE, None).await) {
        Ok(d) => d.identity,
        Err(outcome) => return outcome,
    };
    let second = match identity(call(connection, spec, method::DESCRIBE, None).await) {
        Ok(d) => d.identity,
        Err(outcome) => return outcome,
    };
    if first != second {
        return fail(format!(
            "`describe` answered `{first}`, then `{second}`: the identity of one estate must never change"
        ));
    }
    let (outcome, other) = handshake(spec).await;
    let Some(other) = other else {
        return outcome;
    };
    let third = identity(call(&other, spec, method::DESCRIBE, None).await);
    other.kill();
    match third {
        Ok(d) if d.identity == first => Outcome::Pass,
        Ok(d) => fail(format!(
            "a second process describes `{}`, the first `{first}`: saved plans record the identity, so it must be the same in every process",
            d.identity
        )),
        Err(outcome) => outcome,
    }
}

async fn refresh_shape(spec: &Spec, connection: &Connection, estate: Option<&Estate>) -> Outcome {
    let params = estate.map_or_else(RefreshParams::default, |e| RefreshParams::from(&e.refresh));
    let asked = params.machines.clone();
    let value = match call(
        connection,
        spec,
        method::REFRESH,
        serde_json::to_value(&params).ok(),
    )
    .await
    {
        Ok(v) => v,
        Err(outcome) => return outcome,
    };
    let result: RefreshResult = match checked("refresh.result", value) {
        Ok(r) => r,
        Err(outcome) => return outcome,
    };
    if let Some(extra) = result.machines.keys().find(|m| !asked.contains(m)) {
        return fail(format!(
            "`refresh` answered about the machine `{extra}`, which was not asked about"
        ));
    }
    Outcome::Pass
}

async fn unknown_method(spec: &Spec, connection: &Connection) -> Outcome {
    match connection
        .call("lifeboat/no-such-method", None, Wait::Within(spec.timeout))
        .await
    {
        Err(CallError::Rpc(error)) if error.code == error_code::METHOD_NOT_FOUND => Outcome::Pass,
        Err(CallError::Rpc(error)) => fail(format!(
            "an unknown method must be refused with -32601, not {} ({})",
            error.code, error.message
        )),
        Err(other) => fail(format!("an unknown method: {other}")),
        Ok(value) => fail(format!(
            "an unknown method was answered with a result: `{value}`"
        )),
    }
}

async fn bad_params(spec: &Spec, connection: &Connection) -> Outcome {
    let cases = [
        (method::STATUS, serde_json::json!({"id": 42})),
        (
            method::RUN,
            serde_json::json!({"id": "x", "machine": "m", "kind": "teleport"}),
        ),
        (method::REFRESH, serde_json::json!({"machines": "web-01"})),
    ];
    for (name, params) in cases {
        match connection
            .call(name, Some(params.clone()), Wait::Within(spec.timeout))
            .await
        {
            Err(CallError::Rpc(error)) if error.code == error_code::INVALID_PARAMS => {}
            Err(CallError::Rpc(error)) => {
                return fail(format!(
                    "`{name}` with params `{params}` must be refused with -32602, not {} ({})",
                    error.code, error.message
                ));
            }
            Err(other) => return fail(format!("`{name}` with params `{params}`: {other}")),
            Ok(value) => {
                return fail(format!(
                    "`{name}` with params `{params}` was answered with a result (`{value}`) instead of error -32602"
                ));
            }
        }
    }
    Outcome::Pass
}

async fn cancel(spec: &Spec, connection: &Connection) -> Outcome {
    let started = Instant::now();
    let params = serde_json::to_value(OperationParams {
        id: format!("conformance-{}", uuid::Uuid::new_v4()),
    })
    .ok();
    match call(connection, spec, method::CANCEL, params).await {
        Ok(value) => match checked::<protocol::CancelResult>("cancel.result", value) {
            Ok(_) => Outcome::Pass,
            Err(outcome) => outcome,
        },
        Err(outcome) => {
            if started.elapsed() >= spec.timeout {
                fail(format!(
                    "`cancel` was not answered within {:?}",
                    spec.timeout
                ))
            } else {
                outcome
            }
        }
    }
}

/// Runs one reprotect twice with one id; `Ok(id)` when both answers are the same success.
async fn run_twice(
    spec: &Spec,
    connection: &Connection,
    estate: &Estate,
) -> Result<String, Outcome> {
    let facts: RefreshResult = call(
        connection,
        spec,
        method::REFRESH,
        serde_json::to_value(RefreshParams::from(&estate.refresh)).ok(),
    )
    .await
    .and_then(|v| checked("refresh.result", v))?;
    let Some((machine, settings)) = estate.reprotect.iter().find(|(m, _)| {
        facts
            .machines
            .get(m)
            .is_some_and(|f| f.stage == Stage::FailedOver)
    }) else {
        return Err(Outcome::Skip(
            "no machine of the plan is `failed-over` in this estate: point the kit at a fresh copy"
                .to_string(),
        ));
    };
    let params = RunParams {
        id: format!("conformance-{}", uuid::Uuid::new_v4()),
        machine: machine.clone(),
        kind: OperationKind::Reprotect,
        reprotect: Some(settings.clone()),
    };
    let send = || async {
        connection
            .call(
                method::RUN,
                serde_json::to_value(&params).ok(),
                Wait::Progressing(spec.timeout, &params.id),
            )
            .await
    };
    let first = match send().await {
        Ok(value) => checked::<RunResult>("run.result", value)?,
        Err(error) => {
            return Err(fail(format!(
                "the first `run` (reprotect `{machine}`) failed: {error}; the kit needs an estate where it succeeds"
            )));
        }
    };
    match send().await {
        Ok(value) => {
            let second = checked::<RunResult>("run.result", value)?;
            if second != first {
                return Err(fail(format!(
                    "the second `run` of operation `{}` answered {second:?}, the first {first:?}",
                    params.id
                )));
            }
        }
        Err(error) => {
            return Err(fail(format!(
                "the second `run` of operation `{}` failed ({error}) where the first succeeded: a `run` with an id already seen must return the first outcome, not run the operation again",
                params.id
            )));
        }
    }
    let status = call(
        connection,
        spec,
        method::STATUS,
        serde_json::to_value(OperationParams {
            id: params.id.clone(),
        })
        .ok(),
    )
    .await
    .and_then(|v| checked::<StatusResult>("status.result", v))?;
    if status.status != OperationState::Succeeded {
        return Err(fail(format!(
            "`status` of operation `{}` says {:?} right after its `run` succeeded",
            params.id, status.status
        )));
    }
    Ok(params.id)
}

async fn status_after_restart(spec: &Spec, connection: &Connection, id: &str) -> Outcome {
    // A crash: no `shutdown`, the whole process group killed at once.
    connection.kill();
    let (outcome, fresh) = handshake(spec).await;
    let Some(fresh) = fresh else {
        return outcome;
    };
    let status = call(
        &fresh,
        spec,
        method::STATUS,
        serde_json::to_value(OperationParams { id: id.to_string() }).ok(),
    )
    .await
    .and_then(|v| checked::<StatusResult>("status.result", v));
    fresh.kill();
    match status {
        Ok(s) if s.status == OperationState::Succeeded => Outcome::Pass,
        Ok(s) => fail(format!(
            "after the plugin was killed and started again, `status` of operation `{id}`, which had succeeded, says {:?}: status must come from the backend's record, not from the process's memory",
            s.status
        )),
        Err(outcome) => outcome,
    }
}

async fn exits_on_shutdown(spec: &Spec, connection: &Connection) -> Outcome {
    // The connection of the handshake may have been killed by the restart case.
    let fresh;
    let connection = if connection.is_over() {
        let (outcome, c) = handshake(spec).await;
        match c {
            Some(c) => {
                fresh = c;
                &fresh
            }
            None => return outcome,
        }
    } else {
        connection
    };
    if let Err(outcome) = call(connection, spec, method::SHUTDOWN, None).await {
        return outcome;
    }
    match connection.end(crate::provider::GRACE, false).await {
        Some(_) => Outcome::Pass,
        None => fail(format!(
            "still running {}s after answering `shutdown`",
            crate::provider::GRACE.as_secs()
        )),
    }
}

async fn exits_on_eof(spec: &Spec) -> Outcome {
    let (outcome, connection) = handshake(spec).await;
    let Some(connection) = connection else {
        return outcome;
    };
    match connection.end(crate::provider::GRACE, false).await {
        Some(_) => Outcome::Pass,
        None => fail(format!(
            "still running {}s after its stdin ended: a plugin must exit when lifeboat goes away",
            crate::provider::GRACE.as_secs()
        )),
    }
}
