//! A real `syncguard serve` is killed with SIGKILL in the middle of a backfill; a restarted one
//! on the same store resumes at the page after the last committed one. The mock's request
//! counts prove it: fewer calls than the pages done before the kill plus a restart from zero.

use super::*;
use crate::process::Serve;
use syncguard_mock::FaultsPatch;
use syncguard_store::testkit;

crate::on_both_stores!(a_killed_backfill_resumes_from_its_checkpoint);

/// 5 500 orders: six pages of (at most) a thousand.
const ORDERS: usize = 5_500;
const PAGES: u64 = 6;

fn order_calls(mock: &MockHandle) -> u64 {
    mock.stats()
        .by_endpoint
        .get("GET /wms/orders")
        .copied()
        .unwrap_or(0)
}

async fn a_killed_backfill_resumes_from_its_checkpoint(backend: Backend) {
    let db = testkit::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let mock = mock(ORDERS).await;
    // Slow pages, so the kill lands mid-backfill.
    mock.state()
        .set_faults(&FaultsPatch {
            latency_ms: Some(400),
            ..Default::default()
        })
        .unwrap();
    let mut server = Serve::start(&db.url, dir.path(), &[]).await;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("{}{path}", server.url);
    let (s, t) = send(
        client
            .post(api("/v1/tenants"))
            .bearer_auth(PLATFORM_KEY)
            .json(&json!({ "name": "acme" })),
    )
    .await;
    assert_eq!(s, 201, "{t}");
    let body = json!({
        "tenant_id": t["id"], "provider": "trackstar", "name": "brand_1",
        "credentials": { "api_key": "tsk", "access_token": "tat_resume" },
        "config": { "base_url": mock.base_url, "resources": ["orders"] },
    });
    let (s, c) = send(
        client
            .post(api("/v1/connections"))
            .bearer_auth(PLATFORM_KEY)
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{c}");
    let id = c["id"].as_str().unwrap().to_string();

    let committed = eventually(Duration::from_secs(30), "three pages committed", || async {
        let cp = db.store.get_checkpoint(&id, "orders").await.unwrap()?;
        cp.run.filter(|r| r.pages >= 3).map(|r| r.pages as u64)
    })
    .await;
    server.kill9();
    let calls_before = order_calls(&mock);
    let cp = db
        .store
        .get_checkpoint(&id, "orders")
        .await
        .unwrap()
        .unwrap();
    let run = cp.run.clone().expect("the run is still in progress");
    assert!(!cp.backfill_done && run.page_token.is_some(), "{cp:?}");
    let committed = committed.max(run.pages as u64);

    let _server = Serve::start(&db.url, dir.path(), &[]).await;
    eventually(
        Duration::from_secs(60),
        "the backfill to finish",
        || async {
            let cp = db.store.get_checkpoint(&id, "orders").await.unwrap()?;
            cp.backfill_done.then_some(())
        },
    )
    .await;
    let calls = order_calls(&mock);
    // The restarted node fetched only the pages after the committed ones (and, at most, the page
    // the killed node was fetching and the one it had prefetched, again).
    let restart_from_zero = committed + PAGES;
    assert!(
        calls <= PAGES + 2,
        "{calls} calls for {PAGES} pages ({calls_before} before the kill)"
    );
    assert!(
        calls < restart_from_zero,
        "{calls} calls; a restart from zero needs {restart_from_zero}"
    );
    let records = db
        .store
        .list_records(
            &Scope::All,
            &id,
            "orders",
            &PageRequest {
                after: None,
                limit: 500,
            },
        )
        .await
        .unwrap();
    assert!(records.next_cursor.is_some());
    let feed = db
        .store
        .list_changes(&Scope::All, None, Some(&id), 0, 20_000)
        .await
        .unwrap();
    assert_eq!(
        feed.len(),
        ORDERS,
        "every order once; a page read twice changed nothing"
    );
    let cp = db
        .store
        .get_checkpoint(&id, "orders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cp.pages_total as u64, cp.items_total as u64),
        (PAGES, ORDERS as u64),
        "each page committed once: {cp:?}"
    );
    mock.shutdown().await;
}
