//! Jobs and dead letters.

use super::audit::Audit;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use super::views::{JobView, List};
use super::Problem;
use crate::services::Services;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use syncguard_core::class::ErrorClass;
use syncguard_core::role::Role;
use syncguard_store::queue::{JobFilter, JobState, ReplayFilter, RetryOutcome};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// available, running, retryable, succeeded, dead, cancelled
    pub state: Option<String>,
    pub kind: Option<String>,
    pub connection_id: Option<String>,
    /// transient, rate_limited, permanent, circuit_open
    pub error_class: Option<String>,
    /// Dead letters only: reviewed or not.
    pub reviewed: Option<bool>,
}

impl JobQuery {
    fn filter(&self, caller: &Caller) -> ApiResult<JobFilter> {
        Ok(JobFilter {
            state: self
                .state
                .as_deref()
                .map(|s| {
                    s.parse::<JobState>().map_err(|e| {
                        ApiError::unprocessable(format!("query parameter `state`: {e}"))
                    })
                })
                .transpose()?,
            kind: self.kind.clone(),
            connection_id: self.connection_id.clone(),
            error_class: parse_class(self.error_class.as_deref())?,
            reviewed: self.reviewed,
            visible_connections: caller.visible().map(|v| v.to_vec()),
        })
    }

    fn page(&self) -> ApiResult<syncguard_store::page::PageRequest> {
        ListParams {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
        .page()
    }
}

fn parse_class(s: Option<&str>) -> ApiResult<Option<ErrorClass>> {
    s.map(|c| {
        c.parse::<ErrorClass>()
            .map_err(|e| ApiError::unprocessable(format!("field `error_class`: {e}")))
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/jobs", tag = "jobs", params(JobQuery),
    responses((status = 200, body = List<JobView>), (status = 401, body = Problem)))]
pub async fn list_jobs(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<List<JobView>>> {
    let page = app
        .store
        .list_jobs(&caller.scope(), &q.filter(&caller)?, &q.page()?)
        .await?;
    Ok(Json(List::from_page(page, JobView::from)))
}

#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 404, body = Problem)))]
pub async fn get_job(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobView>> {
    let job = app
        .store
        .get_job(&caller.scope(), caller.visible(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    Ok(Json(job.into()))
}

/// 404 when the caller cannot see the job, then 403 when its role is too low.
async fn visible_then_role(app: &Services, caller: &Caller, id: i64, role: Role) -> ApiResult<()> {
    app.store
        .get_job(&caller.scope(), caller.visible(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("job {id} not found")))?;
    caller.require(role)
}

#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    responses((status = 200, body = JobView, description = "the job made due now, or the fresh job replaying a dead or cancelled one"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retry_job(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobView>> {
    visible_then_role(&app, &caller, id, Role::Operator).await?;
    let audit = Audit::by(&caller, "job.retry").target(id);
    let outcome = app
        .store
        .retry_job_audited(
            &caller.scope(),
            caller.visible(),
            id,
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await?;
    let job = match outcome {
        RetryOutcome::RunNow(j) | RetryOutcome::Replayed(j) => j,
    };
    app.job_notify.notify_one();
    Ok(Json(job.into()))
}

#[utoipa::path(post, path = "/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path, description = "job id")),
    responses((status = 200, body = JobView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn cancel_job(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<JobView>> {
    visible_then_role(&app, &caller, id, Role::Operator).await?;
    let audit = Audit::by(&caller, "job.cancel").target(id);
    let job = app
        .store
        .cancel_job_audited(
            &caller.scope(),
            caller.visible(),
            id,
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await?;
    Ok(Json(job.into()))
}

#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead-letters", params(JobQuery),
    responses((status = 200, body = List<JobView>)))]
pub async fn list_dead_letters(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> ApiResult<Json<List<JobView>>> {
    let mut filter = q.filter(&caller)?;
    filter.state = Some(JobState::Dead);
    let page = app
        .store
        .list_jobs(&caller.scope(), &filter, &q.page()?)
        .await?;
    Ok(Json(List::from_page(page, JobView::from)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Explicit dead-letter ids; replayed even if replayed before.
    pub ids: Option<Vec<i64>>,
    pub kind: Option<String>,
    pub connection_id: Option<String>,
    pub error_class: Option<String>,
    pub max_age_hours: Option<i64>,
    /// Report what would be replayed without replaying.
    #[serde(default)]
    pub dry_run: bool,
    /// Spread the re-runs this many milliseconds apart.
    #[serde(default)]
    pub stagger_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    pub matched: u64,
    pub replayed: u64,
    pub job_ids: Vec<i64>,
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "dead-letters", request_body = ReplayRequest,
    responses((status = 200, body = ReplayResponse), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn replay_dead_letters(
    State(app): State<Services>,
    caller: Caller,
    ApiJson(body): ApiJson<ReplayRequest>,
) -> ApiResult<Json<ReplayResponse>> {
    caller.require(Role::Admin)?;
    if body.stagger_ms < 0 || body.stagger_ms > 3_600_000 {
        return Err(ApiError::unprocessable(
            "field `stagger_ms`: must be between 0 and 3600000",
        ));
    }
    if body.max_age_hours.is_some_and(|h| h <= 0) {
        return Err(ApiError::unprocessable(
            "field `max_age_hours`: must be positive",
        ));
    }
    if body
        .ids
        .as_ref()
        .is_some_and(|ids| ids.is_empty() || ids.len() > 10_000)
    {
        return Err(ApiError::unprocessable(
            "field `ids`: give between 1 and 10000 ids",
        ));
    }
    let filter = ReplayFilter {
        ids: body.ids.clone(),
        kind: body.kind.clone(),
        connection_id: body.connection_id.clone(),
        error_class: parse_class(body.error_class.as_deref())?,
        max_age_hours: body.max_age_hours,
        visible_connections: caller.visible().map(|v| v.to_vec()),
    };
    let audit = Audit::by(&caller, "dead_letter.replay")
        .tenant(caller.tenant_id())
        .connection(body.connection_id.as_deref())
        .params(serde_json::json!({
            "ids": body.ids, "kind": body.kind, "connection_id": body.connection_id, "error_class": body.error_class,
            "max_age_hours": body.max_age_hours, "dry_run": body.dry_run, "stagger_ms": body.stagger_ms,
        }));
    let r = app
        .store
        .replay_dead_letters_audited(
            &caller.scope(),
            &filter,
            body.dry_run,
            body.stagger_ms,
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await?;
    if r.replayed > 0 {
        app.job_notify.notify_one();
    }
    Ok(Json(ReplayResponse {
        matched: r.matched,
        replayed: r.replayed,
        job_ids: r.job_ids,
        dry_run: body.dry_run,
    }))
}

#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReviewRequest {
    /// Defaults to true.
    pub reviewed: Option<bool>,
}

#[utoipa::path(post, path = "/v1/dead-letters/{id}/review", tag = "dead-letters", params(("id" = i64, Path, description = "dead job id")), request_body(content = ReviewRequest, description = "optional"),
    responses((status = 200, body = JobView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn review_dead_letter(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<JobView>> {
    visible_then_role(&app, &caller, id, Role::Admin).await?;
    let body: ReviewRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReviewRequest::default()
    } else {
        super::extract::parse_json(&body)?
    };
    let reviewed = body.reviewed.unwrap_or(true);
    let audit = Audit::by(&caller, "dead_letter.review")
        .target(id)
        .params(serde_json::json!({ "reviewed": reviewed }));
    let job = app
        .store
        .review_dead_letter_audited(
            &caller.scope(),
            caller.visible(),
            id,
            reviewed,
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await
        .map_err(|e| match e {
            syncguard_store::StoreError::NotFound => {
                ApiError::not_found(format!("dead letter {id} not found"))
            }
            other => other.into(),
        })?;
    Ok(Json(job.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub action: Option<String>,
}

#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = List<super::views::AuditView>), (status = 403, body = Problem)))]
pub async fn list_audit(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<List<super::views::AuditView>>> {
    caller.require(Role::Admin)?;
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let entries = app
        .store
        .list_audit(
            &caller.scope(),
            caller.visible(),
            q.action.as_deref(),
            &page,
        )
        .await?;
    Ok(Json(List::from_page(
        entries,
        super::views::AuditView::from,
    )))
}
