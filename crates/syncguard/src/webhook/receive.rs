//! `POST /v1/webhooks/{connection_id}`: verify, derive, store durably, then acknowledge.
//!
//! The route is public: the signature is the credential. Every refusal is counted in
//! `syncguard_webhooks_received_total` with its outcome, and nothing is stored for it.

use super::gate::{GateError, Signed};
use super::writer::SubmitError;
use super::{Outcome, PROCESS_KIND};
use crate::api::error::ApiError;
use crate::api::extract::request_id;
use crate::api::Problem;
use crate::app::App;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use syncguard_core::canonical::content_hash;
use syncguard_store::events::{Ingested, NewInboundEvent};
use syncguard_store::queue::NewJob;
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
    State(app): State<App>,
    Path(connection_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let wh = &app.webhooks;
    // Known unreachable: refuse at once rather than wait for the pool (see `store_probe`).
    if let Some(since) = app.store.reachability().down_since() {
        let provider = wh.gates.cached_provider(&connection_id);
        wh.metrics.count(
            provider.as_deref().unwrap_or("unknown"),
            Outcome::Unavailable,
        );
        tracing::debug!(
            connection_id,
            down_since = since,
            "webhook refused: store unreachable"
        );
        return ApiError::unavailable(
            "the store is unreachable; the webhook is not acknowledged, retry shortly",
        )
        .into_response();
    }
    let gate = match wh.gates.get(&app, &connection_id).await {
        Ok(gate) => gate,
        Err(GateError::Unknown) => {
            wh.metrics.count("unknown", Outcome::UnknownConnection);
            return ApiError::not_found(format!(
                "connection {connection_id} does not exist or does not receive webhooks"
            ))
            .into_response();
        }
        Err(GateError::Store(e)) => {
            app.store.reachability().note(&e, app.clock.now_ms());
            wh.metrics.count("unknown", Outcome::Unavailable);
            return not_acknowledged(e);
        }
        Err(GateError::Broken(why)) => {
            tracing::error!(connection_id, error = %why, "connection cannot take webhooks");
            wh.metrics.count("unknown", Outcome::Error);
            return ApiError::internal("this connection's webhook setup cannot be used")
                .into_response();
        }
    };
    let provider = gate.provider.as_str();

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
            return crate::server::request_timeout();
        }
        Err(BodyError::Unreadable(why)) => {
            wh.metrics.count(provider, Outcome::Error);
            return ApiError::bad_request(format!("the body could not be read: {why}"))
                .into_response();
        }
    };

    let now = app.clock.now_ms();
    let signed = match gate.check(&headers, &body, now.div_euclid(1000)) {
        Ok(signed) => signed,
        Err(e) => {
            let outcome = if e.is_timestamp() {
                Outcome::Stale
            } else {
                Outcome::BadSignature
            };
            wh.metrics.count(provider, outcome);
            tracing::info!(connection_id, provider, outcome = outcome.as_str(), reason = %e, "webhook refused");
            return ApiError::unauthorized(format!("webhook signature refused: {e}"))
                .into_response();
        }
    };
    if signed.unsigned {
        wh.metrics
            .unsigned_total
            .with_label_values(&[provider])
            .inc();
        tracing::warn!(connection_id, provider, signature = %signed.signature,
            "accepting an UNSIGNED webhook because the connection allows it (development only)");
    }

    let event = describe(&app, &gate, &headers, body, signed, now);
    let (event_id, delivery_id, correlation_id) = (
        event.id.clone(),
        event.delivery_id.clone(),
        event.correlation_id.clone(),
    );
    match wh.writers(&app).ingest.try_submit(event).await {
        Ok(Ingested::Accepted { .. }) => {
            wh.metrics.count(provider, Outcome::Accepted);
            tracing::debug!(
                connection_id,
                event_id,
                ?delivery_id,
                correlation_id,
                "webhook stored"
            );
            let ack = WebhookAck {
                event_id,
                duplicate: false,
            };
            (StatusCode::ACCEPTED, Json(ack)).into_response()
        }
        Ok(Ingested::Duplicate {
            original_id, by, ..
        }) => {
            wh.metrics.count(provider, Outcome::Duplicate);
            tracing::debug!(
                connection_id,
                original_id,
                ?delivery_id,
                ?by,
                correlation_id,
                "duplicate webhook"
            );
            let ack = WebhookAck {
                event_id: original_id,
                duplicate: true,
            };
            (StatusCode::OK, Json(ack)).into_response()
        }
        Err(SubmitError::Full) => {
            wh.metrics.count(provider, Outcome::Overloaded);
            tracing::warn!(
                connection_id,
                provider,
                "webhook ingest queue full; not acknowledged"
            );
            ApiError::unavailable(
                "too many webhooks are waiting to be stored; not acknowledged, retry shortly",
            )
            .into_response()
        }
        Err(SubmitError::Store(e)) => {
            wh.metrics.count(provider, Outcome::Unavailable);
            tracing::warn!(
                connection_id,
                ?delivery_id,
                correlation_id,
                "webhook batch failed"
            );
            not_acknowledged(e)
        }
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
        Err(e) if crate::server::is_body_timeout(e.as_ref()) => Err(BodyError::TimedOut),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}

/// Builds the event to store: identifiers, content key, safe headers and the processing job.
fn describe(
    app: &App,
    gate: &super::gate::Gate,
    headers: &HeaderMap,
    body: Bytes,
    signed: Signed,
    now: i64,
) -> NewInboundEvent {
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let def = app.providers.webhook_def(&gate.provider);
    let at = |pointer: Option<&String>| -> Option<String> {
        let v = json.as_ref()?.pointer(pointer?)?;
        v.as_str()
            .map(str::to_string)
            .or_else(|| v.is_number().then(|| v.to_string()))
    };
    let delivery_id = signed
        .delivery_id
        .or_else(|| at(def.and_then(|d| d.delivery_id_pointer.as_ref())));
    // The provider definition knows best; then a header that names the event (Shopify,
    // GitHub); then the conventional body fields (`type` of Standard Webhooks and Stripe,
    // `event_type` of Trackstar), so events stay searchable before a definition exists.
    let event_type = at(def.and_then(|d| d.event_type_pointer.as_ref()))
        .or(signed.event_type)
        .or_else(|| {
            ["type", "event_type"]
                .iter()
                .find_map(|k| json.as_ref()?.get(*k)?.as_str().map(str::to_string))
        });
    let rule = event_type
        .as_deref()
        .and_then(|t| app.providers.event_rule(&gate.provider, t));
    let (resource, action) = match rule {
        Some(r) => (r.resource.as_str(), super::process::action_name(r.action)),
        None => ("-", "-"),
    };
    // JSON is hashed in canonical form, so a re-serialised resend is still the same content.
    let hash = match &json {
        Some(v) => content_hash(v),
        None => hex::encode(Sha256::digest(&body)),
    };
    let content_key = format!(
        "{}:{}:{resource}:{action}:{hash}",
        gate.tenant_id, gate.connection_id
    );
    let id = crate::clock::new_id("evt");
    let correlation_id = delivery_id
        .clone()
        .or_else(request_id)
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| id.clone());
    let mut job = NewJob::new(PROCESS_KIND, super::process::payload(&id, false));
    job.tenant_id = Some(gate.tenant_id.clone());
    job.connection_id = Some(gate.connection_id.clone());
    job.max_attempts = app.config.max_attempts(PROCESS_KIND);
    job.unique_key = Some(format!("{PROCESS_KIND}:{id}"));
    job.correlation_id = Some(correlation_id.clone());
    NewInboundEvent {
        id,
        tenant_id: gate.tenant_id.clone(),
        connection_id: gate.connection_id.clone(),
        provider: gate.provider.clone(),
        delivery_id,
        event_type,
        content_key,
        signature: signed.signature,
        correlation_id,
        headers: stored_headers(headers),
        body: Vec::from(body),
        received_at: now,
        job,
    }
}

/// Headers worth keeping, without credentials: `Authorization`, cookies and anything whose name
/// says it carries a key, token, password or session. Signature headers stay: a MAC reveals
/// nothing about the secret and helps explain a refusal later.
pub fn stored_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    const DROPPED: [&str; 4] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ];
    const SENSITIVE: [&str; 7] = [
        "token",
        "secret",
        "password",
        "api-key",
        "apikey",
        "session",
        "credential",
    ];
    headers
        .iter()
        .filter(|(name, _)| {
            let n = name.as_str();
            !DROPPED.contains(&n) && !SENSITIVE.iter().any(|s| n.contains(s))
        })
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn credentials_never_reach_the_stored_headers() {
        let mut h = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer sg_live_x"),
            ("cookie", "session=abc"),
            ("x-trackstar-access-token", "tok"),
            ("x-api-key", "k"),
            ("x-client-secret", "s"),
            ("webhook-signature", "v1,abc"),
            ("content-type", "application/json"),
        ] {
            h.append(name, HeaderValue::from_static(value));
        }
        let kept: Vec<String> = stored_headers(&h).into_iter().map(|(n, _)| n).collect();
        assert_eq!(kept, ["webhook-signature", "content-type"]);
    }
}
