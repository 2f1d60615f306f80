//! Fair claiming (SPEC §3.1 "Fairness").
//!
//! One connection with a huge backlog must not starve the others. A claim therefore does not
//! take the oldest due jobs of the whole table; it takes, within each priority, jobs round-robin
//! across tenants and, within a tenant, round-robin across its connections (jobs without a
//! connection form one group of their own). A connection may also be capped: at most
//! `max_running_per_connection` of its jobs run at once across the cluster (0 = no cap; jobs
//! without a connection are never capped).
//!
//! It stays cheap with deep backlogs because it never ranks the whole queue: the connections
//! that have due jobs are found by a skip scan (one index probe per connection), each
//! contributes at most `limit` candidates (one index range each), and only those candidates are
//! ranked. On PostgreSQL the picked rows are then locked `SKIP LOCKED`, so concurrent claimers
//! never take the same job (one that loses the race on a row simply gets fewer jobs).

use super::{relaxed_commit, Job, JOB_COLUMNS};
use crate::row::{FromDbRow, RowResult};
use crate::{on_writer, Backend, Millis, Result, Store};

const DUE: &str = "state IN ('available', 'retryable') AND run_at <= $3";

/// The statement that claims; `$1` worker, `$2` lease end, `$3` now, `$4` limit, `$5` lease
/// token, `$6` per-connection cap, `$7` the kinds (JSON array) when filtered.
fn claim_sql(backend: Backend, filtered: bool) -> String {
    let kinds = match (filtered, backend) {
        (false, _) => "",
        (true, Backend::Sqlite) => "AND kind IN (SELECT value FROM json_each($7))",
        (true, Backend::Postgres) => {
            "AND kind IN (SELECT json_array_elements_text(CAST($7 AS json)))"
        }
    };
    // The probes must walk `jobs_fetch_by_connection`. SQLite keeps no statistics here (nothing
    // runs ANALYZE), and without them it prefers `jobs_state` for `state IN (…)`: every probe
    // would then read and sort all due jobs, which made a claim over a deep backlog cost more
    // than twice the old unfair one. So SQLite is told which index to use.
    let by_conn = match backend {
        Backend::Sqlite => "jobs INDEXED BY jobs_fetch_by_connection",
        Backend::Postgres => "jobs",
    };
    // The next connection (in index order) after `c.cid` that has a due job.
    let next_conn = format!(
        "SELECT connection_id FROM {by_conn} WHERE {DUE} {kinds} AND connection_id > c.cid ORDER BY connection_id LIMIT 1"
    );
    let first_conn = format!(
        "SELECT connection_id FROM {by_conn} WHERE {DUE} {kinds} AND connection_id IS NOT NULL ORDER BY connection_id LIMIT 1"
    );
    // PostgreSQL nodes claim concurrently: candidates run to twice the batch so that a claimer
    // whose first choices another one has just locked still fills its batch from the rest.
    let window = match backend {
        Backend::Sqlite => "$4",
        Backend::Postgres => "($4 * 2)",
    };
    // Each candidate carries the columns it is ranked by, so ranking never joins back to the
    // table (a join the planner may do by hashing all of `jobs`).
    const RANKED_BY: &str = "id, tenant_id, connection_id, priority, run_at";
    let per_conn = |cond: &str| {
        format!(
            "SELECT {RANKED_BY} FROM {by_conn} WHERE {DUE} {kinds} AND {cond} ORDER BY priority, run_at, id LIMIT {window}"
        )
    };
    let candidates = match backend {
        Backend::Postgres => format!(
            "SELECT j.* FROM conns c, LATERAL ({}) j WHERE c.cid IS NOT NULL
             UNION ALL SELECT * FROM ({}) n",
            per_conn("connection_id = c.cid"),
            per_conn("connection_id IS NULL")
        ),
        Backend::Sqlite => format!(
            "SELECT j.id, j.tenant_id, j.connection_id, j.priority, j.run_at
             FROM conns c JOIN jobs j ON j.id IN ({}) WHERE c.cid IS NOT NULL
             UNION ALL SELECT * FROM ({}) n",
            per_conn("connection_id = c.cid").replace(&format!("SELECT {RANKED_BY}"), "SELECT id"),
            per_conn("connection_id IS NULL")
        ),
    };
    let pick = format!(
        "WITH RECURSIVE conns(cid) AS (
             SELECT ({first_conn})
             UNION ALL
             SELECT ({next_conn}) FROM conns c WHERE c.cid IS NOT NULL
         ),
         cand AS ({candidates}),
         busy AS (SELECT c.cid AS connection_id,
                         (SELECT COUNT(*) FROM jobs WHERE state = 'running' AND connection_id = c.cid) AS n
                  FROM conns c WHERE c.cid IS NOT NULL),
         ranked AS (
             SELECT j.id, j.tenant_id, j.connection_id, j.priority, j.run_at,
                    ROW_NUMBER() OVER (PARTITION BY j.connection_id ORDER BY j.priority, j.run_at, j.id) AS cap_rank,
                    ROW_NUMBER() OVER (PARTITION BY j.connection_id, j.priority ORDER BY j.run_at, j.id) AS conn_rank,
                    COALESCE(b.n, 0) AS running
             FROM cand j LEFT JOIN busy b ON b.connection_id = j.connection_id
         ),
         fair AS (
             SELECT id, priority, run_at,
                    ROW_NUMBER() OVER (PARTITION BY tenant_id, priority ORDER BY conn_rank, connection_id) AS turn
             FROM ranked
             WHERE connection_id IS NULL OR $6 = 0 OR cap_rank + running <= $6
         )
         SELECT id FROM fair ORDER BY priority, turn, run_at, id LIMIT {window}"
    );
    let target = match backend {
        Backend::Sqlite => format!("id IN ({pick})"),
        // The candidates are locked here in their fair order, skipping any another claimer
        // holds, up to the batch; a row another claim has taken meanwhile fails the state check
        // again under the lock.
        Backend::Postgres => format!(
            "id = ANY(ARRAY(SELECT j.id FROM unnest(ARRAY({pick})) WITH ORDINALITY AS p(id, ord) JOIN jobs j ON j.id = p.id
                            WHERE j.state IN ('available', 'retryable')
                            ORDER BY p.ord LIMIT $4 FOR UPDATE OF j SKIP LOCKED))"
        ),
    };
    format!(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1, lease_until = $2, lease_id = $5,
                         started_at = $3, updated_at = $3
         WHERE {target}
         RETURNING {JOB_COLUMNS}"
    )
}

/// The claimed batch in the order to start it: within a priority, each connection's first job,
/// then each one's second, and so on (`UPDATE … RETURNING` keeps no order of its own).
fn fair_order(mut jobs: Vec<Job>) -> Vec<Job> {
    jobs.sort_by_key(|j| (j.priority, j.run_at, j.id));
    let mut seen: std::collections::HashMap<(i64, Option<String>), usize> = Default::default();
    let mut keyed: Vec<(i64, usize, Millis, i64, Job)> = jobs
        .into_iter()
        .map(|j| {
            let turn = seen
                .entry((j.priority, j.connection_id.clone()))
                .or_default();
            *turn += 1;
            (j.priority, *turn, j.run_at, j.id, j)
        })
        .collect();
    keyed.sort_by_key(|k| (k.0, k.1, k.2, k.3));
    keyed.into_iter().map(|k| k.4).collect()
}

impl Store {
    /// Claims up to `limit` due jobs for `worker`, leasing them until `now + lease_ms`, fairly
    /// (see the module doc) and with no per-connection cap.
    pub async fn claim_jobs(
        &self,
        worker: &str,
        limit: i64,
        now: Millis,
        lease_ms: i64,
        kinds: Option<&[String]>,
    ) -> Result<Vec<Job>> {
        self.claim_jobs_capped(worker, limit, now, lease_ms, kinds, 0)
            .await
    }

    /// As [`Store::claim_jobs`], taking no job of a connection that already runs
    /// `max_running_per_connection` jobs (0 = no cap). Every claimed job carries a fresh lease
    /// token ([`Job::fence`]). Returned in claim order.
    pub async fn claim_jobs_capped(
        &self,
        worker: &str,
        limit: i64,
        now: Millis,
        lease_ms: i64,
        kinds: Option<&[String]>,
        max_running_per_connection: i64,
    ) -> Result<Vec<Job>> {
        let backend = self.backend();
        let sql = claim_sql(backend, kinds.is_some());
        let kinds_json = kinds.map(|k| serde_json::to_string(k).expect("strings serialize"));
        // Random, so a token never repeats across nodes or restarts; positive for readability.
        let lease_id: i64 = (rand::random::<u64>() >> 1) as i64;
        on_writer!(self, p => {
            let mut q = sqlx::query(&sql)
                .bind(worker)
                .bind(now + lease_ms)
                .bind(now)
                .bind(limit)
                .bind(lease_id)
                .bind(max_running_per_connection);
            if let Some(k) = &kinds_json {
                q = q.bind(k.clone());
            }
            let rows = if backend == Backend::Postgres {
                let mut tx = p.begin().await?;
                relaxed_commit!(backend, tx);
                let rows = q.fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows
            } else {
                q.fetch_all(p).await?
            };
            let jobs = rows.iter().map(Job::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(fair_order(jobs))
        })
    }
}
