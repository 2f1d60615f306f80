//! A connection-scoped key against another connection of its own tenant, on every endpoint:
//! 404 for what it may not see, 403 for what it may not do, and lists without the rest.

use crate::api::dead_job;
use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use syncguard_store::queue::JobState;
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(connection_scoped_keys_are_confined_on_every_endpoint);

/// Creates a key through the platform key; returns (id, clear key).
async fn key(
    app: &TestApp,
    tenant: &str,
    role: &str,
    connections: Option<Vec<&str>>,
) -> (String, String) {
    let mut body = json!({ "tenant_id": tenant, "role": role, "name": format!("{role} key") });
    if let Some(c) = connections {
        body["connections"] = json!(c);
    }
    let (s, k) = app.post("/v1/keys", PLATFORM_KEY, body).await;
    assert_eq!(s, 201, "{k}");
    (
        k["id"].as_str().unwrap().to_string(),
        k["key"].as_str().unwrap().to_string(),
    )
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|i| match &i["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

async fn connection_scoped_keys_are_confined_on_every_endpoint(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, unrestricted) = app.tenant_with_key("acme", "admin").await;
    let mut conns = Vec::new();
    for name in ["brand_a", "brand_b"] {
        let config = json!({ "resources": [], "webhook": { "allow_unsigned": true } });
        let (s, c) = app
            .post("/v1/connections", &unrestricted, json!({ "provider": "trackstar", "name": name, "credentials": { "api_key": "k" }, "config": config }))
            .await;
        assert_eq!(s, 201, "{c}");
        conns.push(c["id"].as_str().unwrap().to_string());
    }
    let (a, b) = (conns[0].clone(), conns[1].clone());
    let unrestricted_id = ids(&app.get("/v1/keys", &unrestricted).await.1)[0].clone();
    let (scoped_id, scoped) = key(&app, &tenant, "admin", Some(vec![&a])).await;
    let (viewer_a_id, _) = key(&app, &tenant, "viewer", Some(vec![&a])).await;
    let (viewer_all_id, _) = key(&app, &tenant, "viewer", None).await;
    let (admin_b_id, _) = key(&app, &tenant, "admin", Some(vec![&b])).await;
    let (admin_ab_id, _) = key(&app, &tenant, "admin", Some(vec![&a, &b])).await;
    let job_b = dead_job(&app, &tenant, &b).await;
    let job_a = dead_job(&app, &tenant, &a).await;
    let hook = json!({ "event_type": "order.created", "data": { "id": "o1", "updated_date": "2026-11-26T00:00:00.000Z" } });
    let resp = app
        .client
        .post(format!("{}/v1/webhooks/{b}", app.url))
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let events = app.get("/v1/events", &unrestricted).await.1;
    let event_b = ids(&events)[0].clone();

    let (_, conn_b_before) = app
        .get(&format!("/v1/connections/{b}"), &unrestricted)
        .await;
    let cases: Vec<(Method, String, Option<Value>, u16)> = vec![
        (Method::GET, format!("/v1/connections/{b}"), None, 404),
        (
            Method::PATCH,
            format!("/v1/connections/{b}"),
            Some(json!({ "status": "paused" })),
            404,
        ),
        (Method::DELETE, format!("/v1/connections/{b}"), None, 404),
        (
            Method::POST,
            format!("/v1/connections/{b}/sync"),
            Some(json!({})),
            404,
        ),
        (
            Method::GET,
            format!("/v1/connections/{b}/checkpoints"),
            None,
            404,
        ),
        (
            Method::GET,
            format!("/v1/connections/{b}/records/orders"),
            None,
            404,
        ),
        (
            Method::GET,
            format!("/v1/connections/{b}/records/orders/o1"),
            None,
            404,
        ),
        (
            Method::PUT,
            format!("/v1/connections/{b}/desired/orders/o1"),
            Some(json!({ "id": "o1" })),
            404,
        ),
        (
            Method::GET,
            format!("/v1/connections/{b}/desired/orders/o1"),
            None,
            404,
        ),
        (
            Method::POST,
            format!("/v1/connections/{b}/reconcile"),
            None,
            404,
        ),
        (
            Method::GET,
            format!("/v1/connections/{b}/health"),
            None,
            404,
        ),
        (
            Method::GET,
            format!("/v1/changes?connection_id={b}"),
            None,
            404,
        ),
        (
            Method::POST,
            "/v1/snapshots".into(),
            Some(
                json!({ "connection_id": b, "resource": "orders", "external_id": "o1", "of": "desired" }),
            ),
            404,
        ),
        (Method::GET, format!("/v1/jobs/{job_b}"), None, 404),
        (
            Method::POST,
            format!("/v1/jobs/{job_b}/retry"),
            Some(json!({})),
            404,
        ),
        (
            Method::POST,
            format!("/v1/jobs/{job_b}/cancel"),
            Some(json!({})),
            404,
        ),
        (
            Method::POST,
            format!("/v1/dead-letters/{job_b}/review"),
            Some(json!({})),
            404,
        ),
        (Method::GET, format!("/v1/events/{event_b}"), None, 404),
        (
            Method::POST,
            format!("/v1/circuits/{b}:trackstar/force"),
            Some(json!({ "mode": "open" })),
            404,
        ),
        // Keys outside its list, or unrestricted, do not exist for it.
        (
            Method::DELETE,
            format!("/v1/keys/{unrestricted_id}"),
            None,
            404,
        ),
        (
            Method::DELETE,
            format!("/v1/keys/{viewer_all_id}"),
            None,
            404,
        ),
        (Method::DELETE, format!("/v1/keys/{admin_b_id}"), None, 404),
        (Method::DELETE, format!("/v1/keys/{admin_ab_id}"), None, 404),
        (
            Method::POST,
            "/v1/keys".into(),
            Some(json!({ "role": "viewer", "name": "x", "connections": [b] })),
            404,
        ),
        // Forbidden actions.
        (
            Method::POST,
            "/v1/connections".into(),
            Some(json!({ "provider": "trackstar", "name": "brand_c" })),
            403,
        ),
        (
            Method::POST,
            "/v1/connections/link-token".into(),
            Some(json!({ "provider": "trackstar", "credentials": { "api_key": "k" } })),
            403,
        ),
        (
            Method::POST,
            "/v1/keys".into(),
            Some(json!({ "role": "platform", "name": "x" })),
            403,
        ),
        (
            Method::POST,
            "/v1/tenants".into(),
            Some(json!({ "name": "other" })),
            403,
        ),
        (Method::GET, "/v1/tenants".into(), None, 403),
    ];
    for (method, path, body, expected) in &cases {
        let mut req = app.req(method.clone(), path, &scoped);
        if let Some(b) = body {
            req = req.json(b);
        }
        let (s, answer) = send(req).await;
        assert_eq!(s, *expected, "{method} {path}: {answer}");
    }
    // Replays by filter or ids match nothing of the other connection.
    for (path, body) in [
        ("/v1/dead-letters/replay", json!({ "ids": [job_b] })),
        ("/v1/dead-letters/replay", json!({ "connection_id": b })),
        ("/v1/events/replay", json!({ "ids": [event_b] })),
        ("/v1/events/replay", json!({ "connection_id": b })),
    ] {
        let (s, r) = app.post(path, &scoped, body).await;
        assert_eq!((s, r["matched"].as_u64()), (200, Some(0)), "{path}: {r}");
    }
    // Lists hold only its own.
    assert_eq!(
        ids(&app.get("/v1/connections", &scoped).await.1),
        vec![a.clone()]
    );
    for list in ["/v1/jobs", "/v1/dead-letters"] {
        let (_, page) = app.get(list, &scoped).await;
        assert!(ids(&page).contains(&job_a.to_string()), "{list}: {page}");
        assert!(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|j| j["connection_id"] == a.as_str()),
            "{list}: {page}"
        );
    }
    assert!(ids(&app.get("/v1/events", &scoped).await.1).is_empty());
    let (s, circuits) = app.get("/v1/circuits", &scoped).await;
    assert_eq!(s, 200);
    assert!(!circuits.to_string().contains(&b), "{circuits}");
    let (s, changes) = app.get("/v1/changes", &scoped).await;
    assert!(s == 200 && !changes.to_string().contains(&b), "{changes}");
    let mut keys = ids(&app.get("/v1/keys", &scoped).await.1);
    keys.sort();
    let mut expected = vec![scoped_id.clone(), viewer_a_id.clone()];
    expected.sort();
    assert_eq!(keys, expected, "only keys no broader than itself");
    let (s, audit) = app.get("/v1/audit", &scoped).await;
    assert_eq!(s, 200);
    let entries = audit["data"].as_array().unwrap();
    assert!(
        !entries.is_empty(),
        "its own connection's creation is there"
    );
    assert!(
        entries.iter().all(|e| e["connection_id"] == a.as_str()),
        "{audit}"
    );

    // Nothing of the other connection, nor any key, changed.
    let (_, conn_b) = app
        .get(&format!("/v1/connections/{b}"), &unrestricted)
        .await;
    for field in ["status", "config", "has_credentials", "updated_at"] {
        assert_eq!(conn_b[field], conn_b_before[field], "{field}");
    }
    let j = app
        .db
        .store
        .get_job(&Scope::All, None, job_b)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (j.state, j.reviewed, j.replayed_as),
        (JobState::Dead, false, None)
    );
    let all_keys = app.get("/v1/keys", &unrestricted).await.1;
    assert!(all_keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|k| k["revoked_at"].is_null()));
    assert_eq!(
        app.get("/v1/connections", &unrestricted).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Within its bounds it acts: its own connection, and a narrower key.
    assert_eq!(
        app.get(&format!("/v1/connections/{a}"), &scoped).await.0,
        200
    );
    assert_eq!(
        app.delete(&format!("/v1/keys/{viewer_a_id}"), &scoped)
            .await
            .0,
        200
    );
    let (s, k) = app
        .post(
            "/v1/keys",
            &scoped,
            json!({ "role": "operator", "name": "ops" }),
        )
        .await;
    assert_eq!((s, k["connections"].clone()), (201, json!([a])), "{k}");
    // The unrestricted admin still sees every key.
    assert!(ids(&app.get("/v1/keys", &unrestricted).await.1).contains(&admin_ab_id));
    app.stop().await;
}
