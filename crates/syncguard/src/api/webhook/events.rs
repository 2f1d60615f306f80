//! The events API (SPEC §4.1): list, read and replay inbound events. Tenant-scoped like every
//! other read: an event of another tenant, or outside a connection-limited key's connections,
//! does not exist for the caller (404). Replay is an audited admin action.

use crate::api::audit::Audit;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiJson, ApiQuery, Caller, ListParams};
use crate::api::views::{JobView, List};
use crate::api::Problem;
use crate::clock::rfc3339;
use crate::services::webhook::{process, PROCESS_KIND};
use crate::services::Services;
use axum::extract::{Path, State};
use axum::Json;
use base64::Engine;
use serde::{Deserialize, Serialize};
use syncguard_core::role::Role;
use syncguard_store::events::{
    EventFilter, EventReplayRequest, EventStatus, InboundEvent, REPLAY_MAX,
};
use syncguard_store::queue::NewJob;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub provider: String,
    /// The provider's id of the delivery (dedup key), when it sends one.
    pub delivery_id: Option<String>,
    pub event_type: Option<String>,
    /// received, processed, failed, dead, duplicate
    pub status: String,
    /// For a duplicate: the event it repeats.
    pub duplicate_of: Option<String>,
    /// `{tenant}:{connection}:{resource}:{action}:{sha256 of the canonical body}`
    pub content_key: String,
    /// `{scheme}:secret[{i}]` (the secret that matched) or `unsigned: …`
    pub signature: String,
    pub correlation_id: String,
    /// Processing runs so far.
    pub attempts: i64,
    /// What the last processing run did, or why it failed.
    pub note: Option<String>,
    pub received_at: String,
    pub processed_at: Option<String>,
    pub updated_at: String,
}

impl From<InboundEvent> for EventView {
    fn from(e: InboundEvent) -> Self {
        EventView {
            id: e.id,
            tenant_id: e.tenant_id,
            connection_id: e.connection_id,
            provider: e.provider,
            delivery_id: e.delivery_id,
            event_type: e.event_type,
            status: e.status.to_string(),
            duplicate_of: e.duplicate_of,
            content_key: e.content_key,
            signature: e.signature,
            correlation_id: e.correlation_id,
            attempts: e.attempts,
            note: e.note,
            received_at: rfc3339(e.received_at),
            processed_at: e.processed_at.map(rfc3339),
            updated_at: rfc3339(e.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventDetailView {
    #[serde(flatten)]
    pub event: EventView,
    /// `[name, value]` pairs as received, credentials removed.
    #[schema(value_type = Vec<Vec<String>>)]
    pub headers: Vec<(String, String)>,
    /// The body exactly as received: as text when it is UTF-8, else base64.
    pub body: String,
    /// `utf8` or `base64`
    pub body_encoding: String,
    /// Every job enqueued for or run on this event, oldest first.
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub connection_id: Option<String>,
    /// received, processed, failed, dead, duplicate
    pub status: Option<String>,
    /// Event type, e.g. `order.updated`.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    /// Received at or after: RFC 3339, or milliseconds since the epoch.
    pub since: Option<String>,
}

fn parse_status(s: Option<&str>, field: &str) -> ApiResult<Option<EventStatus>> {
    s.map(|s| {
        s.parse()
            .map_err(|e: String| ApiError::unprocessable(format!("field `{field}`: {e}")))
    })
    .transpose()
}

fn parse_since(s: Option<&str>, field: &str) -> ApiResult<Option<i64>> {
    s.map(|s| {
        s.parse::<i64>()
            .ok()
            .or_else(|| syncguard_core::time::parse_rfc3339(s))
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "field `{field}`: expected RFC 3339 or milliseconds since the epoch"
                ))
            })
    })
    .transpose()
}

#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventQuery),
    responses((status = 200, body = List<EventView>), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn list_events(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventQuery>,
) -> ApiResult<Json<List<EventView>>> {
    let filter = EventFilter {
        connection_id: q.connection_id.clone(),
        status: parse_status(q.status.as_deref(), "status")?,
        event_type: q.event_type.clone(),
        since: parse_since(q.since.as_deref(), "since")?,
        visible_connections: caller.visible().map(|v| v.to_vec()),
    };
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page()?;
    let events = app
        .store
        .list_events(&caller.scope(), &filter, &page)
        .await?;
    Ok(Json(List::from_page(events, EventView::from)))
}

#[utoipa::path(get, path = "/v1/events/{id}", tag = "events", params(("id" = String, Path, description = "event id")),
    responses((status = 200, body = EventDetailView), (status = 404, body = Problem)))]
pub async fn get_event(
    State(app): State<Services>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<EventDetailView>> {
    let detail = app
        .store
        .get_event(&caller.scope(), caller.visible(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {id} not found")))?;
    let mut jobs = Vec::with_capacity(detail.job_ids.len());
    for job_id in &detail.job_ids {
        // A job purged after its retention is simply no longer listed.
        if let Some(job) = app
            .store
            .get_job(&caller.scope(), caller.visible(), *job_id)
            .await?
        {
            jobs.push(JobView::from(job));
        }
    }
    let (body, body_encoding) = match String::from_utf8(detail.body) {
        Ok(text) => (text, "utf8"),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
            "base64",
        ),
    };
    Ok(Json(EventDetailView {
        event: detail.event.into(),
        headers: detail.headers,
        body,
        body_encoding: body_encoding.into(),
        jobs,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventReplayBody {
    /// Explicit event ids; otherwise the filter below chooses (at least one filter is needed).
    pub ids: Option<Vec<String>>,
    pub connection_id: Option<String>,
    /// received, processed, failed or dead (duplicates are never replayed).
    pub status: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Received at or after: RFC 3339, or milliseconds since the epoch.
    pub since: Option<String>,
    /// Report what would be replayed without replaying.
    #[serde(default)]
    pub dry_run: bool,
    /// Spread the re-runs this many milliseconds apart.
    #[serde(default)]
    pub stagger_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventReplayView {
    pub matched: u64,
    pub replayed: u64,
    /// The events replayed (with `dry_run`, the ones that would be).
    pub event_ids: Vec<String>,
    pub job_ids: Vec<i64>,
    pub dry_run: bool,
}

#[utoipa::path(post, path = "/v1/events/replay", tag = "events", request_body = EventReplayBody,
    responses((status = 200, body = EventReplayView), (status = 403, body = Problem), (status = 422, body = Problem)))]
pub async fn replay_events(
    State(app): State<Services>,
    caller: Caller,
    ApiJson(body): ApiJson<EventReplayBody>,
) -> ApiResult<Json<EventReplayView>> {
    caller.require(Role::Admin)?;
    if !(0..=3_600_000).contains(&body.stagger_ms) {
        return Err(ApiError::unprocessable(
            "field `stagger_ms`: must be between 0 and 3600000",
        ));
    }
    if let Some(ids) = &body.ids {
        if ids.is_empty() || ids.len() > REPLAY_MAX as usize {
            return Err(ApiError::unprocessable(format!(
                "field `ids`: give between 1 and {REPLAY_MAX} ids"
            )));
        }
    }
    let status = parse_status(body.status.as_deref(), "status")?;
    if status == Some(EventStatus::Duplicate) {
        return Err(ApiError::unprocessable(
            "field `status`: duplicates are never processed, so they cannot be replayed",
        ));
    }
    let filter = EventFilter {
        connection_id: body.connection_id.clone(),
        status,
        event_type: body.event_type.clone(),
        since: parse_since(body.since.as_deref(), "since")?,
        visible_connections: caller.visible().map(|v| v.to_vec()),
    };
    let filtered = filter.connection_id.is_some()
        || filter.status.is_some()
        || filter.event_type.is_some()
        || filter.since.is_some();
    if body.ids.is_none() && !filtered {
        // Replaying every event ever received is never what anyone meant.
        return Err(ApiError::unprocessable(
            "give `ids`, or at least one of `connection_id`, `status`, `type`, `since`",
        ));
    }
    let request = EventReplayRequest {
        ids: body.ids.clone(),
        filter,
        dry_run: body.dry_run,
        stagger_ms: body.stagger_ms,
    };
    let max_attempts = app.config.max_attempts(PROCESS_KIND);
    let make_job = move |e: &InboundEvent| {
        let mut job = NewJob::new(PROCESS_KIND, process::payload(&e.id, true));
        job.tenant_id = Some(e.tenant_id.clone());
        job.connection_id = Some(e.connection_id.clone());
        job.max_attempts = max_attempts;
        job.unique_key = Some(format!("{PROCESS_KIND}:{}", e.id));
        job.correlation_id = Some(e.correlation_id.clone());
        job
    };
    let now = app.clock.now_ms();
    let audit = Audit::by(&caller, "event.replay")
        .tenant(caller.tenant_id())
        .connection(body.connection_id.as_deref())
        .params(serde_json::json!({
            "ids": body.ids, "connection_id": body.connection_id, "status": body.status,
            "type": body.event_type, "since": body.since, "dry_run": body.dry_run,
            "stagger_ms": body.stagger_ms,
        }));
    let r = app
        .store
        .replay_events_audited(
            &caller.scope(),
            &request,
            &make_job,
            Some(audit.entry()),
            now,
        )
        .await?;
    if r.replayed > 0 {
        app.job_notify.notify_one();
    }
    Ok(Json(EventReplayView {
        matched: r.matched,
        replayed: r.replayed,
        event_ids: r.event_ids,
        job_ids: r.job_ids,
        dry_run: body.dry_run,
    }))
}
