//! The connection lifecycle: pausing stops scheduling (and resuming syncs at once), and a
//! disconnect stops the connection's running work at once, erases its credentials, and keeps
//! or purges its data as asked. Status changes are audited.

use super::*;
use crate::webhook::{deliver, standard_headers, SECRET};
use syncguard::app::JobContext;
use syncguard::clock::{Clock, ManualClock};
use syncguard::services::sync::tick::run_tick;
use syncguard_mock::FaultsPatch;
use syncguard_store::queue::{JobFilter, JobState};

crate::on_both_stores!(
    pause_stops_scheduling_and_resume_syncs_at_once,
    disconnect_stops_running_work_and_erases_credentials
);

fn order_calls(mock: &MockHandle) -> u64 {
    mock.stats()
        .by_endpoint
        .get("GET /wms/orders")
        .copied()
        .unwrap_or(0)
}

async fn audited(app: &TestApp, key: &str) -> Vec<String> {
    let (_, audit) = app.get("/v1/audit?limit=100", key).await;
    audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

async fn pause_stops_scheduling_and_resume_syncs_at_once(backend: Backend) {
    let clock = ManualClock::new(now_ms());
    // The background tick is replaced by a no-op: the test runs ticks itself, at its clock.
    let mut handlers = Handlers::builtin();
    handlers.register("sync.tick", |_: JobContext| async { Ok(()) });
    let app = TestApp::spawn_with(backend, |_| {}, clock.clone(), handlers).await;
    let (_t, admin) = tenant(&app).await;
    let mock = mock(20).await;
    let id = trackstar(
        &app,
        &admin,
        &mock,
        json!({ "resources": ["orders"], "sync_interval_s": 60 }),
    )
    .await;
    let cps = backfilled(&app, &admin, &id, Duration::from_secs(30)).await;

    // A minute on, the tick schedules an incremental sync (this slot's, or the next one's when
    // that starts within half an interval); it falls due within ±10 % of its slot's start.
    clock.advance(61_000);
    let report = run_tick(&app.app).await.unwrap();
    assert_eq!(
        (report.connections, report.scheduled > 0),
        (1, true),
        "{report:?}"
    );
    assert_eq!(
        run_tick(&app.app).await.unwrap().scheduled,
        0,
        "once per slot"
    );
    clock.advance(60_000);
    app.app.job_notify.notify_one();
    let cps = synced_after(&app, &admin, &id, &cps, Duration::from_secs(30)).await;

    let (s, c) = patch(&app, &admin, &id, json!({ "status": "paused" })).await;
    assert_eq!((s, c["status"].as_str()), (200, Some("paused")), "{c}");
    let calls = order_calls(&mock);
    for _ in 0..3 {
        clock.advance(60_000);
        let report = run_tick(&app.app).await.unwrap();
        assert_eq!(
            (report.connections, report.scheduled),
            (0, 0),
            "paused: not scheduled"
        );
    }
    // A sync that was already queued finds the connection paused and calls nobody.
    let conn = app
        .db
        .store
        .get_connection(&Scope::All, None, &id)
        .await
        .unwrap()
        .unwrap();
    let job = syncguard::services::sync::sync_job(
        &app.app,
        &conn,
        "orders",
        syncguard::services::sync::Reason::Schedule,
        false,
    );
    let queued = app.db.store.enqueue(&job, clock.now_ms()).await.unwrap();
    app.app.job_notify.notify_one();
    job_in_state(
        &app.db.store,
        queued.id,
        JobState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(order_calls(&mock), calls, "no provider call while paused");

    let (s, c) = patch(&app, &admin, &id, json!({ "status": "active" })).await;
    assert_eq!((s, c["status"].as_str()), (200, Some("active")), "{c}");
    synced_after(&app, &admin, &id, &cps, Duration::from_secs(30)).await;
    assert!(order_calls(&mock) > calls, "resuming syncs at once");
    clock.advance(60_000);
    assert_eq!(
        run_tick(&app.app).await.unwrap().connections,
        1,
        "scheduled again"
    );
    let actions = audited(&app, &admin).await;
    assert!(
        actions.contains(&"connection.pause".into())
            && actions.contains(&"connection.resume".into()),
        "{actions:?}"
    );
    assert_eq!(
        patch(&app, &admin, &id, json!({ "status": "disconnected" }))
            .await
            .0,
        422,
        "disconnect is DELETE"
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn disconnect_stops_running_work_and_erases_credentials(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin) = tenant(&app).await;
    // Enough pages, slowly served, that the backfill is surely still running at the DELETE
    // even on a loaded machine.
    let mock = mock(20_000).await;
    let ms = mock.state();
    ms.set_faults(&FaultsPatch {
        latency_ms: Some(300),
        ..Default::default()
    })
    .unwrap();
    let config = json!({ "resources": ["orders"], "webhook": { "secrets": [SECRET] } });
    let id = trackstar(&app, &admin, &mock, config.clone()).await;
    // A second connection on a provider of its own, so its calls do not blur the counts.
    let other = super::mock(5_500).await;
    let kept = trackstar(&app, &admin, &other, config).await;
    eventually(
        Duration::from_secs(30),
        "a page of the backfill",
        || async {
            let cp = app.db.store.get_checkpoint(&id, "orders").await.unwrap()?;
            cp.run.filter(|r| r.pages >= 1).map(|_| ())
        },
    )
    .await;

    let (s, d) = app.delete(&format!("/v1/connections/{id}"), &admin).await;
    assert_eq!(s, 200, "{d}");
    let cp_at = app
        .db
        .store
        .get_checkpoint(&id, "orders")
        .await
        .unwrap()
        .unwrap();
    let calls_at = order_calls(&mock);
    assert_eq!(
        (
            d["connection"]["status"].as_str(),
            d["connection"]["has_credentials"].as_bool()
        ),
        (Some("disconnected"), Some(false)),
        "{d}"
    );
    assert!(
        d["cancelled_jobs"].as_u64() >= Some(1),
        "the running backfill was cancelled: {d}"
    );
    assert!(d["purged"].is_null());
    // Its work stopped: no job left, no further call (beyond one already on the wire), no page.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert!(
        order_calls(&mock) <= calls_at + 1,
        "{} calls after {calls_at}",
        order_calls(&mock)
    );
    let cp = app
        .db
        .store
        .get_checkpoint(&id, "orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cp.run.map(|r| r.pages),
        cp_at.run.map(|r| r.pages),
        "no page committed after the disconnect"
    );
    let filter = JobFilter {
        connection_id: Some(id.clone()),
        ..Default::default()
    };
    let jobs = app
        .db
        .store
        .list_jobs(
            &Scope::All,
            &filter,
            &PageRequest {
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap()
        .items;
    assert!(jobs.iter().all(|j| !j.state.is_active()), "{jobs:?}");
    // Credentials and webhook secrets are gone; webhooks are refused.
    let secrets = app.db.store.connection_secrets(&id).await.unwrap().unwrap();
    assert_eq!((secrets.credentials, secrets.webhook_secrets), (None, None));
    let body = br#"{"event_type":"order.updated","data":{"id":"o"}}"#.to_vec();
    assert_eq!(
        deliver(
            &app,
            &id,
            &standard_headers(SECRET, "msg_late", &body),
            body
        )
        .await
        .0,
        404
    );
    // Kept: the data, by default.
    assert!(!local(&app, &id, "orders").await.is_empty());
    assert!(audited(&app, &admin)
        .await
        .contains(&"connection.disconnect".to_string()));
    assert_eq!(
        patch(&app, &admin, &id, json!({ "status": "active" }))
            .await
            .0,
        409
    );

    // Purged on request.
    backfilled(&app, &admin, &kept, Duration::from_secs(60)).await;
    let (s, d) = app
        .delete(&format!("/v1/connections/{kept}?purge=true"), &admin)
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(
        (
            d["purged"]["records"].as_u64(),
            d["purged"]["changes"].as_u64()
        ),
        (Some(5_500), Some(5_500)),
        "{d}"
    );
    assert!(local(&app, &kept, "orders").await.is_empty());
    assert!(app
        .db
        .store
        .list_changes(&Scope::All, None, Some(&kept), 0, 10)
        .await
        .unwrap()
        .is_empty());
    other.shutdown().await;
    mock.shutdown().await;
    app.stop().await;
}
