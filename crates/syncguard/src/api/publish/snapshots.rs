//! Snapshots and drift over HTTP: `GET /v1/snapshots`, `GET /v1/snapshots/{id}`,
//! `GET /v1/snapshots/diff?from=&to=`, `POST /v1/snapshots` (on demand) and `GET /v1/drift`.

use super::desired::{audit, visible_connection};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use crate::api::views::List;
use crate::api::{ApiError, Problem};
use crate::clock::rfc3339;
use crate::services::publish::classify::{project, Classification};
use crate::services::publish::json_diff;
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use syncguard_core::canonical::content_hash;
use syncguard_core::role::Role;
use syncguard_store::publish::{
    Drift, DriftFilter, ObjectKey, Snapshot, SnapshotDetail, SnapshotFilter,
};
use utoipa::{IntoParams, ToSchema};

type ApiResult<T> = Result<T, ApiError>;

/// A snapshot (SPEC Appendix A `snapshot`).
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotView {
    pub id: i64,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    pub hash: String,
    /// `publish`, `drift` or `manual`.
    pub source: String,
    pub created_at: String,
    /// The object's snapshot before this one.
    pub previous_id: Option<i64>,
}

impl From<Snapshot> for SnapshotView {
    fn from(s: Snapshot) -> Self {
        SnapshotView {
            id: s.id,
            connection_id: s.connection_id,
            resource: s.resource,
            external_id: s.external_id,
            hash: s.hash,
            source: s.source,
            created_at: rfc3339(s.created_at),
            previous_id: s.previous_id,
        }
    }
}

/// A snapshot with its state and its RFC 6902 patch from the previous snapshot.
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotDetailView {
    #[serde(flatten)]
    pub snapshot: SnapshotView,
    #[schema(value_type = Object)]
    pub data: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    pub patch: Value,
}

/// The RFC 6902 patch that turns one snapshot's state into another's.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiffView {
    pub from: i64,
    pub to: i64,
    pub from_hash: String,
    pub to_hash: String,
    #[schema(value_type = Vec<Object>)]
    pub patch: Value,
}

/// A drift finding (SPEC Appendix A `drift`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DriftView {
    pub id: i64,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    /// `in_sync`, `internal_only`, `external_only` or `both`.
    pub classification: String,
    pub local_hash: Option<String>,
    pub remote_hash: Option<String>,
    pub detected_at: String,
    /// What the connection's policy did: `none`, `reported`, `publish_enqueued`, `remote_accepted`.
    pub action: String,
}

impl From<Drift> for DriftView {
    fn from(d: Drift) -> Self {
        DriftView {
            id: d.id,
            connection_id: d.connection_id,
            resource: d.resource,
            external_id: d.external_id,
            classification: d.classification,
            local_hash: d.local_hash,
            remote_hash: d.remote_hash,
            detected_at: rfc3339(d.detected_at),
            action: d.action,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SnapshotQuery {
    pub connection_id: Option<String>,
    pub resource: Option<String>,
    pub external_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DiffQuery {
    /// A snapshot id.
    pub from: i64,
    /// A snapshot id.
    pub to: i64,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DriftQuery {
    pub connection_id: Option<String>,
    /// `in_sync`, `internal_only`, `external_only` or `both`.
    pub classification: Option<String>,
    pub resource: Option<String>,
    pub external_id: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// What to capture on demand.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeSnapshot {
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    /// `remote` (read from the provider now; the default) or `desired`.
    pub of: Option<String>,
}

fn page(
    limit: Option<i64>,
    cursor: &Option<String>,
) -> ApiResult<syncguard_store::page::PageRequest> {
    ListParams {
        limit,
        cursor: cursor.clone(),
    }
    .page()
}

#[utoipa::path(get, path = "/v1/snapshots", tag = "publish", params(SnapshotQuery),
    responses((status = 200, body = List<SnapshotView>), (status = 401, body = Problem)))]
pub async fn list_snapshots(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SnapshotQuery>,
) -> ApiResult<Json<List<SnapshotView>>> {
    let filter = SnapshotFilter {
        connection_id: q.connection_id.clone(),
        resource: q.resource.clone(),
        external_id: q.external_id.clone(),
        visible_connections: caller.visible().map(<[String]>::to_vec),
    };
    let found = app
        .store
        .list_snapshots(&caller.scope(), &filter, &page(q.limit, &q.cursor)?)
        .await?;
    Ok(Json(List::from_page(found, SnapshotView::from)))
}

async fn find_snapshot(app: &Services, caller: &Caller, id: i64) -> ApiResult<SnapshotDetail> {
    app.store
        .get_snapshot(&caller.scope(), caller.visible(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("snapshot {id} not found")))
}

#[utoipa::path(get, path = "/v1/snapshots/{id}", tag = "publish", params(("id" = i64, Path, description = "snapshot id")),
    responses((status = 200, body = SnapshotDetailView), (status = 404, body = Problem)))]
pub async fn get_snapshot(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Json<SnapshotDetailView>> {
    let s = find_snapshot(&app, &caller, id).await?;
    Ok(Json(SnapshotDetailView {
        snapshot: s.snapshot.into(),
        data: s.data,
        patch: s.patch,
    }))
}

#[utoipa::path(get, path = "/v1/snapshots/diff", tag = "publish", params(DiffQuery),
    responses((status = 200, body = DiffView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn diff_snapshots(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<Json<DiffView>> {
    let from = find_snapshot(&app, &caller, q.from).await?;
    let to = find_snapshot(&app, &caller, q.to).await?;
    let (Some(a), Some(b)) = (&from.data, &to.data) else {
        return Err(ApiError::conflict(
            "a snapshot's stored state is damaged; the integrity audit reports it",
        ));
    };
    Ok(Json(DiffView {
        from: q.from,
        to: q.to,
        from_hash: from.snapshot.hash,
        to_hash: to.snapshot.hash,
        patch: json_diff(a, b),
    }))
}

#[utoipa::path(post, path = "/v1/snapshots", tag = "publish", request_body = TakeSnapshot,
    responses((status = 201, body = SnapshotView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem),
              (status = 502, body = Problem), (status = 503, body = Problem)))]
pub async fn take_snapshot(
    State(app): State<Services>,
    caller: Caller,
    ApiJson(body): ApiJson<TakeSnapshot>,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    let connection = visible_connection(&app, &caller, &body.connection_id).await?;
    caller.require(Role::Operator)?;
    // The id may be read from the provider, as one segment of its URL.
    syncguard_core::egress::path_segment(&body.external_id)
        .map_err(|e| ApiError::unprocessable(format!("field `external_id`: {e}")))?;
    let desired = app
        .store
        .get_desired(
            &caller.scope(),
            &connection.id,
            &body.resource,
            &body.external_id,
        )
        .await?;
    let data = match body.of.as_deref().unwrap_or("remote") {
        "desired" => {
            desired
                .ok_or_else(|| ApiError::not_found("no desired state for this object"))?
                .data
        }
        "remote" => {
            let client = app
                .providers
                .client(&app, &connection)
                .await
                .map_err(ApiError::provider)?;
            client
                .resource(&body.resource)
                .map_err(|e| ApiError::unprocessable(format!("field `resource`: {}", e.message)))?;
            let remote = client
                .get(&body.resource, &body.external_id)
                .await
                .map_err(ApiError::provider)?
                .ok_or_else(|| ApiError::not_found("the provider has no such object"))?;
            // The fields syncguard manages, when it manages the object, so that the snapshot
            // compares with the publish snapshots of the same object.
            match &desired {
                Some(d) => project(&remote, &d.data),
                None => remote,
            }
        }
        other => {
            return Err(ApiError::unprocessable(format!(
                "field `of`: expected `remote` or `desired`, got `{other}`"
            )))
        }
    };
    let key = ObjectKey {
        tenant_id: &connection.tenant_id,
        connection_id: &connection.id,
        resource: &body.resource,
        external_id: &body.external_id,
    };
    let hash = content_hash(&data);
    let snap = app
        .store
        .record_snapshot(key, &data, &hash, "manual", &json_diff, app.clock.now_ms())
        .await?;
    audit(
        &app,
        &caller,
        &connection.tenant_id,
        &connection.id,
        "snapshot.take",
        &snap.id.to_string(),
        serde_json::json!({ "resource": body.resource, "external_id": body.external_id }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(snap.into())))
}

#[utoipa::path(get, path = "/v1/drift", tag = "publish", params(DriftQuery),
    responses((status = 200, body = List<DriftView>), (status = 422, body = Problem)))]
pub async fn list_drift(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<DriftQuery>,
) -> ApiResult<Json<List<DriftView>>> {
    if let Some(c) = &q.classification {
        if Classification::parse(c).is_none() {
            return Err(ApiError::unprocessable(format!(
                "query parameter `classification`: unknown classification `{c}`"
            )));
        }
    }
    let filter = DriftFilter {
        connection_id: q.connection_id.clone(),
        classification: q.classification.clone(),
        resource: q.resource.clone(),
        external_id: q.external_id.clone(),
        visible_connections: caller.visible().map(<[String]>::to_vec),
    };
    let found = app
        .store
        .list_drift(&caller.scope(), &filter, &page(q.limit, &q.cursor)?)
        .await?;
    Ok(Json(List::from_page(found, DriftView::from)))
}
