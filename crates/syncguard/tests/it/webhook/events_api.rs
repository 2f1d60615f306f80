//! `GET /v1/events`, `GET /v1/events/{id}`, `POST /v1/events/replay`.

use super::*;

crate::on_both_stores!(
    events_are_listed_filtered_and_read_in_full,
    events_are_tenant_scoped_and_connection_limited,
    replay_is_admin_only_audited_and_processes_again,
);

/// Delivers `body` with extra `headers`; returns the event id.
async fn delivered(
    app: &TestApp,
    conn: &str,
    id: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> String {
    let mut headers = standard_headers(SECRET, id, body);
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (s, ack) = deliver(app, conn, &headers, body.to_vec()).await;
    assert!(s == 202 || s == 200, "{ack}");
    ack["event_id"].as_str().unwrap().to_string()
}

/// How many events `GET /v1/events?{query}` lists.
async fn count(app: &TestApp, key: &str, query: &str) -> usize {
    let (s, list) = app.get(&format!("/v1/events?{query}"), key).await;
    assert_eq!(s, 200, "{query}: {list}");
    list["data"].as_array().unwrap().len()
}

fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

async fn events_are_listed_filtered_and_read_in_full(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    // Odd spacing and a trailing newline: the body must come back byte for byte.
    let body = b"{ \"type\": \"test.other\",\n  \"data\": {\"id\": \"x\"} }\n".to_vec();
    let secret_headers = [
        ("authorization", "Bearer provider-token"),
        ("cookie", "sid=abc"),
        ("x-api-key", "k123"),
    ];
    let first = delivered(&app, &conn, "msg_1", &body, &secret_headers).await;
    delivered(&app, &conn, "msg_1", &body, &[]).await; // a duplicate
    for n in 2..4 {
        delivered(&app, &conn, &format!("msg_{n}"), &ping_body(n), &[]).await;
    }
    all_processed(&app, &conn, 3).await;

    let (s, list) = app.get("/v1/events", &admin).await;
    assert_eq!(
        (s, list["data"].as_array().unwrap().len()),
        (200, 4),
        "{list}"
    );
    let item = &list["data"][3];
    for field in [
        "id",
        "delivery_id",
        "status",
        "connection_id",
        "event_type",
        "received_at",
    ] {
        assert!(item.get(field).is_some(), "{field} missing: {item}");
    }
    assert!(list["next_cursor"].is_null());
    assert_eq!(count(&app, &admin, "status=duplicate").await, 1);
    assert_eq!(count(&app, &admin, "status=processed").await, 3);
    assert_eq!(
        count(&app, &admin, "type=test.other").await,
        2,
        "the event and its duplicate"
    );
    assert_eq!(count(&app, &admin, "since=2999-01-01T00:00:00Z").await, 0);
    assert_eq!(count(&app, &admin, "since=0").await, 4);
    assert_eq!(
        count(&app, &admin, &format!("connection_id={conn}")).await,
        4
    );
    assert_eq!(count(&app, &admin, "connection_id=con_other").await, 0);
    let (_, page1) = app.get("/v1/events?limit=3", &admin).await;
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app
        .get(&format!("/v1/events?limit=3&cursor={cursor}"), &admin)
        .await;
    assert_eq!((ids(&page1).len(), ids(&page2).len()), (3, 1));
    assert_eq!(app.get("/v1/events?status=exploded", &admin).await.0, 422);
    assert_eq!(app.get("/v1/events?since=yesterday", &admin).await.0, 422);

    let (s, detail) = app.get(&format!("/v1/events/{first}"), &admin).await;
    assert_eq!(s, 200, "{detail}");
    assert_eq!(
        (
            detail["body"].as_str().unwrap().as_bytes(),
            detail["body_encoding"].as_str()
        ),
        (body.as_slice(), Some("utf8"))
    );
    let names: Vec<&str> = detail["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"webhook-signature") && names.contains(&"content-type"),
        "{names:?}"
    );
    for secret in ["authorization", "cookie", "x-api-key"] {
        assert!(!names.contains(&secret), "{secret} was stored: {names:?}");
    }
    assert!(!detail.to_string().contains("provider-token") && !detail.to_string().contains("k123"));
    assert_eq!(
        (detail["status"].as_str(), detail["attempts"].as_i64()),
        (Some("processed"), Some(1))
    );
    let jobs = detail["jobs"].as_array().unwrap();
    assert_eq!(
        (
            jobs.len(),
            jobs[0]["kind"].as_str(),
            jobs[0]["state"].as_str()
        ),
        (1, Some("webhook.process"), Some("succeeded"))
    );
    assert_eq!(app.get("/v1/events/evt_nope", &admin).await.0, 404);
    app.stop().await;
}

async fn events_are_tenant_scoped_and_connection_limited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (ta, admin_a, conn1) = hooked(&app, "a", json!({ "secrets": [SECRET] })).await;
    let conn2 = connection(&app, &admin_a, "brand_2", json!({ "secrets": [SECRET] })).await;
    let (_tb, admin_b) = app.tenant_with_key("b", "admin").await;
    let e1 = delivered(&app, &conn1, "msg_1", &ping_body(1), &[]).await;
    let e2 = delivered(&app, &conn2, "msg_2", &ping_body(2), &[]).await;

    assert!(ids(&app.get("/v1/events", &admin_b).await.1).is_empty());
    assert_eq!(app.get(&format!("/v1/events/{e1}"), &admin_b).await.0, 404);
    let (s, r) = app
        .post("/v1/events/replay", &admin_b, json!({ "ids": [e1] }))
        .await;
    assert_eq!((s, r["matched"].as_u64()), (200, Some(0)), "{r}");

    let limited = app.key_for(&ta, "viewer", Some(vec![conn2.as_str()])).await;
    assert_eq!(
        ids(&app.get("/v1/events", &limited).await.1),
        std::slice::from_ref(&e2)
    );
    assert_eq!(app.get(&format!("/v1/events/{e1}"), &limited).await.0, 404);
    assert_eq!(app.get(&format!("/v1/events/{e2}"), &limited).await.0, 200);
    let mut both = ids(&app.get("/v1/events", &admin_a).await.1);
    both.sort();
    let mut expected = vec![e1, e2];
    expected.sort();
    assert_eq!(both, expected);
    assert_eq!(
        app.get("/v1/events", PLATFORM_KEY).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    app.stop().await;
}

async fn replay_is_admin_only_audited_and_processes_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (t, admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let first = delivered(&app, &conn, "msg_1", &ping_body(1), &[]).await;
    delivered(&app, &conn, "msg_2", &ping_body(2), &[]).await;
    let dup_row = {
        delivered(&app, &conn, "msg_1", &ping_body(1), &[]).await;
        stored(&app, &conn)
            .await
            .into_iter()
            .find(|e| e.status == EventStatus::Duplicate)
            .unwrap()
            .id
    };
    all_processed(&app, &conn, 2).await;
    let by_conn = json!({ "connection_id": conn });

    for role in ["viewer", "operator"] {
        let key = app.key_for(&t, role, None).await;
        assert_eq!(
            app.post("/v1/events/replay", &key, by_conn.clone()).await.0,
            403,
            "{role}"
        );
    }
    assert_eq!(
        app.post("/v1/events/replay", &admin, json!({})).await.0,
        422,
        "a filter or ids are required"
    );
    assert_eq!(
        app.post(
            "/v1/events/replay",
            &admin,
            json!({ "ids": [first], "stagger_ms": 3_600_001 })
        )
        .await
        .0,
        422
    );
    assert_eq!(
        app.post(
            "/v1/events/replay",
            &admin,
            json!({ "status": "duplicate" })
        )
        .await
        .0,
        422
    );
    let (s, r) = app
        .post("/v1/events/replay", &admin, json!({ "ids": [dup_row] }))
        .await;
    assert_eq!(
        (s, r["matched"].as_u64()),
        (200, Some(0)),
        "duplicates are never replayed"
    );

    let mut dry = by_conn.clone();
    dry["dry_run"] = json!(true);
    let (s, r) = app.post("/v1/events/replay", &admin, dry).await;
    assert_eq!(
        (
            s,
            r["matched"].as_u64(),
            r["replayed"].as_u64(),
            r["dry_run"].as_bool()
        ),
        (200, Some(2), Some(0), Some(true)),
        "{r}"
    );
    assert_eq!(
        process_jobs(&app, &conn).await.len(),
        2,
        "a dry run enqueues nothing"
    );

    let mut real = by_conn.clone();
    real["stagger_ms"] = json!(100);
    let (s, r) = app.post("/v1/events/replay", &admin, real).await;
    assert_eq!(
        (s, r["matched"].as_u64(), r["replayed"].as_u64()),
        (200, Some(2), Some(2)),
        "{r}"
    );
    assert_eq!(r["job_ids"].as_array().unwrap().len(), 2);
    let events = eventually(
        Duration::from_secs(20),
        "replayed events processed again",
        || async {
            let events: Vec<_> = stored(&app, &conn)
                .await
                .into_iter()
                .filter(|e| e.status != EventStatus::Duplicate)
                .collect();
            events
                .iter()
                .all(|e| e.status == EventStatus::Processed && e.attempts == 2)
                .then_some(events)
        },
    )
    .await;
    assert_eq!(events.len(), 2);
    let (_, detail) = app.get(&format!("/v1/events/{first}"), &admin).await;
    assert_eq!(
        detail["jobs"].as_array().unwrap().len(),
        2,
        "both runs are linked: {detail}"
    );

    let (_, audit) = app.get("/v1/audit?action=event.replay", &admin).await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        3,
        "every replay request is audited, refused ones excepted: {audit}"
    );
    assert_eq!(entries[0]["params"]["replayed"], 2);
    assert_eq!(entries[1]["params"]["dry_run"], true);
    app.stop().await;
}
