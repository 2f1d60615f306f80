//! Health: the cached snapshot behind `/v1/health` (SPEC §3.7). Being built.

use crate::app::App;
use crate::config::Config;
use utoipa_axum::router::OpenApiRouter;

/// The health snapshot and what refreshes it.
pub struct HealthState {}

impl HealthState {
    pub fn new(_config: &Config, _registry: &prometheus::Registry) -> anyhow::Result<HealthState> {
        Ok(HealthState {})
    }
}

/// Routes of health, merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Background tasks of health (the snapshotter), started with the server; stops on `cancel`.
pub fn spawn(_app: &App, _cancel: tokio_util::sync::CancellationToken) {}
