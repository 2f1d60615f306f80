//! Fencing tokens, snooze and lease-expiry dead letters (SPEC §3.1).

use crate::events::{connection, event};
use crate::T0;
use serde_json::json;
use syncguard_store::events::{EventRun, EventStatus, Ingested};
use syncguard_store::queue::{Completion, JobState, NewJob, Outcome};
use syncguard_store::records::{RecordKey, RecordWrite};
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, StoreError};

crate::on_both_stores!(
    zombie_writes_after_lease_loss_are_fenced,
    completions_and_renewals_go_by_token,
    one_batch_records_runs_of_several_claims_each_by_its_own_token,
    snooze_spends_no_attempt_and_runs_at_the_time_given,
    lease_expiry_dead_letter_marks_its_event_dead,
);

fn key(id: &str) -> RecordKey<'_> {
    RecordKey {
        tenant_id: "ten",
        connection_id: "con",
        resource: "orders",
        external_id: id,
    }
}

fn upsert(n: i64) -> RecordWrite {
    RecordWrite::Upsert {
        data: json!({ "n": n }),
        remote_updated_at: None,
    }
}

async fn zombie_writes_after_lease_loss_are_fenced(db: TestDb) {
    let s = &db.store;
    let id = s
        .enqueue(&NewJob::new("slow", json!({})), T0)
        .await
        .unwrap()
        .id;
    let first = s.claim_jobs("w1", 1, T0, 1_000, None).await.unwrap();
    let zombie = s.fenced(first[0].fence().expect("a claim carries a token"));
    // While the lease holds, the run's writes commit.
    assert!(zombie
        .apply_record(key("o1"), &upsert(1), "webhook", T0 + 1)
        .await
        .unwrap()
        .is_some());
    zombie.check_fence().await.unwrap();
    // The lease expires and is rescued: every write of the old run is refused.
    assert_eq!(s.rescue_expired_leases(T0 + 1_001).await.unwrap(), (1, 0));
    let refused = zombie
        .apply_record(key("o2"), &upsert(2), "webhook", T0 + 1_002)
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { job_id }) if job_id == id),
        "{refused:?}"
    );
    assert!(matches!(
        zombie.check_fence().await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(s
        .get_record(&Scope::All, "con", "orders", "o2")
        .await
        .unwrap()
        .is_none());
    // Claimed again (even by the same worker), the new run writes and the old one still cannot.
    let second = s
        .claim_jobs("w1", 1, T0 + 1_003, 1_000, None)
        .await
        .unwrap();
    assert_eq!(second[0].id, id);
    assert_ne!(second[0].lease_id, first[0].lease_id);
    let current = s.fenced(second[0].fence().unwrap());
    assert!(current
        .apply_record(key("o3"), &upsert(3), "webhook", T0 + 1_004)
        .await
        .unwrap()
        .is_some());
    assert!(matches!(
        zombie
            .apply_record(key("o4"), &upsert(4), "webhook", T0 + 1_004)
            .await,
        Err(StoreError::Fenced { .. })
    ));
    // An event run recorded for the zombie is refused; one for the current run is recorded.
    let (t, c) = connection(s, "fence").await;
    let ev = event(&t, &c, "d1", "a", T0);
    let Ingested::Accepted { event_id, .. } = s
        .ingest_events(std::slice::from_ref(&ev), 60_000, T0)
        .await
        .unwrap()
        .remove(0)
    else {
        panic!("accepted");
    };
    let run = |fence| EventRun {
        event_id: event_id.clone(),
        job_id: id,
        status: EventStatus::Processed,
        note: None,
        fence: Some(fence),
    };
    let recorded = s
        .record_event_runs(
            &[
                run(first[0].fence().unwrap()),
                run(second[0].fence().unwrap()),
            ],
            T0 + 1_005,
        )
        .await
        .unwrap();
    assert_eq!(recorded, vec![false, true]);
}

/// A batch of results spans several claims, each with its own token: every run is checked
/// against its own token, never another claim's.
async fn one_batch_records_runs_of_several_claims_each_by_its_own_token(db: TestDb) {
    let s = &db.store;
    for kind in ["a", "b", "c"] {
        s.enqueue(&NewJob::new(kind, json!({})), T0).await.unwrap();
    }
    let first = s.claim_jobs("w", 1, T0, 1_000, None).await.unwrap();
    let second = s.claim_jobs("w", 2, T0, 1_000, None).await.unwrap();
    assert_eq!((first.len(), second.len()), (1, 2));
    let (one, two) = (first[0].lease_id.unwrap(), second[0].lease_id.unwrap());
    assert_ne!(one, two);
    let done = |j: &syncguard_store::queue::Job, lease_id| Completion {
        id: j.id,
        lease_id,
        outcome: Outcome::Succeeded,
    };
    // The last run presents the first claim's token, which is not its own.
    let batch = [
        done(&first[0], Some(one)),
        done(&second[0], Some(two)),
        done(&second[1], Some(one)),
    ];
    let lost = s.complete_jobs("w", &batch, T0 + 1).await.unwrap();
    assert_eq!(lost, vec![second[1].id]);
    let state = |id| async move {
        s.get_job(&Scope::All, None, id)
            .await
            .unwrap()
            .unwrap()
            .state
    };
    assert_eq!(state(first[0].id).await, JobState::Succeeded);
    assert_eq!(state(second[0].id).await, JobState::Succeeded);
    assert_eq!(state(second[1].id).await, JobState::Running);
    // Renewed by the wrong token it is lost; by its own, renewed; then recorded.
    let wrong = syncguard_store::queue::Fence {
        job_id: second[1].id,
        lease_id: one,
    };
    assert_eq!(
        s.renew_leases(&[wrong], T0 + 5_000).await.unwrap(),
        vec![second[1].id]
    );
    assert!(s
        .renew_leases(&[second[1].fence().unwrap()], T0 + 5_000)
        .await
        .unwrap()
        .is_empty());
    let lost = s
        .complete_jobs("w", &[done(&second[1], Some(two))], T0 + 2)
        .await
        .unwrap();
    assert!(lost.is_empty());
    assert_eq!(state(second[1].id).await, JobState::Succeeded);
}

async fn completions_and_renewals_go_by_token(db: TestDb) {
    let s = &db.store;
    let a = s
        .enqueue(&NewJob::new("a", json!({})), T0)
        .await
        .unwrap()
        .id;
    let b = s
        .enqueue(&NewJob::new("b", json!({})), T0)
        .await
        .unwrap()
        .id;
    let claimed = s.claim_jobs("w", 2, T0, 1_000, None).await.unwrap();
    let fa = claimed.iter().find(|j| j.id == a).unwrap().fence().unwrap();
    let mut fb = claimed.iter().find(|j| j.id == b).unwrap().fence().unwrap();
    fb.lease_id += 1; // a token this process does not hold
    assert_eq!(
        s.renew_leases(&[fa, fb], T0 + 5_000).await.unwrap(),
        vec![b]
    );
    let ja = s.get_job(&Scope::All, None, a).await.unwrap().unwrap();
    let jb = s.get_job(&Scope::All, None, b).await.unwrap().unwrap();
    assert_eq!(
        (ja.lease_until, jb.lease_until),
        (Some(T0 + 5_000), Some(T0 + 1_000))
    );
    // Only b lapses.
    assert_eq!(s.rescue_expired_leases(T0 + 1_001).await.unwrap(), (1, 0));
    // A completion under a stale token is refused even from the right worker.
    let done = |id, lease_id| Completion {
        id,
        lease_id: Some(lease_id),
        outcome: Outcome::Succeeded,
    };
    let lost = s
        .complete_jobs("w", &[done(a, fa.lease_id + 1)], T0 + 2)
        .await
        .unwrap();
    assert_eq!(lost, vec![a]);
    let lost = s
        .complete_jobs("w", &[done(a, fa.lease_id)], T0 + 3)
        .await
        .unwrap();
    assert!(lost.is_empty());
    let ja = s.get_job(&Scope::All, None, a).await.unwrap().unwrap();
    assert_eq!(ja.state, JobState::Succeeded);
}

async fn snooze_spends_no_attempt_and_runs_at_the_time_given(db: TestDb) {
    let s = &db.store;
    let mut j = NewJob::new("reconcile", json!({}));
    j.max_attempts = 1;
    let id = s.enqueue(&j, T0).await.unwrap().id;
    // Snoozing again and again never uses up the single attempt.
    let mut now = T0;
    for round in 0..3 {
        let claimed = s.claim_jobs("w", 1, now, 30_000, None).await.unwrap();
        assert_eq!(claimed.len(), 1, "round {round}");
        assert_eq!(claimed[0].attempts, 1);
        let lost = s
            .complete_jobs(
                "w",
                &[Completion {
                    id,
                    lease_id: claimed[0].lease_id,
                    outcome: Outcome::Snooze {
                        run_at: now + 5_000,
                    },
                }],
                now + 1,
            )
            .await
            .unwrap();
        assert!(lost.is_empty());
        let job = s.get_job(&Scope::All, None, id).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.attempts, job.run_at),
            (JobState::Available, 0, now + 5_000)
        );
        assert!(s
            .claim_jobs("w", 1, now + 4_999, 30_000, None)
            .await
            .unwrap()
            .is_empty());
        now += 5_000;
    }
    let last = s.claim_jobs("w", 1, now, 30_000, None).await.unwrap();
    assert_eq!((last[0].id, last[0].attempts), (id, 1));
}

async fn lease_expiry_dead_letter_marks_its_event_dead(db: TestDb) {
    let s = &db.store;
    let (t, c) = connection(s, "lapse").await;
    let mut ev = event(&t, &c, "d1", "a", T0);
    ev.job.max_attempts = 1;
    let mut kept = event(&t, &c, "d2", "b", T0);
    kept.job.max_attempts = 2;
    let out = s.ingest_events(&[ev, kept], 60_000, T0).await.unwrap();
    let ids: Vec<String> = out
        .into_iter()
        .map(|o| match o {
            Ingested::Accepted { event_id, .. } => event_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        s.claim_jobs("w", 2, T0, 1_000, None).await.unwrap().len(),
        2
    );
    // The worker dies: the job with no attempt left is dead, and so is its event; the other
    // job will run again and its event is left as it was.
    assert_eq!(s.rescue_expired_leases(T0 + 1_001).await.unwrap(), (1, 1));
    let dead = s
        .get_event(&Scope::All, None, &ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.event.status, EventStatus::Dead);
    assert!(dead
        .event
        .note
        .unwrap_or_default()
        .contains("lease expired"));
    let retried = s
        .get_event(&Scope::All, None, &ids[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(retried.event.status, EventStatus::Received);
}
