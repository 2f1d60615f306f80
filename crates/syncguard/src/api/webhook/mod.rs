//! The webhook gateway's socket side (SPEC §3.2): [`receive`] takes a delivery off the wire and
//! hands it to `services::webhook`; [`events`] is the events API (list, read, replay).

pub mod events;
pub mod receive;

use crate::services::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes of the gateway and its events API, merged into the main router.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(receive::receive))
        .routes(routes!(events::list_events))
        .routes(routes!(events::get_event))
        .routes(routes!(events::replay_events))
}
