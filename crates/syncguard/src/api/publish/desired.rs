//! `PUT/GET /v1/connections/{id}/desired/{resource}/{external_id}` and
//! `POST /v1/connections/{id}/reconcile`.

use crate::api::audit::Audit;
use crate::api::extract::{request_id, ApiJson, ApiPath, Caller};
use crate::api::{ApiError, Problem};
use crate::clock::rfc3339;
use crate::services::publish::publisher::{publish_job, PublishPayload};
use crate::services::publish::reconcile::reconcile_job;
use crate::services::publish::{debounce_ms, upsert_write};
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use syncguard_core::canonical::{canonicalize, content_hash};
use syncguard_core::connection::ConnectionStatus;
use syncguard_core::role::Role;
use syncguard_store::connections::Connection;
use syncguard_store::publish::{ObjectKey, PutOutcome};
use utoipa::ToSchema;

type ApiResult<T> = Result<T, ApiError>;

/// An object's desired state (SPEC Appendix A `desired`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DesiredView {
    #[schema(value_type = Object)]
    pub data: Value,
    /// SHA-256 (hex) of the RFC 8785 canonical form of `data`.
    pub hash: String,
    pub last_published_hash: Option<String>,
    /// `published`, `pending` (a publish job is queued or running) or `failed`.
    pub status: String,
    /// Why the last publish of this state failed.
    pub last_error: Option<String>,
    pub updated_at: String,
    pub published_at: Option<String>,
}

/// What a desired-state write did.
#[derive(Debug, Serialize, ToSchema)]
pub struct PutDesiredAnswer {
    /// `enqueued`, `duplicate` (this state is already on its way) or `unchanged` (the provider
    /// holds it already).
    pub result: String,
    pub hash: String,
    /// The publish job carrying the state, when there is one.
    pub job_id: Option<i64>,
}

/// The answer to a reconcile request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconcileAnswer {
    pub job_id: i64,
    /// A reconciliation of this connection was already queued or running.
    pub deduplicated: bool,
}

/// The connection `id` if the caller may see it (404 otherwise, before any role check).
pub(super) async fn visible_connection(
    app: &Services,
    caller: &Caller,
    id: &str,
) -> ApiResult<Connection> {
    app.store
        .get_connection(&caller.scope(), caller.visible(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))
}

/// Appends an audit entry for `caller`'s action.
pub(super) async fn audit(
    app: &Services,
    caller: &Caller,
    tenant_id: &str,
    connection_id: &str,
    action: &'static str,
    target: &str,
    params: Value,
) -> ApiResult<()> {
    Audit::by(caller, action)
        .tenant(Some(tenant_id))
        .connection(Some(connection_id))
        .target(target)
        .params(params)
        .record(app)
        .await
}

/// An id published to the provider becomes one segment of its URL: `.` and `..` cannot be one
/// (they would address another path), so they are refused here rather than failing the job.
fn check_external_id(id: &str) -> ApiResult<()> {
    if id.is_empty() || id.len() > 255 {
        return Err(ApiError::unprocessable(
            "path parameter `external_id`: 1 to 255 bytes",
        ));
    }
    syncguard_core::egress::path_segment(id)
        .map_err(|e| ApiError::unprocessable(format!("path parameter `external_id`: {e}")))?;
    Ok(())
}

#[utoipa::path(put, path = "/v1/connections/{id}/desired/{resource}/{external_id}", tag = "publish",
    params(("id" = String, Path, description = "connection id"), ("resource" = String, Path, description = "a resource the provider can write"), ("external_id" = String, Path, description = "the object's id at the provider")),
    request_body(content = Object, description = "the desired state of the object"),
    responses((status = 202, body = PutDesiredAnswer, description = "enqueued"), (status = 200, body = PutDesiredAnswer, description = "unchanged or duplicate"),
              (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn put_desired(
    State(app): State<Services>,
    caller: Caller,
    ApiPath((id, resource, external_id)): ApiPath<(String, String, String)>,
    ApiJson(data): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<PutDesiredAnswer>)> {
    let connection = visible_connection(&app, &caller, &id).await?;
    caller.require(Role::Operator)?;
    check_external_id(&external_id)?;
    let def = app.providers.get(&connection.provider).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "connection uses unknown provider `{}`",
            connection.provider
        ))
    })?;
    if upsert_write(def, &resource).is_none() {
        return Err(ApiError::unprocessable(format!(
            "path parameter `resource`: provider `{}` cannot write `{resource}`",
            def.name
        )));
    }
    if connection.status == ConnectionStatus::Disconnected {
        return Err(ApiError::conflict(format!(
            "connection {id} is disconnected"
        )));
    }
    if !data.is_object() {
        return Err(ApiError::unprocessable(
            "body: the desired state must be a JSON object",
        ));
    }
    canonicalize(&data).map_err(|e| ApiError::unprocessable(format!("body: {e}")))?;
    let hash = content_hash(&data);
    let debounce =
        debounce_ms(&connection.config, &app.publish.settings).map_err(ApiError::unprocessable)?;
    let payload = PublishPayload {
        connection_id: id.clone(),
        resource: resource.clone(),
        external_id: external_id.clone(),
    };
    let mut job = publish_job(&app, &connection.tenant_id, payload, Some(debounce));
    job.correlation_id = request_id();
    let key = ObjectKey {
        tenant_id: &connection.tenant_id,
        connection_id: &id,
        resource: &resource,
        external_id: &external_id,
    };
    let outcome = app
        .store
        .put_desired(key, &data, &hash, &job, app.clock.now_ms())
        .await?;
    let (status, result, job_id) = match outcome {
        PutOutcome::Unchanged => (StatusCode::OK, "unchanged", None),
        PutOutcome::Duplicate { job_id } => (StatusCode::OK, "duplicate", Some(job_id)),
        PutOutcome::Enqueued { job_id } => (StatusCode::ACCEPTED, "enqueued", Some(job_id)),
    };
    Ok((
        status,
        Json(PutDesiredAnswer {
            result: result.into(),
            hash,
            job_id,
        }),
    ))
}

#[utoipa::path(get, path = "/v1/connections/{id}/desired/{resource}/{external_id}", tag = "publish",
    params(("id" = String, Path, description = "connection id"), ("resource" = String, Path), ("external_id" = String, Path)),
    responses((status = 200, body = DesiredView), (status = 404, body = Problem)))]
pub async fn get_desired(
    State(app): State<Services>,
    caller: Caller,
    ApiPath((id, resource, external_id)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<DesiredView>> {
    visible_connection(&app, &caller, &id).await?;
    let d = app
        .store
        .get_desired(&caller.scope(), &id, &resource, &external_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no desired state for {resource} {external_id}"))
        })?;
    Ok(Json(DesiredView {
        status: d.status().as_str().into(),
        data: d.data,
        hash: d.hash,
        last_published_hash: d.last_published_hash,
        last_error: d.last_error,
        updated_at: rfc3339(d.updated_at),
        published_at: d.published_at.map(rfc3339),
    }))
}

#[utoipa::path(post, path = "/v1/connections/{id}/reconcile", tag = "publish",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 202, body = ReconcileAnswer), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn reconcile_now(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<(StatusCode, Json<ReconcileAnswer>)> {
    let connection = visible_connection(&app, &caller, &id).await?;
    caller.require(Role::Operator)?;
    if connection.status != ConnectionStatus::Active {
        return Err(ApiError::conflict(format!(
            "connection {id} is {}; only active connections are reconciled",
            connection.status
        )));
    }
    let mut job = reconcile_job(&app, &id, &connection.tenant_id);
    job.correlation_id = request_id();
    let queued = app.store.enqueue(&job, app.clock.now_ms()).await?;
    app.job_notify.notify_one();
    audit(
        &app,
        &caller,
        &connection.tenant_id,
        &id,
        "connection.reconcile",
        &id,
        serde_json::json!({ "job_id": queued.id, "deduplicated": queued.deduplicated }),
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ReconcileAnswer {
            job_id: queued.id,
            deduplicated: queued.deduplicated,
        }),
    ))
}
