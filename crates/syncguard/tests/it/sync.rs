//! Sync, the connection lifecycle and the change feed, from outside, on both stores.
//!
//! - this file: shared helpers; link flow, API shapes, manual syncs, refetch.
//! - `cursors`: rows without a cursor field; the overlap and the high-water mark.
//! - `convergence`: 10 000 records under faults converge, one change per real change.
//! - `resume`: `kill -9` mid-backfill resumes from the checkpoint.
//! - `lifecycle`: pause stops scheduling; disconnect stops work and erases credentials.

mod convergence;
mod cursors;
mod lifecycle;
mod resume;

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use syncguard::app::Handlers;
use syncguard::clock::SystemClock;
use syncguard_core::canonical::content_hash;
use syncguard_mock::{MockConfig, MockHandle};
use syncguard_store::page::PageRequest;
use syncguard_store::queue::NewJob;
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(
    a_link_flow_connection_backfills_and_the_api_shows_it,
    manual_syncs_are_for_operators_on_active_connections,
    refetch_reads_one_object_or_marks_it_deleted,
);

/// An app whose failed jobs retry within a fraction of a second, so faults cost little time.
pub async fn quick_retries(backend: Backend) -> TestApp {
    TestApp::spawn_with(
        backend,
        |c| {
            c.queue.retry_base_ms = 100;
            c.queue.retry_cap_ms = 1_000;
            c.queue.max_attempts = 50;
        },
        Arc::new(SystemClock),
        Handlers::builtin(),
    )
    .await
}

pub async fn mock(records: usize) -> MockHandle {
    syncguard_mock::spawn(MockConfig {
        records,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// A tenant with an admin key; returns (tenant id, key).
pub async fn tenant(app: &TestApp) -> (String, String) {
    app.tenant_with_key(&format!("t{}", uuid::Uuid::new_v4().simple()), "admin")
        .await
}

/// A Trackstar connection to the mock with complete credentials (which starts its backfill).
pub async fn trackstar(app: &TestApp, key: &str, mock: &MockHandle, mut config: Value) -> String {
    config["base_url"] = json!(mock.base_url);
    let body = json!({
        "provider": "trackstar", "name": format!("brand_{}", uuid::Uuid::new_v4().simple()),
        "credentials": { "api_key": "tsk_test", "access_token": format!("tat_{}", uuid::Uuid::new_v4().simple()) },
        "config": config,
    });
    let (s, c) = app.post("/v1/connections", key, body).await;
    assert_eq!((s, c["status"].as_str()), (201, Some("active")), "{c}");
    c["id"].as_str().unwrap().to_string()
}

pub async fn checkpoints(app: &TestApp, key: &str, conn: &str) -> Vec<Value> {
    let (s, v) = app
        .get(&format!("/v1/connections/{conn}/checkpoints"), key)
        .await;
    assert_eq!(s, 200, "{v}");
    v["data"].as_array().unwrap().clone()
}

/// Waits until every resource's backfill is done and no run is in progress.
pub async fn backfilled(app: &TestApp, key: &str, conn: &str, timeout: Duration) -> Vec<Value> {
    eventually(timeout, "the backfill", || async {
        let cps = checkpoints(app, key, conn).await;
        cps.iter()
            .all(|c| c["backfill_done"] == true && c["run"].is_null())
            .then_some(cps)
    })
    .await
}

/// Waits until every resource of `before` completed a run after it.
pub async fn synced_after(
    app: &TestApp,
    key: &str,
    conn: &str,
    before: &[Value],
    timeout: Duration,
) -> Vec<Value> {
    eventually(timeout, "a sync of every resource", || async {
        let cps = checkpoints(app, key, conn).await;
        let done = before.iter().all(|b| {
            cps.iter().any(|c| {
                b["resource"] == c["resource"]
                    && c["run"].is_null()
                    && b["last_success_at"] != c["last_success_at"]
            })
        });
        done.then_some(cps)
    })
    .await
}

/// The live (not deleted) records of a resource, id → hash.
pub async fn local(app: &TestApp, conn: &str, resource: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut page = PageRequest {
        after: None,
        limit: 500,
    };
    loop {
        let p = app
            .db
            .store
            .list_records(&Scope::All, conn, resource, &page)
            .await
            .unwrap();
        out.extend(
            p.items
                .into_iter()
                .filter(|r| !r.deleted)
                .map(|r| (r.external_id, r.hash)),
        );
        match p.next_cursor {
            Some(c) => page.after = Some(c),
            None => return out,
        }
    }
}

/// The provider's objects of a resource, id → content hash.
pub fn truth(mock: &MockHandle, resource: &str) -> BTreeMap<String, String> {
    mock.state()
        .records(resource)
        .unwrap()
        .iter()
        .map(|o| (o["id"].as_str().unwrap().to_string(), content_hash(o)))
        .collect()
}

pub const RESOURCES: [&str; 4] = ["inbound-shipments", "inventory", "orders", "products"];

async fn a_link_flow_connection_backfills_and_the_api_shows_it(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin) = tenant(&app).await;
    let mock = mock(300).await;
    let config = json!({ "base_url": mock.base_url });
    // No account key: the flow cannot start.
    let (s, e) = app
        .post(
            "/v1/connections/link-token",
            &admin,
            json!({ "provider": "trackstar", "credentials": {}, "config": config }),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .contains("credentials.api_key"),
        "{e}"
    );
    let (s, e) = app
        .post(
            "/v1/connections/link-token",
            &admin,
            json!({ "provider": "github", "credentials": {"api_key": "k"} }),
        )
        .await;
    assert_eq!(s, 422, "{e}");
    let account = json!({ "api_key": "tsk_account" });
    let (s, lt) = app
        .post(
            "/v1/connections/link-token",
            &admin,
            json!({ "provider": "trackstar", "credentials": account, "config": config }),
        )
        .await;
    assert_eq!(s, 201, "{lt}");
    assert!(lt["link_token"].as_str().unwrap().starts_with("link_"));
    // A code the provider refuses is named.
    let body = |code: &str| json!({ "provider": "trackstar", "name": format!("b_{code}"), "auth_code": code, "credentials": account, "config": config });
    let (s, e) = app.post("/v1/connections", &admin, body("bogus")).await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .starts_with("field `auth_code`"),
        "{e}"
    );
    let (s, c) = app
        .post("/v1/connections", &admin, body("code_widget_1"))
        .await;
    assert_eq!(
        (s, c["status"].as_str(), c["has_credentials"].as_bool()),
        (201, Some("active"), Some(true)),
        "{c}"
    );
    assert!(
        !c.to_string().contains("tsk_account"),
        "no secret in the answer"
    );
    let id = c["id"].as_str().unwrap();
    // The exchange yielded the access token: the backfill runs with it.
    let cps = backfilled(&app, &admin, id, Duration::from_secs(60)).await;
    let names: Vec<&str> = cps
        .iter()
        .map(|c| c["resource"].as_str().unwrap())
        .collect();
    assert_eq!(names, RESOURCES);
    for c in &cps {
        for field in [
            "resource",
            "cursor",
            "last_sync_at",
            "last_success_at",
            "last_error",
            "backfill_done",
        ] {
            assert!(c.get(field).is_some(), "checkpoint lacks {field}: {c}");
        }
        assert!(c["cursor"].is_string() && c["last_error"].is_null(), "{c}");
    }
    for r in RESOURCES {
        assert_eq!(local(&app, id, r).await, truth(&mock, r), "{r}");
    }
    let (s, page) = app
        .get(
            &format!("/v1/connections/{id}/records/orders?limit=2"),
            &admin,
        )
        .await;
    assert_eq!(
        (s, page["data"].as_array().unwrap().len()),
        (200, 2),
        "{page}"
    );
    let rec = &page["data"][0];
    for field in [
        "external_id",
        "hash",
        "data",
        "remote_updated_at",
        "synced_at",
        "deleted",
    ] {
        assert!(rec.get(field).is_some(), "record lacks {field}: {rec}");
    }
    let ext = rec["external_id"].as_str().unwrap();
    let (s, one) = app
        .get(
            &format!("/v1/connections/{id}/records/orders/{ext}"),
            &admin,
        )
        .await;
    assert_eq!((s, &one["hash"]), (200, &rec["hash"]));
    assert_eq!(
        app.get(&format!("/v1/connections/{id}/records/shoes"), &admin)
            .await
            .0,
        422
    );
    assert_eq!(
        app.get(&format!("/v1/connections/{id}/records/orders/nope"), &admin)
            .await
            .0,
        404
    );
    let (s, feed) = app
        .get(&format!("/v1/changes?connection_id={id}&limit=500"), &admin)
        .await;
    assert_eq!(s, 200);
    let item = &feed["data"][0];
    for field in [
        "seq",
        "connection_id",
        "resource",
        "external_id",
        "kind",
        "hash",
        "at",
    ] {
        assert!(item.get(field).is_some(), "change lacks {field}: {item}");
    }
    assert!(
        feed["next_cursor"].is_string(),
        "a full page says there may be more"
    );
    let (_, next) = app
        .get(
            &format!(
                "/v1/changes?cursor={}&limit=500",
                feed["next_cursor"].as_str().unwrap()
            ),
            &admin,
        )
        .await;
    assert!(next["data"][0]["seq"].as_i64() > feed["data"][499]["seq"].as_i64());
    // Other tenants see neither the connection's data nor its feed.
    let (_, other) = tenant(&app).await;
    assert_eq!(
        app.get(&format!("/v1/connections/{id}/checkpoints"), &other)
            .await
            .0,
        404
    );
    assert_eq!(
        app.get(&format!("/v1/changes?connection_id={id}"), &other)
            .await
            .0,
        404
    );
    assert_eq!(app.get("/v1/changes", &other).await.1["data"], json!([]));
    let (_, audit) = app.get("/v1/audit", &admin).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"connection.link_token") && actions.contains(&"connection.create"),
        "{actions:?}"
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn manual_syncs_are_for_operators_on_active_connections(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (t, admin) = tenant(&app).await;
    let mock = mock(50).await;
    let id = trackstar(
        &app,
        &admin,
        &mock,
        json!({ "resources": ["orders", "products"] }),
    )
    .await;
    let cps = backfilled(&app, &admin, &id, Duration::from_secs(30)).await;
    assert_eq!(cps.len(), 2, "only the configured resources");
    let viewer = app.key_for(&t, "viewer", None).await;
    let operator = app.key_for(&t, "operator", None).await;
    let path = format!("/v1/connections/{id}/sync");
    assert_eq!(app.post(&path, &viewer, json!({})).await.0, 403);
    let (s, e) = app
        .post(&path, &operator, json!({ "resources": ["inventory"] }))
        .await;
    assert_eq!(s, 422, "{e}");
    let (s, r) = app
        .post(
            &path,
            &operator,
            json!({ "resources": ["orders"], "full": true }),
        )
        .await;
    assert_eq!(s, 202, "{r}");
    assert_eq!(r["jobs"][0]["resource"], "orders");
    let after = synced_after(&app, &admin, &id, &cps[0..1], Duration::from_secs(30)).await;
    assert_eq!(
        after[0]["items_total"].as_i64(),
        Some(2 * cps[0]["items_total"].as_i64().unwrap()),
        "a full listing again"
    );
    assert_eq!(
        patch(&app, &admin, &id, json!({"status": "paused"}))
            .await
            .0,
        200
    );
    assert_eq!(
        app.post(&path, &operator, json!({})).await.0,
        409,
        "paused connections do not sync"
    );
    assert_eq!(
        app.post("/v1/connections/con_nope/sync", &operator, json!({}))
            .await
            .0,
        404
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn refetch_reads_one_object_or_marks_it_deleted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (t, admin) = tenant(&app).await;
    let mock = mock(10).await;
    let ms = mock.state();
    ms.set_inventory_item(
        "SKU-1",
        json!({"sku": "SKU-1", "availability": {"quantity": 3}}),
    );
    let body = json!({ "provider": "ebay", "name": "shop", "credentials": {"client_id": "c", "client_secret": "s"},
        "config": {"base_url": mock.base_url} });
    let (s, c) = app.post("/v1/connections", &admin, body).await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();
    backfilled(&app, &admin, &id, Duration::from_secs(30)).await;
    let refetch = |sku: &str| {
        let mut j = NewJob::new(
            "sync.refetch",
            json!({"connection_id": id, "resource": "inventory_item", "external_id": sku}),
        );
        j.tenant_id = Some(t.clone());
        j.connection_id = Some(id.clone());
        j
    };
    let get = |sku: &'static str| {
        let (app, id) = (&app, id.clone());
        async move {
            app.db
                .store
                .get_record(&Scope::All, &id, "inventory_item", sku)
                .await
                .unwrap()
        }
    };
    ms.set_inventory_item(
        "SKU-1",
        json!({"sku": "SKU-1", "availability": {"quantity": 7}}),
    );
    let j = app
        .db
        .store
        .enqueue(&refetch("SKU-1"), now_ms())
        .await
        .unwrap()
        .id;
    job_in_state(
        &app.db.store,
        j,
        syncguard_store::queue::JobState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    let r = get("SKU-1").await.unwrap();
    assert_eq!(
        (r.data["availability"]["quantity"].as_i64(), r.deleted),
        (Some(7), false)
    );
    ms.remove_inventory_item("SKU-1");
    let j = app
        .db
        .store
        .enqueue(&refetch("SKU-1"), now_ms())
        .await
        .unwrap()
        .id;
    job_in_state(
        &app.db.store,
        j,
        syncguard_store::queue::JobState::Succeeded,
        Duration::from_secs(20),
    )
    .await;
    assert!(get("SKU-1").await.unwrap().deleted, "a 404 is a deletion");
    let feed = app
        .db
        .store
        .list_changes(&Scope::All, None, Some(&id), 0, 100)
        .await
        .unwrap();
    let kinds: Vec<(&str, &str)> = feed
        .iter()
        .map(|c| (c.kind.as_str(), c.source.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("created", "sync"),
            ("updated", "refetch"),
            ("deleted", "refetch")
        ]
    );
    mock.shutdown().await;
    app.stop().await;
}

pub async fn patch(app: &TestApp, key: &str, conn: &str, body: Value) -> (u16, Value) {
    send(
        app.req(
            reqwest::Method::PATCH,
            &format!("/v1/connections/{conn}"),
            key,
        )
        .json(&body),
    )
    .await
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
