//! Request extractors: the authenticated caller, JSON bodies with field-naming errors, list
//! parameters and the request id.

use super::error::{ApiError, ErrorCode, REQUEST_ID};
use crate::services::key_cache::Freshness;
use crate::services::Services;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use syncguard_core::ids::hash_api_key;
use syncguard_core::role::Role;
use syncguard_store::page::{decode_cursor, PageRequest, DEFAULT_LIMIT, MAX_LIMIT};
use syncguard_store::tenancy::ApiKey;
use syncguard_store::Scope;
use utoipa::IntoParams;

/// The API key a request was made with.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key: ApiKey,
}

impl Caller {
    pub fn scope(&self) -> Scope {
        self.key.scope()
    }

    /// The connections the key is limited to, if any.
    pub fn visible(&self) -> Option<&[String]> {
        self.key.connections.as_deref()
    }

    /// 403 unless the key's role allows `role`. Call after establishing that the object is
    /// visible (404 first, so that existence does not leak).
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.key.role.allows(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this action needs the {role} role; the key is {}",
                self.key.role
            )))
        }
    }

    pub fn is_platform(&self) -> bool {
        self.key.role == Role::Platform
    }

    /// The tenant a tenant-scoped key belongs to.
    pub fn tenant_id(&self) -> Option<&str> {
        if self.is_platform() {
            None
        } else {
            self.key.tenant_id.as_deref()
        }
    }
}

impl FromRequestParts<Services> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Services) -> Result<Caller, ApiError> {
        Caller::authenticate(parts, app, Freshness::WithinTtl).await
    }
}

impl Caller {
    /// Authenticates the request's bearer key: reads from the key cache when it holds the key
    /// fresh enough (`outage` is how fresh while the store is unreachable), else from the
    /// store, which refreshes the cache. While the store is known unreachable a key that must
    /// be checked there is a quick 503, not a wait for the pool.
    pub async fn authenticate(
        parts: &mut Parts,
        app: &Services,
        outage: Freshness,
    ) -> Result<Caller, ApiError> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(c.clone());
        }
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <api key>"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::unauthorized("Authorization must be `Bearer <api key>`"))?;
        let hash = hash_api_key(token);
        let reachable = app.store.reachability().is_up();
        if !is_mutating(&parts.method) {
            let freshness = if reachable {
                Freshness::WithinTtl
            } else {
                outage
            };
            if let Some(key) = app.api_keys.get(&hash, freshness) {
                let caller = Caller { key };
                parts.extensions.insert(caller.clone());
                return Ok(caller);
            }
        }
        if !reachable {
            return Err(ApiError::unavailable(
                "the store is unreachable; the API key cannot be checked, retry shortly",
            ));
        }
        let key = match app.store.authenticate(token).await {
            Ok(Some(key)) => key,
            Ok(None) => {
                app.api_keys.evict_hash(&hash);
                return Err(ApiError::unauthorized("invalid or revoked API key"));
            }
            Err(e) => {
                app.store.reachability().note(&e, app.clock.now_ms());
                return Err(e.into());
            }
        };
        app.api_keys.insert(hash, key.clone());
        let caller = Caller { key };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// The id of this request (accepted from `X-Request-Id` or generated).
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// A JSON body: 415 unless `application/json`, 413 over the limit, 400 when it is not JSON,
/// 422 naming the field when it does not fit the schema.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Services> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, app: &Services) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "expected Content-Type: application/json",
            ));
        }
        let limit = app.config.api.body_limit_bytes;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| ApiError::too_large(limit))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses `bytes` as `T`, telling a syntax error (400) from a schema violation (422) and
/// naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        return Err(ApiError::bad_request(format!("malformed JSON: {e}")));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
        if path == "." {
            ApiError::unprocessable(msg)
        } else {
            ApiError::unprocessable(format!("field `{path}`: {msg}"))
        }
    })
}

/// `limit` and `cursor` of every list endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Items per page (default 50, at most 500).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::unprocessable(format!(
                "field `limit`: must be between 1 and {MAX_LIMIT}"
            )));
        }
        if let Some(c) = &self.cursor {
            if decode_cursor(c).is_none() {
                return Err(ApiError::bad_request(
                    "field `cursor`: not a cursor this API issued",
                ));
            }
        }
        Ok(PageRequest {
            after: self.cursor.clone(),
            limit,
        })
    }
}

/// Whether a request method changes state (and so honours `Idempotency-Key`).
pub fn is_mutating(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Query parameters, with a problem document (naming the parameter) when they do not parse.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| {
                ApiError::unprocessable(
                    e.body_text()
                        .replace("Failed to deserialize query string: ", "query parameter "),
                )
            })
    }
}

/// Path parameters, with a problem document (422 naming the parameter) when they do not parse.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::unprocessable(format!("path parameter: {}", e.body_text())))
    }
}
