//! `GET /v1/providers`, `GET /v1/circuits` and `POST /v1/circuits/{key}/force` (SPEC §4.1,
//! Appendix A "circuit").

use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{request_id, ApiJson, ApiQuery, Caller, ListParams};
use crate::api::views::List;
use crate::api::Problem;
use crate::clock::rfc3339;
use crate::provider::circuit::Actor;
use crate::provider::definition::ProviderDef;
use crate::services::Services;
use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use syncguard_core::breaker::{ForceMode, Forced};
use syncguard_core::role::Role;
use syncguard_store::provider_state::{CircuitFilter, CircuitRow};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(super) fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(list_circuits))
        .routes(routes!(force_circuit))
}

/// A provider as listed: what it offers, never anything secret (definitions hold none).
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// `api` (syncguard calls it) or `webhook` (webhook-only).
    pub kind: &'static str,
    pub base_url: Option<String>,
    /// `api_key`, `bearer` or `oauth2`.
    pub auth: Option<&'static str>,
    /// `next_token`, `cursor`, `offset` or `link`.
    pub pagination: Option<&'static str>,
    #[schema(value_type = Option<Object>)]
    pub rate_limit: Option<serde_json::Value>,
    pub resources: Vec<String>,
    pub writes: Vec<String>,
    pub webhook: Option<WebhookView>,
    /// `built-in` or `file` (from `provider_files`).
    pub source: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub scheme: String,
    /// Event types (or `prefix*` families) with a rule.
    pub events: Vec<String>,
}

fn provider_view(def: &ProviderDef, source: &'static str) -> ProviderView {
    ProviderView {
        name: def.name.clone(),
        display_name: def.display_name.clone(),
        description: def.description.clone(),
        kind: if def.has_api() { "api" } else { "webhook" },
        base_url: def.base_url.clone(),
        auth: def.auth.as_ref().map(|a| a.kind()),
        pagination: def.pagination.as_ref().map(|p| p.style.as_str()),
        rate_limit: def
            .rate_limit
            .map(|r| serde_json::to_value(r).expect("serializes")),
        resources: def.resources.keys().cloned().collect(),
        writes: def.writes.keys().cloned().collect(),
        webhook: def.webhook.as_ref().map(|w| WebhookView {
            scheme: w.scheme.clone(),
            events: w.events.iter().map(|e| e.event.clone()).collect(),
        }),
        source,
    }
}

#[utoipa::path(get, path = "/v1/providers", tag = "providers",
    responses((status = 200, body = List<ProviderView>), (status = 401, body = Problem)))]
pub async fn list_providers(
    State(app): State<Services>,
    _caller: Caller,
) -> Json<List<ProviderView>> {
    let data = app
        .providers
        .all()
        .map(|(def, source)| provider_view(def, source))
        .collect();
    Json(List {
        data,
        next_cursor: None,
    })
}

/// A circuit breaker (SPEC Appendix A).
#[derive(Debug, Serialize, ToSchema)]
pub struct CircuitItem {
    /// `{connection_id}:{provider}`.
    pub key: String,
    pub connection_id: String,
    pub provider: String,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// `open` or `closed` while an operator's override is in force, else null.
    pub forced: Option<String>,
    /// Failures in the breaker's rolling window.
    pub failures: u32,
    pub opened_at: Option<String>,
    pub updated_at: Option<String>,
}

impl CircuitItem {
    /// The API shape of a stored (or fresh) breaker; failures count in the connection's own
    /// window.
    fn from_row(app: &Services, r: CircuitRow) -> CircuitItem {
        let cfg = app.providers.breaker_of(&r.provider, &r.connection_config);
        let view = r.machine.view(&cfg, app.clock.now_ms());
        CircuitItem {
            key: r.key,
            connection_id: r.connection_id,
            provider: r.provider,
            state: view.state.as_str().into(),
            forced: view.forced.map(|f| match f {
                Forced::Open => "open".into(),
                Forced::Closed => "closed".into(),
            }),
            failures: view.failures,
            opened_at: view.opened_at.map(rfc3339),
            updated_at: r.updated_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CircuitQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub connection_id: Option<String>,
    pub provider: Option<String>,
    /// `closed`, `open` or `half_open`.
    pub state: Option<String>,
}

#[utoipa::path(get, path = "/v1/circuits", tag = "circuits", params(CircuitQuery),
    responses((status = 200, body = List<CircuitItem>), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn list_circuits(
    State(app): State<Services>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CircuitQuery>,
) -> ApiResult<Json<List<CircuitItem>>> {
    let page = ListParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    }
    .page()?;
    if let Some(state) = &q.state {
        state
            .parse::<syncguard_core::breaker::CircuitState>()
            .map_err(|e| ApiError::unprocessable(format!("field `state`: {e}")))?;
    }
    let filter = CircuitFilter {
        connection_id: q.connection_id,
        provider: q.provider,
        state: q.state,
    };
    let rows = app
        .store
        .list_circuits(&caller.scope(), caller.visible(), &filter, &page)
        .await?;
    Ok(Json(List::from_page(rows, |r| {
        CircuitItem::from_row(&app, r)
    })))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForceBody {
    /// `open`, `closed`, or `auto` to hand control back to the breaker.
    #[schema(value_type = String)]
    pub mode: ForceMode,
}

#[utoipa::path(post, path = "/v1/circuits/{key}/force", tag = "circuits", request_body = ForceBody,
    params(("key" = String, Path, description = "circuit key, `{connection_id}:{provider}`")),
    responses((status = 200, body = CircuitItem), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn force_circuit(
    State(app): State<Services>,
    caller: Caller,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<ForceBody>,
) -> ApiResult<Json<CircuitItem>> {
    let not_found = || ApiError::not_found(format!("circuit {key} not found"));
    let (connection_id, provider) = key.rsplit_once(':').ok_or_else(not_found)?;
    let connection = app
        .store
        .get_connection(&caller.scope(), caller.visible(), connection_id)
        .await?
        .filter(|c| c.provider == provider)
        .ok_or_else(not_found)?;
    caller.require(Role::Admin)?;
    let rid = request_id();
    let actor = Actor::Key {
        id: &caller.key.id,
        request_id: rid.as_deref(),
    };
    let (transition, machine) = app
        .providers
        .force_circuit(&app, &connection, key.clone(), body.mode, actor)
        .await?;
    if transition.is_none() {
        tracing::info!(circuit = %key, mode = %body.mode, "circuit already in the forced mode; nothing changed");
    }
    let row = CircuitRow {
        key,
        tenant_id: connection.tenant_id,
        connection_id: connection.id,
        provider: connection.provider,
        machine,
        connection_config: connection.config,
        updated_at: Some(app.clock.now_ms()),
    };
    Ok(Json(CircuitItem::from_row(&app, row)))
}
