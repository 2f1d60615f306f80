//! The provider layer from outside: real calls to the mock provider (and to tiny axum servers
//! for what the mock lacks), over HTTP where there is an API, on both stores.
//!
//! - `limits`: the rate limiter at full demand, in a 429 storm, and shared by two nodes.
//! - `circuits`: the breaker opening, probing and closing; 4xx; forcing.
//! - `auth`: OAuth2 refresh, writes, sealed credentials and key rotation.
//! - `pagination`: every style, every item exactly once.
//! - `egress`: the egress policy (base URLs, production allowlist, path segments, size limit).

mod auth;
mod circuits;
mod egress;
mod limits;
mod pagination;

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard::app::App;
use syncguard::app::Handlers;
use syncguard::clock::SystemClock;
use syncguard::provider::ProviderClient;
use syncguard_mock::{MockConfig, MockHandle};
use syncguard_store::Backend;

crate::on_both_stores!(providers_are_listed_for_viewers);

pub async fn mock(rps: f64, records: usize) -> MockHandle {
    syncguard_mock::spawn(MockConfig {
        rate_limit_rps: rps,
        rate_limit_burst: 10,
        records,
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Throughput tests measure a rate against the wall clock; they take turns so that they do not
/// starve each other of the machine's (two) cores and measure that instead of the limiter.
pub static THROUGHPUT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn trackstar_creds() -> Value {
    json!({"api_key": "tsk_test_key_000001", "access_token": "tat_test_token_000001"})
}

/// Creates a connection through the API; returns its id. It mirrors no resource
/// (`resources: []`): the engine's own syncs would otherwise share the mock, the limiter and the
/// breaker with the calls a test makes and counts.
pub async fn connect(
    app: &TestApp,
    admin: &str,
    provider: &str,
    credentials: Value,
    mut config: Value,
) -> String {
    config["resources"] = json!([]);
    let name = format!("{provider}_{}", uuid::Uuid::new_v4().simple());
    let body =
        json!({"provider": provider, "name": name, "credentials": credentials, "config": config});
    let (s, c) = app.post("/v1/connections", admin, body).await;
    assert_eq!(s, 201, "{c}");
    c["id"].as_str().unwrap().to_string()
}

pub async fn client(app: &App, id: &str) -> Arc<ProviderClient> {
    Arc::new(app.providers.client_by_id(app, id).await.unwrap())
}

/// `tasks` callers list orders back to back for `span`; returns the calls that succeeded and
/// how long it took until the last one returned.
pub async fn hammer(client: Arc<ProviderClient>, tasks: usize, span: Duration) -> (u64, Duration) {
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move {
                let mut ok = 0;
                while start.elapsed() < span {
                    c.list_page("orders", None, None)
                        .await
                        .unwrap_or_else(|e| panic!("call failed: {e}"));
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    (total, start.elapsed())
}

/// Serves `router` on port 0; returns its base URL.
pub async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

/// Writes provider definition files into `dir`; returns their paths for `provider_files`.
pub fn definitions(dir: &tempfile::TempDir, defs: &[(&str, String)]) -> Vec<String> {
    defs.iter()
        .map(|(name, text)| {
            let path = dir.path().join(format!("{name}.toml"));
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        })
        .collect()
}

pub const LIMIT: &str = "[rate_limit]\nrps = 100\nburst = 10\n";

pub async fn spawn_with_definitions(backend: Backend, files: Vec<String>) -> TestApp {
    TestApp::spawn_with(
        backend,
        move |c| c.provider_files = files,
        Arc::new(SystemClock),
        Handlers::builtin(),
    )
    .await
}

async fn providers_are_listed_for_viewers(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, viewer) = app.tenant_with_key("acme", "viewer").await;
    let (s, list) = app.get("/v1/providers", &viewer).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["next_cursor"], Value::Null);
    let by_name: HashMap<&str, &Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p))
        .collect();
    let t = by_name["trackstar"];
    assert_eq!(
        (
            t["kind"].as_str(),
            t["auth"].as_str(),
            t["pagination"].as_str()
        ),
        (Some("api"), Some("api_key"), Some("next_token"))
    );
    assert_eq!(t["rate_limit"]["rps"], 10.0);
    assert_eq!(
        t["resources"],
        json!(["inbound-shipments", "inventory", "orders", "products"])
    );
    assert!(t["webhook"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "order.*"));
    let e = by_name["ebay"];
    assert_eq!(
        (e["auth"].as_str(), e["pagination"].as_str()),
        (Some("oauth2"), Some("offset"))
    );
    assert_eq!(
        e["writes"],
        json!(["delete_inventory_item", "upsert_inventory_item"])
    );
    for hooks in ["shopify", "stripe", "github"] {
        assert_eq!(by_name[hooks]["kind"], "webhook");
        assert_eq!(by_name[hooks]["webhook"]["scheme"], hooks);
    }
    assert_eq!(app.get("/v1/providers", "sg_live_nope").await.0, 401);
    app.stop().await;
}
