//! Leadership for work one node at a time should do (the periodic scheduler).
//!
//! On PostgreSQL a session advisory lock, held on a dedicated connection: if the node dies, its
//! connection closes and the lock passes to another node. SQLite serves one node, which always
//! leads.

use crate::{Result, Store};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

/// Held leadership; dropping it without [`Leadership::release`] ends it when the connection closes.
pub enum Leadership {
    Sole,
    Advisory {
        conn: PoolConnection<Postgres>,
        lock: i64,
    },
}

impl Store {
    /// Tries to become leader for `lock` (a constant naming the role). `None`: another node leads.
    pub async fn try_lead(&self, lock: i64) -> Result<Option<Leadership>> {
        let Some(pool) = self.pg_pool() else {
            return Ok(Some(Leadership::Sole));
        };
        let mut conn = pool.acquire().await?;
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(lock)
            .fetch_one(&mut *conn)
            .await?;
        Ok(got.then_some(Leadership::Advisory { conn, lock }))
    }
}

impl Leadership {
    /// Whether the leadership still holds (its connection is alive).
    pub async fn still_held(&mut self) -> bool {
        match self {
            Leadership::Sole => true,
            Leadership::Advisory { conn, .. } => {
                sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok()
            }
        }
    }

    pub async fn release(self) {
        if let Leadership::Advisory { mut conn, lock } = self {
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(lock)
                .execute(&mut *conn)
                .await;
        }
    }
}
