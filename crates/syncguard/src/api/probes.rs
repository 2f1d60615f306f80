//! Probes and metrics. `/livez` checks nothing outside the process (a store blip must not get
//! every node restarted); `/readyz` checks the store and the schema, and answers at once (not
//! ready) while the store probe knows the store is unreachable.

use super::error::ApiError;
use crate::clock::rfc3339;
use crate::services::Services;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// The longest `/readyz` spends on the store: an orchestrator gets its answer within a second.
const READYZ_BUDGET_MS: u64 = 400;

#[derive(Debug, Serialize, ToSchema)]
pub struct Probe {
    pub status: &'static str,
}

#[utoipa::path(get, path = "/livez", tag = "probes", security(), responses((status = 200, body = Probe)))]
pub async fn livez() -> Json<Probe> {
    Json(Probe { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "probes", security(), responses((status = 200, body = Probe), (status = 503, body = super::Problem)))]
pub async fn readyz(State(app): State<Services>) -> Result<Json<Probe>, ApiError> {
    let state = app.store.reachability();
    if let Some(since) = state.down_since() {
        return Err(ApiError::unavailable(format!(
            "store unreachable since {}: {}",
            rfc3339(since),
            state.reason()
        )));
    }
    // Known reachable a moment ago: check now, within the probe's timeout, on the probe's own
    // connection (a busy pool is not an outage).
    let timeout =
        Duration::from_millis(app.settings().store.probe_timeout_ms.min(READYZ_BUDGET_MS));
    app.store
        .probe(timeout)
        .await
        .map_err(|e| ApiError::unavailable(format!("store unreachable: {e}")))?;
    let version = tokio::time::timeout(timeout, app.store.schema_version())
        .await
        .map_err(|_| ApiError::unavailable("store too slow to tell its schema version"))?
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    if version < syncguard_store::migrate::latest_version() {
        return Err(ApiError::unavailable(format!(
            "schema at version {version}; migrations pending"
        )));
    }
    Ok(Json(Probe { status: "ready" }))
}

#[utoipa::path(get, path = "/metrics", tag = "probes", security(), responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain")))]
pub async fn metrics(State(app): State<Services>) -> Response {
    // The state may have changed since the probe last set the gauge (a failed write marks
    // the store down at once).
    app.store_probe
        .up
        .set(i64::from(app.store.reachability().is_up()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
