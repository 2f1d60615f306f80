//! Fresh, migrated stores for tests, on either backend.
//!
//! SQLite stores live in a temporary directory removed when the [`TestDb`] drops. PostgreSQL
//! stores are a new database per test on the server named by `SYNCGUARD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); databases left by earlier runs are
//! dropped once they are an hour old.

use crate::{Backend, Pools, Store, StoreOptions};
use sqlx::Connection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The server tests create their PostgreSQL databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("SYNCGUARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A test database: its store, its url (for child processes) and what to clean up.
pub struct TestDb {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile_dir::Dir>,
}

impl TestDb {
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }

    /// Runs `sql` (statements separated by `;`, no parameters) on the writer: rows a test needs
    /// with exact ages or states that no operation would write directly.
    pub async fn execute(&self, sql: &str) {
        match &self.store.pools {
            Pools::Sqlite { write, .. } => sqlx::raw_sql(sql).execute(write).await.map(|_| ()),
            Pools::Postgres(p) => sqlx::raw_sql(sql).execute(p).await.map(|_| ()),
        }
        .unwrap_or_else(|e| panic!("test SQL failed: {e}\n{sql}"));
    }

    /// The number of rows of `table`.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        match &self.store.pools {
            Pools::Sqlite { write, .. } => sqlx::query_scalar(&sql).fetch_one(write).await,
            Pools::Postgres(p) => sqlx::query_scalar(&sql).fetch_one(p).await,
        }
        .expect("count")
    }
}

/// A fresh, migrated store on `backend`.
pub async fn fresh(backend: Backend) -> TestDb {
    let db = fresh_unmigrated(backend).await;
    db.store.migrate().await.expect("migrations apply");
    db
}

/// A fresh, empty store on `backend` (for migration tests).
pub async fn fresh_unmigrated(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile_dir::Dir::new();
            let url = format!("sqlite://{}", dir.path.join("syncguard.db").display());
            let store = Store::connect(&url, &StoreOptions::default())
                .await
                .expect("sqlite opens");
            TestDb {
                store,
                url,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => {
            let admin = postgres_admin_url();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs();
            let name = format!("sg_t_{now}_{}", uuid::Uuid::new_v4().simple());
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| {
                    panic!("postgres at {admin} is needed for the postgres tests: {e}")
                });
            drop_stale_databases(&mut conn, now).await;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create test database");
            conn.close().await.ok();
            let url = replace_database(&admin, &name);
            let opts = StoreOptions {
                pg_max_connections: 8,
                ..Default::default()
            };
            let store = Store::connect(&url, &opts).await.expect("postgres opens");
            TestDb {
                store,
                url,
                _dir: None,
            }
        }
    }
}

async fn drop_stale_databases(conn: &mut sqlx::PgConnection, now: u64) {
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'sg\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for (name,) in names {
        let created: Option<u64> = name.split('_').nth(2).and_then(|s| s.parse().ok());
        if created.is_some_and(|c| c + 3600 < now) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// `postgres://u@h:5432/test?x=y` with the database name replaced.
fn replace_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = &base[scheme_end..];
    let prefix = match host_part.find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

/// The shape of a migrated schema in dialect-neutral terms, for comparing the two backends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schema {
    /// Table name → its shape.
    pub tables: BTreeMap<String, Table>,
    /// Index name → its shape, for every index made by `CREATE INDEX` (indexes that back a
    /// primary key or `UNIQUE` constraint are described with their table).
    pub indexes: BTreeMap<String, Index>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    /// Column name → (portable type, nullable).
    pub columns: BTreeMap<String, (String, bool)>,
    /// Primary-key columns in key order.
    pub primary_key: Vec<String>,
    /// Column lists of the table's `UNIQUE` constraints.
    pub unique: BTreeSet<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub table: String,
    pub columns: Vec<String>,
    pub unique: bool,
    /// Whether the index has a `WHERE` predicate.
    pub partial: bool,
}

/// The declared or reported column type as one of `text`, `integer`, `bytes`, `boolean`
/// (anything else is kept as written, so that a new type shows up as a difference).
fn portable_type(t: &str) -> String {
    match t.to_ascii_lowercase().as_str() {
        "text" => "text".into(),
        "integer" | "bigint" | "int8" | "int4" => "integer".into(),
        "blob" | "bytea" => "bytes".into(),
        "boolean" | "bool" => "boolean".into(),
        other => other.into(),
    }
}

/// Reads the schema of `store` (tables of the current schema, bookkeeping included; SQLite's
/// own `sqlite_*` tables excluded).
pub async fn schema(store: &Store) -> Schema {
    match &store.pools {
        Pools::Sqlite { read, .. } => sqlite_schema(read).await,
        Pools::Postgres(pool) => postgres_schema(pool).await,
    }
}

async fn sqlite_schema(pool: &sqlx::SqlitePool) -> Schema {
    let mut schema = Schema::default();
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
    )
    .fetch_all(pool)
    .await
    .expect("list tables");
    for (name,) in tables {
        let mut table = Table::default();
        let cols: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid",
        )
        .bind(&name)
        .fetch_all(pool)
        .await
        .expect("table info");
        let mut pk: Vec<(i64, String)> = Vec::new();
        for (col, ty, notnull, key) in cols {
            // SQLite lets a non-integer primary key hold NULL; the schema never stores one.
            table
                .columns
                .insert(col.clone(), (portable_type(&ty), !notnull && key == 0));
            if key > 0 {
                pk.push((key, col));
            }
        }
        pk.sort();
        table.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        let indexes: Vec<(String, bool, String, bool)> =
            sqlx::query_as("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)")
                .bind(&name)
                .fetch_all(pool)
                .await
                .expect("index list");
        for (index, unique, origin, partial) in indexes {
            let cols: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await
                    .expect("index info");
            let columns: Vec<String> = cols.into_iter().map(|(c,)| c).collect();
            match origin.as_str() {
                "pk" => {}
                "u" => {
                    table.unique.insert(columns);
                }
                _ => {
                    let table = name.clone();
                    schema.indexes.insert(
                        index,
                        Index {
                            table,
                            columns,
                            unique,
                            partial,
                        },
                    );
                }
            }
        }
        schema.tables.insert(name, table);
    }
    schema
}

/// Index name, table, unique, primary, partial, constraint kind, columns.
type PgIndexRow = (
    String,
    String,
    bool,
    bool,
    bool,
    Option<String>,
    Vec<String>,
);

async fn postgres_schema(pool: &sqlx::PgPool) -> Schema {
    let mut schema = Schema::default();
    let cols: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns WHERE table_schema = current_schema()",
    )
    .fetch_all(pool)
    .await
    .expect("list columns");
    for (table, col, ty, nullable) in cols {
        let t = schema.tables.entry(table).or_default();
        t.columns
            .insert(col, (portable_type(&ty), nullable == "YES"));
    }
    let indexes: Vec<PgIndexRow> = sqlx::query_as(
        "SELECT i.relname::text, t.relname::text, ix.indisunique, ix.indisprimary,
                    ix.indpred IS NOT NULL, c.contype::text,
                    ARRAY(SELECT a.attname::text
                          FROM unnest(ix.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
                          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
                          ORDER BY k.ord)
             FROM pg_index ix
             JOIN pg_class i ON i.oid = ix.indexrelid
             JOIN pg_class t ON t.oid = ix.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
             LEFT JOIN pg_constraint c ON c.conindid = ix.indexrelid
             WHERE n.nspname = current_schema()",
    )
    .fetch_all(pool)
    .await
    .expect("list indexes");
    for (index, table, unique, primary, partial, constraint, columns) in indexes {
        let t = schema.tables.entry(table.clone()).or_default();
        if primary {
            t.primary_key = columns;
        } else if constraint.as_deref() == Some("u") {
            t.unique.insert(columns);
        } else {
            schema.indexes.insert(
                index,
                Index {
                    table,
                    columns,
                    unique,
                    partial,
                },
            );
        }
    }
    schema
}

/// A self-removing temporary directory, kept here to spare the crate a dependency.
mod tempfile_dir {
    use super::PathBuf;

    pub struct Dir {
        pub path: PathBuf,
    }

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir()
                .join(format!("syncguard-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Dir { path }
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::replace_database("postgres://u@h:5432/test", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::replace_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }
}
