//! lifeboat's remote state backends: [`postgres`] and [`azure_blob`], each a
//! [`RemoteStore`](lifeboat_engine::state::remote::RemoteStore) that the engine's
//! [`RemoteBackend`] turns into a state backend with leases, fencing and compare-and-swap.
//! Connections and credentials come from the environment only; no secret is ever part of a
//! message.

pub mod azure_blob;
mod pg_env;
pub mod postgres;

use std::sync::Arc;

use lifeboat_engine::model::{DEFAULT_LEASE, StateConfig, parse_lease};
use lifeboat_engine::state::RemoteBackend;

/// The backend a remote `state:` block names; `plan_name` is the plan's `name`, the default
/// state name. `None` for `local`, which the CLI opens itself (its path needs containment).
pub fn open(config: &StateConfig, plan_name: &str) -> Option<Result<RemoteBackend, String>> {
    let lease = |value: Option<&lifeboat_engine::Spanned<String>>| {
        value.map_or(Ok(DEFAULT_LEASE), |v| parse_lease(&v.value))
    };
    Some(match config {
        StateConfig::Local(_) => return None,
        StateConfig::Postgres(pg) => (|| {
            let name = pg.name.as_ref().map_or(plan_name, |n| n.value.as_str());
            let schema = pg.schema.as_ref().map_or("lifeboat", |s| s.value.as_str());
            let store = postgres::PostgresStore::from_env(name, schema)?;
            Ok(RemoteBackend::new(
                Arc::new(store),
                lease(pg.lease.as_ref())?,
            ))
        })(),
        StateConfig::AzureBlob(blob) => (|| {
            let default_blob = format!("{plan_name}.json");
            let name = blob
                .blob
                .as_ref()
                .map_or(default_blob.as_str(), |b| b.value.as_str());
            let store = azure_blob::AzureBlobStore::from_env(
                &blob.account_url.value,
                &blob.container.value,
                name,
            )?;
            Ok(RemoteBackend::new(
                Arc::new(store),
                lease(blob.lease.as_ref())?,
            ))
        })(),
    })
}
