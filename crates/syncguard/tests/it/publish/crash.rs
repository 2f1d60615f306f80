//! Publishing through crashes and provider faults, without duplicate writes.

use super::*;
use crate::process::Serve;
use std::collections::BTreeMap;
use syncguard_mock::FaultsPatch;
use syncguard_store::publish::{publish_job_key, ObjectKey};
use syncguard_store::queue::NewJob;
use syncguard_store::{testkit, Backend};

crate::on_both_stores!(
    killed_mid_publish_every_object_ends_published_once_despite_faults,
    a_write_whose_outcome_was_lost_is_checked_before_writing_again
);

/// Per-object final states of a round of edits.
fn round(skus: &[String], round: u64) -> BTreeMap<String, Value> {
    skus.iter()
        .enumerate()
        .map(|(i, sku)| {
            (
                sku.clone(),
                item(&format!("Item {i}"), round * 100 + i as u64),
            )
        })
        .collect()
}

async fn killed_mid_publish_every_object_ends_published_once_despite_faults(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mock = ebay_mock().await;
    // Slow answers keep writes in flight when the node dies; 5xx and held-then-504 answers
    // make every object go through retries (injected faults never apply the write).
    mock.state()
        .set_faults(&FaultsPatch {
            latency_ms: Some(150),
            error_rate: Some(0.15),
            error_status: Some(503),
            timeout_rate: Some(0.05),
            timeout_ms: Some(300),
            ..Default::default()
        })
        .unwrap();
    let env = [
        ("SYNCGUARD_QUEUE_RETRY_BASE_MS", "100"),
        ("SYNCGUARD_QUEUE_RETRY_CAP_MS", "1000"),
        ("SYNCGUARD_QUEUE_MAX_ATTEMPTS", "40"),
    ];
    let mut first = Serve::start(&db.url, dir.path(), &env).await;
    let app = Remote::new(&first.url);
    let (tenant, operator) = app.tenant_with_key().await;
    let config = json!({
        "base_url": mock.base_url,
        "rate_limit": {"rps": 20, "burst": 10},
        "publish_debounce_ms": 200,
        // Faults are the point here: keep the breaker from pausing the test for a minute.
        "circuit": {"min_calls": 1000, "failure_threshold": 1000},
    });
    let (s, c) = app
        .post(
            "/v1/connections",
            &operator.0,
            json!({"tenant_id": tenant, "provider": "ebay", "name": "crashy", "config": config,
                   "credentials": {"client_id": "a", "client_secret": "b", "refresh_token": "r"}}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let conn = c["id"].as_str().unwrap().to_string();
    let skus: Vec<String> = (0..24).map(|i| format!("CRASH-{i}")).collect();
    let mut finals = round(&skus, 1);
    for (sku, body) in &finals {
        let (s, a) = put_desired(&first.url, &operator.1, &conn, sku, body).await;
        assert_eq!(s, 202, "{a}");
    }
    eventually(Duration::from_secs(60), "some writes to land", || async {
        (mock.stats().writes_applied >= 4).then_some(())
    })
    .await;
    first.kill9();
    let applied_at_kill = mock.stats().writes_applied;
    assert!(
        applied_at_kill < skus.len() as u64,
        "killed mid-publish, not after"
    );

    let second = Serve::start(&db.url, dir.path(), &env).await;
    // More edits after the crash: half the objects get a newer final state.
    let newer = round(&skus[..skus.len() / 2], 2);
    for (sku, body) in &newer {
        let (s, a) = put_desired(&second.url, &operator.1, &conn, sku, body).await;
        assert!(s == 202 || s == 200, "{s} {a}");
    }
    finals.extend(newer);
    for (sku, body) in &finals {
        published(&second.url, &operator.1, &conn, sku, &hash_of(body)).await;
        assert_eq!(mock_item(&mock, sku, body).as_ref(), Some(body), "{sku}");
    }
    let stats = mock.stats();
    let metrics = reqwest::get(format!("{}/metrics", second.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let publishes: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("syncguard_publishes_total"))
        .collect();
    eprintln!("applied at kill: {applied_at_kill}; after restart: {publishes:?}; mock: {stats:?}");
    assert_eq!(stats.duplicate_writes, 0, "{stats:?}");
    assert!(stats.writes_applied >= skus.len() as u64, "{stats:?}");
    assert!(
        stats.by_status.get("503").copied().unwrap_or(0) > 0,
        "faults were injected: {stats:?}"
    );
    drop(second);
    mock.shutdown().await;
}

/// The `syncguard serve` process's API, with the platform key.
struct Remote {
    url: String,
    client: reqwest::Client,
}

impl Remote {
    fn new(url: &str) -> Remote {
        Remote {
            url: url.to_string(),
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        send(
            self.client
                .post(format!("{}{path}", self.url))
                .bearer_auth(key)
                .json(&body),
        )
        .await
    }

    /// A tenant and an operator key in it: `(tenant, (platform key, operator key))`.
    async fn tenant_with_key(&self) -> (String, (String, String)) {
        let (s, t) = self
            .post("/v1/tenants", PLATFORM_KEY, json!({"name": "crash"}))
            .await;
        assert_eq!(s, 201, "{t}");
        let tenant = t["id"].as_str().unwrap().to_string();
        let (s, k) = self
            .post(
                "/v1/keys",
                PLATFORM_KEY,
                json!({"tenant_id": tenant, "role": "operator", "name": "op"}),
            )
            .await;
        assert_eq!(s, 201, "{k}");
        let key = k["key"].as_str().unwrap().to_string();
        (tenant, (PLATFORM_KEY.to_string(), key))
    }
}

async fn a_write_whose_outcome_was_lost_is_checked_before_writing_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    // A long debounce holds the publish job while the test plays the lost attempt.
    let (conn, keys) = ebay_connection(&app, &mock, json!({"publish_debounce_ms": 600_000})).await;
    let body = item("Lost", 7);
    let (s, a) = put_desired(&app.url, &keys.operator, &conn, "LOST-1", &body).await;
    assert_eq!(s, 202, "{a}");
    let hash = hash_of(&body);
    // An attempt noted the state, reached the provider, and its worker died before recording.
    let key = ObjectKey {
        tenant_id: &keys.tenant,
        connection_id: &conn,
        resource: "inventory_item",
        external_id: "LOST-1",
    };
    app.app
        .store
        .mark_publish_attempt(key, &hash)
        .await
        .unwrap();
    let client = app
        .app
        .providers
        .client_by_id(&app.app, &conn)
        .await
        .unwrap();
    client
        .write("upsert_inventory_item", "LOST-1", Some(&body), None)
        .await
        .unwrap();
    assert_eq!(mock.stats().writes_applied, 1);
    // Its retry runs now.
    let mut retry = NewJob::new(
        "publish",
        json!({"connection_id": conn, "resource": "inventory_item", "external_id": "LOST-1"}),
    );
    retry.unique_key = Some(publish_job_key(&conn, "inventory_item", "LOST-1"));
    retry.debounce_ms = Some(0);
    let now = app.app.clock.now_ms();
    let e = app.app.store.enqueue(&retry, now).await.unwrap();
    assert!(e.deduplicated, "the held job is the one that runs");
    app.app.job_notify.notify_one();
    published(&app.url, &keys.viewer, &conn, "LOST-1", &hash).await;
    let stats = mock.stats();
    assert_eq!(
        (stats.writes_applied, stats.duplicate_writes),
        (1, 0),
        "recorded without writing again"
    );
    assert_eq!(
        counter(
            &app,
            "syncguard_publishes_total",
            &[("outcome", "already_applied")]
        )
        .await,
        1
    );
    let (_, snaps) = app
        .get(&format!("/v1/snapshots?connection_id={conn}"), &keys.viewer)
        .await;
    assert_eq!(snaps["data"].as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps["data"][0]["source"], "publish");
    mock.shutdown().await;
    app.stop().await;
}
