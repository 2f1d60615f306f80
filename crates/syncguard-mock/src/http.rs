//! Response helpers shared by the handlers: error bodies in each provider's own style, so the
//! engine's error classification meets realistic payloads.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// Which provider's conventions a route follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Trackstar WMS and link flow: `{"error": code, "message": …}`.
    Trackstar,
    /// eBay REST APIs: `{"errors": [{"errorId", "domain", "category", "message"}]}`.
    Ebay,
    /// eBay's OAuth2 endpoint, which speaks RFC 6749: `{"error", "error_description"}`.
    OAuth,
}

impl Flavor {
    pub(crate) fn of_path(path: &str) -> Self {
        if path.starts_with("/identity/") {
            Flavor::OAuth
        } else if path.starts_with("/sell/") {
            Flavor::Ebay
        } else {
            Flavor::Trackstar
        }
    }

    /// A generic error for `status` (used for injected faults and rate limiting).
    pub(crate) fn error(self, status: StatusCode, message: &str) -> Response {
        match self {
            Flavor::Trackstar => trackstar_error(status, status_code_name(status), message),
            Flavor::OAuth => oauth_error(status, status_code_name(status), message),
            Flavor::Ebay => {
                let (id, category) = match status {
                    StatusCode::TOO_MANY_REQUESTS => (2001, "REQUEST"),
                    StatusCode::UNAUTHORIZED => (1001, "REQUEST"),
                    s if s.is_server_error() => (25001, "APPLICATION"),
                    _ => (25002, "REQUEST"),
                };
                ebay_error(status, id, "API_INVENTORY", category, message)
            }
        }
    }
}

fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        StatusCode::NOT_FOUND => "not_found",
        s if s.is_server_error() => "internal_error",
        _ => "bad_request",
    }
}

pub(crate) fn json(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

pub(crate) fn trackstar_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, json!({ "error": code, "message": message }))
}

pub(crate) fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    json(
        status,
        json!({ "error": code, "error_description": description }),
    )
}

pub(crate) fn ebay_error(
    status: StatusCode,
    error_id: u32,
    domain: &str,
    category: &str,
    message: &str,
) -> Response {
    json(
        status,
        json!({ "errors": [{
            "errorId": error_id,
            "domain": domain,
            "category": category,
            "message": message,
        }]}),
    )
}

/// A plain JSON error for the control plane: `{"error": message}`.
pub(crate) fn control_error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, json!({ "error": message.into() }))
}

/// Parses a JSON body, leaving the error answer to the caller's flavor. An empty body reads as
/// `{}` so that "all fields optional" endpoints accept a bare POST.
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON body: {e}"))
}
