//! The inbound webhook gateway (SPEC §3.2). Being built.

use crate::app::App;
use crate::engine::handler::Handlers;
use utoipa_axum::router::OpenApiRouter;

/// Routes of the gateway and its events API, merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Job handlers of the gateway.
pub fn register(_handlers: &mut Handlers) {}
