//! Operator views of the queue: listing, retry, cancel, dead letters and replay.

use super::{enqueue_on, Job, JobState, NewJob, JOB_COLUMNS};
use crate::page::{decode_cursor, Page, PageRequest};
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
        let mut c = self.job_conditions(scope, f);
        if let Some(before) = page
            .after
            .as_deref()
            .and_then(decode_cursor)
            .and_then(|s| s.parse::<i64>().ok())
        {
            c.and("id < ?", vec![Bind::I64(before)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs{} ORDER BY id DESC LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(Job::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |j| j.id.to_string()))
        })
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
        on_writer!(self, p => {
            let row = sqlx::query(&format!("UPDATE jobs SET state = 'cancelled', finished_at = $1, updated_at = $1, locked_by = NULL, lease_until = NULL
                                            WHERE id = $2 AND state IN ('available', 'running', 'retryable') RETURNING {JOB_COLUMNS}"))
                .bind(now)
                .bind(id)
                .fetch_optional(p)
                .await?;
            row.as_ref()
                .map(Job::from_row)
                .transpose()?
                .ok_or_else(|| StoreError::Conflict(format!("job {id} finished before it could be cancelled")))
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
        let job = self
            .get_job(scope, visible, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        match job.state {
            JobState::Available | JobState::Retryable => {
                on_writer!(self, p => {
                    sqlx::query("UPDATE jobs SET run_at = $1, updated_at = $1 WHERE id = $2 AND state IN ('available', 'retryable')")
                        .bind(now)
                        .bind(id)
                        .execute(p)
                        .await?;
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
                    .replay_jobs(scope, &filter, &states, false, 0, now)
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
        let job = self
            .get_job(scope, visible, id)
            .await?
            .ok_or(StoreError::NotFound)?;
        if job.state != JobState::Dead {
            return Err(StoreError::NotFound);
        }
        on_writer!(self, p => {
            sqlx::query("UPDATE jobs SET reviewed = $1 WHERE id = $2").bind(reviewed).bind(id).execute(p).await?;
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
        self.replay_jobs(scope, filter, &[JobState::Dead], dry_run, stagger_ms, now)
            .await
    }

    async fn replay_jobs(
        &self,
        scope: &Scope,
        filter: &ReplayFilter,
        states: &[JobState],
        dry_run: bool,
        stagger_ms: i64,
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
            tx.commit().await?;
            Ok(result)
        })
    }
}
