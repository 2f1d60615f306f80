//! The durable job queue (SPEC §3.1).
//!
//! States: `available` (including scheduled, `run_at` in the future) → `running` → `succeeded`;
//! `running` → `retryable` (runs again at `run_at`) → … → `dead`; `cancelled`.
//!
//! A claimed job holds a lease (`locked_by`, `lease_until`) and a fencing token (`lease_id`,
//! fresh at every claim, see [`fence`]). Its worker renews the lease by token
//! ([`Store::renew_leases`]); a job whose lease expired (its worker crashed or lost touch) is
//! rescued back to `retryable`, or to `dead` with its inbound event when no attempt is left.
//! Every write made for a job — its completion, and the records, checkpoints, event statuses
//! and publish state its handler writes through a fenced store — is conditional on the token
//! and `state = 'running'`, so a run that lost its lease can never overwrite what the new owner
//! did: it gets [`crate::StoreError::Fenced`].
//!
//! Claims are fair (see [`fair`]): within each priority, round-robin across tenants and then
//! across connections, with an optional cap on the running jobs of one connection, so one
//! connection's backlog does not starve the others. A run may also end in a snooze
//! ([`Outcome::Snooze`]): back to `available` for later, the attempt given back.
//!
//! This module owns the state transitions; *when* to retry and how errors are classified is
//! decided by the engine with the pure rules of `syncguard_core`.

mod admin;
pub mod fair;
pub mod fence;
pub mod lease;
mod periodic;

pub use admin::{JobFilter, ReplayFilter, ReplayResult, RetryOutcome};
pub use fence::Fence;

use crate::row::{DbRow, FromDbRow, RowResult};
use crate::{on_writer, Millis, Result, Store};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use syncguard_core::class::ErrorClass;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Available,
    Running,
    Retryable,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Available,
        JobState::Running,
        JobState::Retryable,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Available => "available",
            JobState::Running => "running",
            JobState::Retryable => "retryable",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Active jobs are the ones a unique key admits only one of.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            JobState::Available | JobState::Running | JobState::Retryable
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown job state `{s}`"))
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    pub id: i64,
    pub tenant_id: Option<String>,
    pub connection_id: Option<String>,
    pub kind: String,
    pub payload: serde_json::Value,
    pub state: JobState,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Millis,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub locked_by: Option<String>,
    pub lease_until: Option<Millis>,
    pub unique_key: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub last_error: Option<String>,
    pub reviewed: bool,
    /// The dead job this one replays.
    pub replayed_from: Option<i64>,
    /// The fresh job that replayed this dead one.
    pub replayed_as: Option<i64>,
    pub correlation_id: Option<String>,
    /// The token of the current (or last) claim; see [`Fence`].
    #[serde(skip)]
    pub lease_id: Option<i64>,
}

impl Job {
    /// The fencing token of this claim (`None` for a job never claimed).
    pub fn fence(&self) -> Option<Fence> {
        self.lease_id.map(|lease_id| Fence {
            job_id: self.id,
            lease_id,
        })
    }
}

pub(crate) const JOB_COLUMNS: &str = "id, tenant_id, connection_id, kind, payload, state, priority, attempts, max_attempts, run_at, created_at, updated_at, started_at, finished_at, locked_by, lease_until, unique_key, error_class, last_error, reviewed, replayed_from, replayed_as, correlation_id, lease_id";

fn decode_err(e: String) -> sqlx::Error {
    sqlx::Error::Decode(e.into())
}

impl FromDbRow for Job {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Job {
            id: r.i64("id")?,
            tenant_id: r.opt_string("tenant_id")?,
            connection_id: r.opt_string("connection_id")?,
            kind: r.string("kind")?,
            payload: serde_json::from_str(&r.string("payload")?)
                .map_err(|e| decode_err(e.to_string()))?,
            state: r.string("state")?.parse().map_err(decode_err)?,
            priority: r.i64("priority")?,
            attempts: r.i64("attempts")?,
            max_attempts: r.i64("max_attempts")?,
            run_at: r.i64("run_at")?,
            created_at: r.i64("created_at")?,
            updated_at: r.i64("updated_at")?,
            started_at: r.opt_i64("started_at")?,
            finished_at: r.opt_i64("finished_at")?,
            locked_by: r.opt_string("locked_by")?,
            lease_until: r.opt_i64("lease_until")?,
            unique_key: r.opt_string("unique_key")?,
            error_class: r
                .opt_string("error_class")?
                .map(|c| c.parse())
                .transpose()
                .map_err(decode_err)?,
            last_error: r.opt_string("last_error")?,
            reviewed: r.bool("reviewed")?,
            replayed_from: r.opt_i64("replayed_from")?,
            replayed_as: r.opt_i64("replayed_as")?,
            correlation_id: r.opt_string("correlation_id")?,
            lease_id: r.opt_i64("lease_id")?,
        })
    }
}

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub tenant_id: Option<String>,
    pub connection_id: Option<String>,
    pub kind: String,
    pub payload: serde_json::Value,
    /// Lower runs first.
    pub priority: i64,
    pub max_attempts: i64,
    /// `None` runs as soon as possible.
    pub run_at: Option<Millis>,
    /// At most one active job per key.
    pub unique_key: Option<String>,
    /// With a unique key: later enqueues within this window replace the payload and push the
    /// run back, so a burst of updates becomes one run with the last payload.
    pub debounce_ms: Option<i64>,
    pub correlation_id: Option<String>,
    pub replayed_from: Option<i64>,
}

impl NewJob {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> NewJob {
        NewJob {
            tenant_id: None,
            connection_id: None,
            kind: kind.into(),
            payload,
            priority: 0,
            max_attempts: 6,
            run_at: None,
            unique_key: None,
            debounce_ms: None,
            correlation_id: None,
            replayed_from: None,
        }
    }
}

/// What enqueueing did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Enqueued {
    pub id: i64,
    /// An active job with the same unique key already existed; `id` is that job.
    pub deduplicated: bool,
}

/// How a claimed job ended, as reported by its worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Succeeded,
    /// Run again at `run_at`. `count_attempt = false` gives the attempt back (circuit open).
    Retry {
        run_at: Millis,
        class: ErrorClass,
        error: String,
        count_attempt: bool,
    },
    Dead {
        class: ErrorClass,
        error: String,
    },
    /// Not a failure: run again at `run_at` without spending the attempt (the handler yields,
    /// e.g. to a nearly depleted rate limit). The job goes back to `available`.
    Snooze {
        run_at: Millis,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub id: i64,
    /// The run's lease token: when set, the completion is recorded only if the job still runs
    /// under it (a run that lost its lease cannot overwrite its successor).
    pub lease_id: Option<i64>,
    pub outcome: Outcome,
}

/// Claims and completions need not wait for their commit to reach the disk on PostgreSQL: if
/// the server loses a claim or a completion in a crash, the job simply runs again, which
/// at-least-once execution allows anyway (a worker crash does the same). Enqueues keep the
/// full guarantee: an acknowledged job is never lost. SQLite commits fully either way.
macro_rules! relaxed_commit {
    ($backend:expr, $tx:expr) => {
        if $backend == crate::Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *$tx)
                .await?;
        }
    };
}

pub(crate) use relaxed_commit;

pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs (tenant_id, connection_id, kind, payload, state, priority, attempts, max_attempts, run_at, created_at, updated_at, unique_key, debounce_ms, correlation_id, replayed_from)
     VALUES ($1, $2, $3, $4, 'available', $5, 0, $6, $7, $8, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING RETURNING id";

pub(crate) const ACTIVE: &str = "('available', 'running', 'retryable')";

/// Runs the enqueue of `job` on an open transaction or connection `$conn`.
macro_rules! enqueue_on {
    ($conn:expr, $job:expr, $now:expr) => {{
        let job: &$crate::queue::NewJob = $job;
        let now: $crate::Millis = $now;
        let run_at = job.run_at.unwrap_or(now).max(now + job.debounce_ms.unwrap_or(0));
        let payload = job.payload.to_string();
        let mut result: Option<$crate::queue::Enqueued> = None;
        // Two rounds suffice: a lost race on insert means an active job now exists to find.
        for _ in 0..3 {
            if let Some(key) = &job.unique_key {
                let existing: Option<(i64, String)> = sqlx::query_as(&format!("SELECT id, state FROM jobs WHERE unique_key = $1 AND state IN {}", $crate::queue::ACTIVE))
                    .bind(key)
                    .fetch_optional(&mut *$conn)
                    .await?;
                if let Some((id, state)) = existing {
                    if let Some(debounce) = job.debounce_ms {
                        if state == "running" {
                            // Too late to change this run: keep the payload for one more run after it.
                            sqlx::query("UPDATE jobs SET pending_payload = $1, updated_at = $2 WHERE id = $3")
                                .bind(&payload).bind(now).bind(id).execute(&mut *$conn).await?;
                        } else {
                            sqlx::query("UPDATE jobs SET payload = $1, run_at = $2, updated_at = $3 WHERE id = $4")
                                .bind(&payload).bind(now + debounce).bind(now).bind(id).execute(&mut *$conn).await?;
                        }
                    }
                    result = Some($crate::queue::Enqueued { id, deduplicated: true });
                    break;
                }
            }
            let id: Option<(i64,)> = sqlx::query_as($crate::queue::INSERT_JOB)
                .bind(&job.tenant_id)
                .bind(&job.connection_id)
                .bind(&job.kind)
                .bind(&payload)
                .bind(job.priority)
                .bind(job.max_attempts)
                .bind(run_at)
                .bind(now)
                .bind(&job.unique_key)
                .bind(job.debounce_ms)
                .bind(&job.correlation_id)
                .bind(job.replayed_from)
                .fetch_optional(&mut *$conn)
                .await?;
            if let Some((id,)) = id {
                result = Some($crate::queue::Enqueued { id, deduplicated: false });
                break;
            }
        }
        result.ok_or_else(|| $crate::StoreError::Conflict("unique key contended; try again".into()))
    }};
}
pub(crate) use enqueue_on;

impl Store {
    /// Enqueues one job, honouring its unique key and debounce window. On a fenced store (a
    /// handler's), only while the run's token holds: a follow-up job is an effect of the run.
    pub async fn enqueue(&self, job: &NewJob, now: Millis) -> Result<Enqueued> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let out = enqueue_on!(tx, job, now)?;
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Enqueues many jobs in one transaction (one fsync), in order; fenced like [`Store::enqueue`].
    pub async fn enqueue_many(&self, jobs: &[NewJob], now: Millis) -> Result<Vec<Enqueued>> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let mut out = Vec::with_capacity(jobs.len());
            for job in jobs {
                out.push(enqueue_on!(tx, job, now)?);
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Records how claimed jobs ended, all in one transaction. Returns the ids whose completion
    /// was refused because `worker` no longer held them (lease lost, cancelled).
    pub async fn complete_jobs(
        &self,
        worker: &str,
        batch: &[Completion],
        now: Millis,
    ) -> Result<Vec<i64>> {
        // Succeeded runs are recorded one statement per lease token. A claim writes one token
        // on all of its jobs, so a batch holds only as many tokens as the claims it spans (one
        // or two, typically), and each statement checks a single token against a list of ids
        // instead of looking every row's token up in a per-batch map.
        let mut by_lease: Vec<(Option<i64>, Vec<i64>)> = Vec::new();
        for c in batch.iter().filter(|c| c.outcome == Outcome::Succeeded) {
            match by_lease.iter_mut().find(|(l, _)| *l == c.lease_id) {
                Some((_, ids)) => ids.push(c.id),
                None => by_lease.push((c.lease_id, vec![c.id])),
            }
        }
        let backend = self.backend();
        let mut lost = Vec::new();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            relaxed_commit!(backend, tx);
            let mut rows: Vec<(i64, bool)> = Vec::new();
            for (lease_id, succeeded) in &by_lease {
                // Only the ids come back: the full row is read just for the rare job that got
                // a debounced payload while it ran. Without a token, checked by worker only.
                // The id list travels as one text parameter: a JSON array for SQLite, an array
                // literal for PostgreSQL (where `= ANY` keeps the lookup on the primary key).
                let (ids_in, ids) = match backend {
                    crate::Backend::Sqlite => ("id IN (SELECT value FROM json_each($3))", serde_json::to_string(succeeded).expect("ids serialize")),
                    crate::Backend::Postgres => (
                        "id = ANY(CAST($3 AS BIGINT[]))",
                        format!("{{{}}}", succeeded.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")),
                    ),
                };
                let token = if lease_id.is_some() { "AND lease_id = $4" } else { "" };
                let sql = format!(
                    "UPDATE jobs SET state = 'succeeded', finished_at = $1, updated_at = $1, locked_by = NULL, lease_until = NULL,
                                     error_class = NULL, last_error = NULL
                     WHERE locked_by = $2 AND state = 'running' AND {ids_in} {token}
                     RETURNING id, pending_payload IS NOT NULL AS has_pending"
                );
                let mut q = sqlx::query_as::<_, (i64, bool)>(&sql).bind(now).bind(worker).bind(ids);
                if let Some(l) = lease_id {
                    q = q.bind(*l);
                }
                rows.extend(q.fetch_all(&mut *tx).await?);
            }
            let mut done = std::collections::HashSet::new();
            for (id, has_pending) in rows {
                done.insert(id);
                if !has_pending {
                    continue;
                }
                // A debounced enqueue arrived while this run was under way: run once more.
                let row = sqlx::query(&format!("SELECT {JOB_COLUMNS}, pending_payload, debounce_ms FROM jobs WHERE id = $1"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                let job = Job::from_row(&row)?;
                let follow = NewJob {
                    tenant_id: job.tenant_id,
                    connection_id: job.connection_id,
                    kind: job.kind,
                    payload: serde_json::from_str(&row.opt_string("pending_payload")?.unwrap_or_default()).unwrap_or_default(),
                    priority: job.priority,
                    max_attempts: job.max_attempts,
                    run_at: None,
                    unique_key: job.unique_key,
                    debounce_ms: row.opt_i64("debounce_ms")?,
                    correlation_id: job.correlation_id,
                    replayed_from: None,
                };
                enqueue_on!(tx, &follow, now)?;
            }
            lost.extend(by_lease.iter().flat_map(|(_, ids)| ids).filter(|id| !done.contains(*id)));
            for c in batch {
                let affected = match &c.outcome {
                    Outcome::Succeeded => continue,
                    Outcome::Snooze { run_at } => {
                        sqlx::query("UPDATE jobs SET state = 'available', run_at = $1, attempts = attempts - 1,
                                            payload = COALESCE(pending_payload, payload), pending_payload = NULL,
                                            locked_by = NULL, lease_until = NULL, updated_at = $2
                                     WHERE id = $3 AND locked_by = $4 AND state = 'running' AND ($5 IS NULL OR lease_id = $5)")
                            .bind(*run_at)
                            .bind(now)
                            .bind(c.id)
                            .bind(worker)
                            .bind(c.lease_id)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                    }
                    Outcome::Retry { run_at, class, error, count_attempt } => {
                        sqlx::query("UPDATE jobs SET state = 'retryable', run_at = $1, error_class = $2, last_error = $3,
                                            attempts = attempts - $4, payload = COALESCE(pending_payload, payload), pending_payload = NULL,
                                            locked_by = NULL, lease_until = NULL, updated_at = $5
                                     WHERE id = $6 AND locked_by = $7 AND state = 'running' AND ($8 IS NULL OR lease_id = $8)")
                            .bind(*run_at)
                            .bind(class.as_str())
                            .bind(error)
                            .bind(if *count_attempt { 0i64 } else { 1i64 })
                            .bind(now)
                            .bind(c.id)
                            .bind(worker)
                            .bind(c.lease_id)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                    }
                    Outcome::Dead { class, error } => {
                        sqlx::query("UPDATE jobs SET state = 'dead', finished_at = $1, updated_at = $1, error_class = $2, last_error = $3,
                                            locked_by = NULL, lease_until = NULL
                                     WHERE id = $4 AND locked_by = $5 AND state = 'running' AND ($6 IS NULL OR lease_id = $6)")
                            .bind(now)
                            .bind(class.as_str())
                            .bind(error)
                            .bind(c.id)
                            .bind(worker)
                            .bind(c.lease_id)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected()
                    }
                };
                if affected == 0 {
                    lost.push(c.id);
                }
            }
            tx.commit().await?;
        });
        Ok(lost)
    }

    /// Jobs per state, across every tenant (metrics and health; never per request).
    pub async fn job_counts(&self) -> Result<Vec<(JobState, i64)>> {
        crate::on_reader!(self, p => {
            let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetch_all(p).await?;
            let mut out: Vec<(JobState, i64)> = JobState::ALL.iter().map(|s| (*s, 0)).collect();
            for (state, n) in rows {
                if let Some(slot) = out.iter_mut().find(|(s, _)| s.as_str() == state) {
                    slot.1 = n;
                }
            }
            Ok(out)
        })
    }
}
