//! Leases of running jobs: renewal by token, rescue of expired ones, hand-back on shutdown.

use super::Fence;
use crate::{on_writer, Millis, Result, Store};

impl Store {
    /// Renews the leases of exactly the runs in `runs` (this process's running jobs, by token)
    /// until `lease_until`. Returns the job ids it could not renew: their lease is lost (rescued,
    /// cancelled, claimed again), so their runs must stop.
    pub async fn renew_leases(&self, runs: &[Fence], lease_until: Millis) -> Result<Vec<i64>> {
        if runs.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per lease token: a claim writes one token on all of its jobs, so the
        // held runs share a handful of tokens, and each statement checks one token against a
        // list of ids (looking each row's token up in a list of pairs grew with its square).
        let mut by_lease: Vec<(i64, Vec<i64>)> = Vec::new();
        for f in runs {
            match by_lease.iter_mut().find(|(l, _)| *l == f.lease_id) {
                Some((_, ids)) => ids.push(f.job_id),
                None => by_lease.push((f.lease_id, vec![f.job_id])),
            }
        }
        let (sql, postgres) = match self.backend() {
            crate::Backend::Sqlite => (
                "UPDATE jobs SET lease_until = $1
                 WHERE state = 'running' AND id IN (SELECT value FROM json_each($2)) AND lease_id = $3
                 RETURNING id",
                false,
            ),
            crate::Backend::Postgres => (
                "UPDATE jobs SET lease_until = $1
                 WHERE state = 'running' AND id = ANY(CAST($2 AS BIGINT[])) AND lease_id = $3
                 RETURNING id",
                true,
            ),
        };
        let mut renewed = std::collections::HashSet::new();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            for (lease_id, ids) in &by_lease {
                let ids = if postgres {
                    format!("{{{}}}", ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","))
                } else {
                    serde_json::to_string(ids).expect("ids serialize")
                };
                let rows: Vec<(i64,)> = sqlx::query_as(sql)
                    .bind(lease_until)
                    .bind(ids)
                    .bind(*lease_id)
                    .fetch_all(&mut *tx)
                    .await?;
                renewed.extend(rows.into_iter().map(|(id,)| id));
            }
            tx.commit().await?;
        });
        Ok(runs
            .iter()
            .map(|f| f.job_id)
            .filter(|id| !renewed.contains(id))
            .collect())
    }

    /// Makes jobs whose lease expired runnable again (their worker is gone), or dead when they
    /// have used every attempt. Returns `(retryable, dead)` counts. An inbound event processed
    /// by a job dead-lettered here is marked `dead` in the same transaction, as a processing run
    /// that dead-letters marks it.
    pub async fn rescue_expired_leases(&self, now: Millis) -> Result<(u64, u64)> {
        let backend = self.backend();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "UPDATE jobs SET state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retryable' END,
                                 finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
                                 run_at = $1, updated_at = $1, locked_by = NULL, lease_until = NULL,
                                 error_class = 'transient', last_error = 'lease expired: the worker running this job stopped'
                 WHERE state = 'running' AND lease_until < $1
                 RETURNING id, state")
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
            let dead: Vec<i64> = rows.iter().filter(|(_, s)| s == "dead").map(|(id, _)| *id).collect();
            if !dead.is_empty() {
                let ids = match backend {
                    crate::Backend::Sqlite => "SELECT CAST(value AS BIGINT) FROM json_each($2)",
                    crate::Backend::Postgres => "SELECT CAST(jsonb_array_elements_text(CAST($2 AS jsonb)) AS BIGINT)",
                };
                sqlx::query(&format!(
                    "UPDATE inbound_events SET status = 'dead', attempts = attempts + 1, updated_at = $1,
                            note = 'transient: lease expired: the worker running this job stopped'
                     WHERE status <> 'duplicate'
                       AND id IN (SELECT event_id FROM inbound_event_jobs WHERE job_id IN ({ids}))"))
                    .bind(now)
                    .bind(serde_json::to_string(&dead).expect("ids serialize"))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            let dead = dead.len() as u64;
            Ok((rows.len() as u64 - dead, dead))
        })
    }

    /// Hands back the runs in `runs` (by token) without spending their attempt: a graceful stop
    /// whose handlers did not finish in time.
    pub async fn release_leases(&self, runs: &[Fence], now: Millis) -> Result<u64> {
        let mut n = 0;
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            for f in runs {
                n += sqlx::query("UPDATE jobs SET state = 'available', attempts = attempts - 1, run_at = $1, updated_at = $1,
                                                  locked_by = NULL, lease_until = NULL
                                  WHERE id = $2 AND lease_id = $3 AND state = 'running'")
                    .bind(now)
                    .bind(f.job_id)
                    .bind(f.lease_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
        });
        Ok(n)
    }

    /// Hands back every job `worker` is running without spending their attempt (the last step
    /// of a graceful stop, once none of its handlers runs any more).
    pub async fn release_jobs(&self, worker: &str, now: Millis) -> Result<u64> {
        on_writer!(self, p => {
            Ok(sqlx::query("UPDATE jobs SET state = 'available', attempts = attempts - 1, run_at = $1, updated_at = $1,
                                             locked_by = NULL, lease_until = NULL
                            WHERE locked_by = $2 AND state = 'running'")
                .bind(now)
                .bind(worker)
                .execute(p)
                .await?
                .rows_affected())
        })
    }
}
