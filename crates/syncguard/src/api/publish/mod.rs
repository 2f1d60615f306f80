//! The publish path's routes (SPEC §3.5, §4.1): desired state, reconcile-now, snapshots and
//! drift. The work behind them is in `services::publish`.

pub(super) mod desired;
pub(super) mod snapshots;

use crate::services::Services;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes of the publish path, merged into the main router.
pub fn routes() -> OpenApiRouter<Services> {
    OpenApiRouter::new()
        .routes(routes!(desired::put_desired, desired::get_desired))
        .routes(routes!(desired::reconcile_now))
        .routes(routes!(snapshots::list_snapshots, snapshots::take_snapshot))
        .routes(routes!(snapshots::diff_snapshots))
        .routes(routes!(snapshots::get_snapshot))
        .routes(routes!(snapshots::list_drift))
}
