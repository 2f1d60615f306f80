//! `POST /v1/webhooks/{connection_id}`: read the body within its limits, hand it to
//! `services::webhook::ingest` (verify, derive, store durably), then acknowledge.
//!
//! The route is public: the signature is the credential. Every refusal is counted in
//! `syncguard_webhooks_received_total` with its outcome, and nothing is stored for it.

use crate::api::error::ApiError;
use crate::api::extract::request_id;
use crate::api::Problem;
use crate::services::webhook::ingest::{self, IngestError};
use crate::services::webhook::Outcome;
use crate::services::Services;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The acknowledgement (SPEC Appendix A, pinned).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAck {
    /// The stored event; for a duplicate, the event it repeats.
    pub event_id: String,
    pub duplicate: bool,
}

#[utoipa::path(post, path = "/v1/webhooks/{connection_id}", tag = "webhooks", security(),
    params(("connection_id" = String, Path, description = "the connection the provider delivers to")),
    request_body(content = String, description = "the provider's payload, stored byte for byte", content_type = "application/json"),
    responses(
        (status = 202, body = WebhookAck, description = "stored with its processing job"),
        (status = 200, body = WebhookAck, description = "a duplicate: stored as such, not processed again"),
        (status = 401, body = Problem, description = "bad, missing or stale signature"),
        (status = 404, body = Problem, description = "unknown connection"),
        (status = 408, body = Problem, description = "the body did not arrive within the body read timeout"),
        (status = 413, body = Problem, description = "body over the limit"),
        (status = 503, body = Problem, description = "store unavailable or ingest queue full: not acknowledged, retry")))]
pub async fn receive(
    State(app): State<Services>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let gate = match ingest::open(&app, &connection_id).await {
        Ok(gate) => gate,
        Err(e) => return refusal(e),
    };
    let (wh, provider) = (&app.webhooks, gate.provider.as_str());
    // A declared length over the limit is refused before a byte of the body is read.
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > wh.body_limit) {
        wh.metrics.count(provider, Outcome::TooLarge);
        return ApiError::too_large(wh.body_limit).into_response();
    }
    let body = match read_limited(body, wh.body_limit).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => {
            wh.metrics.count(provider, Outcome::TooLarge);
            return ApiError::too_large(wh.body_limit).into_response();
        }
        Err(BodyError::TimedOut) => {
            wh.metrics.count(provider, Outcome::Timeout);
            return crate::api::server::request_timeout();
        }
        Err(BodyError::Unreadable(why)) => {
            wh.metrics.count(provider, Outcome::Error);
            return ApiError::bad_request(format!("the body could not be read: {why}"))
                .into_response();
        }
    };
    match ingest::take(&app, &gate, &headers, body, request_id()).await {
        Ok(taken) => {
            let status = if taken.duplicate {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            let ack = WebhookAck {
                event_id: taken.event_id,
                duplicate: taken.duplicate,
            };
            (status, Json(ack)).into_response()
        }
        Err(e) => refusal(e),
    }
}

/// The answer to a delivery that was not taken.
fn refusal(e: IngestError) -> Response {
    match e {
        IngestError::StoreDown => ApiError::unavailable(
            "the store is unreachable; the webhook is not acknowledged, retry shortly",
        )
        .into_response(),
        IngestError::UnknownConnection(_) | IngestError::Broken => {
            let err = if matches!(e, IngestError::Broken) {
                ApiError::internal(e.to_string())
            } else {
                ApiError::not_found(e.to_string())
            };
            err.into_response()
        }
        IngestError::Refused(_) => ApiError::unauthorized(e.to_string()).into_response(),
        IngestError::Overloaded => ApiError::unavailable(
            "too many webhooks are waiting to be stored; not acknowledged, retry shortly",
        )
        .into_response(),
        IngestError::Store(e) => not_acknowledged(e),
    }
}

/// A store failure, whatever its cause, is a 503 with `Retry-After`: nothing was acknowledged,
/// and the provider should simply try again later.
fn not_acknowledged(e: syncguard_store::StoreError) -> Response {
    tracing::warn!(error = %e, "webhook not stored");
    ApiError::unavailable("the webhook could not be stored and is not acknowledged; retry shortly")
        .into_response()
}

enum BodyError {
    TooLarge,
    /// Still arriving at `api.body_read_timeout_ms`.
    TimedOut,
    Unreadable(String),
}

/// Reads the body up to `limit` bytes and stops there: a chunked body that never ends, or one
/// far over the limit, costs at most `limit` bytes of memory before the 413.
async fn read_limited(body: Body, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(BodyError::TooLarge),
        Err(e) if crate::api::server::is_body_timeout(e.as_ref()) => Err(BodyError::TimedOut),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}
