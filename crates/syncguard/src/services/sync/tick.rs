//! The `sync.tick` job: every minute (itself a periodic job, once per minute across the
//! cluster), enqueue the incremental syncs that fall due.
//!
//! Each active (connection, resource) has slots of `sync_interval_s`, offset by a stable phase
//! so connections do not all sync at once; a slot's run starts at its nominal time ± 10 %.
//! The slot is claimed in the store's periodic table together with its job
//! (`Store::schedule_periodic`), so it is enqueued once however many nodes tick. Paused,
//! failed, pending and disconnected connections are not scheduled.

use super::plan::{due_slot, lookahead, phase_of, SyncSettings};
use super::{sync_job, syncs, Reason};
use crate::engine::handler::{JobContext, JobError};
use crate::services::Services;
use rand::Rng;
use syncguard_store::page::PageRequest;
use syncguard_store::{Scope, StoreError};

/// How often the tick runs.
pub const TICK_INTERVAL_MS: i64 = 60_000;

/// Outcome counts are kept this long (the longest burn-rate window is three days).
const OUTCOME_RETENTION_MS: i64 = 4 * 86_400_000;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Active connections that sync.
    pub connections: usize,
    /// Jobs enqueued by this tick.
    pub scheduled: usize,
}

/// The handler of [`super::TICK_KIND`].
pub async fn tick(ctx: JobContext<Services>) -> Result<(), JobError> {
    let report = run_tick(&ctx.app).await?;
    tracing::debug!(
        connections = report.connections,
        scheduled = report.scheduled,
        "sync tick"
    );
    Ok(())
}

/// One tick, at the app's clock (tests call it directly).
pub async fn run_tick(app: &Services) -> Result<TickReport, StoreError> {
    let now = app.clock.now_ms();
    let mut report = TickReport::default();
    let mut page = PageRequest {
        after: None,
        limit: 500,
    };
    loop {
        let batch = app.store.list_connections(&Scope::All, None, &page).await?;
        for conn in batch.items.iter().filter(|c| syncs(app, c)) {
            let Some(def) = app.providers.get(&conn.provider) else {
                continue;
            };
            let settings = match SyncSettings::from_config(&conn.config, def) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(connection_id = %conn.id, error = %e, "sync settings unusable; not scheduled");
                    continue;
                }
            };
            report.connections += 1;
            for resource in &settings.resources {
                let phase = phase_of(&conn.id, resource, settings.interval_ms);
                let unit = rand::thread_rng().gen::<f64>();
                let slot = due_slot(
                    phase,
                    settings.interval_ms,
                    now,
                    lookahead(settings.interval_ms),
                    unit,
                );
                if app.sync.scheduled(&conn.id, resource, slot.slot) {
                    continue;
                }
                let mut job = sync_job(app, conn, resource, Reason::Schedule, false);
                job.run_at = Some(slot.run_at);
                // Slot numbers count intervals, so the name carries the interval they count.
                let name = format!(
                    "{}:{}",
                    super::unique_key(&conn.id, resource),
                    settings.interval_ms
                );
                if app
                    .store
                    .schedule_periodic(&name, slot.slot, &job, now)
                    .await?
                    .is_some()
                {
                    report.scheduled += 1;
                }
                app.sync.mark_scheduled(&conn.id, resource, slot.slot);
            }
        }
        match batch.next_cursor {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    app.store
        .purge_sync_outcomes(now - OUTCOME_RETENTION_MS)
        .await?;
    if report.scheduled > 0 {
        app.job_notify.notify_one();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::plan::lookahead;

    #[test]
    fn the_tick_looks_ahead_past_the_jitter_but_not_past_half_an_interval() {
        // A tick may come up to 10 % late; the next slot must be claimed before its earliest
        // jittered start (-10 %), yet not so early that the current slot's run is still queued.
        let five_minutes = 300_000;
        assert!(lookahead(five_minutes) >= five_minutes / 10 + super::TICK_INTERVAL_MS * 11 / 10);
        assert_eq!(lookahead(60_000), 30_000);
    }
}
