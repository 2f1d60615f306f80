use crate::T0;
use serde_json::json;
use syncguard_store::records::RecordWrite;
use syncguard_store::testkit::TestDb;
use syncguard_store::Scope;

crate::on_both_stores!(
    unchanged_hash_writes_nothing,
    stale_writes_and_deletes,
    concurrent_writers_keep_feed_ordered
);

fn upsert(data: serde_json::Value, at: i64) -> RecordWrite {
    RecordWrite::Upsert {
        data,
        remote_updated_at: Some(at),
    }
}

async fn unchanged_hash_writes_nothing(db: TestDb) {
    let s = &db.store;
    let c1 = s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1",
            },
            &upsert(json!({"a": 1, "b": 2}), T0),
            "webhook",
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(c1.kind, "created");
    // The same content in another key order and from another source: nothing to do.
    assert!(s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1"
            },
            &upsert(json!({"b": 2, "a": 1}), T0),
            "sync",
            T0 + 1
        )
        .await
        .unwrap()
        .is_none());
    let c2 = s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1",
            },
            &upsert(json!({"a": 2, "b": 2}), T0 + 5),
            "sync",
            T0 + 2,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c2.kind.as_str(), c2.seq > c1.seq), ("updated", true));
    let feed = s
        .list_changes(&Scope::Tenant("ten".into()), None, None, 0, 100)
        .await
        .unwrap();
    assert_eq!(feed.len(), 2);
    let r = s
        .get_record(&Scope::All, "con", "orders", "o1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.data, json!({"a": 2, "b": 2}));
    assert!(s
        .get_record(&Scope::Tenant("other".into()), "con", "orders", "o1")
        .await
        .unwrap()
        .is_none());
}

async fn stale_writes_and_deletes(db: TestDb) {
    let s = &db.store;
    s.apply_record(
        syncguard_store::records::RecordKey {
            tenant_id: "ten",
            connection_id: "con",
            resource: "orders",
            external_id: "o1",
        },
        &upsert(json!({"v": 2}), T0 + 10),
        "webhook",
        T0,
    )
    .await
    .unwrap()
    .unwrap();
    // An older state arriving late does not roll the record back.
    assert!(s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1"
            },
            &upsert(json!({"v": 1}), T0 + 5),
            "webhook",
            T0
        )
        .await
        .unwrap()
        .is_none());
    let d = s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1",
            },
            &RecordWrite::Delete,
            "webhook",
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.kind, "deleted");
    assert!(s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1"
            },
            &RecordWrite::Delete,
            "webhook",
            T0
        )
        .await
        .unwrap()
        .is_none());
    assert!(s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "missing"
            },
            &RecordWrite::Delete,
            "webhook",
            T0
        )
        .await
        .unwrap()
        .is_none());
    let again = s
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: "ten",
                connection_id: "con",
                resource: "orders",
                external_id: "o1",
            },
            &upsert(json!({"v": 3}), T0 + 20),
            "sync",
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.kind, "created");
    let r = s
        .get_record(&Scope::All, "con", "orders", "o1")
        .await
        .unwrap()
        .unwrap();
    assert!(!r.deleted);
}

async fn concurrent_writers_keep_feed_ordered(db: TestDb) {
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = db.store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                s.apply_record(
                    syncguard_store::records::RecordKey {
                        tenant_id: "ten",
                        connection_id: "con",
                        resource: "orders",
                        external_id: &format!("o{w}-{i}"),
                    },
                    &upsert(json!({"i": i}), T0),
                    "sync",
                    T0,
                )
                .await
                .unwrap()
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let feed = db
        .store
        .list_changes(&Scope::All, None, None, 0, 1000)
        .await
        .unwrap();
    assert_eq!(feed.len(), 100);
    assert!(feed.windows(2).all(|w| w[0].seq < w[1].seq));
    let page = db
        .store
        .list_changes(
            &Scope::All,
            Some(&["con".to_string()]),
            Some("con"),
            feed[49].seq,
            1000,
        )
        .await
        .unwrap();
    assert_eq!(page.len(), 50);
}
