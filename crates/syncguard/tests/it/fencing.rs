//! Fenced execution end to end (SPEC §3.1 "Fencing"): a handler cut short is stopped and
//! awaited before its job runs again, a lost lease stops the handler, a stop hands jobs back.

use crate::helpers::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard::app::{Handlers, JobContext};
use syncguard::clock::SystemClock;
use syncguard::config::KindConfig;
use syncguard::engine::handler::JobError;
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(
    a_handler_past_its_timeout_has_one_effect_and_never_overlaps,
    a_lost_lease_stops_the_running_handler,
    a_stop_hands_a_sleeping_job_back_within_the_grace,
    results_that_cannot_be_recorded_are_counted_and_their_jobs_rescued,
);

/// Counts runs in progress (and the most at once) and effects of the `slow` test kind.
#[derive(Clone, Default)]
struct Probe {
    active: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    effects: Arc<AtomicUsize>,
    started: Arc<AtomicUsize>,
}

/// Leaves the active count when the run ends, however it ends (an aborted run is dropped).
struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Probe {
    /// `slow`: the first attempt sleeps `first_sleep_ms` before its effect; later ones do not.
    fn handlers(&self, first_sleep_ms: u64) -> Handlers {
        let mut h = Handlers::builtin();
        let p = self.clone();
        h.register("slow", move |ctx: JobContext| {
            let p = p.clone();
            async move {
                p.started.fetch_add(1, Ordering::SeqCst);
                let now = p.active.fetch_add(1, Ordering::SeqCst) + 1;
                p.most.fetch_max(now, Ordering::SeqCst);
                let _active = Active(p.active.clone());
                if ctx.job.attempts == 1 {
                    tokio::time::sleep(Duration::from_millis(first_sleep_ms)).await;
                }
                p.effects.fetch_add(1, Ordering::SeqCst);
                Ok::<(), JobError>(())
            }
        });
        h
    }

    /// Waits until a `slow` run is in progress.
    async fn started_running(&self) {
        eventually(Duration::from_secs(10), "the run to start", || async {
            (self.active.load(Ordering::SeqCst) == 1).then_some(())
        })
        .await;
    }
}

/// Enqueues one `slow` job and wakes the workers; returns its id.
async fn enqueue_slow(app: &TestApp) -> i64 {
    let id = app
        .db
        .store
        .enqueue(&NewJob::new("slow", json!({})), now())
        .await
        .unwrap()
        .id;
    app.app.job_notify.notify_one();
    id
}

async fn a_handler_past_its_timeout_has_one_effect_and_never_overlaps(backend: Backend) {
    let probe = Probe::default();
    let app = TestApp::spawn_with(
        backend,
        |c| {
            c.queue.retry_base_ms = 20;
            c.queue.retry_cap_ms = 40;
            c.queue.kinds.insert(
                "slow".into(),
                KindConfig {
                    max_attempts: Some(3),
                    timeout_ms: Some(300),
                },
            );
        },
        Arc::new(SystemClock),
        probe.handlers(1_500),
    )
    .await;
    let id = enqueue_slow(&app).await;
    let done = job_in_state(
        &app.db.store,
        id,
        JobState::Succeeded,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(done.attempts, 2, "the timed-out attempt counted");
    // Long enough for a detached first run to wake up and have its effect.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        probe.effects.load(Ordering::SeqCst),
        1,
        "exactly one effect"
    );
    assert_eq!(
        probe.most.load(Ordering::SeqCst),
        1,
        "never two runs at once"
    );
    assert_eq!(probe.started.load(Ordering::SeqCst), 2);
    app.stop().await;
}

async fn a_lost_lease_stops_the_running_handler(backend: Backend) {
    let probe = Probe::default();
    let app = TestApp::spawn_with(
        backend,
        |c| c.queue.lease_ms = 600,
        Arc::new(SystemClock),
        probe.handlers(60_000),
    )
    .await;
    let id = enqueue_slow(&app).await;
    probe.started_running().await;
    // The job is taken away from this node (here: cancelled); the next heartbeat finds the
    // lease gone and stops the handler instead of letting it run on.
    app.db
        .store
        .cancel_job(&Scope::All, None, id, now())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the handler to be stopped",
        || async { (probe.active.load(Ordering::SeqCst) == 0).then_some(()) },
    )
    .await;
    assert_eq!(probe.effects.load(Ordering::SeqCst), 0);
    let j = app
        .db
        .store
        .get_job(&Scope::All, None, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        j.state,
        JobState::Cancelled,
        "the stopped run recorded nothing"
    );
    app.stop().await;
}

async fn a_stop_hands_a_sleeping_job_back_within_the_grace(backend: Backend) {
    let probe = Probe::default();
    let app = TestApp::spawn_with(
        backend,
        |c| c.queue.shutdown_grace_ms = 1_500,
        Arc::new(SystemClock),
        probe.handlers(60_000),
    )
    .await;
    let id = enqueue_slow(&app).await;
    probe.started_running().await;
    let t = Instant::now();
    let (_db, store) = app.stop_keeping_db().await;
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(1_500 + 1_000),
        "stopped in {took:?}, grace 1.5 s"
    );
    assert_eq!(
        probe.active.load(Ordering::SeqCst),
        0,
        "the handler was stopped"
    );
    let j = store.get_job(&Scope::All, None, id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.attempts),
        (JobState::Available, 0),
        "handed back with its attempt given back"
    );
}

/// Makes the store refuse to record the first successful completion of `kind` (a trigger that
/// raises an error), as a store that fails every completion write would; later attempts are
/// recorded.
async fn refuse_first_completion(db: &syncguard_store::testkit::TestDb, kind: &str) {
    use sqlx::Connection;
    match db.backend() {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query(&format!(
                "CREATE TRIGGER refuse_first_completion BEFORE UPDATE OF state ON jobs
                 WHEN NEW.state = 'succeeded' AND OLD.kind = '{kind}' AND OLD.attempts = 1
                 BEGIN SELECT RAISE(ABORT, 'completion refused by the test'); END"
            ))
            .execute(&mut c)
            .await
            .unwrap();
            c.close().await.unwrap();
        }
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(
                "CREATE FUNCTION refuse_first_completion() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN RAISE EXCEPTION 'completion refused by the test'; END $$",
            )
            .execute(&mut c)
            .await
            .unwrap();
            sqlx::query(&format!(
                "CREATE TRIGGER refuse_first_completion BEFORE UPDATE ON jobs FOR EACH ROW
                 WHEN (NEW.state = 'succeeded' AND OLD.kind = '{kind}' AND OLD.attempts = 1)
                 EXECUTE FUNCTION refuse_first_completion()"
            ))
            .execute(&mut c)
            .await
            .unwrap();
            c.close().await.unwrap();
        }
    }
}

/// A run whose result the store refuses to record: the completer retries while the lease can
/// still be held, then gives up: it stops renewing the lease (so the rescuer takes the job),
/// counts the run `unrecorded` (not `succeeded`), and the job runs again and is recorded.
async fn results_that_cannot_be_recorded_are_counted_and_their_jobs_rescued(backend: Backend) {
    let probe = Probe::default();
    let app = TestApp::spawn_with(
        backend,
        |c| {
            c.queue.lease_ms = 900;
            c.queue.retry_base_ms = 20;
            c.queue.retry_cap_ms = 40;
        },
        Arc::new(SystemClock),
        probe.handlers(0),
    )
    .await;
    refuse_first_completion(&app.db, "slow").await;
    let id = enqueue_slow(&app).await;
    let done = job_in_state(
        &app.db.store,
        id,
        JobState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    let counted = |outcome: &str| {
        app.app
            .metrics
            .jobs_total
            .with_label_values(&["slow", outcome])
            .get()
    };
    // The completer counts a run once its result is written: wait for the second count.
    eventually(
        Duration::from_secs(5),
        "the recorded run to be counted",
        || async { (counted("succeeded") == 1).then_some(()) },
    )
    .await;
    assert_eq!(
        counted("unrecorded"),
        1,
        "the first run is counted unrecorded"
    );
    assert_eq!(
        counted("succeeded"),
        1,
        "only the recorded run counts as succeeded"
    );
    assert_eq!(
        done.attempts, 2,
        "the lease was left to lapse and the rescued job ran again"
    );
    assert_eq!(probe.started.load(Ordering::SeqCst), 2);
    assert_eq!(
        probe.most.load(Ordering::SeqCst),
        1,
        "never two runs at once"
    );
    app.stop().await;
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
