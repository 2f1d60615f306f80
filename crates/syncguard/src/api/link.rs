//! Provider link flows (SPEC §4.1): instead of pasting credentials, the operator's app asks for
//! a link token (`POST /v1/connections/link-token`), opens the provider's widget with it, and
//! the end user connects their account there. The widget hands back a one-time `auth_code`,
//! which `POST /v1/connections` exchanges for the connection's credentials.
//!
//! Provider definitions do not describe link flows yet, so the flows syncguard knows are
//! listed here ([`flow_for`]): Trackstar's `POST /link/token` and `POST /link/exchange`,
//! authenticated by the operator's account key, which the exchange turns into the connection's
//! access token. The calls are one-off admin actions, so they bypass the connection's limiter
//! and breaker (there is no connection yet) but use the provider HTTP client and its timeout.

use crate::api::audit::Audit;
use crate::api::error::{ApiError, ApiResult, ErrorCode};
use crate::api::extract::{ApiJson, Caller};
use crate::api::Problem;
use crate::provider::definition::ProviderDef;
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::time::Duration;
use syncguard_core::role::Role;
use utoipa::ToSchema;

/// How one provider's link flow is called.
#[derive(Debug)]
pub struct LinkFlow {
    pub token_path: &'static str,
    pub exchange_path: &'static str,
    /// Header carrying the account key, and the credential field it is read from.
    pub key_header: &'static str,
    pub key_field: &'static str,
    /// `(answer field, credential field)` pairs the exchange yields.
    pub yields: &'static [(&'static str, &'static str)],
}

const TRACKSTAR: LinkFlow = LinkFlow {
    token_path: "/link/token",
    exchange_path: "/link/exchange",
    key_header: "x-trackstar-api-key",
    key_field: "api_key",
    yields: &[("access_token", "access_token")],
};

/// The link flow of `provider`, if it has one.
pub fn flow_for(provider: &str) -> Option<&'static LinkFlow> {
    match provider {
        "trackstar" => Some(&TRACKSTAR),
        _ => None,
    }
}

fn no_flow(field: &str, provider: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "field `{field}`: provider `{provider}` has no link flow"
    ))
}

/// The base URL a connection with `config` would call.
fn base_url(def: &ProviderDef, config: &Value) -> ApiResult<String> {
    config
        .get("base_url")
        .and_then(Value::as_str)
        .or(def.base_url.as_deref())
        .map(|u| u.trim_end_matches('/').to_string())
        .ok_or_else(|| no_flow("provider", &def.name))
}

/// POSTs `body` to the flow's `path` with the account key; the answer's JSON on a 2xx.
async fn call(
    app: &Services,
    def: &ProviderDef,
    flow: &LinkFlow,
    config: &Value,
    account: &Value,
    path: &str,
    body: Value,
) -> ApiResult<Value> {
    let key = account
        .get(flow.key_field)
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unprocessable(format!(
                "field `credentials.{}`: the link flow of `{}` needs the account key",
                flow.key_field, def.name
            ))
        })?;
    let base = base_url(def, config)?;
    let url = app
        .providers
        .egress()
        .check_base_url(&base)
        .and_then(|_| reqwest::Url::parse(&format!("{base}{path}")).map_err(|e| e.to_string()))
        .map_err(|e| ApiError::unprocessable(format!("field `config.base_url`: {e}")))?;
    let bad_gateway = |detail: String| ApiError::new(ErrorCode::ProviderError, detail);
    let resp = app
        .providers
        .http()
        .post(url)
        .header(flow.key_header, key)
        .timeout(Duration::from_secs(def.timeout_s))
        .json(&body)
        .send()
        .await
        .map_err(|e| {
            if let Some(refused) = crate::egress::refused_in(&e) {
                return ApiError::unprocessable(format!("field `config.base_url`: {refused}"));
            }
            let what = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            bad_gateway(format!(
                "the link flow of `{}` did not answer: {what}",
                def.name
            ))
        })?;
    let status = resp.status();
    let body = crate::egress::read_limited(resp, def.response_limit())
        .await
        .map_err(|e| {
            bad_gateway(format!(
                "the link flow of `{}` answered unreadably: {e}",
                def.name
            ))
        })?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_client_error() {
        // The provider's words, short and on one line: never its whole answer.
        let why = answer
            .get("message")
            .or(answer.get("error"))
            .and_then(Value::as_str)
            .map(|w| crate::provider::excerpt(w.as_bytes(), 120))
            .unwrap_or_else(|| "refused".into());
        return Err(ApiError::unprocessable(format!(
            "the link flow of `{}` refused: {why} ({status})",
            def.name
        )));
    }
    if !status.is_success() {
        return Err(bad_gateway(format!(
            "the link flow of `{}` answered {status}",
            def.name
        )));
    }
    Ok(answer)
}

/// Exchanges `auth_code` for the credential fields the flow yields.
pub async fn exchange(
    app: &Services,
    def: &ProviderDef,
    config: &Value,
    account: &Value,
    auth_code: &str,
) -> ApiResult<Map<String, Value>> {
    let flow = flow_for(&def.name).ok_or_else(|| no_flow("auth_code", &def.name))?;
    if auth_code.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "field `auth_code`: must not be empty",
        ));
    }
    let answer = call(
        app,
        def,
        flow,
        config,
        account,
        flow.exchange_path,
        json!({ "auth_code": auth_code }),
    )
    .await
    .map_err(|e| match e.code {
        ErrorCode::Unprocessable if !e.detail.starts_with("field") => {
            ApiError::unprocessable(format!("field `auth_code`: {}", e.detail))
        }
        _ => e,
    })?;
    let mut out = Map::new();
    for (from, to) in flow.yields {
        let value = answer.get(*from).filter(|v| v.is_string()).ok_or_else(|| {
            ApiError::new(
                ErrorCode::ProviderError,
                format!("the exchange answer of `{}` has no `{from}`", def.name),
            )
        })?;
        out.insert((*to).to_string(), value.clone());
    }
    Ok(out)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLinkToken {
    /// Required for platform keys.
    pub tenant_id: Option<String>,
    pub provider: String,
    /// The account-level credentials the flow needs (Trackstar: `api_key`). Not stored.
    #[schema(value_type = Object)]
    pub credentials: Value,
    /// `base_url` to point the flow at another host (a sandbox, the mock).
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkToken {
    pub provider: String,
    /// Open the provider's widget with it; it hands back the `auth_code` for
    /// `POST /v1/connections`.
    pub link_token: String,
}

#[utoipa::path(post, path = "/v1/connections/link-token", tag = "connections", request_body = CreateLinkToken,
    responses((status = 201, body = LinkToken), (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 502, body = Problem, description = "the provider did not answer as expected")))]
pub async fn create_link_token(
    State(app): State<Services>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateLinkToken>,
) -> ApiResult<(StatusCode, Json<LinkToken>)> {
    caller.require(Role::Admin)?;
    if caller.visible().is_some() {
        // The link flow ends in a new connection, which such a key cannot create.
        return Err(ApiError::forbidden(
            "a key limited to some connections cannot create connections",
        ));
    }
    let tenant_id = match (caller.tenant_id(), &body.tenant_id) {
        (Some(own), None) => own.to_string(),
        (Some(own), Some(asked)) if asked == own => own.to_string(),
        (Some(_), Some(_)) => return Err(ApiError::not_found("tenant not found")),
        (None, None) => {
            return Err(ApiError::unprocessable(
                "field `tenant_id`: required with a platform key",
            ))
        }
        (None, Some(asked)) => {
            app.store
                .get_tenant(&syncguard_store::Scope::All, asked)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant not found"))?;
            asked.clone()
        }
    };
    let def = app.providers.get(&body.provider).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "field `provider`: unknown provider `{}`",
            body.provider
        ))
    })?;
    let flow = flow_for(&def.name).ok_or_else(|| no_flow("provider", &def.name))?;
    let config = body.config.unwrap_or_else(|| json!({}));
    app.providers
        .check_connection(&def.name, &config)
        .map_err(ApiError::unprocessable)?;
    let answer = call(
        &app,
        def,
        flow,
        &config,
        &body.credentials,
        flow.token_path,
        json!({}),
    )
    .await?;
    let link_token = answer
        .get("link_token")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::new(ErrorCode::ProviderError, "the answer has no `link_token`"))?
        .to_string();
    Audit::by(&caller, "connection.link_token")
        .tenant(Some(&tenant_id))
        .target(&def.name)
        .params(json!({ "provider": def.name }))
        .record(&app)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LinkToken {
            provider: def.name.clone(),
            link_token,
        }),
    ))
}
