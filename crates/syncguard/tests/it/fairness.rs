//! Fair claiming end to end: a connection with a deep backlog does not hold up another one.

use crate::helpers::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use syncguard::app::{Handlers, JobContext};
use syncguard::clock::SystemClock;
use syncguard::engine::handler::JobError;
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(a_new_connection_runs_before_another_ones_backlog_drains);

async fn a_new_connection_runs_before_another_ones_backlog_drains(backend: Backend) {
    let mut handlers = Handlers::builtin();
    handlers.register("work", |_ctx: JobContext| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<(), JobError>(())
    });
    let app = TestApp::spawn_with(
        backend,
        |c| {
            c.queue.workers = 4;
            c.queue.fetch_batch = 16;
        },
        Arc::new(SystemClock),
        handlers,
    )
    .await;
    let job = |conn: &str, n: usize| {
        let mut j = NewJob::new("work", json!({ "n": n }));
        j.tenant_id = Some("ten".into());
        j.connection_id = Some(conn.into());
        j
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // Everything becomes due at once (B a moment after all of A), so no job of A runs before
    // B is queued, however slow enqueueing is.
    let due = now() + 8_000;
    for chunk in 0..2 {
        let batch: Vec<NewJob> = (0..1_000)
            .map(|i| NewJob {
                run_at: Some(due),
                ..job("con_a", chunk * 1_000 + i)
            })
            .collect();
        app.db.store.enqueue_many(&batch, now()).await.unwrap();
    }
    let late_b = NewJob {
        run_at: Some(due + 1),
        ..job("con_b", 0)
    };
    let b = app.db.store.enqueue(&late_b, now()).await.unwrap().id;
    app.app.job_notify.notify_one();
    job_in_state(
        &app.db.store,
        b,
        JobState::Succeeded,
        Duration::from_secs(40),
    )
    .await;
    // Measured by what is left, not by time: B ran long before A's backlog drained.
    let counts = app
        .db
        .store
        .list_jobs(
            &Scope::All,
            &syncguard_store::queue::JobFilter {
                state: Some(JobState::Succeeded),
                ..Default::default()
            },
            &syncguard_store::page::PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .unwrap()
        .items
        .len();
    assert!(counts < 200, "{counts} jobs of A ran before B's one");
    app.stop().await;
}
