//! The API's access rules, from outside, over HTTP: authentication, tenant isolation, roles
//! and connection-scoped keys. Its conventions are in `api_conventions`.

use crate::helpers::*;
use serde_json::{json, Value};
use syncguard_core::class::ErrorClass;
use syncguard_store::queue::{Completion, JobState, NewJob, Outcome};
use syncguard_store::Backend;

crate::on_both_stores!(
    unauthenticated_requests_get_problems_with_request_ids,
    tenants_cannot_see_each_other_anywhere,
    roles_limit_actions_on_visible_objects,
    connection_scoped_keys_see_only_their_connections,
);

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A dead job of `tenant` on `connection`.
pub(crate) async fn dead_job(app: &TestApp, tenant: &str, connection: &str) -> i64 {
    let mut j = NewJob::new("never.handled", json!({}));
    j.tenant_id = Some(tenant.into());
    j.connection_id = Some(connection.into());
    j.run_at = Some(now() + 3_600_000);
    let id = app.db.store.enqueue(&j, now()).await.unwrap().id;
    // Claim it ourselves (it is not due for the app's workers) and kill it.
    let claimed = app
        .db
        .store
        .claim_jobs(
            "test",
            10,
            now() + 3_600_001,
            30_000,
            Some(&["never.handled".to_string()]),
        )
        .await
        .unwrap();
    let done: Vec<Completion> = claimed
        .iter()
        .map(|c| Completion {
            id: c.id,
            lease_id: None,
            outcome: Outcome::Dead {
                class: ErrorClass::Permanent,
                error: "boom".into(),
            },
        })
        .collect();
    app.db
        .store
        .complete_jobs("test", &done, now())
        .await
        .unwrap();
    id
}

async fn unauthenticated_requests_get_problems_with_request_ids(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let resp = app
        .client
        .get(format!("{}/v1/jobs", app.url))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["content-type"], "application/problem+json");
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        (body["status"].as_u64(), body["request_id"].as_str()),
        (Some(401), Some("req-123"))
    );
    assert!(
        body["type"].as_str().unwrap().contains("unauthorized")
            && body["title"].is_string()
            && body["detail"].is_string()
    );
    let resp = app
        .client
        .get(format!("{}/v1/jobs", app.url))
        .bearer_auth("sg_live_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let generated = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["request_id"],
        generated.as_str()
    );
    // A revoked key stops working at once.
    let (_, key) = app.tenant_with_key("acme", "admin").await;
    assert_eq!(app.get("/v1/jobs", &key).await.0, 200);
    let (_, keys) = app.get("/v1/keys", &key).await;
    let key_id = keys["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(app.delete(&format!("/v1/keys/{key_id}"), &key).await.0, 200);
    assert_eq!(app.get("/v1/jobs", &key).await.0, 401);
    app.stop().await;
}

async fn tenants_cannot_see_each_other_anywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ta, a) = app.tenant_with_key("a", "admin").await;
    let (_tb, b) = app.tenant_with_key("b", "admin").await;
    let (s, conn) = app.post("/v1/connections", &a, json!({ "provider": "trackstar", "name": "brand_1", "credentials": { "api_key": "k" }, "config": { "resources": [] } })).await;
    assert_eq!(s, 201, "{conn}");
    let conn_id = conn["id"].as_str().unwrap();
    let job = dead_job(&app, &ta, conn_id).await;
    let a_key_id = app.get("/v1/keys", &a).await.1["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();

    for path in [
        format!("/v1/jobs/{job}"),
        format!("/v1/connections/{conn_id}"),
    ] {
        let (s, body) = app.get(&path, &b).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    for path in [
        format!("/v1/jobs/{job}/retry"),
        format!("/v1/jobs/{job}/cancel"),
        format!("/v1/dead-letters/{job}/review"),
    ] {
        assert_eq!(app.post(&path, &b, json!({})).await.0, 404, "{path}");
    }
    assert_eq!(app.delete(&format!("/v1/keys/{a_key_id}"), &b).await.0, 404);
    let (s, r) = app
        .post("/v1/dead-letters/replay", &b, json!({ "ids": [job] }))
        .await;
    assert_eq!((s, r["matched"].as_u64()), (200, Some(0)));
    for list in ["/v1/jobs", "/v1/dead-letters", "/v1/connections"] {
        let (s, body) = app.get(list, &b).await;
        assert_eq!(
            (s, body["data"].as_array().map(Vec::len)),
            (200, Some(0)),
            "{list}: {body}"
        );
    }
    let (_, keys) = app.get("/v1/keys", &b).await;
    assert!(keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["id"] != a_key_id.as_str()));
    let (_, audit) = app.get("/v1/audit", &b).await;
    assert!(
        audit["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant_id"] != ta.as_str()),
        "{audit}"
    );
    assert_eq!(
        app.post(
            "/v1/keys",
            &b,
            json!({ "tenant_id": ta, "role": "admin", "name": "x" })
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.post(
            "/v1/connections",
            &b,
            json!({ "tenant_id": ta, "provider": "trackstar", "name": "x" })
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.get("/v1/tenants", &b).await.0,
        403,
        "tenants are for platform keys"
    );
    // Nothing of a's changed.
    let j = app
        .db
        .store
        .get_job(&syncguard_store::Scope::All, None, job)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (j.state, j.reviewed, j.replayed_as),
        (JobState::Dead, false, None)
    );
    assert_eq!(app.get("/v1/jobs", &a).await.0, 200);
    app.stop().await;
}

async fn roles_limit_actions_on_visible_objects(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (t, _admin) = app.tenant_with_key("acme", "admin").await;
    let viewer = app.key_for(&t, "viewer", None).await;
    let operator = app.key_for(&t, "operator", None).await;
    let job = dead_job(&app, &t, "con_x").await;
    assert_eq!(app.get(&format!("/v1/jobs/{job}"), &viewer).await.0, 200);
    assert_eq!(
        app.post("/v1/dead-letters/replay", &viewer, json!({ "ids": [job] }))
            .await
            .0,
        403,
        "a viewer cannot replay"
    );
    assert_eq!(
        app.post(
            &format!("/v1/dead-letters/{job}/review"),
            &viewer,
            json!({})
        )
        .await
        .0,
        403
    );
    assert_eq!(
        app.post(&format!("/v1/jobs/{job}/retry"), &viewer, json!({}))
            .await
            .0,
        403
    );
    assert_eq!(
        app.post(
            "/v1/keys",
            &operator,
            json!({ "role": "viewer", "name": "x" })
        )
        .await
        .0,
        403
    );
    assert_eq!(app.get("/v1/audit", &operator).await.0, 403);
    assert_eq!(
        app.post(
            "/v1/dead-letters/replay",
            &operator,
            json!({ "ids": [job] })
        )
        .await
        .0,
        403
    );
    let j = app
        .db
        .store
        .get_job(&syncguard_store::Scope::All, None, job)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (j.state, j.replayed_as),
        (JobState::Dead, None),
        "refused actions changed nothing"
    );
    let (s, retried) = app
        .post(&format!("/v1/jobs/{job}/retry"), &operator, json!({}))
        .await;
    assert_eq!(
        (s, retried["replayed_from"].as_i64()),
        (200, Some(job)),
        "an operator may retry"
    );
    app.stop().await;
}

async fn connection_scoped_keys_see_only_their_connections(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (t, admin) = app.tenant_with_key("acme", "admin").await;
    let mut ids = Vec::new();
    for name in ["brand_1", "brand_2"] {
        let (_, c) = app
            .post(
                "/v1/connections",
                &admin,
                json!({ "provider": "trackstar", "name": name }),
            )
            .await;
        ids.push(c["id"].as_str().unwrap().to_string());
    }
    let scoped = app
        .key_for(&t, "operator", Some(vec![ids[0].as_str()]))
        .await;
    let mine = dead_job(&app, &t, &ids[0]).await;
    let other = dead_job(&app, &t, &ids[1]).await;
    let (_, list) = app.get("/v1/dead-letters", &scoped).await;
    let seen: Vec<i64> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_i64().unwrap())
        .collect();
    assert_eq!(seen, vec![mine]);
    assert_eq!(app.get(&format!("/v1/jobs/{other}"), &scoped).await.0, 404);
    assert_eq!(
        app.get(&format!("/v1/connections/{}", ids[1]), &scoped)
            .await
            .0,
        404
    );
    assert_eq!(
        app.get("/v1/connections", &scoped).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.stop().await;
}
