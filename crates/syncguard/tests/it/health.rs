//! Health, from outside, on both stores: the status at the SLO thresholds with an injected
//! clock, the pinned shape, tenant-scoped views, and answers from memory with the store gone.

use crate::helpers::*;
use crate::sync::{backfilled, mock, tenant, trackstar};
use serde_json::{json, Value};
use std::time::Duration;
use syncguard::app::{Handlers, JobContext};
use syncguard::clock::{ManualClock, SystemClock};
use syncguard_store::Backend;

crate::on_both_stores!(
    status_follows_the_sync_lag_thresholds_on_an_injected_clock,
    views_are_scoped_to_what_the_key_may_see,
    health_answers_from_memory_when_the_store_is_gone,
);

async fn connection_health(app: &TestApp, key: &str, id: &str) -> Value {
    let (s, h) = app.get(&format!("/v1/connections/{id}/health"), key).await;
    assert_eq!(s, 200, "{h}");
    h
}

async fn status_follows_the_sync_lag_thresholds_on_an_injected_clock(backend: Backend) {
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let clock = ManualClock::new(start);
    // No scheduled syncs: the lag must only grow with the clock.
    let mut handlers = Handlers::builtin();
    handlers.register("sync.tick", |_: JobContext| async { Ok(()) });
    let app = TestApp::spawn_with(backend, |_| {}, clock.clone(), handlers).await;
    let (_t, admin) = tenant(&app).await;
    let mock = mock(20).await;
    let id = trackstar(&app, &admin, &mock, json!({ "resources": ["orders"] })).await;
    backfilled(&app, &admin, &id, Duration::from_secs(30)).await;
    for (after_s, status) in [
        (0, "healthy"),
        (299, "healthy"),
        (300, "degraded"),
        (900, "degraded"),
        (901, "unhealthy"),
    ] {
        clock.set(start + after_s * 1_000);
        syncguard::services::health::refresh(&app.app)
            .await
            .unwrap();
        let h = connection_health(&app, &admin, &id).await;
        assert_eq!(
            (h["status"].as_str(), h["sync_lag_s"].as_f64()),
            (Some(status), Some(after_s as f64)),
            "{h}"
        );
        if status != "healthy" {
            assert!(
                h["reasons"][0].as_str().unwrap().starts_with("sync lag"),
                "{h}"
            );
        }
    }
    // `[health]` thresholds apply from the next snapshot after a reload.
    let original = (*app.app.settings()).clone();
    let mut relaxed = original.clone();
    relaxed.health.sync_lag_critical_s = 2_000.0;
    app.app.reload(relaxed);
    syncguard::services::health::refresh(&app.app)
        .await
        .unwrap();
    let h = connection_health(&app, &admin, &id).await;
    assert_eq!(
        h["status"], "degraded",
        "901 s is within the reloaded critical level: {h}"
    );
    app.app.reload(original);
    syncguard::services::health::refresh(&app.app)
        .await
        .unwrap();
    // The pinned shape.
    let (_, all) = app.get("/v1/health", &admin).await;
    for field in ["total", "healthy", "degraded", "unhealthy", "queue"] {
        assert!(
            all["aggregate"].get(field).is_some(),
            "aggregate lacks {field}: {all}"
        );
    }
    for field in ["available", "running", "retryable", "dead"] {
        assert!(
            all["aggregate"]["queue"].get(field).is_some(),
            "queue lacks {field}"
        );
    }
    let c = &all["connections"][0];
    for field in [
        "id",
        "status",
        "sync_lag_s",
        "webhook_lag_s",
        "error_rate_24h",
        "recent_failures",
        "queue_depth",
        "webhook_latency_ms",
        "circuit",
        "rate_limit",
        "burn",
    ] {
        assert!(c.get(field).is_some(), "connection lacks {field}: {c}");
    }
    assert!(c["webhook_latency_ms"].get("p99").is_some() && c["circuit"]["state"] == "closed");
    assert_eq!(
        (
            c["rate_limit"]["near_depletion"].as_bool(),
            c["burn"]["alert"].as_str()
        ),
        (Some(false), Some("none"))
    );
    assert_eq!(
        c["error_rate_24h"].as_f64(),
        Some(0.0),
        "the backfill's calls all succeeded"
    );
    assert_eq!(all["aggregate"]["unhealthy"], 1);
    // A paused connection is behind on purpose: its lag is shown, not held against it.
    let (s, _) = crate::sync::patch(&app, &admin, &id, json!({ "status": "paused" })).await;
    assert_eq!(s, 200);
    syncguard::services::health::refresh(&app.app)
        .await
        .unwrap();
    let h = connection_health(&app, &admin, &id).await;
    assert_eq!(
        (h["status"].as_str(), h["connection_status"].as_str()),
        (Some("healthy"), Some("paused")),
        "{h}"
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn views_are_scoped_to_what_the_key_may_see(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ta, a) = tenant(&app).await;
    let (_tb, b) = tenant(&app).await;
    let hooks = json!({ "webhook": { "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"] } });
    let mut ids = Vec::new();
    for (key, name) in [(&a, "a1"), (&a, "a2"), (&b, "b1")] {
        let (s, c) = app
            .post(
                "/v1/connections",
                key,
                json!({ "provider": "trackstar", "name": name, "config": hooks }),
            )
            .await;
        assert_eq!(s, 201, "{c}");
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    syncguard::services::health::refresh(&app.app)
        .await
        .unwrap();
    let ids_of = |v: &Value| -> Vec<String> {
        v["connections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, platform) = app.get("/v1/health", PLATFORM_KEY).await;
    assert_eq!(platform["aggregate"]["total"], 3);
    let (_, mine) = app.get("/v1/health", &a).await;
    assert_eq!(
        (ids_of(&mine), &mine["aggregate"]["total"]),
        (vec![ids[0].clone(), ids[1].clone()], &json!(2))
    );
    let scoped = app
        .key_for(&ta, "viewer", Some(vec![ids[1].as_str()]))
        .await;
    let (_, one) = app.get("/v1/health", &scoped).await;
    assert_eq!(ids_of(&one), vec![ids[1].clone()]);
    assert_eq!(
        app.get(&format!("/v1/connections/{}/health", ids[0]), &scoped)
            .await
            .0,
        404
    );
    assert_eq!(
        app.get(&format!("/v1/connections/{}/health", ids[2]), &a)
            .await
            .0,
        404,
        "another tenant's"
    );
    let h = connection_health(&app, &b, &ids[2]).await;
    assert_eq!(
        (h["webhook_lag_s"].as_f64(), h["sync_lag_s"].as_f64()),
        (Some(0.0), None),
        "webhook-only: no sync lag"
    );
    assert_eq!(app.get("/v1/health", "sg_live_nope").await.0, 401);
    app.stop().await;
}

async fn health_answers_from_memory_when_the_store_is_gone(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        |_| {},
        std::sync::Arc::new(SystemClock),
        Handlers::builtin(),
    )
    .await;
    let (t, admin) = tenant(&app).await;
    let unseen = app.key_for(&t, "viewer", None).await;
    let (s, c) = app
        .post(
            "/v1/connections",
            &admin,
            json!({ "provider": "trackstar", "name": "brand_1" }),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap();
    syncguard::services::health::refresh(&app.app)
        .await
        .unwrap();
    let (s, before) = app.get("/v1/health", &admin).await;
    assert_eq!(
        (s, &before["aggregate"]["total"]),
        (200, &json!(1)),
        "{before}"
    );

    app.db.store.close().await;
    assert_eq!(
        app.get("/v1/jobs", &admin).await.0,
        503,
        "the store is gone"
    );
    for _ in 0..20 {
        let (s, now) = app.get("/v1/health", &admin).await;
        assert_eq!(s, 200, "{now}");
        assert_eq!(
            now["generated_at"], before["generated_at"],
            "the last snapshot, from memory"
        );
    }
    assert_eq!(connection_health(&app, &admin, id).await["id"], id);
    assert!(
        syncguard::services::health::refresh(&app.app)
            .await
            .is_err(),
        "a refresh fails and keeps the snapshot"
    );
    assert_eq!(app.get("/v1/health", &admin).await.0, 200);
    // A key this node never verified must still be checked against the store, which is gone.
    assert_eq!(app.get("/v1/health", &unseen).await.0, 503);
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("stops despite the outage");
}
