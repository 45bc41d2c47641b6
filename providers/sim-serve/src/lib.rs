//! `lifeboat sim serve`: a simulated estate (a `sim` world file) served as the Azure Site
//! Recovery ARM REST API, with an OAuth token endpoint, over HTTPS on loopback.
//!
//! The wire contract is `docs/sim-serve-contract.md` (shared with the `azure` provider, which is
//! written against it): ready line, tokens, api-version, paging, long-running operations,
//! jobs, throttling and ARM error shapes. What the estate does is the `sim` provider's
//! business: every action runs through [`SimProvider::run`] with the ASR job name as the
//! operation id, so the same rules, durations, faults and world file apply, and the world
//! ends as if the `sim` provider had run the operations itself.
//!
//! Architecture invariant: this crate does not depend on `lifeboat-provider-azure`. It is an
//! independent implementation from `asr-api/definitions.json`, so the client is never
//! tested against its own models.

pub mod render;
pub mod swagger;

mod api;
mod jobs;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_provider_sim::SimProvider;

pub use render::Vault;

/// The one api-version the emulator answers (the newest stable one in `shared/asr-api/`).
pub const API_VERSION: &str = "2026-05-01";

/// The tenant the ready lines name. Any tenant in the token URL is accepted.
pub const TENANT_ID: &str = "11111111-1111-1111-1111-111111111111";
/// The client id the ready lines name. Any client id is accepted.
pub const CLIENT_ID: &str = "22222222-2222-2222-2222-222222222222";
/// The environment variable holding the one client secret to accept.
pub const SECRET_ENV: &str = "LIFEBOAT_SIM_CLIENT_SECRET";

/// Which long-running-operation headers a 202 carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LroHeaders {
    Both,
    Async,
    Location,
    /// Cycles through `both`, `async` and `location`, one per request.
    Rotate,
}

impl std::str::FromStr for LroHeaders {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "both" => Ok(Self::Both),
            "async" => Ok(Self::Async),
            "location" => Ok(Self::Location),
            "rotate" => Ok(Self::Rotate),
            other => Err(format!(
                "unknown LRO header style `{other}`; use `both`, `async`, `location` or `rotate`"
            )),
        }
    }
}

/// Everything `sim serve` is told. Its `Debug` prints the client secret as `***`.
#[derive(Clone)]
pub struct Config {
    pub world: PathBuf,
    pub listen: SocketAddr,
    /// Where the certificate (PEM) goes; default `<world>.serve.pem`.
    pub cert_out: Option<PathBuf>,
    pub page_size: usize,
    /// Seconds, sent as `Retry-After` with every 202.
    pub retry_after: u64,
    pub lro_headers: LroHeaders,
    pub token_lifetime: Duration,
    /// Answer every Nth ARM request with 429; `None` or 0: never.
    pub throttle_every: Option<u64>,
    pub vault: Vault,
    /// The one client secret accepted; `None`: any non-empty secret.
    pub client_secret: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("world", &self.world)
            .field("listen", &self.listen)
            .field("cert_out", &self.cert_out)
            .field("page_size", &self.page_size)
            .field("retry_after", &self.retry_after)
            .field("lro_headers", &self.lro_headers)
            .field("token_lifetime", &self.token_lifetime)
            .field("throttle_every", &self.throttle_every)
            .field("vault", &self.vault)
            // The secret would otherwise reach any log or panic message that shows the config.
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Config {
    /// The defaults of the contract for `world`, listening on `127.0.0.1:0`.
    pub fn new(world: impl Into<PathBuf>) -> Self {
        Self {
            world: world.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            cert_out: None,
            page_size: 100,
            retry_after: 1,
            lro_headers: LroHeaders::Both,
            token_lifetime: Duration::from_secs(3600),
            throttle_every: None,
            vault: Vault {
                subscription: "00000000-0000-0000-0000-000000000000".to_string(),
                resource_group: "rg-lifeboat".to_string(),
                name: "vault-lifeboat".to_string(),
            },
            client_secret: None,
        }
    }

    /// `<world>.serve.pem`, next to the world.
    pub fn cert_path(&self) -> PathBuf {
        self.cert_out.clone().unwrap_or_else(|| {
            let mut name = self.world.file_name().unwrap_or_default().to_os_string();
            name.push(".serve.pem");
            self.world.with_file_name(name)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "`sim serve` listens on loopback only, not on `{0}`; use `127.0.0.1:PORT` or `[::1]:PORT`"
    )]
    NotLoopback(SocketAddr),
    #[error("`--page-size` must be at least 1")]
    PageSize,
    #[error("cannot open the world: {0}")]
    World(String),
    #[error("cannot listen on `{addr}`: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot make the TLS certificate: {0}")]
    Tls(String),
    #[error("cannot write the certificate to `{path}`: {error}")]
    Certificate {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{0}")]
    Definitions(String),
}

/// A running emulator.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    cert_pem: String,
    cert_path: PathBuf,
    secret_from_env: bool,
    vault: Vault,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The world's provider, to fold its journal into the world file at shutdown.
    world: SimProvider,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The certificate the server presents (PEM), also written to [`Server::cert_path`].
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// What `sim serve` prints: the ready line first (contract §2), then the settings.
    pub fn ready_lines(&self) -> String {
        let secret = if self.secret_from_env {
            format!("\"${SECRET_ENV}\"")
        } else {
            "sim-secret".to_string()
        };
        let v = &self.vault;
        format!(
            "listening on {url}\n\
             # the settings for the `azure` provider (any non-empty secret is accepted unless `{SECRET_ENV}` is set):\n\
             export AZURE_AUTHORITY_HOST={url}\n\
             export AZURE_TENANT_ID={TENANT_ID}\n\
             export AZURE_CLIENT_ID={CLIENT_ID}\n\
             export AZURE_CLIENT_SECRET={secret}\n\
             export SSL_CERT_FILE={cert}\n\
             # the plan's provider block:\n\
             # provider:\n\
             #   azure:\n\
             #     subscription_id: {sub}\n\
             #     resource_group: {rg}\n\
             #     vault: {vault}\n\
             #     resource_manager_endpoint: {url}\n\
             #     api_version: \"{API_VERSION}\"\n\
             #     credential: client-secret\n",
            url = self.url(),
            cert = self.cert_path.display(),
            sub = v.subscription,
            rg = v.resource_group,
            vault = v.name,
        )
    }

    /// Stops accepting connections, lets requests in flight finish (up to five seconds) and
    /// returns. Operations still running stay in the world file with their end time, so
    /// they finish there whoever reads the world next; only the in-memory jobs are lost.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        let _ = self.task.await;
        // The world file alone is the world again; a failure leaves the journal, which the
        // next reader folds in.
        let _ = self.world.compact().await;
    }
}

/// Starts the emulator: opens the world, makes and writes the certificate, binds and serves
/// in the background. Returns once it is listening.
pub async fn serve(config: Config) -> Result<Server, ServeError> {
    if !config.listen.ip().is_loopback() {
        return Err(ServeError::NotLoopback(config.listen));
    }
    if config.page_size == 0 {
        return Err(ServeError::PageSize);
    }
    let provider =
        SimProvider::open(&config.world).map_err(|e| ServeError::World(e.to_string()))?;
    let schemas = api::Schemas::new().map_err(ServeError::Definitions)?;

    let certified = rcgen::generate_simple_self_signed(vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ])
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    let cert_pem = certified.cert.pem();
    let cert_path = config.cert_path();
    std::fs::write(&cert_path, &cert_pem).map_err(|error| ServeError::Certificate {
        path: cert_path.clone(),
        error,
    })?;
    // Absolute, so that the printed `SSL_CERT_FILE` works from any directory.
    let cert_path = std::fs::canonicalize(&cert_path).unwrap_or(cert_path);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    // The provider named explicitly: the binary has one (aws-lc-rs, reqwest's), but a
    // process default is not something a library should rely on.
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ServeError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(vec![certified.cert.der().clone()], key)
    .map_err(|e| ServeError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];

    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|error| ServeError::Listen {
            addr: config.listen,
            error,
        })?;
    let listen_error = |error| ServeError::Listen {
        addr: config.listen,
        error,
    };
    listener.set_nonblocking(true).map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;

    let secret_from_env = config.client_secret.is_some();
    let vault = config.vault.clone();
    let world = provider.clone();
    let app = api::router(api::App::new(config, addr, provider, schemas));
    let handle = axum_server::Handle::new();
    let server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(tls)),
    )
    .handle(handle.clone());
    let task = tokio::spawn(async move { server.serve(app.into_make_service()).await });
    Ok(Server {
        addr,
        cert_pem,
        cert_path,
        secret_from_env,
        vault,
        handle,
        task,
        world,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_client_secret() {
        let mut config = Config::new("/tmp/world.yaml");
        config.client_secret = Some("sim-SECRET-3e1f".into());
        let text = format!("{config:?}");
        assert!(!text.contains("sim-SECRET-3e1f"), "{text}");
        assert!(text.contains("***"), "{text}");
    }
}
