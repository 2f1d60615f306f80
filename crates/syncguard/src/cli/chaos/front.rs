//! The webhook front: a small load balancer between the provider's webhook emitter and the
//! nodes, as a deployment would have one. It forwards each delivery to the next node in turn,
//! fails over to the following node when a node refuses the connection (it is down), and
//! records what the run later checks: every delivery id a node acknowledged (2xx), and how long
//! each acknowledgement took.
//!
//! A delivery cut mid-request (its node was killed) is answered 502, so the provider retries
//! it; it may or may not have been committed, which is exactly what delivery-id deduplication
//! is for.

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// What one delivery id went through.
#[derive(Debug, Clone, Default)]
pub struct Delivery {
    pub event_type: String,
    /// `data.id` of the event.
    pub object_id: String,
    pub attempts: u32,
    /// Acknowledged (2xx) at least once.
    pub acked: bool,
}

/// One forwarded attempt that a node answered.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Milliseconds since the run started.
    pub at_ms: u64,
    pub latency_us: u64,
    pub status: u16,
}

#[derive(Default)]
pub struct Ledger {
    pub deliveries: HashMap<String, Delivery>,
    pub samples: Vec<Sample>,
    /// Attempts no node answered (refused everywhere, or cut mid-request).
    pub unanswered: u64,
}

#[derive(Clone)]
struct Front {
    nodes: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
    ledger: Arc<Mutex<Ledger>>,
    started: Instant,
}

pub struct FrontHandle {
    pub url: String,
    pub ledger: Arc<Mutex<Ledger>>,
    stop: CancellationToken,
}

impl FrontHandle {
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

pub async fn start(nodes: Vec<String>, started: Instant) -> anyhow::Result<FrontHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let front = Front {
        nodes: Arc::new(nodes),
        next: Arc::new(AtomicUsize::new(0)),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        ledger: ledger.clone(),
        started,
    };
    let stop = CancellationToken::new();
    let app = Router::new().fallback(forward).with_state(front);
    let s = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await;
    });
    Ok(FrontHandle { url, ledger, stop })
}

async fn forward(State(front): State<Front>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(body) = to_bytes(body, 4 << 20).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let msg_id = header(&parts.headers, "webhook-id");
    {
        let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let mut ledger = front.ledger.lock().expect("ledger lock");
        let d = ledger.deliveries.entry(msg_id.clone()).or_default();
        d.attempts += 1;
        if d.event_type.is_empty() {
            d.event_type = parsed["event_type"].as_str().unwrap_or("").to_string();
            d.object_id = parsed["data"]["id"].as_str().unwrap_or("").to_string();
        }
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let first = front.next.fetch_add(1, Ordering::Relaxed);
    for i in 0..front.nodes.len() {
        let node = &front.nodes[(first + i) % front.nodes.len()];
        let mut out = front
            .http
            .request(parts.method.clone(), format!("{node}{path}"))
            .body(body.clone());
        for (name, value) in &parts.headers {
            if name != "host" && name != "content-length" {
                out = out.header(name, value);
            }
        }
        let sent = Instant::now();
        match out.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let answer = resp.bytes().await.unwrap_or_default();
                let latency_us = sent.elapsed().as_micros() as u64;
                let mut ledger = front.ledger.lock().expect("ledger lock");
                ledger.samples.push(Sample {
                    at_ms: front.started.elapsed().as_millis() as u64,
                    latency_us,
                    status,
                });
                if (200..300).contains(&status) {
                    if let Some(d) = ledger.deliveries.get_mut(&msg_id) {
                        d.acked = true;
                    }
                }
                drop(ledger);
                return Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(answer))
                    .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
            }
            // The node is down: nothing was sent, the next node may take it.
            Err(e) if e.is_connect() => continue,
            Err(_) => break,
        }
    }
    front.ledger.lock().expect("ledger lock").unanswered += 1;
    StatusCode::BAD_GATEWAY.into_response()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Percentile (0–100) of a sorted slice, nearest rank.
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
