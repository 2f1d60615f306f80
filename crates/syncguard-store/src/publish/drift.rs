//! Reconciliation's storage: which objects are due, the drift findings, and the writes the
//! reconcile policies make (`local_wins` re-queues a publish, `remote_wins` adopts the remote
//! state).
//!
//! A finding is recorded when it differs from the object's latest one (classification or
//! hashes), so a drift that persists is reported once, not every half hour; `in_sync` is
//! recorded only when it ends an earlier drift.

use super::{desired_select, publish_job_key, Desired, DiffFn, ObjectKey};
use crate::page::{Page, PageRequest};
use crate::queue::{enqueue_on, Enqueued, NewJob};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store};
use serde::Serialize;
use serde_json::Value;

/// One reconciliation finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub id: i64,
    pub tenant_id: String,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    /// `in_sync`, `internal_only`, `external_only` or `both`.
    pub classification: String,
    pub local_hash: Option<String>,
    pub remote_hash: Option<String>,
    /// What the connection's policy did: `reported`, `publish_enqueued`, `remote_accepted`.
    pub action: String,
    pub detected_at: Millis,
}

const DRIFT_COLUMNS: &str = "id, tenant_id, connection_id, resource, external_id, classification, local_hash, remote_hash, action, detected_at";

impl FromDbRow for Drift {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Drift {
            id: r.i64("id")?,
            tenant_id: r.string("tenant_id")?,
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            external_id: r.string("external_id")?,
            classification: r.string("classification")?,
            local_hash: r.opt_string("local_hash")?,
            remote_hash: r.opt_string("remote_hash")?,
            action: r.string("action")?,
            detected_at: r.i64("detected_at")?,
        })
    }
}

/// A finding to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDrift {
    pub classification: &'static str,
    pub local_hash: Option<String>,
    pub remote_hash: Option<String>,
    pub action: &'static str,
}

/// One reconciled object: its finding (none when it could not be classified) and, when the
/// remote state changed, that state to snapshot (source `drift`) with its hash.
pub struct Reconciled<'a> {
    pub key: ObjectKey<'a>,
    pub finding: Option<NewDrift>,
    pub remote: Option<(&'a Value, &'a str)>,
}

/// Filters of the drift list.
#[derive(Debug, Clone, Default)]
pub struct DriftFilter {
    pub connection_id: Option<String>,
    pub classification: Option<String>,
    pub resource: Option<String>,
    pub external_id: Option<String>,
    pub visible_connections: Option<Vec<String>>,
}

impl Store {
    /// Active connections that have desired state: `(id, tenant_id, config, created_at)`.
    pub async fn reconcile_candidates(&self) -> Result<Vec<(String, String, Value, Millis)>> {
        on_reader!(self, p => {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT c.id, c.tenant_id, c.config, c.created_at FROM connections c
                 WHERE c.status = 'active' AND EXISTS (SELECT 1 FROM desired_state d WHERE d.connection_id = c.id)
                 ORDER BY c.id")
                .fetch_all(p)
                .await?;
            Ok(rows
                .into_iter()
                .map(|(id, tenant, config, created)| (id, tenant, serde_json::from_str(&config).unwrap_or_default(), created))
                .collect())
        })
    }

    /// Up to `limit` objects of `connection_id` not reconciled since `since`, least recently
    /// reconciled first.
    pub async fn desired_due_for_reconcile(
        &self,
        connection_id: &str,
        since: Millis,
        limit: i64,
    ) -> Result<Vec<Desired>> {
        let sql = format!(
            "{} WHERE d.connection_id = $1 AND d.reconciled_at < $2 ORDER BY d.reconciled_at, d.resource, d.external_id LIMIT $3",
            desired_select()
        );
        on_reader!(self, p => {
            let rows = sqlx::query(&sql).bind(connection_id).bind(since).bind(limit).fetch_all(p).await?;
            Ok(rows.iter().map(Desired::from_row).collect::<RowResult<Vec<_>>>()?)
        })
    }

    /// Records the findings of reconciled objects (when they differ from each object's latest),
    /// snapshots remote states that changed, and marks the objects reconciled at `now`, in one
    /// transaction. Returns the findings that were recorded.
    pub async fn record_reconciled(
        &self,
        items: &[Reconciled<'_>],
        diff: DiffFn<'_>,
        now: Millis,
    ) -> Result<Vec<Drift>> {
        let backend = self.backend();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let mut recorded = Vec::new();
            for item in items {
                let k = item.key;
                if let Some(f) = &item.finding {
                let latest: Option<(String, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT classification, local_hash, remote_hash FROM drift_events
                     WHERE connection_id = $1 AND resource = $2 AND external_id = $3 ORDER BY id DESC LIMIT 1")
                    .bind(k.connection_id)
                    .bind(k.resource)
                    .bind(k.external_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let news = match &latest {
                    None => f.classification != "in_sync",
                    Some((c, l, r)) => (c.as_str(), l, r) != (f.classification, &f.local_hash, &f.remote_hash)
                        && !(c == "in_sync" && f.classification == "in_sync"),
                };
                if news {
                    let row = sqlx::query(&format!(
                        "INSERT INTO drift_events (tenant_id, connection_id, resource, external_id, classification, local_hash, remote_hash, action, detected_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {DRIFT_COLUMNS}"))
                        .bind(k.tenant_id)
                        .bind(k.connection_id)
                        .bind(k.resource)
                        .bind(k.external_id)
                        .bind(f.classification)
                        .bind(&f.local_hash)
                        .bind(&f.remote_hash)
                        .bind(f.action)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                    recorded.push(Drift::from_row(&row)?);
                }
                }
                if let Some((data, hash)) = item.remote {
                    super::snapshots::snapshot_on!(tx, backend, k, data, hash, "drift", diff, now)?;
                }
                sqlx::query("UPDATE desired_state SET reconciled_at = $1 WHERE connection_id = $2 AND resource = $3 AND external_id = $4")
                    .bind(now)
                    .bind(k.connection_id)
                    .bind(k.resource)
                    .bind(k.external_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(recorded)
        })
    }

    /// `local_wins`: records that the provider holds `remote_hash` (so the publisher no longer
    /// sees the object as published) and enqueues `job`, its publish job, in one transaction.
    /// Nothing happens when the object's published hash moved on from `expected` meanwhile.
    pub async fn republish(
        &self,
        key: ObjectKey<'_>,
        expected: Option<&str>,
        remote_hash: Option<&str>,
        job: &NewJob,
        now: Millis,
    ) -> Result<Option<Enqueued>> {
        debug_assert_eq!(
            job.unique_key.as_deref(),
            Some(publish_job_key(key.connection_id, key.resource, key.external_id).as_str())
        );
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let updated = sqlx::query(
                "UPDATE desired_state SET last_published_hash = $1
                 WHERE connection_id = $2 AND resource = $3 AND external_id = $4
                   AND (last_published_hash = $5 OR (last_published_hash IS NULL AND CAST($5 AS TEXT) IS NULL))")
                .bind(remote_hash)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .bind(expected)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Ok(None);
            }
            let e = enqueue_on!(tx, job, now)?;
            tx.commit().await?;
            Ok(Some(e))
        })
    }

    /// `remote_wins`: makes `data` (the provider's state, hashing to `hash`) the desired and
    /// published state, unless the desired state moved on from `expected_hash` meanwhile.
    pub async fn accept_remote(
        &self,
        key: ObjectKey<'_>,
        expected_hash: &str,
        data: &Value,
        hash: &str,
        now: Millis,
    ) -> Result<bool> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let accepted = sqlx::query(
                "UPDATE desired_state SET data = $1, hash = $2, last_published_hash = $2, attempted_hash = NULL,
                        last_error = NULL, updated_at = $3
                 WHERE connection_id = $4 AND resource = $5 AND external_id = $6 AND hash = $7")
                .bind(data.to_string())
                .bind(hash)
                .bind(now)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .bind(expected_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected() > 0;
            tx.commit().await?;
            Ok(accepted)
        })
    }

    /// `remote_wins` for an object the provider deleted: forgets its desired state, unless it
    /// moved on from `expected_hash` meanwhile. Fenced: a reconcile run that lost its lease
    /// forgets nothing.
    pub async fn forget_desired(&self, key: ObjectKey<'_>, expected_hash: &str) -> Result<bool> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let forgot = sqlx::query("DELETE FROM desired_state WHERE connection_id = $1 AND resource = $2 AND external_id = $3 AND hash = $4")
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .bind(expected_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected() > 0;
            tx.commit().await?;
            Ok(forgot)
        })
    }

    /// Drift findings visible in `scope`, newest first.
    pub async fn list_drift(
        &self,
        scope: &Scope,
        filter: &DriftFilter,
        page: &PageRequest,
    ) -> Result<Page<Drift>> {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.into())]);
        }
        if let Some(v) = &filter.visible_connections {
            c.and_in_list(self.backend(), "connection_id", v);
        }
        for (col, value) in [
            ("connection_id = ?", &filter.connection_id),
            ("classification = ?", &filter.classification),
            ("resource = ?", &filter.resource),
            ("external_id = ?", &filter.external_id),
        ] {
            if let Some(v) = value {
                c.and(col, vec![Bind::Str(v.clone())]);
            }
        }
        self.list_newest_first(DRIFT_COLUMNS, "drift_events", "id", c, page, |d: &Drift| {
            d.id
        })
        .await
    }
}
