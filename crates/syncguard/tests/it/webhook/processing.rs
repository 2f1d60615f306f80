//! Processing through real provider definitions: Trackstar's event rules write records, a body
//! that does not fit its rule dead-letters, id-only events refetch, and the mock provider's
//! webhook stream (duplicates, reordering) ends up mirrored exactly.

use super::*;
use std::collections::HashMap;
use syncguard::app::Handlers;
use syncguard_store::queue::Job;

crate::on_both_stores!(
    mapped_events_write_records_and_misfits_dead_letter,
    id_only_events_enqueue_one_refetch,
    mock_provider_webhooks_end_to_end,
);

/// A Trackstar-shaped body.
fn trackstar(event_type: &str, data: Value) -> Vec<u8> {
    json!({ "connection_id": "conn_mock", "data": data, "event_type": event_type,
            "integration_name": "mock_wms", "previous_attributes": {} })
    .to_string()
    .into_bytes()
}

async fn record(
    app: &TestApp,
    conn: &str,
    resource: &str,
    id: &str,
) -> Option<syncguard_store::records::Record> {
    app.db
        .store
        .get_record(&Scope::All, conn, resource, id)
        .await
        .unwrap()
}

async fn mapped_events_write_records_and_misfits_dead_letter(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let send = |id: &'static str, body: Vec<u8>| {
        let (app, conn) = (&app, &conn);
        async move {
            let (s, ack) = deliver(app, conn, &standard_headers(SECRET, id, &body), body).await;
            assert_eq!(s, 202, "{ack}");
        }
    };
    let newer =
        json!({ "id": "o1", "status": "shipped", "updated_date": "2026-01-02T00:00:10.000Z" });
    send("msg_1", trackstar("order.updated", newer.clone())).await;
    all_processed(&app, &conn, 1).await;
    assert_eq!(
        record(&app, &conn, "orders", "o1").await.unwrap().data,
        newer
    );
    // An older state arriving late does not roll the record back.
    let older =
        json!({ "id": "o1", "status": "processing", "updated_date": "2026-01-02T00:00:05.000Z" });
    send("msg_2", trackstar("order.updated", older)).await;
    let events = all_processed(&app, &conn, 2).await;
    assert!(
        events[0].note.as_deref().unwrap().contains("unchanged"),
        "{:?}",
        events[0].note
    );
    assert_eq!(
        record(&app, &conn, "orders", "o1").await.unwrap().data,
        newer
    );

    send("msg_3", trackstar("order.deleted", newer.clone())).await;
    all_processed(&app, &conn, 3).await;
    assert!(record(&app, &conn, "orders", "o1").await.unwrap().deleted);
    let (s, feed) = app
        .get(&format!("/v1/changes?connection_id={conn}"), &admin)
        .await;
    let changes: Vec<(&str, &str)> = feed["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{s}: {feed}"))
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap(),
                c["external_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [("created", "o1"), ("deleted", "o1")],
        "one change per real change"
    );

    // A body its rule cannot read is a permanent failure: dead at once, and the event says so.
    send(
        "msg_4",
        trackstar("order.updated", json!({ "status": "no id" })),
    )
    .await;
    let dead = eventually(
        Duration::from_secs(20),
        "the misfit dead-lettered",
        || async {
            let e = stored(&app, &conn)
                .await
                .into_iter()
                .find(|e| e.delivery_id.as_deref() == Some("msg_4"))?;
            (e.status == EventStatus::Dead).then_some(e)
        },
    )
    .await;
    assert!(
        dead.note.as_deref().unwrap().contains("/data/id"),
        "{:?}",
        dead.note
    );
    let job = eventually(Duration::from_secs(10), "the job recorded dead", || async {
        let jobs = process_jobs(&app, &conn).await;
        jobs.into_iter().find(|j| j.state == JobState::Dead)
    })
    .await;
    assert_eq!(
        (job.attempts, job.error_class.map(|c| c.to_string())),
        (1, Some("permanent".into()))
    );
    assert_eq!(received_total(&app, "trackstar", "accepted").await, 4);
    app.stop().await;
}

/// A provider whose events carry only an object id.
const ID_ONLY_PROVIDER: &str = r#"
name = "idonly"
base_url = "http://127.0.0.1:9"

[auth]
type = "api_key"
headers = { "x-api-key" = "api_key" }

[rate_limit]
rps = 10
burst = 5

[pagination]
style = "next_token"
items = "/data"
param = "page_token"
next = "/next_token"

[resources.widgets]
path = "/widgets"
get = "/widgets/{id}"

[webhook]
scheme = "standard"
event_type_pointer = "/type"

[[webhook.events]]
event = "widget.changed"
resource = "widgets"
action = "refetch"
id_pointer = "/object/id"
"#;

async fn id_only_events_enqueue_one_refetch(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("idonly.toml");
    std::fs::write(&file, ID_ONLY_PROVIDER).unwrap();
    let path = file.display().to_string();
    let clock = std::sync::Arc::new(syncguard::clock::SystemClock);
    // Without the refetch handler, the refetch jobs wait to be looked at.
    let mut handlers = Handlers::default();
    handlers.register(
        "webhook.process",
        syncguard::services::webhook::process::process,
    );
    let app =
        TestApp::spawn_with(backend, |c| c.provider_files = vec![path], clock, handlers).await;
    let (_t, admin) = app.tenant_with_key("acme", "admin").await;
    let body = json!({ "provider": "idonly", "name": "w", "config": { "webhook": { "secrets": [SECRET] } } });
    let (s, c) = app.post("/v1/connections", &admin, body).await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_string();
    for (n, id) in ["w1", "w1", "w2"].into_iter().enumerate() {
        let body = json!({ "type": "widget.changed", "object": { "id": id }, "n": n })
            .to_string()
            .into_bytes();
        let (s, ack) = deliver(
            &app,
            &conn,
            &standard_headers(SECRET, &format!("msg_{n}"), &body),
            body,
        )
        .await;
        assert_eq!(s, 202, "{ack}");
    }
    all_processed(&app, &conn, 3).await;
    let f = JobFilter {
        kind: Some("sync.refetch".into()),
        connection_id: Some(conn.clone()),
        ..Default::default()
    };
    let jobs: Vec<Job> = app
        .db
        .store
        .list_jobs(
            &Scope::All,
            &f,
            &PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .items;
    let mut keys: Vec<_> = jobs.iter().map(|j| j.unique_key.clone().unwrap()).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            format!("refetch:{conn}:widgets:w1"),
            format!("refetch:{conn}:widgets:w2")
        ],
        "one refetch per object"
    );
    let w1 = jobs
        .iter()
        .find(|j| j.payload["external_id"] == "w1")
        .unwrap();
    assert_eq!(
        w1.payload,
        json!({ "connection_id": conn, "resource": "widgets", "external_id": "w1" })
    );
    assert_eq!(
        w1.correlation_id.as_deref(),
        Some("msg_0"),
        "the event's correlation id travels on"
    );
    app.stop().await;
}

async fn mock_provider_webhooks_end_to_end(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let mock = syncguard_mock::spawn(syncguard_mock::MockConfig {
        records: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let setup = json!({
        "target_url": format!("{}/v1/webhooks/{conn}", app.url), "secret": SECRET,
        "duplicate_rate": 0.5, "reorder": true, "count": 30,
    });
    let (s, r) = send(
        app.client
            .request(Method::POST, format!("{}/_mock/webhooks", mock.base_url))
            .json(&setup),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let messages = r["queued"].as_u64().unwrap() as usize;
    assert!(messages >= 30, "{r}");
    let events = all_processed(&app, &conn, messages).await;
    let stats = eventually(Duration::from_secs(20), "mock done sending", || async {
        let st = mock.stats();
        (st.webhooks_sent as usize == stored(&app, &conn).await.len()).then_some(st)
    })
    .await;
    assert!(
        stats.webhooks_sent as usize > messages,
        "the mock sent duplicates: {stats:?}"
    );
    assert_eq!(stats.webhooks_failed, 0);
    let mut ids: Vec<_> = events
        .iter()
        .map(|e| e.delivery_id.clone().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), messages, "each message stored once");
    assert_eq!(
        process_jobs(&app, &conn).await.len(),
        messages,
        "and processed once"
    );

    // The mirror matches the provider for every object the stream touched once (objects touched
    // twice within one millisecond carry equal timestamps, and their order is the mock's to
    // shuffle).
    let mut touched: HashMap<(String, String), usize> = HashMap::new();
    for e in &events {
        let body = app
            .db
            .store
            .get_event(&Scope::All, None, &e.id)
            .await
            .unwrap()
            .unwrap()
            .body;
        let body: Value = serde_json::from_slice(&body).unwrap();
        let rule = app
            .app
            .providers
            .event_rule("trackstar", e.event_type.as_deref().unwrap())
            .expect("trackstar maps mock events");
        *touched
            .entry((
                rule.resource.clone(),
                body["data"]["id"].as_str().unwrap().to_string(),
            ))
            .or_default() += 1;
    }
    let mut checked = 0;
    for ((resource, id), times) in &touched {
        if *times > 1 {
            continue;
        }
        let truth = mock
            .state()
            .records(resource)
            .unwrap()
            .into_iter()
            .find(|o| o["id"] == id.as_str());
        let mirrored = record(&app, &conn, resource, id).await;
        match (truth, mirrored) {
            (Some(object), Some(m)) => {
                assert_eq!((&m.data, m.deleted), (&object, false), "{resource}/{id}")
            }
            (Some(_), None) => panic!("{resource}/{id} is not mirrored"),
            // Deleted at the provider: marked deleted, or never mirrored at all.
            (None, m) => assert!(
                m.is_none_or(|m| m.deleted),
                "{resource}/{id} was deleted at the provider"
            ),
        }
        checked += 1;
    }
    assert!(checked > 0);
    mock.shutdown().await;
    app.stop().await;
}
