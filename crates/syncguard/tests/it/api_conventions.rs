//! The API's conventions, from outside, over HTTP: input validation, idempotency keys,
//! pagination, answers during a store outage, the OpenAPI document, and unsigned webhooks.

use crate::api::now;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use syncguard_store::Backend;

crate::on_both_stores!(
    bad_input_is_refused_and_changes_nothing,
    idempotency_keys_replay_refuse_and_conflict,
    pagination_walks_every_item_once,
    store_outage_answers_503_and_livez_stays_up,
    openapi_document_matches_the_server,
    unsigned_webhooks_are_for_development_only,
);

async fn bad_input_is_refused_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let url = format!("{}/v1/tenants", app.url);
    let c = &app.client;
    let check = |resp: reqwest::Response, status: u16, needle: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{needle:?} not in {body}"
        );
    };
    check(
        c.post(&url)
            .bearer_auth(PLATFORM_KEY)
            .header("content-type", "text/plain")
            .body("name=x")
            .send()
            .await
            .unwrap(),
        415,
        "application/json",
    )
    .await;
    check(
        c.post(&url)
            .bearer_auth(PLATFORM_KEY)
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap(),
        400,
        "malformed JSON",
    )
    .await;
    check(
        c.post(&url)
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
        422,
        "name",
    )
    .await;
    check(
        c.post(&url)
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "name": 7 }))
            .send()
            .await
            .unwrap(),
        422,
        "name",
    )
    .await;
    check(
        c.post(&url)
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "name": "x", "extra": 1 }))
            .send()
            .await
            .unwrap(),
        422,
        "extra",
    )
    .await;
    check(
        app.req(Method::POST, "/v1/keys", PLATFORM_KEY)
            .json(&json!({ "tenant_id": "ten_x", "role": "root", "name": "k" }))
            .send()
            .await
            .unwrap(),
        422,
        "role",
    )
    .await;
    let big = "x".repeat(300 * 1024);
    check(
        c.post(&url)
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "name": big }))
            .send()
            .await
            .unwrap(),
        413,
        "limit",
    )
    .await;
    // No Content-Length: a chunked body that never ends is cut off at the limit and answered.
    let status_line = tokio::time::timeout(
        Duration::from_secs(10),
        endless_chunked_post(
            &app.url,
            "/v1/tenants",
            &format!("authorization: Bearer {PLATFORM_KEY}\r\n"),
        ),
    )
    .await
    .expect("answered without reading the whole body");
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let bad_gets = [
        ("/v1/jobs?limit=0", 422, "limit"),
        ("/v1/jobs?cursor=%25%25", 400, "cursor"),
        ("/v1/jobs?state=exploded", 422, "state"),
        ("/v1/jobs/abc", 422, "path parameter"),
        ("/v1/nothing-here", 404, "route"),
    ];
    for (path, status, needle) in bad_gets {
        check(
            app.req(Method::GET, path, PLATFORM_KEY)
                .send()
                .await
                .unwrap(),
            status,
            needle,
        )
        .await;
    }
    let (s, list) = app.get("/v1/tenants", PLATFORM_KEY).await;
    assert_eq!(
        (s, list["data"].as_array().unwrap().len()),
        (200, 0),
        "no tenant was half-created"
    );
    app.stop().await;
}

async fn idempotency_keys_replay_refuse_and_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let post = |name: &str, key: &str| {
        app.req(Method::POST, "/v1/tenants", PLATFORM_KEY)
            .header("idempotency-key", key)
            .json(&json!({ "name": name }))
    };
    let first = post("acme", "k-1").send().await.unwrap();
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = post("acme", "k-1").send().await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        first,
        "the stored response, byte for byte"
    );
    assert_eq!(
        app.get("/v1/tenants", PLATFORM_KEY).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "one tenant"
    );
    assert_eq!(
        post("globex", "k-1").send().await.unwrap().status(),
        422,
        "same key, different body"
    );
    // A request still in flight with the key: the claim is taken, no response stored yet.
    // Records are bound to the authenticated key's id.
    let platform = app.db.store.authenticate(PLATFORM_KEY).await.unwrap();
    let scope = platform.expect("the platform key is live").id;
    let body = serde_json::to_vec(&json!({ "name": "initech" })).unwrap();
    let mut material = b"POST /v1/tenants\n".to_vec();
    material.extend_from_slice(&body);
    let fingerprint = syncguard_core::ids::sha256_hex(&material);
    app.db
        .store
        .claim_idempotency_key(&scope, "k-2", &fingerprint, now())
        .await
        .unwrap();
    assert_eq!(post("initech", "k-2").send().await.unwrap().status(), 409);
    // Errors are replayed too (a 4xx is an answer); a different caller's key is its own.
    assert_eq!(
        post("acme", "k-3").send().await.unwrap().status(),
        409,
        "name taken"
    );
    assert_eq!(
        app.get("/v1/tenants", PLATFORM_KEY).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}

async fn pagination_walks_every_item_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for i in 0..7 {
        app.post(
            "/v1/tenants",
            PLATFORM_KEY,
            json!({ "name": format!("t{i}") }),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants?limit=3&cursor={c}"),
            None => "/v1/tenants?limit=3".to_string(),
        };
        let (s, page) = app.get(&path, PLATFORM_KEY).await;
        assert_eq!(s, 200);
        let items = page["data"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (7, 7));
    app.stop().await;
}

async fn store_outage_answers_503_and_livez_stays_up(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.db.store.close().await;
    let resp = app
        .req(Method::GET, "/v1/jobs", PLATFORM_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(
        app.client
            .get(format!("{}/livez", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        503
    );
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("stops despite the outage");
}

async fn openapi_document_matches_the_server(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (s, doc) = app.get("/v1/openapi.json", PLATFORM_KEY).await;
    assert_eq!(s, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/v1/tenants",
        "/v1/keys",
        "/v1/keys/{id}",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/retry",
        "/v1/jobs/{id}/cancel",
        "/v1/dead-letters",
        "/v1/dead-letters/replay",
        "/v1/dead-letters/{id}/review",
        "/v1/audit",
        "/livez",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            paths.contains_key(expected),
            "{expected} missing from the document"
        );
    }
    // Every documented operation is served: without a key it is refused (401), never unrouted.
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "1")
                .replace("{key}", "k")
                .replace("{connection_id}", "con_x")
                .replace("{resource}", "orders")
                .replace("{external_id}", "x");
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let resp = app
                .client
                .request(m.clone(), format!("{}{concrete}", app.url))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            assert!(
                status != 405 && !body.contains("no such route"),
                "{method} {path} is documented but not served ({status})"
            );
        }
    }
    app.stop().await;
}

async fn unsigned_webhooks_are_for_development_only(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let config = json!({ "resources": [], "webhook": { "allow_unsigned": true } });
    let (s, conn) = app
        .post(
            "/v1/connections",
            &admin,
            json!({ "provider": "trackstar", "name": "dev", "config": config }),
        )
        .await;
    assert_eq!(s, 201, "{conn}");
    let url = format!("{}/v1/webhooks/{}", app.url, conn["id"].as_str().unwrap());
    let body = json!({ "event_type": "order.created", "data": { "id": "o1", "updated_date": "2026-11-26T00:00:00.000Z" } });
    let resp = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 202, "accepted unsigned outside production");
    let (s, bad) = app
        .post("/v1/connections", &admin, json!({ "provider": "trackstar", "name": "bad", "config": { "webhook": { "allow_unsigned": "yes" } } }))
        .await;
    assert_eq!(
        (
            s,
            bad["detail"].as_str().unwrap().contains("allow_unsigned")
        ),
        (422, true)
    );
    app.stop().await;

    let prod = TestApp::spawn_with(
        backend,
        |c| c.environment = syncguard::config::Environment::Production,
        std::sync::Arc::new(syncguard::clock::SystemClock),
        syncguard::app::Handlers::builtin(),
    )
    .await;
    let (_, admin) = prod.tenant_with_key("acme", "admin").await;
    let (s, refused) = prod
        .post(
            "/v1/connections",
            &admin,
            json!({ "provider": "trackstar", "name": "dev", "config": config }),
        )
        .await;
    assert_eq!(s, 422, "{refused}");
    assert!(refused["detail"].as_str().unwrap().contains("production"));
    prod.stop().await;
}
