//! The `azure` provider: Azure Site Recovery (ASR) over the ARM REST API (DESIGN.md §1.2, §4).
//!
//! This crate is the provider's pure core, without any I/O:
//!
//! - [`arm`]: the ARM/ASR response types the provider reads (lenient: ARM adds fields);
//! - [`mapping`]: from those types to the engine's provider-neutral [`Facts`], with the name
//!   mapping and the stage rule;
//! - [`requests`]: the URL paths and the request bodies of the four operations, with the
//!   resolver that turns the plan's names into ARM ids.
//!
//! Not built yet: the HTTP client, credentials, long-running-operation polling and the
//! `Provider` implementation (see `docs/azure.md`).
//!
//! [`Facts`]: lifeboat_engine::provider::Facts

pub mod arm;
pub mod mapping;
pub mod requests;

/// The newest stable ASR api-version in `asr-api/` (the one its definitions and paths were
/// taken from).
pub const DEFAULT_API_VERSION: &str = "2026-05-01";
