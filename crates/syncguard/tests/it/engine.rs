//! The worker pool end to end: retry timing, dead-lettering, replay, debounce.

use crate::helpers::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::time::Duration;
use syncguard::app::{Handlers, JobContext};
use syncguard::clock::ManualClock;
use syncguard::engine::handler::JobError;
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::Backend;
use syncguard_store::StoreError;

crate::on_both_stores!(
    retry_timing_follows_the_formula,
    permanent_errors_dead_letter_at_once,
    replay_runs_a_fresh_job_and_dry_run_changes_nothing,
    debounced_burst_runs_once_with_the_last_payload,
    jobs_run_once_and_are_counted_in_metrics,
    an_unreachable_store_snoozes_the_job_and_other_store_errors_retry,
);

const T0: i64 = 1_800_000_000_000;

async fn retry_timing_follows_the_formula(backend: Backend) {
    let clock = ManualClock::new(T0);
    let app = TestApp::spawn_with(backend, |_| {}, clock.clone(), Handlers::builtin()).await;
    let mut job = NewJob::new("noop", json!({ "fail": "transient" }));
    job.max_attempts = 3;
    let id = app.db.store.enqueue(&job, T0).await.unwrap().id;
    app.app.job_notify.notify_one();
    let policy = app.app.config.retry_policy();
    let mut now = T0;
    for attempt in 1..=2u32 {
        let j = eventually(Duration::from_secs(10), "a failed attempt", || async {
            app.db
                .store
                .get_job(&syncguard_store::Scope::All, None, id)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Retryable && j.attempts == attempt as i64)
        })
        .await;
        let (lo, hi) = policy.bounds_ms(attempt);
        let delay = j.run_at - now;
        assert!(
            delay >= lo as i64 && delay <= hi as i64,
            "attempt {attempt}: delay {delay} outside [{lo}, {hi}]"
        );
        // Not a moment early: one millisecond before run_at nothing runs.
        clock.set(j.run_at - 1);
        app.app.job_notify.notify_one();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            app.db
                .store
                .get_job(&syncguard_store::Scope::All, None, id)
                .await
                .unwrap()
                .unwrap()
                .attempts,
            attempt as i64
        );
        now = j.run_at;
        clock.set(now);
        app.app.job_notify.notify_one();
    }
    let dead = job_in_state(&app.db.store, id, JobState::Dead, Duration::from_secs(10)).await;
    assert_eq!(
        (dead.attempts, dead.error_class.map(|c| c.to_string())),
        (3, Some("transient".to_string()))
    );
    app.stop().await;
}

async fn permanent_errors_dead_letter_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let id = app
        .db
        .store
        .enqueue(&NewJob::new("noop", json!({ "fail": "permanent" })), now())
        .await
        .unwrap()
        .id;
    app.app.job_notify.notify_one();
    let dead = job_in_state(&app.db.store, id, JobState::Dead, Duration::from_secs(10)).await;
    assert_eq!(dead.attempts, 1);
    let (s, list) = app.get("/v1/dead-letters", PLATFORM_KEY).await;
    assert_eq!(s, 200);
    assert_eq!(list["data"][0]["id"], id);
    assert_eq!(list["data"][0]["error_class"], "permanent");
    assert_eq!(list["data"][0]["reviewed"], false);
    app.stop().await;
}

async fn replay_runs_a_fresh_job_and_dry_run_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (touches, url) = Touches::serve().await;
    touches.fail_first.store(1, Ordering::SeqCst);
    touches.fail_status.store(422, Ordering::SeqCst);
    let dead_id = app
        .db
        .store
        .enqueue(&NewJob::new("noop", json!({ "touch_url": url })), now())
        .await
        .unwrap()
        .id;
    app.app.job_notify.notify_one();
    job_in_state(
        &app.db.store,
        dead_id,
        JobState::Dead,
        Duration::from_secs(10),
    )
    .await;

    let before = app.get("/v1/jobs?kind=noop", PLATFORM_KEY).await.1;
    let (s, dry) = app
        .post(
            "/v1/dead-letters/replay",
            PLATFORM_KEY,
            json!({ "kind": "noop", "dry_run": true }),
        )
        .await;
    assert_eq!(
        (s, dry["matched"].as_u64(), dry["replayed"].as_u64()),
        (200, Some(1), Some(0)),
        "{dry}"
    );
    assert_eq!(
        app.get("/v1/jobs?kind=noop", PLATFORM_KEY).await.1,
        before,
        "dry run changed nothing"
    );

    let (s, r) = app
        .post(
            "/v1/dead-letters/replay",
            PLATFORM_KEY,
            json!({ "ids": [dead_id], "stagger_ms": 0 }),
        )
        .await;
    assert_eq!((s, r["replayed"].as_u64()), (200, Some(1)), "{r}");
    let fresh = r["job_ids"][0].as_i64().unwrap();
    assert_ne!(fresh, dead_id);
    let done = job_in_state(
        &app.db.store,
        fresh,
        JobState::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!((done.attempts, done.replayed_from), (1, Some(dead_id)));
    assert_eq!(touches.count(fresh), 1);
    let (_, audit) = app
        .get("/v1/audit?action=dead_letter.replay", PLATFORM_KEY)
        .await;
    assert_eq!(
        audit["data"].as_array().unwrap().len(),
        2,
        "both replays audited, dry run included"
    );
    app.stop().await;
}

async fn debounced_burst_runs_once_with_the_last_payload(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (touches, url) = Touches::serve().await;
    let mut id = None;
    for i in 0..20 {
        let mut j = NewJob::new("noop", json!({ "touch_url": url, "version": i }));
        j.unique_key = Some("publish:sku-1".into());
        j.debounce_ms = Some(400);
        let e = app.db.store.enqueue(&j, now()).await.unwrap();
        assert_eq!(*id.get_or_insert(e.id), e.id, "one job for the whole burst");
    }
    let id = id.unwrap();
    let done = job_in_state(
        &app.db.store,
        id,
        JobState::Succeeded,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(done.payload["version"], 19);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        touches.snapshot().values().sum::<u32>(),
        1,
        "one external effect"
    );
    app.stop().await;
}

async fn jobs_run_once_and_are_counted_in_metrics(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (touches, url) = Touches::serve().await;
    let jobs: Vec<NewJob> = (0..200)
        .map(|_| NewJob::new("noop", json!({ "touch_url": url })))
        .collect();
    let ids: Vec<i64> = app
        .db
        .store
        .enqueue_many(&jobs, now())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    app.app.job_notify.notify_one();
    eventually(Duration::from_secs(20), "200 touches", || async {
        (touches.snapshot().len() == 200).then_some(())
    })
    .await;
    for id in &ids {
        job_in_state(
            &app.db.store,
            *id,
            JobState::Succeeded,
            Duration::from_secs(10),
        )
        .await;
        assert_eq!(touches.count(*id), 1);
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("syncguard_jobs_total{kind=\"noop\",outcome=\"succeeded\"} 200"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE syncguard_job_duration_seconds histogram"));
    assert!(metrics.contains("syncguard_queue_jobs{state="));
    app.stop().await;
}

/// A handler whose store call fails: an unreachable store (down, or its pool exhausted) says
/// nothing about the job, so it waits a moment and keeps its attempts; any other store error
/// is an ordinary transient failure.
async fn an_unreachable_store_snoozes_the_job_and_other_store_errors_retry(backend: Backend) {
    let clock = ManualClock::new(T0);
    let mut handlers = Handlers::builtin();
    handlers.register("store_call", |ctx: JobContext| async move {
        let e = match ctx.job.payload["error"].as_str() {
            Some("unavailable") => StoreError::Unavailable("pool timed out".into()),
            _ => StoreError::Other("constraint failed".into()),
        };
        Err::<(), JobError>(e.into())
    });
    let app = TestApp::spawn_with(backend, |_| {}, clock.clone(), handlers).await;
    let enqueue = |error: &'static str| {
        let store = app.db.store.clone();
        async move {
            let mut job = NewJob::new("store_call", json!({ "error": error }));
            job.max_attempts = 1;
            store.enqueue(&job, T0).await.unwrap().id
        }
    };
    let (down, broken) = (enqueue("unavailable").await, enqueue("other").await);
    app.app.job_notify.notify_one();

    let snoozed = eventually(Duration::from_secs(10), "the snooze", || async {
        app.db
            .store
            .get_job(&syncguard_store::Scope::All, None, down)
            .await
            .unwrap()
            .filter(|j| j.state == JobState::Available && j.started_at.is_some())
    })
    .await;
    assert_eq!(snoozed.attempts, 0, "no attempt spent: {snoozed:?}");
    assert!(
        (T0 + 1_000..=T0 + 3_000).contains(&snoozed.run_at),
        "runs again in 1-3 s: {snoozed:?}"
    );
    // The same job with its one attempt, failing otherwise, is dead at once.
    let dead = job_in_state(
        &app.db.store,
        broken,
        JobState::Dead,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(dead.attempts, 1);
    app.stop().await;
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
