//! The `plugin` provider: a backend in a separate process, written in any language, speaking
//! lifeboat's plugin protocol v1 (JSON-RPC 2.0, one message per line, over the plugin's stdin
//! and stdout; docs/plugin-protocol.md).
//!
//! - [`protocol`]: every message as a Rust type, the source of `schemas/plugin/`;
//! - [`connection`]: one plugin process (own process group, stderr passed on with the
//!   plugin's name, every stdout line checked, a deadline on every request);
//! - [`provider`]: the engine's `Provider` over it, restarting a plugin that died and
//!   reconciling what it was running through `status`;
//! - [`server`]: the other side, any `Provider` served as a plugin
//!   (`lifeboat provider serve sim`);
//! - [`conformance`]: the kit that checks a plugin keeps the contract
//!   (`lifeboat provider test`).
//!
//! Architecture invariant: like every provider, this crate never sees a plan file; the CLI
//! hands it a [`connection::Spec`] built from `provider.plugin` after the allow-list check.

pub mod conformance;
pub mod connection;
pub mod protocol;
pub mod provider;
pub mod server;

pub use connection::{Spec, stop_all};
pub use provider::{PluginProvider, StartError};
