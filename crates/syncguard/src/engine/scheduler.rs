//! Periodic jobs, once per interval across the cluster (SPEC §3.1).
//!
//! Each schedule's time is cut into slots of its interval; the job of slot `n` runs at the
//! slot's start plus a jitter of ±10 % of the interval. Recording the slot and enqueueing the
//! job happen in one transaction keyed by (schedule, slot), so even if two nodes tick at once
//! the job is enqueued once. On PostgreSQL one node at a time is the scheduler, elected with an
//! advisory lock held on a dedicated connection, so followers do not even try.

use crate::env::Env;
use rand::Rng;
use std::time::Duration;
use syncguard_store::queue::NewJob;
use tokio_util::sync::CancellationToken;

/// A job kind that runs every `interval_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub name: &'static str,
    pub kind: &'static str,
    pub interval_ms: i64,
}

/// Arbitrary constant naming the scheduler-leader advisory lock.
const LEADER_LOCK: i64 = 0x5359_4e43_5343_4844; // "SYNCSCHD"

/// `(slot, run_at)` for `now`: the slot containing `now`, run at its start ± 10 % jitter.
pub fn slot_for(interval_ms: i64, now: i64, jitter_unit: f64) -> (i64, i64) {
    let slot = now.div_euclid(interval_ms);
    let start = slot * interval_ms;
    let jitter = ((jitter_unit * 2.0 - 1.0) * 0.1 * interval_ms as f64) as i64;
    (slot, (start + jitter).max(now))
}

/// Enqueues each of `schedules` once per slot until `cancel`.
pub async fn run(app: Env, schedules: Vec<Schedule>, cancel: CancellationToken) {
    let mut leader: Option<syncguard_store::leader::Leadership> = None;
    loop {
        leader = match leader.take() {
            Some(mut held) => {
                if held.still_held().await {
                    Some(held)
                } else {
                    tracing::warn!(worker = %app.worker_id, "scheduler leadership lost");
                    None
                }
            }
            None => match app.store.try_lead(LEADER_LOCK).await {
                Ok(Some(held)) => {
                    tracing::info!(worker = %app.worker_id, "this node is now the scheduler");
                    Some(held)
                }
                Ok(None) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "scheduler election failed");
                    None
                }
            },
        };
        if leader.is_some() {
            // A tick against a store that hangs must not hold up a stop.
            tokio::select! {
                _ = tick(&app, &schedules) => {}
                _ = cancel.cancelled() => break,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = cancel.cancelled() => break,
        }
    }
    if let Some(held) = leader {
        let _ = tokio::time::timeout(Duration::from_secs(1), held.release()).await;
    }
}

async fn tick(app: &Env, schedules: &[Schedule]) {
    let now = app.clock.now_ms();
    for s in schedules {
        let (slot, run_at) = slot_for(s.interval_ms, now, rand::thread_rng().gen::<f64>());
        let mut job = NewJob::new(
            s.kind,
            serde_json::json!({ "schedule": s.name, "slot": slot }),
        );
        job.run_at = Some(run_at);
        job.max_attempts = app.settings().max_attempts(s.kind);
        match app.store.schedule_periodic(s.name, slot, &job, now).await {
            Ok(Some(id)) => tracing::debug!(
                schedule = s.name,
                slot,
                job_id = id,
                "periodic job scheduled"
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(schedule = s.name, error = %e, "scheduling periodic job failed");
                app.metrics
                    .background_errors_total
                    .with_label_values(&["scheduler"])
                    .inc();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::slot_for;

    #[test]
    fn slots_cover_time_and_jitter_stays_within_ten_percent() {
        let hour = 3_600_000;
        let (slot, run_at) = slot_for(hour, 5 * hour + 10, 0.5);
        assert_eq!(slot, 5);
        assert_eq!(run_at, 5 * hour + 10, "never scheduled in the past");
        let (_, late) = slot_for(hour, 5 * hour, 1.0);
        assert_eq!(late, 5 * hour + hour / 10);
        let (_, early) = slot_for(hour, 5 * hour, 0.0);
        assert_eq!(early, 5 * hour);
    }
}
