//! Tenants and API keys.
//!
//! A key sees, and may revoke, only keys no broader than itself (store `KeyBounds`): in its
//! tenant, of a role not above its own and, for a connection-scoped key, limited to a subset
//! of its connections. Any other key does not exist for it (404). It creates keys within the
//! same bounds (a broader role is 403, a connection outside its list 404).

use super::audit::Audit;
use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, ApiPath, ApiQuery, Caller, ListParams};
use super::views::{KeyView, List, TenantView};
use super::Problem;
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use syncguard_core::role::Role;
use syncguard_store::tenancy::{KeyBounds, NewApiKey};
use syncguard_store::Scope;
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique, 1 to 100 characters.
    pub name: String,
}

#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = TenantView), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn create_tenant(
    State(app): State<Services>,
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
    let audit = Audit::by(&caller, "tenant.create").params(serde_json::json!({ "name": name }));
    let t = app
        .store
        .create_tenant_audited(name, Some(audit.entry()), app.clock.now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(t.into())))
}

#[utoipa::path(get, path = "/v1/tenants", tag = "tenants", params(ListParams),
    responses((status = 200, body = List<TenantView>), (status = 403, body = Problem)))]
pub async fn list_tenants(
    State(app): State<Services>,
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
    State(app): State<Services>,
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
    let audit = Audit::by(&caller, "key.create")
        .tenant(tenant_id.as_deref())
        .params(serde_json::json!({ "role": role, "name": name, "connections": connections }));
    let key = app
        .store
        .create_api_key_audited(
            NewApiKey {
                id: None,
                tenant_id: tenant_id.clone(),
                role,
                name: name.to_string(),
                connections,
            },
            &clear,
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await?;
    let mut view = KeyView::from(key);
    view.key = Some(clear);
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(ListParams),
    responses((status = 200, body = List<KeyView>), (status = 403, body = Problem)))]
pub async fn list_keys(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Json<List<KeyView>>> {
    caller.require(Role::Admin)?;
    let page = app
        .store
        .list_api_keys_within(&caller.scope(), bounds(&caller), &q.page()?)
        .await?;
    Ok(Json(List::from_page(page, KeyView::from)))
}

#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "key id")),
    responses((status = 200, body = KeyView), (status = 403, body = Problem), (status = 404, body = Problem)))]
pub async fn revoke_key(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<KeyView>> {
    caller.require(Role::Admin)?;
    let audit = Audit::by(&caller, "key.revoke").target(&id);
    let key = app
        .store
        .revoke_api_key_audited(
            &caller.scope(),
            bounds(&caller),
            &id,
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await
        .map_err(|e| match e {
            syncguard_store::StoreError::NotFound => ApiError::not_found("key not found"),
            other => other.into(),
        })?;
    // Effective on this node at once; other nodes' caches drop it within their TTL.
    app.api_keys.evict_id(&key.id);
    Ok(Json(key.into()))
}

/// The keys `caller` may see: any for a platform key, else those no broader than it.
fn bounds(caller: &Caller) -> Option<KeyBounds<'_>> {
    (!caller.is_platform()).then(|| KeyBounds::of(&caller.key))
}
