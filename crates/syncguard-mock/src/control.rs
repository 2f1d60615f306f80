//! The control plane, `/_mock/*`: stats, ground-truth records, faults, webhooks, mutations and
//! token expiry. Never rate limited, faulted or counted.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::faults::FaultsPatch;
use crate::http::{control_error, json, parse_body};
use crate::state::MockState;
use crate::webhook::WebhookConfig;

pub(crate) fn routes() -> Router<MockState> {
    Router::new()
        .route("/_mock/stats", get(stats))
        .route("/_mock/records/{resource}", get(records))
        .route(
            "/_mock/faults",
            get(get_faults).post(set_faults).delete(reset_faults),
        )
        .route("/_mock/webhooks", post(set_webhooks).delete(stop_webhooks))
        .route("/_mock/mutate", post(mutate))
        .route("/_mock/tokens/expire", post(expire_tokens))
}

fn bad_request(message: impl Into<String>) -> Response {
    control_error(StatusCode::BAD_REQUEST, message)
}

async fn stats(State(state): State<MockState>) -> Response {
    json(StatusCode::OK, json!(state.stats()))
}

async fn records(State(state): State<MockState>, Path(resource): Path<String>) -> Response {
    match state.records(&resource) {
        Some(data) => json(StatusCode::OK, json!({ "data": data })),
        None => control_error(
            StatusCode::NOT_FOUND,
            format!("unknown resource {resource}; expected orders, products, inventory, inbound-shipments or inventory_item"),
        ),
    }
}

async fn get_faults(State(state): State<MockState>) -> Response {
    json(StatusCode::OK, json!(state.faults()))
}

async fn set_faults(State(state): State<MockState>, body: Bytes) -> Response {
    let patch: FaultsPatch = match parse_body(&body) {
        Ok(p) => p,
        Err(msg) => return bad_request(msg),
    };
    match state.set_faults(&patch) {
        Ok(view) => json(StatusCode::OK, json!(view)),
        Err(msg) => bad_request(msg),
    }
}

async fn reset_faults(State(state): State<MockState>) -> Response {
    json(StatusCode::OK, json!(state.reset_faults()))
}

#[derive(Debug, Deserialize)]
struct WebhooksRequest {
    #[serde(flatten)]
    config: WebhookConfig,
    /// Apply this many random mutations right away, so events start flowing at once.
    #[serde(default)]
    count: usize,
    /// Events to send right away: an event type string (`"order.shipment.created"`) applies a
    /// mutation producing it; an object `{"event_type", "data"?, "previous_attributes"?}` is sent
    /// as given, without touching records.
    #[serde(default)]
    events: Vec<Value>,
}

async fn set_webhooks(State(state): State<MockState>, body: Bytes) -> Response {
    let req: WebhooksRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(msg) => return bad_request(msg),
    };
    if let Err(msg) = state.configure_webhooks(req.config) {
        return bad_request(msg);
    }
    let mut queued = 0;
    for event in &req.events {
        let sent = match event {
            Value::String(event_type) => state.mutate_for_event(event_type).is_some(),
            Value::Object(obj) => match obj.get("event_type").and_then(Value::as_str) {
                Some(event_type) => state.emit_webhook(
                    event_type,
                    obj.get("data").cloned().unwrap_or_else(|| json!({})),
                    obj.get("previous_attributes")
                        .cloned()
                        .unwrap_or_else(|| json!({})),
                ),
                None => false,
            },
            _ => false,
        };
        if !sent {
            return bad_request(format!("cannot send event {event}"));
        }
        queued += 1;
    }
    queued += state.mutate(req.count).len();
    json(
        StatusCode::OK,
        json!({ "configured": true, "queued": queued }),
    )
}

async fn stop_webhooks(State(state): State<MockState>) -> Response {
    state.stop_webhooks();
    json(StatusCode::OK, json!({ "configured": false }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MutateRequest {
    count: Option<usize>,
    rate_per_s: Option<f64>,
}

async fn mutate(State(state): State<MockState>, body: Bytes) -> Response {
    let req: MutateRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(msg) => return bad_request(msg),
    };
    if req.rate_per_s.is_some_and(|r| !(r.is_finite() && r >= 0.0)) {
        return bad_request("rate_per_s must be >= 0");
    }
    let applied = state.mutate(req.count.unwrap_or(0));
    if let Some(rate) = req.rate_per_s {
        state.set_mutation_rate(rate);
    }
    let summary: Vec<Value> = applied
        .iter()
        .map(|m| json!({ "resource": m.resource, "id": m.id, "kind": m.kind, "event_type": m.event_type }))
        .collect();
    json(
        StatusCode::OK,
        json!({
            "applied": summary.len(),
            "mutations": summary,
            "rate_per_s": state.mutation_rate_per_s(),
        }),
    )
}

async fn expire_tokens(State(state): State<MockState>) -> Response {
    json(StatusCode::OK, json!({ "expired": state.expire_tokens() }))
}
