//! The connection lifecycle (SPEC §1 "connection", §4.1): create (with credentials or a
//! link-flow `auth_code`), `PATCH` pause / resume / config / credentials, and `DELETE`
//! disconnect. Status goes `pending → active ⇄ paused`, `error`, `disconnected`; every change
//! is recorded in the status history (by the store) and audited. No answer carries a secret.
//!
//! Every change is validated whole before anything is written, then written with its audit
//! entries in one store transaction: a refused `PATCH` changes nothing. A connection-scoped
//! key cannot create connections (403): a new connection would lie outside its list.
//!
//! The create/list/get handlers in [`super`] use the types and [`create`] defined here.

use crate::api::audit::Audit;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiJson, ApiPath, Caller};
use crate::api::link;
use crate::api::Problem;
use crate::clock::rfc3339;
use crate::provider::definition::ProviderDef;
use crate::services::sync::plan::{missing_credentials, SyncSettings};
use crate::services::sync::{start_syncs, syncs, Reason};
use crate::services::Services;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use syncguard_core::connection::ConnectionStatus;
use syncguard_core::role::Role;
use syncguard_core::signature::WebhookAuth;
use syncguard_store::connections::{Connection, ConnectionUpdate, NewConnection, StatusChange};
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
    /// Provider credentials; sealed at rest and never returned. With `auth_code`, the
    /// account-level part (Trackstar: `api_key`); the exchange adds the rest.
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
    /// A link-flow code (from the provider's widget, opened with `POST
    /// /v1/connections/link-token`) to exchange for the connection's credentials.
    pub auth_code: Option<String>,
    /// base_url, resources, sync_interval_s, backfill_days, sync_overlap_s, reconcile_policy,
    /// webhook, circuit, rate_limit.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub tenant_id: String,
    pub provider: String,
    pub name: String,
    /// pending, active, paused, error, disconnected
    pub status: String,
    /// Configuration without secrets; `webhook.secrets` is replaced by `webhook.secret_count`.
    #[schema(value_type = Object)]
    pub config: Value,
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
///
/// `allow_unsigned: true` (local development only) may stand without secrets; it is refused
/// in production and announced loudly everywhere else.
pub fn split_webhook_secrets(
    config: &mut Value,
    production: bool,
) -> ApiResult<Option<Vec<String>>> {
    let Some(webhook) = config.get_mut("webhook") else {
        return Ok(None);
    };
    let unsigned = match webhook.get("allow_unsigned") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::unprocessable(
                "field `config.webhook.allow_unsigned`: must be a boolean",
            ))
        }
    };
    if unsigned && production {
        return Err(ApiError::unprocessable(
            "field `config.webhook.allow_unsigned`: refused in production; configure a secret",
        ));
    }
    let mut checked = webhook.clone();
    if let Some(obj) = checked.as_object_mut() {
        obj.remove("allow_unsigned");
    }
    let has_secrets = checked
        .get("secrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if has_secrets || !unsigned {
        WebhookAuth::from_config(&checked)
            .map_err(|e| ApiError::unprocessable(format!("field `config.webhook.{e}`")))?;
    }
    if unsigned {
        tracing::warn!("a connection now accepts UNSIGNED webhooks (allow_unsigned): for local development only");
    }
    let secrets: Vec<String> = webhook
        .get("secrets")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if let Some(obj) = webhook.as_object_mut() {
        obj.remove("secrets");
        obj.insert("secret_count".into(), json!(secrets.len()));
    }
    Ok(Some(secrets))
}

/// Checks a connection's config against its provider: fields the provider layer knows, and
/// the sync settings when the provider has an API.
fn check_config(app: &Services, provider: &str, config: &Value) -> ApiResult<()> {
    if !config.is_object() {
        return Err(ApiError::unprocessable("field `config`: must be an object"));
    }
    app.providers
        .check_connection(provider, config)
        .map_err(ApiError::unprocessable)?;
    let def = app.providers.get(provider).expect("checked above");
    if def.has_api() {
        SyncSettings::from_config(config, def).map_err(ApiError::unprocessable)?;
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// Seals a JSON value for `connection_id`.
fn seal(app: &Services, connection_id: &str, value: &Value) -> Vec<u8> {
    app.sealer.seal(
        value.to_string().as_bytes(),
        connection_id,
        &mut rand::rngs::OsRng,
    )
}

/// The status a connection starts in: active when it can do its work (complete credentials
/// for an API provider; credentials or webhook secrets for a webhook-only one), else pending.
fn initial_status(
    def: &ProviderDef,
    credentials: Option<&Value>,
    has_secrets: bool,
) -> ConnectionStatus {
    let ready = match credentials {
        Some(c) if def.has_api() => missing_credentials(def, c).is_empty(),
        Some(_) => true,
        None => has_secrets,
    };
    if ready {
        ConnectionStatus::Active
    } else {
        ConnectionStatus::Pending
    }
}

/// `POST /v1/connections`: validates, exchanges a link-flow code if given, seals secrets,
/// stores, audits, and starts the backfill of a connection that can sync.
pub async fn create(
    app: &Services,
    caller: &Caller,
    body: CreateConnection,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    caller.require(Role::Admin)?;
    if caller.visible().is_some() {
        return Err(ApiError::forbidden(
            "a key limited to some connections cannot create connections",
        ));
    }
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
    if !valid_name(&body.name) {
        return Err(ApiError::unprocessable(
            "field `name`: 1 to 100 characters of letters, digits, `_`, `-`, `.`",
        ));
    }
    let def = app.providers.get(&body.provider).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "field `provider`: unknown provider `{}`",
            body.provider
        ))
    })?;
    let mut config = body.config.unwrap_or_else(|| json!({}));
    check_config(app, &body.provider, &config)?;
    let webhook_secrets = split_webhook_secrets(
        &mut config,
        app.config.environment == crate::config::Environment::Production,
    )?;
    if body.credentials.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(ApiError::unprocessable(
            "field `credentials`: must be an object",
        ));
    }
    let mut credentials = body.credentials;
    if let Some(code) = &body.auth_code {
        let account = credentials.clone().unwrap_or_else(|| json!({}));
        let linked = link::exchange(app, def, &config, &account, code).await?;
        let mut merged = account;
        for (k, v) in linked {
            merged[k] = v;
        }
        credentials = Some(merged);
    }
    let id = crate::clock::new_id("con");
    let status = initial_status(def, credentials.as_ref(), webhook_secrets.is_some());
    let via = if body.auth_code.is_some() {
        "auth_code"
    } else {
        "credentials"
    };
    let audit = Audit::by(caller, "connection.create")
        .tenant(Some(&tenant_id))
        .connection(Some(&id))
        .target(&id)
        .params(
            json!({ "provider": body.provider, "name": body.name, "via": via, "status": status }),
        );
    let conn = app
        .store
        .create_connection_audited(
            NewConnection {
                id: id.clone(),
                tenant_id: tenant_id.clone(),
                provider: body.provider.clone(),
                name: body.name,
                status: status.into(),
                config,
                credentials: credentials.as_ref().map(|c| seal(app, &id, c)),
                webhook_secrets: webhook_secrets.map(|s| seal(app, &id, &json!(s))),
            },
            Some(audit.entry()),
            app.clock.now_ms(),
        )
        .await?;
    if syncs(app, &conn) {
        // The backfill. Should this fail, the next scheduler tick enqueues it all the same.
        if let Err(e) = start_syncs(app, &conn, &[], Reason::Connect, false).await {
            tracing::warn!(connection_id = %conn.id, error = %e, "enqueueing the backfill failed; the scheduler will");
        }
    }
    Ok((StatusCode::CREATED, Json(conn.into())))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnection {
    /// `paused` stops scheduling (a running sync stops at its next page and resumes there);
    /// `active` resumes and syncs at once.
    pub status: Option<String>,
    /// Top-level keys replace the stored ones and `null` removes one; a `webhook` section is
    /// replaced whole and must carry its `secrets`.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// New credentials, replacing the stored ones (sealed at rest, never returned).
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Value>,
}

/// A visible connection, or 404; then 403 unless the caller is an admin.
pub(super) async fn visible_for_admin(
    app: &Services,
    caller: &Caller,
    id: &str,
) -> ApiResult<Connection> {
    let conn = app
        .store
        .get_connection(&caller.scope(), caller.visible(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("connection {id} not found")))?;
    caller.require(Role::Admin)?;
    Ok(conn)
}

/// The credentials `conn` will have: `new` ones, or the stored ones opened.
async fn credentials_after(
    app: &Services,
    conn: &Connection,
    new: Option<&Value>,
) -> ApiResult<Option<Value>> {
    if let Some(v) = new {
        return Ok(Some(v.clone()));
    }
    let sealed = app
        .store
        .connection_secrets(&conn.id)
        .await?
        .and_then(|s| s.credentials);
    let Some(bytes) = sealed else {
        return Ok(None);
    };
    let plain = app
        .sealer
        .open(&bytes, &conn.id)
        .map_err(|e| ApiError::internal(format!("stored credentials cannot be opened: {e}")))?;
    Ok(Some(serde_json::from_slice(&plain).unwrap_or(Value::Null)))
}

#[utoipa::path(patch, path = "/v1/connections/{id}", tag = "connections", request_body = UpdateConnection,
    params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "the connection is disconnected"), (status = 422, body = Problem)))]
pub async fn update_connection(
    State(app): State<Services>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateConnection>,
) -> ApiResult<Json<ConnectionView>> {
    let conn = visible_for_admin(&app, &caller, &id).await?;
    if conn.status == ConnectionStatus::Disconnected {
        return Err(ApiError::conflict(
            "the connection is disconnected; create a new one",
        ));
    }
    let def = app.providers.get(&conn.provider).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "connection names unknown provider `{}`",
            conn.provider
        ))
    })?;
    // First everything is checked; only then is anything written.
    let mut update = ConnectionUpdate::default();
    let mut changed = Vec::new();
    if let Some(patch) = &body.config {
        let Some(patch) = patch.as_object() else {
            return Err(ApiError::unprocessable("field `config`: must be an object"));
        };
        let mut config = conn.config.clone();
        for (key, value) in patch {
            let obj = config.as_object_mut().expect("stored config is an object");
            if value.is_null() {
                obj.remove(key);
            } else {
                obj.insert(key.clone(), value.clone());
            }
        }
        check_config(&app, &conn.provider, &config)?;
        if patch.contains_key("webhook") {
            let secrets = split_webhook_secrets(
                &mut config,
                app.config.environment == crate::config::Environment::Production,
            )?;
            update.webhook_secrets = Some(secrets.map(|s| seal(&app, &id, &json!(s))));
        }
        update.config = Some(config);
        changed.push("config");
    }
    if let Some(creds) = &body.credentials {
        if !creds.is_object() {
            return Err(ApiError::unprocessable(
                "field `credentials`: must be an object",
            ));
        }
        changed.push("credentials");
    }
    // New credentials revive a connection that waited for them or whose old ones were refused.
    let revivable =
        conn.status == ConnectionStatus::Pending || conn.status == ConnectionStatus::Error;
    let wanted = match body.status.as_deref().map(str::parse) {
        None if body.credentials.is_some() && revivable => Some(ConnectionStatus::Active),
        None => None,
        Some(Ok(s @ (ConnectionStatus::Active | ConnectionStatus::Paused))) => Some(s),
        Some(_) => {
            return Err(ApiError::unprocessable(format!(
            "field `status`: `{}` cannot be set; use `active` or `paused` (disconnect with DELETE)",
            body.status.as_deref().unwrap_or_default()
        )))
        }
    };
    let to = wanted.filter(|to| conn.status != *to);
    if to == Some(ConnectionStatus::Active) && def.has_api() {
        // Without credentials an API provider's connection still receives webhooks; with
        // incomplete ones it would only fail, so it is not activated.
        if let Some(creds) = credentials_after(&app, &conn, body.credentials.as_ref()).await? {
            let missing = missing_credentials(def, &creds);
            if !missing.is_empty() {
                return Err(ApiError::unprocessable(format!(
                    "field `credentials`: cannot activate, the credentials lack {}",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    update.credentials = body.credentials.as_ref().map(|c| seal(&app, &id, c));
    let about = |action| {
        Audit::by(&caller, action)
            .tenant(Some(&conn.tenant_id))
            .connection(Some(&id))
            .target(&id)
    };
    let update_audit = about("connection.update").params(json!({ "changed": changed }));
    let action = if to == Some(ConnectionStatus::Paused) {
        "connection.pause"
    } else {
        "connection.resume"
    };
    let status_audit = about(action);
    let reason = format!("{action} by key {}", caller.key.id);
    if !changed.is_empty() {
        update.audit = Some(update_audit.entry());
    }
    update.status = to.map(|to| StatusChange {
        to: to.as_str(),
        reason: &reason,
        audit: Some(status_audit.entry()),
    });
    let from = app
        .store
        .update_connection(&id, update, app.clock.now_ms())
        .await?;
    if body.config.is_some() {
        app.webhooks.invalidate(&id);
    }
    if let Some(to) = to.filter(|to| from != *to) {
        tracing::info!(connection_id = %id, from = %from, to = to.as_str(), "connection status changed");
    }
    let after = app
        .store
        .get_connection(&Scope::All, None, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("connection not found"))?;
    if after.status == ConnectionStatus::Active
        && from != ConnectionStatus::Active
        && syncs(&app, &after)
    {
        start_syncs(&app, &after, &[], Reason::Resume, false).await?;
    }
    Ok(Json(after.into()))
}
