//! The application's side of a chaos run: API calls through whichever node answers, a steady
//! stream of desired-state PUTs (the publish path), and manual syncs.
//!
//! The publisher keeps a ledger per SKU: every document it sent, and whether a node
//! acknowledged it. A PUT that got no answer (node killed mid-request, timeout) is *ambiguous*:
//! it may have been committed. The final check accepts, per SKU, the last acknowledged
//! document or any ambiguous one sent after it — and nothing else.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The API of the cluster, with the platform key; each call goes to the next node and fails
/// over to the others when a node does not answer.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    nodes: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    key: String,
}

/// An answer, or no answer at all (every node unreachable, or the request cut).
pub enum Answer {
    Got(u16, Value),
    None(String),
}

impl Api {
    pub fn new(nodes: Vec<String>, key: &str) -> anyhow::Result<Api> {
        Ok(Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()?,
            nodes: Arc::new(nodes),
            next: Arc::new(AtomicUsize::new(0)),
            key: key.to_string(),
        })
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        let mut last = String::from("no node");
        for i in 0..self.nodes.len() {
            let node = &self.nodes[(first + i) % self.nodes.len()];
            let mut req = self
                .http
                .request(method.clone(), format!("{node}{path}"))
                .bearer_auth(&self.key);
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let v = resp.json().await.unwrap_or(Value::Null);
                    return Answer::Got(status, v);
                }
                Err(e) if e.is_connect() => {
                    last = format!("{node}: {e}");
                    continue;
                }
                Err(e) => return Answer::None(format!("{node}: {e}")),
            }
        }
        Answer::None(last)
    }

    /// A call that must succeed (setup and verification): retried for up to a minute through
    /// outages, then an error naming the last answer.
    pub async fn must(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let mut last = String::new();
        for _ in 0..120 {
            match self.call(method.clone(), path, body).await {
                Answer::Got(s, v) if (200..300).contains(&s) => return Ok(v),
                Answer::Got(s, v) if s >= 500 => last = format!("{s} {v}"),
                Answer::Got(s, v) => bail!("{method} {path} answered {s}: {v}"),
                Answer::None(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("{method} {path} kept failing: {last}")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.must(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.must(reqwest::Method::POST, path, Some(&body)).await
    }

    /// Every item of a paged list (`{"data", "next_cursor"}`); `path` already has its query.
    pub async fn list_all(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = cursor
                .as_ref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default();
            let page = self.get(&format!("{path}{sep}limit=500{q}")).await?;
            out.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(out),
            }
        }
    }
}

/// One desired document sent for a SKU.
#[derive(Debug, Clone)]
pub struct Sent {
    pub doc: Value,
    /// Acknowledged 2xx; `false` means no answer came (it may have been committed).
    pub acked: bool,
}

/// Per SKU, the documents that may be the final desired state, oldest first.
#[derive(Default)]
pub struct PublishLedger {
    pub skus: BTreeMap<String, Vec<Sent>>,
    pub acked: u64,
    pub ambiguous: u64,
    pub refused: BTreeMap<u16, u64>,
}

impl PublishLedger {
    /// The documents the final state may be: the last acknowledged one and every unanswered
    /// one after it.
    pub fn candidates(&self, sku: &str) -> Vec<Value> {
        let Some(sent) = self.skus.get(sku) else {
            return Vec::new();
        };
        let from = sent.iter().rposition(|s| s.acked).unwrap_or(0);
        sent[from..].iter().map(|s| s.doc.clone()).collect()
    }
}

/// An inventory item as the eBay-shaped mock accepts it; `seq` makes every document unique.
pub fn item(sku_index: usize, seq: u64) -> Value {
    json!({
        "product": {"title": format!("Chaos item {sku_index}"), "aspects": {"batch": [seq.to_string()]}},
        "availability": {"shipToLocationAvailability": {"quantity": seq}},
        "condition": "NEW",
    })
}

pub fn sku(i: usize) -> String {
    format!("CHAOS-{i}")
}

/// PUTs a new desired document for a random SKU every `every`, until `stop`.
pub async fn publisher(
    api: Api,
    connection: String,
    skus: usize,
    every: Duration,
    ledger: Arc<Mutex<PublishLedger>>,
    stop: CancellationToken,
) {
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(every);
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        seq += 1;
        let i = rand::random::<usize>() % skus;
        let doc = item(i, seq);
        let path = format!(
            "/v1/connections/{connection}/desired/inventory_item/{}",
            sku(i)
        );
        let answer = api.call(reqwest::Method::PUT, &path, Some(&doc)).await;
        let mut l = ledger.lock().expect("publish ledger");
        match answer {
            Answer::Got(s, _) if (200..300).contains(&s) => {
                l.acked += 1;
                l.skus
                    .entry(sku(i))
                    .or_default()
                    .push(Sent { doc, acked: true });
            }
            // A clear refusal (503 while the store is away): nothing was written.
            Answer::Got(s, _) => *l.refused.entry(s).or_default() += 1,
            Answer::None(_) => {
                l.ambiguous += 1;
                l.skus
                    .entry(sku(i))
                    .or_default()
                    .push(Sent { doc, acked: false });
            }
        }
    }
}

/// Asks for an incremental sync of `connection` every `every` (answers are not checked: during
/// an outage the request is refused, and that is fine).
pub async fn syncer(api: Api, connection: String, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while !stop.is_cancelled() {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => break,
        }
        let _ = api
            .call(
                reqwest::Method::POST,
                &format!("/v1/connections/{connection}/sync"),
                Some(&json!({})),
            )
            .await;
    }
}

/// The provider's control plane (`/_mock/*`).
#[derive(Clone)]
pub struct MockControl {
    http: reqwest::Client,
    url: String,
}

impl MockControl {
    pub fn new(url: &str) -> MockControl {
        MockControl {
            http: reqwest::Client::new(),
            url: url.to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("mock {path}"))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("mock {path} answered {status}: {v}");
        }
        Ok(v)
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .with_context(|| format!("mock {path}"))?;
        Ok(resp.json().await?)
    }

    pub async fn stats(&self) -> anyhow::Result<syncguard_mock::Stats> {
        Ok(serde_json::from_value(self.get("/_mock/stats").await?)?)
    }
}
