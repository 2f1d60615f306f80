//! Retention: the hourly `cleanup` job deletes what has outlived its use (`[retention]` in the
//! configuration, read afresh at every run), in batches, and counts what it deleted in
//! `syncguard_retention_deleted_total{table}`.
//!
//! Each kind of row is deleted `batch_size` rows per statement until a batch comes back short,
//! so no purge holds a long lock and a big backlog (the first run after an upgrade) does not
//! stall the writers. What never expires by age: dead letters, failed and dead webhook events,
//! records, checkpoints, desired state, and the newest snapshots of each object.

use super::Services;
use crate::config::RetentionConfig;
use crate::engine::handler::{Handlers, JobContext, JobError};
use crate::engine::Schedule;
use prometheus::{IntCounterVec, Opts, Registry};
use syncguard_core::Millis;
use syncguard_store::idempotency;
use syncguard_store::retention::{Expiring, SnapshotRetention};
use syncguard_store::Store;

/// The job kind (and schedule name) of the hourly purge.
pub const CLEANUP: &str = "cleanup";

const DAY_MS: Millis = 24 * 3_600_000;

/// Free SQLite pages handed back to the file system per run (4 KiB each: up to 64 MiB).
const RECLAIM_PAGES_PER_RUN: i64 = 16_384;

/// Retention's own state: its counter.
pub struct RetentionState {
    /// `syncguard_retention_deleted_total{table}`.
    pub deleted: IntCounterVec,
}

impl RetentionState {
    pub fn new(registry: &Registry) -> anyhow::Result<RetentionState> {
        let deleted = IntCounterVec::new(
            Opts::new(
                "syncguard_retention_deleted_total",
                "Rows deleted by retention, by table.",
            ),
            &["table"],
        )?;
        registry.register(Box::new(deleted.clone()))?;
        Ok(RetentionState { deleted })
    }
}

pub fn register(handlers: &mut Handlers<Services>) {
    handlers.register(CLEANUP, cleanup);
}

pub fn schedules() -> Vec<Schedule> {
    vec![Schedule {
        name: CLEANUP,
        kind: CLEANUP,
        interval_ms: 3_600_000,
    }]
}

/// Where each kind of row expires, for `now` and the configuration.
pub fn cutoffs(r: &RetentionConfig, now: Millis) -> Vec<(Expiring, Millis)> {
    let days = |d: u32| now - i64::from(d) * DAY_MS;
    Expiring::ALL
        .into_iter()
        .map(|what| {
            let before = match what {
                Expiring::FinishedJobs | Expiring::PeriodicRuns => days(r.finished_jobs_days),
                Expiring::InboundEvents => days(r.inbound_events_days),
                Expiring::IdempotencyKeys => now - idempotency::RETENTION_MS,
                Expiring::Audit => days(r.audit_days),
                Expiring::Changes => days(r.changes_days),
            };
            (what, before)
        })
        .collect()
}

/// What one purge deleted, per table.
pub type Purged = Vec<(&'static str, u64)>;

/// Deletes everything past its retention at `now`; returns the rows deleted per table.
pub async fn purge(
    store: &Store,
    r: &RetentionConfig,
    now: Millis,
) -> Result<Purged, syncguard_store::StoreError> {
    let limit = i64::from(r.batch_size);
    let mut out = Vec::new();
    for (what, before) in cutoffs(r, now) {
        let mut n = 0;
        loop {
            let batch = store.purge_batch(what, before, limit).await?;
            n += batch;
            if batch < limit as u64 {
                break;
            }
        }
        out.push((what.table(), n));
    }
    let keep = SnapshotRetention {
        keep_per_object: i64::from(r.snapshots_per_object),
    };
    let mut n = 0;
    loop {
        let batch = store.purge_snapshots(keep, limit).await?;
        n += batch;
        if batch < limit as u64 {
            break;
        }
    }
    out.push(("snapshots", n));
    store.reclaim_space(RECLAIM_PAGES_PER_RUN).await?;
    Ok(out)
}

async fn cleanup(ctx: JobContext<Services>) -> Result<(), JobError> {
    let app = &ctx.app;
    let settings = app.settings();
    let purged = purge(&app.store, &settings.retention, app.clock.now_ms()).await?;
    let mut deleted = serde_json::Map::new();
    for (table, n) in &purged {
        app.retention.deleted.with_label_values(&[table]).inc_by(*n);
        deleted.insert(table.to_string(), (*n).into());
    }
    tracing::info!(deleted = %serde_json::Value::Object(deleted), "retention cleanup done");
    Ok(())
}
