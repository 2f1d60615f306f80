//! `Idempotency-Key` on every mutating `/v1` request (SPEC §3.8), Stripe's way: the same key
//! with the same request replays the stored response for 24 h, with a different request is 422,
//! and while the first is still in flight is 409. Server errors (5xx) are not stored: the retry
//! runs again.
//!
//! The caller is authenticated before anything else: a request without a live API key is
//! answered 401 and neither claims a key nor gets a stored response replayed (so a revoked key
//! cannot fetch what it stored before). Records are bound to the authenticated key's id: the
//! same `Idempotency-Key` sent with another API key is another record.
//!
//! Stored response bodies are sealed with the master key (the connections' sealer), bound to
//! their record, whatever the endpoint: `POST /v1/keys` answers a new key in clear, and any
//! endpoint that answers a secret is covered without being listed. Sealing rather than not
//! storing keeps the retry of a key creation whose answer was lost from minting a second key.
//! A stored body that can no longer be opened (its master key retired within the 24 h) answers
//! 500 asking for a new `Idempotency-Key`.

use super::error::ApiError;
use super::extract::{is_mutating, Caller};
use crate::services::Services;
use axum::body::Body;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use syncguard_core::ids::sha256_hex;
use syncguard_store::idempotency::{Claim, StoredResponse};

pub const HEADER: &str = "idempotency-key";
/// Set on a response that was replayed from a stored one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The seal context of a stored body: it opens only for the record it was stored under.
fn seal_context(scope: &str, key: &str) -> String {
    format!("idempotency:{scope}:{key}")
}

pub async fn middleware(State(app): State<Services>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !is_mutating(req.method())
        || !path.starts_with("/v1/")
        || path.starts_with("/v1/webhooks/")
        // No route: the answer is a 404 that changes nothing, with or without a key.
        || req.extensions().get::<MatchedPath>().is_none()
    {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    // Who asks comes first: nothing is claimed or replayed for a caller who is not one.
    let caller = match Caller::from_request_parts(&mut parts, &app).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 => k.to_string(),
        _ => {
            return ApiError::bad_request(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response()
        }
    };
    let scope = caller.key.id.clone();
    let limit = app.config.api.body_limit_bytes;
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return ApiError::too_large(limit).into_response();
    };
    let fingerprint = {
        let mut material = Vec::with_capacity(bytes.len() + 64);
        material.extend_from_slice(parts.method.as_str().as_bytes());
        material.push(b' ');
        material.extend_from_slice(parts.uri.to_string().as_bytes());
        material.push(b'\n');
        material.extend_from_slice(&bytes);
        sha256_hex(&material)
    };
    let now = app.clock.now_ms();
    match app
        .store
        .claim_idempotency_key(&scope, &key, &fingerprint, now)
        .await
    {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Claim::Mismatch) => {
            return ApiError::unprocessable(
                "this Idempotency-Key was used with a different request",
            )
            .into_response()
        }
        Ok(Claim::InFlight) => {
            return ApiError::conflict("a request with this Idempotency-Key is still in progress")
                .into_response()
        }
        Ok(Claim::Replay(stored)) => return replay(&app, &scope, &key, stored),
        Ok(Claim::New) => {}
    }
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (mut rparts, rbody) = resp.into_parts();
    let body = match axum::body::to_bytes(rbody, usize::MAX).await {
        Ok(b) => b,
        Err(_) => {
            let _ = app.store.release_idempotency_key(&scope, &key).await;
            return ApiError::internal("response could not be read").into_response();
        }
    };
    if rparts.status.is_server_error() {
        if let Err(e) = app.store.release_idempotency_key(&scope, &key).await {
            tracing::warn!(error = %e, "releasing idempotency key failed; it expires on its own");
        }
    } else {
        let stored = StoredResponse {
            status: rparts.status.as_u16(),
            content_type: rparts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(String::from),
            body: app
                .sealer
                .seal(&body, &seal_context(&scope, &key), &mut rand::rngs::OsRng),
        };
        if let Err(e) = app.store.finish_idempotent(&scope, &key, &stored).await {
            tracing::warn!(error = %e, "storing idempotent response failed");
        }
    }
    rparts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(rparts, Body::from(body))
}

fn replay(app: &Services, scope: &str, key: &str, stored: StoredResponse) -> Response {
    let body = match app.sealer.open(&stored.body, &seal_context(scope, key)) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "a stored idempotent response cannot be opened");
            return ApiError::internal(
                "the stored response of this Idempotency-Key cannot be opened; retry with a new key",
            )
            .into_response();
        }
    };
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    if let Some(ct) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        resp.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    resp.headers_mut()
        .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    resp
}
