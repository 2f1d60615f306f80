//! The one storage seam of syncguard.
//!
//! [`Store`] speaks to SQLite (embedded default, one file, WAL) or PostgreSQL (many stateless
//! nodes share one database), chosen by the `database_url`. Both run the same SQL where the
//! dialects agree and a small per-dialect variant where they do not (`FOR UPDATE SKIP LOCKED`,
//! array membership, advisory locks). Handlers and workers never write SQL: they call methods
//! here, and the same conformance tests run against both backends.
//!
//! # Layout
//! - [`migrate`]: versioned migrations, applied at start and by `syncguard migrate`.
//! - [`tenancy`]: tenants and API keys (hashed at rest).
//! - [`audit`]: the audit log of admin actions.
//! - [`connections`]: connections and their sealed secrets.
//! - [`events`]: inbound webhook events.
//! - [`provider_state`]: shared rate-limiter and circuit-breaker state.
//! - [`limiter`]: where a rate limiter's state lives on each backend (shared row or this process).
//! - [`idempotency`]: stored responses for the `Idempotency-Key` header.
//! - [`checkpoints`]: per (connection, resource) sync cursors.
//! - [`publish`]: desired state, snapshots and drift events.
//! - [`records`]: the local mirror of provider objects and the change feed.
//! - [`queue`]: the durable job queue (states, leases, retries, unique keys, dead letters).
//! - [`page`]: opaque cursors for list endpoints.
//! - [`reachability`]: whether the store can be reached, fed by failures and a probe.
//! - [`testkit`]: fresh stores for tests, on either backend.
//!
//! Every tenant-owned read and write takes a [`Scope`]: isolation is a parameter of the query,
//! not a filter applied afterwards.

pub mod audit;
pub mod checkpoints;
pub mod connections;
pub mod events;
pub mod idempotency;
pub mod leader;
pub mod limiter;
pub mod migrate;
pub mod page;
pub mod provider_state;
pub mod publish;
pub mod queue;
pub mod reachability;
pub mod records;
pub mod retention;
mod row;
mod sql;
pub mod tenancy;
pub mod testkit;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

pub use syncguard_core::Millis;

/// Errors of the storage layer. `Unavailable` is what the API maps to 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid database url `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("migration {version} failed: {reason}")]
    Migration { version: i64, reason: String },
    #[error("store error: {0}")]
    Other(String),
    /// A write made for a job whose lease this run no longer holds (SPEC §3.1 "Fencing").
    #[error("job {job_id}: this run no longer holds its lease; the write was refused")]
    Fenced { job_id: i64 },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound,
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            // A connection cut during its handshake or a reply ends in a protocol error.
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            sqlx::Error::Database(db) if db.code().is_some_and(|c| is_outage_sqlstate(&c)) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Other(e.to_string()),
        }
    }
}

/// Whether a PostgreSQL SQLSTATE says the server went away rather than that the statement was
/// wrong: connection exceptions (class 08), the server shutting down or not yet accepting
/// (57P01–57P03, e.g. a request in flight when PostgreSQL stops), and too many connections
/// (53300). These are outages: 503 with `Retry-After`, never a 500.
fn is_outage_sqlstate(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Clone)]
pub(crate) enum Pools {
    /// SQLite allows one writer at a time; a single writer connection serialises writes without
    /// busy-waiting, while a few read-only connections serve reads concurrently (WAL).
    Sqlite {
        write: SqlitePool,
        read: SqlitePool,
    },
    Postgres(PgPool),
}

/// Handle to the store. Cheap to clone (pools are reference-counted).
#[derive(Clone)]
pub struct Store {
    pub(crate) pools: Pools,
    url_redacted: String,
    /// Set on the store a handler gets: its job-facing writes check this token.
    pub(crate) fence: Option<queue::Fence>,
    /// The connection [`Store::probe`] uses (PostgreSQL only: an embedded file has no network
    /// in between, and its readers serve the probe).
    probe: Option<std::sync::Arc<reachability::PgProbe>>,
    reachability: std::sync::Arc<reachability::Reachability>,
    /// This process's part of the rate limiters (all of them on SQLite), shared by clones.
    limiters: std::sync::Arc<limiter::LocalLimiters>,
}

/// Which rows a caller may see: one tenant, all of them (platform keys, system work), or none
/// (a key whose tenant is missing: access fails closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Tenant(String),
    Nothing,
}

impl Scope {
    /// The tenant filter as a nullable bind value: `None` means every tenant. [`Scope::Nothing`]
    /// binds the empty id, which no tenant has (ids are generated `ten_…`), so every filtered
    /// query finds no row.
    pub(crate) fn tenant(&self) -> Option<&str> {
        match self {
            Scope::All => None,
            Scope::Tenant(t) => Some(t),
            Scope::Nothing => Some(""),
        }
    }
}

/// Runs `$body` with `$pool` bound to the backend's writer pool; the body is compiled once per
/// backend, so the same query builder code serves both.
macro_rules! on_writer {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { write: $pool, .. } => $body,
            $crate::Pools::Postgres($pool) => $body,
        }
    };
}

/// As [`on_writer`], on the pool that serves reads.
macro_rules! on_reader {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pools {
            $crate::Pools::Sqlite { read: $pool, .. } => $body,
            $crate::Pools::Postgres($pool) => $body,
        }
    };
}
pub(crate) use {on_reader, on_writer};

/// Pool sizes and timeouts.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Connections to PostgreSQL per node.
    pub pg_max_connections: u32,
    /// Read-only connections to SQLite (the writer is always one).
    pub sqlite_readers: u32,
    /// How long to wait for a connection before answering "unavailable". Short, so that a
    /// store that went away turns into a quick 503 rather than a hung request.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            pg_max_connections: 16,
            sqlite_readers: 4,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl Store {
    /// Opens the store named by `url` (`sqlite://path`, `sqlite::memory:` is refused because
    /// workers and API must share one database; `postgres://…`). Does not migrate.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Store> {
        let bad = |reason: String| StoreError::BadUrl {
            url: redact_url(url),
            reason,
        };
        let mut probe = None;
        let pools = if url.starts_with("sqlite:") {
            if url.contains(":memory:") {
                return Err(bad(
                    "in-memory SQLite cannot be shared by the API and workers; use a file".into(),
                ));
            }
            let base = SqliteConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // Durability rule of SPEC §3.2: a commit is on disk before an answer leaves.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true);
            // A database created now hands pages freed by retention back to the file system
            // (`Store::reclaim_space`); on an older one the pragma does nothing (see retention).
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(base.clone().auto_vacuum(SqliteAutoVacuum::Incremental))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let read = SqlitePoolOptions::new()
                .max_connections(opts.sqlite_readers.max(1))
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(base.read_only(true))
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            Pools::Sqlite { write, read }
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let o = PgConnectOptions::from_str(url)
                .map_err(|e| bad(e.to_string()))?
                .options([("synchronous_commit", "on")]);
            let pool = PgPoolOptions::new()
                .max_connections(opts.pg_max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(o.clone())
                .await
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            probe = Some(std::sync::Arc::new(reachability::PgProbe::new(o)));
            Pools::Postgres(pool)
        } else {
            return Err(bad("expected a sqlite:// or postgres:// url".into()));
        };
        Ok(Store {
            pools,
            url_redacted: redact_url(url),
            fence: None,
            probe,
            reachability: Default::default(),
            limiters: Default::default(),
        })
    }

    pub fn backend(&self) -> Backend {
        match self.pools {
            Pools::Sqlite { .. } => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Connections of each pool, open and idle, as `(pool, open, idle)`: `main` on PostgreSQL,
    /// `write` and `read` on SQLite. Read from memory; never touches the database.
    pub fn pool_stats(&self) -> Vec<(&'static str, u32, u32)> {
        let stat = |name, size: u32, idle: usize| (name, size, idle as u32);
        match &self.pools {
            Pools::Sqlite { write, read } => vec![
                stat("write", write.size(), write.num_idle()),
                stat("read", read.size(), read.num_idle()),
            ],
            Pools::Postgres(p) => vec![stat("main", p.size(), p.num_idle())],
        }
    }

    /// The database url with any password removed, for startup lines and logs.
    pub fn url_redacted(&self) -> &str {
        &self.url_redacted
    }

    /// A cheap round trip, for `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        on_reader!(self, p => {
            sqlx::query("SELECT 1").execute(p).await?;
        });
        Ok(())
    }

    /// Closes every pool, waiting for checked-out connections to come back.
    pub async fn close(&self) {
        match &self.pools {
            Pools::Sqlite { write, read } => {
                read.close().await;
                write.close().await;
            }
            Pools::Postgres(p) => p.close().await,
        }
        if let Some(p) = &self.probe {
            p.close().await;
        }
    }
}

/// A new id for a row the store creates, made for `now` (the caller's clock) and sorting in the
/// order this process made them.
pub(crate) fn new_id(prefix: &str, now: Millis) -> String {
    static IDS: syncguard_core::ids::IdGen = syncguard_core::ids::IdGen::new();
    IDS.next(prefix, now, rand::random())
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return url.to_string();
    };
    let creds = &rest[..at];
    match creds.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &creds[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_shutdowns_and_lost_connections_are_outages() {
        for code in [
            "08000", "08003", "08006", "57P01", "57P02", "57P03", "53300",
        ] {
            assert!(is_outage_sqlstate(code), "{code}");
        }
        for code in ["23505", "42P01", "40001", "22P02", "57014"] {
            assert!(!is_outage_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://sg:hunter2@db:5432/sg"),
            "postgres://sg:***@db:5432/sg"
        );
        assert_eq!(redact_url("postgres://sg@db/sg"), "postgres://sg@db/sg");
        assert_eq!(redact_url("sqlite://syncguard.db"), "sqlite://syncguard.db");
    }
}
