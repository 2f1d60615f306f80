//! The provider layer (SPEC §3.3, §5). Being built.

use crate::app::App;
use crate::engine::handler::Handlers;
use utoipa_axum::router::OpenApiRouter;

/// Routes of the provider layer (`/v1/providers`, `/v1/circuits`), merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Job handlers of the provider layer.
pub fn register(_handlers: &mut Handlers) {}
