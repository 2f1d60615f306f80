//! The engine: workers that run queued jobs, and the background loops that keep the queue
//! healthy (lease heartbeat, rescue of expired leases, periodic schedules, queue gauges).
//!
//! # How a job runs
//! 1. The fetch loop claims up to `min(free slots, fetch_batch)` due jobs in one statement,
//!    fairly: round-robin across tenants, then across connections, within each priority, and
//!    no more than `queue.max_running_per_connection` running per connection (see the store's
//!    `queue::fair`). Each claim writes a fresh lease token (fencing token) on its jobs.
//! 2. Each job runs in its own task, bounded by a semaphore of `queue.workers` slots and by the
//!    kind's timeout. Its handler gets a store fenced by the token: every write it makes for
//!    the job commits only while the token holds, so a run that lost its lease cannot commit.
//! 3. A handler that times out, whose lease is lost, or that is still running when the
//!    stopping node's grace is over is aborted *and awaited* before anything about its job is
//!    recorded, so the job never runs twice at once because of this node.
//! 4. Results go to the completer, which records a batch of them in one transaction, each
//!    conditional on its token. A result that cannot be recorded is never dropped silently: the
//!    lease is no longer renewed (the rescuer will run the job again) and the run is counted
//!    `unrecorded`.
//! 5. Meanwhile the heartbeat renews exactly the leases this process holds (by token), and
//!    stops the runs whose lease it could not renew (see [`leases`]). If this process dies,
//!    its leases expire and any node's rescuer makes the jobs runnable again.
//!
//! A handler may also snooze: reschedule its job for later without spending the attempt
//! ([`handler::JobError::snooze`]).
//!
//! # Stopping
//! Every loop stops on the shared cancellation token and is joined. On cancel the engine stops
//! fetching and hands back the jobs it claimed but never started; running jobs have until
//! shortly before `shutdown_grace_ms` to finish, then they are cancelled (sleeping, retrying,
//! whatever they were doing) and handed back without spending their attempt. The completer
//! stops retrying a failing store at the end of the grace, so the engine joins within it.

pub mod decide;
pub mod handler;
mod leases;
mod run;
mod scheduler;

pub use scheduler::Schedule;

use crate::env::Env;
use handler::Bound;
use leases::Leases;
use run::{Done, Ended};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use syncguard_store::queue::Job;
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

/// Starts the workers and background loops on `app`: `handlers` run the jobs, `schedules` are
/// the periodic ones (see [`scheduler`]).
pub fn start(
    app: Env,
    handlers: Bound,
    schedules: Vec<Schedule>,
    cancel: CancellationToken,
) -> EngineHandle {
    let handlers = Arc::new(handlers);
    let mut tasks = JoinSet::new();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let leases = Leases::default();
    // `stop`: running handlers are cut short; `give_up`: the completer stops retrying;
    // `recorded`: every result is recorded (or given up on), so the heartbeat may stop.
    let stop = CancellationToken::new();
    let give_up = CancellationToken::new();
    let recorded = CancellationToken::new();
    tasks.spawn(shutdown_timer(
        app.config.queue.shutdown_grace_ms,
        cancel.clone(),
        stop.clone(),
        give_up.clone(),
        recorded.clone(),
    ));
    tasks.spawn(fetch_loop(
        app.clone(),
        handlers,
        leases.clone(),
        done_tx,
        cancel.clone(),
        stop,
    ));
    {
        let (app, leases, recorded) = (app.clone(), leases.clone(), recorded.clone());
        tasks.spawn(async move {
            run::complete_loop(app, leases, done_rx, give_up).await;
            recorded.cancel();
        });
    }
    tasks.spawn(leases::heartbeat_loop(app.clone(), leases, recorded));
    tasks.spawn(rescue_loop(app.clone(), cancel.clone()));
    tasks.spawn(scheduler::run(app.clone(), schedules, cancel.clone()));
    tasks.spawn(gauge_loop(app, cancel));
    EngineHandle { tasks }
}

/// Turns the stop signal into the two deadlines of the grace: handlers are cut short a little
/// before its end, so that their jobs can still be handed back before it; at its end the
/// completer stops retrying.
async fn shutdown_timer(
    grace_ms: u64,
    cancel: CancellationToken,
    stop: CancellationToken,
    give_up: CancellationToken,
    recorded: CancellationToken,
) {
    tokio::select! {
        _ = cancel.cancelled() => {}
        _ = recorded.cancelled() => return,
    }
    let grace = Duration::from_millis(grace_ms);
    let reserve = (grace / 4).min(Duration::from_secs(1));
    tokio::select! {
        _ = tokio::time::sleep(grace - reserve) => {}
        _ = recorded.cancelled() => return,
    }
    stop.cancel();
    tokio::select! {
        _ = tokio::time::sleep(reserve) => {}
        _ = recorded.cancelled() => return,
    }
    give_up.cancel();
}

async fn fetch_loop(
    app: Env,
    handlers: Arc<Bound>,
    leases: Leases,
    done: mpsc::UnboundedSender<Done>,
    cancel: CancellationToken,
    stop: CancellationToken,
) {
    let q = app.config.queue.clone();
    let slots = Arc::new(Semaphore::new(q.workers));
    let kinds = handlers.kinds();
    let mut running = JoinSet::new();
    let mut backoff = Duration::from_millis(100);
    // Claimed jobs waiting for a free worker. Claiming a batch ahead (leased, so no other node
    // takes them) keeps every worker busy while the next claim is in flight, and makes one claim
    // commit serve many jobs. The heartbeat renews these leases too; one lost meanwhile is
    // dropped unstarted.
    let mut ready: VecDeque<(Job, CancellationToken)> = VecDeque::new();
    let target = q.fetch_batch.max(q.workers);
    // The last claim found fewer jobs than asked: do not ask again until woken or drained.
    let mut drained = false;
    while !cancel.is_cancelled() {
        if ready.len() < q.workers && !drained {
            let want = (target - ready.len()) as i64;
            let now = app.clock.now_ms();
            let claim = app.store.claim_jobs_capped(
                &app.worker_id,
                want,
                now,
                q.lease_ms,
                Some(&kinds),
                q.max_running_per_connection,
            );
            let claimed = tokio::select! {
                r = claim => r,
                _ = cancel.cancelled() => break,
            };
            match claimed {
                Ok(jobs) => {
                    backoff = Duration::from_millis(100);
                    drained = (jobs.len() as i64) < want;
                    for job in jobs {
                        let fence = job.fence().expect("claimed jobs carry a lease token");
                        let lost = leases.hold(fence, job.lease_until.unwrap_or(now + q.lease_ms));
                        ready.push_back((job, lost));
                    }
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
            let Some((job, lost)) = ready.pop_front() else {
                drop(p);
                break;
            };
            if lost.is_cancelled() {
                // Its lease went while it waited: someone else owns it now.
                permit = Some(p);
                continue;
            }
            let handler = handlers.get(&job.kind);
            let (app, done, stop) = (app.clone(), done.clone(), stop.clone());
            running.spawn(async move {
                let d = run::run_one(&app, handler, job, lost, stop).await;
                let _ = done.send(d);
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
    // Claimed but never started: hand them back at once.
    for (job, _) in ready.drain(..) {
        let fence = job.fence().expect("claimed jobs carry a lease token");
        let _ = done.send(Done {
            fence,
            kind: job.kind,
            ended: Ended::Released,
        });
    }
    // Running jobs finish, or are cut short by `stop` near the end of the grace.
    while running.join_next().await.is_some() {}
    drop(done);
}

/// Makes jobs of dead workers runnable again. Any node may do this; the update is atomic.
async fn rescue_loop(app: Env, cancel: CancellationToken) {
    loop {
        let every = Duration::from_millis(app.settings().queue.rescue_interval_ms);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => break,
        }
        let rescued = tokio::select! {
            r = app.store.rescue_expired_leases(app.clock.now_ms()) => r,
            _ = cancel.cancelled() => break,
        };
        match rescued {
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

/// Refreshes the queue-depth gauges from the store every few seconds (never per scrape), and
/// the store connection gauges from the pools.
pub async fn gauge_loop(app: Env, cancel: CancellationToken) {
    loop {
        for (pool, open, idle) in app.store.pool_stats() {
            let g = &app.metrics.store_connections;
            g.with_label_values(&[pool, "idle"]).set(i64::from(idle));
            g.with_label_values(&[pool, "busy"])
                .set(i64::from(open.saturating_sub(idle)));
        }
        let counts = tokio::select! {
            c = app.store.job_counts() => c,
            _ = cancel.cancelled() => break,
        };
        match counts {
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
