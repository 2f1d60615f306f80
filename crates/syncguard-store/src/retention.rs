//! Retention: deleting what has outlived its use, in small batches.
//!
//! Each [`Expiring`] kind names a table and the rule that makes one of its rows old. A call to
//! [`Store::purge_batch`] deletes at most `limit` such rows in one short statement, so a purge
//! never holds a long lock; the caller repeats it until a batch comes back short.
//!
//! Two windows that belong to their features are kept by them: content-deduplication claims
//! (the webhook writer) and per-minute sync outcomes (the sync tick).
//!
//! What is never deleted here: dead letters and failed or dead webhook events (they wait for an
//! operator), desired state, records, checkpoints, and the newest snapshots of every object.
//!
//! On SQLite, a database created by this version uses `auto_vacuum = INCREMENTAL`, and
//! [`Store::reclaim_space`] hands freed pages back to the file system after a purge. An older
//! database keeps its free pages inside the file and reuses them for new rows, so it stops
//! growing but does not shrink until a one-off `VACUUM`.

use crate::sql::placeholders;
use crate::{on_writer, Backend, Millis, Result, Store};

/// What retention deletes, one kind of row at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiring {
    /// Succeeded and cancelled jobs last updated before the cutoff (dead letters stay).
    FinishedJobs,
    /// Periodic-schedule slots recorded before the cutoff.
    PeriodicRuns,
    /// Processed and duplicate webhook events received before the cutoff, with their job links
    /// (failed and dead events stay).
    InboundEvents,
    /// Stored `Idempotency-Key` responses created before the cutoff.
    IdempotencyKeys,
    /// Audit entries written before the cutoff.
    Audit,
    /// Change-feed entries recorded before the cutoff.
    Changes,
}

impl Expiring {
    pub const ALL: [Expiring; 6] = [
        Expiring::FinishedJobs,
        Expiring::PeriodicRuns,
        Expiring::InboundEvents,
        Expiring::IdempotencyKeys,
        Expiring::Audit,
        Expiring::Changes,
    ];

    /// The table, as metrics and logs name it.
    pub fn table(self) -> &'static str {
        match self {
            Expiring::FinishedJobs => "jobs",
            Expiring::PeriodicRuns => "periodic_runs",
            Expiring::InboundEvents => "inbound_events",
            Expiring::IdempotencyKeys => "idempotency_keys",
            Expiring::Audit => "audit_log",
            Expiring::Changes => "changes",
        }
    }

    /// The key column that picks a batch (SQLite's `rowid` and PostgreSQL's `ctid` for tables
    /// with a composite key) and the condition of an old row (`$1` is the cutoff).
    fn batch(self, backend: Backend) -> (&'static str, &'static str) {
        let row = match backend {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "ctid",
        };
        match self {
            Expiring::FinishedJobs => (
                "id",
                "state IN ('succeeded', 'cancelled') AND updated_at < $1",
            ),
            Expiring::PeriodicRuns => (row, "created_at < $1"),
            Expiring::InboundEvents => (
                "id",
                "status IN ('processed', 'duplicate') AND received_at < $1",
            ),
            Expiring::IdempotencyKeys => (row, "created_at < $1"),
            Expiring::Audit => ("id", "at < $1"),
            Expiring::Changes => ("seq", "at < $1"),
        }
    }
}

/// Snapshots kept per object whatever their age, besides any a drift finding refers to.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotRetention {
    pub keep_per_object: i64,
}

impl Store {
    /// Deletes at most `limit` rows of `what` older than `before`; returns how many. Repeat
    /// until it returns less than `limit`.
    pub async fn purge_batch(&self, what: Expiring, before: Millis, limit: i64) -> Result<u64> {
        let (key, old) = what.batch(self.backend());
        let table = what.table();
        let pick = format!("SELECT {key} FROM {table} WHERE {old} LIMIT $2");
        let delete = match self.backend() {
            Backend::Sqlite => format!("DELETE FROM {table} WHERE {key} IN ({pick})"),
            Backend::Postgres => format!("DELETE FROM {table} WHERE {key} = ANY(ARRAY({pick}))"),
        };
        on_writer!(self, p => {
            if what != Expiring::InboundEvents {
                return Ok(sqlx::query(&delete).bind(before).bind(limit).execute(p).await?.rows_affected());
            }
            // An event's job links go with it, in the same transaction.
            let mut tx = p.begin().await?;
            let ids: Vec<String> = sqlx::query_scalar(&format!("{delete} RETURNING id"))
                .bind(before)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            if !ids.is_empty() {
                let links = format!("DELETE FROM inbound_event_jobs WHERE event_id IN ({})", placeholders(1, ids.len(), 1));
                let mut q = sqlx::query(&links);
                for id in &ids {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(ids.len() as u64)
        })
    }

    /// Deletes at most `limit` snapshots that are neither among the newest
    /// `keep.keep_per_object` of their object nor referred to by one of its drift findings,
    /// then the stored contents no snapshot refers to any more; returns the snapshots deleted.
    ///
    /// The oldest snapshot kept of an object still names its deleted predecessor and its patch
    /// from it; its own content stays whole.
    pub async fn purge_snapshots(&self, keep: SnapshotRetention, limit: i64) -> Result<u64> {
        const OLD: &str = "SELECT id FROM (
                SELECT s.id, s.hash, s.connection_id, s.resource, s.external_id,
                       ROW_NUMBER() OVER (PARTITION BY s.connection_id, s.resource, s.external_id ORDER BY s.id DESC) AS newest
                FROM snapshots s) o
            WHERE o.newest > $1
              AND NOT EXISTS (SELECT 1 FROM drift_events d
                              WHERE d.connection_id = o.connection_id AND d.resource = o.resource
                                AND d.external_id = o.external_id
                                AND (d.local_hash = o.hash OR d.remote_hash = o.hash))
            LIMIT $2";
        const ORPHANS: &str = "DELETE FROM snapshot_data WHERE NOT EXISTS
            (SELECT 1 FROM snapshots s WHERE s.tenant_id = snapshot_data.tenant_id AND s.hash = snapshot_data.hash)";
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query(&format!("DELETE FROM snapshots WHERE id IN ({OLD})"))
                .bind(keep.keep_per_object.max(1))
                .bind(limit)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if n > 0 {
                sqlx::query(ORPHANS).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(n)
        })
    }

    /// Hands up to `max_pages` free pages back to the file system (SQLite databases created
    /// with `auto_vacuum = INCREMENTAL`; a no-op elsewhere, and on PostgreSQL, whose autovacuum
    /// does this).
    pub async fn reclaim_space(&self, max_pages: i64) -> Result<()> {
        if self.backend() == Backend::Sqlite {
            on_writer!(self, p => {
                sqlx::query(&format!("PRAGMA incremental_vacuum({})", max_pages.max(1))).execute(p).await?;
            });
        }
        Ok(())
    }
}
