//! Sync (pull): backfill, incremental sync with checkpoints, manual syncs (SPEC §3.4). Being built.

use crate::app::App;
use crate::config::Config;
use crate::engine::handler::Handlers;
use crate::engine::Schedule;
use utoipa_axum::router::OpenApiRouter;

/// Everything the sync engine keeps for the life of the node.
pub struct SyncState {}

impl SyncState {
    pub fn new(_config: &Config, _registry: &prometheus::Registry) -> anyhow::Result<SyncState> {
        Ok(SyncState {})
    }
}

/// Routes of the sync engine, merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Job handlers of the sync engine.
pub fn register(_handlers: &mut Handlers) {}

/// Periodic schedules of the sync engine.
pub fn schedules() -> Vec<Schedule> {
    Vec::new()
}
