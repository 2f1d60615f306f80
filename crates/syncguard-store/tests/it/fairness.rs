//! Fair claiming (SPEC §3.1 "Fairness"): one connection's backlog does not starve the others.

use crate::T0;
use serde_json::json;
use std::collections::HashMap;
use syncguard_store::queue::{Completion, NewJob, Outcome};
use syncguard_store::testkit::TestDb;

crate::on_both_stores!(
    a_small_connection_is_claimed_next_to_a_huge_backlog,
    claims_go_round_robin_across_tenants_then_connections,
    running_jobs_per_connection_are_capped,
);

fn job(tenant: &str, conn: Option<&str>, n: usize) -> NewJob {
    let mut j = NewJob::new("webhook.process", json!({ "n": n }));
    j.tenant_id = Some(tenant.into());
    j.connection_id = conn.map(String::from);
    j
}

fn per_connection(jobs: &[syncguard_store::queue::Job]) -> HashMap<Option<String>, usize> {
    let mut n = HashMap::new();
    for j in jobs {
        *n.entry(j.connection_id.clone()).or_insert(0) += 1;
    }
    n
}

async fn a_small_connection_is_claimed_next_to_a_huge_backlog(db: TestDb) {
    let s = &db.store;
    for batch in 0..20 {
        let jobs: Vec<NewJob> = (0..1_000)
            .map(|i| job("t1", Some("con_a"), batch * 1_000 + i))
            .collect();
        s.enqueue_many(&jobs, T0).await.unwrap();
    }
    // Enqueued last, and later than every job of A.
    let b = s
        .enqueue(&job("t2", Some("con_b"), 0), T0 + 1)
        .await
        .unwrap()
        .id;
    let first = s.claim_jobs("w", 32, T0 + 2, 30_000, None).await.unwrap();
    assert_eq!(first.len(), 32);
    let at = first.iter().position(|j| j.id == b);
    assert!(
        matches!(at, Some(0 | 1)),
        "B's job is among the first of the first claim: {at:?}"
    );
}

async fn claims_go_round_robin_across_tenants_then_connections(db: TestDb) {
    let s = &db.store;
    let mut jobs = Vec::new();
    for i in 0..10 {
        jobs.push(job("t1", Some("con_a"), i));
        jobs.push(job("t1", Some("con_b"), i));
        jobs.push(job("t2", Some("con_c"), i));
    }
    s.enqueue_many(&jobs, T0).await.unwrap();
    // Tenant t1 takes turns between its two connections; t2 has one, so it gets a job each
    // turn: A, C | B, C | A, C.
    let claimed = s.claim_jobs("w", 6, T0, 30_000, None).await.unwrap();
    let n = per_connection(&claimed);
    assert_eq!(n[&Some("con_a".to_string())], 2, "{n:?}");
    assert_eq!(n[&Some("con_b".to_string())], 1, "{n:?}");
    assert_eq!(n[&Some("con_c".to_string())], 3, "{n:?}");
    // Priority still comes first: an urgent job of A goes before anyone's turn.
    let mut urgent = job("t1", Some("con_a"), 99);
    urgent.priority = -1;
    let u = s.enqueue(&urgent, T0).await.unwrap().id;
    let next = s.claim_jobs("w", 1, T0, 30_000, None).await.unwrap();
    assert_eq!(next[0].id, u);
}

async fn running_jobs_per_connection_are_capped(db: TestDb) {
    let s = &db.store;
    let mut jobs: Vec<NewJob> = (0..5).map(|i| job("t1", Some("con_a"), i)).collect();
    jobs.push(job("t1", None, 0));
    jobs.push(job("t1", None, 1));
    jobs.push(job("t1", None, 2));
    s.enqueue_many(&jobs, T0).await.unwrap();
    let first = s
        .claim_jobs_capped("w", 10, T0, 30_000, None, 2)
        .await
        .unwrap();
    let n = per_connection(&first);
    // Jobs without a connection are not capped.
    assert_eq!((n[&Some("con_a".to_string())], n[&None]), (2, 3), "{n:?}");
    // Two of A run already: nothing more of A until one ends.
    assert!(s
        .claim_jobs_capped("w", 10, T0, 30_000, None, 2)
        .await
        .unwrap()
        .is_empty());
    let a = first.iter().find(|j| j.connection_id.is_some()).unwrap();
    s.complete_jobs(
        "w",
        &[Completion {
            id: a.id,
            lease_id: a.lease_id,
            outcome: Outcome::Succeeded,
        }],
        T0 + 1,
    )
    .await
    .unwrap();
    let next = s
        .claim_jobs_capped("w", 10, T0 + 1, 30_000, None, 2)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    // 0 is no cap.
    assert_eq!(
        s.claim_jobs_capped("w", 10, T0 + 1, 30_000, None, 0)
            .await
            .unwrap()
            .len(),
        2
    );
}
