//! Router assembly.
//!
//! Layering, outermost first: request counting (provider routes only) → fault injection →
//! the provider's own auth → the token's rate-limit bucket → the handler. Faults come before
//! auth because an outage or a storm hits every caller, authenticated or not.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use crate::http::control_error;
use crate::middleware::inject_faults;
use crate::state::MockState;
use crate::{control, ebay, wms};

pub(crate) fn router(state: MockState) -> Router {
    let provider = wms::routes(&state)
        .merge(ebay::routes(&state))
        .route_layer(middleware::from_fn_with_state(state.clone(), inject_faults));
    Router::new()
        .merge(provider)
        .merge(control::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count_request))
        .with_state(state)
}

async fn not_found() -> Response {
    control_error(StatusCode::NOT_FOUND, "no such route")
}

/// Counts every answer outside `/_mock/` by status and by `"METHOD /route"`.
async fn count_request(State(state): State<MockState>, req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/_mock/") {
        return next.run(req).await;
    }
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let endpoint = format!("{} {route}", req.method());
    let resp = next.run(req).await;
    state
        .counters()
        .record_request(endpoint, resp.status().as_u16());
    resp
}
