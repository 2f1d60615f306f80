//! The engine: workers that run queued jobs, and the background loops that keep the queue
//! healthy (lease heartbeat, rescue of expired leases, periodic schedules, queue gauges).
//!
//! # How a job runs
//! 1. The fetch loop claims up to `min(free slots, fetch_batch)` due jobs in one statement
//!    (`FOR UPDATE SKIP LOCKED` on PostgreSQL), each leased to this node's worker id.
//! 2. Each job runs in its own task, bounded by a semaphore of `queue.workers` slots and by the
//!    kind's timeout.
//! 3. Results go to the completer, which records a batch of them in one transaction.
//! 4. Meanwhile the heartbeat renews every lease this node holds, so a slow job is never taken
//!    by a second worker; if this process dies, its leases expire and any node's rescuer makes
//!    the jobs runnable again.
//!
//! Every loop stops on the shared cancellation token. On shutdown the engine stops fetching,
//! waits `shutdown_grace_ms` for running jobs, records their results and hands back the rest.

pub mod decide;
pub mod handler;
mod scheduler;

pub use scheduler::{all_schedules, Schedule, SCHEDULES};

use crate::app::App;
use handler::{Handlers, JobContext, JobError};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard_store::queue::{Completion, Job, Outcome};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A running engine: wait on it after cancelling its token.
pub struct EngineHandle {
    tasks: JoinSet<()>,
}

impl EngineHandle {
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts the workers and background loops of `app`.
pub fn start(app: App, handlers: Handlers, cancel: CancellationToken) -> EngineHandle {
    let handlers = Arc::new(handlers);
    let mut tasks = JoinSet::new();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let fetch_stopped = CancellationToken::new();
    tasks.spawn(fetch_loop(
        app.clone(),
        handlers,
        done_tx,
        cancel.clone(),
        fetch_stopped.clone(),
    ));
    tasks.spawn(complete_loop(app.clone(), done_rx));
    tasks.spawn(heartbeat_loop(app.clone(), fetch_stopped));
    tasks.spawn(rescue_loop(app.clone(), cancel.clone()));
    tasks.spawn(scheduler::run(app.clone(), cancel.clone()));
    tasks.spawn(gauge_loop(app, cancel));
    EngineHandle { tasks }
}

/// A finished run on its way to the completer.
struct Done {
    completion: Completion,
    kind: String,
}

async fn fetch_loop(
    app: App,
    handlers: Arc<Handlers>,
    done: mpsc::UnboundedSender<Done>,
    cancel: CancellationToken,
    stopped: CancellationToken,
) {
    let q = app.config.queue.clone();
    let slots = Arc::new(Semaphore::new(q.workers));
    let kinds = handlers.kinds();
    let mut running = JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    // Claimed jobs waiting for a free worker. Claiming a batch ahead (leased, so no other node
    // takes them) keeps every worker busy while the next claim is in flight, and makes one claim
    // commit serve many jobs. The heartbeat renews these leases too.
    let mut ready: VecDeque<Job> = VecDeque::new();
    let target = q.fetch_batch.max(q.workers);
    // The last claim found fewer jobs than asked: do not ask again until woken or drained.
    let mut drained = false;
    while !cancel.is_cancelled() {
        if ready.len() < q.workers && !drained {
            let want = (target - ready.len()) as i64;
            let now = app.clock.now_ms();
            match app
                .store
                .claim_jobs(&app.worker_id, want, now, q.lease_ms, Some(&kinds))
                .await
            {
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    drained = (jobs.len() as i64) < want;
                    ready.extend(jobs);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming jobs failed; backing off");
                    app.metrics
                        .background_errors_total
                        .with_label_values(&["fetch"])
                        .inc();
                    if ready.is_empty() {
                        tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = cancel.cancelled() => break }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
            }
        }
        if ready.is_empty() {
            tokio::select! {
                _ = app.job_notify.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(app.settings().queue.poll_interval_ms)) => {}
                _ = cancel.cancelled() => break,
            }
            drained = false;
            continue;
        }
        // Start as many ready jobs as there are free workers, waiting for at least one.
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.expect("semaphore never closes"),
            _ = cancel.cancelled() => break,
        };
        let mut permit = Some(first);
        while let Some(p) = permit
            .take()
            .or_else(|| slots.clone().try_acquire_owned().ok())
        {
            let Some(job) = ready.pop_front() else {
                drop(p);
                break;
            };
            let handler = handlers.get(&job.kind);
            let app = app.clone();
            let done = done.clone();
            running.spawn(async move {
                let kind = job.kind.clone();
                let completion = run_one(&app, handler, job).await;
                let _ = done.send(Done { completion, kind });
                drop(p);
            });
        }
        // Reap finished tasks so the set does not grow without bound.
        while running.try_join_next().is_some() {}
        if ready.is_empty() {
            // Whatever remains queued is found by the next claim.
            drained = false;
        }
    }
    // Jobs claimed but never started stay leased to this node until the completer hands
    // them back below (release_jobs covers every job still leased to this worker).
    drop(ready);
    let grace = Duration::from_millis(q.shutdown_grace_ms);
    let all_done = async { while running.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all_done).await.is_err() {
        running.abort_all();
        tracing::warn!("shutdown grace elapsed; handing back unfinished jobs");
    }
    stopped.cancel();
    drop(done);
}

/// Runs one job to a [`Completion`]; a missing handler, a panic and a timeout are failures
/// like any other.
async fn run_one(app: &App, handler: Option<Arc<dyn handler::JobHandler>>, job: Job) -> Completion {
    let id = job.id;
    let kind = job.kind.clone();
    let settings = app.settings();
    let timeout = settings
        .queue
        .kinds
        .get(&kind)
        .and_then(|k| k.timeout_ms)
        .unwrap_or(300_000);
    let started = Instant::now();
    let result = match handler {
        None => Err(JobError::permanent(format!(
            "no handler for job kind `{kind}`"
        ))),
        Some(h) => {
            let fut = h.run(JobContext {
                job: job.clone(),
                app: app.clone(),
            });
            match tokio::time::timeout(Duration::from_millis(timeout), tokio::spawn(fut)).await {
                Ok(Ok(r)) => r,
                Ok(Err(join)) => Err(JobError::transient(format!("handler panicked: {join}"))),
                Err(_) => Err(JobError::transient(format!(
                    "handler timed out after {timeout} ms"
                ))),
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
            match &out {
                Outcome::Dead { .. } => {
                    tracing::warn!(job_id = id, kind = %kind, attempt = job.attempts, class = %err.class, error = %err.message, correlation_id = job.correlation_id.as_deref().unwrap_or(""), "job dead-lettered")
                }
                _ => {
                    tracing::info!(job_id = id, kind = %kind, attempt = job.attempts, class = %err.class, error = %err.message, correlation_id = job.correlation_id.as_deref().unwrap_or(""), "job will retry")
                }
            }
            out
        }
    };
    Completion { id, outcome }
}

/// Records results in batches: whatever has arrived since the last write goes in one
/// transaction, so throughput grows with load while an idle queue still records at once.
async fn complete_loop(app: App, mut rx: mpsc::UnboundedReceiver<Done>) {
    const MAX_BATCH: usize = 512;
    let mut batch: Vec<Done> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let completions: Vec<Completion> = batch.iter().map(|d| d.completion.clone()).collect();
        let mut delay = Duration::from_millis(50);
        let lost = loop {
            match app
                .store
                .complete_jobs(&app.worker_id, &completions, app.clock.now_ms())
                .await
            {
                Ok(lost) => break lost,
                Err(e) => {
                    // Not recording is safe (the leases expire and the jobs run again), but
                    // keep trying for a while: the store may be back in a moment.
                    tracing::warn!(error = %e, jobs = completions.len(), "recording job results failed; retrying");
                    app.metrics
                        .background_errors_total
                        .with_label_values(&["complete"])
                        .inc();
                    if delay > Duration::from_secs(30) {
                        break Vec::new();
                    }
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        };
        for d in &batch {
            let outcome = if lost.contains(&d.completion.id) {
                "lost"
            } else {
                match d.completion.outcome {
                    Outcome::Succeeded => "succeeded",
                    Outcome::Retry { .. } => "retried",
                    Outcome::Dead { .. } => "dead",
                }
            };
            app.metrics
                .jobs_total
                .with_label_values(&[&d.kind, outcome])
                .inc();
        }
        if !lost.is_empty() {
            tracing::warn!(jobs = ?lost, "results refused: this node no longer held the jobs (lease expired or cancelled)");
        }
        batch.clear();
    }
    // Channel closed: the fetch loop and every job task are gone. Hand back what is still ours.
    match app
        .store
        .release_jobs(&app.worker_id, app.clock.now_ms())
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(jobs = n, "released unfinished jobs"),
        Err(e) => tracing::warn!(error = %e, "releasing jobs failed; their leases will expire"),
    }
}

/// Renews this node's leases every third of the lease, until the fetch loop has stopped and
/// every job is recorded.
async fn heartbeat_loop(app: App, stopped: CancellationToken) {
    let lease = app.config.queue.lease_ms;
    let every = Duration::from_millis((lease / 3).max(100) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.cancelled() => break,
        }
        if let Err(e) = app
            .store
            .heartbeat(&app.worker_id, app.clock.now_ms() + lease)
            .await
        {
            tracing::warn!(error = %e, "lease heartbeat failed");
            app.metrics
                .background_errors_total
                .with_label_values(&["heartbeat"])
                .inc();
        }
    }
}

/// Makes jobs of dead workers runnable again. Any node may do this; the update is atomic.
async fn rescue_loop(app: App, cancel: CancellationToken) {
    loop {
        let every = Duration::from_millis(app.settings().queue.rescue_interval_ms);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => break,
        }
        match app.store.rescue_expired_leases(app.clock.now_ms()).await {
            Ok((0, 0)) => {}
            Ok((retryable, dead)) => {
                tracing::warn!(retryable, dead, "rescued jobs whose worker stopped");
                app.metrics
                    .lease_rescues_total
                    .with_label_values(&["retryable"])
                    .inc_by(retryable);
                app.metrics
                    .lease_rescues_total
                    .with_label_values(&["dead"])
                    .inc_by(dead);
                app.job_notify.notify_one();
            }
            Err(e) => {
                tracing::warn!(error = %e, "rescuing expired leases failed");
                app.metrics
                    .background_errors_total
                    .with_label_values(&["rescue"])
                    .inc();
            }
        }
    }
}

/// Refreshes the queue-depth gauges from the store every few seconds (never per scrape).
pub async fn gauge_loop(app: App, cancel: CancellationToken) {
    loop {
        app.providers.refresh_gauges(&app).await;
        match app.store.job_counts().await {
            Ok(counts) => {
                for (state, n) in counts {
                    app.metrics
                        .queue_jobs
                        .with_label_values(&[state.as_str()])
                        .set(n);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "queue gauges not refreshed");
                app.metrics
                    .background_errors_total
                    .with_label_values(&["gauges"])
                    .inc();
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = cancel.cancelled() => break,
        }
    }
}
