use std::time::{Duration, Instant};

use serde_json::{json, Value};
use syncguard_mock::state::DRIFT_FIELD;

use crate::helpers::{unlimited_mock, Api};

#[tokio::test]
async fn error_rate_one_fails_every_call_until_reset() {
    let mock = unlimited_mock(3).await;
    let api = Api::new(&mock);
    let view = api
        .control_post("/_mock/faults", json!({"error_rate": 1.0}))
        .await;
    assert_eq!(view["error_rate"], 1.0);
    assert_eq!(view["error_status"], 500);

    for _ in 0..5 {
        assert_eq!(
            api.wms("/wms/orders", "t").send().await.unwrap().status(),
            500
        );
    }
    // eBay routes answer in eBay's error style.
    let token_resp = api
        .http
        .post(api.url("/identity/v1/oauth2/token"))
        .basic_auth("id", Some("secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(token_resp.status(), 500);
    // The control plane is never faulted.
    assert!(api.control_get("/_mock/records/orders").await["data"].is_array());

    api.control_post("/_mock/faults", json!({"error_status": 502}))
        .await;
    assert_eq!(
        api.wms("/wms/orders", "t").send().await.unwrap().status(),
        502
    );

    api.http
        .delete(api.url("/_mock/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.wms("/wms/orders", "t").send().await.unwrap().status(),
        200
    );
    let stats = mock.stats();
    assert_eq!(stats.faults_injected, 7);
    assert_eq!(stats.by_status["500"], 6);
}

#[tokio::test]
async fn outage_answers_503_for_its_window() {
    let mock = unlimited_mock(3).await;
    let api = Api::new(&mock);
    api.control_post("/_mock/faults", json!({"outage_s": 0.4}))
        .await;
    let resp = api.wms("/wms/orders", "t").send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    // An outage hits unauthenticated calls too.
    let resp = api.http.get(api.url("/wms/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 503);

    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        api.wms("/wms/orders", "t").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn storm_answers_429_without_counting_violations() {
    let mock = unlimited_mock(3).await;
    let api = Api::new(&mock);
    api.control_post("/_mock/faults", json!({"rate_limit_storm_s": 5}))
        .await;
    let resp = api.wms("/wms/orders", "t").send().await.unwrap();
    assert_eq!(resp.status(), 429);
    let wait: f64 = resp.headers()["x-rate-limit-retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 4.0 && wait <= 5.0);
    assert_eq!(resp.headers()["retry-after"], "5");
    assert_eq!(mock.stats().rate_limit_violations, 0);
    api.control_post("/_mock/faults", json!({"rate_limit_storm_s": 0}))
        .await;
    assert_eq!(
        api.wms("/wms/orders", "t").send().await.unwrap().status(),
        200
    );
}

#[tokio::test]
async fn latency_timeouts_and_schema_drift() {
    let mock = unlimited_mock(3).await;
    let api = Api::new(&mock);

    api.control_post("/_mock/faults", json!({"latency_ms": 150}))
        .await;
    let started = Instant::now();
    assert_eq!(
        api.wms("/wms/orders", "t").send().await.unwrap().status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(150));

    api.control_post(
        "/_mock/faults",
        json!({"latency_ms": 0, "timeout_rate": 1.0, "timeout_ms": 200}),
    )
    .await;
    let started = Instant::now();
    assert_eq!(
        api.wms("/wms/orders", "t").send().await.unwrap().status(),
        504
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    api.control_post(
        "/_mock/faults",
        json!({"timeout_rate": 0, "schema_drift": true}),
    )
    .await;
    let page = api
        .wms("/wms/orders", "t")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert!(page["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o[DRIFT_FIELD].is_string() && o["id"].is_string()));

    // Unknown knobs and out-of-range values are refused.
    for bad in [
        json!({"eror_rate": 1}),
        json!({"error_rate": 2}),
        json!({"error_status": 200}),
    ] {
        let resp = api
            .http
            .post(api.url("/_mock/faults"))
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn shutdown_releases_held_requests() {
    let mock = unlimited_mock(1).await;
    let api = Api::new(&mock);
    mock.state()
        .set_faults(&syncguard_mock::FaultsPatch {
            timeout_rate: Some(1.0),
            ..Default::default()
        })
        .unwrap();
    let held = tokio::spawn(api.wms("/wms/orders", "t").send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), mock.shutdown())
        .await
        .expect("shutdown does not wait 30 s");
    assert!(started.elapsed() < Duration::from_secs(5));
    let answer = held.await.unwrap();
    assert!(answer.map(|r| r.status() == 503).unwrap_or(true));
}
