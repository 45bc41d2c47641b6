//! The provider's settings (`provider.azure` in the plan) and the one HTTP client every
//! request goes through.
//!
//! Credentials are not settings: they come from the environment or a credential chain
//! ([`crate::credential`]), never from the plan file (DESIGN.md §9).

use std::path::PathBuf;

use url::Url;

use crate::credential::CredentialKind;
use crate::requests::Vault;

/// The public cloud's Azure Resource Manager.
pub const DEFAULT_RESOURCE_MANAGER_ENDPOINT: &str = "https://management.azure.com";

/// What the provider talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConfig {
    pub vault: Vault,
    /// Azure Resource Manager, without a trailing slash (`https://management.azure.com`).
    pub endpoint: Url,
    pub api_version: String,
    /// `None`: try the chain ([`crate::credential::Credential::chain`]).
    pub credential: Option<CredentialKind>,
}

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("`{0}` is not a URL: {1}")]
    NotAUrl(String, String),
    #[error(
        "`{0}` is not HTTPS: only loopback endpoints (127.0.0.1, ::1, localhost) may use plain HTTP"
    )]
    NotHttps(String),
    #[error("`{0}` must be an `https://` URL")]
    Scheme(String),
    #[error("`{0}` must be the endpoint alone, without a path, query or credentials")]
    NotBare(String),
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("`{field}` must not contain `/`, `?` or `#`: `{value}`")]
    Segment { field: &'static str, value: String },
    #[error("`SSL_CERT_FILE` names `{path}`, which cannot be read: {reason}")]
    CertFile { path: PathBuf, reason: String },
    #[error("the HTTP client cannot be built: {0}")]
    Client(String),
}

impl ConfigError {
    /// Which plan value is at fault, when one is (`None`: the environment).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::NotAUrl(..) | Self::NotHttps(_) | Self::Scheme(_) | Self::NotBare(_) => {
                Some("resource_manager_endpoint")
            }
            Self::Empty { field } | Self::Segment { field, .. } => Some(field),
            Self::CertFile { .. } | Self::Client(_) => None,
        }
    }
}

impl AzureConfig {
    /// Checks the plan's values. `endpoint` and `api_version` default to the public cloud and
    /// [`crate::DEFAULT_API_VERSION`].
    pub fn new(
        subscription_id: &str,
        resource_group: &str,
        vault: &str,
        endpoint: Option<&str>,
        api_version: Option<&str>,
        credential: Option<CredentialKind>,
    ) -> Result<Self, ConfigError> {
        for (field, value) in [
            ("subscription_id", subscription_id),
            ("resource_group", resource_group),
            ("vault", vault),
            (
                "api_version",
                api_version.unwrap_or(crate::DEFAULT_API_VERSION),
            ),
        ] {
            path_segment(field, value)?;
        }
        Ok(Self {
            vault: Vault {
                subscription_id: subscription_id.to_string(),
                resource_group: resource_group.to_string(),
                name: vault.to_string(),
            },
            endpoint: endpoint_url(endpoint.unwrap_or(DEFAULT_RESOURCE_MANAGER_ENDPOINT))?,
            api_version: api_version
                .unwrap_or(crate::DEFAULT_API_VERSION)
                .to_string(),
            credential,
        })
    }

    /// The OAuth scope of ARM tokens: `{endpoint}/.default`.
    pub fn scope(&self) -> String {
        format!("{}/.default", self.endpoint.as_str().trim_end_matches('/'))
    }

    /// The vault's ARM id, which identifies the estate.
    pub fn vault_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.RecoveryServices/vaults/{}",
            self.vault.subscription_id, self.vault.resource_group, self.vault.name
        )
    }
}

fn path_segment(field: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::Empty { field });
    }
    if value.contains(['/', '?', '#']) {
        return Err(ConfigError::Segment {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

/// Whether a URL's host is this machine, where plain HTTP exposes nothing on the network.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses `resource_manager_endpoint`: HTTPS, or HTTP on loopback only, because the bearer
/// token travels in every request.
pub fn endpoint_url(value: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(value)
        .map_err(|e| ConfigError::NotAUrl(without_userinfo(value), e.to_string()))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => return Err(ConfigError::NotHttps(without_userinfo(value))),
        _ => return Err(ConfigError::Scheme(without_userinfo(value))),
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.path().trim_end_matches('/').is_empty()
    {
        return Err(ConfigError::NotBare(without_userinfo(value)));
    }
    Ok(url)
}

/// The endpoint as written, with any `user:password@` replaced by `***@`, for messages: the
/// value is refused, but what it carries may be a real password. Done on the text, because a
/// value that does not parse as a URL can still carry one.
fn without_userinfo(value: &str) -> String {
    let Some(scheme_end) = value.find("://").map(|i| i + 3) else {
        return value.to_string();
    };
    let authority_end = value[scheme_end..]
        .find(['/', '?', '#'])
        .map_or(value.len(), |i| scheme_end + i);
    match value[scheme_end..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &value[..scheme_end], &value[scheme_end + at..]),
        None => value.to_string(),
    }
}

/// The one HTTP client for ARM and for the token requests (passed to `azure_identity` as its
/// transport), so both trust the same roots: the platform's, plus every certificate of the
/// PEM file named by `SSL_CERT_FILE` (the OpenSSL/curl convention; `sim serve` writes its
/// self-signed certificate there). It follows no redirect.
pub fn http_client() -> Result<reqwest::Client, ConfigError> {
    let extra = match std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        Some(path) => extra_roots(&PathBuf::from(path))?,
        None => Vec::new(),
    };
    reqwest::Client::builder()
        .tls_certs_merge(extra)
        // A hung connection must not hang `apply`: ARM answers within seconds.
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(120))
        // No redirect is followed: reqwest would carry the bearer token, or re-send a token
        // request's form with `client_secret` on 307/308, to wherever ARM or the token
        // endpoint pointed. Neither redirects in normal operation, so a 3xx is an error.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConfigError::Client(e.to_string()))
}

fn extra_roots(path: &PathBuf) -> Result<Vec<reqwest::Certificate>, ConfigError> {
    let error = |reason: String| ConfigError::CertFile {
        path: path.clone(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(error("it holds no PEM certificate".to_string()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert!(endpoint_url("https://management.azure.com").is_ok());
        assert!(endpoint_url("https://management.azure.com/").is_ok());
        assert!(endpoint_url("http://127.0.0.1:8443").is_ok());
        assert!(endpoint_url("http://[::1]:8443").is_ok());
        assert!(endpoint_url("http://localhost:8443").is_ok());
        assert_eq!(
            endpoint_url("http://management.azure.com"),
            Err(ConfigError::NotHttps("http://management.azure.com".into()))
        );
        assert!(matches!(
            endpoint_url("http://127.0.0.2.example.com"),
            Err(ConfigError::NotHttps(_))
        ));
        assert!(matches!(
            endpoint_url("ftp://x"),
            Err(ConfigError::Scheme(_))
        ));
        assert!(matches!(
            endpoint_url("https://x/arm"),
            Err(ConfigError::NotBare(_))
        ));
        assert!(matches!(
            endpoint_url("not a url"),
            Err(ConfigError::NotAUrl(..))
        ));
    }

    #[test]
    fn refused_endpoints_do_not_repeat_a_password() {
        for value in [
            "https://admin:hunter2-pw@management.azure.com",
            "https://admin:hunter2-pw@management.azure.com/path",
            "http://admin:hunter2-pw@management.azure.com",
            "ftp://admin:hunter2-pw@x",
            "https://admin:hunter2-pw@exa mple.com",
        ] {
            let error = endpoint_url(value).expect_err("refused");
            let text = format!("{error} {error:?}");
            assert!(!text.contains("hunter2-pw"), "{text}");
            assert!(!text.contains("admin"), "{text}");
            assert!(text.contains("***@"), "{text}");
        }
    }

    #[test]
    fn scope_and_defaults() -> Result<(), ConfigError> {
        let config = AzureConfig::new("sub", "rg", "vault", None, None, None)?;
        assert_eq!(config.scope(), "https://management.azure.com/.default");
        assert_eq!(config.api_version, crate::DEFAULT_API_VERSION);
        assert_eq!(
            config.vault_id(),
            "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.RecoveryServices/vaults/vault"
        );
        let config = AzureConfig::new(
            "sub",
            "rg",
            "vault",
            Some("http://127.0.0.1:9/"),
            Some("2025-01-01"),
            None,
        )?;
        assert_eq!(config.scope(), "http://127.0.0.1:9/.default");
        assert!(matches!(
            AzureConfig::new("sub", "rg/x", "vault", None, None, None),
            Err(ConfigError::Segment {
                field: "resource_group",
                ..
            })
        ));
        assert!(matches!(
            AzureConfig::new("", "rg", "vault", None, None, None),
            Err(ConfigError::Empty {
                field: "subscription_id"
            })
        ));
        Ok(())
    }
}
