//! Versioned migrations, embedded in the binary, one source per migration for both dialects.
//!
//! `migrations/NNNN_name.sql` is written once and rendered per dialect by [`render`]; the few
//! places where SQLite and PostgreSQL differ are marked:
//! - `{{serial_pk}}`: an auto-incrementing 64-bit primary key (`INTEGER PRIMARY KEY
//!   AUTOINCREMENT` / `BIGSERIAL PRIMARY KEY`);
//! - `{{bytes}}`: a byte string column (`BLOB` / `BYTEA`);
//! - `{{without_rowid}}`: ` WITHOUT ROWID` on SQLite, nothing on PostgreSQL;
//! - a line starting `--sqlite: ` or `--postgres: ` belongs to that dialect only (the marker is
//!   removed).
//!
//! The rendering is byte for byte the SQL that earlier releases kept as two files per migration,
//! so the checksums recorded in existing databases still match (a unit test below holds this).
//!
//! Each migration runs in its own transaction together with its bookkeeping row, so a failed
//! migration leaves the schema as it was. On PostgreSQL an advisory lock makes concurrent
//! starts of several nodes apply each migration once.

use crate::{on_writer, Backend, Result, Store, StoreError};
use syncguard_core::ids::sha256_hex;

struct Migration {
    version: i64,
    name: &'static str,
    source: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            source: include_str!(concat!("../migrations/", $name, ".sql")),
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
    migration!(11, "0011_unconnected_jobs"),
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
                    let sql = render(m.source, backend);
                    let sql = sql.as_str();
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

/// The SQL of one migration source for `backend` (markers in the module doc).
fn render(source: &str, backend: Backend) -> String {
    let (keep, drop) = match backend {
        Backend::Sqlite => ("--sqlite: ", "--postgres: "),
        Backend::Postgres => ("--postgres: ", "--sqlite: "),
    };
    let mut out = String::with_capacity(source.len());
    for line in source.split_inclusive('\n') {
        if line.starts_with(drop) {
            continue;
        }
        let line = line.strip_prefix(keep).unwrap_or(line);
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .expect("a migration marker is closed with }}");
            out.push_str(marker(&after[..end], backend));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
    }
    out
}

fn marker(name: &str, backend: Backend) -> &'static str {
    match (name, backend) {
        ("serial_pk", Backend::Sqlite) => "INTEGER PRIMARY KEY AUTOINCREMENT",
        ("serial_pk", Backend::Postgres) => "BIGSERIAL PRIMARY KEY",
        ("bytes", Backend::Sqlite) => "BLOB",
        ("bytes", Backend::Postgres) => "BYTEA",
        ("without_rowid", Backend::Sqlite) => " WITHOUT ROWID",
        ("without_rowid", Backend::Postgres) => "",
        _ => panic!("unknown migration marker {{{{{name}}}}}"),
    }
}

/// Bookkeeping timestamps only; queue and API times always come from the caller's clock.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of each migration as earlier releases shipped it (`migrations/sqlite/*.sql` and
    /// `migrations/postgres/*.sql`) and recorded it in `_syncguard_migrations.checksum`. A
    /// rendering that drifts from these would make every existing database warn at start-up.
    const SHIPPED: &[(i64, &str, &str)] = &[
        (
            1,
            "306e7ef961f7b75fda86fca01abbb0d9371fa59ff3f459667cddf88634055094",
            "3c980f13d1bfabdbaa0be1310c73b89f8a5bc3ad1d3600a1a28138d4427da97d",
        ),
        (
            2,
            "e8d50ea6ebac1ac83f2916c4daab2f9a71b3809eefa71b33d3e2d926c3f9500b",
            "8ec48a297d2ab344253962a639a83d9148dbfc3744ca14ce981c46a857683641",
        ),
        (
            3,
            "e17e8a46b719b854d74228a86d2d9b533639f839d653067942fa67f9cc470794",
            "955f46cd348dabbc2478e2eada48a619008639c1d2a7c6ad2ece3ec88ecce844",
        ),
        (
            4,
            "e06d087188e35823757269871cb3776c96d963bc6ba3557cb4674668605110e6",
            "e06d087188e35823757269871cb3776c96d963bc6ba3557cb4674668605110e6",
        ),
        (
            5,
            "8e7d0e8ea237641cef35149bf1092acad02fa1be3f345fa299d2e51754770bd6",
            "823b4b6cea5b861a161724af4ac783559d3e93117dd7c2543145f2bb49e085ab",
        ),
        (
            6,
            "7d5fbd30be7db3ed5eaf2298df5d644a1d07f22f66c50dff2de41eb6cd242d1e",
            "7d5fbd30be7db3ed5eaf2298df5d644a1d07f22f66c50dff2de41eb6cd242d1e",
        ),
        (
            7,
            "925a1885886c41938c5e599c6ef5540973ff54a5b730dc05a26e73febb267994",
            "7451f3e78cd9af804fd3dda5f2840974ec105f9c4d2d572276dcde381f8a0e81",
        ),
        (
            8,
            "d5b5f555d6b16e9b55fb8d6334327693213c7bb6059bab6e5183bce88611c821",
            "d5b5f555d6b16e9b55fb8d6334327693213c7bb6059bab6e5183bce88611c821",
        ),
        (
            9,
            "81f67c00bc157b73ea64057a8ca15c2209a2a5c1b3639358c89c42f702ab621e",
            "62241f917d3316f2c623dcccb3bff43fea7946dbf5c9c2f0b23917ed58522bff",
        ),
        (
            10,
            "a54421c299da6d6135a6994210ed4abf46c76fe463bddeffbf8eebc1045a8706",
            "a54421c299da6d6135a6994210ed4abf46c76fe463bddeffbf8eebc1045a8706",
        ),
        (
            11,
            "d9be5ae3444d84f3f16650435b99caffb5535636b3b6876ef8bf6e1a1b72c67b",
            "d9be5ae3444d84f3f16650435b99caffb5535636b3b6876ef8bf6e1a1b72c67b",
        ),
    ];

    #[test]
    fn rendering_matches_the_shipped_sql_byte_for_byte() {
        assert_eq!(MIGRATIONS.len(), SHIPPED.len());
        for (m, (version, sqlite, postgres)) in MIGRATIONS.iter().zip(SHIPPED) {
            assert_eq!(m.version, *version);
            let got_sqlite = sha256_hex(render(m.source, Backend::Sqlite).as_bytes());
            let got_postgres = sha256_hex(render(m.source, Backend::Postgres).as_bytes());
            assert_eq!(&got_sqlite, sqlite, "{} on sqlite", m.name);
            assert_eq!(&got_postgres, postgres, "{} on postgres", m.name);
        }
    }

    #[test]
    fn markers_render_per_dialect() {
        let src = "a {{bytes}} b\n--sqlite: s\n--postgres: p\n){{without_rowid}};";
        assert_eq!(
            render(src, Backend::Sqlite),
            "a BLOB b\ns\n) WITHOUT ROWID;"
        );
        assert_eq!(render(src, Backend::Postgres), "a BYTEA b\np\n);");
    }

    #[test]
    fn no_marker_survives_rendering() {
        for m in MIGRATIONS {
            for backend in [Backend::Sqlite, Backend::Postgres] {
                let sql = render(m.source, backend);
                assert!(
                    !sql.contains("{{")
                        && !sql.contains("--sqlite:")
                        && !sql.contains("--postgres:"),
                    "{}",
                    m.name
                );
            }
        }
    }
}
