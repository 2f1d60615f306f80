//! One mapping from errors to HTTP (SPEC §3.8, §3.9): every error leaves as an RFC 9457
//! `application/problem+json` document carrying the request id.

use crate::provider::ProviderError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use syncguard_core::class::ErrorClass;
use syncguard_store::StoreError;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, for problem documents and log lines.
    pub static REQUEST_ID: String;
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub request_id: Option<String>,
}

/// Every kind of problem the API answers, each with its one HTTP status. The wire name
/// ([`ErrorCode::as_str`]) is the last segment of the problem's `type` URI; it never changes
/// for an existing kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    RequestTimeout,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    Internal,
    /// A provider refused or answered what syncguard cannot use (a link flow, a snapshot's
    /// read). Passing provider conditions (timeouts, rate limits, an open circuit) are
    /// [`ErrorCode::Unavailable`] with a `Retry-After`.
    ProviderError,
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::RequestTimeout,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unprocessable,
        ErrorCode::Internal,
        ErrorCode::ProviderError,
        ErrorCode::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::Internal => "internal",
            ErrorCode::ProviderError => "provider_error",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The one place a problem kind meets its HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::Conflict => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::ProviderError => StatusCode::BAD_GATEWAY,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answered to an API caller.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    /// Seconds, for 503 and 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            code,
            detail: detail.into(),
            retry_after: None,
        }
    }
    /// The HTTP status of this error's kind.
    pub fn status(&self) -> StatusCode {
        self.code.status()
    }
    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unauthorized, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Forbidden, detail)
    }
    pub fn not_found(what: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::NotFound, what)
    }
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, detail)
    }
    pub fn unprocessable(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Unprocessable, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Conflict, detail)
    }
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    }
    pub fn unavailable(detail: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(ErrorCode::Unavailable, detail)
        }
    }
    pub fn internal(detail: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::Internal, detail)
    }
    /// A provider failure: a refusal is [`ErrorCode::ProviderError`]; a passing condition
    /// (timeout, rate limit, open circuit) is [`ErrorCode::Unavailable`] with the provider's
    /// hint of when to retry.
    pub fn provider(e: ProviderError) -> ApiError {
        match e.class {
            ErrorClass::Permanent => ApiError::new(ErrorCode::ProviderError, e.message),
            _ => ApiError {
                retry_after: Some(e.retry_after_ms.map_or(1, |ms| ms.div_ceil(1_000).max(1))),
                ..ApiError::unavailable(e.message)
            },
        }
    }

    fn title(&self) -> &'static str {
        self.status().canonical_reason().unwrap_or("Error")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::unavailable("the store is unavailable; retry shortly")
            }
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(d) => ApiError::conflict(d),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::internal("internal error")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            type_: format!("https://syncguard.dev/problems/{}", self.code.as_str()),
            title: self.title().to_string(),
            status: self.status().as_u16(),
            detail: self.detail.clone(),
            request_id: REQUEST_ID.try_with(|id| id.clone()).ok(),
        };
        let body = serde_json::to_vec(&problem).expect("problem serializes");
        let mut resp = (self.status(), body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_wire_name_and_an_error_status() {
        let names: std::collections::BTreeSet<_> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for code in ErrorCode::ALL {
            let status = code.status().as_u16();
            assert!((400..600).contains(&status), "{code:?}: {status}");
        }
        assert_eq!(ErrorCode::ProviderError.status(), StatusCode::BAD_GATEWAY);
    }

    #[test]
    fn provider_failures_map_to_one_code_or_to_a_retryable_503() {
        let refused = ApiError::provider(ProviderError::permanent("no such item"));
        assert_eq!(refused.code, ErrorCode::ProviderError);
        assert_eq!(refused.retry_after, None);
        let mut passing = ProviderError::transient("timed out");
        passing.retry_after_ms = Some(2_500);
        let passing = ApiError::provider(passing);
        assert_eq!(passing.code, ErrorCode::Unavailable);
        assert_eq!(passing.retry_after, Some(3));
    }
}
