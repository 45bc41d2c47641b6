//! The `azure` provider: Azure Site Recovery (ASR) over the ARM REST API (DESIGN.md §1.2, §4).
//!
//! The pure core, without I/O:
//!
//! - [`arm`]: the ARM/ASR response types the provider reads (lenient: ARM adds fields);
//! - [`mapping`]: from those types to the engine's provider-neutral [`Facts`], with the name
//!   mapping and the stage rule;
//! - [`requests`]: the URL paths and the request bodies of the four operations, with the
//!   resolver that turns the plan's names into ARM ids.
//!
//! The HTTP side:
//!
//! - [`config`]: `provider.azure`'s values checked (HTTPS except on loopback), the one
//!   `reqwest` client (platform roots plus `SSL_CERT_FILE`);
//! - [`credential`]: the `azure_identity` chain or a pinned source, tokens kept secret;
//! - [`client`]: ARM requests with paging, retries, `Retry-After`, token refresh, errors;
//! - [`lro`]: long-running operations followed to the end of their ASR job;
//! - [`provider`]: [`AzureProvider`], the engine's `Provider`.
//!
//! [`Facts`]: lifeboat_engine::provider::Facts

pub mod arm;
pub mod client;
pub mod config;
pub mod credential;
pub mod estimate;
pub mod lro;
pub mod mapping;
pub mod provider;
pub mod requests;

pub use config::AzureConfig;
pub use credential::CredentialKind;
pub use provider::AzureProvider;

/// The newest stable ASR api-version in `asr-api/` (the one its definitions and paths were
/// taken from).
pub const DEFAULT_API_VERSION: &str = "2026-05-01";
