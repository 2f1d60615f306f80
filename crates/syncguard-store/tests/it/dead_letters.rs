//! Job outcomes (retry, dead, circuit open), dead letters and their replay, the cancel and
//! retry operations, and tenant scope over jobs.

use crate::queue::{all, job};
use crate::T0;
use syncguard_core::class::ErrorClass;
use syncguard_store::queue::{
    Completion, JobFilter, JobState, Outcome, ReplayFilter, RetryOutcome,
};
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, StoreError};

crate::on_both_stores!(
    retry_dead_and_circuit_open_outcomes,
    replay_dry_run_changes_nothing_and_replay_links,
    filter_replay_skips_already_replayed_and_respects_scope,
    cancel_and_retry_endpoints,
    tenant_scope_hides_jobs,
);

async fn retry_dead_and_circuit_open_outcomes(db: TestDb) {
    let s = &db.store;
    let a = s.enqueue(&job("a"), T0).await.unwrap().id;
    let b = s.enqueue(&job("b"), T0).await.unwrap().id;
    let c = s.enqueue(&job("c"), T0).await.unwrap().id;
    s.claim_jobs("w", 3, T0, 30_000, None).await.unwrap();
    let batch = [
        Completion {
            id: a,
            lease_id: None,
            outcome: Outcome::Retry {
                run_at: T0 + 4_000,
                class: ErrorClass::Transient,
                error: "503".into(),
                count_attempt: true,
            },
        },
        Completion {
            id: b,
            lease_id: None,
            outcome: Outcome::Dead {
                class: ErrorClass::Permanent,
                error: "422 invalid sku".into(),
            },
        },
        Completion {
            id: c,
            lease_id: None,
            outcome: Outcome::Retry {
                run_at: T0 + 60_000,
                class: ErrorClass::CircuitOpen,
                error: "circuit open".into(),
                count_attempt: false,
            },
        },
    ];
    assert!(s
        .complete_jobs("w", &batch, T0 + 1)
        .await
        .unwrap()
        .is_empty());
    let get = |id| async move { s.get_job(&Scope::All, None, id).await.unwrap().unwrap() };
    let ja = get(a).await;
    assert_eq!(
        (ja.state, ja.run_at, ja.attempts),
        (JobState::Retryable, T0 + 4_000, 1)
    );
    let jb = get(b).await;
    assert_eq!(
        (jb.state, jb.error_class, jb.reviewed),
        (JobState::Dead, Some(ErrorClass::Permanent), false)
    );
    assert_eq!(jb.last_error.as_deref(), Some("422 invalid sku"));
    let jc = get(c).await;
    assert_eq!(
        (jc.state, jc.attempts),
        (JobState::Retryable, 0),
        "circuit_open does not spend an attempt"
    );
}

async fn kill_to_dead(
    db: &TestDb,
    kind: &str,
    connection: Option<&str>,
    tenant: Option<&str>,
    now: i64,
) -> i64 {
    let mut j = job(kind);
    j.connection_id = connection.map(String::from);
    j.tenant_id = tenant.map(String::from);
    let id = db.store.enqueue(&j, now).await.unwrap().id;
    let claimed = db
        .store
        .claim_jobs("w", 100, now, 30_000, None)
        .await
        .unwrap();
    assert!(claimed.iter().any(|c| c.id == id));
    let done: Vec<Completion> = claimed
        .iter()
        .map(|c| Completion {
            id: c.id,
            lease_id: None,
            outcome: Outcome::Dead {
                class: ErrorClass::Permanent,
                error: "boom".into(),
            },
        })
        .collect();
    db.store.complete_jobs("w", &done, now).await.unwrap();
    id
}

async fn replay_dry_run_changes_nothing_and_replay_links(db: TestDb) {
    let s = &db.store;
    let d1 = kill_to_dead(&db, "publish", Some("con_a"), None, T0).await;
    let d2 = kill_to_dead(&db, "publish", Some("con_b"), None, T0).await;
    let before = s
        .list_jobs(&Scope::All, &JobFilter::default(), &all())
        .await
        .unwrap()
        .items;
    let dry = s
        .replay_dead_letters(
            &Scope::All,
            &ReplayFilter {
                kind: Some("publish".into()),
                ..Default::default()
            },
            true,
            0,
            T0 + 10,
        )
        .await
        .unwrap();
    assert_eq!((dry.matched, dry.replayed), (2, 0));
    let after = s
        .list_jobs(&Scope::All, &JobFilter::default(), &all())
        .await
        .unwrap()
        .items;
    assert_eq!(before, after, "dry run wrote nothing");

    let r = s
        .replay_dead_letters(
            &Scope::All,
            &ReplayFilter {
                ids: Some(vec![d1, d2]),
                ..Default::default()
            },
            false,
            1_000,
            T0 + 10,
        )
        .await
        .unwrap();
    assert_eq!((r.matched, r.replayed, r.job_ids.len()), (2, 2, 2));
    for (i, fresh_id) in r.job_ids.iter().enumerate() {
        let fresh = s
            .get_job(&Scope::All, None, *fresh_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((fresh.state, fresh.attempts), (JobState::Available, 0));
        assert_eq!(fresh.run_at, T0 + 10 + 1_000 * i as i64, "staggered");
        let dead = s
            .get_job(&Scope::All, None, fresh.replayed_from.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (dead.state, dead.replayed_as),
            (JobState::Dead, Some(*fresh_id))
        );
    }
}

async fn filter_replay_skips_already_replayed_and_respects_scope(db: TestDb) {
    let s = &db.store;
    kill_to_dead(&db, "sync", Some("con_a"), Some("ten_a"), T0).await;
    kill_to_dead(&db, "sync", Some("con_b"), Some("ten_b"), T0).await;
    let as_a = Scope::Tenant("ten_a".into());
    let r = s
        .replay_dead_letters(&as_a, &ReplayFilter::default(), false, 0, T0)
        .await
        .unwrap();
    assert_eq!(
        (r.matched, r.replayed),
        (1, 1),
        "tenant b's dead letter is invisible to a"
    );
    let again = s
        .replay_dead_letters(&as_a, &ReplayFilter::default(), false, 0, T0)
        .await
        .unwrap();
    assert_eq!(again.matched, 0, "a filter replay does not replay twice");
    let aged = s
        .replay_dead_letters(
            &Scope::All,
            &ReplayFilter {
                max_age_hours: Some(1),
                ..Default::default()
            },
            true,
            0,
            T0 + 2 * 3_600_000,
        )
        .await
        .unwrap();
    assert_eq!(aged.matched, 0, "older than max_age_hours");
    let by_conn = s
        .replay_dead_letters(
            &Scope::All,
            &ReplayFilter {
                visible_connections: Some(vec!["con_a".into()]),
                ..Default::default()
            },
            true,
            0,
            T0,
        )
        .await
        .unwrap();
    assert_eq!(
        by_conn.matched, 0,
        "con_b is outside the key's connections; con_a was replayed"
    );
}

async fn cancel_and_retry_endpoints(db: TestDb) {
    let s = &db.store;
    let mut later = job("x");
    later.run_at = Some(T0 + 60_000);
    let id = s.enqueue(&later, T0).await.unwrap().id;
    match s.retry_job(&Scope::All, None, id, T0 + 1).await.unwrap() {
        RetryOutcome::RunNow(j) => assert_eq!(j.run_at, T0 + 1),
        other => panic!("{other:?}"),
    }
    let cancelled = s.cancel_job(&Scope::All, None, id, T0 + 2).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    assert!(matches!(
        s.cancel_job(&Scope::All, None, id, T0 + 3).await,
        Err(StoreError::Conflict(_))
    ));
    match s.retry_job(&Scope::All, None, id, T0 + 4).await.unwrap() {
        RetryOutcome::Replayed(j) => {
            assert_eq!((j.replayed_from, j.state), (Some(id), JobState::Available))
        }
        other => panic!("{other:?}"),
    }
    let dead = kill_to_dead(&db, "y", None, None, T0 + 5).await;
    let reviewed = s
        .review_dead_letter(&Scope::All, None, dead, true)
        .await
        .unwrap();
    assert!(reviewed.reviewed);
}

async fn tenant_scope_hides_jobs(db: TestDb) {
    let s = &db.store;
    let mut j = job("sync");
    j.tenant_id = Some("ten_a".into());
    j.connection_id = Some("con_a".into());
    let id = s.enqueue(&j, T0).await.unwrap().id;
    let b = Scope::Tenant("ten_b".into());
    assert!(s.get_job(&b, None, id).await.unwrap().is_none());
    assert!(matches!(
        s.cancel_job(&b, None, id, T0).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        s.retry_job(&b, None, id, T0).await,
        Err(StoreError::NotFound)
    ));
    assert!(s
        .list_jobs(&b, &JobFilter::default(), &all())
        .await
        .unwrap()
        .items
        .is_empty());
    let a = Scope::Tenant("ten_a".into());
    assert!(
        s.get_job(&a, Some(&["con_other".to_string()]), id)
            .await
            .unwrap()
            .is_none(),
        "outside the key's connections"
    );
    assert!(s
        .get_job(&a, Some(&["con_a".to_string()]), id)
        .await
        .unwrap()
        .is_some());
}
