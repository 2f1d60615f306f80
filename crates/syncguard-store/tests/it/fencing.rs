//! Fencing tokens, snooze and lease-expiry dead letters (SPEC §3.1).

use crate::events::{connection, event};
use crate::T0;
use serde_json::json;
use syncguard_store::events::{EventRun, EventStatus, Ingested};
use syncguard_store::page::PageRequest;
use syncguard_store::publish::ObjectKey;
use syncguard_store::queue::{Completion, JobFilter, JobState, NewJob, Outcome};
use syncguard_store::records::{RecordKey, RecordWrite};
use syncguard_store::testkit::TestDb;
use syncguard_store::{Scope, StoreError};

crate::on_both_stores!(
    zombie_writes_after_lease_loss_are_fenced,
    completions_and_renewals_go_by_token,
    one_batch_records_runs_of_several_claims_each_by_its_own_token,
    snooze_spends_no_attempt_and_runs_at_the_time_given,
    lease_expiry_dead_letter_marks_its_event_dead,
    follow_up_jobs_status_changes_and_forgets_of_a_zombie_are_fenced,
    a_put_and_the_publish_jobs_fenced_write_take_locks_in_one_order,
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

/// The other effects a handler has on behalf of its job: enqueueing a follow-up job, moving
/// its connection to `error`, forgetting a desired state (`remote_wins`). A run that lost its
/// lease has none of them; the run holding the job has all of them.
async fn follow_up_jobs_status_changes_and_forgets_of_a_zombie_are_fenced(db: TestDb) {
    let s = &db.store;
    let (t, c) = connection(s, "fence").await;
    let object = ObjectKey {
        tenant_id: &t,
        connection_id: &c,
        resource: "items",
        external_id: "a",
    };
    let data = json!({"q": 1});
    let hash = syncguard_core::canonical::content_hash(&data);
    s.put_desired(object, &data, &hash, &NewJob::new("publish", json!({})), T0)
        .await
        .unwrap();
    let id = s
        .enqueue(&NewJob::new("reconcile", json!({})), T0)
        .await
        .unwrap()
        .id;
    let claimed = s.claim_jobs("w1", 10, T0, 1_000, None).await.unwrap();
    let first = claimed
        .iter()
        .find(|j| j.id == id)
        .unwrap()
        .fence()
        .unwrap();
    let zombie = s.fenced(first);
    assert_eq!(s.rescue_expired_leases(T0 + 1_001).await.unwrap().0, 2);
    let fenced =
        |e: Option<&StoreError>| matches!(e, Some(StoreError::Fenced { job_id }) if *job_id == id);

    let follow_up = NewJob::new("refetch", json!({"n": 1}));
    let refused = zombie.enqueue(&follow_up, T0 + 1_002).await;
    assert!(fenced(refused.as_ref().err()), "{refused:?}");
    let refused = zombie
        .enqueue_many(std::slice::from_ref(&follow_up), T0 + 1_002)
        .await;
    assert!(fenced(refused.as_ref().err()), "{refused:?}");
    let refetches = JobFilter {
        kind: Some("refetch".into()),
        ..Default::default()
    };
    let page = PageRequest {
        after: None,
        limit: 10,
    };
    assert!(s
        .list_jobs(&Scope::All, &refetches, &page)
        .await
        .unwrap()
        .items
        .is_empty());
    let refused = zombie
        .set_connection_status(&c, "error", "credentials refused", T0 + 1_002)
        .await;
    assert!(fenced(refused.as_ref().err()), "{refused:?}");
    let conn = s
        .get_connection(&Scope::All, None, &c)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.status, "active");
    let refused = zombie.forget_desired(object, &hash).await;
    assert!(fenced(refused.as_ref().err()), "{refused:?}");
    assert!(s
        .get_desired(&Scope::All, &c, "items", "a")
        .await
        .unwrap()
        .is_some());

    // The run that holds the job now has every one of these effects.
    let again = s
        .claim_jobs("w1", 10, T0 + 1_003, 1_000, None)
        .await
        .unwrap();
    let current = s.fenced(again.iter().find(|j| j.id == id).unwrap().fence().unwrap());
    current.enqueue(&follow_up, T0 + 1_004).await.unwrap();
    assert_eq!(
        current
            .set_connection_status(&c, "error", "credentials refused", T0 + 1_004)
            .await
            .unwrap(),
        "active"
    );
    assert!(current.forget_desired(object, &hash).await.unwrap());
    assert!(s
        .get_desired(&Scope::All, &c, "items", "a")
        .await
        .unwrap()
        .is_none());
}

/// A desired-state `PUT` locks the object's row and then updates its active publish job; the
/// publish job's fenced write must take the same locks in the same order, or PostgreSQL fails
/// one of the two with `deadlock detected` (the chaos soak met it as a 500 to a `PUT`). SQLite
/// has one writer, so no two transactions hold locks at once there: the test has nothing to
/// interleave and only checks that the write goes through.
async fn a_put_and_the_publish_jobs_fenced_write_take_locks_in_one_order(db: TestDb) {
    use sqlx::{Connection, Row};
    let s = &db.store;
    let key = ObjectKey {
        tenant_id: "ten",
        connection_id: "con",
        resource: "items",
        external_id: "a",
    };
    let data = json!({"q": 1});
    let hash = syncguard_core::canonical::content_hash(&data);
    let mut job = NewJob::new("publish", json!({}));
    job.unique_key = Some(syncguard_store::publish::publish_job_key(
        "con", "items", "a",
    ));
    s.put_desired(key, &data, &hash, &job, T0).await.unwrap();
    let claimed = s.claim_jobs("w1", 1, T0, 60_000, None).await.unwrap();
    let run = s.fenced(claimed[0].fence().unwrap());
    let job_id = claimed[0].id;
    if db.backend() == syncguard_store::Backend::Sqlite {
        run.mark_publish_attempt(key, &hash).await.unwrap();
        return;
    }
    // A PUT in flight: it holds the object's row...
    let mut put = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut put).await.unwrap();
    sqlx::query("SELECT hash FROM desired_state WHERE connection_id = 'con' AND resource = 'items' AND external_id = 'a' FOR UPDATE")
        .execute(&mut put)
        .await
        .unwrap();
    // ...when the publish job writes the same row: it waits for the PUT.
    let h = hash.clone();
    let write = tokio::spawn(async move {
        let key = ObjectKey {
            tenant_id: "ten",
            connection_id: "con",
            resource: "items",
            external_id: "a",
        };
        run.mark_publish_attempt(key, &h).await
    });
    let mut watch = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            .fetch_one(&mut watch)
            .await
            .unwrap()
            .get(0);
        if waiting >= 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the publish write never waited for the PUT"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The PUT goes on to its publish job (as `enqueue` does for an active one) and commits:
    // with the job row share-locked by the waiting write, this was a lock cycle.
    sqlx::query("UPDATE jobs SET pending_payload = '{}' WHERE id = $1")
        .bind(job_id)
        .execute(&mut put)
        .await
        .expect("the PUT's update of its publish job");
    sqlx::query("COMMIT").execute(&mut put).await.unwrap();
    write
        .await
        .unwrap()
        .expect("the publish job's fenced write, after the PUT");
    let d = s
        .get_desired(&Scope::All, "con", "items", "a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.attempted_hash.as_deref(), Some(hash.as_str()));
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
