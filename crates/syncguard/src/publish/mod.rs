//! Publish path, snapshots and diffs, reconciliation and drift, integrity audit (SPEC §3.5).
//! Being built.

use crate::app::App;
use crate::config::Config;
use crate::engine::handler::Handlers;
use crate::engine::Schedule;
use utoipa_axum::router::OpenApiRouter;

/// Everything the publish path keeps for the life of the node.
pub struct PublishState {}

impl PublishState {
    pub fn new(_config: &Config, _registry: &prometheus::Registry) -> anyhow::Result<PublishState> {
        Ok(PublishState {})
    }
}

/// Routes of the publish path, merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Job handlers of the publish path.
pub fn register(_handlers: &mut Handlers) {}

/// Periodic schedules of the publish path.
pub fn schedules() -> Vec<Schedule> {
    Vec::new()
}
