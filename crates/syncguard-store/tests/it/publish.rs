use crate::T0;
use serde_json::{json, Value};
use syncguard_core::canonical::content_hash;
use syncguard_store::page::PageRequest;
use syncguard_store::publish::{
    publish_job_key, DesiredStatus, IntegrityKind, Mismatch, NewDrift, ObjectKey, PutOutcome,
    Reconciled, SnapshotFilter,
};
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::testkit::TestDb;
use syncguard_store::Scope;

crate::on_both_stores!(
    desired_state_and_its_publish_job_are_written_together,
    snapshots_are_deduplicated_and_chained_by_patches,
    drift_findings_are_recorded_when_they_change,
    policy_writes_apply_only_to_the_state_they_judged,
    the_integrity_window_rolls_over_every_row
);

fn key(id: &str) -> ObjectKey<'_> {
    ObjectKey {
        tenant_id: "ten",
        connection_id: "con",
        resource: "items",
        external_id: id,
    }
}

fn job(id: &str, debounce: i64) -> NewJob {
    let mut j = NewJob::new("publish", json!({"external_id": id}));
    j.unique_key = Some(publish_job_key("con", "items", id));
    j.debounce_ms = Some(debounce);
    j
}

/// A diff that names its inputs, so tests can see what the store passed.
fn diff(a: &Value, b: &Value) -> Value {
    json!({"from": a, "to": b})
}

async fn desired_state_and_its_publish_job_are_written_together(db: TestDb) {
    let s = &db.store;
    let (v1, v2) = (json!({"q": 1}), json!({"q": 2}));
    let (h1, h2) = (content_hash(&v1), content_hash(&v2));
    let PutOutcome::Enqueued { job_id } = s
        .put_desired(key("a"), &v1, &h1, &job("a", 2_000), T0)
        .await
        .unwrap()
    else {
        panic!("enqueued expected")
    };
    let j = s.get_job(&Scope::All, None, job_id).await.unwrap().unwrap();
    assert_eq!((j.state, j.run_at), (JobState::Available, T0 + 2_000));
    // The same state again: already on its way.
    assert_eq!(
        s.put_desired(key("a"), &v1, &h1, &job("a", 2_000), T0 + 1)
            .await
            .unwrap(),
        PutOutcome::Duplicate { job_id }
    );
    // A new state within the window: the same job, pushed back.
    assert_eq!(
        s.put_desired(key("a"), &v2, &h2, &job("a", 2_000), T0 + 500)
            .await
            .unwrap(),
        PutOutcome::Enqueued { job_id }
    );
    let j = s.get_job(&Scope::All, None, job_id).await.unwrap().unwrap();
    assert_eq!(j.run_at, T0 + 2_500);
    let d = s
        .get_desired(&Scope::Tenant("ten".into()), "con", "items", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.data.clone(), d.status()),
        (v2.clone(), DesiredStatus::Pending)
    );
    assert!(s
        .get_desired(&Scope::Tenant("other".into()), "con", "items", "a")
        .await
        .unwrap()
        .is_none());
    // Published: the same state is unchanged, and so is a return to it from a pending change.
    s.mark_publish_attempt(key("a"), &h2).await.unwrap();
    let snap = s
        .mark_published(key("a"), &v2, &h2, &diff, T0 + 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (snap.source.as_str(), snap.hash.as_str()),
        ("publish", h2.as_str())
    );
    let d = s
        .get_desired(&Scope::All, "con", "items", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.status(), d.attempted_hash, d.published_at),
        (DesiredStatus::Published, None, Some(T0 + 3_000))
    );
    assert_eq!(
        s.put_desired(key("a"), &v2, &h2, &job("a", 0), T0 + 4_000)
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
    assert!(matches!(
        s.put_desired(key("a"), &v1, &h1, &job("a", 60_000), T0 + 5_000)
            .await
            .unwrap(),
        PutOutcome::Enqueued { .. }
    ));
    assert_eq!(
        s.put_desired(key("a"), &v2, &h2, &job("a", 60_000), T0 + 6_000)
            .await
            .unwrap(),
        PutOutcome::Unchanged
    );
    assert_eq!(
        s.get_desired(&Scope::All, "con", "items", "a")
            .await
            .unwrap()
            .unwrap()
            .data,
        v2
    );
    // An error is kept only for the state it concerns.
    s.record_publish_error(key("a"), &h1, "stale")
        .await
        .unwrap();
    assert_eq!(
        s.get_desired(&Scope::All, "con", "items", "a")
            .await
            .unwrap()
            .unwrap()
            .last_error,
        None
    );
    s.record_publish_error(key("a"), &h2, "refused")
        .await
        .unwrap();
    assert_eq!(
        s.get_desired(&Scope::All, "con", "items", "a")
            .await
            .unwrap()
            .unwrap()
            .last_error
            .as_deref(),
        Some("refused")
    );
}

async fn snapshots_are_deduplicated_and_chained_by_patches(db: TestDb) {
    let s = &db.store;
    let (v1, v2) = (json!({"q": 1, "t": "x"}), json!({"t": "x", "q": 2}));
    let (h1, h2) = (content_hash(&v1), content_hash(&v2));
    let first = s
        .record_snapshot(key("a"), &v1, &h1, "manual", &diff, T0)
        .await
        .unwrap();
    assert_eq!((first.previous_id, first.source.as_str()), (None, "manual"));
    assert_eq!(
        s.record_snapshot(key("a"), &v1, &h1, "drift", &diff, T0 + 1)
            .await
            .unwrap(),
        first,
        "same hash as the latest"
    );
    let second = s
        .record_snapshot(key("a"), &v2, &h2, "drift", &diff, T0 + 2)
        .await
        .unwrap();
    let third = s
        .record_snapshot(key("a"), &v1, &h1, "manual", &diff, T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        (second.previous_id, third.previous_id),
        (Some(first.id), Some(second.id))
    );
    let detail = s
        .get_snapshot(&Scope::Tenant("ten".into()), None, second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.data, Some(v2.clone()));
    assert_eq!(detail.patch, json!({"from": v1, "to": v2}));
    assert_eq!(
        s.get_snapshot(&Scope::All, None, first.id)
            .await
            .unwrap()
            .unwrap()
            .patch,
        json!({"from": null, "to": v1})
    );
    // The state is stored once per hash, as canonical text.
    assert_eq!(
        s.snapshot_state("ten", &h1).await.unwrap(),
        Some(v1.clone())
    );
    assert!(s
        .get_snapshot(&Scope::Tenant("other".into()), None, first.id)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_snapshot(&Scope::All, Some(&["con_other".to_string()]), first.id)
        .await
        .unwrap()
        .is_none());
    let window = s
        .integrity_window(IntegrityKind::Snapshot, 10)
        .await
        .unwrap();
    assert_eq!(window.len(), 2);
    assert!(window.iter().any(|r| r.data == r#"{"q":1,"t":"x"}"#));
    // Lists: newest first, filtered, paged.
    s.record_snapshot(key("b"), &v1, &h1, "manual", &diff, T0 + 4)
        .await
        .unwrap();
    let page = |after: Option<String>| PageRequest { after, limit: 2 };
    let filter = SnapshotFilter {
        external_id: Some("a".into()),
        ..Default::default()
    };
    let p1 = s
        .list_snapshots(&Scope::Tenant("ten".into()), &filter, &page(None))
        .await
        .unwrap();
    assert_eq!(
        p1.items.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![third.id, second.id]
    );
    let p2 = s
        .list_snapshots(&Scope::Tenant("ten".into()), &filter, &page(p1.next_cursor))
        .await
        .unwrap();
    assert_eq!((p2.items.len(), p2.next_cursor), (1, None));
    assert!(s
        .list_snapshots(
            &Scope::Tenant("other".into()),
            &SnapshotFilter::default(),
            &page(None)
        )
        .await
        .unwrap()
        .items
        .is_empty());
}

fn finding(classification: &'static str, local: &str, remote: &str) -> Option<NewDrift> {
    Some(NewDrift {
        classification,
        local_hash: Some(local.into()),
        remote_hash: Some(remote.into()),
        action: "reported",
    })
}

async fn drift_findings_are_recorded_when_they_change(db: TestDb) {
    let s = &db.store;
    for id in ["a", "b"] {
        s.put_desired(key(id), &json!({"q": 1}), "h1", &job(id, 0), T0)
            .await
            .unwrap();
    }
    let due = s
        .desired_due_for_reconcile("con", T0 + 10, 10)
        .await
        .unwrap();
    assert_eq!(due.len(), 2);
    let remote = json!({"q": 9});
    // in_sync with no earlier finding records nothing; a drift does, with a snapshot of it.
    let items = [
        Reconciled {
            key: key("a"),
            finding: finding("in_sync", "h1", "h1"),
            remote: None,
        },
        Reconciled {
            key: key("b"),
            finding: finding("external_only", "h1", "h9"),
            remote: Some((&remote, "h9")),
        },
    ];
    let rec = s.record_reconciled(&items, &diff, T0 + 1).await.unwrap();
    assert_eq!(
        rec.iter()
            .map(|d| d.external_id.as_str())
            .collect::<Vec<_>>(),
        ["b"]
    );
    let snaps = s
        .list_snapshots(
            &Scope::All,
            &SnapshotFilter::default(),
            &PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (snaps.items.len(), snaps.items[0].source.as_str()),
        (1, "drift")
    );
    // Reconciled objects are not due again for the same run; the same drift is not re-recorded.
    assert!(s
        .desired_due_for_reconcile("con", T0 + 1, 10)
        .await
        .unwrap()
        .is_empty());
    let again = [Reconciled {
        key: key("b"),
        finding: finding("external_only", "h1", "h9"),
        remote: None,
    }];
    assert!(s
        .record_reconciled(&again, &diff, T0 + 2)
        .await
        .unwrap()
        .is_empty());
    let end = [Reconciled {
        key: key("b"),
        finding: finding("in_sync", "h1", "h1"),
        remote: None,
    }];
    let ended = s.record_reconciled(&end, &diff, T0 + 3).await.unwrap();
    assert_eq!(ended[0].classification, "in_sync");
    let all = s
        .list_drift(
            &Scope::Tenant("ten".into()),
            &Default::default(),
            &PageRequest {
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        all.items
            .iter()
            .map(|d| d.classification.as_str())
            .collect::<Vec<_>>(),
        ["in_sync", "external_only"]
    );
    let filter = syncguard_store::publish::DriftFilter {
        classification: Some("in_sync".into()),
        ..Default::default()
    };
    assert_eq!(
        s.list_drift(
            &Scope::All,
            &filter,
            &PageRequest {
                after: None,
                limit: 10
            }
        )
        .await
        .unwrap()
        .items
        .len(),
        1
    );
    assert!(s
        .list_drift(
            &Scope::Tenant("other".into()),
            &Default::default(),
            &PageRequest {
                after: None,
                limit: 10
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn policy_writes_apply_only_to_the_state_they_judged(db: TestDb) {
    let s = &db.store;
    let v = json!({"q": 1});
    let h = content_hash(&v);
    s.put_desired(key("a"), &v, &h, &job("a", 60_000), T0)
        .await
        .unwrap();
    s.mark_published(key("a"), &v, &h, &diff, T0 + 1)
        .await
        .unwrap();
    // local_wins: the remote's hash becomes the base and the publish job runs now.
    assert!(s
        .republish(key("a"), Some("not-it"), Some("h9"), &job("a", 0), T0 + 2)
        .await
        .unwrap()
        .is_none());
    let queued = s
        .republish(key("a"), Some(&h), Some("h9"), &job("a", 0), T0 + 2)
        .await
        .unwrap()
        .unwrap();
    let j = s
        .get_job(&Scope::All, None, queued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(j.run_at, T0 + 2);
    let d = s
        .get_desired(&Scope::All, "con", "items", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.last_published_hash.as_deref(), d.status()),
        (Some("h9"), DesiredStatus::Pending)
    );
    // remote_wins: adopted only over the state it judged.
    let r = json!({"q": 9});
    let hr = content_hash(&r);
    assert!(!s
        .accept_remote(key("a"), "other", &r, &hr, T0 + 3)
        .await
        .unwrap());
    assert!(s
        .accept_remote(key("a"), &h, &r, &hr, T0 + 3)
        .await
        .unwrap());
    let d = s
        .get_desired(&Scope::All, "con", "items", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.status(), d.data), (DesiredStatus::Published, r));
    assert!(!s.forget_desired(key("a"), &h).await.unwrap());
    assert!(s.forget_desired(key("a"), &hr).await.unwrap());
    assert!(s
        .get_desired(&Scope::All, "con", "items", "a")
        .await
        .unwrap()
        .is_none());
}

async fn the_integrity_window_rolls_over_every_row(db: TestDb) {
    let s = &db.store;
    for i in 0..5 {
        let v = json!({"i": i});
        s.record_snapshot(
            key(&format!("o{i}")),
            &v,
            &content_hash(&v),
            "manual",
            &diff,
            T0,
        )
        .await
        .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut windows = Vec::new();
    for run in 0..3 {
        let rows = s
            .integrity_window(IntegrityKind::Snapshot, 2)
            .await
            .unwrap();
        windows.push(rows.len());
        // The first run finds one row damaged.
        let bad: Vec<Mismatch> = rows
            .iter()
            .take(usize::from(run == 0))
            .map(|r| Mismatch {
                kind: IntegrityKind::Snapshot,
                object_key: r.object_key(),
                tenant_id: r.tenant_id.clone(),
                stored_hash: r.hash.clone(),
                actual_hash: "x".into(),
            })
            .collect();
        let opened = s
            .finish_integrity_window(IntegrityKind::Snapshot, &rows, &bad, T0 + run)
            .await
            .unwrap();
        assert_eq!(opened.len(), bad.len());
        seen.extend(rows.into_iter().map(|r| r.hash));
        if run == 0 {
            let status = s.integrity_status().await.unwrap();
            assert_eq!(
                (status.open_mismatches, status.last_mismatch_at),
                (1, Some(T0))
            );
            assert_eq!(s.integrity_mismatches(10).await.unwrap().len(), 1);
        }
    }
    assert_eq!(
        windows,
        [2, 2, 2],
        "the third window wraps around to the start"
    );
    assert_eq!(seen.len(), 5, "every row was checked");
    // The damaged row, checked again and found sound, closes its finding.
    let mut closed = false;
    for run in 3..6 {
        let rows = s
            .integrity_window(IntegrityKind::Snapshot, 2)
            .await
            .unwrap();
        s.finish_integrity_window(IntegrityKind::Snapshot, &rows, &[], T0 + run)
            .await
            .unwrap();
        closed |= s.integrity_status().await.unwrap().open_mismatches == 0;
    }
    assert!(closed);
    assert_eq!(
        s.integrity_status().await.unwrap().last_audit_at,
        Some(T0 + 5)
    );
    assert!(s
        .integrity_window(IntegrityKind::Record, 10)
        .await
        .unwrap()
        .is_empty());
}
