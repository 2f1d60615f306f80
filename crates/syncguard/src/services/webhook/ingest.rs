//! Taking one delivery off the wire (SPEC §3.2): find the connection's verification setup,
//! verify the signature on the raw bytes, derive the event and store it durably with its
//! processing job. The HTTP layer (`api::webhook::receive`) reads the body and renders what
//! these return; every refusal here is counted in `syncguard_webhooks_received_total` with its
//! outcome, and nothing is stored for it.

use super::gate::{Gate, GateError, Signed};
use super::writer::SubmitError;
use super::{Outcome, PROCESS_KIND};
use crate::services::Services;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use syncguard_core::canonical::content_hash;
use syncguard_store::events::{Ingested, NewInboundEvent};
use syncguard_store::queue::NewJob;
use syncguard_store::StoreError;

/// Why a delivery was not taken. Nothing was stored for it.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The store is known to be unreachable: refused before waiting on the pool.
    #[error("the store is unreachable")]
    StoreDown,
    #[error("connection {0} does not exist or does not receive webhooks")]
    UnknownConnection(String),
    /// The connection's stored setup cannot be used (logged with the reason).
    #[error("this connection's webhook setup cannot be used")]
    Broken,
    /// Bad, missing or stale signature.
    #[error("webhook signature refused: {0}")]
    Refused(String),
    /// The ingest queue is full: the provider should retry later.
    #[error("too many webhooks are waiting to be stored")]
    Overloaded,
    #[error("the webhook could not be stored: {0}")]
    Store(StoreError),
}

/// A stored delivery: its event, or for a duplicate the event it repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub event_id: String,
    pub duplicate: bool,
}

/// The verification setup of `connection_id`, from a short-lived cache (no store read when
/// cached). Refused at once while the store is known to be down.
pub async fn open(app: &Services, connection_id: &str) -> Result<Arc<Gate>, IngestError> {
    let wh = &app.webhooks;
    if let Some(since) = app.store.reachability().down_since() {
        let provider = wh.gates.cached_provider(connection_id);
        wh.metrics.count(
            provider.as_deref().unwrap_or("unknown"),
            Outcome::Unavailable,
        );
        tracing::debug!(
            connection_id,
            down_since = since,
            "webhook refused: store unreachable"
        );
        return Err(IngestError::StoreDown);
    }
    match wh.gates.get(app, connection_id).await {
        Ok(gate) => Ok(gate),
        Err(GateError::Unknown) => {
            wh.metrics.count("unknown", Outcome::UnknownConnection);
            Err(IngestError::UnknownConnection(connection_id.to_string()))
        }
        Err(GateError::Store(e)) => {
            app.store.reachability().note(&e, app.clock.now_ms());
            wh.metrics.count("unknown", Outcome::Unavailable);
            Err(IngestError::Store(e))
        }
        Err(GateError::Broken(why)) => {
            tracing::error!(connection_id, error = %why, "connection cannot take webhooks");
            wh.metrics.count("unknown", Outcome::Error);
            Err(IngestError::Broken)
        }
    }
}

/// Verifies `body` against `gate`, derives the event and stores it with its processing job;
/// answers once the batch that holds it committed. `request_id` becomes the correlation id when
/// the delivery names none.
pub async fn take(
    app: &Services,
    gate: &Gate,
    headers: &HeaderMap,
    body: Bytes,
    request_id: Option<String>,
) -> Result<Taken, IngestError> {
    let wh = &app.webhooks;
    let provider = gate.provider.as_str();
    let connection_id = gate.connection_id.as_str();
    let now = app.clock.now_ms();
    let signed = match gate.check(headers, &body, now.div_euclid(1000)) {
        Ok(signed) => signed,
        Err(e) => {
            let outcome = if e.is_timestamp() {
                Outcome::Stale
            } else {
                Outcome::BadSignature
            };
            wh.metrics.count(provider, outcome);
            tracing::info!(connection_id, provider, outcome = outcome.as_str(), reason = %e, "webhook refused");
            return Err(IngestError::Refused(e.to_string()));
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

    let event = describe(app, gate, headers, body, signed, request_id, now);
    let (event_id, delivery_id, correlation_id) = (
        event.id.clone(),
        event.delivery_id.clone(),
        event.correlation_id.clone(),
    );
    match wh.writers(app).ingest.try_submit(event).await {
        Ok(Ingested::Accepted { .. }) => {
            wh.metrics.count(provider, Outcome::Accepted);
            tracing::debug!(
                connection_id,
                event_id,
                ?delivery_id,
                correlation_id,
                "webhook stored"
            );
            Ok(Taken {
                event_id,
                duplicate: false,
            })
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
            Ok(Taken {
                event_id: original_id,
                duplicate: true,
            })
        }
        Err(SubmitError::Full) => {
            wh.metrics.count(provider, Outcome::Overloaded);
            tracing::warn!(
                connection_id,
                provider,
                "webhook ingest queue full; not acknowledged"
            );
            Err(IngestError::Overloaded)
        }
        Err(SubmitError::Store(e)) => {
            wh.metrics.count(provider, Outcome::Unavailable);
            tracing::warn!(
                connection_id,
                ?delivery_id,
                correlation_id,
                "webhook batch failed"
            );
            Err(IngestError::Store(e))
        }
    }
}

/// Builds the event to store: identifiers, content key, safe headers and the processing job.
fn describe(
    app: &Services,
    gate: &Gate,
    headers: &HeaderMap,
    body: Bytes,
    signed: Signed,
    request_id: Option<String>,
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
        .or(request_id)
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
    use reqwest::header::HeaderValue;

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
