//! Connections: create (with credentials and webhook secrets sealed at once), list, read.
//! No answer ever carries a secret.

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use super::tenants::audit;
use super::views::List;
use super::Problem;
use crate::app::App;
use crate::clock::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use syncguard_core::role::Role;
use syncguard_core::signature::WebhookAuth;
use syncguard_store::connections::{Connection, NewConnection};
use syncguard_store::Scope;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// Required for platform keys; tenant keys create in their own tenant.
    pub tenant_id: Option<String>,
    /// A provider name, e.g. `trackstar`.
    pub provider: String,
    /// Unique within the tenant, e.g. `brand_123`.
    pub name: String,
    /// Provider credentials; sealed at rest and never returned.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<serde_json::Value>,
    /// A link-flow code to exchange for credentials.
    pub auth_code: Option<String>,
    /// base_url, resources, sync_interval_s, backfill_days, reconcile_policy, webhook, circuit, rate_limit.
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub tenant_id: String,
    pub provider: String,
    pub name: String,
    pub status: String,
    /// Configuration without secrets; `webhook.secrets` is replaced by `webhook.secret_count`.
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
    pub has_credentials: bool,
    pub created_at: String,
    pub updated_at: String,
    pub last_webhook_at: Option<String>,
}

impl From<Connection> for ConnectionView {
    fn from(c: Connection) -> Self {
        ConnectionView {
            id: c.id,
            tenant_id: c.tenant_id,
            provider: c.provider,
            name: c.name,
            status: c.status,
            config: c.config,
            has_credentials: c.has_credentials,
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            last_webhook_at: c.last_webhook_at.map(rfc3339),
        }
    }
}

/// Splits the webhook secrets out of `config`, validating the webhook section; returns the
/// config to store (with a secret count instead) and the secrets to seal.
pub fn split_webhook_secrets(config: &mut serde_json::Value) -> ApiResult<Option<Vec<String>>> {
    let Some(webhook) = config.get_mut("webhook") else {
        return Ok(None);
    };
    WebhookAuth::from_config(webhook)
        .map_err(|e| ApiError::unprocessable(format!("field `config.{e}`")))?;
    let secrets: Vec<String> = webhook
        .get("secrets")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(obj) = webhook.as_object_mut() {
        obj.remove("secrets");
        obj.insert("secret_count".into(), serde_json::json!(secrets.len()));
    }
    Ok(Some(secrets))
}

#[utoipa::path(post, path = "/v1/connections", tag = "connections", request_body = CreateConnection,
    responses((status = 201, body = ConnectionView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_connection(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    caller.require(Role::Admin)?;
    let tenant_id = match (caller.tenant_id(), body.tenant_id) {
        (Some(own), None) => own.to_string(),
        (Some(own), Some(asked)) if asked == own => asked,
        (Some(_), Some(_)) => return Err(ApiError::not_found("tenant not found")),
        (None, None) => {
            return Err(ApiError::unprocessable(
                "field `tenant_id`: required with a platform key",
            ))
        }
        (None, Some(asked)) => {
            app.store
                .get_tenant(&Scope::All, &asked)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant not found"))?;
            asked
        }
    };
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    };
    if !valid_name(&body.provider) {
        return Err(ApiError::unprocessable(
            "field `provider`: unknown provider",
        ));
    }
    if !valid_name(&body.name) {
        return Err(ApiError::unprocessable(
            "field `name`: 1 to 100 characters of letters, digits, `_`, `-`, `.`",
        ));
    }
    let mut config = body.config.unwrap_or_else(|| serde_json::json!({}));
    if !config.is_object() {
        return Err(ApiError::unprocessable("field `config`: must be an object"));
    }
    let webhook_secrets = split_webhook_secrets(&mut config)?;
    if body.credentials.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(ApiError::unprocessable(
            "field `credentials`: must be an object",
        ));
    }
    if body.auth_code.is_some() {
        return Err(ApiError::unprocessable(
            "field `auth_code`: link flows are not available for this provider yet",
        ));
    }
    let id = syncguard_core::ids::new_id("con");
    let mut rng = rand::rngs::OsRng;
    let credentials = body
        .credentials
        .map(|c| app.sealer.seal(c.to_string().as_bytes(), &id, &mut rng));
    let webhook_secrets = webhook_secrets.map(|s| {
        app.sealer.seal(
            serde_json::to_string(&s)
                .expect("strings serialize")
                .as_bytes(),
            &id,
            &mut rng,
        )
    });
    let status = if credentials.is_some() || webhook_secrets.is_some() {
        "active"
    } else {
        "pending"
    };
    let conn = app
        .store
        .create_connection(
            NewConnection {
                id: id.clone(),
                tenant_id: tenant_id.clone(),
                provider: body.provider,
                name: body.name,
                status: status.into(),
                config,
                credentials,
                webhook_secrets,
            },
            app.clock.now_ms(),
        )
        .await?;
    audit(
        &app,
        &caller,
        Some(&tenant_id),
        "connection.create",
        Some(&id),
        serde_json::json!({ "provider": conn.provider, "name": conn.name }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(conn.into())))
}

#[utoipa::path(get, path = "/v1/connections", tag = "connections", params(ListParams),
    responses((status = 200, body = List<ConnectionView>)))]
pub async fn list_connections(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<List<ConnectionView>>> {
    let page = app
        .store
        .list_connections(&caller.scope(), caller.visible(), &q.page()?)
        .await?;
    Ok(Json(List::from_page(page, ConnectionView::from)))
}

#[utoipa::path(get, path = "/v1/connections/{id}", tag = "connections", params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), (status = 404, body = Problem)))]
pub async fn get_connection(
    State(app): State<App>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ConnectionView>> {
    let c = app
        .store
        .get_connection(&caller.scope(), caller.visible(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))?;
    Ok(Json(c.into()))
}
