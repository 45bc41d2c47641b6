//! The HTTP surface: the token endpoint and the ARM paths of one vault (contract §3-§8).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lifeboat_engine::model::Recovery;
use lifeboat_engine::provider::{
    HomeSettings, OperationId, OperationKind, OperationRequest, OperationStatus, Provider,
    ProviderError, ReprotectSettings,
};
use lifeboat_provider_sim::{SimProvider, World};
use serde_json::{Value, json};

use crate::jobs::{Job, JobState, Jobs};
use crate::render::{self, Vault};
use crate::{API_VERSION, Config, LroHeaders, swagger};

/// The validators of the action bodies, compiled once at start.
pub struct Schemas {
    reprotect: jsonschema::Validator,
    failover: jsonschema::Validator,
}

impl Schemas {
    pub fn new() -> Result<Self, String> {
        Ok(Self {
            reprotect: swagger::validator("ReverseReplicationInput")?,
            failover: swagger::validator("UnplannedFailoverInput")?,
        })
    }
}

pub struct App {
    config: Config,
    addr: SocketAddr,
    provider: SimProvider,
    schemas: Schemas,
    jobs: Jobs,
    /// Issued tokens and when each expires.
    tokens: Mutex<HashMap<String, Instant>>,
    /// ARM requests so far, for `--throttle-every`.
    requests: AtomicU64,
    /// Accepted actions so far, for `--lro-headers rotate`.
    lro_turn: AtomicUsize,
}

impl App {
    pub fn new(config: Config, addr: SocketAddr, provider: SimProvider, schemas: Schemas) -> Self {
        Self {
            config,
            addr,
            provider,
            schemas,
            jobs: Jobs::default(),
            tokens: Mutex::new(HashMap::new()),
            requests: AtomicU64::new(0),
            lro_turn: AtomicUsize::new(0),
        }
    }

    fn vault(&self) -> &Vault {
        &self.config.vault
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // A poisoned lock only means a request panicked while holding a plain map.
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An absolute URL on this server for an ARM path, with the api-version.
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}?api-version={API_VERSION}", self.addr)
    }

    async fn world(&self) -> Result<World, Response> {
        self.provider.world().await.map_err(|error| {
            arm_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                format!("the simulated estate cannot be read: {error}"),
            )
        })
    }
}

pub fn router(app: App) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .fallback(arm)
        .with_state(Arc::new(app))
        .layer(axum::middleware::map_response(request_id))
}

/// Every response carries a fresh `x-ms-request-id`, as ARM's do.
async fn request_id(mut response: Response) -> Response {
    if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        response.headers_mut().insert("x-ms-request-id", value);
    }
    response
}

fn arm_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn not_found(path: &str) -> Response {
    arm_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        format!("the resource `{path}` was not found"),
    )
}

fn invalid(pointer: &str, message: impl std::fmt::Display) -> Response {
    arm_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContent",
        format!("the request content is invalid: {message} at `{pointer}`"),
    )
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn aad_error(status: StatusCode, error: &str, description: &str, code: u32) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
        })),
    )
        .into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token` with the client-credentials grant (contract §3).
async fn token(
    State(app): State<Arc<App>>,
    form: Result<Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must be a form with `grant_type`, `client_id`, `client_secret` and `scope`.",
            900144,
        );
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type; only `client_credentials` is supported.",
            70003,
        );
    }
    // Entra issues a token for the resource the scope names; an ARM token for another
    // endpoint would not be accepted there, so a client asking for the wrong one must learn it
    // here rather than from a 401 later.
    let expected_scope = format!("https://{}/.default", app.addr);
    let scope = form.get("scope").map(String::as_str).unwrap_or("");
    if !scope.eq_ignore_ascii_case(&expected_scope) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!(
                "AADSTS70011: The provided request must include a 'scope' input parameter. The provided value for the input parameter 'scope' is not valid. The scope `{scope}` is not `{expected_scope}`, the resource manager endpoint this server is."
            ),
            70011,
        );
    }
    let secret = form.get("client_secret").map(String::as_str).unwrap_or("");
    let accepted = match &app.config.client_secret {
        Some(expected) => !secret.is_empty() && secret == expected,
        None => !secret.is_empty(),
    };
    if !accepted {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
            7000215,
        );
    }
    let token = format!("sim.{}", uuid::Uuid::new_v4().simple());
    let now = Instant::now();
    let lifetime = app.config.token_lifetime;
    {
        let mut tokens = app.tokens();
        // Forget tokens long expired so the map stays small; a token expired less than an
        // hour ago is still told apart from an unknown one.
        tokens.retain(|_, expires| {
            now.saturating_duration_since(*expires) < Duration::from_secs(3600)
        });
        tokens.insert(token.clone(), now + lifetime);
    }
    let seconds = lifetime.as_secs();
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": seconds,
        "ext_expires_in": seconds,
        "access_token": token,
    }))
    .into_response()
}

/// Why a bearer token is refused, if it is.
fn authenticate(app: &App, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(token) = token else {
        return Some(arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "authentication failed: the `Authorization` header is missing or is not a bearer token",
        ));
    };
    let expires = app.tokens().get(token).copied();
    match expires {
        Some(expires) if Instant::now() < expires => None,
        Some(_) => {
            let mut response = arm_error(
                StatusCode::UNAUTHORIZED,
                "ExpiredAuthenticationToken",
                "the access token has expired; get a new one and retry",
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
            Some(response)
        }
        None => Some(arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "authentication failed: the access token was not issued by this server",
        )),
    }
}

/// Every ARM request: authentication, throttling, api-version, then the route.
async fn arm(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = authenticate(&app, &headers) {
        return refusal;
    }
    if let Some(every) = app.config.throttle_every.filter(|n| *n > 0) {
        let count = app.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if count % every == 0 {
            return with_retry_after(
                arm_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequests",
                    format!(
                        "the request is throttled (`--throttle-every {every}`); retry after 1 second"
                    ),
                ),
                1,
            );
        }
    }
    let query: HashMap<String, String> = Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    match query.get("api-version") {
        Some(version) if version == API_VERSION => {}
        other => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidApiVersionParameter",
                format!(
                    "the api-version `{}` is invalid; the supported version is `{API_VERSION}`",
                    other.map(String::as_str).unwrap_or("")
                ),
            );
        }
    }
    let path = uri.path();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let vault = app.vault();
    let prefix = [
        "subscriptions",
        vault.subscription.as_str(),
        "resourceGroups",
        vault.resource_group.as_str(),
        "providers",
        "Microsoft.RecoveryServices",
        "vaults",
        vault.name.as_str(),
    ];
    // ARM matches these segments, and resource group and vault names, without regard to case.
    if segments.len() < prefix.len()
        || !prefix
            .iter()
            .zip(&segments)
            .all(|(want, got)| want.eq_ignore_ascii_case(got))
    {
        return not_found(path);
    }
    let rest = &segments[prefix.len()..];
    let lower: Vec<String> = rest.iter().map(|s| s.to_ascii_lowercase()).collect();
    let keys: Vec<&str> = lower.iter().map(String::as_str).collect();
    let is_get = method == Method::GET;
    let is_post = method == Method::POST;
    let fabric_ok = |name: &str| name.eq_ignore_ascii_case(render::VMWARE_FABRIC);
    let container_ok = |name: &str| name.eq_ignore_ascii_case(render::CONTAINER);
    match keys.as_slice() {
        ["replicationfabrics"] if is_get => {
            let world = match app.world().await {
                Ok(world) => world,
                Err(response) => return response,
            };
            page(
                &app,
                path,
                &query,
                render::fabrics(vault, &world, jiff::Timestamp::now()),
            )
        }
        ["replicationfabrics", _] if is_get => {
            let world = match app.world().await {
                Ok(world) => world,
                Err(response) => return response,
            };
            match render::fabric(vault, &world, jiff::Timestamp::now(), rest[1]) {
                Some(fabric) => axum::Json(fabric).into_response(),
                None => not_found(path),
            }
        }
        ["replicationvcenters"] if is_get => vcenters(&app, path, &query).await,
        ["replicationfabrics", _, "replicationvcenters"] if is_get && fabric_ok(rest[1]) => {
            vcenters(&app, path, &query).await
        }
        ["replicationpolicies"] if is_get => page(&app, path, &query, render::policies(vault)),
        ["replicationpolicies", _] if is_get => render::policies(vault)
            .into_iter()
            .find(|p| {
                p["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(rest[1]))
            })
            .map_or_else(|| not_found(path), |p| axum::Json(p).into_response()),
        ["replicationprotecteditems"] if is_get => items(&app, path, &query).await,
        [
            "replicationfabrics",
            _,
            "replicationprotectioncontainers",
            _,
            "replicationprotecteditems",
        ] if is_get && fabric_ok(rest[1]) && container_ok(rest[3]) => {
            items(&app, path, &query).await
        }
        [
            "replicationfabrics",
            _,
            "replicationprotectioncontainers",
            _,
            "replicationprotecteditems",
            _,
        ] if is_get && fabric_ok(rest[1]) && container_ok(rest[3]) => {
            let world = match app.world().await {
                Ok(world) => world,
                Err(response) => return response,
            };
            render::machine_of_item(rest[5])
                .and_then(|machine| render::item_of(vault, &world, machine))
                .map_or_else(|| not_found(path), |item| axum::Json(item).into_response())
        }
        [
            "replicationfabrics",
            _,
            "replicationprotectioncontainers",
            _,
            "replicationprotecteditems",
            _,
            action,
        ] if is_post && fabric_ok(rest[1]) && container_ok(rest[3]) => {
            start(app.clone(), path, rest[5], action, &headers, &body).await
        }
        ["replicationfabrics", _, "reassociategateway"] if is_post && fabric_ok(rest[1]) => {
            reassociate(app.clone(), &headers, &body).await
        }
        ["replicationjobs"] if is_get => {
            let jobs: Vec<Value> = app
                .jobs
                .all()
                .iter()
                .map(|job| job.to_json(vault))
                .collect();
            page(&app, path, &query, jobs)
        }
        ["replicationjobs", _] if is_get => match app.jobs.get(rest[1]) {
            Some(job) => axum::Json(job.to_json(vault)).into_response(),
            None => not_found(path),
        },
        ["replicationoperationstatus", _] if is_get => match app.jobs.get(rest[1]) {
            Some(job) => axum::Json(job.operation_status(path)).into_response(),
            None => not_found(path),
        },
        ["operationresults", _] if is_get => operation_result(&app, path, rest[1]).await,
        _ => not_found(path),
    }
}

/// One page of a collection, with an absolute `nextLink` that carries the api-version.
fn page(app: &App, path: &str, query: &HashMap<String, String>, all: Vec<Value>) -> Response {
    let skip = match query.get("$skiptoken").map(|s| s.parse::<usize>()) {
        None => 0,
        Some(Ok(skip)) => skip,
        Some(Err(_)) => {
            return arm_error(
                StatusCode::BAD_REQUEST,
                "InvalidQueryParameterValue",
                "the `$skiptoken` is not one this server gave out",
            );
        }
    };
    let size = app.config.page_size;
    let total = all.len();
    let value: Vec<Value> = all.into_iter().skip(skip).take(size).collect();
    // The last page says `nextLink: null`, as recorded.
    let next = skip.saturating_add(size);
    let next_link = (next < total).then(|| format!("{}&$skiptoken={next}", app.url(path)));
    let body = json!({ "value": value, "nextLink": next_link });
    axum::Json(body).into_response()
}

async fn vcenters(app: &App, path: &str, query: &HashMap<String, String>) -> Response {
    match app.world().await {
        Ok(world) => page(
            app,
            path,
            query,
            render::vcenters(app.vault(), &world, jiff::Timestamp::now()),
        ),
        Err(response) => response,
    }
}

async fn items(app: &App, path: &str, query: &HashMap<String, String>) -> Response {
    match app.world().await {
        Ok(world) => page(app, path, query, render::items(app.vault(), &world)),
        Err(response) => response,
    }
}

/// A request body refused with `InvalidRequestContent`: the JSON pointer and what is wrong.
struct Invalid {
    pointer: String,
    message: String,
}

impl Invalid {
    fn new(pointer: &str, message: impl std::fmt::Display) -> Self {
        Self {
            pointer: pointer.to_string(),
            message: message.to_string(),
        }
    }

    fn response(&self) -> Response {
        invalid(&self.pointer, &self.message)
    }
}

/// The body as JSON, refused with the ARM error when it is missing or malformed.
fn json_body(body: &Bytes, action: &str, input: &str) -> Result<Value, Invalid> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Invalid::new(
            "/",
            format!("`{action}` needs a `{input}` body"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|error| Invalid::new("/", format!("the body is not JSON: {error}")))
}

fn validate(validator: &jsonschema::Validator, body: &Value, input: &str) -> Result<(), Invalid> {
    let Some(error) = validator.iter_errors(body).next() else {
        return Ok(());
    };
    let pointer = error.instance_path.to_string();
    let pointer = if pointer.is_empty() {
        "/".to_string()
    } else {
        pointer
    };
    Err(Invalid::new(
        &pointer,
        format!("not a valid `{input}`: {error}"),
    ))
}

const DETAILS: &str = "/properties/providerSpecificDetails";

/// The engine's request for a `reProtect` body (ids back to names).
fn reprotect(
    app: &App,
    world: &World,
    machine: &str,
    body: &Value,
) -> Result<(OperationKind, Option<ReprotectSettings>), Invalid> {
    let props = &body["properties"];
    let details = &props["providerSpecificDetails"];
    let direction = props["failoverDirection"].as_str();
    // Both reprotects say `RecoveryToPrimary` in Microsoft's recorded sessions, whichever
    // way they replicate; anything else is refused, as ASR refuses it.
    match (details["instanceType"].as_str(), direction) {
        (Some("InMage"), Some("RecoveryToPrimary")) => {}
        (Some("InMageAzureV2"), Some("RecoveryToPrimary")) => {
            return reprotect_home(app, world, machine, details)
                .map(|settings| (OperationKind::ReprotectHome, Some(settings)));
        }
        (Some(kind @ ("InMage" | "InMageAzureV2")), _) => {
            return Err(Invalid::new(
                "/properties/failoverDirection",
                format!("a `{kind}` reprotect needs `failoverDirection: RecoveryToPrimary`"),
            ));
        }
        (Some(other), _) => {
            return Err(Invalid::new(
                &format!("{DETAILS}/instanceType"),
                format!(
                    "`{other}` is not a VMware failback provider; use `InMage` or `InMageAzureV2`"
                ),
            ));
        }
        (None, _) => {
            return Err(Invalid::new(
                DETAILS,
                "`providerSpecificDetails` with an `instanceType` is required",
            ));
        }
    }
    let field = |name: &str| details[name].as_str().unwrap_or_default();
    let master_target = world
        .master_targets
        .keys()
        .find(|name| render::master_target_id(name) == field("masterTargetId"))
        .cloned()
        .ok_or_else(|| {
            Invalid::new(
                &format!("{DETAILS}/masterTargetId"),
                format!("no master target has the id `{}`", field("masterTargetId")),
            )
        })?;
    let process_server = world
        .process_servers
        .keys()
        .find(|name| render::process_server_id(name) == field("processServerId"))
        .cloned()
        .ok_or_else(|| {
            Invalid::new(
                &format!("{DETAILS}/processServerId"),
                format!(
                    "no process server has the id `{}`",
                    field("processServerId")
                ),
            )
        })?;
    let profile = field("profileId");
    if !profile.eq_ignore_ascii_case(&app.vault().policy_id(render::FAILBACK_POLICY)) {
        return Err(Invalid::new(
            &format!("{DETAILS}/profileId"),
            format!("`{profile}` is not the id of an `InMage` policy of this vault"),
        ));
    }
    let vm = world.machines.get(machine).map(|m| &m.vmware_vm);
    let datastore = match details["datastoreName"].as_str() {
        Some(name) => name.to_string(),
        None => vm
            .and_then(|vm| vm.datastore.as_ref())
            .map(|ds| ds.value.clone())
            .ok_or_else(|| {
                Invalid::new(
                    &format!("{DETAILS}/datastoreName"),
                    format!(
                        "`{machine}` has no VMware VM whose datastore could be reused; name one"
                    ),
                )
            })?,
    };
    // ASR names a Windows volume without its colon (`R` for the world's `R:`): the world's
    // own spelling goes to the sim, as the `sim` provider would send it.
    let retention_drive = world
        .master_targets
        .get(&master_target)
        .and_then(|mt| {
            mt.retention_volumes.iter().find(|v| {
                lifeboat_engine::provider::same_retention_drive(v, field("retentionDrive"))
            })
        })
        .cloned()
        .unwrap_or_else(|| field("retentionDrive").to_string());
    // ASR recovers to the original VM when it still exists, and to a new one otherwise.
    let recovery = if vm.is_some_and(|vm| vm.exists) {
        Recovery::Original
    } else {
        Recovery::Alternate
    };
    Ok((
        OperationKind::Reprotect,
        Some(ReprotectSettings {
            master_target,
            process_server,
            datastore,
            retention_drive,
            recovery,
            failback_policy: "auto".to_string(),
            home: None,
        }),
    ))
}

/// The engine's request for the reprotect back to Azure (`InMageAzureV2ReprotectInput`, ids
/// back to names): a process server and its own master target, a run-as account of the
/// configuration server and the `InMageAzureV2` policy, all required as the recorded session
/// sends them.
fn reprotect_home(
    app: &App,
    world: &World,
    machine: &str,
    details: &Value,
) -> Result<ReprotectSettings, Invalid> {
    let field = |name: &str| -> Result<&str, Invalid> {
        details[name].as_str().ok_or_else(|| {
            Invalid::new(
                &format!("{DETAILS}/{name}"),
                format!("the reprotect to Azure needs `{name}`"),
            )
        })
    };
    let ps_id = field("processServerId")?;
    let process_server = world
        .process_servers
        .keys()
        .find(|name| render::process_server_id(name).eq_ignore_ascii_case(ps_id))
        .cloned()
        .ok_or_else(|| {
            Invalid::new(
                &format!("{DETAILS}/processServerId"),
                format!("no process server has the id `{ps_id}`"),
            )
        })?;
    let mt_id = field("masterTargetId")?;
    if !mt_id.eq_ignore_ascii_case(ps_id) {
        return Err(Invalid::new(
            &format!("{DETAILS}/masterTargetId"),
            format!("`{mt_id}` is not the master target of process server `{process_server}`"),
        ));
    }
    let account_id = field("runAsAccountId")?;
    let run_as_account = world
        .configuration_server
        .run_as_accounts
        .iter()
        .enumerate()
        .find(|(i, _)| render::run_as_account_id(*i) == account_id)
        .map(|(_, name)| name.clone())
        .ok_or_else(|| {
            Invalid::new(
                &format!("{DETAILS}/runAsAccountId"),
                format!("the configuration server has no run-as account `{account_id}`"),
            )
        })?;
    let policy = field("policyId")?;
    if !policy.eq_ignore_ascii_case(&app.vault().policy_id(render::REPLICATION_POLICY)) {
        return Err(Invalid::new(
            &format!("{DETAILS}/policyId"),
            format!("`{policy}` is not the id of an `InMageAzureV2` policy of this vault"),
        ));
    }
    // The sim reads only `home` of a reprotect to Azure; the rest is the machine's record.
    let applied = world.machines.get(machine).map(|m| &m.settings);
    let text = |value: Option<&String>| value.cloned().unwrap_or_default();
    Ok(ReprotectSettings {
        master_target: text(applied.and_then(|s| s.master_target.as_ref())),
        process_server: text(applied.and_then(|s| s.process_server.as_ref())),
        datastore: text(applied.and_then(|s| s.datastore.as_ref())),
        retention_drive: text(applied.and_then(|s| s.retention_drive.as_ref())),
        recovery: applied
            .and_then(|s| s.recovery)
            .unwrap_or(Recovery::Original),
        failback_policy: "auto".to_string(),
        home: Some(HomeSettings {
            process_server,
            run_as_account,
            policy: render::REPLICATION_POLICY.to_string(),
        }),
    })
}

/// `POST …/replicationFabrics/{fabric}/reassociateGateway`: one item's replication moves to
/// another process server (`FailoverProcessServerRequest`, shaped as the official example:
/// the container, both process servers, `updateType`, the items in `vmsToMigrate`). This
/// emulator moves one item per request, which is what lifeboat sends.
async fn reassociate(app: Arc<App>, headers: &HeaderMap, body: &Bytes) -> Response {
    let world = match app.world().await {
        Ok(world) => world,
        Err(response) => return response,
    };
    let parsed = json_body(body, "reassociateGateway", "FailoverProcessServerRequest")
        .and_then(|body| switch_request(&world, &body));
    match parsed {
        Ok((machine, settings)) => {
            launch(
                app,
                &machine,
                OperationKind::SwitchProcessServer,
                Some(settings),
                headers,
            )
            .await
        }
        Err(refused) => refused.response(),
    }
}

fn switch_request(world: &World, body: &Value) -> Result<(String, ReprotectSettings), Invalid> {
    let props = &body["properties"];
    let text = |name: &str| -> Result<&str, Invalid> {
        props[name].as_str().ok_or_else(|| {
            Invalid::new(
                &format!("/properties/{name}"),
                format!("`reassociateGateway` needs `{name}`"),
            )
        })
    };
    let container = text("containerName")?;
    if !container.eq_ignore_ascii_case(render::CONTAINER) {
        return Err(Invalid::new(
            "/properties/containerName",
            format!("no protection container `{container}`"),
        ));
    }
    let ps_name = |pointer: &str, id: &str| {
        world
            .process_servers
            .keys()
            .find(|name| render::process_server_id(name).eq_ignore_ascii_case(id))
            .cloned()
            .ok_or_else(|| Invalid::new(pointer, format!("no process server has the id `{id}`")))
    };
    let source = ps_name(
        "/properties/sourceProcessServerId",
        text("sourceProcessServerId")?,
    )?;
    let target = ps_name(
        "/properties/targetProcessServerId",
        text("targetProcessServerId")?,
    )?;
    let items: Vec<&str> = props["vmsToMigrate"]
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let [item] = items.as_slice() else {
        return Err(Invalid::new(
            "/properties/vmsToMigrate",
            "this emulator moves exactly one item per request",
        ));
    };
    let machine = render::machine_of_item(item)
        .filter(|m| world.machines.contains_key(*m))
        .ok_or_else(|| {
            Invalid::new(
                "/properties/vmsToMigrate/0",
                format!("no protected item `{item}`"),
            )
        })?;
    let applied = &world.machines[machine].settings;
    if applied.process_server.as_deref() != Some(source.as_str()) {
        return Err(Invalid::new(
            "/properties/sourceProcessServerId",
            format!("`{machine}` does not replicate through process server `{source}`"),
        ));
    }
    let missing = || {
        Invalid::new(
            "/properties/vmsToMigrate/0",
            format!("`{machine}` is not reprotected: it has no replication to move"),
        )
    };
    Ok((
        machine.to_string(),
        ReprotectSettings {
            master_target: applied.master_target.clone().ok_or_else(missing)?,
            process_server: target,
            datastore: applied.datastore.clone().ok_or_else(missing)?,
            retention_drive: applied.retention_drive.clone().ok_or_else(missing)?,
            recovery: applied.recovery.ok_or_else(missing)?,
            failback_policy: applied
                .failback_policy
                .clone()
                .unwrap_or_else(|| "auto".to_string()),
            home: None,
        },
    ))
}

/// `POST …/{item}/{action}`: validate, start an ASR job, answer 202 (contract §6).
async fn start(
    app: Arc<App>,
    path: &str,
    item: &str,
    action: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let world = match app.world().await {
        Ok(world) => world,
        Err(response) => return response,
    };
    let Some(machine) = render::machine_of_item(item).filter(|m| world.machines.contains_key(*m))
    else {
        return not_found(path);
    };
    let (kind, settings) = match action {
        "reprotect" => {
            let parsed = json_body(body, "reProtect", "ReverseReplicationInput")
                .and_then(|b| {
                    validate(&app.schemas.reprotect, &b, "ReverseReplicationInput").map(|()| b)
                })
                .and_then(|b| reprotect(&app, &world, machine, &b));
            match parsed {
                Ok(parsed) => parsed,
                Err(refused) => return refused.response(),
            }
        }
        "unplannedfailover" => {
            let checked =
                json_body(body, "unplannedFailover", "UnplannedFailoverInput").and_then(|b| {
                    validate(&app.schemas.failover, &b, "UnplannedFailoverInput").map(|()| b)
                });
            // The failback of an `InMage` item is `PrimaryToRecovery` (recorded); Microsoft's
            // cmdlet calls the other direction "Invalid for InMage".
            match checked {
                Ok(b)
                    if b["properties"]["providerSpecificDetails"]["instanceType"].as_str()
                        != Some("InMage") =>
                {
                    return invalid(
                        &format!("{DETAILS}/instanceType"),
                        "a failback to VMware needs `instanceType: InMage`",
                    );
                }
                Ok(b)
                    if b["properties"]["failoverDirection"].as_str()
                        == Some("PrimaryToRecovery") =>
                {
                    (OperationKind::Failback, None)
                }
                Ok(_) => {
                    return invalid(
                        "/properties/failoverDirection",
                        "RecoveryToPrimary Direction is Invalid for InMage: a failback needs `failoverDirection: PrimaryToRecovery`",
                    );
                }
                Err(refused) => return refused.response(),
            }
        }
        "failovercommit" => {
            // `failoverCommit` takes no input in the definitions: no body, or an empty object.
            if !body.iter().all(u8::is_ascii_whitespace) {
                match serde_json::from_slice::<Value>(body) {
                    Ok(Value::Object(map)) if map.is_empty() => {}
                    Ok(_) => {
                        return Invalid::new("/", "`failoverCommit` takes no body").response();
                    }
                    Err(error) => {
                        return Invalid::new("/", format!("the body is not JSON: {error}"))
                            .response();
                    }
                }
            }
            (OperationKind::Commit, None)
        }
        _ => return not_found(path),
    };
    launch(app, machine, kind, settings, headers).await
}

/// Starts the sim's operation as an ASR job and answers as ARM does: 202, or the transient
/// refusal.
async fn launch(
    app: Arc<App>,
    machine: &str,
    kind: OperationKind,
    settings: Option<ReprotectSettings>,
    headers: &HeaderMap,
) -> Response {
    let name = uuid::Uuid::new_v4().to_string();
    // ASR keeps the client's request id in the job's `activityId`, followed by its own
    // correlation id, as recorded: `"<GUID> ActivityId: <GUID>"`.
    let client = headers
        .get("x-ms-client-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let activity_id = format!("{client} ActivityId: {}", uuid::Uuid::new_v4());
    app.jobs.insert(Job {
        name: name.clone(),
        kind,
        machine: machine.to_string(),
        activity_id,
        start: jiff::Timestamp::now(),
        state: JobState::InProgress,
    });
    let request = OperationRequest {
        id: OperationId(name.clone()),
        machine: machine.to_string(),
        kind,
        reprotect: settings,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let runner = app.clone();
    tokio::spawn(async move {
        let result = runner.provider.run(&request).await;
        runner.jobs.finish(&request.id.0, &result);
        let _ = tx.send(result);
    });
    // The answer depends on whether the sim refused the start with a transient error (ASR
    // answers those at once) or took the operation on (then 202, even if it fails at once).
    let id = OperationId(name.clone());
    // Biased: when the sim has both refused the start and recorded it by the time this is
    // polled, the refusal must win, or a transient refusal would be answered 202.
    tokio::select! {
        biased;
        result = rx => {
            if let Ok(Err(error)) = result && error.is_transient() {
                app.jobs.remove(&name);
                return transient_refusal(&app, &error);
            }
        }
        () = started(&app.provider, &id) => {}
    }
    accepted(&app, &name)
}

/// Returns once the sim knows the operation (running or ended).
async fn started(provider: &SimProvider, id: &OperationId) {
    loop {
        match provider.status(id).await {
            Ok(OperationStatus::Unknown) => tokio::time::sleep(Duration::from_millis(5)).await,
            _ => return,
        }
    }
}

fn retry_seconds(app: &App, error: &ProviderError) -> u64 {
    error
        .retry_after
        .map(|after| after.as_secs() + u64::from(after.subsec_nanos() > 0))
        .unwrap_or(app.config.retry_after)
}

/// A transient refusal: 409 for a job already running on the item, the code's own status
/// for an injected HTTP status (429, 5xx), 503 otherwise, with the sim's code.
fn transient_refusal(app: &App, error: &ProviderError) -> Response {
    let code = error
        .code
        .clone()
        .unwrap_or_else(|| "ServiceUnavailable".to_string());
    let status = match code
        .parse::<u16>()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
    {
        Some(status) if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() => {
            status
        }
        _ if code == "conflict" => StatusCode::CONFLICT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    with_retry_after(
        arm_error(status, &code, error.message.clone()),
        retry_seconds(app, error),
    )
}

fn accepted(app: &App, job: &str) -> Response {
    let style = match app.config.lro_headers {
        LroHeaders::Rotate => [LroHeaders::Both, LroHeaders::Async, LroHeaders::Location]
            [app.lro_turn.fetch_add(1, Ordering::SeqCst) % 3],
        style => style,
    };
    let base = app.vault().base();
    let mut response =
        with_retry_after(StatusCode::ACCEPTED.into_response(), app.config.retry_after);
    let mut set = |name: HeaderName, url: String| {
        if let Ok(value) = HeaderValue::from_str(&url) {
            response.headers_mut().insert(name, value);
        }
    };
    if matches!(style, LroHeaders::Both | LroHeaders::Async) {
        set(
            HeaderName::from_static("azure-asyncoperation"),
            app.url(&format!("{base}/replicationOperationStatus/{job}")),
        );
    }
    if matches!(style, LroHeaders::Both | LroHeaders::Location) {
        set(
            header::LOCATION,
            app.url(&format!("{base}/operationResults/{job}")),
        );
    }
    response
}

/// The `Location` URL: 202 while the job runs, the item when it succeeded, the ARM error
/// when it failed (400 permanent, 503 transient).
async fn operation_result(app: &App, path: &str, job: &str) -> Response {
    let Some(job) = app.jobs.get(job) else {
        return not_found(path);
    };
    match &job.state {
        JobState::InProgress => {
            let mut response =
                with_retry_after(StatusCode::ACCEPTED.into_response(), app.config.retry_after);
            if let Ok(value) = HeaderValue::from_str(&app.url(path)) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        JobState::Succeeded(_) => {
            let world = match app.world().await {
                Ok(world) => world,
                Err(response) => return response,
            };
            render::item_of(app.vault(), &world, &job.machine)
                .map_or_else(|| not_found(path), |item| axum::Json(item).into_response())
        }
        JobState::Failed(_, error) => {
            let status = if error.is_transient() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            };
            arm_error(status, &Job::error_code(error), error.message.clone())
        }
    }
}
