//! Store outages, from outside: a real `syncguard serve` talks to PostgreSQL through a TCP
//! proxy owned by the test, which cuts it off (refusing new connections and dropping open
//! ones) and later restores it. The shared server itself is never touched.
//!
//! SQLite has no outage test of this kind: an embedded file cannot become unreachable the way
//! a server can (the probe reads the same file the node writes).
//!
//! Also here: the API key cache (reads trust a verified key for `api.key_cache_ttl_ms`; writes
//! always ask the store) and bootstrap keys across starts, on both stores.

use crate::helpers::*;
use crate::process::Serve;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncguard::app::Handlers;
use syncguard::app::{bootstrap_key_from, Bootstrap};
use syncguard::clock::SystemClock;
use syncguard_core::signature::sign_standard;
use syncguard_store::testkit;
use syncguard_store::Backend;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

crate::on_both_stores!(
    reads_trust_a_verified_key_for_the_ttl_and_writes_never,
    bootstrap_key_follows_the_variable_across_starts,
);

const OPEN: u8 = 0;
/// New connections are closed at once, open ones dropped: connections fail fast.
const REFUSE: u8 = 1;
/// New connections are accepted and never answered, open ones freeze: every call hangs.
const BLACKHOLE: u8 = 2;

/// A TCP proxy in front of one upstream address that the test can cut and restore.
struct Proxy {
    addr: std::net::SocketAddr,
    mode: Arc<AtomicU8>,
    /// Cancelled on every change of mode; pipes and held sockets watch it.
    epoch: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(OPEN));
        let epoch = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (m, e, s) = (mode.clone(), epoch.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                    _ = s.cancelled() => break,
                };
                let now = e.lock().unwrap().clone();
                match m.load(Ordering::SeqCst) {
                    REFUSE => drop(client),
                    BLACKHOLE => {
                        tokio::spawn(async move {
                            now.cancelled().await;
                            drop(client);
                        });
                    }
                    _ => {
                        let (m, e, upstream) = (m.clone(), e.clone(), upstream.clone());
                        tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(&upstream).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                                _ = now.cancelled() => {}
                            }
                            if m.load(Ordering::SeqCst) == BLACKHOLE {
                                // Frozen: both ends stay open, nothing moves, until the next change.
                                let next = e.lock().unwrap().clone();
                                next.cancelled().await;
                            }
                        });
                    }
                }
            }
        });
        Proxy {
            addr,
            mode,
            epoch,
            stop,
        }
    }

    fn set(&self, mode: u8) {
        let mut epoch = self.epoch.lock().unwrap();
        self.mode.store(mode, Ordering::SeqCst);
        epoch.cancel();
        *epoch = CancellationToken::new();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.set(REFUSE);
    }
}

/// `postgres://u@host:port/db` → (`host:port`, the url with `host:port` replaced by `via`).
fn through(url: &str, via: &str) -> (String, String) {
    let after_scheme = url.find("://").unwrap() + 3;
    let rest = &url[after_scheme..];
    let host_start = rest.find('@').map(|i| i + 1).unwrap_or(0);
    let host_end = rest[host_start..]
        .find('/')
        .map(|i| i + host_start)
        .unwrap_or(rest.len());
    let mut upstream = rest[host_start..host_end].to_string();
    if !upstream.contains(':') {
        upstream.push_str(":5432");
    }
    let proxied = format!(
        "{}{}{via}{}",
        &url[..after_scheme],
        &rest[..host_start],
        &rest[host_end..]
    );
    (upstream, proxied)
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn webhook(client: &reqwest::Client, base: &str, conn: &str, n: u32) -> reqwest::Response {
    let body = json!({ "event_type": "test.ping", "data": { "id": format!("p{n}") } }).to_string();
    let id = format!("msg_{n}");
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    client
        .post(format!("{base}/v1/webhooks/{conn}"))
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign_standard(SECRET, &id, ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(client: &reqwest::Client, url: String, key: &str) -> (u16, Value) {
    send(client.get(url).bearer_auth(key)).await
}

async fn store_up(client: &reqwest::Client, base: &str) -> Option<i64> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("syncguard_store_up "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_fast_keeps_health_and_recovers() {
    let db = testkit::fresh(Backend::Postgres).await;
    let (upstream, _) = through(&db.url, "");
    let proxy = Proxy::start(upstream).await;
    let (_, url) = through(&db.url, &proxy.addr.to_string());
    let dir = tempfile::tempdir().unwrap();
    let mut node = Serve::start(
        &url,
        dir.path(),
        &[("SYNCGUARD_QUEUE_SHUTDOWN_GRACE_MS", "2000")],
    )
    .await;
    let base = node.url.clone();
    let client = reqwest::Client::new();

    // A tenant, its viewer key (used once, so this node has verified it) and a connection.
    let (s, t) = send(
        client
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "name": "acme" })),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let tenant = t["id"].as_str().unwrap();
    let (s, k) = send(
        client
            .post(format!("{base}/v1/keys"))
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "tenant_id": tenant, "role": "viewer", "name": "watcher" })),
    )
    .await;
    assert_eq!(s, 201, "{k}");
    let viewer = k["key"].as_str().unwrap().to_string();
    let body = json!({ "tenant_id": tenant, "provider": "trackstar", "name": "brand_1", "config": { "webhook": { "secrets": [SECRET] } } });
    let (s, c) = send(
        client
            .post(format!("{base}/v1/connections"))
            .bearer_auth(PLATFORM_KEY)
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_string();
    assert_eq!(webhook(&client, &base, &conn, 1).await.status(), 202);
    let before = eventually(Duration::from_secs(20), "a first health snapshot", || {
        let (client, base, viewer) = (client.clone(), base.clone(), viewer.clone());
        async move {
            let (s, h) = get(&client, format!("{base}/v1/health"), &viewer).await;
            (s == 200 && h["aggregate"]["total"] == 1).then_some(h)
        }
    })
    .await;
    assert_eq!(before["stale"], false, "{before}");
    assert_eq!(before["store"], json!({ "reachable": true, "since": null }));
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(store_up(&client, &base).await, Some(1));

    // Cut the store off.
    proxy.set(REFUSE);
    let cut_at = Instant::now();
    eventually(Duration::from_secs(5), "/readyz not ready", || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client.get(format!("{base}/readyz")).send().await.ok()?;
            (r.status() == 503).then_some(())
        }
    })
    .await;
    let readyz_after = cut_at.elapsed();
    // Once known down, readyz answers at once.
    let t = Instant::now();
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    let readyz_latency = t.elapsed();
    assert_eq!(r.status(), 503);
    assert!(
        readyz_latency < Duration::from_secs(1),
        "{readyz_latency:?}"
    );

    let mut slowest = Duration::ZERO;
    for n in 2..12 {
        let t = Instant::now();
        let r = webhook(&client, &base, &conn, n).await;
        let took = t.elapsed();
        slowest = slowest.max(took);
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    assert!(
        slowest < Duration::from_secs(1),
        "webhook 503 took {slowest:?}"
    );

    let t = Instant::now();
    let (s, h) = get(&client, format!("{base}/v1/health"), &viewer).await;
    let health_latency = t.elapsed();
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["stale"], true, "{h}");
    assert_eq!(h["store"]["reachable"], false, "{h}");
    assert!(h["store"]["since"].is_string(), "{h}");
    assert_eq!(
        h["generated_at"], before["generated_at"],
        "the last snapshot"
    );
    assert_eq!(h["aggregate"]["total"], 1);
    assert!(
        health_latency < Duration::from_secs(1),
        "{health_latency:?}"
    );
    // A key this node never verified cannot be checked: a quick 503, not a hang.
    let t = Instant::now();
    let (s, _) = get(
        &client,
        format!("{base}/v1/jobs"),
        "sg_live_never_seen_key_000000000000",
    )
    .await;
    assert_eq!(s, 503);
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(
        store_up(&client, &base).await,
        Some(0),
        "{}",
        node.log_text()
    );
    eprintln!(
        "measured: readyz not ready {readyz_after:?} after the cut, then answers in {readyz_latency:?}; \
         slowest of 10 webhook 503s {slowest:?}; stale health {health_latency:?}"
    );

    // Restore: everything comes back by itself.
    restore_and_recover(&proxy, &client, &base, &conn, &viewer, 100).await;

    // A black hole this time: nothing is refused, every call would hang. The probe's timeouts
    // mark the store down; from then on nothing waits.
    proxy.set(BLACKHOLE);
    let cut_at = Instant::now();
    for _ in 0..3 {
        let t = Instant::now();
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 503, "a store that does not answer is not ready");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "readyz took {:?}",
            t.elapsed()
        );
    }
    eventually(
        Duration::from_secs(10),
        "the probe to mark the store down",
        || {
            let (client, base) = (client.clone(), base.clone());
            async move { (store_up(&client, &base).await == Some(0)).then_some(()) }
        },
    )
    .await;
    let marked_after = cut_at.elapsed();
    let mut slowest = Duration::ZERO;
    for n in 200..210 {
        let t = Instant::now();
        let r = webhook(&client, &base, &conn, n).await;
        slowest = slowest.max(t.elapsed());
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
    }
    assert!(
        slowest < Duration::from_secs(1),
        "webhook 503 took {slowest:?}"
    );
    let (s, h) = get(&client, format!("{base}/v1/health"), &viewer).await;
    assert_eq!(
        (s, &h["stale"], &h["store"]["reachable"]),
        (200, &json!(true), &json!(false)),
        "{h}"
    );
    eprintln!("measured (black hole): store marked down {marked_after:?} after the cut; slowest of 10 webhook 503s {slowest:?}");
    restore_and_recover(&proxy, &client, &base, &conn, &viewer, 300).await;

    // SIGTERM: a clean exit within the drain deadline (grace 2 s + 2 s).
    let stopped = Instant::now();
    assert!(Command::new("kill")
        .args(["-TERM", &node.child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let status = node.child.wait().unwrap();
        (status, node)
    })
    .await
    .unwrap();
    assert_eq!(status.0.code(), Some(0), "{}", status.1.log_text());
    assert!(
        stopped.elapsed() < Duration::from_secs(6),
        "{:?}",
        stopped.elapsed()
    );
    assert!(
        !status.1.log_text().contains("did not stop in time"),
        "{}",
        status.1.log_text()
    );
}

/// Opens the proxy again and waits for webhooks, readiness, fresh health and the gauge.
async fn restore_and_recover(
    proxy: &Proxy,
    client: &reqwest::Client,
    base: &str,
    conn: &str,
    viewer: &str,
    n: u32,
) {
    proxy.set(OPEN);
    let back = Instant::now();
    eventually(
        Duration::from_secs(20),
        "a webhook acknowledged again",
        || async { (webhook(client, base, conn, n).await.status() == 202).then_some(()) },
    )
    .await;
    eprintln!(
        "measured: webhooks accepted {:?} after the restore",
        back.elapsed()
    );
    assert_eq!(
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    eventually(Duration::from_secs(20), "fresh health", || async {
        let (s, h) = get(client, format!("{base}/v1/health"), viewer).await;
        (s == 200 && h["stale"] == false && h["store"]["reachable"] == true).then_some(())
    })
    .await;
    assert_eq!(store_up(client, base).await, Some(1));
}

async fn reads_trust_a_verified_key_for_the_ttl_and_writes_never(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        |c| c.api.key_cache_ttl_ms = 1_500,
        Arc::new(SystemClock),
        Handlers::builtin(),
    )
    .await;
    let (_, key) = app.tenant_with_key("acme", "admin").await;
    assert_eq!(app.get("/v1/jobs", &key).await.0, 200);
    let (_, keys) = app.get("/v1/keys", &key).await;
    let id = keys["data"][0]["id"].as_str().unwrap().to_string();
    // Revoked behind this node's back (as another node would): a write notices at once…
    app.db
        .store
        .revoke_api_key(&syncguard_store::Scope::All, &id, 1)
        .await
        .unwrap();
    let (s, _) = send(
        app.req(Method::POST, "/v1/tenants", &key)
            .json(&json!({ "name": "sneaky" })),
    )
    .await;
    assert_eq!(s, 401, "writes always ask the store");
    // …and so does a read, once the store has said no (the entry is evicted).
    assert_eq!(app.get("/v1/jobs", &key).await.0, 401);

    // A read-only key revoked elsewhere keeps reading until its entry expires, not longer.
    let (tenant, _) = app.tenant_with_key("globex", "viewer").await;
    let viewer = app.key_for(&tenant, "viewer", None).await;
    assert_eq!(app.get("/v1/jobs", &viewer).await.0, 200);
    let hash = syncguard_core::ids::hash_api_key(&viewer);
    let cached = app
        .app
        .api_keys
        .get(&hash, syncguard::services::key_cache::Freshness::WithinTtl)
        .expect("verified and cached");
    app.db
        .store
        .revoke_api_key(&syncguard_store::Scope::All, &cached.id, 1)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the cached key to expire",
        || async { (app.get("/v1/jobs", &viewer).await.0 == 401).then_some(()) },
    )
    .await;
    app.stop().await;
}

async fn bootstrap_key_follows_the_variable_across_starts(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let s = &db.store;
    let k1 = "sg_live_env_bootstrap_one_000000000".to_string();
    let k2 = "sg_live_env_bootstrap_two_000000000".to_string();
    // An empty store without the variable gets a generated key.
    let Bootstrap::Generated(generated) = bootstrap_key_from(s, None, 1).await.unwrap() else {
        panic!("an empty store gets a generated key")
    };
    assert_eq!(
        bootstrap_key_from(s, None, 2).await.unwrap(),
        Bootstrap::Existing { revoked: 0 },
        "the generated key is not revoked by the variable being unset"
    );
    assert!(s.authenticate(&generated).await.unwrap().is_some());
    assert_eq!(
        bootstrap_key_from(s, Some(k1.clone()), 3).await.unwrap(),
        Bootstrap::FromEnv
    );
    assert!(
        s.authenticate(&generated).await.unwrap().is_none(),
        "replaced by the variable"
    );
    assert_eq!(
        bootstrap_key_from(s, Some(k1.clone()), 4).await.unwrap(),
        Bootstrap::FromEnvKept
    );
    // Changed: the old one is revoked.
    assert_eq!(
        bootstrap_key_from(s, Some(k2.clone()), 5).await.unwrap(),
        Bootstrap::FromEnv
    );
    assert!(s.authenticate(&k1).await.unwrap().is_none());
    assert!(s.authenticate(&k2).await.unwrap().is_some());
    // Revoked through the API: stays revoked on the next start.
    let live = s.authenticate(&k2).await.unwrap().unwrap();
    s.revoke_api_key(&syncguard_store::Scope::All, &live.id, 6)
        .await
        .unwrap();
    assert_eq!(
        bootstrap_key_from(s, Some(k2.clone()), 7).await.unwrap(),
        Bootstrap::FromEnvRevoked
    );
    assert!(s.authenticate(&k2).await.unwrap().is_none());
    // Removed: the key it named is revoked.
    assert_eq!(
        bootstrap_key_from(s, Some(k1.clone()), 8).await.unwrap(),
        Bootstrap::FromEnvRevoked
    );
    let k3 = "sg_live_env_bootstrap_three_0000000".to_string();
    assert_eq!(
        bootstrap_key_from(s, Some(k3.clone()), 9).await.unwrap(),
        Bootstrap::FromEnv
    );
    assert_eq!(
        bootstrap_key_from(s, None, 10).await.unwrap(),
        Bootstrap::Existing { revoked: 1 }
    );
    assert!(s.authenticate(&k3).await.unwrap().is_none());
    assert!(bootstrap_key_from(s, Some("short".into()), 11)
        .await
        .is_err());
}

#[test]
fn urls_are_rewritten_through_the_proxy() {
    assert_eq!(
        through("postgres://postgres@127.0.0.1:5432/sg_t_1", "127.0.0.1:9"),
        (
            "127.0.0.1:5432".to_string(),
            "postgres://postgres@127.0.0.1:9/sg_t_1".to_string()
        )
    );
    assert_eq!(
        through("postgres://localhost/x?sslmode=disable", "h:1").1,
        "postgres://h:1/x?sslmode=disable"
    );
}
