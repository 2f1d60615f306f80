//! One run of one job, and the recording of results.
//!
//! A run ends in one of three ways: an [`Outcome`] to record; *lost* (its lease went away, so
//! someone else owns the job: nothing is recorded); or *released* (the node is stopping and the
//! grace ran out: the job goes back without spending its attempt). Whenever the handler is cut
//! short — timeout, lost lease, stop — its task is aborted **and awaited** first, so no
//! handler of this job is still running by the time anything about the job is recorded.

use super::decide;
use super::handler::{JobError, Runnable};
use super::leases::Leases;
use crate::env::Env;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard_store::queue::{Completion, Fence, Job, Outcome};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub(crate) enum Ended {
    Outcome(Outcome),
    Lost,
    Released,
}

/// A finished run on its way to the completer.
pub(crate) struct Done {
    pub fence: Fence,
    pub kind: String,
    pub ended: Ended,
}

/// Runs one job. `lost` fires when its lease is lost, `stop` when the stopping node's grace
/// is over.
pub(crate) async fn run_one(
    app: &Env,
    handler: Option<Arc<dyn Runnable>>,
    job: Job,
    lost: CancellationToken,
    stop: CancellationToken,
) -> Done {
    let fence = job.fence().expect("a claimed job carries its lease token");
    let kind = job.kind.clone();
    let settings = app.settings();
    let timeout = settings
        .queue
        .kinds
        .get(&kind)
        .and_then(|k| k.timeout_ms)
        .unwrap_or(300_000);
    let started = Instant::now();
    let done = |ended| Done {
        fence,
        kind: kind.clone(),
        ended,
    };
    let result = match handler {
        None => Err(JobError::permanent(format!(
            "no handler for job kind `{kind}`"
        ))),
        Some(h) => {
            let mut task = tokio::spawn(h.run(job.clone(), app));
            let cut = tokio::select! {
                r = &mut task => {
                    match r {
                        Ok(r) => Ok(r),
                        Err(join) => Ok(Err(JobError::transient(format!("handler panicked: {join}")))),
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(timeout)) => Err(None),
                _ = lost.cancelled() => Err(Some(Ended::Lost)),
                _ = stop.cancelled() => Err(Some(Ended::Released)),
            };
            match cut {
                Ok(r) => r,
                Err(why) => {
                    task.abort();
                    // Aborted at its next await; wait for it to be gone before going on.
                    let _ = task.await;
                    match why {
                        None => Err(JobError::transient(format!(
                            "handler timed out after {timeout} ms"
                        ))),
                        Some(ended) => {
                            tracing::warn!(job_id = fence.job_id, kind = %kind,
                                lost = matches!(ended, Ended::Lost), "job run stopped before it finished");
                            return done(ended);
                        }
                    }
                }
            }
        }
    };
    app.metrics
        .job_duration_seconds
        .with_label_values(&[&kind])
        .observe(started.elapsed().as_secs_f64());
    let outcome = match result {
        Ok(()) => Outcome::Succeeded,
        Err(err) => {
            let now = app.clock.now_ms();
            let out = decide::after_failure(
                &job,
                &err,
                &settings.retry_policy(),
                settings.queue.permanent_max_attempts,
                now,
                &mut rand::thread_rng(),
            );
            let cid = job.correlation_id.as_deref().unwrap_or("");
            match &out {
                Outcome::Dead { .. } => {
                    tracing::warn!(job_id = fence.job_id, kind = %kind, attempt = job.attempts, class = %err.class, error = %err.message, correlation_id = cid, "job dead-lettered")
                }
                Outcome::Snooze { run_at } => {
                    tracing::info!(job_id = fence.job_id, kind = %kind, run_at, reason = %err.message, correlation_id = cid, "job snoozed")
                }
                _ => {
                    tracing::info!(job_id = fence.job_id, kind = %kind, attempt = job.attempts, class = %err.class, error = %err.message, correlation_id = cid, "job will retry")
                }
            }
            out
        }
    };
    done(Ended::Outcome(outcome))
}

fn outcome_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Succeeded => "succeeded",
        Outcome::Retry { .. } => "retried",
        Outcome::Dead { .. } => "dead",
        Outcome::Snooze { .. } => "snoozed",
    }
}

/// Records results in batches: whatever has arrived since the last write goes in one
/// transaction, so throughput grows with load while an idle queue still records at once.
///
/// A batch that cannot be recorded is retried while its leases can still be held (and, once
/// the node is stopping, until `give_up` fires at the end of the grace). Then it is given up:
/// its leases are no longer renewed, so they lapse and the rescuer makes the jobs run again,
/// and the runs are counted `unrecorded`. Results are never dropped silently.
pub(crate) async fn complete_loop(
    app: Env,
    leases: Leases,
    mut rx: mpsc::UnboundedReceiver<Done>,
    give_up: CancellationToken,
) {
    const MAX_BATCH: usize = 512;
    let lease = Duration::from_millis(app.config.queue.lease_ms.max(0) as u64);
    let mut batch: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let completions: Vec<Completion> = batch
            .iter()
            .filter_map(|d| match &d.ended {
                Ended::Outcome(o) => Some(Completion {
                    id: d.fence.job_id,
                    lease_id: Some(d.fence.lease_id),
                    outcome: o.clone(),
                }),
                _ => None,
            })
            .collect();
        let released: Vec<Fence> = batch
            .iter()
            .filter(|d| matches!(d.ended, Ended::Released))
            .map(|d| d.fence)
            .collect();
        let first_try = Instant::now();
        let mut delay = Duration::from_millis(50);
        let recorded = loop {
            let now = app.clock.now_ms();
            let attempt = async {
                let lost = if completions.is_empty() {
                    Vec::new()
                } else {
                    app.store
                        .complete_jobs(&app.worker_id, &completions, now)
                        .await?
                };
                if !released.is_empty() {
                    app.store.release_leases(&released, now).await?;
                }
                Ok::<_, syncguard_store::StoreError>(lost)
            };
            let over = || {
                Err(syncguard_store::StoreError::Unavailable(
                    "shutdown grace over".into(),
                ))
            };
            // Once the grace is over, one short try: the node must stop in time.
            let result = if give_up.is_cancelled() {
                tokio::time::timeout(Duration::from_millis(500), attempt)
                    .await
                    .unwrap_or_else(|_| over())
            } else {
                tokio::select! {
                    r = attempt => r,
                    _ = give_up.cancelled() => over(),
                }
            };
            match result {
                Ok(lost) => break Some(lost),
                Err(e) => {
                    tracing::warn!(error = %e, jobs = batch.len(), "recording job results failed; retrying");
                    app.metrics
                        .background_errors_total
                        .with_label_values(&["complete"])
                        .inc();
                    // Holding on longer than a lease gains nothing: give the jobs to the rescuer.
                    if give_up.is_cancelled() || first_try.elapsed() + delay > lease * 2 / 3 {
                        break None;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = give_up.cancelled() => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        if recorded.is_some() {
            // Finished jobs free their connection's share (`max_running_per_connection`): an
            // idle fetch loop may find work it was held back from.
            app.job_notify.notify_one();
        }
        for d in &batch {
            leases.forget(d.fence.job_id);
            let outcome = match (&recorded, &d.ended) {
                (_, Ended::Lost) => "lost",
                (None, _) => "unrecorded",
                (Some(_), Ended::Released) => "released",
                (Some(lost), _) if lost.contains(&d.fence.job_id) => "lost",
                (Some(_), Ended::Outcome(o)) => outcome_label(o),
            };
            app.metrics
                .jobs_total
                .with_label_values(&[&d.kind, outcome])
                .inc();
        }
        match &recorded {
            None => {
                let ids: Vec<i64> = batch.iter().map(|d| d.fence.job_id).collect();
                tracing::error!(jobs = ?ids, "job results could not be recorded; their leases will lapse and the jobs run again");
            }
            Some(lost) if !lost.is_empty() => {
                tracing::warn!(jobs = ?lost, "results refused: this node no longer held the jobs (lease expired or cancelled)");
            }
            _ => {}
        }
        batch.clear();
    }
    // Channel closed: the fetch loop and every job task are gone. Hand back what is still ours
    // (claimed, never started), unless the store is gone too: then the leases lapse.
    let wait = if give_up.is_cancelled() { 500 } else { 5_000 };
    let release = app.store.release_jobs(&app.worker_id, app.clock.now_ms());
    match tokio::time::timeout(Duration::from_millis(wait), release).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(jobs = n, "released unfinished jobs"),
        Ok(Err(e)) => tracing::warn!(error = %e, "releasing jobs failed; their leases will expire"),
        Err(_) => tracing::warn!("releasing jobs timed out; their leases will expire"),
    }
}
