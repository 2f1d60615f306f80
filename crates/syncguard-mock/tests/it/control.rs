use std::time::Duration;

use serde_json::json;
use syncguard_mock::Stats;

use crate::helpers::{mock, unlimited_mock, Api};

#[tokio::test]
async fn stats_have_the_pinned_shape_and_ignore_the_control_plane() {
    let mock = mock(2).await;
    let api = Api::new(&mock);
    api.wms("/wms/orders", "t").send().await.unwrap();
    api.http.get(api.url("/nowhere")).send().await.unwrap();
    let stats = api.control_get("/_mock/stats").await;
    for key in [
        "requests_total",
        "by_status",
        "by_endpoint",
        "rate_limit_violations",
        "writes_applied",
        "duplicate_writes",
        "webhooks_sent",
    ] {
        assert!(stats.get(key).is_some(), "{key}");
    }
    let stats: Stats = serde_json::from_value(stats).unwrap();
    assert_eq!(stats.requests_total, 2);
    assert_eq!(stats.by_status["200"], 1);
    assert_eq!(stats.by_status["404"], 1);
    assert_eq!(stats.by_endpoint["GET /wms/orders"], 1);
    assert_eq!(stats.by_endpoint["GET unmatched"], 1);
    assert_eq!(mock.stats(), stats);
}

#[tokio::test]
async fn records_of_unknown_resources_are_404() {
    let mock = mock(2).await;
    let api = Api::new(&mock);
    let resp = api
        .http
        .get(api.url("/_mock/records/returns"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let items = api.control_get("/_mock/records/inventory_item").await;
    assert_eq!(items["data"], json!([]));
}

#[tokio::test]
async fn mutation_driver_runs_at_a_rate_and_stops() {
    let mock = unlimited_mock(20).await;
    let api = Api::new(&mock);
    let answer = api
        .control_post("/_mock/mutate", json!({"rate_per_s": 100}))
        .await;
    assert_eq!(answer["rate_per_s"], 100.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.control_post("/_mock/mutate", json!({"rate_per_s": 0}))
        .await;
    let applied = mock.stats().mutations;
    assert!(
        (20..=80).contains(&applied),
        "about 50 in 0.5 s at 100/s, got {applied}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.stats().mutations, applied, "stopped");

    let bad = api
        .http
        .post(api.url("/_mock/mutate"))
        .json(&json!({"rate_per_s": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn serve_runs_on_a_given_listener_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(syncguard_mock::serve(listener, Default::default(), async {
        let _ = stopped.await;
    }));
    let resp = reqwest::get(format!("http://{addr}/_mock/stats"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
