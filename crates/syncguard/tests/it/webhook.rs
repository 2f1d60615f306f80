//! The inbound webhook gateway, from outside: signed deliveries over real HTTP, on both stores.
//!
//! - this file: shared helpers, acknowledgement, deduplication, limits, processing;
//! - `signatures`: every scheme, rotation, unsigned deliveries;
//! - `events_api`: listing, reading and replaying events;
//! - `processing`: provider rules write records; the mock provider's stream, mirrored;
//! - `crash`: `kill -9` of the real binary while webhooks stream in.

mod crash;
mod events_api;
mod processing;
mod signatures;

use crate::helpers::*;
use futures::future::join_all;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use syncguard_core::signature::sign_standard;
use syncguard_store::events::{EventFilter, EventStatus, InboundEvent};
use syncguard_store::page::PageRequest;
use syncguard_store::queue::{JobFilter, JobState};
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(
    a_signed_delivery_is_stored_with_its_job_then_processed,
    same_delivery_ten_times_concurrently_is_stored_and_processed_once,
    same_content_under_another_delivery_id_is_a_duplicate,
    oversized_bodies_are_refused_before_being_buffered,
    unknown_connections_are_404_and_counted,
    store_outage_is_503_and_nothing_is_acknowledged,
);

/// A Standard Webhooks secret (`whsec_` + base64 of 24 bytes).
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A tenant, its admin key and a `trackstar` connection with `webhook` config; returns
/// (tenant id, admin key, connection id).
pub async fn hooked(app: &TestApp, tenant: &str, webhook: Value) -> (String, String, String) {
    let (t, admin) = app.tenant_with_key(tenant, "admin").await;
    let c = connection(app, &admin, "brand_1", webhook).await;
    (t, admin, c)
}

pub async fn connection(app: &TestApp, key: &str, name: &str, webhook: Value) -> String {
    let body = json!({ "provider": "trackstar", "name": name, "config": { "webhook": webhook } });
    let (s, c) = app.post("/v1/connections", key, body).await;
    assert_eq!(s, 201, "{c}");
    c["id"].as_str().unwrap().to_string()
}

/// Standard Webhooks headers for `body`, signed now with `secret`.
pub fn standard_headers(secret: &str, id: &str, body: &[u8]) -> Vec<(String, String)> {
    let ts = now_s();
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        (
            "webhook-signature".into(),
            sign_standard(secret, id, ts, body),
        ),
    ]
}

/// A Trackstar-shaped body no provider rule maps (so processing only records the event).
pub fn ping_body(n: usize) -> Vec<u8> {
    json!({ "event_type": "test.ping", "connection_id": "conn_mock", "data": { "id": format!("p{n}"), "n": n } })
        .to_string()
        .into_bytes()
}

/// POSTs a delivery; returns the status and the JSON answer.
pub async fn deliver(
    app: &TestApp,
    conn: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = app
        .client
        .post(format!("{}/v1/webhooks/{conn}", app.url))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(name.as_str(), value.as_str());
    }
    send(req).await
}

/// The value of `syncguard_webhooks_received_total{provider, outcome}` (0 when absent).
pub async fn received_total(app: &TestApp, provider: &str, outcome: &str) -> u64 {
    metric(
        app,
        "syncguard_webhooks_received_total",
        &[("provider", provider), ("outcome", outcome)],
    )
    .await
}

pub async fn metric(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Every stored event of a connection (duplicates included), newest first.
pub async fn stored(app: &TestApp, conn: &str) -> Vec<InboundEvent> {
    let f = EventFilter {
        connection_id: Some(conn.into()),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: 500,
    };
    loop {
        let p = app
            .db
            .store
            .list_events(&Scope::All, &f, &page)
            .await
            .unwrap();
        out.extend(p.items);
        match p.next_cursor {
            Some(c) => page.after = Some(c),
            None => return out,
        }
    }
}

/// `webhook.process` jobs of a connection.
pub async fn process_jobs(app: &TestApp, conn: &str) -> Vec<syncguard_store::queue::Job> {
    let f = JobFilter {
        kind: Some("webhook.process".into()),
        connection_id: Some(conn.into()),
        ..Default::default()
    };
    app.db
        .store
        .list_jobs(
            &Scope::All,
            &f,
            &PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .unwrap()
        .items
}

/// Waits until every non-duplicate event of `conn` is processed; returns them.
pub async fn all_processed(app: &TestApp, conn: &str, expected: usize) -> Vec<InboundEvent> {
    eventually(Duration::from_secs(20), "every event processed", || async {
        let events: Vec<_> = stored(app, conn)
            .await
            .into_iter()
            .filter(|e| e.status != EventStatus::Duplicate)
            .collect();
        (events.len() == expected && events.iter().all(|e| e.status == EventStatus::Processed))
            .then_some(events)
    })
    .await
}

async fn a_signed_delivery_is_stored_with_its_job_then_processed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let body = ping_body(1);
    let mut headers = standard_headers(SECRET, "msg_1", &body);
    headers.push(("x-request-id".into(), "req-abc".into()));
    let (s, ack) = deliver(&app, &conn, &headers, body.clone()).await;
    assert_eq!(s, 202, "{ack}");
    assert_eq!(ack["duplicate"], false);
    let event_id = ack["event_id"].as_str().unwrap().to_string();
    assert_eq!(ack.as_object().unwrap().len(), 2, "the pinned shape: {ack}");

    // Committed with its job before the answer: both are there the moment we look.
    let jobs = process_jobs(&app, &conn).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].payload["event_id"], event_id.as_str());
    assert_eq!(
        jobs[0].correlation_id.as_deref(),
        Some("msg_1"),
        "the provider's delivery id correlates"
    );

    let events = all_processed(&app, &conn, 1).await;
    let e = &events[0];
    assert_eq!(
        (
            e.id.as_str(),
            e.delivery_id.as_deref(),
            e.event_type.as_deref()
        ),
        (event_id.as_str(), Some("msg_1"), Some("test.ping"))
    );
    assert!(
        e.note.as_deref().unwrap().contains("no event rule"),
        "{:?}",
        e.note
    );
    assert_eq!(e.signature, "standard:secret[0]");
    let job = eventually(Duration::from_secs(10), "job succeeded", || async {
        let j = process_jobs(&app, &conn).await.remove(0);
        (j.state == JobState::Succeeded).then_some(j)
    })
    .await;
    assert_eq!(job.attempts, 1);
    let (_, c) = app.get(&format!("/v1/connections/{conn}"), &admin).await;
    assert!(c["last_webhook_at"].is_string(), "{c}");
    assert_eq!(received_total(&app, "trackstar", "accepted").await, 1);
    assert!(
        metric(
            &app,
            "syncguard_webhook_processing_seconds_count",
            &[("outcome", "processed")]
        )
        .await
            >= 1
    );
    app.stop().await;
}

async fn same_delivery_ten_times_concurrently_is_stored_and_processed_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let body = ping_body(7);
    let headers = standard_headers(SECRET, "msg_same", &body);
    let answers = join_all((0..10).map(|_| deliver(&app, &conn, &headers, body.clone()))).await;
    let first: Vec<_> = answers.iter().filter(|(s, _)| *s == 202).collect();
    let dups: Vec<_> = answers
        .iter()
        .filter(|(s, a)| *s == 200 && a["duplicate"] == true)
        .collect();
    assert_eq!((first.len(), dups.len()), (1, 9), "{answers:?}");
    let event_id = &first[0].1["event_id"];
    assert!(
        dups.iter().all(|(_, a)| a["event_id"] == *event_id),
        "duplicates name the original"
    );

    let processed = all_processed(&app, &conn, 1).await;
    assert_eq!(processed[0].attempts, 1, "processed once");
    let all = stored(&app, &conn).await;
    assert_eq!(
        all.iter()
            .filter(|e| e.status == EventStatus::Duplicate)
            .count(),
        9,
        "each duplicate is stored as such"
    );
    assert_eq!(
        process_jobs(&app, &conn).await.len(),
        1,
        "one processing job"
    );
    assert_eq!(received_total(&app, "trackstar", "duplicate").await, 9);
    app.stop().await;
}

async fn same_content_under_another_delivery_id_is_a_duplicate(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let body = br#"{"event_type": "test.ping", "data": {"id": "x1", "qty": 5}}"#.to_vec();
    let (s, first) = deliver(
        &app,
        &conn,
        &standard_headers(SECRET, "msg_a", &body),
        body.clone(),
    )
    .await;
    assert_eq!(s, 202);
    // The same JSON re-serialised (key order, spacing) is the same content.
    let resent = br#"{"data":{"qty":5,"id":"x1"},"event_type":"test.ping"}"#.to_vec();
    let (s, dup) = deliver(
        &app,
        &conn,
        &standard_headers(SECRET, "msg_b", &resent),
        resent,
    )
    .await;
    assert_eq!(
        (s, &dup["event_id"], &dup["duplicate"]),
        (200, &first["event_id"], &json!(true))
    );
    let changed = br#"{"event_type": "test.ping", "data": {"id": "x1", "qty": 6}}"#.to_vec();
    assert_eq!(
        deliver(
            &app,
            &conn,
            &standard_headers(SECRET, "msg_c", &changed),
            changed
        )
        .await
        .0,
        202
    );
    all_processed(&app, &conn, 2).await;
    assert_eq!(process_jobs(&app, &conn).await.len(), 2);
    app.stop().await;
}

async fn oversized_bodies_are_refused_before_being_buffered(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let url = format!("{}/v1/webhooks/{conn}", app.url);
    let limit = 1024 * 1024;
    // Declared too large: refused before a byte is read.
    let big = vec![b' '; limit + 1];
    let resp = app.client.post(&url).body(big).send().await.unwrap();
    assert_eq!(resp.status(), 413);
    // Chunked, no Content-Length: cut off at the limit. Over a raw socket: the server may hang
    // up before the terminating chunk is written, and the answer must be read all the same.
    let chunks = (0..16)
        .map(|_| vec![b' '; 64 * 1024])
        .chain([vec![b' '; 1024]])
        .collect();
    let head = chunked_post_head(&app.url, &format!("/v1/webhooks/{conn}"), chunks).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    // A chunked body that never ends: only a server that stops at the limit can answer.
    let status_line = tokio::time::timeout(
        Duration::from_secs(10),
        endless_chunked_post(&app.url, &format!("/v1/webhooks/{conn}"), ""),
    )
    .await
    .expect("answered without reading the whole body");
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    // Just under the limit is fine (and then refused for its signature, not its size).
    let under = vec![b' '; limit];
    assert_eq!(
        app.client
            .post(&url)
            .body(under)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        received_total(&app, "trackstar", "too_large").await,
        3,
        "every refusal is counted against its provider, declared or streamed"
    );
    assert!(stored(&app, &conn).await.is_empty());
    app.stop().await;
}

/// POSTs `chunks` as a chunked body over a raw socket and returns the head of the answer;
/// write errors (the server hanging up once it has answered) do not stop the read.
async fn chunked_post_head(base: &str, path: &str, chunks: Vec<Vec<u8>>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_string();
    let (mut rd, mut wr) = tokio::net::TcpStream::connect(&addr)
        .await
        .unwrap()
        .into_split();
    let head = format!("POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n");
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        for chunk in chunks {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(10), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn unknown_connections_are_404_and_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, admin, _conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let body = ping_body(1);
    let (s, problem) = deliver(
        &app,
        "con_nope",
        &standard_headers(SECRET, "msg_1", &body),
        body.clone(),
    )
    .await;
    assert_eq!(s, 404, "{problem}");
    assert_eq!(problem["status"], 404);
    // A connection without webhook config does not take webhooks either.
    let (s, plain) = app
        .post(
            "/v1/connections",
            &admin,
            json!({ "provider": "trackstar", "name": "plain" }),
        )
        .await;
    assert_eq!(s, 201);
    let plain = plain["id"].as_str().unwrap();
    assert_eq!(
        deliver(&app, plain, &standard_headers(SECRET, "msg_2", &body), body)
            .await
            .0,
        404
    );
    assert_eq!(
        received_total(&app, "unknown", "unknown_connection").await,
        2
    );
    app.stop().await;
}

async fn store_outage_is_503_and_nothing_is_acknowledged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_t, _admin, conn) = hooked(&app, "acme", json!({ "secrets": [SECRET] })).await;
    let body = ping_body(1);
    assert_eq!(
        deliver(
            &app,
            &conn,
            &standard_headers(SECRET, "msg_ok", &body),
            body
        )
        .await
        .0,
        202
    );
    // Let the engine record that job first: a completion it cannot record keeps it retrying.
    eventually(Duration::from_secs(10), "job recorded", || async {
        process_jobs(&app, &conn)
            .await
            .iter()
            .all(|j| j.state == JobState::Succeeded)
            .then_some(())
    })
    .await;
    app.db.store.close().await;
    let body = ping_body(2);
    let mut req = app
        .client
        .post(format!("{}/v1/webhooks/{conn}", app.url))
        .body(body.clone());
    for (k, v) in standard_headers(SECRET, "msg_lost", &body) {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(received_total(&app, "trackstar", "unavailable").await, 1);
    // Look with a store of our own: the refused delivery was not stored.
    let store = syncguard_store::Store::connect(&app.db.url, &Default::default())
        .await
        .unwrap();
    let events = store
        .list_events(
            &Scope::All,
            &EventFilter::default(),
            &PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(
        events
            .iter()
            .map(|e| e.delivery_id.clone().unwrap())
            .collect::<Vec<_>>(),
        ["msg_ok"]
    );
    store.close().await;
    // Stopping is the engine's business (its loops may still be retrying the closed store);
    // this test only bounds how long it waits for it.
    let _ = tokio::time::timeout(Duration::from_secs(5), app.stop()).await;
}
