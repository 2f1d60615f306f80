//! Leadership for work one node at a time should do (the periodic scheduler).
//!
//! On PostgreSQL a session advisory lock, held on a dedicated connection: if the node dies, its
//! connection closes and the lock passes to another node. SQLite serves one node, which always
//! leads.

use crate::{Result, Store};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

/// Held leadership; dropping it without [`Leadership::release`] ends it when the connection closes.
/// Opaque, so that no database type leaves the store.
pub struct Leadership(Held);

enum Held {
    Sole,
    Advisory {
        conn: PoolConnection<Postgres>,
        lock: i64,
        /// The pool `conn` came from: once it is closed, leadership is given up, so that
        /// closing the store does not wait forever on the held connection.
        pool: sqlx::PgPool,
    },
}

impl Store {
    /// Tries to become leader for `lock` (a constant naming the role). `None`: another node leads.
    pub async fn try_lead(&self, lock: i64) -> Result<Option<Leadership>> {
        let crate::Pools::Postgres(pool) = &self.pools else {
            return Ok(Some(Leadership(Held::Sole)));
        };
        let mut conn = pool.acquire().await?;
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(lock)
            .fetch_one(&mut *conn)
            .await?;
        Ok(got.then_some(Leadership(Held::Advisory {
            conn,
            lock,
            pool: pool.clone(),
        })))
    }
}

impl Leadership {
    /// Whether the leadership still holds: its connection is alive and its store not closed.
    pub async fn still_held(&mut self) -> bool {
        match &mut self.0 {
            Held::Sole => true,
            Held::Advisory { pool, .. } if pool.is_closed() => false,
            Held::Advisory { conn, .. } => {
                sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok()
            }
        }
    }

    pub async fn release(self) {
        if let Held::Advisory { mut conn, lock, .. } = self.0 {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(lock)
                .execute(&mut *conn)
                .await;
        }
    }
}
