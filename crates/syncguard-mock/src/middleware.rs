//! The middleware both provider APIs share: fault injection and the per-token rate limit
//! (their order is set in the `routes` module). The fault and limiter rules themselves live in
//! the `faults` and `limiter` modules; this module applies them to requests.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tokio::time::Instant;

use crate::faults::Injected;
use crate::http::Flavor;
use crate::limiter::{ceil_secs, Quota};
use crate::state::MockState;
use crate::stats::bump;

/// Middleware on the provider routes: applies latency and injected answers.
pub(crate) async fn inject_faults(
    State(state): State<MockState>,
    req: Request,
    next: Next,
) -> Response {
    let flavor = Flavor::of_path(req.uri().path());
    let plan = state.fault_plan();
    if !plan.latency.is_zero() && !state.sleep(plan.latency).await {
        return stopping(flavor);
    }
    let Some(injected) = plan.injected else {
        return next.run(req).await;
    };
    bump(&state.counters().faults_injected);
    match injected {
        Injected::Outage(left) => {
            let mut resp = flavor.error(StatusCode::SERVICE_UNAVAILABLE, "injected outage");
            if let Ok(v) = HeaderValue::from_str(&ceil_secs(left).max(1).to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
            resp
        }
        Injected::Storm(left) => {
            let mut resp = flavor.error(StatusCode::TOO_MANY_REQUESTS, "injected rate limit storm");
            let (_, burst) = state.rate_limit();
            let quota = Quota {
                limit: burst,
                remaining: 0,
                reset: left,
                retry_after: Some(left),
            };
            quota.apply(resp.headers_mut());
            resp
        }
        Injected::Timeout(hold) => {
            if !state.sleep(hold).await {
                return stopping(flavor);
            }
            flavor.error(StatusCode::GATEWAY_TIMEOUT, "injected timeout")
        }
        Injected::Error(status) => flavor.error(status, "injected fault"),
    }
}

/// The answer to a request held by a fault when the server shuts down.
fn stopping(flavor: Flavor) -> Response {
    flavor.error(StatusCode::SERVICE_UNAVAILABLE, "mock shutting down")
}

/// Takes one request from `bucket`: on success runs the handler and adds the `x-rate-limit-*`
/// headers; beyond the limit answers 429 in `flavor`'s style and counts a violation.
pub(crate) async fn rate_limited(
    state: &MockState,
    bucket: &str,
    flavor: Flavor,
    req: Request,
    next: Next,
) -> Response {
    let quota = state.limiter().check(bucket, Instant::now());
    let mut resp = if quota.retry_after.is_some() {
        bump(&state.counters().rate_limit_violations);
        flavor.error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded")
    } else {
        next.run(req).await
    };
    quota.apply(resp.headers_mut());
    resp
}
