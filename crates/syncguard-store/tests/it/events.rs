use crate::T0;
use serde_json::json;
use syncguard_store::connections::NewConnection;
use syncguard_store::events::{
    DuplicateBy, EventFilter, EventReplayRequest, EventRun, EventStatus, InboundEvent, Ingested,
    NewInboundEvent,
};
use syncguard_store::page::PageRequest;
use syncguard_store::queue::{JobFilter, JobState, NewJob};
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, Store};

crate::on_both_stores!(
    one_batch_stores_events_jobs_and_duplicates,
    content_keys_expire_after_the_window,
    concurrent_batches_store_one_event_per_delivery,
    processing_runs_are_counted_and_linked,
    replay_requeues_once_and_skips_duplicates,
    lists_filter_paginate_and_respect_scope,
);

const DAY: i64 = 24 * 3_600_000;

/// A tenant with one connection; returns (tenant id, connection id).
pub(crate) async fn connection(s: &Store, name: &str) -> (String, String) {
    let t = s.create_tenant(name, T0).await.unwrap();
    let id = format!("con_{name}");
    s.create_connection(
        NewConnection {
            id: id.clone(),
            tenant_id: t.id.clone(),
            provider: "trackstar".into(),
            name: name.into(),
            status: "active".into(),
            config: json!({}),
            credentials: None,
            webhook_secrets: None,
        },
        T0,
    )
    .await
    .unwrap();
    (t.id, id)
}

/// An event id made now, as the webhook receiver makes them (from the wall clock).
pub(crate) fn event_id() -> String {
    static IDS: syncguard_core::ids::IdGen = syncguard_core::ids::IdGen::new();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    IDS.next("evt", wall, rand::random())
}

pub(crate) fn event(
    tenant: &str,
    conn: &str,
    delivery: &str,
    content: &str,
    at: i64,
) -> NewInboundEvent {
    let id = event_id();
    let mut job = NewJob::new("webhook.process", json!({ "event_id": id }));
    job.tenant_id = Some(tenant.into());
    job.connection_id = Some(conn.into());
    job.unique_key = Some(format!("webhook.process:{id}"));
    job.correlation_id = Some(delivery.into());
    NewInboundEvent {
        id,
        tenant_id: tenant.into(),
        connection_id: conn.into(),
        provider: "trackstar".into(),
        delivery_id: Some(delivery.into()),
        event_type: Some("order.updated".into()),
        content_key: format!("{tenant}:{conn}:-:-:{content}"),
        signature: "standard:secret[0]".into(),
        correlation_id: delivery.into(),
        headers: vec![("webhook-id".into(), delivery.into())],
        body: format!("{{\"c\":\"{content}\"}}").into_bytes(),
        received_at: at,
        job,
    }
}

fn all() -> PageRequest {
    PageRequest {
        after: None,
        limit: 500,
    }
}

async fn events(s: &Store, scope: &Scope, f: &EventFilter) -> Vec<InboundEvent> {
    s.list_events(scope, f, &all()).await.unwrap().items
}

async fn process_jobs(s: &Store) -> usize {
    let f = JobFilter {
        kind: Some("webhook.process".into()),
        ..Default::default()
    };
    s.list_jobs(&Scope::All, &f, &all())
        .await
        .unwrap()
        .items
        .len()
}

async fn one_batch_stores_events_jobs_and_duplicates(db: TestDb) {
    let s = &db.store;
    let (t, c) = connection(s, "acme").await;
    let first = event(&t, &c, "d1", "a", T0);
    let batch = vec![
        first.clone(),
        event(&t, &c, "d1", "a", T0 + 1), // the same delivery again
        event(&t, &c, "d2", "a", T0 + 2), // another delivery id, same content
        event(&t, &c, "d3", "b", T0 + 3), // new
    ];
    let out = s.ingest_events(&batch, DAY, T0 + 3).await.unwrap();
    assert!(matches!(&out[0], Ingested::Accepted { event_id, .. } if *event_id == first.id));
    assert_eq!(
        out[1],
        Ingested::Duplicate {
            original_id: first.id.clone(),
            stored_as: batch[1].id.clone(),
            by: DuplicateBy::DeliveryId
        }
    );
    assert_eq!(
        out[2],
        Ingested::Duplicate {
            original_id: first.id.clone(),
            stored_as: batch[2].id.clone(),
            by: DuplicateBy::ContentKey
        }
    );
    assert!(matches!(out[3], Ingested::Accepted { .. }));
    assert_eq!(
        process_jobs(s).await,
        2,
        "one job per new event, none for duplicates"
    );

    let stored = events(s, &Scope::All, &EventFilter::default()).await;
    assert_eq!(stored.len(), 4, "duplicates are stored too");
    let dups: Vec<_> = stored
        .iter()
        .filter(|e| e.status == EventStatus::Duplicate)
        .collect();
    assert_eq!(dups.len(), 2);
    assert!(dups
        .iter()
        .all(|e| e.duplicate_of.as_deref() == Some(first.id.as_str())));

    let detail = s
        .get_event(&Scope::All, None, &first.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.body, first.body, "the body byte for byte");
    assert_eq!(detail.headers, first.headers);
    assert_eq!(detail.job_ids.len(), 1);
    let job = s
        .get_job(&Scope::All, None, detail.job_ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            job.payload["event_id"].as_str(),
            job.correlation_id.as_deref()
        ),
        (Some(first.id.as_str()), Some("d1"))
    );
    let conn = s
        .get_connection(&Scope::All, None, &c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.last_webhook_at, Some(T0 + 3));

    // A later batch meets the same rules against what is stored.
    let again = s
        .ingest_events(&[event(&t, &c, "d3", "z", T0 + 10)], DAY, T0 + 10)
        .await
        .unwrap();
    assert!(matches!(
        &again[0],
        Ingested::Duplicate {
            by: DuplicateBy::DeliveryId,
            ..
        }
    ));
}

async fn content_keys_expire_after_the_window(db: TestDb) {
    let s = &db.store;
    let (t, c) = connection(s, "acme").await;
    let out = s
        .ingest_events(&[event(&t, &c, "d1", "same", T0)], DAY, T0)
        .await
        .unwrap();
    assert!(matches!(out[0], Ingested::Accepted { .. }));
    let inside = s
        .ingest_events(
            &[event(&t, &c, "d2", "same", T0 + DAY - 1)],
            DAY,
            T0 + DAY - 1,
        )
        .await
        .unwrap();
    assert!(matches!(
        inside[0],
        Ingested::Duplicate {
            by: DuplicateBy::ContentKey,
            ..
        }
    ));
    let after = s
        .ingest_events(
            &[event(&t, &c, "d3", "same", T0 + DAY + 1)],
            DAY,
            T0 + DAY + 1,
        )
        .await
        .unwrap();
    assert!(
        matches!(after[0], Ingested::Accepted { .. }),
        "the window has passed"
    );
    // Purging drops only claims older than asked.
    assert_eq!(
        s.purge_content_keys(T0 + DAY).await.unwrap(),
        0,
        "the claim was taken over at T0 + DAY + 1"
    );
    assert_eq!(s.purge_content_keys(T0 + 2 * DAY + 2).await.unwrap(), 1);
}

async fn concurrent_batches_store_one_event_per_delivery(db: TestDb) {
    let (t, c) = connection(&db.store, "acme").await;
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = db.store.clone();
        let (t, c) = (t.clone(), c.clone());
        tasks.push(tokio::spawn(async move {
            // Each batch also carries a delivery of its own, in a different order per task.
            let mut batch = vec![
                event(&t, &c, "same", "x", T0),
                event(&t, &c, &format!("own{i}"), &format!("o{i}"), T0),
            ];
            if i % 2 == 0 {
                batch.reverse();
            }
            s.ingest_events(&batch, DAY, T0).await.unwrap()
        }));
    }
    let mut accepted_same = 0;
    for task in tasks {
        for outcome in task.await.unwrap() {
            if let Ingested::Accepted { event_id, .. } = outcome {
                let e = db
                    .store
                    .get_event(&Scope::All, None, &event_id)
                    .await
                    .unwrap()
                    .unwrap();
                accepted_same += usize::from(e.event.delivery_id.as_deref() == Some("same"));
            }
        }
    }
    assert_eq!(accepted_same, 1);
    assert_eq!(process_jobs(&db.store).await, 11);
}

fn run(event_id: &str, job_id: i64, status: EventStatus, note: &str) -> EventRun {
    EventRun {
        event_id: event_id.into(),
        job_id,
        status,
        note: Some(note.into()),
        fence: None,
    }
}

async fn processing_runs_are_counted_and_linked(db: TestDb) {
    let s = &db.store;
    let (t, c) = connection(s, "acme").await;
    let e = event(&t, &c, "d1", "a", T0);
    let other = event(&t, &c, "d2", "b", T0);
    s.ingest_events(&[e.clone(), other.clone()], DAY, T0)
        .await
        .unwrap();
    let (ev, body) = s.event_for_processing(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (ev.attempts, ev.status, body),
        (0, EventStatus::Received, e.body.clone())
    );
    // Two runs recorded together, as the gateway's group commit does.
    let runs = [
        run(&e.id, 999, EventStatus::Failed, "transient: boom"),
        run(&other.id, 998, EventStatus::Processed, "ok"),
    ];
    s.record_event_runs(&runs, T0 + 6).await.unwrap();
    let (ev, _) = s.event_for_processing(&e.id).await.unwrap().unwrap();
    assert_eq!(
        (ev.attempts, ev.status, ev.note.as_deref()),
        (1, EventStatus::Failed, Some("transient: boom"))
    );
    s.record_event_runs(&[run(&e.id, 999, EventStatus::Processed, "done")], T0 + 8)
        .await
        .unwrap();
    let d = s
        .get_event(&Scope::All, None, &e.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.event.status, d.event.attempts, d.event.processed_at),
        (EventStatus::Processed, 2, Some(T0 + 8))
    );
    assert_eq!(
        d.job_ids.len(),
        2,
        "the gateway's job and the run's job 999, linked once: {:?}",
        d.job_ids
    );
    assert!(d.job_ids.contains(&999));
    assert!(s
        .event_for_processing("evt_missing")
        .await
        .unwrap()
        .is_none());
}

async fn replay_requeues_once_and_skips_duplicates(db: TestDb) {
    let s = &db.store;
    let (t, c) = connection(s, "acme").await;
    let (_, other) = connection(s, "globex").await;
    let batch = [
        event(&t, &c, "d1", "a", T0),
        event(&t, &c, "d2", "a", T0),
        event(&t, &c, "d3", "b", T0),
    ];
    s.ingest_events(&batch, DAY, T0).await.unwrap();
    // Run the gateway's jobs to the end so that nothing is pending.
    let claimed = s.claim_jobs("w", 10, T0, 30_000, None).await.unwrap();
    let done: Vec<_> = claimed
        .iter()
        .map(|j| syncguard_store::queue::Completion {
            id: j.id,
            lease_id: None,
            outcome: syncguard_store::queue::Outcome::Succeeded,
        })
        .collect();
    s.complete_jobs("w", &done, T0).await.unwrap();
    let runs: Vec<EventRun> = claimed
        .iter()
        .map(|j| {
            run(
                j.payload["event_id"].as_str().unwrap(),
                j.id,
                EventStatus::Processed,
                "ok",
            )
        })
        .collect();
    s.record_event_runs(&runs, T0).await.unwrap();
    let make_job = |e: &InboundEvent| {
        let mut j = NewJob::new(
            "webhook.process",
            json!({ "event_id": e.id, "replay": true }),
        );
        j.tenant_id = Some(e.tenant_id.clone());
        j.connection_id = Some(e.connection_id.clone());
        j.unique_key = Some(format!("webhook.process:{}", e.id));
        j
    };
    let scope = Scope::Tenant(t.clone());
    let mut req = EventReplayRequest {
        filter: EventFilter {
            connection_id: Some(c.clone()),
            ..Default::default()
        },
        dry_run: true,
        stagger_ms: 1_000,
        ..Default::default()
    };
    let dry = s
        .replay_events(&scope, &req, &make_job, T0 + 10)
        .await
        .unwrap();
    assert_eq!(
        (dry.matched, dry.replayed),
        (2, 0),
        "the duplicate is not replayable"
    );
    assert_eq!(process_jobs(s).await, 2, "a dry run writes nothing");

    req.dry_run = false;
    let r = s
        .replay_events(&scope, &req, &make_job, T0 + 10)
        .await
        .unwrap();
    assert_eq!((r.matched, r.replayed, r.job_ids.len()), (2, 2, 2));
    let runs: Vec<i64> = {
        let mut v = Vec::new();
        for id in &r.job_ids {
            v.push(
                s.get_job(&Scope::All, None, *id)
                    .await
                    .unwrap()
                    .unwrap()
                    .run_at,
            );
        }
        v
    };
    assert_eq!(runs, vec![T0 + 10, T0 + 1_010], "staggered");
    let e0 = s
        .get_event(&Scope::All, None, &batch[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (e0.event.status, e0.job_ids.len()),
        (EventStatus::Received, 2)
    );

    // Replaying again while those jobs wait changes nothing.
    let r = s
        .replay_events(&scope, &req, &make_job, T0 + 20)
        .await
        .unwrap();
    assert_eq!((r.matched, r.replayed), (2, 0));
    // Another tenant cannot replay them, even by id.
    let theirs = EventReplayRequest {
        ids: Some(vec![batch[0].id.clone()]),
        ..Default::default()
    };
    let r = s
        .replay_events(&Scope::Tenant("ten_other".into()), &theirs, &make_job, T0)
        .await
        .unwrap();
    assert_eq!(r.matched, 0);
    // A key limited to another connection sees none of them.
    let limited = EventReplayRequest {
        ids: Some(vec![batch[0].id.clone()]),
        filter: EventFilter {
            visible_connections: Some(vec![other]),
            ..Default::default()
        },
        ..Default::default()
    };
    assert_eq!(
        s.replay_events(&Scope::All, &limited, &make_job, T0)
            .await
            .unwrap()
            .matched,
        0
    );
    let waiting = JobFilter {
        state: Some(JobState::Available),
        ..Default::default()
    };
    assert_eq!(
        s.list_jobs(&Scope::All, &waiting, &all())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

async fn lists_filter_paginate_and_respect_scope(db: TestDb) {
    let s = &db.store;
    let (ta, a) = connection(s, "acme").await;
    let (tb, b) = connection(s, "globex").await;
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.push(event(&ta, &a, &format!("a{i}"), &format!("a{i}"), T0 + i));
    }
    let mut typed = event(&tb, &b, "b0", "b0", T0 + 100);
    typed.event_type = Some("inventory.updated".into());
    batch.push(typed);
    s.ingest_events(&batch, DAY, T0 + 100).await.unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest {
        after: None,
        limit: 2,
    };
    loop {
        let p = s
            .list_events(&Scope::Tenant(ta.clone()), &EventFilter::default(), &page)
            .await
            .unwrap();
        seen.extend(p.items.iter().map(|e| e.delivery_id.clone().unwrap()));
        match p.next_cursor {
            Some(c) => page.after = Some(c),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["a4", "a3", "a2", "a1", "a0"],
        "newest first, each once, only the tenant's own"
    );

    let only = |f: EventFilter| async move { events(s, &Scope::All, &f).await.len() };
    assert_eq!(
        only(EventFilter {
            event_type: Some("inventory.updated".into()),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        only(EventFilter {
            connection_id: Some(a.clone()),
            ..Default::default()
        })
        .await,
        5
    );
    assert_eq!(
        only(EventFilter {
            since: Some(T0 + 3),
            ..Default::default()
        })
        .await,
        3
    );
    assert_eq!(
        only(EventFilter {
            status: Some(EventStatus::Received),
            ..Default::default()
        })
        .await,
        6
    );
    assert_eq!(
        only(EventFilter {
            visible_connections: Some(vec![b.clone()]),
            ..Default::default()
        })
        .await,
        1
    );

    let id = batch[0].id.clone();
    assert!(s
        .get_event(&Scope::Tenant(tb.clone()), None, &id)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_event(
            &Scope::Tenant(ta.clone()),
            Some(std::slice::from_ref(&b)),
            &id
        )
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_event(&Scope::Tenant(ta), Some(&[a]), &id)
        .await
        .unwrap()
        .is_some());
}
