//! The marketplace API, shaped like eBay's OAuth2 token endpoint and Sell Inventory API.
//!
//! - `POST /identity/v1/oauth2/token`: form `grant_type=client_credentials|refresh_token`,
//!   client id and secret by HTTP Basic (any non-empty pair).
//! - `PUT|GET|DELETE /sell/inventory/v1/inventory_item/{sku}` and
//!   `GET /sell/inventory/v1/inventory_item?limit=&offset=`, Bearer auth with a live token.
//!
//! Writes honour `Idempotency-Key` or eBay's `X-EBAY-C-REQUEST-ID`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::http::{ebay_error, json, oauth_error, Flavor};
use crate::middleware::rate_limited;
use crate::state::MockState;
use crate::stats::bump;
use crate::store::ebay as store;
use store::{Answer, Effect};

/// eBay's default and maximum page sizes for `getInventoryItems`.
const LIST_LIMIT_DEFAULT: usize = 25;
const LIST_LIMIT_MAX: usize = 200;
const ITEMS_PATH: &str = "/sell/inventory/v1/inventory_item";

pub(crate) fn routes(state: &MockState) -> Router<MockState> {
    let api = Router::new()
        .route(ITEMS_PATH, get(list_items))
        .route(
            "/sell/inventory/v1/inventory_item/{sku}",
            get(get_item).put(put_item).delete(delete_item),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), bearer_auth));
    Router::new()
        .route("/identity/v1/oauth2/token", post(issue_token))
        .merge(api)
}

/// Bearer auth with a live token, then that token's rate-limit bucket.
async fn bearer_auth(State(state): State<MockState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    let Some(token) = token else {
        return ebay_error(
            StatusCode::UNAUTHORIZED,
            1001,
            "OAuth",
            "REQUEST",
            "Invalid access token. Check the value of the Authorization HTTP request header.",
        );
    };
    if !state.ebay_token_valid(&token) {
        return ebay_error(
            StatusCode::UNAUTHORIZED,
            1001,
            "OAuth",
            "REQUEST",
            "Invalid access token. The token is expired or unknown.",
        );
    }
    rate_limited(&state, &format!("ebay:{token}"), Flavor::Ebay, req, next).await
}

async fn issue_token(
    State(state): State<MockState>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    if basic_credentials(&headers).is_none() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let Ok(Form(form)) = form else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "request body must be application/x-www-form-urlencoded",
        );
    };
    let non_empty = |name: &str| form.get(name).is_some_and(|v| !v.is_empty());
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("refresh_token") if non_empty("refresh_token") => {}
        Some("refresh_token") => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "refresh_token is required",
            )
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant type {other} is not supported"),
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    }
    let (token, ttl_s) = state.issue_ebay_token();
    json(
        StatusCode::OK,
        json!({
            "access_token": token,
            "expires_in": ttl_s,
            "token_type": "Application Access Token",
        }),
    )
}

/// `(client_id, client_secret)` from `Authorization: Basic …`, both non-empty.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    (!id.is_empty() && !secret.is_empty()).then(|| (id.to_owned(), secret.to_owned()))
}

fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    ["idempotency-key", "x-ebay-c-request-id"]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .map(str::trim)
        .find(|v| !v.is_empty())
        .map(str::to_owned)
}

async fn put_item(
    State(state): State<MockState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = idempotency_key(&headers);
    let outcome = state.ebay().put(&sku, key.as_deref(), &body);
    written(&state, outcome)
}

async fn delete_item(
    State(state): State<MockState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
) -> Response {
    let key = idempotency_key(&headers);
    let outcome = state.ebay().delete(&sku, key.as_deref());
    written(&state, outcome)
}

/// Counts a write by its effect and turns its answer into a response.
fn written(state: &MockState, (answer, effect): (Answer, Effect)) -> Response {
    let counters = state.counters();
    match effect {
        Effect::Applied => bump(&counters.writes_applied),
        Effect::Duplicate => bump(&counters.duplicate_writes),
        Effect::Unchanged | Effect::Rejected => {}
    }
    match answer.body {
        Some(body) => (answer.status, Json(body)).into_response(),
        None => answer.status.into_response(),
    }
}

async fn get_item(State(state): State<MockState>, Path(sku): Path<String>) -> Response {
    let item = state.ebay().get(&sku).cloned();
    match item {
        Some(item) => json(StatusCode::OK, state.present(item)),
        None => written(&state, (store::not_found(&sku), Effect::Rejected)),
    }
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<String>,
    offset: Option<String>,
}

async fn list_items(State(state): State<MockState>, Query(params): Query<ListParams>) -> Response {
    let parse = |v: Option<&String>, default: usize| v.map_or(Ok(default), |s| s.parse::<usize>());
    let (Ok(limit), Ok(offset)) = (
        parse(params.limit.as_ref(), LIST_LIMIT_DEFAULT),
        parse(params.offset.as_ref(), 0),
    ) else {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body: Some(store::error_body(
                25706,
                "You have provided invalid pagination values. limit and offset must be non-negative integers",
            )),
        };
        return written(&state, (answer, Effect::Rejected));
    };
    let limit = limit.clamp(1, LIST_LIMIT_MAX);
    let (items, total) = state.ebay().list(limit, offset);
    let base = state.base_url();
    let href = |offset: usize| format!("{base}{ITEMS_PATH}?limit={limit}&offset={offset}");
    let mut body = json!({
        "href": href(offset),
        "limit": limit,
        "offset": offset,
        "total": total,
        "size": items.len(),
        "inventoryItems": items.into_iter().map(|i| state.present(i)).collect::<Vec<_>>(),
    });
    if offset + limit < total {
        body["next"] = json!(href(offset + limit));
    }
    if offset > 0 {
        body["prev"] = json!(href(offset.saturating_sub(limit)));
    }
    json(StatusCode::OK, body)
}
