//! Reconciliation: the four classifications, the three policies, and yielding to the limiter.

use super::*;
use std::collections::HashMap;
use syncguard_store::queue::JobState;
use syncguard_store::{Backend, Scope};

crate::on_both_stores!(
    report_classifies_each_object_and_changes_nothing,
    local_wins_publishes_the_desired_state_again,
    remote_wins_adopts_the_remote_state,
    reconcile_yields_while_the_rate_limit_is_near_depletion
);

/// Four published objects, then: one left alone, one changed locally (publish held back by a
/// long debounce), one changed on the provider behind our back, one changed on both sides.
/// Returns the local and remote states by sku.
struct Scene {
    conn: String,
    keys: Keys,
    local: HashMap<&'static str, Value>,
    remote: HashMap<&'static str, Value>,
}

async fn scene(app: &TestApp, mock: &MockHandle, policy: &str) -> Scene {
    let (conn, keys) = ebay_connection(app, mock, json!({"reconcile_policy": policy})).await;
    let skus = ["SYNC", "INT", "EXT", "BOTH"];
    for sku in skus {
        let body = item(sku, 1);
        put_desired(&app.url, &keys.operator, &conn, sku, &body).await;
        published(&app.url, &keys.viewer, &conn, sku, &hash_of(&body)).await;
    }
    // Hold later local publishes back, so that the local changes stay unpublished.
    let store = &app.app.store;
    let mut config = store
        .get_connection(&Scope::All, None, &conn)
        .await
        .unwrap()
        .unwrap()
        .config;
    config["publish_debounce_ms"] = json!(600_000);
    store
        .set_connection_config(&conn, &config, app.app.clock.now_ms())
        .await
        .unwrap();
    let mut local = HashMap::new();
    let mut remote = HashMap::new();
    for sku in ["INT", "BOTH"] {
        let body = item(sku, 2);
        let (s, a) = put_desired(&app.url, &keys.operator, &conn, sku, &body).await;
        assert_eq!(s, 202, "{a}");
        local.insert(sku, body);
    }
    for sku in ["EXT", "BOTH"] {
        // Someone edits the listing on the marketplace itself, and adds a field of their own.
        let mut body = item(sku, 9);
        body["product"]["title"] = json!(format!("{sku} (edited on eBay)"));
        mock.state().set_inventory_item(sku, body.clone());
        remote.insert(sku, body);
    }
    local.entry("SYNC").or_insert_with(|| item("SYNC", 1));
    local.entry("EXT").or_insert_with(|| item("EXT", 1));
    Scene {
        conn,
        keys,
        local,
        remote,
    }
}

/// Asks for a reconciliation and waits for it to finish.
async fn reconcile(app: &TestApp, s: &Scene) {
    let (code, r) = app
        .post(
            &format!("/v1/connections/{}/reconcile", s.conn),
            &s.keys.operator,
            json!({}),
        )
        .await;
    assert_eq!(code, 202, "{r}");
    job_in_state(
        &app.app.store,
        r["job_id"].as_i64().unwrap(),
        JobState::Succeeded,
        Duration::from_secs(30),
    )
    .await;
}

/// The latest finding per sku.
async fn findings(app: &TestApp, s: &Scene) -> HashMap<String, Value> {
    let (code, list) = app
        .get(
            &format!("/v1/drift?connection_id={}", s.conn),
            &s.keys.viewer,
        )
        .await;
    assert_eq!(code, 200, "{list}");
    let mut latest = HashMap::new();
    for d in list["data"].as_array().unwrap().iter().rev() {
        for field in [
            "id",
            "connection_id",
            "resource",
            "external_id",
            "classification",
            "local_hash",
            "remote_hash",
            "detected_at",
        ] {
            assert!(d.get(field).is_some(), "{field} in {d}");
        }
        latest.insert(d["external_id"].as_str().unwrap().to_string(), d.clone());
    }
    latest
}

async fn report_classifies_each_object_and_changes_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let s = scene(&app, &mock, "report").await;
    let writes = mock.stats().writes_applied;
    reconcile(&app, &s).await;
    let found = findings(&app, &s).await;
    let class = |sku: &str| {
        found
            .get(sku)
            .map(|d| d["classification"].as_str().unwrap().to_string())
    };
    assert_eq!(class("SYNC"), None, "in sync: nothing to report");
    assert_eq!(class("INT").as_deref(), Some("internal_only"));
    assert_eq!(class("EXT").as_deref(), Some("external_only"));
    assert_eq!(class("BOTH").as_deref(), Some("both"));
    let ext = &found["EXT"];
    assert_eq!(ext["local_hash"], hash_of(&s.local["EXT"]));
    assert_eq!(ext["remote_hash"], hash_of(&s.remote["EXT"]));
    assert_eq!(ext["action"], "reported");
    assert_eq!(
        counter(
            &app,
            "syncguard_drift_total",
            &[("classification", "in_sync")]
        )
        .await,
        1
    );
    assert_eq!(
        counter(&app, "syncguard_drift_total", &[("classification", "both")]).await,
        1
    );
    // A second run finds the same drift and does not report it again.
    reconcile(&app, &s).await;
    let (_, all) = app
        .get(
            &format!("/v1/drift?connection_id={}", s.conn),
            &s.keys.viewer,
        )
        .await;
    assert_eq!(all["data"].as_array().unwrap().len(), 3, "{all}");
    // Report changes nothing: no writes, the provider keeps its edits, the local state its own.
    assert_eq!(mock.stats().writes_applied, writes);
    assert_eq!(
        mock_item(&mock, "EXT", &s.remote["EXT"]).as_ref(),
        Some(&s.remote["EXT"])
    );
    let (_, d) = app.get(&desired_path(&s.conn, "INT"), &s.keys.viewer).await;
    assert_eq!(
        (d["data"].clone(), d["status"].as_str()),
        (s.local["INT"].clone(), Some("pending"))
    );
    // The remote change was snapshotted (source drift), with its patch from the published state.
    let (_, snaps) = app
        .get(
            &format!("/v1/snapshots?connection_id={}&external_id=EXT", s.conn),
            &s.keys.viewer,
        )
        .await;
    let latest = &snaps["data"][0];
    assert_eq!(
        (latest["source"].as_str(), &latest["hash"]),
        (Some("drift"), &ext["remote_hash"])
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn local_wins_publishes_the_desired_state_again(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let s = scene(&app, &mock, "local_wins").await;
    reconcile(&app, &s).await;
    let found = findings(&app, &s).await;
    for sku in ["INT", "EXT", "BOTH"] {
        assert_eq!(found[sku]["action"], "publish_enqueued", "{sku}");
    }
    // Every object ends with the local state on the provider.
    for (sku, body) in &s.local {
        published(&app.url, &s.keys.viewer, &s.conn, sku, &hash_of(body)).await;
        assert_eq!(mock_item(&mock, sku, body).as_ref(), Some(body), "{sku}");
    }
    assert_eq!(mock.stats().duplicate_writes, 0);
    // Now all in sync: the next run records that the drift ended.
    reconcile(&app, &s).await;
    let found = findings(&app, &s).await;
    for sku in ["INT", "EXT", "BOTH"] {
        assert_eq!(found[sku]["classification"], "in_sync", "{sku}");
    }
    mock.shutdown().await;
    app.stop().await;
}

async fn remote_wins_adopts_the_remote_state(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    let s = scene(&app, &mock, "remote_wins").await;
    let writes = mock.stats().writes_applied;
    reconcile(&app, &s).await;
    let found = findings(&app, &s).await;
    assert_eq!(found["EXT"]["action"], "remote_accepted");
    assert_eq!(found["BOTH"]["action"], "remote_accepted");
    for sku in ["EXT", "BOTH"] {
        let remote = &s.remote[sku];
        let (_, d) = app.get(&desired_path(&s.conn, sku), &s.keys.viewer).await;
        assert_eq!(
            d["data"], *remote,
            "{sku}: the desired state is the provider's"
        );
        assert_eq!(d["status"], "published");
        assert_eq!(d["last_published_hash"], hash_of(remote));
        // The record mirrors the provider's object as it is, its own fields included.
        let record = app
            .app
            .store
            .get_record(&Scope::All, &s.conn, "inventory_item", sku)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(record.data["sku"], sku);
        assert_eq!(record.data["product"], remote["product"]);
    }
    // The local change nobody contradicted still goes out; the provider's edits stay.
    let (_, d) = app.get(&desired_path(&s.conn, "INT"), &s.keys.viewer).await;
    assert_eq!(d["data"], s.local["INT"]);
    assert_eq!(mock.stats().writes_applied, writes, "nothing written back");
    assert_eq!(
        mock_item(&mock, "EXT", &s.remote["EXT"]).as_ref(),
        Some(&s.remote["EXT"])
    );
    mock.shutdown().await;
    app.stop().await;
}

async fn reconcile_yields_while_the_rate_limit_is_near_depletion(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mock = ebay_mock().await;
    // Five calls at once, then one every 100 s.
    let (conn, keys) = ebay_connection(
        &app,
        &mock,
        json!({"rate_limit": {"rps": 0.01, "burst": 5}}),
    )
    .await;
    let body = item("Slow", 1);
    put_desired(&app.url, &keys.operator, &conn, "SLOW-1", &body).await;
    published(&app.url, &keys.viewer, &conn, "SLOW-1", &hash_of(&body)).await;
    // Someone else spends what is left of the credential's calls.
    let client = app
        .app
        .providers
        .client_by_id(&app.app, &conn)
        .await
        .unwrap();
    while !client.near_depletion().await {
        client.get("inventory_item", "SLOW-1").await.unwrap();
    }
    let (_, r) = app
        .post(
            &format!("/v1/connections/{conn}/reconcile"),
            &keys.operator,
            json!({}),
        )
        .await;
    // A yield is a snooze: back to `available` for later, no attempt spent, no error.
    let id = r["job_id"].as_i64().unwrap();
    let job = eventually(
        Duration::from_secs(30),
        "the reconcile job to snooze",
        || async {
            app.app
                .store
                .get_job(&syncguard_store::Scope::All, None, id)
                .await
                .unwrap()
                .filter(|j| j.state == JobState::Available && j.started_at.is_some())
        },
    )
    .await;
    assert_eq!(job.attempts, 0, "a yield does not spend an attempt");
    assert!(job.error_class.is_none(), "{job:?}");
    assert!(
        job.run_at > app.app.clock.now_ms() + 10_000,
        "resumes later"
    );
    assert_eq!(
        counter(
            &app,
            "syncguard_reconciles_total",
            &[("outcome", "yielded")]
        )
        .await,
        1
    );
    mock.shutdown().await;
    app.stop().await;
}
