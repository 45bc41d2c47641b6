//! Where ARM tokens come from: a chain of `azure_identity` credentials, or one pinned source.
//!
//! The chain, in order: client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_CLIENT_SECRET`; `AZURE_AUTHORITY_HOST`, which must be `https`, selects the token
//! endpoint), workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
//! `AZURE_FEDERATED_TOKEN_FILE`), managed identity, the Azure CLI. The first source that
//! yields a token is kept for the rest of the run. When every source fails, the error says
//! what each one answered, and is permanent: nothing will change by waiting. Once a source
//! has given a token, its later failures (a network blip, a timeout, a 5xx of the token
//! endpoint while renewing) are transient, so a long failback is retried rather than
//! aborted by one bad renewal.
//!
//! Secrets: tokens stay in [`azure_core::credentials::Secret`] (whose `Debug` prints
//! `Secret`) until they are written into the `Authorization` header, which is marked
//! sensitive. Error messages are scrubbed of the client secret and of any token issued in
//! this run before they leave this module, in case a source echoes one back.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, ExponentialRetryOptions, RetryOptions, Transport};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use lifeboat_engine::provider::ProviderError;

/// One source of tokens (`provider.azure.credential` pins one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    ClientSecret,
    WorkloadIdentity,
    ManagedIdentity,
    AzureCli,
}

impl CredentialKind {
    pub const CHAIN: [CredentialKind; 4] = [
        Self::ClientSecret,
        Self::WorkloadIdentity,
        Self::ManagedIdentity,
        Self::AzureCli,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client-secret",
            Self::WorkloadIdentity => "workload-identity",
            Self::ManagedIdentity => "managed-identity",
            Self::AzureCli => "azure-cli",
        }
    }

    /// How long the chain waits for this source before trying the next one. Managed identity
    /// is probed with a short limit because off Azure its endpoint may not answer at all. The
    /// limit applies only while walking the chain: a source already chosen is known to work
    /// and gets the HTTP client's own timeouts.
    fn probe_timeout(self) -> Duration {
        match self {
            Self::ManagedIdentity => Duration::from_secs(5),
            _ => Duration::from_secs(60),
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ARM bearer token. Its `Debug` never shows the value.
#[derive(Clone)]
pub struct Token(Secret);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Secret::new(value.into()))
    }

    /// The value, for the `Authorization` header only.
    pub fn secret(&self) -> &str {
        self.0.secret()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

/// Anything that hands out ARM tokens: the `azure_identity` chain in production, a fake in
/// tests.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token for `scope`. `refresh`: the last one was refused as expired, so do not return
    /// it from a cache.
    async fn token(&self, scope: &str, refresh: bool) -> Result<Token, ProviderError>;
}

/// The `azure_identity` credentials, chained or pinned.
pub struct Credential {
    kinds: Vec<CredentialKind>,
    pinned: bool,
    transport: Transport,
    /// The source that worked, kept so the chain is walked once per run.
    chosen: Mutex<Option<(CredentialKind, Arc<dyn TokenCredential>)>>,
    /// Values that must never appear in a message (the client secret, issued tokens).
    redact: Mutex<Vec<String>>,
    /// Held while the chain is walked, so requests sent at once walk it once.
    walking: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("kinds", &self.kinds)
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

impl Credential {
    /// Tries every source in [`CredentialKind::CHAIN`] order.
    pub fn chain(http: reqwest::Client) -> Self {
        Self::new(CredentialKind::CHAIN.to_vec(), false, http)
    }

    /// Uses one source only.
    pub fn pinned(kind: CredentialKind, http: reqwest::Client) -> Self {
        Self::new(vec![kind], true, http)
    }

    fn new(kinds: Vec<CredentialKind>, pinned: bool, http: reqwest::Client) -> Self {
        let mut redact = Vec::new();
        if let Ok(secret) = std::env::var("AZURE_CLIENT_SECRET")
            && !secret.is_empty()
        {
            redact.push(secret);
        }
        Self {
            kinds,
            pinned,
            transport: Transport::new(Arc::new(http)),
            chosen: Mutex::new(None),
            redact: Mutex::new(redact),
            walking: tokio::sync::Mutex::new(()),
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions {
            transport: Some(self.transport.clone()),
            // azure_identity's default retries for a minute; a token endpoint that does not
            // answer within a few tries is better reported than waited for.
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: azure_core::time::Duration::milliseconds(200),
                max_retries: 3,
                max_total_elapsed: azure_core::time::Duration::seconds(15),
                max_delay: azure_core::time::Duration::seconds(5),
            }),
            ..ClientOptions::default()
        }
    }

    /// Builds one source. Each `azure_identity` credential has its own token cache, so a new
    /// instance is also how a refused token is replaced.
    fn build(&self, kind: CredentialKind) -> Result<Arc<dyn TokenCredential>, String> {
        let built: azure_core::Result<Arc<dyn TokenCredential>> = match kind {
            CredentialKind::ClientSecret => {
                let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let (tenant, client, secret) = (
                    var("AZURE_TENANT_ID"),
                    var("AZURE_CLIENT_ID"),
                    var("AZURE_CLIENT_SECRET"),
                );
                let (Some(tenant), Some(client), Some(secret)) = (tenant, client, secret) else {
                    return Err(
                        "`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET` are not all set"
                            .to_string(),
                    );
                };
                self.remember(&secret);
                ClientSecretCredential::new(
                    &tenant,
                    client,
                    Secret::new(secret),
                    Some(ClientSecretCredentialOptions {
                        client_options: self.client_options(),
                    }),
                )
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            CredentialKind::WorkloadIdentity => {
                if std::env::var_os("AZURE_FEDERATED_TOKEN_FILE").is_none() {
                    return Err("`AZURE_FEDERATED_TOKEN_FILE` is not set".to_string());
                }
                let mut options = WorkloadIdentityCredentialOptions::default();
                options.credential_options.client_options = self.client_options();
                WorkloadIdentityCredential::new(Some(options))
                    .map(|c| c as Arc<dyn TokenCredential>)
            }
            CredentialKind::ManagedIdentity => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    client_options: self.client_options(),
                    ..ManagedIdentityCredentialOptions::default()
                }))
                .map(|c| c as Arc<dyn TokenCredential>)
            }
            CredentialKind::AzureCli => {
                AzureCliCredential::new(None).map(|c| c as Arc<dyn TokenCredential>)
            }
        };
        built.map_err(|e| self.scrub(&e.to_string()))
    }

    fn remember(&self, value: &str) {
        if let Ok(mut redact) = self.redact.lock()
            && !redact.iter().any(|v| v == value)
        {
            redact.push(value.to_string());
        }
    }

    /// Removes every known secret from a message.
    pub fn scrub(&self, message: &str) -> String {
        let mut message = message.to_string();
        if let Ok(redact) = self.redact.lock() {
            for value in redact.iter().filter(|v| v.len() >= 4) {
                message = message.replace(value.as_str(), "***");
            }
        }
        // `azure_identity` appends a troubleshooting link on its own line; one line reads
        // better in a diagnostic.
        message.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    async fn get(
        &self,
        kind: CredentialKind,
        credential: &Arc<dyn TokenCredential>,
        scope: &str,
        probing: bool,
    ) -> Result<Token, String> {
        let scopes = [scope];
        let request = credential.get_token(&scopes, None);
        let answer = if self.pinned || !probing {
            request.await
        } else {
            match tokio::time::timeout(kind.probe_timeout(), request).await {
                Ok(answer) => answer,
                Err(_) => {
                    return Err(format!(
                        "no answer within {} s",
                        kind.probe_timeout().as_secs()
                    ));
                }
            }
        };
        match answer {
            Ok(token) => {
                let value = token.token.secret().to_string();
                self.remember(&value);
                Ok(Token::new(value))
            }
            Err(error) => Err(self.scrub(&error.to_string())),
        }
    }
}

#[async_trait::async_trait]
impl TokenSource for Credential {
    async fn token(&self, scope: &str, refresh: bool) -> Result<Token, ProviderError> {
        let chosen = self.chosen.lock().ok().and_then(|c| c.clone());
        if chosen.is_none() {
            let _walking = self.walking.lock().await;
            let chosen = self.chosen.lock().ok().and_then(|c| c.clone());
            if chosen.is_none() {
                return self.walk(scope).await;
            }
        }
        let chosen = self.chosen.lock().ok().and_then(|c| c.clone());
        if let Some((kind, credential)) = chosen {
            let credential = if refresh {
                // A fresh instance has an empty cache, so it asks the token endpoint again.
                let fresh = self
                    .build(kind)
                    .map_err(|reason| auth_error(kind, &reason))?;
                if let Ok(mut chosen) = self.chosen.lock() {
                    *chosen = Some((kind, fresh.clone()));
                }
                fresh
            } else {
                credential
            };
            return self
                .get(kind, &credential, scope, false)
                .await
                .map_err(|reason| renewal_error(kind, &reason));
        }
        self.walk(scope).await
    }
}

impl Credential {
    /// Tries each source in turn and keeps the first that gives a token.
    async fn walk(&self, scope: &str) -> Result<Token, ProviderError> {
        let mut tried = Vec::new();
        for &kind in &self.kinds {
            let attempt = match self.build(kind) {
                Ok(credential) => self
                    .get(kind, &credential, scope, true)
                    .await
                    .map(|token| (token, credential)),
                Err(reason) => Err(reason),
            };
            match attempt {
                Ok((token, credential)) => {
                    tracing::debug!(credential = kind.as_str(), "acquired an ARM token");
                    if let Ok(mut chosen) = self.chosen.lock() {
                        *chosen = Some((kind, credential));
                    }
                    return Ok(token);
                }
                Err(reason) => tried.push(format!("`{kind}`: {reason}")),
            }
        }
        Err(ProviderError::permanent(
            Some("CredentialUnavailable".to_string()),
            if self.pinned {
                format!(
                    "the pinned credential gave no ARM token: {}",
                    tried.join("; ")
                )
            } else {
                format!(
                    "no credential source gave an ARM token (tried {}): {}",
                    self.kinds
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    tried.join("; ")
                )
            },
        ))
    }
}

/// A source that already gave a token in this run failed to give another: most likely the
/// token endpoint or the network failed for a moment, so the engine retries the operation.
fn renewal_error(kind: CredentialKind, reason: &str) -> ProviderError {
    ProviderError::transient(
        Some("CredentialUnavailable".to_string()),
        format!("the `{kind}` credential, which gave a token earlier, gave none now: {reason}"),
    )
}

/// Rebuilding a chosen source failed: its settings are gone (an environment variable), which
/// waiting does not fix.
fn auth_error(kind: CredentialKind, reason: &str) -> ProviderError {
    ProviderError::permanent(
        Some("CredentialUnavailable".to_string()),
        format!("the `{kind}` credential gave no ARM token: {reason}"),
    )
}

/// A fixed token, for tests and for endpoints that need none.
#[derive(Debug, Clone)]
pub struct StaticToken(pub Token);

#[async_trait::async_trait]
impl TokenSource for StaticToken {
    async fn token(&self, _scope: &str, _refresh: bool) -> Result<Token, ProviderError> {
        Ok(self.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_hides_the_value() {
        let token = Token::new("eyJ-very-secret");
        assert_eq!(format!("{token:?}"), "Token(***)");
        assert!(!format!("{:?}", StaticToken(token)).contains("very-secret"));
    }
}
