use std::time::Duration;

use serde_json::json;

use crate::helpers::{mock, Api};

#[tokio::test]
async fn quick_calls_beyond_the_burst_get_429_and_count_as_violations() {
    let mock = mock(3).await;
    let api = Api::new(&mock);

    let mut limited = 0;
    for _ in 0..30 {
        let resp = api.wms("/wms/products", "token-a").send().await.unwrap();
        let h = resp.headers();
        for name in [
            "x-rate-limit-limit",
            "x-rate-limit-remaining",
            "x-rate-limit-reset",
        ] {
            assert!(h.contains_key(name), "{name} on every answer");
        }
        assert_eq!(h["x-rate-limit-limit"], "10");
        if resp.status() == 429 {
            limited += 1;
            let wait: f64 = h["x-rate-limit-retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!(wait > 0.0 && wait <= 0.2, "{wait}");
            assert_eq!(h["retry-after"], "1");
            assert_eq!(h["x-rate-limit-remaining"], "0");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "rate_limited");
        } else {
            assert_eq!(resp.status(), 200);
        }
    }
    assert!(
        limited >= 10,
        "30 calls in well under 2 s against 10/s burst 10: {limited} limited"
    );
    let stats = mock.stats();
    assert_eq!(stats.rate_limit_violations, limited);
    assert_eq!(stats.by_status["429"], limited);
    assert_eq!(stats.requests_total, 30);
    assert_eq!(stats.by_endpoint["GET /wms/products"], 30);

    // Another token has its own, full bucket.
    let resp = api.wms("/wms/products", "token-b").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-rate-limit-remaining"], "9");

    // Waiting for the hinted time is enough.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        api.wms("/wms/products", "token-a")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn the_rate_changes_at_run_time() {
    let mock = mock(1).await;
    let api = Api::new(&mock);
    api.control_post("/_mock/faults", json!({"rate_limit_rps": 0}))
        .await;
    for _ in 0..25 {
        assert_eq!(
            api.wms("/wms/orders", "t").send().await.unwrap().status(),
            200
        );
    }
    mock.state().set_rate_limit(1.0, Some(2));
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..4 {
            out.push(
                api.wms("/wms/orders", "fresh")
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        out
    };
    assert_eq!(statuses, [200, 200, 429, 429]);
    // Reset restores the configured 10/s.
    api.http
        .delete(api.url("/_mock/faults"))
        .send()
        .await
        .unwrap();
    assert_eq!(mock.state().rate_limit(), (10.0, 10));
}
