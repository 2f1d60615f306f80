//! The hourly cleanup job end to end: it applies `[retention]` as configured and counts what it
//! deleted in its metric.

use crate::helpers::*;
use serde_json::json;
use std::time::Duration;
use syncguard::app::Handlers;
use syncguard::clock::ManualClock;
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::Backend;

crate::on_both_stores!(the_cleanup_job_applies_the_configured_retention);

const T0: i64 = 1_800_000_000_000;
const DAY: i64 = 24 * 3_600_000;

async fn the_cleanup_job_applies_the_configured_retention(backend: Backend) {
    let clock = ManualClock::new(T0);
    let app = TestApp::spawn_with(
        backend,
        |c| c.retention.audit_days = 2,
        clock.clone(),
        Handlers::builtin(),
    )
    .await;
    // Three audit entries: 3 days old and 1 day old, and one at the cutoff's other side.
    let rows: Vec<String> = [T0 - 3 * DAY, T0 - 2 * DAY - 1, T0 - DAY]
        .iter()
        .map(|at| {
            format!("INSERT INTO audit_log (actor, action, params, at) VALUES ('k', 'test', '{{}}', {at})")
        })
        .collect();
    let before = app.db.count("audit_log").await;
    app.db.execute(&rows.join(";\n")).await;

    let id = app
        .db
        .store
        .enqueue(&NewJob::new("cleanup", json!({})), T0)
        .await
        .unwrap()
        .id;
    app.app.job_notify.notify_one();
    job_in_state(
        &app.db.store,
        id,
        JobState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        app.db.count("audit_log").await,
        before + 1,
        "the two entries older than 2 days went, the other stayed"
    );
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
        metrics.contains("syncguard_retention_deleted_total{table=\"audit_log\"} 2"),
        "{metrics}"
    );
    app.stop().await;
}
