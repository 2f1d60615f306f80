//! Convergence under faults: 10 000 objects in the mock (2 500 per resource), 5 % server
//! errors and a 429 storm during the backfill, then changes announced by webhooks delivered with
//! duplicates and out of order, then one incremental sync. The mirror must equal the provider
//! (same ids, same content hashes), and the change feed must hold exactly one entry per real
//! change.
//!
//! Each changed object is changed once (an update, a creation or a deletion), so "one entry per
//! real change" has one meaning whatever order the deliveries arrive in.

use super::*;
use crate::webhook::{all_processed, SECRET};
use std::collections::{BTreeMap, BTreeSet};
use syncguard_mock::{FaultsPatch, Resource, WebhookConfig};

crate::on_both_stores!(ten_thousand_records_converge_under_faults);

const PER_RESOURCE: usize = 2_500;
const UPDATES: usize = 60;
const CREATES: usize = 10;
const DELETES: usize = 5;

async fn ten_thousand_records_converge_under_faults(backend: Backend) {
    let app = quick_retries(backend).await;
    let (_t, admin) = tenant(&app).await;
    let mock = mock(PER_RESOURCE).await;
    let ms = mock.state();
    let total: usize = RESOURCES.iter().map(|r| truth(&mock, r).len()).sum();
    assert_eq!(total, 4 * PER_RESOURCE);
    ms.set_faults(&FaultsPatch {
        error_rate: Some(0.05),
        error_status: Some(500),
        ..Default::default()
    })
    .unwrap();
    let id = trackstar(
        &app,
        &admin,
        &mock,
        json!({ "webhook": { "secrets": [SECRET] } }),
    )
    .await;
    // A 429 storm shortly into the backfill.
    let storm = ms.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        storm
            .set_faults(&FaultsPatch {
                rate_limit_storm_s: Some(2.0),
                ..Default::default()
            })
            .unwrap();
    });
    let cps = backfilled(&app, &admin, &id, Duration::from_secs(180)).await;
    let backfill_feed = app
        .db
        .store
        .list_changes(&Scope::All, None, Some(&id), 0, 20_000)
        .await
        .unwrap();
    assert_eq!(backfill_feed.len(), total, "one change per object");
    assert!(backfill_feed.iter().all(|c| c.kind == "created"));
    let after_backfill = backfill_feed.last().unwrap().seq;
    let stats = mock.stats();
    assert!(stats.faults_injected > 0, "faults were injected: {stats:?}");

    // Changes, each announced by a signed webhook: 30 % delivered twice, batches reordered.
    ms.configure_webhooks(WebhookConfig {
        duplicate_rate: 0.3,
        reorder: true,
        ..WebhookConfig::new(format!("{}/v1/webhooks/{id}", app.url), SECRET)
    })
    .unwrap();
    let mut expected: BTreeMap<(String, String), &str> = BTreeMap::new();
    for name in RESOURCES {
        let res = Resource::parse(name).unwrap();
        let ids: Vec<String> = truth(&mock, name).into_keys().collect();
        for id in &ids[..UPDATES] {
            ms.touch(res, id).unwrap();
            expected.insert((name.into(), id.clone()), "updated");
        }
        for id in &ids[UPDATES..UPDATES + DELETES] {
            ms.delete(res, id).unwrap();
            expected.insert((name.into(), id.clone()), "deleted");
        }
        for _ in 0..CREATES {
            let m = ms.create(res);
            expected.insert((name.into(), m.id), "created");
        }
    }
    let messages = expected.len();
    all_processed(&app, &id, messages).await;
    let stats = mock.stats();
    assert!(
        stats.webhooks_sent as usize > messages,
        "some were delivered twice: {stats:?}"
    );

    // One incremental sync, still under faults.
    let (s, r) = app
        .post(&format!("/v1/connections/{id}/sync"), &admin, json!({}))
        .await;
    assert_eq!(s, 202, "{r}");
    synced_after(&app, &admin, &id, &cps, Duration::from_secs(120)).await;

    for name in RESOURCES {
        assert_eq!(
            local(&app, &id, name).await,
            truth(&mock, name),
            "{name} converged"
        );
    }
    let feed = app
        .db
        .store
        .list_changes(&Scope::All, None, Some(&id), after_backfill, 20_000)
        .await
        .unwrap();
    let got: BTreeMap<(String, String), &str> = feed
        .iter()
        .map(|c| ((c.resource.clone(), c.external_id.clone()), c.kind.as_str()))
        .collect();
    assert_eq!(feed.len(), got.len(), "no object changed twice in the feed");
    assert_eq!(got, expected, "exactly one change per real change");
    let seqs: BTreeSet<i64> = feed.iter().map(|c| c.seq).collect();
    assert_eq!(seqs.len(), feed.len());
    assert_eq!(
        mock.stats().rate_limit_violations,
        0,
        "the limiter kept within the provider's limit"
    );
    mock.shutdown().await;
    app.stop().await;
}
