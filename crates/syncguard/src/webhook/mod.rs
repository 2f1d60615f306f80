//! The inbound webhook gateway (SPEC §3.2). Being built.

use crate::app::App;
use crate::config::Config;
use crate::engine::handler::Handlers;
use utoipa_axum::router::OpenApiRouter;

/// Everything the gateway keeps for the life of the node (writers, metrics).
pub struct WebhookState {}

impl WebhookState {
    pub fn new(_config: &Config, _registry: &prometheus::Registry) -> anyhow::Result<WebhookState> {
        Ok(WebhookState {})
    }
}

/// Routes of the gateway and its events API, merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Job handlers of the gateway.
pub fn register(_handlers: &mut Handlers) {}
