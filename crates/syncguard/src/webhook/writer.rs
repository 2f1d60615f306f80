//! Group commit: many concurrent writers, one transaction, one fsync.
//!
//! Each caller hands its item over and waits for the answer of the commit that included it,
//! so a durability rule holds for every single item: the ingest path acknowledges nothing
//! before it is on disk with its job, and a processing run does not finish before its outcome
//! is recorded. Batches form by themselves: while one transaction commits, the items arriving
//! meanwhile queue up and all go into the next one. Under light load a batch is one item and
//! commits at once; under heavy load hundreds share the cost of one commit.
//!
//! The gateway runs two: [`Writers::ingest`] (deliveries) and [`Writers::runs`] (processing
//! outcomes). SQLite has one writer connection, so one committer each; PostgreSQL takes several
//! transactions at once, so a few committers keep its connections busy while a batch forms.

use super::{WebhookMetrics, DEDUP_WINDOW_MS};
use crate::clock::SharedClock;
use crate::workers::Workers;
use futures::future::BoxFuture;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use syncguard_store::events::{EventRun, Ingested, NewInboundEvent};
use syncguard_store::{Backend, Store, StoreError};
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

/// Most items in one transaction; bounds the time one commit holds the writer.
const MAX_BATCH: usize = 512;
/// Most body bytes in one ingest transaction (bodies are up to 1 MiB each).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Items waiting for a committer; beyond this, callers wait to hand theirs over.
const QUEUE: usize = 8_192;
/// How often expired content-key claims are dropped.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Stores one batch; answers one result per item, in order.
type CommitFn<T, R> =
    dyn Fn(Vec<T>) -> BoxFuture<'static, Result<Vec<R>, StoreError>> + Send + Sync;

struct Pending<T, R> {
    item: T,
    reply: oneshot::Sender<Result<R, StoreError>>,
}

/// The sending half of a group commit; its committers stop once it is dropped or their
/// supervisor cancels them (after the HTTP server has stopped, so nothing is left waiting).
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<Pending<T, R>>,
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts `committers` tasks that store batches of at most [`MAX_BATCH`] items and
    /// `max_weight` total weight (`weight` of each item) with `commit`.
    pub fn start(
        workers: &Workers,
        name: &'static str,
        committers: usize,
        weight: fn(&T) -> usize,
        max_weight: usize,
        commit: Arc<CommitFn<T, R>>,
    ) -> GroupCommit<T, R> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..committers {
            let (rx, commit) = (rx.clone(), commit.clone());
            workers.spawn(name, move |cancel| async move {
                loop {
                    let batch = tokio::select! {
                        batch = next_batch(&rx, weight, max_weight) => batch,
                        _ = cancel.cancelled() => None,
                    };
                    let Some(batch) = batch else { break };
                    let (items, replies): (Vec<_>, Vec<_>) =
                        batch.into_iter().map(|p| (p.item, p.reply)).unzip();
                    match commit(items).await {
                        Ok(results) => {
                            for (reply, r) in replies.into_iter().zip(results) {
                                // A caller that gave up (client gone) no longer listens; what it
                                // handed over is stored all the same.
                                let _ = reply.send(Ok(r));
                            }
                        }
                        Err(e) => {
                            for reply in replies {
                                let _ = reply.send(Err(same_error(&e)));
                            }
                        }
                    }
                }
            });
        }
        GroupCommit { tx }
    }

    /// Hands `item` over and returns once the transaction that holds it has committed.
    pub async fn submit(&self, item: T) -> Result<R, StoreError> {
        let stopped = || StoreError::Unavailable("the webhook writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { item, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Takes what is waiting: at least one item (waiting for it), then as many more as are already
/// queued, within the limits. `None` once every sender is gone.
async fn next_batch<T, R>(
    rx: &Mutex<mpsc::Receiver<Pending<T, R>>>,
    weight: fn(&T) -> usize,
    max_weight: usize,
) -> Option<Vec<Pending<T, R>>> {
    // One committer collects at a time, so batches do not split what is waiting into crumbs.
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut total = weight(&first.item);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH && total < max_weight {
        match rx.try_recv() {
            Ok(p) => {
                total += weight(&p.item);
                batch.push(p);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// One failure, told to every item of the batch.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        other => StoreError::Other(other.to_string()),
    }
}

/// The gateway's two group commits.
pub struct Writers {
    /// Deliveries: event, content-key claim and processing job, acknowledged after commit.
    pub ingest: GroupCommit<NewInboundEvent, Ingested>,
    /// Outcomes of processing runs: status, note, attempt count, job link. Answers whether
    /// the run was recorded (`false`: its lease token no longer held).
    pub runs: GroupCommit<EventRun, bool>,
}

impl Writers {
    /// `notify` wakes this node's workers once jobs are committed.
    pub fn start(
        workers: &Workers,
        store: Store,
        clock: SharedClock,
        notify: Arc<Notify>,
        metrics: WebhookMetrics,
    ) -> Writers {
        let committers = match store.backend() {
            Backend::Sqlite => 1,
            Backend::Postgres => 4,
        };
        let last_purge = Arc::new(StdMutex::new(Instant::now()));
        let ingest_store = store.clone();
        let ingest_clock = clock.clone();
        let ingest: Arc<CommitFn<NewInboundEvent, Ingested>> = Arc::new(move |batch| {
            let (store, clock, notify) =
                (ingest_store.clone(), ingest_clock.clone(), notify.clone());
            let (metrics, last_purge) = (metrics.clone(), last_purge.clone());
            Box::pin(async move {
                metrics.batch_events.observe(batch.len() as f64);
                let now = clock.now_ms();
                let outcomes = store.ingest_events(&batch, DEDUP_WINDOW_MS, now).await;
                match &outcomes {
                    Ok(o) if o.iter().any(|o| matches!(o, Ingested::Accepted { .. })) => {
                        notify.notify_one()
                    }
                    Ok(_) => {}
                    Err(e) => {
                        store.reachability().note(e, now);
                        tracing::warn!(error = %e, deliveries = batch.len(), "webhook batch not stored")
                    }
                }
                if due(&last_purge) {
                    match store.purge_content_keys(now - DEDUP_WINDOW_MS).await {
                        Ok(n) => {
                            tracing::debug!(purged = n, "expired webhook content keys dropped")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "dropping expired webhook content keys failed")
                        }
                    }
                }
                outcomes
            })
        });
        let runs: Arc<CommitFn<EventRun, bool>> = Arc::new(move |batch| {
            let (store, clock) = (store.clone(), clock.clone());
            Box::pin(async move {
                let now = clock.now_ms();
                let done = store.record_event_runs(&batch, now).await;
                if let Err(e) = &done {
                    store.reachability().note(e, now);
                }
                done
            })
        });
        Writers {
            ingest: GroupCommit::start(
                workers,
                "webhook ingest committer",
                committers,
                |e: &NewInboundEvent| e.body.len(),
                MAX_BATCH_BYTES,
                ingest,
            ),
            runs: GroupCommit::start(
                workers,
                "webhook run committer",
                committers,
                |_| 1,
                MAX_BATCH,
                runs,
            ),
        }
    }
}

/// Whether the periodic purge is due, and if so, marks it done.
fn due(last: &StdMutex<Instant>) -> bool {
    let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
    if last.elapsed() < PURGE_EVERY {
        return false;
    }
    *last = Instant::now();
    true
}
