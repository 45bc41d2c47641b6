//! The `postgres` state backend: one row per state in `SCHEMA.states`, the journal in
//! `SCHEMA.journal`.
//!
//! - `version` is bumped by every write; a write names the version it read
//!   (compare-and-swap) and the lease it holds (`lock_id` and `epoch`), all in its `WHERE`.
//! - `epoch` is raised by each acquisition that is not a retry of our own, so a holder whose
//!   lease ran out and was taken over matches no row any more: fenced.
//! - Lease expiry is the server's clock (`now()`), so runners' clocks do not matter.
//! - Each statement is atomic on its own (data-modifying `WITH`), so a connection lost in the
//!   middle leaves the old row or the new one.
//!
//! The schema and tables are created when missing, under an advisory lock so that runners
//! starting together do not race.

use std::time::Duration;

use lifeboat_engine::state::remote::{
    Acquired, Holder, Lease, RemoteError, RemoteStore, Snapshot, Version, fold,
};
use lifeboat_engine::state::{LockInfo, State, StateDelta};
use tokio_postgres::Client;

use crate::pg_env;

/// The advisory lock taken while the tables are created (any constant; "lbst").
const SETUP_LOCK: i64 = 0x6c62_7374;

/// The SQL, with the schema quoted in once.
#[derive(Debug)]
struct Sql {
    exists: String,
    setup: String,
    read: String,
    insert: String,
    acquire: String,
    holder: String,
    renew: String,
    release: String,
    write: String,
    append: String,
    journal_empty: String,
    lease_of: String,
    clear: String,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        Self {
            exists: format!(
                "SELECT to_regclass('{s}.states') IS NOT NULL AND to_regclass('{s}.journal') IS NOT NULL"
            ),
            setup: format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {s}.states (
                     name text PRIMARY KEY,
                     version bigint NOT NULL DEFAULT 0,
                     epoch bigint NOT NULL DEFAULT 0,
                     document text,
                     lock_id text,
                     lock_owner text,
                     lock_expires timestamptz,
                     lock_renewed timestamptz
                 );
                 CREATE TABLE IF NOT EXISTS {s}.journal (
                     name text NOT NULL REFERENCES {s}.states (name) ON DELETE CASCADE,
                     version bigint NOT NULL,
                     record text NOT NULL,
                     PRIMARY KEY (name, version)
                 );"
            ),
            read: format!(
                "SELECT version, document,
                        ARRAY(SELECT record FROM {s}.journal j WHERE j.name = st.name ORDER BY j.version)
                 FROM {s}.states st WHERE name = $1"
            ),
            insert: format!("INSERT INTO {s}.states (name) VALUES ($1) ON CONFLICT (name) DO NOTHING"),
            acquire: format!(
                "UPDATE {s}.states SET
                     epoch = CASE WHEN lock_id IS NOT DISTINCT FROM $2 THEN epoch ELSE epoch + 1 END,
                     lock_id = $2, lock_owner = $3,
                     lock_expires = now() + make_interval(secs => $4), lock_renewed = now()
                 WHERE name = $1 AND (lock_id IS NULL OR lock_id = $2 OR lock_expires <= now())
                 RETURNING epoch"
            ),
            holder: format!(
                "SELECT lock_owner, lock_expires > now() FROM {s}.states
                 WHERE name = $1 AND lock_id IS NOT NULL"
            ),
            renew: format!(
                "UPDATE {s}.states SET lock_expires = now() + make_interval(secs => $4), lock_renewed = now()
                 WHERE name = $1 AND lock_id = $2 AND epoch = $3"
            ),
            release: format!(
                "UPDATE {s}.states SET lock_id = NULL, lock_owner = NULL, lock_expires = NULL, lock_renewed = NULL
                 WHERE name = $1 AND lock_id = $2 AND epoch = $3"
            ),
            // A write also extends the lease: nobody else acquired since (the epoch says so).
            write: format!(
                "WITH written AS (
                     UPDATE {s}.states SET document = $5, version = version + 1,
                         lock_expires = greatest(lock_expires, now() + make_interval(secs => $6))
                     WHERE name = $1 AND lock_id = $2 AND epoch = $3 AND version = $4
                     RETURNING version),
                 cleared AS (
                     DELETE FROM {s}.journal WHERE name = $1 AND EXISTS (SELECT 1 FROM written))
                 SELECT version FROM written"
            ),
            append: format!(
                "WITH bumped AS (
                     UPDATE {s}.states SET version = version + 1,
                         lock_expires = greatest(lock_expires, now() + make_interval(secs => $6))
                     WHERE name = $1 AND lock_id = $2 AND epoch = $3 AND version = $4
                     RETURNING version)
                 INSERT INTO {s}.journal (name, version, record)
                 SELECT $1, version, $5 FROM bumped RETURNING version"
            ),
            journal_empty: format!("SELECT NOT EXISTS (SELECT 1 FROM {s}.journal WHERE name = $1)"),
            lease_of: format!("SELECT lock_id, epoch, lock_owner FROM {s}.states WHERE name = $1"),
            clear: format!(
                "UPDATE {s}.states SET lock_id = NULL, lock_owner = NULL, lock_expires = NULL, lock_renewed = NULL
                 WHERE name = $1 AND lock_id = $2 AND lock_expires <= now()"
            ),
        }
    }
}

/// A state kept in PostgreSQL.
pub struct PostgresStore {
    config: tokio_postgres::Config,
    name: String,
    location: String,
    sql: Sql,
    /// One connection, opened on first use and again after it breaks.
    client: tokio::sync::Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: it holds the password.
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The store of state `name` in `schema` (an identifier the plan's validation checked),
    /// connecting as the environment says.
    pub fn from_env(name: &str, schema: &str) -> Result<Self, String> {
        Self::from_vars(name, schema, |var| {
            std::env::var(var).ok().filter(|v| !v.is_empty())
        })
    }

    /// [`Self::from_env`] with the variables read through `var`.
    pub fn from_vars(
        name: &str,
        schema: &str,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let config = pg_env::config(var)?;
        if !lifeboat_engine::validate::state::is_identifier(schema) {
            return Err(format!("`{schema}` is not a schema name lifeboat uses"));
        }
        Ok(Self {
            location: format!(
                "{}?table={schema}.states&state={name}",
                pg_env::describe(&config)
            ),
            config,
            name: name.to_string(),
            sql: Sql::new(schema),
            client: tokio::sync::Mutex::new(None),
        })
    }

    /// The connection, opened (and the tables created) when there is none or it broke.
    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Client>>, RemoteError> {
        let mut client = self.client.lock().await;
        if client.as_ref().is_none_or(Client::is_closed) {
            *client = None;
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config()?);
            let (connected, connection) = self.config.connect(tls).await.map_err(classify)?;
            tokio::spawn(async move {
                // Ends when the connection does; a broken one is noticed by `is_closed`.
                let _ = connection.await;
            });
            self.set_up(&connected).await?;
            *client = Some(connected);
        }
        Ok(client)
    }

    async fn set_up(&self, client: &Client) -> Result<(), RemoteError> {
        let exists: bool = client
            .query_one(&self.sql.exists, &[])
            .await
            .map_err(classify)?
            .get(0);
        if exists {
            return Ok(());
        }
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_advisory_xact_lock({SETUP_LOCK}); {} COMMIT;",
                self.sql.setup
            ))
            .await
            // The connection is dropped with the failed transaction.
            .map_err(|e| {
                RemoteError::Refused(format!(
                    "cannot create lifeboat's tables: {}",
                    error_text(&e)
                ))
            })
    }

    /// Who holds the lock now, for a fenced writer's message.
    async fn fenced(&self, client: &Client, lease: &Lease) -> RemoteError {
        match client.query_opt(&self.sql.lease_of, &[&self.name]).await {
            Ok(Some(row)) => {
                let id: Option<String> = row.get(0);
                let epoch: i64 = row.get(1);
                let owner: Option<String> = row.get(2);
                if id.as_deref() == Some(lease.id.as_str()) && epoch_of(lease) == epoch {
                    RemoteError::Conflict
                } else {
                    RemoteError::Fenced(owner.and_then(|o| parse_owner(&o)).map(Box::new))
                }
            }
            Ok(None) => RemoteError::Fenced(None),
            Err(e) => classify(e),
        }
    }
}

/// TLS as reqwest does it: rustls with aws-lc-rs, the platform's roots.
fn tls_config() -> Result<rustls::ClientConfig, RemoteError> {
    use rustls_platform_verifier::BuilderVerifierExt as _;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map(|b| b.with_no_client_auth())
        .map_err(|e| RemoteError::Refused(format!("cannot set up TLS: {e}")))
}

/// The error's whole text: tokio-postgres puts the server's message in its source.
fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause = cause.to_string();
                if !text.contains(&cause) {
                    text.push_str(": ");
                    text.push_str(&cause);
                }
                source = cause_of(source);
            }
            text
        }
    }
}

fn cause_of<'a>(
    error: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    error.and_then(std::error::Error::source)
}

/// Server refusals (authentication, permissions, SQL) are permanent; a broken connection
/// and the server's "try again" states are transient.
fn classify(error: tokio_postgres::Error) -> RemoteError {
    let text = error_text(&error);
    match error.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            // 40xxx: serialization failure, deadlock; 57P0x: shutting down; 53xxx: resources.
            if code.starts_with("40") || code.starts_with("57P") || code.starts_with("53") {
                RemoteError::Unavailable(text)
            } else {
                RemoteError::Refused(text)
            }
        }
        None => RemoteError::Unavailable(text),
    }
}

fn parse_owner(text: &str) -> Option<LockInfo> {
    serde_json::from_str(text).ok()
}

fn epoch_of(lease: &Lease) -> i64 {
    i64::try_from(lease.epoch).unwrap_or(i64::MAX)
}

fn version_of(version: Option<&Version>) -> i64 {
    // A version this store did not give never matches (-1 is no row's version).
    version.and_then(|v| v.0.parse().ok()).unwrap_or(-1)
}

fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[async_trait::async_trait]
impl RemoteStore for PostgresStore {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn read(&self) -> Result<Snapshot, RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let Some(row) = client
            .query_opt(&self.sql.read, &[&self.name])
            .await
            .map_err(classify)?
        else {
            return Ok(Snapshot {
                state: None,
                version: None,
            });
        };
        let version: i64 = row.get(0);
        let document: Option<String> = row.get(1);
        let records: Vec<String> = row.get(2);
        let state = match document {
            None => None,
            Some(text) => {
                if text.len() as u64 > lifeboat_engine::input::MAX_INPUT_BYTES {
                    return Err(RemoteError::Invalid(
                        "the stored document is larger than lifeboat reads".to_string(),
                    ));
                }
                let mut state =
                    State::from_json(&text).map_err(|e| RemoteError::Invalid(e.to_string()))?;
                let deltas = records
                    .iter()
                    .enumerate()
                    .map(|(n, r)| {
                        serde_json::from_str::<StateDelta>(r).map_err(|_| {
                            RemoteError::Invalid(format!(
                                "journal record {} is not a state record",
                                n + 1
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                fold(&mut state, deltas).map_err(RemoteError::Invalid)?;
                Some(state)
            }
        };
        Ok(Snapshot {
            state,
            version: Some(Version(version.to_string())),
        })
    }

    async fn acquire(&self, owner: &LockInfo, duration: Duration) -> Result<Acquired, RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        client
            .execute(&self.sql.insert, &[&self.name])
            .await
            .map_err(classify)?;
        let owner_json = serde_json::to_string(owner).expect("lock info is plain data");
        let acquired = client
            .query_opt(
                &self.sql.acquire,
                &[&self.name, &owner.id, &owner_json, &seconds(duration)],
            )
            .await
            .map_err(classify)?;
        if let Some(row) = acquired {
            let epoch: i64 = row.get(0);
            return Ok(Acquired::Ours {
                epoch: u64::try_from(epoch).unwrap_or_default(),
            });
        }
        let holder = client
            .query_opt(&self.sql.holder, &[&self.name])
            .await
            .map_err(classify)?;
        Ok(Acquired::Held(Holder {
            info: holder.as_ref().and_then(|row| {
                let owner: Option<String> = row.get(0);
                owner.and_then(|o| parse_owner(&o))
            }),
            live: true,
        }))
    }

    async fn renew(&self, lease: &Lease) -> Result<(), RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let renewed = client
            .execute(
                &self.sql.renew,
                &[
                    &self.name,
                    &lease.id,
                    &epoch_of(lease),
                    &seconds(lease.duration),
                ],
            )
            .await
            .map_err(classify)?;
        if renewed == 0 {
            return Err(self.fenced(client, lease).await);
        }
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<(), RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        client
            .execute(
                &self.sql.release,
                &[&self.name, &lease.id, &epoch_of(lease)],
            )
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn write(
        &self,
        lease: &Lease,
        expected: Option<&Version>,
        state: &State,
    ) -> Result<Version, RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let written = client
            .query_opt(
                &self.sql.write,
                &[
                    &self.name,
                    &lease.id,
                    &epoch_of(lease),
                    &version_of(expected),
                    &state.to_json(),
                    &seconds(lease.duration),
                ],
            )
            .await
            .map_err(classify)?;
        match written {
            Some(row) => Ok(Version(row.get::<_, i64>(0).to_string())),
            None => Err(self.fenced(client, lease).await),
        }
    }

    async fn append(
        &self,
        lease: &Lease,
        expected: &Version,
        delta: &StateDelta,
    ) -> Result<Version, RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let record = serde_json::to_string(delta).expect("a state record is plain data");
        let appended = client
            .query_opt(
                &self.sql.append,
                &[
                    &self.name,
                    &lease.id,
                    &epoch_of(lease),
                    &version_of(Some(expected)),
                    &record,
                    &seconds(lease.duration),
                ],
            )
            .await
            .map_err(classify)?;
        match appended {
            Some(row) => Ok(Version(row.get::<_, i64>(0).to_string())),
            None => Err(self.fenced(client, lease).await),
        }
    }

    async fn compact(
        &self,
        lease: &Lease,
        expected: &Version,
        state: &State,
    ) -> Result<Version, RemoteError> {
        let empty: bool = {
            let guard = self.client().await?;
            let client = guard.as_ref().expect("connected");
            client
                .query_one(&self.sql.journal_empty, &[&self.name])
                .await
                .map_err(classify)?
                .get(0)
        };
        if empty {
            return Ok(expected.clone());
        }
        self.write(lease, Some(expected), state).await
    }

    async fn holder(&self) -> Result<Option<Holder>, RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let row = client
            .query_opt(&self.sql.holder, &[&self.name])
            .await
            .map_err(classify)?;
        Ok(row.map(|row| {
            let owner: Option<String> = row.get(0);
            let live: Option<bool> = row.get(1);
            Holder {
                info: owner.and_then(|o| parse_owner(&o)),
                live: live.unwrap_or(false),
            }
        }))
    }

    async fn clear(&self, id: &str) -> Result<(), RemoteError> {
        let guard = self.client().await?;
        let client = guard.as_ref().expect("connected");
        let id = id.to_string();
        client
            .execute(&self.sql.clear, &[&self.name, &id])
            .await
            .map_err(classify)?;
        Ok(())
    }
}
