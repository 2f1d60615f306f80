//! The circuit breaker: a 5xx outage opens it and stops calls, a probe closes it after
//! recovery, 4xx never open it, and forcing is admin-only, audited and tenant-scoped.

use super::*;
use crate::helpers::*;
use serde_json::{json, Value};
use std::time::Duration;
use syncguard::engine::handler::JobError;
use syncguard_core::class::ErrorClass;
use syncguard_mock::FaultsPatch;
use syncguard_store::Backend;

crate::on_both_stores!(
    a_5xx_outage_opens_the_breaker_and_a_probe_closes_it,
    client_errors_never_open_the_breaker,
    forcing_a_circuit_is_admin_only_audited_and_tenant_scoped,
);

/// GET /v1/circuits as `key`, the one circuit of `id`.
async fn circuit_of(app: &TestApp, key: &str, id: &str) -> Value {
    let (s, list) = app
        .get(&format!("/v1/circuits?connection_id={id}"), key)
        .await;
    assert_eq!(s, 200, "{list}");
    list["data"][0].clone()
}

async fn a_5xx_outage_opens_the_breaker_and_a_probe_closes_it(backend: Backend) {
    let mock = mock(0.0, 5).await;
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let config = json!({"base_url": mock.base_url, "circuit": {"min_calls": 3, "failure_threshold": 3, "open_for_s": 1, "window_s": 60}});
    let id = connect(&app, &admin, "trackstar", trackstar_creds(), config).await;
    let c = client(&app.app, &id).await;
    assert_eq!(circuit_of(&app, &admin, &id).await["state"], "closed");
    mock.state()
        .set_faults(&FaultsPatch {
            error_rate: Some(1.0),
            error_status: Some(503),
            ..Default::default()
        })
        .unwrap();
    for _ in 0..3 {
        let e = c.list_page("orders", None, None).await.unwrap_err();
        assert_eq!(
            (e.class, e.status),
            (ErrorClass::Transient, Some(503)),
            "{e}"
        );
    }
    let open = circuit_of(&app, &admin, &id).await;
    assert_eq!(
        (
            open["state"].as_str(),
            open["failures"].as_u64(),
            open["key"].as_str()
        ),
        (
            Some("open"),
            Some(3),
            Some(format!("{id}:trackstar").as_str())
        )
    );
    assert!(open["opened_at"].is_string());
    let reached = mock.stats().requests_total;
    for _ in 0..5 {
        let e = c.list_page("orders", None, None).await.unwrap_err();
        assert_eq!(e.class, ErrorClass::CircuitOpen, "{e}");
        assert!(e.retry_after_ms.unwrap() <= 1_000);
        let job = JobError::from(e);
        assert_eq!(
            (job.class, job.retry_after_ms.is_some()),
            (ErrorClass::CircuitOpen, true)
        );
    }
    assert_eq!(
        mock.stats().requests_total,
        reached,
        "no call reached the provider while open"
    );
    mock.state().reset_faults();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        c.list_page("orders", None, None).await.unwrap().items.len(),
        5,
        "the probe goes through"
    );
    assert_eq!(circuit_of(&app, &admin, &id).await["state"], "closed");
    let (_, audit) = app.get("/v1/audit?action=circuit.transition", &admin).await;
    let moves: Vec<_> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| {
            format!(
                "{}>{}",
                e["params"]["from"].as_str().unwrap(),
                e["params"]["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(moves, ["closed>open", "open>half_open", "half_open>closed"]);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"syncguard_circuit_transitions_total{from="closed",provider="trackstar",to="open"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"syncguard_circuit_state{provider="trackstar",state="closed"} 1"#),
        "{metrics}"
    );
    app.stop().await;
    mock.shutdown().await;
}

async fn client_errors_never_open_the_breaker(backend: Backend) {
    let mock = mock(0.0, 5).await;
    let app = TestApp::spawn(backend).await;
    let (_, admin) = app.tenant_with_key("acme", "admin").await;
    let config =
        json!({"base_url": mock.base_url, "circuit": {"min_calls": 2, "failure_threshold": 2}});
    let id = connect(&app, &admin, "trackstar", trackstar_creds(), config).await;
    let c = client(&app.app, &id).await;
    mock.state()
        .set_faults(&FaultsPatch {
            error_rate: Some(1.0),
            error_status: Some(422),
            ..Default::default()
        })
        .unwrap();
    for _ in 0..6 {
        let e = c.list_page("orders", None, None).await.unwrap_err();
        assert_eq!(
            (e.class, e.status),
            (ErrorClass::Permanent, Some(422)),
            "{e}"
        );
    }
    // A resource the warehouse lacks answers 501: a definition rule makes it permanent.
    let bad = app.app.providers.client_by_id(&app.app, &id).await.unwrap();
    assert_eq!(
        bad.resource("invoices").unwrap_err().class,
        ErrorClass::Permanent
    );
    let circuit = circuit_of(&app, &admin, &id).await;
    assert_eq!(
        (circuit["state"].as_str(), circuit["failures"].as_u64()),
        (Some("closed"), Some(0))
    );
    app.stop().await;
    mock.shutdown().await;
}

async fn forcing_a_circuit_is_admin_only_audited_and_tenant_scoped(backend: Backend) {
    let mock = mock(0.0, 5).await;
    let app = TestApp::spawn(backend).await;
    let (tenant, admin) = app.tenant_with_key("acme", "admin").await;
    let viewer = app.key_for(&tenant, "viewer", None).await;
    let (_, stranger) = app.tenant_with_key("other", "admin").await;
    let id = connect(
        &app,
        &admin,
        "trackstar",
        trackstar_creds(),
        json!({"base_url": mock.base_url}),
    )
    .await;
    let path = format!("/v1/circuits/{id}:trackstar/force");
    assert_eq!(
        app.post(&path, &viewer, json!({"mode": "open"})).await.0,
        403
    );
    assert_eq!(
        app.post(&path, &stranger, json!({"mode": "open"})).await.0,
        404
    );
    assert_eq!(
        app.post(
            &format!("/v1/circuits/{id}:ebay/force"),
            &admin,
            json!({"mode": "open"})
        )
        .await
        .0,
        404
    );
    assert_eq!(
        app.post(&path, &admin, json!({"mode": "sideways"})).await.0,
        422
    );
    let (s, forced) = app.post(&path, &admin, json!({"mode": "open"})).await;
    assert_eq!(s, 200, "{forced}");
    assert_eq!(
        (forced["state"].as_str(), forced["forced"].as_str()),
        (Some("open"), Some("open"))
    );
    assert_eq!(circuit_of(&app, &viewer, &id).await["forced"], "open");
    assert!(
        circuit_of(&app, &stranger, &id).await.is_null(),
        "other tenants do not see it"
    );
    let c = client(&app.app, &id).await;
    let reached = mock.stats().requests_total;
    assert_eq!(
        c.list_page("orders", None, None).await.unwrap_err().class,
        ErrorClass::CircuitOpen
    );
    assert_eq!(mock.stats().requests_total, reached);
    // Repeating a mode changes nothing and is not audited twice.
    assert_eq!(
        app.post(&path, &admin, json!({"mode": "open"})).await.0,
        200
    );
    let (_, auto) = app.post(&path, &admin, json!({"mode": "auto"})).await;
    assert_eq!(
        (auto["state"].as_str(), &auto["forced"]),
        (Some("open"), &Value::Null),
        "auto keeps it open until open_for passes"
    );
    let (_, closed) = app.post(&path, &admin, json!({"mode": "closed"})).await;
    assert_eq!(
        (closed["state"].as_str(), closed["forced"].as_str()),
        (Some("closed"), Some("closed"))
    );
    c.list_page("orders", None, None).await.unwrap();
    let (_, audit) = app.get("/v1/audit?action=circuit.force", &admin).await;
    let entries = audit["data"].as_array().unwrap();
    let reasons: Vec<_> = entries
        .iter()
        .rev()
        .map(|e| e["params"]["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        reasons,
        ["forced_open", "forced_auto", "forced_closed"],
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .all(|e| e["target"] == format!("{id}:trackstar")
                && e["actor"].as_str().unwrap().starts_with("key_")),
        "{audit}"
    );
    app.stop().await;
    mock.shutdown().await;
}
