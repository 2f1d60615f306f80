//! The queue's claiming rules: leases, scheduling, priority, unique keys, debouncing, periodic
//! slots and concurrent claimers. Outcomes, dead letters and replay are in `dead_letters`.

use crate::T0;
use serde_json::json;
use std::collections::HashSet;
use syncguard_core::class::ErrorClass;
use syncguard_store::page::PageRequest;
use syncguard_store::queue::{Completion, JobFilter, JobState, NewJob, Outcome};
use syncguard_store::testkit::TestDb;
use syncguard_store::Scope;

crate::on_both_stores!(
    claim_leases_and_completes,
    scheduled_jobs_wait_for_run_at,
    priority_orders_claims,
    unique_key_never_has_two_active_jobs,
    concurrent_unique_enqueues_make_one_job,
    debounced_burst_keeps_last_payload,
    debounce_during_run_runs_once_more,
    expired_lease_is_rescued_and_zombie_loses,
    periodic_slot_runs_once,
    concurrent_claimers_never_share_a_job,
);

pub(crate) fn job(kind: &str) -> NewJob {
    NewJob::new(kind, json!({"n": 1}))
}

pub(crate) fn all() -> PageRequest {
    PageRequest {
        after: None,
        limit: 500,
    }
}

async fn claim_leases_and_completes(db: TestDb) {
    let s = &db.store;
    let e = s.enqueue(&job("noop"), T0).await.unwrap();
    assert!(!e.deduplicated);
    let claimed = s.claim_jobs("w1", 10, T0, 30_000, None).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let j = &claimed[0];
    assert_eq!((j.id, j.state, j.attempts), (e.id, JobState::Running, 1));
    assert_eq!(j.lease_until, Some(T0 + 30_000));
    assert!(
        s.claim_jobs("w2", 10, T0, 30_000, None)
            .await
            .unwrap()
            .is_empty(),
        "a leased job is not claimed twice"
    );
    assert!(s
        .renew_leases(&[j.fence().unwrap()], T0 + 60_000)
        .await
        .unwrap()
        .is_empty());
    let lost = s
        .complete_jobs(
            "w1",
            &[Completion {
                id: e.id,
                lease_id: None,
                outcome: Outcome::Succeeded,
            }],
            T0 + 5,
        )
        .await
        .unwrap();
    assert!(lost.is_empty());
    let j = s.get_job(&Scope::All, None, e.id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.finished_at, j.locked_by),
        (JobState::Succeeded, Some(T0 + 5), None)
    );
}

async fn scheduled_jobs_wait_for_run_at(db: TestDb) {
    let s = &db.store;
    let mut later = job("noop");
    later.run_at = Some(T0 + 10_000);
    s.enqueue(&later, T0).await.unwrap();
    assert!(s
        .claim_jobs("w", 10, T0 + 9_999, 30_000, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        s.claim_jobs("w", 10, T0 + 10_000, 30_000, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn priority_orders_claims(db: TestDb) {
    let s = &db.store;
    let mut low = job("low");
    low.priority = 5;
    let mut high = job("high");
    high.priority = 0;
    s.enqueue(&low, T0).await.unwrap();
    s.enqueue(&high, T0 + 1).await.unwrap();
    let claimed = s.claim_jobs("w", 1, T0 + 2, 30_000, None).await.unwrap();
    assert_eq!(claimed[0].kind, "high");
    let only_low = s
        .claim_jobs("w", 5, T0 + 2, 30_000, Some(&["low".to_string()]))
        .await
        .unwrap();
    assert_eq!(only_low.len(), 1);
    assert_eq!(only_low[0].kind, "low");
}

async fn unique_key_never_has_two_active_jobs(db: TestDb) {
    let s = &db.store;
    let mut j = job("sync");
    j.unique_key = Some("sync:con_a:orders".into());
    let first = s.enqueue(&j, T0).await.unwrap();
    let second = s.enqueue(&j, T0 + 1).await.unwrap();
    assert_eq!(second.id, first.id);
    assert!(second.deduplicated);
    // Running still counts as active.
    s.claim_jobs("w", 1, T0 + 2, 30_000, None).await.unwrap();
    assert_eq!(s.enqueue(&j, T0 + 3).await.unwrap().id, first.id);
    // Once it finished, the key is free.
    s.complete_jobs(
        "w",
        &[Completion {
            id: first.id,
            lease_id: None,
            outcome: Outcome::Succeeded,
        }],
        T0 + 4,
    )
    .await
    .unwrap();
    let third = s.enqueue(&j, T0 + 5).await.unwrap();
    assert!(!third.deduplicated);
    assert_ne!(third.id, first.id);
}

async fn concurrent_unique_enqueues_make_one_job(db: TestDb) {
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut j = NewJob::new("sync", json!({"i": i}));
            j.unique_key = Some("same".into());
            s.enqueue(&j, T0 + i).await.unwrap().id
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 1, "every enqueue got the one active job");
    let jobs = db
        .store
        .list_jobs(&Scope::All, &JobFilter::default(), &all())
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1);
}

async fn debounced_burst_keeps_last_payload(db: TestDb) {
    let s = &db.store;
    let mut first_id = None;
    for i in 0..50 {
        let mut j = NewJob::new("publish", json!({"version": i}));
        j.unique_key = Some("publish:sku-1".into());
        j.debounce_ms = Some(2_000);
        let e = s.enqueue(&j, T0 + i * 10).await.unwrap();
        assert_eq!(*first_id.get_or_insert(e.id), e.id);
    }
    // Not due until the window after the last edit has passed.
    assert!(s
        .claim_jobs("w", 10, T0 + 490 + 1_999, 30_000, None)
        .await
        .unwrap()
        .is_empty());
    let claimed = s
        .claim_jobs("w", 10, T0 + 490 + 2_000, 30_000, None)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the burst is one run");
    assert_eq!(claimed[0].payload, json!({"version": 49}));
}

async fn debounce_during_run_runs_once_more(db: TestDb) {
    let s = &db.store;
    let mk = |v: i64| {
        let mut j = NewJob::new("publish", json!({"version": v}));
        j.unique_key = Some("publish:sku-2".into());
        j.debounce_ms = Some(1_000);
        j
    };
    let e = s.enqueue(&mk(1), T0).await.unwrap();
    let claimed = s
        .claim_jobs("w", 1, T0 + 1_000, 30_000, None)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, e.id);
    // Edits arrive while version 1 is being published.
    s.enqueue(&mk(2), T0 + 1_100).await.unwrap();
    s.enqueue(&mk(3), T0 + 1_200).await.unwrap();
    s.complete_jobs(
        "w",
        &[Completion {
            id: e.id,
            lease_id: None,
            outcome: Outcome::Succeeded,
        }],
        T0 + 1_300,
    )
    .await
    .unwrap();
    let follow = s
        .claim_jobs("w", 10, T0 + 2_300, 30_000, None)
        .await
        .unwrap();
    assert_eq!(follow.len(), 1);
    assert_ne!(follow[0].id, e.id);
    assert_eq!(follow[0].payload, json!({"version": 3}));
}

async fn expired_lease_is_rescued_and_zombie_loses(db: TestDb) {
    let s = &db.store;
    let mut j = job("slow");
    j.max_attempts = 2;
    let e = s.enqueue(&j, T0).await.unwrap();
    s.claim_jobs("zombie", 1, T0, 1_000, None).await.unwrap();
    assert_eq!(
        s.rescue_expired_leases(T0 + 999).await.unwrap(),
        (0, 0),
        "lease still valid"
    );
    assert_eq!(s.rescue_expired_leases(T0 + 1_001).await.unwrap(), (1, 0));
    let j = s.get_job(&Scope::All, None, e.id).await.unwrap().unwrap();
    assert_eq!(
        (j.state, j.error_class),
        (JobState::Retryable, Some(ErrorClass::Transient))
    );
    let claimed = s
        .claim_jobs("w2", 1, T0 + 1_002, 1_000, None)
        .await
        .unwrap();
    assert_eq!((claimed[0].id, claimed[0].attempts), (e.id, 2));
    // The crashed worker wakes up and reports: refused, the job is w2's now.
    let lost = s
        .complete_jobs(
            "zombie",
            &[Completion {
                id: e.id,
                lease_id: None,
                outcome: Outcome::Succeeded,
            }],
            T0 + 1_003,
        )
        .await
        .unwrap();
    assert_eq!(lost, vec![e.id]);
    assert_eq!(
        s.get_job(&Scope::All, None, e.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Running
    );
    // A second crash uses the last attempt: dead, not retried forever.
    assert_eq!(s.rescue_expired_leases(T0 + 5_000).await.unwrap(), (0, 1));
    assert_eq!(
        s.get_job(&Scope::All, None, e.id)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Dead
    );
}

async fn periodic_slot_runs_once(db: TestDb) {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = db.store.clone();
        tasks.push(tokio::spawn(async move {
            s.schedule_periodic("cleanup", 42, &NewJob::new("cleanup", json!({})), T0)
                .await
                .unwrap()
        }));
    }
    let mut scheduled = 0;
    for t in tasks {
        scheduled += t.await.unwrap().is_some() as i32;
    }
    assert_eq!(scheduled, 1);
    assert!(db
        .store
        .schedule_periodic("cleanup", 43, &NewJob::new("cleanup", json!({})), T0)
        .await
        .unwrap()
        .is_some());
}

async fn concurrent_claimers_never_share_a_job(db: TestDb) {
    let jobs: Vec<NewJob> = (0..600)
        .map(|i| NewJob::new("noop", json!({ "i": i })))
        .collect();
    db.store.enqueue_many(&jobs, T0).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim_jobs(&format!("w{w}"), 25, T0, 30_000, None)
                    .await
                    .unwrap();
                if got.is_empty() {
                    break mine;
                }
                mine.extend(got.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for id in t.await.unwrap() {
            total += 1;
            assert!(seen.insert(id), "job {id} claimed twice");
        }
    }
    assert_eq!(total, 600);
}
