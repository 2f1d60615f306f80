//! Retention deletes what is past its cutoff, in batches, and nothing else.

use crate::T0;
use syncguard_store::retention::{Expiring, SnapshotRetention};
use syncguard_store::testkit::TestDb;

crate::on_both_stores!(
    each_kind_loses_exactly_its_old_rows_in_batches,
    snapshots_keep_the_newest_and_what_drift_refers_to
);

/// The cutoff of every purge below: rows at or after it stay.
const CUT: i64 = T0;
const OLD: i64 = T0 - 1;
const NEW: i64 = T0 + 1;

fn job(id: i64, state: &str, updated_at: i64) -> String {
    format!(
        "INSERT INTO jobs (id, kind, payload, state, max_attempts, run_at, created_at, updated_at)
         VALUES ({id}, 'noop', '{{}}', '{state}', 1, 0, 0, {updated_at})"
    )
}

/// An inbound event with one job link; `bytes` is the backend's binary type.
fn event(id: &str, status: &str, received_at: i64, bytes: &str) -> String {
    format!(
        "INSERT INTO inbound_events (id, tenant_id, connection_id, provider, content_key, status,
             signature, correlation_id, headers, body, received_at, updated_at)
         VALUES ('{id}', 'ten', 'con', 'trackstar', 'k-{id}', '{status}', 'valid', 'c', '[]', CAST('x' AS {bytes}), {received_at}, {received_at});
         INSERT INTO inbound_event_jobs (event_id, job_id) VALUES ('{id}', 1)"
    )
}

async fn each_kind_loses_exactly_its_old_rows_in_batches(db: TestDb) {
    let bytes = match db.backend() {
        syncguard_store::Backend::Sqlite => "BLOB",
        syncguard_store::Backend::Postgres => "BYTEA",
    };
    let mut sql = vec![
        // Jobs: finished and old go; dead letters, live jobs and recent ones stay.
        job(1, "succeeded", OLD),
        job(2, "cancelled", OLD),
        job(3, "succeeded", OLD),
        job(4, "dead", OLD),
        job(5, "running", OLD),
        job(6, "retryable", OLD),
        job(7, "succeeded", NEW),
        format!("INSERT INTO periodic_runs (name, slot, created_at) VALUES ('a', 1, {OLD}), ('a', 2, {NEW})"),
        format!("INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_until)
                 VALUES ('s', 'old', 'h', 'done', {OLD}, 0), ('s', 'new', 'h', 'done', {NEW}, 0)"),
        format!("INSERT INTO audit_log (actor, action, params, at) VALUES ('k', 'a.old', '{{}}', {OLD}), ('k', 'a.new', '{{}}', {NEW})"),
    ];
    for (i, at) in [OLD, OLD, OLD, OLD, OLD, NEW].iter().enumerate() {
        sql.push(format!(
            "INSERT INTO changes (tenant_id, connection_id, resource, external_id, kind, source, at)
             VALUES ('ten', 'con', 'orders', 'o{i}', 'updated', 'sync', {at})"
        ));
    }
    // Events: processed and duplicate old ones go with their links; failed and dead stay.
    for (id, status, at) in [
        ("e1", "processed", OLD),
        ("e2", "duplicate", OLD),
        ("e3", "failed", OLD),
        ("e4", "dead", OLD),
        ("e5", "processed", NEW),
    ] {
        sql.push(event(id, status, at, bytes));
    }
    db.execute(&sql.join(";\n")).await;

    let s = &db.store;
    // Batches of two: 5 old changes take 2 + 2 + 1.
    let batches: Vec<u64> = {
        let mut out = Vec::new();
        loop {
            let n = s.purge_batch(Expiring::Changes, CUT, 2).await.unwrap();
            out.push(n);
            if n < 2 {
                break;
            }
        }
        out
    };
    assert_eq!(batches, vec![2, 2, 1]);
    assert_eq!(db.count("changes").await, 1);

    for (what, deleted) in [
        (Expiring::FinishedJobs, 3),
        (Expiring::PeriodicRuns, 1),
        (Expiring::InboundEvents, 2),
        (Expiring::IdempotencyKeys, 1),
        (Expiring::Audit, 1),
    ] {
        assert_eq!(
            s.purge_batch(what, CUT, 100).await.unwrap(),
            deleted,
            "{what:?}"
        );
        assert_eq!(
            s.purge_batch(what, CUT, 100).await.unwrap(),
            0,
            "{what:?} again"
        );
    }
    assert_eq!(
        db.count("jobs").await,
        4,
        "dead, running, retryable, recent"
    );
    assert_eq!(db.count("periodic_runs").await, 1);
    assert_eq!(db.count("idempotency_keys").await, 1);
    assert_eq!(db.count("audit_log").await, 1);
    assert_eq!(db.count("inbound_events").await, 3, "failed, dead, recent");
    assert_eq!(
        db.count("inbound_event_jobs").await,
        3,
        "the deleted events' links went with them, no other"
    );
    s.reclaim_space(100).await.unwrap();
}

async fn snapshots_keep_the_newest_and_what_drift_refers_to(db: TestDb) {
    let mut sql = Vec::new();
    // Object A: six snapshots (h1 oldest … h6 newest); drift refers to h2. Object B: one.
    for (i, hash) in ["h1", "h2", "h3", "h4", "h5", "h6"].iter().enumerate() {
        sql.push(format!(
            "INSERT INTO snapshots (tenant_id, connection_id, resource, external_id, hash, source, patch, created_at)
             VALUES ('ten', 'con', 'items', 'A', '{hash}', 'published', '[]', {at})",
            at = OLD - 10 + i as i64
        ));
    }
    sql.push(format!(
        "INSERT INTO snapshots (tenant_id, connection_id, resource, external_id, hash, source, patch, created_at)
         VALUES ('ten', 'con', 'items', 'B', 'h1', 'published', '[]', {OLD})"
    ));
    for hash in ["h1", "h2", "h3", "h4", "h5", "h6", "lonely"] {
        sql.push(format!(
            "INSERT INTO snapshot_data (tenant_id, hash, data) VALUES ('ten', '{hash}', '{{}}')"
        ));
    }
    sql.push(
        "INSERT INTO drift_events (tenant_id, connection_id, resource, external_id, classification,
             local_hash, remote_hash, action, detected_at)
         VALUES ('ten', 'con', 'items', 'A', 'remote_changed', 'h9', 'h2', 'alert', 0)"
            .into(),
    );
    db.execute(&sql.join(";\n")).await;

    let keep = SnapshotRetention { keep_per_object: 2 };
    // A keeps h5, h6 (newest two) and h2 (drift); h1, h3, h4 go, one per batch.
    for _ in 0..3 {
        assert_eq!(db.store.purge_snapshots(keep, 1).await.unwrap(), 1);
    }
    assert_eq!(db.store.purge_snapshots(keep, 1).await.unwrap(), 0);
    assert_eq!(db.count("snapshots").await, 4, "A: h2, h5, h6; B: h1");
    // Contents nobody refers to went: h3, h4 and the lonely one; h1 is still B's.
    assert_eq!(db.count("snapshot_data").await, 4, "h1, h2, h5, h6");
}
