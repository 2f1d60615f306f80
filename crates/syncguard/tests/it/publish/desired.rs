//! Desired state over HTTP: hashing, the three answers, debouncing, access and failures.

use super::*;
use reqwest::header::CONTENT_TYPE;
use std::time::Duration;
use syncguard_store::queue::JobState;
use syncguard_store::Backend;

crate::on_both_stores!(
    equal_states_hash_alike_whatever_their_order_and_whitespace,
    a_thousand_rapid_edits_become_one_provider_write,
    desired_state_is_scoped_to_the_tenant_and_needs_operator,
    a_validation_error_dead_letters_the_publish_at_once
);

async fn put_raw(app: &TestApp, key: &str, connection: &str, sku: &str, raw: &str) -> (u16, Value) {
    send(
        app.req(Method::PUT, &desired_path(connection, sku), key)
            .header(CONTENT_TYPE, "application/json")
            .body(raw.to_string()),
    )
    .await
}

async fn equal_states_hash_alike_whatever_their_order_and_whitespace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let (conn, keys) = ebay_connection(&app, &mock, json!({})).await;
    let op = &keys.operator;
    // RFC 8785: members sorted, no whitespace, 1.0 written as 1, "\u00e9" as "é".
    let a = r#"{"product":{"title":"Caf\u00e9 mug","aspects":{"size":["L"]}},"availability":{"shipToLocationAvailability":{"quantity":3}},"price":1.50}"#;
    let b = "{ \"price\" : 1.5,\n  \"availability\": {\"shipToLocationAvailability\": {\"quantity\": 3.0}},\n\t\"product\": {\"aspects\": {\"size\": [\"L\"]}, \"title\": \"Café mug\"} }";
    let (s, first) = put_raw(&app, op, &conn, "PUB-1", a).await;
    assert_eq!(
        (s, first["result"].as_str()),
        (202, Some("enqueued")),
        "{first}"
    );
    let value: Value = serde_json::from_str(a).unwrap();
    assert_eq!(first["hash"], hash_of(&value));
    let canonical = r#"{"availability":{"shipToLocationAvailability":{"quantity":3}},"price":1.5,"product":{"aspects":{"size":["L"]},"title":"Café mug"}}"#;
    assert_eq!(
        syncguard_core::canonical::canonicalize(&value).unwrap(),
        canonical
    );
    let (s, again) = put_raw(&app, op, &conn, "PUB-1", b).await;
    assert_eq!(
        (s, again["result"].as_str()),
        (200, Some("duplicate")),
        "{again}"
    );
    assert_eq!(
        (&again["hash"], &again["job_id"]),
        (&first["hash"], &first["job_id"])
    );
    let hash = first["hash"].as_str().unwrap();
    let d = published(&app.url, &keys.viewer, &conn, "PUB-1", hash).await;
    assert_eq!(d["hash"], hash);
    assert_eq!(d["data"], value);
    for field in ["data", "hash", "last_published_hash", "status"] {
        assert!(d.get(field).is_some(), "{field} in {d}");
    }
    let (s, after) = put_raw(&app, op, &conn, "PUB-1", b).await;
    assert_eq!(
        (s, after["result"].as_str()),
        (200, Some("unchanged")),
        "{after}"
    );
    assert_eq!(after["job_id"], Value::Null);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = mock.stats();
    assert_eq!((stats.writes_applied, stats.duplicate_writes), (1, 0));
    mock.shutdown().await;
    app.stop().await;
}

async fn a_thousand_rapid_edits_become_one_provider_write(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    // The default debounce window (2 s).
    let (conn, keys) = ebay_connection(&app, &mock, json!({"publish_debounce_ms": null})).await;
    let client = reqwest::Client::new();
    let mut last = Value::Null;
    for i in 0..1_000u64 {
        last = item("Mug", i);
        let (s, a) = send(
            client
                .request(
                    Method::PUT,
                    format!("{}{}", app.url, desired_path(&conn, "BURST-1")),
                )
                .bearer_auth(&keys.operator)
                .json(&last),
        )
        .await;
        assert_eq!(
            (s, a["result"].as_str()),
            (202, Some("enqueued")),
            "edit {i}: {a}"
        );
    }
    let hash = hash_of(&last);
    published(&app.url, &keys.viewer, &conn, "BURST-1", &hash).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = mock.stats();
    assert_eq!(
        (stats.writes_applied, stats.duplicate_writes),
        (1, 0),
        "one provider write for the whole burst"
    );
    assert_eq!(mock_item(&mock, "BURST-1", &last), Some(last.clone()));
    assert_eq!(
        mock.state().inventory_item("BURST-1").unwrap()["availability"]
            ["shipToLocationAvailability"]["quantity"],
        999
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn desired_state_is_scoped_to_the_tenant_and_needs_operator(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let (conn, keys) = ebay_connection(&app, &mock, json!({})).await;
    let (_, other) = app.tenant_with_key("other", "admin").await;
    let body = item("Mug", 1);
    let put = |key: String, sku: &'static str, body: Value| {
        let (url, conn) = (app.url.clone(), conn.clone());
        async move { put_desired(&url, &key, &conn, sku, &body).await }
    };
    assert_eq!(put(keys.viewer.clone(), "ACL-1", body.clone()).await.0, 403);
    assert_eq!(put(other.clone(), "ACL-1", body.clone()).await.0, 404);
    let (s, p) = put(keys.operator.clone(), "ACL-1", json!([1, 2])).await;
    assert_eq!(s, 422, "{p}");
    let (s, p) = send(
        app.req(
            Method::PUT,
            &format!("/v1/connections/{conn}/desired/orders/X"),
            &keys.operator,
        )
        .json(&body),
    )
    .await;
    assert_eq!(s, 422, "{p}");
    assert!(p["detail"].as_str().unwrap().contains("resource"), "{p}");
    assert_eq!(
        put(keys.operator.clone(), "ACL-1", body.clone()).await.0,
        202
    );
    let path = desired_path(&conn, "ACL-1");
    assert_eq!(app.get(&path, &keys.viewer).await.0, 200);
    assert_eq!(app.get(&path, &other).await.0, 404);
    assert_eq!(
        app.get(&desired_path(&conn, "NONE"), &keys.viewer).await.0,
        404
    );
    let reconcile = format!("/v1/connections/{conn}/reconcile");
    assert_eq!(app.post(&reconcile, &keys.viewer, json!({})).await.0, 403);
    assert_eq!(app.post(&reconcile, &other, json!({})).await.0, 404);
    let (s, r) = app.post(&reconcile, &keys.operator, json!({})).await;
    assert_eq!(s, 202, "{r}");
    assert!(r["job_id"].is_i64());
    mock.shutdown().await;
    app.stop().await;
}

async fn a_validation_error_dead_letters_the_publish_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let (conn, keys) = ebay_connection(&app, &mock, json!({})).await;
    // The mock (like eBay) refuses an item without a product object.
    let bad = json!({"product": "mug", "condition": "NEW"});
    let (s, a) = put_desired(&app.url, &keys.operator, &conn, "BAD-1", &bad).await;
    assert_eq!(s, 202, "{a}");
    let job = job_in_state(
        &app.app.store,
        a["job_id"].as_i64().unwrap(),
        JobState::Dead,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(job.attempts, 1, "dead-lettered at once");
    assert_eq!(
        job.error_class,
        Some(syncguard_core::class::ErrorClass::Permanent)
    );
    let (_, d) = app.get(&desired_path(&conn, "BAD-1"), &keys.viewer).await;
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["last_published_hash"], Value::Null);
    assert!(d["last_error"].as_str().unwrap().contains("400"), "{d}");
    assert_eq!(mock.stats().writes_applied, 0);
    // A corrected state goes through.
    let good = item("Mug", 2);
    let (s, _) = put_desired(&app.url, &keys.operator, &conn, "BAD-1", &good).await;
    assert_eq!(s, 202);
    let d = published(&app.url, &keys.viewer, &conn, "BAD-1", &hash_of(&good)).await;
    assert_eq!(d["last_error"], Value::Null);
    mock.shutdown().await;
    app.stop().await;
}
