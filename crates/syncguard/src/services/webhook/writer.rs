//! Group commit: many concurrent writers, one transaction, one fsync.
//!
//! Each caller hands its item over and waits for the answer of the commit that included it,
//! so a durability rule holds for every single item: the ingest path acknowledges nothing
//! before it is on disk with its job, and a processing run does not finish before its outcome
//! is recorded. Batches form by themselves: while one transaction commits, the items arriving
//! meanwhile queue up and all go into the next one. Under light load a batch is one item and
//! commits at once; under heavy load hundreds share the cost of one commit.
//!
//! The queue in front of the committers is bounded twice: by items, and for deliveries also by
//! body bytes ([`GroupCommit::with_byte_budget`], `api.webhook_queue_bytes`), since 8 192
//! queued 1 MiB bodies would be 8 GiB. A delivery that finds either bound reached is refused at
//! once ([`GroupCommit::try_submit`], answered 503 with `Retry-After`) rather than left waiting
//! with its body in memory: the provider retries later, when the store has caught up.
//!
//! The gateway runs two: [`Writers::ingest`] (deliveries) and [`Writers::runs`] (processing
//! outcomes). SQLite has one writer connection, so one committer each; PostgreSQL takes several
//! transactions at once, so a few committers keep its connections busy while a batch forms.

use super::{WebhookMetrics, DEDUP_WINDOW_MS};
use crate::clock::SharedClock;
use crate::workers::Workers;
use futures::future::BoxFuture;
use prometheus::IntGauge;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};
use syncguard_store::events::{EventRun, Ingested, NewInboundEvent};
use syncguard_store::{Backend, Store, StoreError};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Mutex, Notify, OwnedSemaphorePermit, Semaphore};

/// Most items in one transaction; bounds the time one commit holds the writer.
const MAX_BATCH: usize = 512;
/// Most body bytes in one ingest transaction (bodies are up to 1 MiB each).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Items waiting for a committer; beyond this, [`GroupCommit::submit`] waits and
/// [`GroupCommit::try_submit`] refuses.
const QUEUE: usize = 8_192;
/// How often expired content-key claims are dropped.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Stores one batch; answers one result per item, in order.
type CommitFn<T, R> =
    dyn Fn(Vec<T>) -> BoxFuture<'static, Result<Vec<R>, StoreError>> + Send + Sync;

struct Pending<T, R> {
    item: T,
    reply: oneshot::Sender<Result<R, StoreError>>,
    /// The item's share of the byte budget, given back once its transaction is over.
    held: Option<Held>,
}

/// Why an item was not stored.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds as many items or bytes as it may; nothing was handed over.
    #[error("the webhook writer is full")]
    Full,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bytes that may wait for a committer at once, and the gauge that shows them.
struct Budget {
    bytes: Arc<Semaphore>,
    total: usize,
    gauge: IntGauge,
}

impl Budget {
    /// Takes `weight` bytes (an item larger than the whole budget takes all of it), or `None`
    /// when they are not free now.
    fn take(&self, weight: usize) -> Option<Held> {
        let n = weight.min(self.total).min(u32::MAX as usize);
        let permit = self.bytes.clone().try_acquire_many_owned(n as u32).ok()?;
        self.gauge.add(n as i64);
        Some(Held {
            _permit: permit,
            bytes: n as i64,
            gauge: self.gauge.clone(),
        })
    }
}

/// Bytes of the budget held by one item.
struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: IntGauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.sub(self.bytes);
    }
}

/// The sending half of a group commit; its committers stop once it is dropped or their
/// supervisor cancels them (after the HTTP server has stopped, so nothing is left waiting).
pub struct GroupCommit<T, R> {
    tx: mpsc::Sender<Pending<T, R>>,
    weight: fn(&T) -> usize,
    budget: Option<Budget>,
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
                    let mut items = Vec::with_capacity(batch.len());
                    let mut replies = Vec::with_capacity(batch.len());
                    let mut held = Vec::with_capacity(batch.len());
                    for p in batch {
                        items.push(p.item);
                        replies.push(p.reply);
                        held.push(p.held);
                    }
                    // Bodies stay in memory until the commit is over; so does their budget.
                    let _held = held;
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
        GroupCommit {
            tx,
            weight,
            budget: None,
        }
    }

    /// Bounds the weight (body bytes) waiting at once to `total`, shown in `gauge`; only
    /// [`GroupCommit::try_submit`] is then to be used.
    pub fn with_byte_budget(mut self, total: usize, gauge: IntGauge) -> Self {
        self.budget = Some(Budget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
            gauge,
        });
        self
    }

    /// Hands `item` over, waiting for room in the queue, and returns once the transaction
    /// that holds it has committed.
    pub async fn submit(&self, item: T) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending {
                item,
                reply,
                held: None,
            })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Hands `item` over if the queue has room for it in items and bytes, else refuses at
    /// once with [`SubmitError::Full`]; returns once the transaction that holds it committed.
    pub async fn try_submit(&self, item: T) -> Result<R, SubmitError> {
        let held = match &self.budget {
            Some(budget) => Some(budget.take((self.weight)(&item)).ok_or(SubmitError::Full)?),
            None => None,
        };
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Pending { item, reply, held })
            .map_err(|e| match e {
                TrySendError::Full(_) => SubmitError::Full,
                TrySendError::Closed(_) => SubmitError::Store(stopped()),
            })?;
        Ok(answer.await.map_err(|_| stopped())??)
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the webhook writer has stopped".into())
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
    /// `queue_bytes` bounds the body bytes of deliveries waiting to be stored.
    pub fn start(
        workers: &Workers,
        store: Store,
        clock: SharedClock,
        notify: Arc<Notify>,
        metrics: WebhookMetrics,
        queue_bytes: usize,
    ) -> Writers {
        let queue_gauge = metrics.queue_bytes.clone();
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
            )
            .with_byte_budget(queue_bytes, queue_gauge),
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

#[cfg(test)]
mod tests {
    use super::*;

    type Writer = Arc<GroupCommit<Vec<u8>, ()>>;

    /// A group commit of byte strings whose commits wait for `gate` permits, one per batch.
    fn gated(budget: usize) -> (Writer, Arc<Semaphore>, IntGauge) {
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let commit: Arc<CommitFn<Vec<u8>, ()>> = Arc::new(move |batch| {
            let gate = g.clone();
            Box::pin(async move {
                gate.acquire().await.expect("gate open").forget();
                Ok(vec![(); batch.len()])
            })
        });
        let gauge = IntGauge::new("queue_bytes", "test").unwrap();
        let workers = crate::workers::Workers::new();
        let writer = GroupCommit::start(
            &workers,
            "test committer",
            1,
            |b: &Vec<u8>| b.len(),
            usize::MAX,
            commit,
        )
        .with_byte_budget(budget, gauge.clone());
        (Arc::new(writer), gate, gauge)
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if check() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn a_full_byte_budget_refuses_at_once_and_frees_after_the_commit() {
        let (writer, gate, gauge) = gated(1000);
        let w = writer.clone();
        let first = tokio::spawn(async move { w.try_submit(vec![0; 600]).await });
        until("the first item holds its bytes", || gauge.get() == 600).await;

        // 600 more bytes do not fit beside the first item's 600: refused without waiting.
        let refused = writer.try_submit(vec![0; 600]).await;
        assert!(matches!(refused, Err(SubmitError::Full)), "{refused:?}");
        assert_eq!(gauge.get(), 600, "a refused item holds nothing");

        // What fits is taken: the bound is in bytes, not items.
        let w = writer.clone();
        let small = tokio::spawn(async move { w.try_submit(vec![0; 300]).await });
        until("the small item holds its bytes", || gauge.get() == 900).await;

        gate.add_permits(100);
        first.await.unwrap().unwrap();
        small.await.unwrap().unwrap();
        assert_eq!(gauge.get(), 0, "committed items give their bytes back");
        writer.try_submit(vec![0; 600]).await.unwrap();
    }

    #[tokio::test]
    async fn an_item_larger_than_the_budget_takes_all_of_it() {
        let (writer, gate, gauge) = gated(100);
        let w = writer.clone();
        let big = tokio::spawn(async move { w.try_submit(vec![0; 500]).await });
        until("the big item holds the whole budget", || gauge.get() == 100).await;
        assert!(matches!(
            writer.try_submit(vec![0; 1]).await,
            Err(SubmitError::Full)
        ));
        gate.add_permits(1);
        big.await.unwrap().unwrap();
        assert_eq!(gauge.get(), 0);
    }
}
