//! Shared provider runtime state (SPEC §2, §3.3): circuit breakers and rate limiters, one row
//! each, so every node obeys one breaker and one limit.
//!
//! The rules live in `syncguard_core::{breaker, limiter}`; rows keep their JSON. Every change is
//! a read-modify-write in one short transaction that holds the row lock (`SELECT … FOR UPDATE`
//! on PostgreSQL; SQLite's single writer connection serialises writers anyway), with the caller's
//! rule applied in between as a plain closure. Doing the math in Rust rather than in SQL keeps
//! one property-tested implementation of it; the lock is held for two statements on a warm
//! connection, well under a millisecond, far below any provider's call spacing.
//!
//! Rate limiters read "now" from the database clock: nodes' clocks drift apart, the database's
//! is the one they share, so a limit computed against it holds across nodes.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Backend, Millis, Result, Scope, Store, StoreError};
use syncguard_core::breaker::BreakerState;
use syncguard_core::limiter::LimiterState;

/// The circuit key of SPEC §1: one breaker per (connection, provider).
pub fn circuit_key(connection_id: &str, provider: &str) -> String {
    format!("{connection_id}:{provider}")
}

/// Who a circuit belongs to, for creating its row on first use.
#[derive(Debug, Clone, Copy)]
pub struct CircuitOwner<'a> {
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub provider: &'a str,
}

impl CircuitOwner<'_> {
    pub fn key(&self) -> String {
        circuit_key(self.connection_id, self.provider)
    }
}

/// One connection's breaker as listed: connections that never called out have no row yet and
/// show a fresh (closed) breaker.
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitRow {
    pub key: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub provider: String,
    pub machine: BreakerState,
    /// The connection's config: its `circuit` overrides decide the window failures count in.
    pub connection_config: serde_json::Value,
    pub updated_at: Option<Millis>,
}

/// Filters of `GET /v1/circuits`.
#[derive(Debug, Clone, Default)]
pub struct CircuitFilter {
    pub connection_id: Option<String>,
    pub provider: Option<String>,
    /// `closed`, `open` or `half_open`.
    pub state: Option<String>,
}

fn parse_machine(text: Option<String>) -> BreakerState {
    // A row a newer node wrote in a shape this node cannot read starts fresh rather than
    // wedging every call of the connection.
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn lock_clause(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    }
}

/// The database's clock in Unix milliseconds, as a select expression.
fn db_now(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

impl Store {
    /// A circuit's state, or `None` when it never had a row (a closed breaker).
    pub async fn circuit(&self, key: &str) -> Result<Option<BreakerState>> {
        on_reader!(self, p => {
            let row: Option<(String,)> = sqlx::query_as("SELECT machine FROM circuits WHERE key = $1")
                .bind(key)
                .fetch_optional(p)
                .await?;
            Ok(row.map(|(m,)| parse_machine(Some(m))))
        })
    }

    /// Applies `change` to a circuit under its row lock and stores the result, creating the row
    /// on first use. Returns what `change` returned and the state after it.
    pub async fn update_circuit<R: Send>(
        &self,
        owner: CircuitOwner<'_>,
        now: Millis,
        change: impl FnOnce(&mut BreakerState) -> R + Send,
    ) -> Result<(R, BreakerState)> {
        self.update_circuit_audited(owner, now, change, None, |_| None)
            .await
    }

    /// As [`Store::update_circuit`], writing `audit` in the same transaction when `params` of
    /// what `change` returned is some (its params replace the entry's).
    pub async fn update_circuit_audited<R: Send>(
        &self,
        owner: CircuitOwner<'_>,
        now: Millis,
        change: impl FnOnce(&mut BreakerState) -> R + Send,
        audit: Option<crate::audit::NewAudit<'_>>,
        params: impl FnOnce(&R) -> Option<serde_json::Value> + Send,
    ) -> Result<(R, BreakerState)> {
        let key = owner.key();
        let select = format!(
            "SELECT machine FROM circuits WHERE key = $1{}",
            lock_clause(self.backend())
        );
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let mut row: Option<(String,)> = sqlx::query_as(&select).bind(&key).fetch_optional(&mut *tx).await?;
            if row.is_none() {
                sqlx::query("INSERT INTO circuits (key, tenant_id, connection_id, provider, state, forced, opened_at, machine, updated_at)
                             VALUES ($1, $2, $3, $4, 'closed', NULL, NULL, '{}', $5) ON CONFLICT (key) DO NOTHING")
                    .bind(&key)
                    .bind(owner.tenant_id)
                    .bind(owner.connection_id)
                    .bind(owner.provider)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                row = sqlx::query_as(&select).bind(&key).fetch_optional(&mut *tx).await?;
            }
            let mut machine = parse_machine(row.map(|(m,)| m));
            let before = machine.clone();
            let out = change(&mut machine);
            if machine != before {
                let json = serde_json::to_string(&machine).map_err(|e| StoreError::Other(e.to_string()))?;
                sqlx::query("UPDATE circuits SET state = $1, forced = $2, opened_at = $3, machine = $4, updated_at = $5 WHERE key = $6")
                    .bind(machine.state().as_str())
                    .bind(machine.forced().map(forced_str))
                    .bind(machine.opened_at())
                    .bind(json)
                    .bind(now)
                    .bind(&key)
                    .execute(&mut *tx)
                    .await?;
            }
            if let (Some(mut a), Some(p)) = (audit, params(&out)) {
                a.params = p;
                crate::audit::insert_audit!(&mut *tx, &a, now)?;
            }
            tx.commit().await?;
            Ok((out, machine))
        })
    }

    /// Circuits of the connections visible in `scope`, by connection id.
    pub async fn list_circuits(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        filter: &CircuitFilter,
        page: &PageRequest,
    ) -> Result<Page<CircuitRow>> {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("c.tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        if let Some(v) = visible {
            c.and_in_list(self.backend(), "c.id", v);
        }
        if let Some(id) = &filter.connection_id {
            c.and("c.id = ?", vec![Bind::Str(id.clone())]);
        }
        if let Some(p) = &filter.provider {
            c.and("c.provider = ?", vec![Bind::Str(p.clone())]);
        }
        if let Some(s) = &filter.state {
            c.and(
                "COALESCE(k.state, 'closed') = ?",
                vec![Bind::Str(s.clone())],
            );
        }
        if let Some(after) = page.after.as_deref().and_then(decode_cursor) {
            c.and("c.id > ?", vec![Bind::Str(after)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT c.id, c.tenant_id, c.provider, c.config, k.machine, k.updated_at
             FROM connections c LEFT JOIN circuits k ON k.connection_id = c.id AND k.provider = c.provider{}
             ORDER BY c.id LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(circuit_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |r| r.connection_id.clone()))
        })
    }

    /// Breakers per (provider, state) over every live connection, for the
    /// `syncguard_circuit_state` gauge.
    pub async fn circuit_counts(&self) -> Result<Vec<(String, String, i64)>> {
        on_reader!(self, p => {
            let rows: Vec<(String, String, i64)> = sqlx::query_as(
                "SELECT c.provider, COALESCE(k.state, 'closed') AS state, COUNT(*) AS n
                 FROM connections c LEFT JOIN circuits k ON k.connection_id = c.id AND k.provider = c.provider
                 WHERE c.status <> 'disconnected'
                 GROUP BY c.provider, COALESCE(k.state, 'closed')",
            )
            .fetch_all(p)
            .await?;
            Ok(rows)
        })
    }

    /// Applies `change` to a rate limiter under its row lock, with the database's clock, and
    /// stores the result if it changed. A refused acquire changes nothing and writes nothing.
    pub async fn update_limiter<R: Send>(
        &self,
        key: &str,
        provider: &str,
        change: impl FnOnce(&mut LimiterState, Millis) -> R + Send,
    ) -> Result<R> {
        let select = format!(
            "SELECT state, {} AS now FROM rate_limiters WHERE key = $1{}",
            db_now(self.backend()),
            lock_clause(self.backend())
        );
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let mut row: Option<(String, i64)> = sqlx::query_as(&select).bind(key).fetch_optional(&mut *tx).await?;
            if row.is_none() {
                sqlx::query("INSERT INTO rate_limiters (key, provider, state, updated_at) VALUES ($1, $2, '{}', 0) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(provider)
                    .execute(&mut *tx)
                    .await?;
                row = sqlx::query_as(&select).bind(key).fetch_optional(&mut *tx).await?;
            }
            let (text, now) = row.ok_or(StoreError::NotFound)?;
            let mut state: LimiterState = serde_json::from_str(&text).unwrap_or_default();
            let before = state.clone();
            let out = change(&mut state, now);
            if state != before {
                let json = serde_json::to_string(&state).map_err(|e| StoreError::Other(e.to_string()))?;
                sqlx::query("UPDATE rate_limiters SET state = $1, updated_at = $2 WHERE key = $3")
                    .bind(json)
                    .bind(now)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// A limiter's state and the database's clock, without locking (health, `near_depletion`).
    pub async fn limiter_state(&self, key: &str) -> Result<Option<(LimiterState, Millis)>> {
        let sql = format!(
            "SELECT state, {} AS now FROM rate_limiters WHERE key = $1",
            db_now(self.backend())
        );
        on_reader!(self, p => {
            let row: Option<(String, i64)> = sqlx::query_as(&sql).bind(key).fetch_optional(p).await?;
            Ok(row.map(|(text, now)| (serde_json::from_str(&text).unwrap_or_default(), now)))
        })
    }

    /// Replaces a connection's sealed secrets only if they are still `expected`: key rotation
    /// re-seals what it read, and must not overwrite credentials changed meanwhile. Returns
    /// whether the row was replaced. (Kept here, with the provider work that rotates keys.)
    pub async fn replace_connection_secrets_if_unchanged(
        &self,
        id: &str,
        expected: &crate::connections::SealedSecrets,
        new: &crate::connections::SealedSecrets,
        now: Millis,
    ) -> Result<bool> {
        let same = match self.backend() {
            Backend::Postgres => "IS NOT DISTINCT FROM",
            Backend::Sqlite => "IS",
        };
        let sql = format!(
            "UPDATE connections SET credentials = $1, webhook_secrets = $2, updated_at = $3
             WHERE id = $4 AND credentials {same} $5 AND webhook_secrets {same} $6"
        );
        on_writer!(self, p => {
            let n = sqlx::query(&sql)
                .bind(&new.credentials)
                .bind(&new.webhook_secrets)
                .bind(now)
                .bind(id)
                .bind(&expected.credentials)
                .bind(&expected.webhook_secrets)
                .execute(p)
                .await?
                .rows_affected();
            Ok(n == 1)
        })
    }
}

fn forced_str(f: syncguard_core::breaker::Forced) -> &'static str {
    match f {
        syncguard_core::breaker::Forced::Open => "open",
        syncguard_core::breaker::Forced::Closed => "closed",
    }
}

fn circuit_row(r: &impl DbRow) -> RowResult<CircuitRow> {
    let connection_id = r.string("id")?;
    let provider = r.string("provider")?;
    Ok(CircuitRow {
        key: circuit_key(&connection_id, &provider),
        tenant_id: r.string("tenant_id")?,
        machine: parse_machine(r.opt_string("machine")?),
        connection_config: serde_json::from_str(&r.string("config")?).unwrap_or_default(),
        updated_at: r.opt_i64("updated_at")?,
        connection_id,
        provider,
    })
}
