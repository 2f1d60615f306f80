//! Fresh, migrated stores for tests, on either backend.
//!
//! SQLite stores live in a temporary directory removed when the [`TestDb`] drops. PostgreSQL
//! stores are a new database per test on the server named by `SYNCGUARD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`); databases left by earlier runs are
//! dropped once they are an hour old.

use crate::{Backend, Store, StoreOptions};
use sqlx::Connection;
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
