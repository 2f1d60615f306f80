//! The publish path from outside: desired state over HTTP, publishing to the eBay-shaped mock
//! provider, snapshots and diffs, reconciliation and drift, the integrity audit; on both stores.
//!
//! - `desired`: hashing, unchanged/duplicate/enqueued, debouncing 1 000 edits, access, failures.
//! - `crash`: `kill -9` mid-publish with faults, and a lost outcome checked before rewriting.
//! - `reconcile`: the four classifications and the three policies, yielding to the limiter.
//! - `snapshots`: capture, dedup, patches, diffs, tenancy.
//! - `integrity`: corrupted rows caught by the audit.

mod crash;
mod desired;
mod integrity;
mod reconcile;
mod snapshots;

use crate::helpers::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use syncguard_mock::{MockConfig, MockHandle};

/// An eBay-shaped mock with room for fast tests (its limit is not what is tested here).
pub async fn ebay_mock() -> MockHandle {
    syncguard_mock::spawn(MockConfig {
        rate_limit_rps: 200.0,
        rate_limit_burst: 100,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// An inventory item as the mock accepts it.
pub fn item(title: &str, quantity: u64) -> Value {
    json!({
        "product": {"title": title, "aspects": {"colour": ["blue"]}},
        "availability": {"shipToLocationAvailability": {"quantity": quantity}},
        "condition": "NEW",
    })
}

/// A tenant with admin, operator and viewer keys, and an eBay connection to `mock` whose config
/// has `extra` merged in (fast limits and a short publish debounce unless `extra` says
/// otherwise). Returns `(connection id, keys)`.
pub async fn ebay_connection(app: &TestApp, mock: &MockHandle, extra: Value) -> (String, Keys) {
    let (tenant, admin) = app
        .tenant_with_key(&format!("t{}", uuid::Uuid::new_v4().simple()), "admin")
        .await;
    let operator = app.key_for(&tenant, "operator", None).await;
    let viewer = app.key_for(&tenant, "viewer", None).await;
    let mut config = json!({
        "base_url": mock.base_url,
        "rate_limit": {"rps": 100, "burst": 50},
        "publish_debounce_ms": 50,
    });
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    let body = json!({
        "provider": "ebay",
        "name": format!("ebay_{}", uuid::Uuid::new_v4().simple()),
        "credentials": {"client_id": "app-id", "client_secret": "app-secret", "refresh_token": "v^1.1#r^1#refresh"},
        "config": config,
    });
    let (s, c) = app.post("/v1/connections", &admin, body).await;
    assert_eq!(s, 201, "{c}");
    let keys = Keys {
        tenant,
        operator,
        viewer,
    };
    (c["id"].as_str().unwrap().to_string(), keys)
}

pub struct Keys {
    pub tenant: String,
    pub operator: String,
    pub viewer: String,
}

pub fn desired_path(connection: &str, sku: &str) -> String {
    format!("/v1/connections/{connection}/desired/inventory_item/{sku}")
}

/// `PUT` of a desired state; returns (status, answer).
pub async fn put_desired(
    url: &str,
    key: &str,
    connection: &str,
    sku: &str,
    body: &Value,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    send(
        client
            .request(
                Method::PUT,
                format!("{url}{}", desired_path(connection, sku)),
            )
            .bearer_auth(key)
            .json(body),
    )
    .await
}

/// Waits until the desired state of `sku` is published with `hash`; returns it. On timeout,
/// fails with the last answer and the connection's jobs.
pub async fn published(url: &str, key: &str, connection: &str, sku: &str, hash: &str) -> Value {
    let client = reqwest::Client::new();
    let get = |path: String| send(client.get(format!("{url}{path}")).bearer_auth(key));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (s, d) = get(desired_path(connection, sku)).await;
        if s == 200 && d["status"] == "published" && d["last_published_hash"] == hash {
            return d;
        }
        if tokio::time::Instant::now() > deadline {
            let (_, jobs) = get(format!("/v1/jobs?connection_id={connection}")).await;
            panic!("{sku} not published with {hash}: {s} {d}\njobs: {jobs:#}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The mock's item `sku` restricted to the fields of `like` (the mock adds `sku`).
pub fn mock_item(mock: &MockHandle, sku: &str, like: &Value) -> Option<Value> {
    mock.state()
        .inventory_item(sku)
        .map(|r| syncguard::services::publish::classify::project(&r, like))
}

/// A counter of the app's `/metrics`, summed over series whose labels include `labels`.
pub async fn counter(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> u64 {
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
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The content hash syncguard gives `value`.
pub fn hash_of(value: &Value) -> String {
    syncguard_core::canonical::content_hash(value)
}
