//! Checkpoints: pages commit with their records, runs resume, stale pages are refused, outcome
//! counts feed health; and batched record writes behave like one write at a time.

use crate::T0;
use serde_json::json;
use syncguard_store::checkpoints::health::event_id_floor;
use syncguard_store::checkpoints::{CheckpointKey, PageCommit, PageCounts, RunStart, SyncPage};
use syncguard_store::connections::NewConnection;
use syncguard_store::queue::{JobState, NewJob};
use syncguard_store::records::{RecordKey, RecordWrite};
use syncguard_store::testkit::TestDb;
use syncguard_store::Scope;

crate::on_both_stores!(
    pages_commit_with_their_records_and_the_run_resumes_at_the_next_page,
    pages_of_another_run_or_a_disconnected_connection_write_nothing,
    the_cursor_is_a_high_water_mark,
    failures_keep_the_run_and_count_for_health,
    purge_deletes_one_connections_data,
    a_batch_equals_its_writes_one_by_one,
    queue_depths_and_dead_letters_per_connection,
);

async fn connection(db: &TestDb, id: &str) -> String {
    let page = syncguard_store::page::PageRequest {
        after: None,
        limit: 1,
    };
    let tenant = match db
        .store
        .list_tenants(&Scope::All, &page)
        .await
        .unwrap()
        .items
        .pop()
    {
        Some(t) => t.id,
        None => db.store.create_tenant("acme", T0).await.unwrap().id,
    };
    db.store
        .create_connection(
            NewConnection {
                id: id.into(),
                tenant_id: tenant.clone(),
                provider: "trackstar".into(),
                name: id.into(),
                status: "active".into(),
                config: json!({}),
                credentials: Some(b"sealed".to_vec()),
                webhook_secrets: None,
            },
            T0,
        )
        .await
        .unwrap();
    tenant
}

fn key<'a>(tenant: &'a str, conn: &'a str) -> CheckpointKey<'a> {
    CheckpointKey {
        tenant_id: tenant,
        connection_id: conn,
        resource: "orders",
    }
}

fn items(ids: std::ops::Range<u32>, at: i64) -> Vec<(String, RecordWrite)> {
    ids.map(|i| {
        (
            format!("o{i}"),
            RecordWrite::Upsert {
                data: json!({"id": format!("o{i}"), "at": at}),
                remote_updated_at: Some(at + i as i64),
            },
        )
    })
    .collect()
}

fn keyed<'a>(
    tenant: &'a str,
    conn: &'a str,
    w: &'a [(String, RecordWrite)],
) -> Vec<(RecordKey<'a>, RecordWrite)> {
    w.iter()
        .map(|(id, w)| {
            (
                RecordKey {
                    tenant_id: tenant,
                    connection_id: conn,
                    resource: "orders",
                    external_id: id,
                },
                w.clone(),
            )
        })
        .collect()
}

fn start(at: i64, backfill: bool) -> RunStart {
    RunStart {
        started_at: at,
        since: Some(at - 1_000),
        backfill,
        full: false,
    }
}

async fn pages_commit_with_their_records_and_the_run_resumes_at_the_next_page(db: TestDb) {
    let s = &db.store;
    let t = connection(&db, "con_1").await;
    let cp = s
        .begin_sync_run(key(&t, "con_1"), Some(start(T0, true)), T0)
        .await
        .unwrap();
    let run = cp.run.clone().unwrap();
    assert_eq!(
        (run.page_token, run.pages, cp.last_sync_at, cp.backfill_done),
        (None, 0, Some(T0), false)
    );

    let page1 = items(0..3, T0);
    let writes = keyed(&t, "con_1", &page1);
    let commit = SyncPage {
        key: key(&t, "con_1"),
        run_started_at: T0,
        page_token: None,
        next_token: Some("tok2"),
        writes: &writes,
        max_updated_at: Some(T0 + 2),
        missing_cursor: 1,
    };
    let out = s.commit_sync_page(&commit, T0 + 10).await.unwrap();
    assert_eq!(
        out,
        PageCommit::Committed {
            counts: PageCounts {
                created: 3,
                ..Default::default()
            },
            done: false
        }
    );
    // A crash here: the checkpoint names the next page, and the records of the first are in.
    let cp = s.get_checkpoint("con_1", "orders").await.unwrap().unwrap();
    let run = cp.run.clone().unwrap();
    assert_eq!(
        (
            run.page_token.as_deref(),
            run.pages,
            run.items,
            run.missing_cursor
        ),
        (Some("tok2"), 1, 3, 1)
    );
    assert_eq!((cp.cursor, cp.last_success_at), (Some(T0 + 2), None));
    assert!(s
        .get_record(&Scope::All, "con_1", "orders", "o2")
        .await
        .unwrap()
        .is_some());
    // Resuming notes the attempt and keeps the run.
    let resumed = s
        .begin_sync_run(key(&t, "con_1"), None, T0 + 20)
        .await
        .unwrap();
    assert_eq!(
        (
            resumed.run.unwrap().page_token.as_deref(),
            resumed.last_sync_at
        ),
        (Some("tok2"), Some(T0 + 20))
    );

    let page2 = items(2..5, T0);
    let writes = keyed(&t, "con_1", &page2);
    let commit = SyncPage {
        page_token: Some("tok2"),
        next_token: None,
        writes: &writes,
        max_updated_at: Some(T0 + 4),
        missing_cursor: 0,
        ..commit
    };
    let out = s.commit_sync_page(&commit, T0 + 30).await.unwrap();
    assert_eq!(
        out,
        PageCommit::Committed {
            counts: PageCounts {
                created: 2,
                unchanged: 1,
                ..Default::default()
            },
            done: true
        }
    );
    let cp = s.get_checkpoint("con_1", "orders").await.unwrap().unwrap();
    assert_eq!(cp.run, None);
    assert_eq!(
        (
            cp.cursor,
            cp.last_success_at,
            cp.last_run_started_at,
            cp.backfill_done
        ),
        (Some(T0 + 4), Some(T0 + 30), Some(T0), true)
    );
    assert_eq!(
        (cp.pages_total, cp.items_total, cp.missing_cursor_total),
        (2, 6, 1)
    );
    let feed = s
        .list_changes(&Scope::All, None, Some("con_1"), 0, 100)
        .await
        .unwrap();
    assert_eq!(feed.len(), 5, "the item both pages carried changed once");
    assert!(feed
        .iter()
        .all(|c| c.source == "sync" && c.kind == "created"));
    let listed = s
        .list_checkpoints(&Scope::Tenant(t.clone()), "con_1")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(s
        .list_checkpoints(&Scope::Tenant("other".into()), "con_1")
        .await
        .unwrap()
        .is_empty());
}

async fn pages_of_another_run_or_a_disconnected_connection_write_nothing(db: TestDb) {
    let s = &db.store;
    let t = connection(&db, "con_1").await;
    s.begin_sync_run(key(&t, "con_1"), Some(start(T0, false)), T0)
        .await
        .unwrap();
    let page = items(0..2, T0);
    let writes = keyed(&t, "con_1", &page);
    let first = SyncPage {
        key: key(&t, "con_1"),
        run_started_at: T0,
        page_token: None,
        next_token: Some("tok2"),
        writes: &writes,
        max_updated_at: Some(T0),
        missing_cursor: 0,
    };
    assert!(matches!(
        s.commit_sync_page(&first, T0).await.unwrap(),
        PageCommit::Committed { .. }
    ));
    // A worker that lost its lease commits the same page again: refused, nothing written.
    let later = items(10..12, T0);
    let later_writes = keyed(&t, "con_1", &later);
    let replay = SyncPage {
        writes: &later_writes,
        ..first.clone()
    };
    assert_eq!(
        s.commit_sync_page(&replay, T0).await.unwrap(),
        PageCommit::Superseded
    );
    let other_run = SyncPage {
        run_started_at: T0 - 1,
        page_token: Some("tok2"),
        ..replay.clone()
    };
    assert_eq!(
        s.commit_sync_page(&other_run, T0).await.unwrap(),
        PageCommit::Superseded
    );
    assert!(s
        .get_record(&Scope::All, "con_1", "orders", "o10")
        .await
        .unwrap()
        .is_none());

    s.set_connection_status("con_1", "disconnected", "test", T0)
        .await
        .unwrap();
    let next = SyncPage {
        page_token: Some("tok2"),
        ..replay
    };
    assert_eq!(
        s.commit_sync_page(&next, T0).await.unwrap(),
        PageCommit::Disconnected
    );
    assert!(s
        .get_record(&Scope::All, "con_1", "orders", "o10")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.get_checkpoint("con_1", "orders")
            .await
            .unwrap()
            .unwrap()
            .run
            .unwrap()
            .page_token
            .as_deref(),
        Some("tok2")
    );
}

async fn the_cursor_is_a_high_water_mark(db: TestDb) {
    let s = &db.store;
    let t = connection(&db, "con_1").await;
    for (i, max) in [(0, Some(T0 + 50)), (1, Some(T0 + 10)), (2, None)] {
        s.begin_sync_run(key(&t, "con_1"), Some(start(T0 + i, false)), T0)
            .await
            .unwrap();
        let page = SyncPage {
            key: key(&t, "con_1"),
            run_started_at: T0 + i,
            page_token: None,
            next_token: None,
            writes: &[],
            max_updated_at: max,
            missing_cursor: 0,
        };
        assert!(matches!(
            s.commit_sync_page(&page, T0).await.unwrap(),
            PageCommit::Committed { done: true, .. }
        ));
        assert_eq!(
            s.get_checkpoint("con_1", "orders")
                .await
                .unwrap()
                .unwrap()
                .cursor,
            Some(T0 + 50)
        );
    }
}

async fn failures_keep_the_run_and_count_for_health(db: TestDb) {
    let s = &db.store;
    let t = connection(&db, "con_1").await;
    s.begin_sync_run(key(&t, "con_1"), Some(start(T0, false)), T0)
        .await
        .unwrap();
    let page = SyncPage {
        key: key(&t, "con_1"),
        run_started_at: T0,
        page_token: None,
        next_token: Some("t"),
        writes: &[],
        max_updated_at: None,
        missing_cursor: 0,
    };
    s.commit_sync_page(&page, T0).await.unwrap();
    s.record_sync_failure(
        key(&t, "con_1"),
        "GET /wms/orders answered 503",
        T0 + 60_000,
    )
    .await
    .unwrap();
    s.record_sync_failure(
        key(&t, "con_1"),
        "GET /wms/orders answered 503",
        T0 + 61_000,
    )
    .await
    .unwrap();
    s.record_call_outcomes(&t, "con_1", 3, 0, T0 + 4 * 3_600_000)
        .await
        .unwrap();
    let cp = s.get_checkpoint("con_1", "orders").await.unwrap().unwrap();
    assert_eq!(
        cp.last_error.as_deref(),
        Some("GET /wms/orders answered 503")
    );
    assert_eq!(
        cp.run.unwrap().page_token.as_deref(),
        Some("t"),
        "the run stays, to resume"
    );
    let now = T0 + 4 * 3_600_000 + 1;
    let w = s
        .outcome_windows(now, &[3_600_000, 6 * 3_600_000])
        .await
        .unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].sums, vec![(3, 0), (4, 2)]);
    let briefs = s.checkpoint_briefs().await.unwrap();
    assert_eq!(
        (briefs[0].run_started_at, briefs[0].last_error.is_some()),
        (Some(T0), true)
    );
    assert_eq!(
        s.purge_sync_outcomes(T0 + 3_600_000).await.unwrap(),
        2,
        "the page's minute and the failures'"
    );
}

async fn purge_deletes_one_connections_data(db: TestDb) {
    let s = &db.store;
    let t = connection(&db, "con_1").await;
    connection(&db, "con_2").await;
    for conn in ["con_1", "con_2"] {
        s.begin_sync_run(key(&t, conn), Some(start(T0, true)), T0)
            .await
            .unwrap();
        let page = items(0..4, T0);
        let writes = keyed(&t, conn, &page);
        let p = SyncPage {
            key: key(&t, conn),
            run_started_at: T0,
            page_token: None,
            next_token: None,
            writes: &writes,
            max_updated_at: None,
            missing_cursor: 0,
        };
        s.commit_sync_page(&p, T0).await.unwrap();
    }
    let purged = s.purge_sync_data("con_1").await.unwrap();
    assert_eq!(
        (purged.records, purged.changes, purged.checkpoints),
        (4, 4, 1)
    );
    assert!(s.get_checkpoint("con_1", "orders").await.unwrap().is_none());
    assert_eq!(
        s.list_changes(&Scope::All, None, None, 0, 100)
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(s
        .get_record(&Scope::All, "con_2", "orders", "o0")
        .await
        .unwrap()
        .is_some());
}

async fn a_batch_equals_its_writes_one_by_one(db: TestDb) {
    let s = &db.store;
    // The same sequence applied as one batch and as single writes, on two connections.
    let seq: Vec<(&str, RecordWrite)> = vec![
        (
            "a",
            RecordWrite::Upsert {
                data: json!({"v": 1}),
                remote_updated_at: Some(T0),
            },
        ),
        (
            "b",
            RecordWrite::Upsert {
                data: json!({"v": 1}),
                remote_updated_at: None,
            },
        ),
        (
            "a",
            RecordWrite::Upsert {
                data: json!({"v": 1}),
                remote_updated_at: Some(T0 + 1),
            },
        ),
        (
            "a",
            RecordWrite::Upsert {
                data: json!({"v": 0}),
                remote_updated_at: Some(T0 - 1),
            },
        ),
        ("b", RecordWrite::Delete),
        (
            "b",
            RecordWrite::Upsert {
                data: json!({"v": 2}),
                remote_updated_at: None,
            },
        ),
        ("c", RecordWrite::Delete),
        (
            "a",
            RecordWrite::Upsert {
                data: json!({"v": 3}),
                remote_updated_at: Some(T0 + 2),
            },
        ),
        ("a", RecordWrite::Delete),
    ];
    let batch: Vec<_> = seq
        .iter()
        .map(|(id, w)| {
            (
                RecordKey {
                    tenant_id: "ten",
                    connection_id: "batch",
                    resource: "orders",
                    external_id: id,
                },
                w.clone(),
            )
        })
        .collect();
    let batched = s.apply_records(&batch, "sync", T0).await.unwrap();
    let mut single = Vec::new();
    for (id, w) in &seq {
        single.push(
            s.apply_record(
                syncguard_store::records::RecordKey {
                    tenant_id: "ten",
                    connection_id: "single",
                    resource: "orders",
                    external_id: id,
                },
                w,
                "sync",
                T0,
            )
            .await
            .unwrap(),
        );
    }
    let kinds = |v: &[Option<syncguard_store::records::Change>]| {
        v.iter()
            .map(|c| c.as_ref().map(|c| (c.kind.clone(), c.hash.clone())))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&batched), kinds(&single));
    let seqs: Vec<i64> = batched.iter().flatten().map(|c| c.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "changes are numbered in write order: {seqs:?}"
    );
    for id in ["a", "b", "c"] {
        let a = s
            .get_record(&Scope::All, "batch", "orders", id)
            .await
            .unwrap()
            .map(|r| (r.data, r.hash, r.deleted, r.remote_updated_at));
        let b = s
            .get_record(&Scope::All, "single", "orders", id)
            .await
            .unwrap()
            .map(|r| (r.data, r.hash, r.deleted, r.remote_updated_at));
        assert_eq!(a, b, "record {id}");
    }
}

async fn queue_depths_and_dead_letters_per_connection(db: TestDb) {
    let s = &db.store;
    for (conn, n) in [("con_1", 3), ("con_2", 1)] {
        for _ in 0..n {
            let mut j = NewJob::new("k", json!({}));
            j.tenant_id = Some("ten".into());
            j.connection_id = Some(conn.into());
            s.enqueue(&j, T0).await.unwrap();
        }
    }
    let depths = s.queue_depths().await.unwrap();
    let of = |c: &str| {
        depths
            .iter()
            .filter(|d| d.connection_id.as_deref() == Some(c) && d.state == JobState::Available)
            .map(|d| d.count)
            .sum::<i64>()
    };
    assert_eq!((of("con_1"), of("con_2")), (3, 1));
    assert!(s.recent_dead_letters(T0).await.unwrap().is_empty());
    assert!(s
        .webhook_backlog(&event_id_floor(T0))
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .webhook_latencies(&event_id_floor(T0), 10)
        .await
        .unwrap()
        .is_empty());
}
