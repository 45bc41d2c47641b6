//! The `azure_blob` state backend: the state is one block blob, written whole.
//!
//! - **Compare-and-swap**: every write sends `If-Match` with the ETag this process read or
//!   last wrote; another write in between makes it fail with 412, never overwrite.
//! - **Leases**: the lock is the blob's own lease, always of a finite duration (15 to 60
//!   seconds, what Azure allows; never the infinite lease that outlives a cancelled
//!   pipeline), renewed while the process lives. The lease id is the lock id, proposed by
//!   lifeboat, so a retried acquire of a lease already ours succeeds as Azure documents.
//! - **Fencing**: the blob's metadata holds an epoch, raised by each acquisition (except a
//!   retry of our own), and the holder's lock id and owner. Raising it changes the ETag, so
//!   a writer from an older epoch fails its `If-Match` even if its lease id were still
//!   accepted; and its lease id no longer is.
//! - **Journal**: the pending operations are in the document; an appended record is applied
//!   to the document this process last wrote and the blob written whole (a blob cannot be
//!   changed in part under one condition), so a write costs the size of the state.
//!
//! The REST calls are written here over reqwest, signed with SharedKey (what Azurite and an
//! account key need) or carrying a bearer token from the azure provider's credential chain.
//! `azure_storage_blob` (Microsoft's crate on the azure_core 1.x the binary uses) has no
//! SharedKey authentication, and the older `azure_storage_blobs` would bring a second
//! azure_core, reqwest and TLS stack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use lifeboat_engine::state::remote::{
    Acquired, Holder, Lease, RemoteError, RemoteStore, Snapshot, Version,
};
use lifeboat_engine::state::{LockInfo, State, StateDelta};
use lifeboat_provider_azure::credential::{Credential, TokenSource};
use reqwest::{Method, StatusCode};
use sha2::Sha256;
use url::Url;

/// The REST API version sent; Azurite knows it.
const API_VERSION: &str = "2021-12-02";

/// The scope of a bearer token for Azure Storage.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";

/// Metadata keys (Azure wants C# identifiers).
const META_EPOCH: &str = "lifeboat_epoch";
const META_LOCK: &str = "lifeboat_lock_id";
const META_OWNER: &str = "lifeboat_lock_owner";

/// How many times (100 ms apart) a contender looks for a new holder's name.
const OWNER_GRACE_POLLS: u32 = 10;

/// Azure's finite lease durations.
const LEASE_RANGE: (u64, u64) = (15, 60);

/// How requests are authorised.
enum Auth {
    /// An account key (a connection string's `AccountKey`, or `AZURE_STORAGE_KEY`).
    SharedKey { account: String, key: Vec<u8> },
    /// A bearer token from the Azure credential chain.
    Token(Arc<Credential>),
}

/// A state kept in an Azure Storage blob.
pub struct AzureBlobStore {
    http: reqwest::Client,
    auth: Auth,
    container_url: Url,
    blob_url: Url,
    location: String,
    /// The document this process last read or wrote, its ETag and metadata: an appended
    /// record is applied to it and the blob written whole.
    cache: tokio::sync::Mutex<Option<Cached>>,
}

struct Cached {
    state: State,
    metadata: BTreeMap<String, String>,
}

impl std::fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not `auth`: it holds the key.
        f.debug_struct("AzureBlobStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

/// One response, with what lifeboat reads of it.
struct Answer {
    status: StatusCode,
    code: Option<String>,
    etag: Option<String>,
    lease_state: Option<String>,
    metadata: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl AzureBlobStore {
    /// The store of blob `blob` in `container` of the account at `account_url`, with
    /// credentials from the environment.
    pub fn from_env(account_url: &str, container: &str, blob: &str) -> Result<Self, String> {
        Self::from_vars(account_url, container, blob, |name| {
            std::env::var(name).ok().filter(|v| !v.is_empty())
        })
    }

    /// [`Self::from_env`] with the variables read through `var`.
    pub fn from_vars(
        account_url: &str,
        container: &str,
        blob: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let base = Url::parse(account_url.trim_end_matches('/'))
            .map_err(|e| format!("`{account_url}` is not a URL: {e}"))?;
        let loopback = lifeboat_provider_azure::config::is_loopback(&base);
        if base.scheme() != "https" && !(base.scheme() == "http" && loopback) {
            return Err(format!(
                "`{account_url}` is not HTTPS (plain HTTP only on loopback, for Azurite)"
            ));
        }
        let http = lifeboat_provider_azure::config::http_client().map_err(|e| e.to_string())?;
        let account = account_name(&base, loopback)?;
        let auth = auth_from_env(var, &account, &http)?;
        let mut container_url = base.clone();
        container_url
            .path_segments_mut()
            .map_err(|()| format!("`{account_url}` cannot hold a container"))?
            .pop_if_empty()
            .push(container);
        let mut blob_url = container_url.clone();
        blob_url
            .path_segments_mut()
            .map_err(|()| format!("`{account_url}` cannot hold a blob"))?
            .push(blob);
        Ok(Self {
            http,
            auth,
            location: blob_url.to_string(),
            container_url,
            blob_url,
            cache: tokio::sync::Mutex::new(None),
        })
    }

    /// Sends one signed request.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Answer, RemoteError> {
        let date = jiff::Timestamp::now()
            .strftime("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect();
        all.push(("x-ms-date".to_string(), date));
        all.push(("x-ms-version".to_string(), API_VERSION.to_string()));
        let length = body.as_ref().map_or(0, Vec::len);
        let authorization = match &self.auth {
            Auth::SharedKey { account, key } => {
                let signed = string_to_sign(&method, url, &all, length, account);
                let mut mac = Hmac::<Sha256>::new_from_slice(key)
                    .map_err(|_| RemoteError::Refused("the account key is unusable".to_string()))?;
                mac.update(signed.as_bytes());
                let signature =
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                format!("SharedKey {account}:{signature}")
            }
            Auth::Token(credential) => {
                let token = credential
                    .token(STORAGE_SCOPE, false)
                    .await
                    .map_err(|e| RemoteError::Refused(e.message))?;
                format!("Bearer {}", token.secret())
            }
        };
        let mut request = self
            .http
            .request(method, url.clone())
            .header("authorization", authorization);
        for (name, value) in &all {
            request = request.header(name.as_str(), value.as_str());
        }
        request = request.header("content-length", length.to_string());
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| {
            // reqwest names the URL, which holds no secret (no SAS token is ever used).
            RemoteError::Unavailable(format!("cannot reach Azure Storage: {}", error_chain(&e)))
        })?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let status = response.status();
        let code = header("x-ms-error-code");
        let etag = header("etag");
        let lease_state = header("x-ms-lease-state");
        let metadata = response
            .headers()
            .iter()
            .filter_map(|(name, value)| {
                let key = name.as_str().strip_prefix("x-ms-meta-")?;
                Some((key.to_ascii_lowercase(), value.to_str().ok()?.to_string()))
            })
            .collect();
        if response
            .content_length()
            .is_some_and(|n| n > lifeboat_engine::input::MAX_INPUT_BYTES)
        {
            return Err(RemoteError::Invalid(
                "the stored blob is larger than lifeboat reads".to_string(),
            ));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| RemoteError::Unavailable(format!("the answer was cut off: {e}")))?
            .to_vec();
        if body.len() as u64 > lifeboat_engine::input::MAX_INPUT_BYTES {
            return Err(RemoteError::Invalid(
                "the stored blob is larger than lifeboat reads".to_string(),
            ));
        }
        let answer = Answer {
            status,
            code,
            etag,
            lease_state,
            metadata,
            body,
        };
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            return Err(RemoteError::Unavailable(answer.describe()));
        }
        if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
            return Err(RemoteError::Refused(format!(
                "Azure Storage refused the credentials: {}",
                answer.describe()
            )));
        }
        Ok(answer)
    }

    async fn properties(&self) -> Result<Option<Answer>, RemoteError> {
        let answer = self.send(Method::HEAD, &self.blob_url, &[], None).await?;
        match answer.status {
            StatusCode::OK => Ok(Some(answer)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(answer.unexpected("reading the blob's properties")),
        }
    }

    async fn create_container(&self) -> Result<(), RemoteError> {
        let mut url = self.container_url.clone();
        url.set_query(Some("restype=container"));
        let answer = self.send(Method::PUT, &url, &[], None).await?;
        match answer.status {
            StatusCode::CREATED | StatusCode::CONFLICT => Ok(()),
            _ => Err(answer.unexpected("creating the container")),
        }
    }

    /// Creates the blob empty (no state yet) if it does not exist, and the container too.
    async fn create_blob(&self) -> Result<(), RemoteError> {
        for attempt in 0..2 {
            let answer = self
                .send(
                    Method::PUT,
                    &self.blob_url,
                    &[
                        ("x-ms-blob-type", "BlockBlob".to_string()),
                        ("if-none-match", "*".to_string()),
                    ],
                    Some(Vec::new()),
                )
                .await?;
            match (answer.status, answer.code.as_deref()) {
                (StatusCode::CREATED, _)
                | (StatusCode::CONFLICT, _)
                | (StatusCode::PRECONDITION_FAILED, _) => return Ok(()),
                (StatusCode::NOT_FOUND, Some("ContainerNotFound")) if attempt == 0 => {
                    self.create_container().await?;
                }
                _ => return Err(answer.unexpected("creating the blob")),
            }
        }
        Ok(())
    }

    async fn lease_action(
        &self,
        action: &str,
        id: &str,
        duration: Option<u64>,
    ) -> Result<Answer, RemoteError> {
        let mut url = self.blob_url.clone();
        url.set_query(Some("comp=lease"));
        let mut headers = vec![("x-ms-lease-action", action.to_string())];
        match action {
            "acquire" => {
                headers.push(("x-ms-proposed-lease-id", id.to_string()));
                if let Some(duration) = duration {
                    headers.push(("x-ms-lease-duration", duration.to_string()));
                }
            }
            _ => headers.push(("x-ms-lease-id", id.to_string())),
        }
        self.send(Method::PUT, &url, &headers, Some(Vec::new()))
            .await
    }

    /// Replaces the blob's metadata, under our lease and the ETag named.
    async fn set_metadata(
        &self,
        lease_id: Option<&str>,
        etag: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Answer, RemoteError> {
        let mut url = self.blob_url.clone();
        url.set_query(Some("comp=metadata"));
        let mut headers = meta_headers(metadata);
        headers.push(("if-match", etag.to_string()));
        if let Some(id) = lease_id {
            headers.push(("x-ms-lease-id", id.to_string()));
        }
        self.send(Method::PUT, &url, &headers, Some(Vec::new()))
            .await
    }

    /// The holder recorded in the metadata of `answer`.
    fn owner_of(answer: &Answer) -> Option<LockInfo> {
        let encoded = answer.metadata.get(META_OWNER)?;
        let json = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The owner a live lease's holder recorded, waiting a moment for one that has just
    /// taken the lease and is still writing who it is (the two cannot be one request).
    async fn announced_owner(&self) -> Result<Option<LockInfo>, RemoteError> {
        for _ in 0..OWNER_GRACE_POLLS {
            if let Some(owner) = self.properties().await?.as_ref().and_then(Self::owner_of) {
                return Ok(Some(owner));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(None)
    }

    /// Why a conditional write failed: another holder (fenced), or another write (conflict).
    async fn refusal(&self, lease: &Lease) -> RemoteError {
        match self.properties().await {
            Ok(Some(now)) => {
                let ours = now.metadata.get(META_LOCK).map(String::as_str) == Some(&lease.id)
                    && epoch(&now.metadata) == lease.epoch
                    && now.lease_state.as_deref() != Some("broken");
                if ours {
                    RemoteError::Conflict
                } else {
                    RemoteError::Fenced(Self::owner_of(&now).map(Box::new))
                }
            }
            Ok(None) => RemoteError::Fenced(None),
            Err(error) => error,
        }
    }

    /// Writes `state` whole, conditional on `expected` and our lease.
    async fn put_state(
        &self,
        lease: &Lease,
        expected: Option<&Version>,
        state: &State,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Version, RemoteError> {
        let mut headers = meta_headers(metadata);
        headers.push(("x-ms-blob-type", "BlockBlob".to_string()));
        headers.push(("x-ms-blob-content-type", "application/json".to_string()));
        headers.push(("x-ms-lease-id", lease.id.clone()));
        match expected {
            Some(version) => headers.push(("if-match", version.0.clone())),
            None => headers.push(("if-none-match", "*".to_string())),
        }
        let answer = self
            .send(
                Method::PUT,
                &self.blob_url,
                &headers,
                Some(state.to_json().into_bytes()),
            )
            .await?;
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => answer
                .etag
                .map(Version)
                .ok_or_else(|| RemoteError::Invalid("Azure Storage sent no ETag".to_string())),
            StatusCode::PRECONDITION_FAILED | StatusCode::CONFLICT => {
                Err(self.refusal(lease).await)
            }
            _ => Err(answer.unexpected("writing the state")),
        }
    }

    /// The metadata a holder writes: the epoch and who holds the lock.
    fn holder_metadata(lease: &Lease, owner: Option<&str>) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::from([
            (META_EPOCH.to_string(), lease.epoch.to_string()),
            (META_LOCK.to_string(), lease.id.clone()),
        ]);
        if let Some(owner) = owner {
            metadata.insert(META_OWNER.to_string(), owner.to_string());
        }
        metadata
    }
}

impl Answer {
    fn describe(&self) -> String {
        let code = self
            .code
            .as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        format!("HTTP {}{code}", self.status.as_u16())
    }

    fn unexpected(&self, doing: &str) -> RemoteError {
        RemoteError::Refused(format!("{doing} failed: {}", self.describe()))
    }
}

fn epoch(metadata: &BTreeMap<String, String>) -> u64 {
    metadata
        .get(META_EPOCH)
        .and_then(|e| e.parse().ok())
        .unwrap_or(0)
}

fn meta_headers(metadata: &BTreeMap<String, String>) -> Vec<(&'static str, String)> {
    metadata
        .iter()
        .map(|(key, value)| {
            let name: &'static str = match key.as_str() {
                META_EPOCH => "x-ms-meta-lifeboat_epoch",
                META_LOCK => "x-ms-meta-lifeboat_lock_id",
                _ => "x-ms-meta-lifeboat_lock_owner",
            };
            (name, value.clone())
        })
        .collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The account: `ACCOUNT.blob.core.windows.net`'s first label, or on loopback (Azurite's
/// path style) the first path segment.
fn account_name(url: &Url, loopback: bool) -> Result<String, String> {
    let name = if loopback {
        url.path_segments()
            .and_then(|mut s| s.next())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    } else {
        url.host_str()
            .and_then(|h| h.split('.').next())
            .map(str::to_string)
    };
    name.ok_or_else(|| format!("`{url}` names no storage account"))
}

/// Credentials from the environment: a connection string's account key, `AZURE_STORAGE_KEY`,
/// or the Azure credential chain. Messages name variables, never values.
fn auth_from_env(
    var: impl Fn(&str) -> Option<String>,
    account: &str,
    http: &reqwest::Client,
) -> Result<Auth, String> {
    let decode = |key: &str, from: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| format!("the account key in `{from}` is not base64"))
    };
    if let Some(connection) = var("AZURE_STORAGE_CONNECTION_STRING") {
        let pairs: BTreeMap<String, String> = connection
            .split(';')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let Some(key) = pairs.get("accountkey") else {
            return Err(
                "`AZURE_STORAGE_CONNECTION_STRING` has no `AccountKey`; lifeboat signs with an account key (or unset it to use the Azure credential chain)"
                    .to_string(),
            );
        };
        let name = pairs
            .get("accountname")
            .cloned()
            .unwrap_or_else(|| account.to_string());
        return Ok(Auth::SharedKey {
            account: name,
            key: decode(key, "AZURE_STORAGE_CONNECTION_STRING")?,
        });
    }
    if let Some(key) = var("AZURE_STORAGE_KEY") {
        let name = var("AZURE_STORAGE_ACCOUNT").unwrap_or_else(|| account.to_string());
        return Ok(Auth::SharedKey {
            account: name,
            key: decode(&key, "AZURE_STORAGE_KEY")?,
        });
    }
    Ok(Auth::Token(Arc::new(Credential::chain(http.clone()))))
}

/// SharedKey's string to sign (the Blob service, version 2009-09-19 and later).
fn string_to_sign(
    method: &Method,
    url: &Url,
    headers: &[(String, String)],
    length: usize,
    account: &str,
) -> String {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    };
    let length = if length == 0 {
        String::new()
    } else {
        length.to_string()
    };
    let mut canonical_headers: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .map(|(k, v)| (k.as_str(), v.trim()))
        .collect();
    canonical_headers.sort();
    let mut text = format!(
        "{method}\n\n\n{length}\n\n{}\n\n\n{}\n{}\n\n\n",
        get("content-type"),
        get("if-match"),
        get("if-none-match"),
    );
    for (name, value) in canonical_headers {
        text.push_str(&format!("{name}:{value}\n"));
    }
    text.push_str(&format!("/{account}{}", url.path()));
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in url.query_pairs() {
        query
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(value.into_owned());
    }
    for (name, mut values) in query {
        values.sort();
        text.push_str(&format!("\n{name}:{}", values.join(",")));
    }
    text
}

#[async_trait::async_trait]
impl RemoteStore for AzureBlobStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn read(&self) -> Result<Snapshot, RemoteError> {
        let answer = self.send(Method::GET, &self.blob_url, &[], None).await?;
        match answer.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Ok(Snapshot {
                    state: None,
                    version: None,
                });
            }
            _ => return Err(answer.unexpected("reading the state")),
        }
        let version = answer.etag.clone().map(Version);
        if answer.body.is_empty() {
            return Ok(Snapshot {
                state: None,
                version,
            });
        }
        let text = String::from_utf8(answer.body)
            .map_err(|_| RemoteError::Invalid("not UTF-8 text".to_string()))?;
        let state = State::from_json(&text).map_err(|e| RemoteError::Invalid(e.to_string()))?;
        *self.cache.lock().await = Some(Cached {
            state: state.clone(),
            metadata: answer.metadata,
        });
        Ok(Snapshot {
            state: Some(state),
            version,
        })
    }

    async fn acquire(&self, owner: &LockInfo, duration: Duration) -> Result<Acquired, RemoteError> {
        let seconds = duration.as_secs().clamp(LEASE_RANGE.0, LEASE_RANGE.1);
        let mut answer = self
            .lease_action("acquire", &owner.id, Some(seconds))
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            self.create_blob().await?;
            answer = self
                .lease_action("acquire", &owner.id, Some(seconds))
                .await?;
        }
        match answer.status {
            StatusCode::CREATED | StatusCode::OK => {}
            StatusCode::CONFLICT => {
                return Ok(Acquired::Held(Holder {
                    info: self.announced_owner().await?,
                    live: true,
                }));
            }
            _ => return Err(answer.unexpected("acquiring the lease")),
        }
        // The lease is ours; raise the epoch unless this is a retry of our own acquisition.
        let Some(now) = self.properties().await? else {
            return Err(RemoteError::Unavailable(
                "the blob disappeared while its lease was taken".to_string(),
            ));
        };
        if now.metadata.get(META_LOCK).map(String::as_str) == Some(&owner.id) {
            return Ok(Acquired::Ours {
                epoch: epoch(&now.metadata),
            });
        }
        let lease = Lease {
            id: owner.id.clone(),
            epoch: epoch(&now.metadata) + 1,
            duration,
        };
        let json = serde_json::to_vec(owner).expect("lock info is plain data");
        let encoded = base64::engine::general_purpose::STANDARD.encode(json);
        let metadata = Self::holder_metadata(&lease, Some(&encoded));
        let etag = now.etag.clone().unwrap_or_default();
        let written = self.set_metadata(Some(&owner.id), &etag, &metadata).await?;
        if written.status != StatusCode::OK {
            return Err(written.unexpected("recording the lock's owner"));
        }
        Ok(Acquired::Ours { epoch: lease.epoch })
    }

    async fn renew(&self, lease: &Lease) -> Result<(), RemoteError> {
        let answer = self.lease_action("renew", &lease.id, None).await?;
        match answer.status {
            StatusCode::OK => Ok(()),
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {
                Err(self.refusal(lease).await.fenced())
            }
            _ => Err(answer.unexpected("renewing the lease")),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), RemoteError> {
        // The owner goes first, so nobody is named as holding a lock it gave up.
        if let Some(now) = self.properties().await?
            && now.metadata.get(META_LOCK).map(String::as_str) == Some(&lease.id)
        {
            let metadata = BTreeMap::from([(META_EPOCH.to_string(), lease.epoch.to_string())]);
            let etag = now.etag.clone().unwrap_or_default();
            self.set_metadata(Some(&lease.id), &etag, &metadata).await?;
        }
        self.lease_action("release", &lease.id, None).await?;
        Ok(())
    }

    async fn write(
        &self,
        lease: &Lease,
        expected: Option<&Version>,
        state: &State,
    ) -> Result<Version, RemoteError> {
        let mut cache = self.cache.lock().await;
        let owner = cache
            .as_ref()
            .and_then(|c| c.metadata.get(META_OWNER).cloned());
        let metadata = Self::holder_metadata(lease, owner.as_deref());
        let version = self.put_state(lease, expected, state, &metadata).await;
        *cache = match &version {
            Ok(_) => Some(Cached {
                state: state.clone(),
                metadata,
            }),
            Err(_) => None,
        };
        version
    }

    async fn append(
        &self,
        lease: &Lease,
        expected: &Version,
        delta: &StateDelta,
    ) -> Result<Version, RemoteError> {
        let mut cache = self.cache.lock().await;
        let Some(mut cached) = cache.take() else {
            return Err(RemoteError::Invalid(
                "a change was appended before the state was read".to_string(),
            ));
        };
        let mut records = vec![delta.clone()];
        lifeboat_engine::state::remote::fold(&mut cached.state, records.drain(..))
            .map_err(RemoteError::Invalid)?;
        let metadata =
            Self::holder_metadata(lease, cached.metadata.get(META_OWNER).map(String::as_str));
        let version = self
            .put_state(lease, Some(expected), &cached.state, &metadata)
            .await?;
        cached.metadata = metadata;
        *cache = Some(cached);
        Ok(version)
    }

    async fn compact(
        &self,
        _lease: &Lease,
        expected: &Version,
        _state: &State,
    ) -> Result<Version, RemoteError> {
        // The blob is always whole: there is no journal to fold.
        Ok(expected.clone())
    }

    async fn holder(&self) -> Result<Option<Holder>, RemoteError> {
        let Some(now) = self.properties().await? else {
            return Ok(None);
        };
        let live = now.lease_state.as_deref() == Some("leased");
        let info = Self::owner_of(&now);
        if info.is_none() && !live {
            return Ok(None);
        }
        Ok(Some(Holder { info, live }))
    }

    async fn clear(&self, id: &str) -> Result<(), RemoteError> {
        let Some(now) = self.properties().await? else {
            return Ok(());
        };
        if now.lease_state.as_deref() == Some("leased")
            || now.metadata.get(META_LOCK).map(String::as_str) != Some(id)
        {
            return Ok(());
        }
        let metadata = BTreeMap::from([(META_EPOCH.to_string(), epoch(&now.metadata).to_string())]);
        let etag = now.etag.clone().unwrap_or_default();
        let answer = self.set_metadata(None, &etag, &metadata).await?;
        if answer.status != StatusCode::OK {
            return Err(answer.unexpected("removing the lock's record"));
        }
        Ok(())
    }
}

trait Fenced {
    /// A refused renewal is a lost lease, whatever else the blob says.
    fn fenced(self) -> RemoteError;
}

impl Fenced for RemoteError {
    fn fenced(self) -> RemoteError {
        match self {
            RemoteError::Conflict => RemoteError::Fenced(None),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's documented example of a SharedKey string to sign, in lifeboat's shape.
    #[test]
    fn the_string_to_sign_follows_the_shared_key_rules() {
        let url = Url::parse("http://127.0.0.1:10000/devstoreaccount1/c/b.json?comp=lease")
            .expect("a URL");
        let headers = vec![
            ("x-ms-version".to_string(), API_VERSION.to_string()),
            (
                "x-ms-date".to_string(),
                "Mon, 30 Nov 2026 00:00:00 GMT".to_string(),
            ),
            ("x-ms-lease-action".to_string(), "acquire".to_string()),
            ("if-match".to_string(), "\"0x1\"".to_string()),
        ];
        let text = string_to_sign(&Method::PUT, &url, &headers, 0, "devstoreaccount1");
        assert_eq!(
            text,
            "PUT\n\n\n\n\n\n\n\n\"0x1\"\n\n\n\n\
             x-ms-date:Mon, 30 Nov 2026 00:00:00 GMT\n\
             x-ms-lease-action:acquire\n\
             x-ms-version:2021-12-02\n\
             /devstoreaccount1/devstoreaccount1/c/b.json\ncomp:lease"
        );
    }

    #[test]
    fn credentials_come_from_the_environment_and_errors_never_show_them() {
        let http = reqwest::Client::new();
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let auth = auth_from_env(
            env(&[(
                "AZURE_STORAGE_CONNECTION_STRING",
                "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/acct;",
            )]),
            "other",
            &http,
        )
        .expect("valid");
        assert!(
            matches!(auth, Auth::SharedKey { ref account, ref key } if account == "acct" && key == b"key")
        );
        let error = auth_from_env(
            env(&[("AZURE_STORAGE_KEY", "not base64 secret!")]),
            "a",
            &http,
        )
        .err()
        .expect("not base64");
        assert!(!error.contains("secret"), "{error}");
        assert!(matches!(
            auth_from_env(env(&[]), "a", &http).expect("the chain"),
            Auth::Token(_)
        ));
    }

    #[test]
    fn the_account_is_the_host_or_azurites_first_segment() {
        let url = Url::parse("https://contosodr.blob.core.windows.net").expect("a URL");
        assert_eq!(account_name(&url, false).expect("named"), "contosodr");
        let url = Url::parse("http://127.0.0.1:10000/devstoreaccount1").expect("a URL");
        assert_eq!(account_name(&url, true).expect("named"), "devstoreaccount1");
    }
}
