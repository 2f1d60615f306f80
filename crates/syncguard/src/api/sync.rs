//! Sync over the API (SPEC §4.1, Appendix A): manual syncs, checkpoints, the mirrored records
//! and the change feed. Reads answer the pinned item shapes, with a few extra fields.

use crate::api::audit::Audit;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use crate::api::views::List;
use crate::api::Problem;
use crate::clock::rfc3339;
use crate::services::sync::plan::SyncSettings;
use crate::services::sync::{start_syncs, Reason};
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncguard_core::connection::ConnectionStatus;
use syncguard_core::role::Role;
use syncguard_store::checkpoints::Checkpoint;
use syncguard_store::connections::Connection;
use syncguard_store::page::{decode_cursor, encode_cursor, DEFAULT_LIMIT, MAX_LIMIT};
use syncguard_store::records::{Change, Record};
use utoipa::{IntoParams, ToSchema};

/// A connection the caller may see, or 404 (whatever the reason: no existence leak).
async fn visible(app: &Services, caller: &Caller, id: &str) -> ApiResult<Connection> {
    app.store
        .get_connection(&caller.scope(), caller.visible(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))
}

/// The resources a connection mirrors: the provider's, or those its webhook rules name.
fn resources_of(app: &Services, conn: &Connection) -> Vec<String> {
    let Some(def) = app.providers.get(&conn.provider) else {
        return Vec::new();
    };
    let mut names = match SyncSettings::from_config(&conn.config, def) {
        Ok(s) if def.has_api() => s.resources,
        _ => def.resources.keys().cloned().collect(),
    };
    if let Some(hooks) = &def.webhook {
        names.extend(hooks.events.iter().map(|r| r.resource.clone()));
    }
    names.sort();
    names.dedup();
    names
}

fn known_resource(app: &Services, conn: &Connection, resource: &str) -> ApiResult<()> {
    if resources_of(app, conn).iter().any(|r| r == resource) {
        Ok(())
    } else {
        Err(ApiError::unprocessable(format!(
            "field `resource`: provider `{}` has no resource `{resource}`",
            conn.provider
        )))
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSync {
    /// Resources to sync (default: all of the connection's).
    pub resources: Option<Vec<String>>,
    /// List everything again instead of resuming or reading from the cursor.
    #[serde(default)]
    pub full: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncStarted {
    pub connection_id: String,
    pub jobs: Vec<SyncJobView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SyncJobView {
    pub resource: String,
    pub job_id: i64,
    /// A sync of this resource was already queued or running: this is that job (a running
    /// one is followed by one more run).
    pub deduplicated: bool,
}

#[utoipa::path(post, path = "/v1/connections/{id}/sync", tag = "sync", request_body = StartSync,
    params(("id" = String, Path, description = "connection id")),
    responses((status = 202, body = SyncStarted), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the connection is not active or has nothing to sync"),
        (status = 422, body = Problem)))]
pub async fn start_sync(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StartSync>,
) -> ApiResult<(StatusCode, Json<SyncStarted>)> {
    let conn = visible(&app, &caller, &id).await?;
    caller.require(Role::Operator)?;
    if conn.status != ConnectionStatus::Active {
        return Err(ApiError::conflict(format!(
            "the connection is {}; only active connections sync",
            conn.status
        )));
    }
    if !crate::services::sync::syncs(&app, &conn) {
        return Err(ApiError::conflict(
            "nothing to sync: the connection has no credentials or its provider no API",
        ));
    }
    let def = app.providers.get(&conn.provider).expect("syncs() checked");
    let settings = SyncSettings::from_config(&conn.config, def).map_err(ApiError::unprocessable)?;
    let resources = body.resources.unwrap_or_default();
    if let Some(unknown) = resources.iter().find(|r| !settings.resources.contains(r)) {
        return Err(ApiError::unprocessable(format!(
            "field `resources`: connection {id} does not sync `{unknown}`"
        )));
    }
    let started = start_syncs(&app, &conn, &resources, Reason::Manual, body.full).await?;
    let audit = Audit::by(&caller, "connection.sync")
        .tenant(Some(&conn.tenant_id))
        .connection(Some(&id))
        .target(&id)
        .params(json!({ "resources": started.iter().map(|(r, _)| r).collect::<Vec<_>>(), "full": body.full }));
    app.store
        .append_audit(audit.entry(), app.clock.now_ms())
        .await?;
    let jobs = started
        .into_iter()
        .map(|(resource, e)| SyncJobView {
            resource,
            job_id: e.id,
            deduplicated: e.deduplicated,
        })
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncStarted {
            connection_id: id,
            jobs,
        }),
    ))
}

/// The run in progress of a checkpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub started_at: String,
    /// The query's lower bound; null for a full listing.
    pub since: Option<String>,
    pub backfill: bool,
    pub full: bool,
    pub pages: i64,
    pub items: i64,
    pub missing_cursor: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub resource: String,
    /// The high-water mark: the largest remote updated-at committed.
    pub cursor: Option<String>,
    pub last_sync_at: Option<String>,
    pub last_success_at: Option<String>,
    pub last_error: Option<String>,
    pub backfill_done: bool,
    /// Seconds since the last completed run (null before the first).
    pub lag_s: Option<f64>,
    pub run: Option<RunView>,
    pub pages_total: i64,
    pub items_total: i64,
    /// Items stored without a readable cursor field, over every run.
    pub missing_cursor_total: i64,
}

impl CheckpointView {
    fn new(resource: String, c: Option<Checkpoint>, now: i64) -> CheckpointView {
        let c = c.as_ref();
        CheckpointView {
            resource,
            cursor: c.and_then(|c| c.cursor).map(rfc3339),
            last_sync_at: c.and_then(|c| c.last_sync_at).map(rfc3339),
            last_success_at: c.and_then(|c| c.last_success_at).map(rfc3339),
            last_error: c.and_then(|c| c.last_error.clone()),
            backfill_done: c.is_some_and(|c| c.backfill_done),
            lag_s: c
                .and_then(|c| c.last_success_at)
                .map(|t| (now - t).max(0) as f64 / 1000.0),
            run: c.and_then(|c| c.run.as_ref()).map(|r| RunView {
                started_at: rfc3339(r.started_at),
                since: r.since.map(rfc3339),
                backfill: r.backfill,
                full: r.full,
                pages: r.pages,
                items: r.items,
                missing_cursor: r.missing_cursor,
            }),
            pages_total: c.map_or(0, |c| c.pages_total),
            items_total: c.map_or(0, |c| c.items_total),
            missing_cursor_total: c.map_or(0, |c| c.missing_cursor_total),
        }
    }
}

#[utoipa::path(get, path = "/v1/connections/{id}/checkpoints", tag = "sync",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = List<CheckpointView>), (status = 404, body = Problem)))]
pub async fn list_checkpoints(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<List<CheckpointView>>> {
    let conn = visible(&app, &caller, &id).await?;
    let mut stored = app.store.list_checkpoints(&caller.scope(), &id).await?;
    let now = app.clock.now_ms();
    // The resources the connection syncs, and any other that has a checkpoint.
    let mut names = match app.providers.get(&conn.provider).filter(|d| d.has_api()) {
        Some(def) => SyncSettings::from_config(&conn.config, def)
            .map(|s| s.resources)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    names.extend(stored.iter().map(|c| c.resource.clone()));
    names.sort();
    names.dedup();
    let data = names
        .into_iter()
        .map(|r| {
            let c = stored
                .iter()
                .position(|c| c.resource == r)
                .map(|i| stored.swap_remove(i));
            CheckpointView::new(r, c, now)
        })
        .collect();
    Ok(Json(List {
        data,
        next_cursor: None,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordView {
    pub external_id: String,
    pub hash: String,
    /// The object as the provider sent it.
    #[schema(value_type = Object)]
    pub data: Value,
    pub remote_updated_at: Option<String>,
    pub synced_at: String,
    pub deleted: bool,
}

impl From<Record> for RecordView {
    fn from(r: Record) -> Self {
        RecordView {
            external_id: r.external_id,
            hash: r.hash,
            data: r.data,
            remote_updated_at: r.remote_updated_at.map(rfc3339),
            synced_at: rfc3339(r.synced_at),
            deleted: r.deleted,
        }
    }
}

#[utoipa::path(get, path = "/v1/connections/{id}/records/{resource}", tag = "sync",
    params(("id" = String, Path, description = "connection id"), ("resource" = String, Path), ListParams),
    responses((status = 200, body = List<RecordView>), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn list_records(
    State(app): State<Services>,
    caller: Caller,
    ApiPath((id, resource)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<List<RecordView>>> {
    let conn = visible(&app, &caller, &id).await?;
    known_resource(&app, &conn, &resource)?;
    let page = app
        .store
        .list_records(&caller.scope(), &id, &resource, &q.page()?)
        .await?;
    Ok(Json(List::from_page(page, RecordView::from)))
}

#[utoipa::path(get, path = "/v1/connections/{id}/records/{resource}/{external_id}", tag = "sync",
    params(("id" = String, Path, description = "connection id"), ("resource" = String, Path), ("external_id" = String, Path)),
    responses((status = 200, body = RecordView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn get_record(
    State(app): State<Services>,
    caller: Caller,
    ApiPath((id, resource, external_id)): ApiPath<(String, String, String)>,
) -> ApiResult<Json<RecordView>> {
    let conn = visible(&app, &caller, &id).await?;
    known_resource(&app, &conn, &resource)?;
    let record = app
        .store
        .get_record(&caller.scope(), &id, &resource, &external_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{resource}/{external_id} not found")))?;
    Ok(Json(record.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    /// Changes after this sequence number (exclusive); 0 or absent: from the start.
    pub after: Option<i64>,
    /// The `next_cursor` of the previous page (instead of `after`).
    pub cursor: Option<String>,
    pub connection_id: Option<String>,
    /// Items per page (default 50, at most 500).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangeView {
    pub seq: i64,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    /// created, updated, deleted
    pub kind: String,
    pub hash: Option<String>,
    pub at: String,
    /// What observed it: sync, webhook, refetch, …
    pub source: String,
}

impl From<Change> for ChangeView {
    fn from(c: Change) -> Self {
        ChangeView {
            seq: c.seq,
            connection_id: c.connection_id,
            resource: c.resource,
            external_id: c.external_id,
            kind: c.kind,
            hash: c.hash,
            at: rfc3339(c.at),
            source: c.source,
        }
    }
}

#[utoipa::path(get, path = "/v1/changes", tag = "sync", params(ChangesParams),
    responses((status = 200, body = List<ChangeView>, description = "oldest first; `next_cursor` is set while a full page came back"),
        (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn list_changes(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ChangesParams>,
) -> ApiResult<Json<List<ChangeView>>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::unprocessable(format!(
            "field `limit`: must be between 1 and {MAX_LIMIT}"
        )));
    }
    let after = match (&q.cursor, q.after) {
        (Some(c), _) => decode_cursor(c)
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| ApiError::bad_request("field `cursor`: not a cursor this API issued"))?,
        (None, after) => after.unwrap_or(0),
    };
    if let Some(conn) = &q.connection_id {
        visible(&app, &caller, conn).await?;
    }
    let changes = app
        .store
        .list_changes(
            &caller.scope(),
            caller.visible(),
            q.connection_id.as_deref(),
            after,
            limit,
        )
        .await?;
    let next_cursor = (changes.len() as i64 == limit)
        .then(|| changes.last().map(|c| encode_cursor(&c.seq.to_string())))
        .flatten();
    Ok(Json(List {
        data: changes.into_iter().map(ChangeView::from).collect(),
        next_cursor,
    }))
}
