//! The HTTP API (SPEC §3.8, §4.1).
//!
//! Every request passes the same layers, outermost first: request id (accepted from
//! `X-Request-Id` or generated, echoed), the request context (task-local request id for problem
//! documents and logs, metrics, the early 413 on a declared `Content-Length` over the limit),
//! then `Idempotency-Key` handling for mutating `/v1` calls (which authenticates the caller
//! before it claims or replays anything). Handlers authenticate with the [`extract::Caller`]
//! extractor and never touch SQL.
//!
//! Metric labels come from closed sets: the method is one of the standard ones or `other`,
//! the route a matched route template or `unmatched`, so no request can mint a new series.

pub mod audit;
mod connections;
mod contract;
pub mod error;
pub mod extract;
mod health;
pub mod idempotency;
mod jobs;
mod link;
mod probes;
mod providers;
mod publish;
pub mod server;
mod sync;
pub(crate) mod tenants;
pub mod views;
pub mod webhook;

pub use error::{ApiError, Problem};

use crate::services::Services;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

#[derive(OpenApi)]
#[openapi(
    info(title = "syncguard", description = "Self-hosted integration sync engine.\n\nEvery error is `application/problem+json` (RFC 9457); the last segment of its `type` names the kind. Every write (`POST`, `PUT`, `PATCH`, `DELETE` under `/v1/`, webhooks aside) honours an optional `Idempotency-Key` header (1 to 255 visible ASCII characters): the first answer is stored for 24 h and returned again for a retry with the same key and request; a retry while the first is in progress gets 409, the same key with another request 422.", license(name = "MIT OR Apache-2.0")),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sg_live_…")
                    .build(),
            ),
        );
    }
}

/// The documented `/v1` routes and the OpenAPI document that describes exactly them.
pub fn documented() -> (Router<Services>, utoipa::openapi::OpenApi) {
    let (routes, mut doc) = routes().split_for_parts();
    // Once every operation is in: what they all share (see `contract`).
    utoipa::Modify::modify(&contract::Contract, &mut doc);
    (routes, doc)
}

fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(tenants::create_tenant, tenants::list_tenants))
        .routes(routes!(tenants::create_key, tenants::list_keys))
        .routes(routes!(tenants::revoke_key))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::retry_job))
        .routes(routes!(jobs::cancel_job))
        .routes(routes!(jobs::list_dead_letters))
        .routes(routes!(jobs::replay_dead_letters))
        .routes(routes!(jobs::review_dead_letter))
        .routes(routes!(jobs::list_audit))
        .routes(routes!(probes::livez))
        .routes(routes!(probes::readyz))
        .routes(routes!(probes::metrics))
        .routes(routes!(
            connections::create_connection,
            connections::list_connections
        ))
        .routes(routes!(connections::get_connection))
        .merge(webhook::routes())
        .merge(providers::routes())
        .routes(routes!(link::create_link_token))
        .routes(routes!(
            connections::manage::update_connection,
            connections::disconnect::disconnect
        ))
        .routes(routes!(sync::start_sync))
        .routes(routes!(sync::list_checkpoints))
        .routes(routes!(sync::list_records))
        .routes(routes!(sync::get_record))
        .routes(routes!(sync::list_changes))
        .routes(routes!(health::health))
        .routes(routes!(health::connection_health))
        .merge(publish::routes())
}

/// The OpenAPI 3.1 document served at `/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    documented().1
}

pub fn router(app: Services) -> Router {
    let (routes, doc) = documented();
    let doc = std::sync::Arc::new(doc);
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || async move { axum::Json((*doc).clone()) }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        // Only on routed methods: a method a path does not serve is a 405 whatever its key.
        .route_layer(middleware::from_fn_with_state(
            app.clone(),
            idempotency::middleware,
        ))
        .layer(middleware::from_fn_with_state(app.clone(), context))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(app)
}

/// The metric label of a request method: a standard method, or `other`.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Request context: request id in scope for the handler, early body-limit check, metrics and
/// one log line per request.
async fn context(State(app): State<Services>, req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // Webhooks check their own (larger) limit once the connection is known, so that the
    // refusal is counted against its provider.
    let limit = app.config.api.body_limit_bytes;
    let declared = if req.uri().path().starts_with("/v1/webhooks/") {
        None
    } else {
        req.headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
    };
    let started = Instant::now();
    let resp = error::REQUEST_ID
        .scope(id.clone(), async move {
            if declared.is_some_and(|len| len > limit) {
                // Refused before reading a byte of the body.
                return ApiError::too_large(limit).into_response();
            }
            next.run(req).await
        })
        .await;
    let status = resp.status();
    let elapsed = started.elapsed();
    app.metrics
        .http_requests_total
        .with_label_values(&[method, &route, status.as_str()])
        .inc();
    app.metrics
        .http_request_duration_seconds
        .with_label_values(&[method, &route])
        .observe(elapsed.as_secs_f64());
    if route != "/livez" && route != "/metrics" {
        tracing::info!(request_id = %id, method = %method, route = %route, status = status.as_u16(), duration_ms = elapsed.as_secs_f64() * 1000.0, "request");
    }
    let mut resp = resp;
    if !resp.headers().contains_key(REQUEST_ID_HEADER) {
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
    }
    resp
}
