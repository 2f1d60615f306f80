//! Admin changes are validated whole, then written with their audit entry in one transaction:
//! a refused `PATCH` changes nothing, and every accepted mutating call leaves its entry.

use crate::api::dead_job;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use syncguard_store::queue::NewJob;
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(
    a_refused_patch_changes_nothing,
    every_mutating_call_leaves_its_audit_entry,
);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Everything a PATCH could touch: the answer, the sealed secrets, the audit entries.
async fn state_of(app: &TestApp, id: &str) -> (Value, Option<Vec<u8>>, usize) {
    let (_, conn) = app
        .get(&format!("/v1/connections/{id}"), PLATFORM_KEY)
        .await;
    let secrets = app
        .db
        .store
        .connection_secrets(id)
        .await
        .unwrap()
        .and_then(|s| s.credentials);
    let audit = app
        .db
        .store
        .list_audit(
            &Scope::All,
            Some(&[id.to_string()]),
            None,
            &syncguard_store::page::PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .unwrap()
        .items
        .len();
    (conn, secrets, audit)
}

async fn a_refused_patch_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let (s, conn) = app
        .post("/v1/connections", &admin, json!({ "provider": "trackstar", "name": "brand_1", "credentials": { "api_key": "k" }, "config": { "resources": [] } }))
        .await;
    assert_eq!(
        (s, conn["status"].as_str()),
        (201, Some("pending")),
        "{conn}"
    );
    let id = conn["id"].as_str().unwrap().to_string();
    let before = state_of(&app, &id).await;
    let patch = |body: Value| {
        let app = &app;
        let admin = admin.clone();
        let path = format!("/v1/connections/{id}");
        async move { send(app.req(Method::PATCH, &path, &admin).json(&body)).await }
    };
    let complete = json!({ "api_key": "k2", "access_token": "t2" });
    // A bad status alongside a valid config and credentials.
    let (s, answer) = patch(json!({ "status": "exploded", "config": { "sync_interval_s": 900 }, "credentials": complete })).await;
    assert_eq!(s, 422, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("status"));
    assert_eq!(state_of(&app, &id).await, before, "nothing changed");
    // Activation with credentials that lack a field: refused, and the credentials not kept.
    let (s, answer) =
        patch(json!({ "status": "active", "credentials": { "api_key": "k3" } })).await;
    assert_eq!(s, 422, "{answer}");
    assert!(answer["detail"].as_str().unwrap().contains("access_token"));
    assert_eq!(state_of(&app, &id).await, before, "nothing changed");
    // A bad config alongside new credentials.
    let (s, _) =
        patch(json!({ "config": { "sync_interval_s": 1 }, "credentials": complete })).await;
    assert_eq!(s, 422);
    assert_eq!(state_of(&app, &id).await, before, "nothing changed");

    // The same change without the fault goes through whole, with its entries.
    let (s, after) =
        patch(json!({ "config": { "sync_interval_s": 900 }, "credentials": complete })).await;
    assert_eq!(s, 200, "{after}");
    assert_eq!(
        (
            after["config"]["sync_interval_s"].as_i64(),
            after["status"].as_str()
        ),
        (Some(900), Some("active")),
        "complete credentials revive a pending connection"
    );
    let (_, secrets, entries) = state_of(&app, &id).await;
    assert_ne!(secrets, before.1);
    assert_eq!(
        entries,
        before.2 + 2,
        "connection.update and connection.resume"
    );
    app.stop().await;
}

async fn every_mutating_call_leaves_its_audit_entry(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, admin) = app.tenant_with_key("acme", "admin").await;
    let config = json!({ "resources": [], "webhook": { "allow_unsigned": true } });
    let (s, conn) = app
        .post("/v1/connections", &admin, json!({ "provider": "trackstar", "name": "brand_1", "credentials": { "api_key": "k" }, "config": config }))
        .await;
    assert_eq!(s, 201);
    let con = conn["id"].as_str().unwrap().to_string();
    let hook = json!({ "event_type": "order.created", "data": { "id": "o1", "updated_date": "2026-11-26T00:00:00.000Z" } });
    let resp = app
        .client
        .post(format!("{}/v1/webhooks/{con}", app.url))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let event = app.get("/v1/events", &admin).await.1["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (retry, review, replay) = (
        dead_job(&app, &tenant, &con).await,
        dead_job(&app, &tenant, &con).await,
        dead_job(&app, &tenant, &con).await,
    );
    let mut waiting = NewJob::new("never.handled", json!({}));
    waiting.tenant_id = Some(tenant.clone());
    waiting.connection_id = Some(con.clone());
    waiting.run_at = Some(now() + 3_600_000);
    let waiting = app.db.store.enqueue(&waiting, now()).await.unwrap().id;
    let (s, spare) = app
        .post(
            "/v1/keys",
            &admin,
            json!({ "role": "viewer", "name": "spare" }),
        )
        .await;
    assert_eq!(s, 201);
    let spare = spare["id"].as_str().unwrap().to_string();

    let cases: Vec<(&str, Method, String, Option<Value>, &str)> = vec![
        (
            PLATFORM_KEY,
            Method::POST,
            "/v1/tenants".into(),
            Some(json!({ "name": "globex" })),
            "tenant.create",
        ),
        (
            &admin,
            Method::POST,
            "/v1/keys".into(),
            Some(json!({ "role": "operator", "name": "ops" })),
            "key.create",
        ),
        (
            &admin,
            Method::DELETE,
            format!("/v1/keys/{spare}"),
            None,
            "key.revoke",
        ),
        (
            &admin,
            Method::POST,
            "/v1/connections".into(),
            Some(json!({ "provider": "trackstar", "name": "brand_2" })),
            "connection.create",
        ),
        (
            &admin,
            Method::PATCH,
            format!("/v1/connections/{con}"),
            Some(json!({ "config": { "sync_interval_s": 900 } })),
            "connection.update",
        ),
        (
            &admin,
            Method::PATCH,
            format!("/v1/connections/{con}"),
            Some(json!({ "status": "paused" })),
            "connection.pause",
        ),
        (
            &admin,
            Method::POST,
            format!("/v1/jobs/{retry}/retry"),
            Some(json!({})),
            "job.retry",
        ),
        (
            &admin,
            Method::POST,
            format!("/v1/jobs/{waiting}/cancel"),
            Some(json!({})),
            "job.cancel",
        ),
        (
            &admin,
            Method::POST,
            format!("/v1/dead-letters/{review}/review"),
            Some(json!({})),
            "dead_letter.review",
        ),
        (
            &admin,
            Method::POST,
            "/v1/dead-letters/replay".into(),
            Some(json!({ "ids": [replay] })),
            "dead_letter.replay",
        ),
        (
            &admin,
            Method::POST,
            "/v1/events/replay".into(),
            Some(json!({ "ids": [event] })),
            "event.replay",
        ),
        (
            &admin,
            Method::POST,
            format!("/v1/circuits/{con}:trackstar/force"),
            Some(json!({ "mode": "open" })),
            "circuit.force",
        ),
        (
            &admin,
            Method::DELETE,
            format!("/v1/connections/{con}"),
            None,
            "connection.disconnect",
        ),
    ];
    for (i, (key, method, path, body, action)) in cases.iter().enumerate() {
        let rid = format!("audit-case-{i}");
        let mut req = app
            .req(method.clone(), path, key)
            .header("x-request-id", &rid);
        if let Some(b) = body {
            req = req.json(b);
        }
        let (s, answer) = send(req).await;
        assert!((200..300).contains(&s), "{method} {path}: {s} {answer}");
        let (_, audit) = app
            .get(&format!("/v1/audit?action={action}"), PLATFORM_KEY)
            .await;
        let entry = audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["request_id"] == rid.as_str())
            .unwrap_or_else(|| panic!("no {action} entry for {method} {path}: {audit}"))
            .clone();
        assert!(entry["actor"].as_str().unwrap().starts_with("key_"));
        if path.contains(&con) && *action != "key.revoke" {
            assert_eq!(entry["connection_id"], con.as_str(), "{entry}");
        }
    }
    app.stop().await;
}
