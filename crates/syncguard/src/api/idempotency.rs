//! `Idempotency-Key` on every mutating `/v1` request (SPEC §3.8): the same key with the same
//! request replays the stored response for 24 h, with a different request is 422, and while the
//! first is still in flight is 409. Keys are scoped to the caller's credential, so two callers
//! cannot see each other's responses. Server errors (5xx) are not stored: the retry runs again.

use super::error::ApiError;
use super::extract::is_mutating;
use crate::app::App;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use syncguard_core::ids::sha256_hex;
use syncguard_store::idempotency::{Claim, StoredResponse};

pub const HEADER: &str = "idempotency-key";
/// Set on a response that was replayed from a stored one.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

pub async fn middleware(State(app): State<App>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !is_mutating(req.method()) || !path.starts_with("/v1/") || path.starts_with("/v1/webhooks/")
    {
        return next.run(req).await;
    }
    let Some(key) = req.headers().get(HEADER).cloned() else {
        return next.run(req).await;
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
    let credential = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let scope = sha256_hex(&credential);
    let (parts, body) = req.into_parts();
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
        Ok(Claim::Replay(stored)) => return replay(stored),
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
            body: body.to_vec(),
        };
        if let Err(e) = app.store.finish_idempotent(&scope, &key, &stored).await {
            tracing::warn!(error = %e, "storing idempotent response failed");
        }
    }
    rparts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(rparts, Body::from(body))
}

fn replay(stored: StoredResponse) -> Response {
    let mut resp = Response::new(Body::from(stored.body));
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
