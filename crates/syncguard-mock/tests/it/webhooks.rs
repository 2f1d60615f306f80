use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use syncguard_core::signature::sign_standard;
use syncguard_mock::{MockConfig, Resource};
use tokio::sync::mpsc;

use crate::helpers::{eventually, mock_with, Api};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One webhook as the receiver saw it.
#[derive(Debug, Clone)]
struct Delivery {
    headers: HeaderMap,
    body: Bytes,
}

impl Delivery {
    fn header(&self, name: &str) -> &str {
        self.headers[name].to_str().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<Delivery>,
    /// Answer 500 to the first attempt of every message id.
    fail_first: bool,
    attempts: Arc<std::sync::Mutex<HashMap<String, usize>>>,
    hits: Arc<AtomicUsize>,
}

async fn receive(State(rx): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    rx.hits.fetch_add(1, Ordering::SeqCst);
    let id = headers["svix-id"].to_str().unwrap().to_owned();
    let attempt = {
        let mut attempts = rx.attempts.lock().unwrap();
        let n = attempts.entry(id).or_default();
        *n += 1;
        *n
    };
    if rx.fail_first && attempt == 1 {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let _ = rx.tx.send(Delivery { headers, body });
    StatusCode::NO_CONTENT
}

/// A tiny receiver on port 0; returns its URL and the stream of accepted deliveries.
async fn receiver(
    fail_first: bool,
) -> (String, mpsc::UnboundedReceiver<Delivery>, Arc<AtomicUsize>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let hits = Arc::new(AtomicUsize::new(0));
    let state = Receiver {
        tx,
        fail_first,
        attempts: Arc::default(),
        hits: hits.clone(),
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rx, hits)
}

async fn collect(rx: &mut mpsc::UnboundedReceiver<Delivery>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::new();
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        out.push(next.expect("delivery within 10 s").expect("receiver alive"));
    }
    out
}

/// Waits briefly and asserts nothing more arrives.
async fn assert_quiet(rx: &mut mpsc::UnboundedReceiver<Delivery>) {
    let extra = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(
        extra.is_err(),
        "unexpected delivery: {:?}",
        extra.ok().flatten().map(|d| d.json())
    );
}

#[tokio::test]
async fn emitted_webhooks_are_trackstar_shaped_and_signed() {
    let (url, mut rx, _) = receiver(false).await;
    let mock = mock_with(MockConfig {
        records: 20,
        ..Default::default()
    })
    .await;
    let api = Api::new(&mock);
    let answer = api
        .control_post(
            "/_mock/webhooks",
            json!({"target_url": url, "secret": SECRET, "count": 5}),
        )
        .await;
    assert_eq!(answer["queued"], 5);

    let deliveries = collect(&mut rx, 5).await;
    let mut ids = Vec::new();
    for d in &deliveries {
        let (id, ts) = (d.header("svix-id"), d.header("svix-timestamp"));
        assert!(id.starts_with("msg_"));
        assert_eq!(d.header("webhook-id"), id);
        assert_eq!(d.header("webhook-timestamp"), ts);
        let expected = sign_standard(SECRET, id, ts.parse().unwrap(), &d.body);
        assert_eq!(d.header("svix-signature"), expected);
        assert_eq!(d.header("webhook-signature"), expected);
        assert!(expected.starts_with("v1,"));

        let event = d.json();
        let keys: Vec<_> = event.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            [
                "connection_id",
                "data",
                "event_type",
                "integration_name",
                "previous_attributes"
            ]
        );
        assert_eq!(event["connection_id"], "conn_mock");
        assert_eq!(event["integration_name"], "mock_wms");
        assert!(event["data"]["id"].is_string());
        ids.push(id.to_owned());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "each message its own id");
    assert_quiet(&mut rx).await;
    eventually(|| mock.stats().webhooks_sent == 5).await;

    // Later mutations flow too, until the emitter is stopped.
    let state = mock.state();
    let product = state.records("products").unwrap()[0].clone();
    let m = state
        .touch(Resource::Products, product["id"].as_str().unwrap())
        .unwrap();
    let event = collect(&mut rx, 1).await[0].json();
    assert_eq!(event["event_type"], "product.updated");
    assert_eq!(event["data"]["id"], m.id.as_str());
    assert!(event["previous_attributes"]
        .as_object()
        .unwrap()
        .contains_key("updated_date"));
    api.http
        .delete(api.url("/_mock/webhooks"))
        .send()
        .await
        .unwrap();
    mock.state().mutate(3);
    assert_quiet(&mut rx).await;
}

#[tokio::test]
async fn duplicates_resend_the_same_id_and_body() {
    let (url, mut rx, _) = receiver(false).await;
    let mock = mock_with(MockConfig {
        records: 20,
        ..Default::default()
    })
    .await;
    let api = Api::new(&mock);
    api.control_post(
        "/_mock/webhooks",
        json!({"target_url": url, "secret": SECRET, "duplicate_rate": 1.0, "reorder": true, "count": 4}),
    )
    .await;
    let deliveries = collect(&mut rx, 8).await;
    let mut by_id: HashMap<String, Vec<Bytes>> = HashMap::new();
    for d in deliveries {
        by_id
            .entry(d.header("svix-id").to_owned())
            .or_default()
            .push(d.body.clone());
    }
    assert_eq!(by_id.len(), 4);
    assert!(by_id
        .values()
        .all(|bodies| bodies.len() == 2 && bodies[0] == bodies[1]));
    assert_quiet(&mut rx).await;
    eventually(|| mock.stats().webhooks_sent == 8).await;
}

#[tokio::test]
async fn failed_deliveries_are_retried() {
    let (url, mut rx, hits) = receiver(true).await;
    let mock = mock_with(MockConfig {
        records: 20,
        webhook_retry_base_ms: 20,
        ..Default::default()
    })
    .await;
    let api = Api::new(&mock);
    api.control_post(
        "/_mock/webhooks",
        json!({"target_url": url, "secret": SECRET, "count": 3}),
    )
    .await;
    let deliveries = collect(&mut rx, 3).await;
    assert_eq!(deliveries.len(), 3);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        6,
        "each message failed once, then succeeded"
    );
    eventually(|| mock.stats().webhooks_sent == 3).await;
    let stats = mock.stats();
    assert_eq!(
        (
            stats.webhooks_sent,
            stats.webhook_attempts,
            stats.webhooks_failed
        ),
        (3, 6, 0)
    );
}

#[tokio::test]
async fn unreachable_targets_are_given_up_after_the_last_attempt() {
    let mock = mock_with(MockConfig {
        records: 5,
        webhook_retry_base_ms: 10,
        webhook_max_attempts: 3,
        ..Default::default()
    })
    .await;
    let state = mock.state();
    // Port 9 (discard) on loopback refuses connections.
    state
        .configure_webhooks(syncguard_mock::WebhookConfig::new(
            "http://127.0.0.1:9/hook",
            SECRET,
        ))
        .unwrap();
    state.mutate(1);
    eventually(|| state.stats().webhooks_failed == 1).await;
    let stats = state.stats();
    assert_eq!(
        (
            stats.webhooks_failed,
            stats.webhook_attempts,
            stats.webhooks_sent
        ),
        (1, 3, 0)
    );
}

#[tokio::test]
async fn explicit_events_are_sent() {
    let (url, mut rx, _) = receiver(false).await;
    let mock = mock_with(MockConfig {
        records: 10,
        ..Default::default()
    })
    .await;
    let api = Api::new(&mock);
    let answer = api
        .control_post(
            "/_mock/webhooks",
            json!({
                "target_url": url,
                "secret": SECRET,
                "connection_id": "conn_42",
                "events": [
                    "order.shipment.created",
                    "inventory.updated",
                    "product.deleted",
                    {"event_type": "order.updated", "data": {"id": "ord_custom"}},
                ],
            }),
        )
        .await;
    assert_eq!(answer["queued"], 4);
    let events: Vec<Value> = collect(&mut rx, 4)
        .await
        .iter()
        .map(Delivery::json)
        .collect();
    let types: Vec<_> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "order.shipment.created",
            "inventory.updated",
            "product.deleted",
            "order.updated"
        ]
    );
    assert!(events.iter().all(|e| e["connection_id"] == "conn_42"));
    assert_eq!(events[0]["data"]["status"], "shipped");
    assert_eq!(events[0]["data"]["shipments"].as_array().unwrap().len(), 1);
    assert_eq!(events[3]["data"]["id"], "ord_custom");

    // The deleted product is gone from lists and records.
    let deleted = events[2]["data"]["id"].as_str().unwrap();
    assert!(mock
        .state()
        .records("products")
        .unwrap()
        .iter()
        .all(|p| p["id"] != deleted));

    let resp = api
        .http
        .post(api.url("/_mock/webhooks"))
        .json(&json!({"target_url": url, "secret": SECRET, "events": ["nonsense"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
