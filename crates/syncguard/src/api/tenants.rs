//! Tenants and API keys.

use super::error::{ApiError, ApiResult};
use super::extract::{request_id, ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use super::views::{KeyView, List, TenantView};
use super::Problem;
use crate::app::App;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use syncguard_core::role::Role;
use syncguard_store::audit::NewAudit;
use syncguard_store::tenancy::NewApiKey;
use syncguard_store::Scope;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique, 1 to 100 characters.
    pub name: String,
}

/// Records an admin action in the audit log. A failure to audit fails the request: an
/// unaudited admin action must not happen silently.
pub async fn audit(
    app: &App,
    caller: &Caller,
    tenant_id: Option<&str>,
    action: &str,
    target: Option<&str>,
    params: serde_json::Value,
) -> ApiResult<()> {
    let rid = request_id();
    app.store
        .append_audit(
            NewAudit {
                tenant_id,
                actor: &caller.key.id,
                action,
                target,
                params,
                request_id: rid.as_deref(),
            },
            app.clock.now_ms(),
        )
        .await?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_tenant(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<TenantView>)> {
    caller.require(Role::Platform)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::unprocessable(
            "field `name`: must be 1 to 100 characters",
        ));
    }
    let t = app.store.create_tenant(name, app.clock.now_ms()).await?;
    audit(
        &app,
        &caller,
        Some(&t.id),
        "tenant.create",
        Some(&t.id),
        serde_json::json!({ "name": t.name }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(ListParams),
    responses((status = 200, body = List<TenantView>), (status = 403, body = Problem)))]
pub async fn list_tenants(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<List<TenantView>>> {
    caller.require(Role::Platform)?;
    let page = app.store.list_tenants(&Scope::All, &q.page()?).await?;
    Ok(Json(List::from_page(page, TenantView::from)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Required for platform keys creating tenant keys; tenant admins may omit it.
    pub tenant_id: Option<String>,
    /// admin, operator or viewer (platform keys may also create platform keys).
    pub role: String,
    pub name: String,
    /// Limit the key to these connections.
    pub connections: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = KeyView, description = "the key, shown this once"), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn create_key(
    State(app): State<App>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateKey>,
) -> ApiResult<(StatusCode, Json<KeyView>)> {
    caller.require(Role::Admin)?;
    let role: Role = body
        .role
        .parse()
        .map_err(|e: String| ApiError::unprocessable(format!("field `role`: {e}")))?;
    if role > caller.key.role {
        return Err(ApiError::forbidden(format!(
            "a {} key cannot create a {role} key",
            caller.key.role
        )));
    }
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::unprocessable(
            "field `name`: must be 1 to 100 characters",
        ));
    }
    let tenant_id = match (role, caller.tenant_id(), body.tenant_id) {
        (Role::Platform, _, Some(_)) => {
            return Err(ApiError::unprocessable(
                "field `tenant_id`: platform keys belong to no tenant",
            ))
        }
        (Role::Platform, _, None) => None,
        (_, Some(own), None) => Some(own.to_string()),
        (_, Some(own), Some(asked)) if asked == own => Some(asked),
        (_, Some(_), Some(_)) => return Err(ApiError::not_found("tenant not found")),
        (_, None, None) => {
            return Err(ApiError::unprocessable(
                "field `tenant_id`: required when a platform key creates a tenant key",
            ))
        }
        (_, None, Some(asked)) => {
            app.store
                .get_tenant(&Scope::All, &asked)
                .await?
                .ok_or_else(|| ApiError::not_found("tenant not found"))?;
            Some(asked)
        }
    };
    // A connection-limited key cannot mint a key that sees more than it does.
    let connections = match (caller.visible(), body.connections) {
        (None, asked) => asked,
        (Some(mine), None) => Some(mine.to_vec()),
        (Some(mine), Some(asked)) => {
            if let Some(c) = asked.iter().find(|c| !mine.contains(c)) {
                return Err(ApiError::not_found(format!("connection {c} not found")));
            }
            Some(asked)
        }
    };
    let clear = syncguard_core::ids::new_api_key(&mut rand::thread_rng());
    let key = app
        .store
        .create_api_key(
            NewApiKey {
                id: None,
                tenant_id: tenant_id.clone(),
                role,
                name: name.to_string(),
                connections,
            },
            &clear,
            app.clock.now_ms(),
        )
        .await?;
    audit(
        &app,
        &caller,
        tenant_id.as_deref(),
        "key.create",
        Some(&key.id),
        serde_json::json!({ "role": role, "name": key.name, "connections": key.connections }),
    )
    .await?;
    let mut view = KeyView::from(key);
    view.key = Some(clear);
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(ListParams),
    responses((status = 200, body = List<KeyView>), (status = 403, body = Problem)))]
pub async fn list_keys(
    State(app): State<App>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<List<KeyView>>> {
    caller.require(Role::Admin)?;
    let page = app.store.list_api_keys(&caller.scope(), &q.page()?).await?;
    Ok(Json(List::from_page(page, KeyView::from)))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_key(
    State(app): State<App>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<KeyView>> {
    caller.require(Role::Admin)?;
    let key = app
        .store
        .revoke_api_key(&caller.scope(), &id, app.clock.now_ms())
        .await
        .map_err(|e| match e {
            syncguard_store::StoreError::NotFound => ApiError::not_found("key not found"),
            other => other.into(),
        })?;
    // Effective on this node at once; other nodes' caches drop it within their TTL.
    app.api_keys.evict_id(&key.id);
    audit(
        &app,
        &caller,
        key.tenant_id.as_deref(),
        "key.revoke",
        Some(&key.id),
        serde_json::json!({}),
    )
    .await?;
    Ok(Json(key.into()))
}
