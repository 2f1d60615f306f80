//! Versioned migrations, embedded in the binary, one list per dialect.
//!
//! Each migration runs in its own transaction together with its bookkeeping row, so a failed
//! migration leaves the schema as it was. On PostgreSQL an advisory lock makes concurrent
//! starts of several nodes apply each migration once.

use crate::{on_writer, Backend, Result, Store, StoreError};
use syncguard_core::ids::sha256_hex;

struct Migration {
    version: i64,
    name: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!("../migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../migrations/postgres/", $name, ".sql")),
        }
    };
}

const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_foundation"),
    migration!(2, "0002_connections"),
    migration!(3, "0003_webhooks"),
    migration!(4, "0004_providers"),
    migration!(5, "0005_records"),
    migration!(6, "0006_sync"),
    migration!(7, "0007_publish"),
    migration!(8, "0008_queue_fencing"),
    migration!(9, "0009_api_security"),
    migration!(10, "0010_bootstrap_keys"),
];

/// Arbitrary constant naming the migration lock among the database's advisory locks.
const MIGRATION_LOCK: i64 = 0x5359_4e43_4d49_4752; // "SYNCMIGR"

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map(|m| m.version).unwrap_or(0)
}

impl Store {
    /// Applies every migration not yet applied; returns the versions it applied.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        let backend = self.backend();
        let mut applied = Vec::new();
        on_writer!(self, pool => {
            let mut conn = pool.acquire().await?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS _syncguard_migrations (
                    version BIGINT PRIMARY KEY, name TEXT NOT NULL,
                    checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *conn)
            .await?;
            if backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_lock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
            }
            let outcome: Result<()> = async {
                for m in MIGRATIONS {
                    let sql = match backend {
                        Backend::Sqlite => m.sqlite,
                        Backend::Postgres => m.postgres,
                    };
                    let checksum = sha256_hex(sql.as_bytes());
                    let done: Option<(String,)> =
                        sqlx::query_as("SELECT checksum FROM _syncguard_migrations WHERE version = $1")
                            .bind(m.version)
                            .fetch_optional(&mut *conn)
                            .await?;
                    if let Some((existing,)) = done {
                        if existing != checksum {
                            tracing::warn!(version = m.version, name = m.name, "applied migration differs from the embedded one");
                        }
                        continue;
                    }
                    let fail = |e: sqlx::Error| StoreError::Migration { version: m.version, reason: e.to_string() };
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    sqlx::raw_sql(sql).execute(&mut *tx).await.map_err(fail)?;
                    sqlx::query("INSERT INTO _syncguard_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(&checksum)
                        .bind(now_ms())
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                    tx.commit().await.map_err(fail)?;
                    tracing::info!(version = m.version, name = m.name, "migration applied");
                    applied.push(m.version);
                }
                Ok(())
            }
            .await;
            if backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_unlock($1)").bind(MIGRATION_LOCK).execute(&mut *conn).await?;
            }
            outcome?;
        });
        Ok(applied)
    }

    /// The highest applied migration version (0 on an empty database).
    pub async fn schema_version(&self) -> Result<i64> {
        crate::on_reader!(self, pool => {
            let v: Option<(Option<i64>,)> = sqlx::query_as("SELECT MAX(version) FROM _syncguard_migrations")
                .fetch_optional(pool)
                .await
                .ok()
                .flatten();
            Ok(v.and_then(|(v,)| v).unwrap_or(0))
        })
    }
}

/// Bookkeeping timestamps only; queue and API times always come from the caller's clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
