//! Operator views of the queue: listing, retry, cancel, dead letters and replay.
//!
//! The `_audited` variants write the caller's audit entry in the transaction that makes the
//! change, filling in what only the store knows: the job's tenant and connection, and the
//! outcome (the fresh job, what a replay matched).

use super::{enqueue_on, Job, JobState, NewJob, JOB_COLUMNS};
use crate::audit::{insert_audit, NewAudit};
use crate::page::{Page, PageRequest};
use crate::row::{FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store, StoreError};
use serde::Serialize;
use syncguard_core::class::ErrorClass;

/// Filters of `GET /v1/jobs` and `GET /v1/dead-letters`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    pub kind: Option<String>,
    pub connection_id: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub reviewed: Option<bool>,
    /// The caller's key is limited to these connections: other jobs do not exist for it.
    pub visible_connections: Option<Vec<String>>,
}

/// Which dead letters to replay: explicit ids, or a filter.
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    pub ids: Option<Vec<i64>>,
    pub kind: Option<String>,
    pub connection_id: Option<String>,
    pub error_class: Option<ErrorClass>,
    pub max_age_hours: Option<i64>,
    pub visible_connections: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReplayResult {
    pub matched: u64,
    pub replayed: u64,
    pub job_ids: Vec<i64>,
}

/// What `POST /v1/jobs/{id}/retry` did.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryOutcome {
    /// A waiting job was made due now.
    RunNow(Job),
    /// A dead or cancelled job was replayed as this fresh job.
    Replayed(Job),
}

/// At most this many dead letters are replayed by one filter request.
const REPLAY_MAX: i64 = 10_000;

impl Store {
    fn job_conditions(&self, scope: &Scope, f: &JobFilter) -> Conditions {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        if let Some(s) = f.state {
            c.and("state = ?", vec![Bind::Str(s.as_str().into())]);
        }
        if let Some(k) = &f.kind {
            c.and("kind = ?", vec![Bind::Str(k.clone())]);
        }
        if let Some(conn) = &f.connection_id {
            c.and("connection_id = ?", vec![Bind::Str(conn.clone())]);
        }
        if let Some(class) = f.error_class {
            c.and("error_class = ?", vec![Bind::Str(class.as_str().into())]);
        }
        if let Some(r) = f.reviewed {
            c.and(
                if r {
                    "reviewed = TRUE"
                } else {
                    "reviewed = FALSE"
                },
                vec![],
            );
        }
        if let Some(list) = &f.visible_connections {
            c.and_in_list(self.backend(), "connection_id", list);
        }
        c
    }

    /// Jobs newest first.
    pub async fn list_jobs(
        &self,
        scope: &Scope,
        f: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<Job>> {
        let c = self.job_conditions(scope, f);
        self.list_newest_first(JOB_COLUMNS, "jobs", "id", c, page, |j: &Job| j.id)
            .await
    }

    /// One job, if `scope` (and the key's connection list) may see it.
    pub async fn get_job(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
    ) -> Result<Option<Job>> {
        let f = JobFilter {
            visible_connections: visible.map(|v| v.to_vec()),
            ..Default::default()
        };
        let mut c = self.job_conditions(scope, &f);
        c.and("id = ?", vec![Bind::I64(id)]);
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs{}", c.where_clause());
        on_reader!(self, p => {
            let row = bind_all!(sqlx::query(&sql), &c.binds).fetch_optional(p).await?;
            Ok(row.as_ref().map(Job::from_row).transpose()?)
        })
    }

    /// Cancels a job that has not finished. A running job's eventual result is discarded (its
    /// worker's writes are guarded by state).
    pub async fn cancel_job(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
        now: Millis,
    ) -> Result<Job> {
        self.cancel_job_audited(scope, visible, id, None, now).await
    }

    /// As [`Store::cancel_job`], writing `audit` with the cancellation.
    pub async fn cancel_job_audited(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<Job> {
        let job = self
            .get_job(scope, visible, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if !job.state.is_active() {
            return Err(StoreError::Conflict(format!(
                "job {id} is {} and cannot be cancelled",
                job.state
            )));
        }
        let audit = audit.map(|a| about_job(a, &job));
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let row = sqlx::query(&format!("UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1, locked_by = NULL, lease_until = NULL
                                            WHERE id = $2 AND state IN ('available', 'running', 'retryable') RETURNING {JOB_COLUMNS}"))
                .bind(now)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let job = row.as_ref()
                .map(Job::from_row)
                .transpose()?
                .ok_or_else(|| StoreError::Conflict(format!("job {id} finished before it could be cancelled")))?;
            if let Some(a) = &audit {
                insert_audit!(&mut *tx, a, now)?;
            }
            tx.commit().await?;
            Ok(job)
        })
    }

    /// Runs a waiting job now, or replays a dead or cancelled one as a fresh job.
    pub async fn retry_job(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
        now: Millis,
    ) -> Result<RetryOutcome> {
        self.retry_job_audited(scope, visible, id, None, now).await
    }

    /// As [`Store::retry_job`], writing `audit` (with `job_id`, the job that will run) with
    /// the change.
    pub async fn retry_job_audited(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<RetryOutcome> {
        let job = self
            .get_job(scope, visible, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let audit = audit.map(|a| about_job(a, &job));
        match job.state {
            JobState::Available | JobState::Retryable => {
                on_writer!(self, p => {
                    let mut tx = p.begin().await?;
                    sqlx::query("UPDATE jobs SET run_at = $1, updated_at = $1 WHERE id = $2 AND state IN ('available', 'retryable')")
                        .bind(now)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    if let Some(mut a) = audit {
                        a.add_param("job_id", serde_json::json!(id));
                        insert_audit!(&mut *tx, &a, now)?;
                    }
                    tx.commit().await?;
                });
                let job = self
                    .get_job(scope, visible, id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Ok(RetryOutcome::RunNow(job))
            }
            JobState::Dead | JobState::Cancelled => {
                let filter = ReplayFilter {
                    ids: Some(vec![id]),
                    visible_connections: visible.map(|v| v.to_vec()),
                    ..Default::default()
                };
                let states = [job.state];
                let r = self
                    .replay_jobs(scope, &filter, &states, false, 0, audit, fill_retry, now)
                    .await?;
                let fresh = r.job_ids.first().copied().ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "job {id} has an active twin with the same unique key"
                    ))
                })?;
                let job = self
                    .get_job(scope, visible, fresh)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Ok(RetryOutcome::Replayed(job))
            }
            JobState::Running | JobState::Succeeded => Err(StoreError::Conflict(format!(
                "job {id} is {} and cannot be retried",
                job.state
            ))),
        }
    }

    /// Marks a dead letter reviewed (or not).
    pub async fn review_dead_letter(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
        reviewed: bool,
    ) -> Result<Job> {
        self.review_dead_letter_audited(scope, visible, id, reviewed, None, 0)
            .await
    }

    /// As [`Store::review_dead_letter`], writing `audit` with the change.
    pub async fn review_dead_letter_audited(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
        reviewed: bool,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<Job> {
        let job = self
            .get_job(scope, visible, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if job.state != JobState::Dead {
            return Err(StoreError::NotFound);
        }
        let audit = audit.map(|a| about_job(a, &job));
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let n = sqlx::query("UPDATE jobs SET reviewed = $1 WHERE id = $2 AND state = 'dead'").bind(reviewed).bind(id).execute(&mut *tx).await?.rows_affected();
            if n == 0 {
                return Err(StoreError::NotFound);
            }
            if let Some(a) = &audit {
                insert_audit!(&mut *tx, a, now)?;
            }
            tx.commit().await?;
        });
        self.get_job(scope, visible, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Replays dead letters as fresh jobs (attempts 0, linked both ways), spread `stagger_ms`
    /// apart. A filter replay skips dead letters already replayed; explicit ids replay again.
    /// With `dry_run` nothing is written and `matched` says what would run.
    pub async fn replay_dead_letters(
        &self,
        scope: &Scope,
        filter: &ReplayFilter,
        dry_run: bool,
        stagger_ms: i64,
        now: Millis,
    ) -> Result<ReplayResult> {
        self.replay_dead_letters_audited(scope, filter, dry_run, stagger_ms, None, now)
            .await
    }

    /// As [`Store::replay_dead_letters`], writing `audit` (with `matched`, `replayed` and
    /// `job_ids`) in the replay's transaction, dry runs included.
    pub async fn replay_dead_letters_audited(
        &self,
        scope: &Scope,
        filter: &ReplayFilter,
        dry_run: bool,
        stagger_ms: i64,
        audit: Option<NewAudit<'_>>,
        now: Millis,
    ) -> Result<ReplayResult> {
        self.replay_jobs(
            scope,
            filter,
            &[JobState::Dead],
            dry_run,
            stagger_ms,
            audit,
            fill_replay,
            now,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn replay_jobs(
        &self,
        scope: &Scope,
        filter: &ReplayFilter,
        states: &[JobState],
        dry_run: bool,
        stagger_ms: i64,
        audit: Option<NewAudit<'_>>,
        fill: AuditFill,
        now: Millis,
    ) -> Result<ReplayResult> {
        let mut c = Conditions::default();
        let state_list: Vec<String> = states.iter().map(|s| s.as_str().to_string()).collect();
        c.and_in_list(self.backend(), "state", &state_list);
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        match &filter.ids {
            Some(ids) => {
                let ids: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
                c.and_in_list(self.backend(), "CAST(id AS TEXT)", &ids);
            }
            None => {
                c.and("replayed_as IS NULL", vec![]);
            }
        }
        if let Some(k) = &filter.kind {
            c.and("kind = ?", vec![Bind::Str(k.clone())]);
        }
        if let Some(conn) = &filter.connection_id {
            c.and("connection_id = ?", vec![Bind::Str(conn.clone())]);
        }
        if let Some(class) = filter.error_class {
            c.and("error_class = ?", vec![Bind::Str(class.as_str().into())]);
        }
        if let Some(h) = filter.max_age_hours {
            c.and(
                "COALESCE(finished_at, updated_at) >= ?",
                vec![Bind::I64(now - h * 3_600_000)],
            );
        }
        if let Some(list) = &filter.visible_connections {
            c.and_in_list(self.backend(), "connection_id", list);
        }
        let limit = c.push_bind(Bind::I64(REPLAY_MAX));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs{} ORDER BY id LIMIT {limit}",
            c.where_clause()
        );
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(&mut *tx).await?;
            let dead = rows.iter().map(Job::from_row).collect::<RowResult<Vec<_>>>()?;
            let mut result = ReplayResult { matched: dead.len() as u64, replayed: 0, job_ids: Vec::new() };
            if dry_run {
                if let Some(mut a) = audit {
                    fill(&mut a, &result)?;
                    insert_audit!(&mut *tx, &a, now)?;
                    tx.commit().await?;
                }
                return Ok(result);
            }
            for (i, d) in dead.iter().enumerate() {
                let fresh = NewJob {
                    tenant_id: d.tenant_id.clone(),
                    connection_id: d.connection_id.clone(),
                    kind: d.kind.clone(),
                    payload: d.payload.clone(),
                    priority: d.priority,
                    max_attempts: d.max_attempts,
                    run_at: Some(now + stagger_ms.max(0) * i as i64),
                    unique_key: d.unique_key.clone(),
                    debounce_ms: None,
                    correlation_id: d.correlation_id.clone(),
                    replayed_from: Some(d.id),
                };
                let e = enqueue_on!(tx, &fresh, now)?;
                if e.deduplicated {
                    // An active job with the same unique key already covers this work.
                    continue;
                }
                sqlx::query("UPDATE jobs SET replayed_as = $1 WHERE id = $2").bind(e.id).bind(d.id).execute(&mut *tx).await?;
                result.replayed += 1;
                result.job_ids.push(e.id);
            }
            if let Some(mut a) = audit {
                // A refusal here rolls the replay back with it.
                fill(&mut a, &result)?;
                insert_audit!(&mut *tx, &a, now)?;
            }
            tx.commit().await?;
            Ok(result)
        })
    }
}

/// Completes an audit entry with a replay's outcome, or refuses the outcome.
type AuditFill = fn(&mut NewAudit<'_>, &ReplayResult) -> Result<()>;

fn fill_replay(a: &mut NewAudit<'_>, r: &ReplayResult) -> Result<()> {
    a.add_param("matched", serde_json::json!(r.matched));
    a.add_param("replayed", serde_json::json!(r.replayed));
    a.add_param("job_ids", serde_json::json!(r.job_ids));
    Ok(())
}

fn fill_retry(a: &mut NewAudit<'_>, r: &ReplayResult) -> Result<()> {
    let fresh = r.job_ids.first().ok_or_else(|| {
        StoreError::Conflict("the job has an active twin with the same unique key".into())
    })?;
    a.add_param("job_id", serde_json::json!(fresh));
    Ok(())
}

/// `a`, naming the tenant and connection of `job`.
fn about_job<'a>(a: NewAudit<'a>, job: &'a Job) -> NewAudit<'a> {
    NewAudit {
        tenant_id: job.tenant_id.as_deref(),
        connection_id: job.connection_id.as_deref(),
        ..a
    }
}
