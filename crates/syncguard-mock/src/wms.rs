//! The WMS API, shaped like Trackstar: resource lists with `updated_date[gte]`, `limit` and
//! `page_token`, and the link flow that turns an auth code into an access token.

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use rand::distributions::Alphanumeric;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::clock::{now_ms, parse_rfc3339};
use crate::http::{json, parse_body, trackstar_error, Flavor};
use crate::middleware::rate_limited;
use crate::state::MockState;
use crate::store::{Cursor, Resource};

const API_KEY: &str = "x-trackstar-api-key";
const ACCESS_TOKEN: &str = "x-trackstar-access-token";

pub(crate) fn routes(state: &MockState) -> Router<MockState> {
    let mut api = Router::new();
    for res in Resource::ALL {
        api = api.route(
            &format!("/wms/{res}"),
            get(move |st: State<MockState>, q: Query<ListQuery>| list(st, q, res)),
        );
    }
    let api = api
        // Static routes win over this one: it only catches resources the mock does not have.
        .route("/wms/{resource}", get(unsupported))
        .route_layer(middleware::from_fn_with_state(state.clone(), token_auth));
    let link = Router::new()
        .route("/link/token", post(link_token))
        .route("/link/exchange", post(exchange))
        .route_layer(middleware::from_fn(api_key_auth));
    api.merge(link)
}

/// A header's value when present and non-blank.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

fn unauthorized(what: &str) -> Response {
    trackstar_error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        &format!("missing or empty {what}"),
    )
}

/// Resource calls need the API key and an access token; the token picks the rate-limit bucket.
async fn token_auth(State(state): State<MockState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let (Some(_), Some(token)) = (header(headers, API_KEY), header(headers, ACCESS_TOKEN)) else {
        return unauthorized("x-trackstar-api-key or x-trackstar-access-token");
    };
    rate_limited(
        &state,
        &format!("trackstar:{token}"),
        Flavor::Trackstar,
        req,
        next,
    )
    .await
}

/// The link flow runs before a connection has an access token: the API key alone is enough.
async fn api_key_auth(req: Request, next: Next) -> Response {
    if header(req.headers(), API_KEY).is_none() {
        return unauthorized(API_KEY);
    }
    next.run(req).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    #[serde(rename = "updated_date[gte]")]
    updated_gte: Option<String>,
    limit: Option<String>,
    page_token: Option<String>,
}

fn bad_request(message: &str) -> Response {
    trackstar_error(StatusCode::BAD_REQUEST, "bad_request", message)
}

async fn list(
    State(state): State<MockState>,
    Query(q): Query<ListQuery>,
    res: Resource,
) -> Response {
    let cfg = state.config();
    let limit = match q.limit.as_deref() {
        None => cfg.page_limit_default,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) => n.clamp(1, cfg.page_limit_max.max(1)),
            Err(_) => return bad_request("limit must be a positive integer"),
        },
    };
    let cursor = match q.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match Cursor::decode(token) {
            Some(c) => Some(c),
            None => return bad_request("invalid page_token"),
        },
    };
    let gte = match q.updated_gte.as_deref() {
        None => None,
        Some(raw) => match parse_rfc3339(raw) {
            Some(ms) => Some(ms),
            None => return bad_request("updated_date[gte] must be an RFC 3339 timestamp"),
        },
    };
    // A page token carries its listing's filter; a repeated query parameter is ignored.
    let gte = cursor.as_ref().map_or(gte, Cursor::gte);
    let page = state
        .wms()
        .store
        .table_mut(res)
        .page(gte, limit, cursor.as_ref(), now_ms());
    let data: Vec<_> = page.data.into_iter().map(|v| state.present(v)).collect();
    json(
        StatusCode::OK,
        json!({ "data": data, "next_token": page.next.map(|c| c.encode()) }),
    )
}

async fn unsupported(Path(resource): Path<String>) -> Response {
    trackstar_error(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        &format!("resource {resource} is not supported by this integration"),
    )
}

async fn link_token() -> Response {
    let suffix: String = rand::thread_rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    json(
        StatusCode::OK,
        json!({ "link_token": format!("link_{suffix}") }),
    )
}

#[derive(Debug, Deserialize)]
struct ExchangeRequest {
    #[serde(default)]
    auth_code: String,
}

/// Exchanges an auth code from the link widget. Any code starting with `code_` is valid, and the
/// same code always yields the same connection, so a retried exchange is harmless.
async fn exchange(State(state): State<MockState>, body: Bytes) -> Response {
    let req: ExchangeRequest = match parse_body(&body) {
        Ok(req) => req,
        Err(msg) => return bad_request(&msg),
    };
    let code = req.auth_code.trim();
    if code.len() <= "code_".len() || !code.starts_with("code_") {
        return trackstar_error(
            StatusCode::BAD_REQUEST,
            "invalid_auth_code",
            "auth_code is invalid or expired",
        );
    }
    json(
        StatusCode::OK,
        json!({
            "access_token": format!("at_{:016x}", fnv1a(&["token:", code])),
            "connection_id": format!("conn_{:016x}", fnv1a(&["connection:", code])),
            "integration_name": state.config().integration_name,
        }),
    )
}

/// FNV-1a: a stable, dependency-free hash for deriving ids from auth codes (not a secret).
fn fnv1a(parts: &[&str]) -> u64 {
    parts
        .iter()
        .flat_map(|p| p.bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
}
