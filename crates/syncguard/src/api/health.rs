//! `GET /v1/health` and `GET /v1/connections/{id}/health`: views of the in-memory snapshot,
//! scoped like every other read (a tenant key sees its tenant, a connection-limited key its
//! connections, a platform key everything). Neither touches the store once the caller's key
//! is cached (see the module docs of `health`).

use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{ApiPath, Caller};
use crate::api::Problem;
use crate::clock::rfc3339;
use crate::services::health::snapshot::{ConnectionHealth, QueueCounts, Snapshot};
use crate::services::health::status::Status;
use crate::services::key_cache::Freshness;
use crate::services::Services;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::Json;
use serde::Serialize;
use syncguard_store::Scope;
use utoipa::ToSchema;

/// The caller of a health route: authenticated like any read (the key cache first), and
/// while the store is unreachable by any key this node verified before, however long ago
/// (see `services::key_cache`), so health keeps answering through an outage.
pub struct HealthCaller(pub Caller);

impl FromRequestParts<Services> for HealthCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Services,
    ) -> Result<HealthCaller, ApiError> {
        Caller::authenticate(parts, app, Freshness::Any)
            .await
            .map(HealthCaller)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Aggregate {
    pub total: usize,
    pub healthy: usize,
    pub degraded: usize,
    pub unhealthy: usize,
    pub queue: QueueCounts,
}

/// The pinned shape of SPEC §3.7, extended with `stale` and `store`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HealthView {
    /// When the snapshot was built (it is rebuilt every 5 s).
    pub generated_at: String,
    pub aggregate: Aggregate,
    pub connections: Vec<ConnectionHealth>,
    /// The snapshot could not be rebuilt lately (store unreachable, or refreshes failing):
    /// the figures are as of `generated_at`, not now.
    pub stale: bool,
    pub store: StoreView,
}

/// The store as this node sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StoreView {
    pub reachable: bool,
    /// Since when it has been unreachable (RFC 3339); null while reachable.
    pub since: Option<String>,
}

/// The part of `snap` that `scope` and `visible` may see.
pub fn view(snap: &Snapshot, scope: &Scope, visible: Option<&[String]>) -> HealthView {
    let sees = |tenant: Option<&str>, conn: Option<&str>| {
        let tenant_ok = match scope.clone() {
            Scope::All => true,
            Scope::Tenant(t) => tenant == Some(t.as_str()),
            Scope::Nothing => false,
        };
        let conn_ok = match visible {
            None => true,
            Some(list) => conn.is_some_and(|c| list.iter().any(|v| v == c)),
        };
        tenant_ok && conn_ok
    };
    let connections: Vec<ConnectionHealth> = snap
        .connections
        .iter()
        .filter(|c| sees(Some(&c.tenant_id), Some(&c.id)))
        .cloned()
        .collect();
    let queue = if *scope == Scope::All && visible.is_none() {
        snap.queue
    } else {
        let mut q = QueueCounts::default();
        for d in snap
            .depths
            .iter()
            .filter(|d| sees(d.tenant_id.as_deref(), d.connection_id.as_deref()))
        {
            q.add(d.state, d.count);
        }
        q
    };
    let count = |s| connections.iter().filter(|c| c.status == s).count();
    HealthView {
        generated_at: rfc3339(snap.generated_at),
        aggregate: Aggregate {
            total: connections.len(),
            healthy: count(Status::Healthy),
            degraded: count(Status::Degraded),
            unhealthy: count(Status::Unhealthy),
            queue,
        },
        connections,
        stale: false,
        store: StoreView {
            reachable: true,
            since: None,
        },
    }
}

fn current(app: &Services) -> ApiResult<std::sync::Arc<Snapshot>> {
    app.health.snapshot().ok_or_else(|| {
        ApiError::unavailable("the first health snapshot is being built; retry in a few seconds")
    })
}

#[utoipa::path(get, path = "/v1/health", tag = "health",
    responses((status = 200, body = HealthView), (status = 401, body = Problem),
        (status = 503, body = Problem, description = "no snapshot yet (just started)")))]
pub async fn health(
    State(app): State<Services>,
    HealthCaller(caller): HealthCaller,
) -> ApiResult<Json<HealthView>> {
    let snap = current(&app)?;
    let mut view = view(&snap, &caller.scope(), caller.visible());
    let state = app.store.reachability();
    let age = app.clock.now_ms() - snap.generated_at;
    view.stale =
        !state.is_up() || age > 2 * crate::services::health::REFRESH_INTERVAL.as_millis() as i64;
    view.store = StoreView {
        reachable: state.is_up(),
        since: state.down_since().map(rfc3339),
    };
    Ok(Json(view))
}

#[utoipa::path(get, path = "/v1/connections/{id}/health", tag = "health",
    params(("id" = String, Path, description = "connection id")),
    responses((status = 200, body = ConnectionHealth), (status = 404, body = Problem, description = "not visible, or not in the snapshot yet (rebuilt every 5 s)")))]
pub async fn connection_health(
    State(app): State<Services>,
    HealthCaller(caller): HealthCaller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ConnectionHealth>> {
    let snap = current(&app)?;
    let mine = view(&snap, &caller.scope(), caller.visible());
    mine.connections
        .into_iter()
        .find(|c| c.id == id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!("connection {id} not found in the health snapshot"))
        })
}
