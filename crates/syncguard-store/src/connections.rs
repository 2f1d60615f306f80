//! Connections (SPEC §1): one tenant's link to one provider account, with its status history.
//! Credentials and webhook secrets arrive here already sealed; reads of the connection itself
//! never return them.
//!
//! The admin changes of a connection (create, update, disconnect) are written in one
//! transaction with their audit entries: validation happens before, so a refused request
//! writes nothing, and an accepted one writes all of it or nothing.

use crate::audit::{insert_audit, NewAudit};
use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store, StoreError};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Connection {
    pub id: String,
    pub tenant_id: String,
    pub provider: String,
    pub name: String,
    /// pending, active, paused, error, disconnected
    pub status: String,
    /// Non-secret configuration (resources, intervals, webhook scheme, …).
    pub config: serde_json::Value,
    pub has_credentials: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_webhook_at: Option<Millis>,
}

const COLUMNS: &str = "id, tenant_id, provider, name, status, config, credentials IS NOT NULL AS has_credentials, created_at, updated_at, last_webhook_at";

impl FromDbRow for Connection {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Connection {
            id: r.string("id")?,
            tenant_id: r.string("tenant_id")?,
            provider: r.string("provider")?,
            name: r.string("name")?,
            status: r.string("status")?,
            config: serde_json::from_str(&r.string("config")?).unwrap_or_default(),
            has_credentials: r.bool("has_credentials")?,
            created_at: r.i64("created_at")?,
            updated_at: r.i64("updated_at")?,
            last_webhook_at: r.opt_i64("last_webhook_at")?,
        })
    }
}

/// A connection to create; `credentials` and `webhook_secrets` are sealed bytes.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub id: String,
    pub tenant_id: String,
    pub provider: String,
    pub name: String,
    pub status: String,
    pub config: serde_json::Value,
    pub credentials: Option<Vec<u8>>,
    pub webhook_secrets: Option<Vec<u8>>,
}

/// The sealed secrets of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedSecrets {
    pub credentials: Option<Vec<u8>>,
    pub webhook_secrets: Option<Vec<u8>>,
}

/// A status change within [`ConnectionUpdate`], with its history reason and audit entry (to
/// which the store adds `from`).
#[derive(Debug, Clone)]
pub struct StatusChange<'a> {
    pub to: &'a str,
    pub reason: &'a str,
    pub audit: Option<NewAudit<'a>>,
}

/// What [`Store::disconnect_connection`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disconnect {
    /// The status before.
    pub from: String,
    /// Queued and running jobs of the connection that were cancelled.
    pub cancelled_jobs: u64,
}

/// Everything one `PATCH` of a connection changes, written together.
#[derive(Debug, Clone, Default)]
pub struct ConnectionUpdate<'a> {
    /// The whole new (non-secret) config.
    pub config: Option<serde_json::Value>,
    /// New sealed credentials.
    pub credentials: Option<Vec<u8>>,
    /// New sealed webhook secrets (`Some(None)` erases them).
    pub webhook_secrets: Option<Option<Vec<u8>>>,
    /// Applied after the rest; skipped (with its audit entry) when the status already is `to`.
    pub status: Option<StatusChange<'a>>,
    /// The entry for the config and credential changes.
    pub audit: Option<NewAudit<'a>>,
}

/// Sets `$to` on connection `$id` within transaction `$tx` and records the change in the
/// status history; evaluates to the previous status.
macro_rules! change_status {
    ($tx:expr, $id:expr, $to:expr, $reason:expr, $now:expr) => {{
        let (from,): (String,) = sqlx::query_as("SELECT status FROM connections WHERE id = $1")
            .bind($id)
            .fetch_optional(&mut *$tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        if from != $to {
            sqlx::query("UPDATE connections SET status = $1, updated_at = $2 WHERE id = $3").bind($to).bind($now).bind($id).execute(&mut *$tx).await?;
            sqlx::query("INSERT INTO connection_status_history (connection_id, from_status, to_status, reason, at) VALUES ($1, $2, $3, $4, $5)")
                .bind($id)
                .bind(&from)
                .bind($to)
                .bind($reason)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
        }
        from
    }};
}

impl Store {
    pub async fn create_connection(&self, c: NewConnection, now: Millis) -> Result<Connection> {
        self.create_connection_audited(c, None, now).await
    }

    /// As [`Store::create_connection`], writing `audit` in the same transaction.
    pub async fn create_connection_audited(
        &self,
        c: NewConnection,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<Connection> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("INSERT INTO connections (id, tenant_id, provider, name, status, config, credentials, webhook_secrets, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)")
                .bind(&c.id)
                .bind(&c.tenant_id)
                .bind(&c.provider)
                .bind(&c.name)
                .bind(&c.status)
                .bind(c.config.to_string())
                .bind(&c.credentials)
                .bind(&c.webhook_secrets)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| match StoreError::from(e) {
                    StoreError::Conflict(_) => StoreError::Conflict(format!("a connection named `{}` already exists", c.name)),
                    other => other,
                })?;
            sqlx::query("INSERT INTO connection_status_history (connection_id, from_status, to_status, reason, at) VALUES ($1, NULL, $2, 'created', $3)")
                .bind(&c.id)
                .bind(&c.status)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if let Some(a) = &audit {
                insert_audit!(&mut *tx, a, now)?;
            }
            tx.commit().await?;
        });
        self.get_connection(&Scope::All, None, &c.id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    fn connection_conditions(&self, scope: &Scope, visible: Option<&[String]>) -> Conditions {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        if let Some(v) = visible {
            c.and_in_list(self.backend(), "id", v);
        }
        c
    }

    /// A connection visible in `scope` (and the key's connection list).
    pub async fn get_connection(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: &str,
    ) -> Result<Option<Connection>> {
        let mut c = self.connection_conditions(scope, visible);
        c.and("id = ?", vec![Bind::Str(id.to_string())]);
        let sql = format!("SELECT {COLUMNS} FROM connections{}", c.where_clause());
        on_reader!(self, p => {
            let row = bind_all!(sqlx::query(&sql), &c.binds).fetch_optional(p).await?;
            Ok(row.as_ref().map(Connection::from_row).transpose()?)
        })
    }

    pub async fn list_connections(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        page: &PageRequest,
    ) -> Result<Page<Connection>> {
        let mut c = self.connection_conditions(scope, visible);
        if let Some(after) = page.after.as_deref().and_then(decode_cursor) {
            c.and("id > ?", vec![Bind::Str(after)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT {COLUMNS} FROM connections{} ORDER BY id LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(Connection::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |c| c.id.clone()))
        })
    }

    /// The sealed secrets of a connection, for the code that must use them (never the API).
    pub async fn connection_secrets(&self, id: &str) -> Result<Option<SealedSecrets>> {
        on_reader!(self, p => {
            let row = sqlx::query("SELECT credentials, webhook_secrets FROM connections WHERE id = $1").bind(id).fetch_optional(p).await?;
            Ok(match row {
                None => None,
                Some(r) => Some(SealedSecrets { credentials: r.opt_bytes("credentials")?, webhook_secrets: r.opt_bytes("webhook_secrets")? }),
            })
        })
    }

    /// Replaces the sealed secrets of a connection (`None` erases).
    pub async fn set_connection_secrets(
        &self,
        id: &str,
        secrets: &SealedSecrets,
        now: Millis,
    ) -> Result<()> {
        on_writer!(self, p => {
            let n = sqlx::query("UPDATE connections SET credentials = $1, webhook_secrets = $2, updated_at = $3 WHERE id = $4")
                .bind(&secrets.credentials)
                .bind(&secrets.webhook_secrets)
                .bind(now)
                .bind(id)
                .execute(p)
                .await?
                .rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    /// Every connection id with sealed secrets (for key rotation).
    pub async fn connections_with_secrets(&self) -> Result<Vec<String>> {
        on_reader!(self, p => {
            let rows: Vec<(String,)> = sqlx::query_as("SELECT id FROM connections WHERE credentials IS NOT NULL OR webhook_secrets IS NOT NULL ORDER BY id")
                .fetch_all(p)
                .await?;
            Ok(rows.into_iter().map(|(id,)| id).collect())
        })
    }

    /// Changes a connection's status and records the change; returns the previous status. On
    /// a fenced store (a handler's), only while the run's token holds.
    pub async fn set_connection_status(
        &self,
        id: &str,
        status: &str,
        reason: &str,
        now: Millis,
    ) -> Result<String> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let from = change_status!(tx, id, status, reason, now);
            tx.commit().await?;
            Ok(from)
        })
    }

    /// Applies one validated update of a connection and its audit entries in one transaction;
    /// returns the status before it.
    pub async fn update_connection(
        &self,
        id: &str,
        u: ConnectionUpdate<'_>,
        now: Millis,
    ) -> Result<String> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let found = sqlx::query("SELECT id FROM connections WHERE id = $1").bind(id).fetch_optional(&mut *tx).await?;
            if found.is_none() {
                return Err(StoreError::NotFound);
            }
            if let Some(config) = &u.config {
                sqlx::query("UPDATE connections SET config = $1, updated_at = $2 WHERE id = $3").bind(config.to_string()).bind(now).bind(id).execute(&mut *tx).await?;
            }
            if let Some(creds) = &u.credentials {
                sqlx::query("UPDATE connections SET credentials = $1, updated_at = $2 WHERE id = $3").bind(creds).bind(now).bind(id).execute(&mut *tx).await?;
            }
            if let Some(secrets) = &u.webhook_secrets {
                sqlx::query("UPDATE connections SET webhook_secrets = $1, updated_at = $2 WHERE id = $3").bind(secrets).bind(now).bind(id).execute(&mut *tx).await?;
            }
            if let Some(a) = &u.audit {
                insert_audit!(&mut *tx, a, now)?;
            }
            let before: String = match &u.status {
                Some(change) => {
                    let from = change_status!(tx, id, change.to, change.reason, now);
                    if from != change.to {
                        if let Some(mut a) = change.audit.clone() {
                            a.add_param("from", serde_json::json!(from));
                            a.add_param("to", serde_json::json!(change.to));
                            insert_audit!(&mut *tx, &a, now)?;
                        }
                    }
                    from
                }
                None => {
                    let (s,): (String,) = sqlx::query_as("SELECT status FROM connections WHERE id = $1").bind(id).fetch_one(&mut *tx).await?;
                    s
                }
            };
            tx.commit().await?;
            Ok(before)
        })
    }

    /// Disconnects a connection in one transaction: status `disconnected` (with history),
    /// sealed secrets erased, every queued and running job of the connection cancelled (a
    /// running one's eventual result is discarded by its fence), and `audit` written (with
    /// `from` and `cancelled_jobs` added).
    ///
    /// One transaction, so no job can finish, start or be scheduled in between: the count is
    /// exact, and a retried disconnect finds nothing left to cancel.
    pub async fn disconnect_connection(
        &self,
        id: &str,
        reason: &str,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<Disconnect> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let from = change_status!(tx, id, "disconnected", reason, now);
            sqlx::query("UPDATE connections SET credentials = NULL, webhook_secrets = NULL, updated_at = $1 WHERE id = $2").bind(now).bind(id).execute(&mut *tx).await?;
            let cancelled_jobs = sqlx::query("UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1, locked_by = NULL, lease_until = NULL
                                              WHERE connection_id = $2 AND state IN ('available', 'running', 'retryable')")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if let Some(mut a) = audit {
                a.add_param("from", serde_json::json!(from));
                a.add_param("cancelled_jobs", serde_json::json!(cancelled_jobs));
                insert_audit!(&mut *tx, &a, now)?;
            }
            tx.commit().await?;
            Ok(Disconnect { from, cancelled_jobs })
        })
    }

    /// Replaces a connection's (non-secret) configuration.
    pub async fn set_connection_config(
        &self,
        id: &str,
        config: &serde_json::Value,
        now: Millis,
    ) -> Result<()> {
        on_writer!(self, p => {
            sqlx::query("UPDATE connections SET config = $1, updated_at = $2 WHERE id = $3").bind(config.to_string()).bind(now).bind(id).execute(p).await?;
        });
        Ok(())
    }

    /// Records that a webhook for this connection arrived (webhook lag in health).
    pub async fn touch_connection_webhook(&self, id: &str, at: Millis) -> Result<()> {
        on_writer!(self, p => {
            sqlx::query("UPDATE connections SET last_webhook_at = $1 WHERE id = $2 AND (last_webhook_at IS NULL OR last_webhook_at < $1)")
                .bind(at)
                .bind(id)
                .execute(p)
                .await?;
        });
        Ok(())
    }
}
