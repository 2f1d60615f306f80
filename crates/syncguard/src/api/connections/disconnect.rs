//! `DELETE /v1/connections/{id}` (SPEC §4.1): disconnect. The connection's work stops at once,
//! its credentials are erased, and its data is kept or purged.

use super::manage::{visible_for_admin, ConnectionView};
use crate::api::audit::Audit;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiPath, ApiQuery, Caller};
use crate::api::Problem;
use crate::services::Services;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use syncguard_store::checkpoints::PurgedData;
use syncguard_store::Scope;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DisconnectParams {
    /// Also delete the connection's records, changes and checkpoints (default: keep them).
    #[serde(default)]
    pub purge: bool,
}

/// What a disconnect did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Disconnected {
    pub connection: ConnectionView,
    /// Queued and running jobs of the connection that were cancelled.
    pub cancelled_jobs: u64,
    /// What was deleted, when `purge=true`.
    #[schema(value_type = Option<Object>)]
    pub purged: Option<PurgedData>,
}

#[utoipa::path(delete, path = "/v1/connections/{id}", tag = "connections",
    params(("id" = String, Path, description = "connection id"), DisconnectParams),
    responses((status = 200, body = Disconnected), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn disconnect(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<DisconnectParams>,
) -> ApiResult<Json<Disconnected>> {
    let conn = visible_for_admin(&app, &caller, &id).await?;
    let now = app.clock.now_ms();
    // The status, the erased secrets, the cancelled jobs and the audit entry, together: from
    // here on no page of this connection can commit, no webhook is accepted, no job of it runs
    // to a result and no sync is scheduled. A purge is repeated by a retried DELETE.
    let audit = Audit::by(&caller, "connection.disconnect")
        .tenant(Some(&conn.tenant_id))
        .connection(Some(&id))
        .target(&id)
        .params(json!({ "purge": q.purge }));
    let done = app
        .store
        .disconnect_connection(
            &id,
            &format!("disconnected by key {}", caller.key.id),
            Some(audit.entry()),
            now,
        )
        .await?;
    app.webhooks.invalidate(&id);
    let cancelled_jobs = done.cancelled_jobs;
    let stopped = app.sync.stop_connection(&id);
    let purged = if q.purge {
        Some(app.store.purge_sync_data(&id).await?)
    } else {
        None
    };
    tracing::info!(connection_id = %id, from = %done.from, cancelled_jobs, stopped_here = stopped, purge = q.purge, "connection disconnected");
    let conn = app
        .store
        .get_connection(&Scope::All, None, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection not found"))?;
    Ok(Json(Disconnected {
        connection: conn.into(),
        cancelled_jobs,
        purged,
    }))
}
