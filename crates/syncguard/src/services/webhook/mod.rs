//! The inbound webhook gateway (SPEC §3.2): what happens to a delivery once the HTTP layer
//! (`api::webhook`) has it, and the job that processes events.
//!
//! # How a delivery is taken
//! 1. [`ingest::open`] and [`gate`]: the connection's verification setup (scheme, unsealed
//!    secrets, the development-only `allow_unsigned` switch) comes from a short-lived cache, so
//!    a delivery costs no store read before it is verified. Unknown connection → 404.
//! 2. `api::webhook::receive` reads the body up to the limit (1 MiB) and no further, chunked
//!    or not → 413. [`ingest::take`] checks the signature on the raw bytes → 401, derives
//!    delivery id, event type and content key, and drops credentials from the headers.
//! 3. [`writer`]: the event and its processing job go to a group commit, which stores
//!    whatever deliveries are waiting in one transaction. The handler answers only once its
//!    batch committed: 202 `{"event_id", "duplicate": false}`, or 200 with `"duplicate": true`
//!    for a repeat (by delivery id, or by content key within 24 h), whose `event_id` names the
//!    event it repeats; the repeat is stored too, as a `duplicate`, and never processed. A store
//!    failure is a 503 with `Retry-After` and nothing acknowledged: the provider retries.
//!
//! # After
//! - [`process`]: the `webhook.process` job maps the event onto records through the provider's
//!   event rules (upsert, delete, or a refetch job when the event carries only an id). An
//!   event no rule matches is kept and marked processed with a note saying so. Each run's
//!   outcome goes through a second group commit before the job completes.
//! - `api::webhook::events`: `GET /v1/events`, `GET /v1/events/{id}`, `POST /v1/events/replay`.
//! - [`metrics`] defines `syncguard_webhooks_received_total{provider,outcome}`,
//!   `syncguard_webhook_processing_seconds` and friends.
//!
//! SQL lives in `syncguard_store::events`; signature schemes in `syncguard_core::signature`.

pub mod gate;
pub mod ingest;
pub mod metrics;
pub mod process;
pub mod writer;

use crate::config::{Config, Environment};
use crate::engine::handler::Handlers;
use crate::services::Services;
use std::sync::OnceLock;
use std::time::Duration;

pub use metrics::{Outcome, WebhookMetrics};

/// Kind of the job that processes one event.
pub const PROCESS_KIND: &str = "webhook.process";

/// Kind of the job that fetches one object whose event carried only its id (handled by the
/// provider layer).
pub const REFETCH_KIND: &str = "sync.refetch";

/// Deliveries with the same content key within this window are duplicates (SPEC §3.2).
pub const DEDUP_WINDOW_MS: i64 = 24 * 3_600_000;

/// How long a connection's verification setup is trusted before it is read again; the bound
/// on how long a removed secret keeps verifying when nobody calls [`WebhookState::invalidate`].
pub const GATE_TTL: Duration = Duration::from_secs(30);

/// Everything the gateway keeps for the life of the node.
pub struct WebhookState {
    pub metrics: WebhookMetrics,
    /// Connections' verification setups, by connection id.
    pub(crate) gates: gate::GateCache,
    /// Started on first use: they need the store, which this state is built without.
    writers: OnceLock<writer::Writers>,
    /// `allow_unsigned` is refused in production (SPEC §3.2).
    production: bool,
    /// Largest body accepted (413 beyond).
    pub(crate) body_limit: usize,
}

impl WebhookState {
    pub fn new(config: &Config, registry: &prometheus::Registry) -> anyhow::Result<WebhookState> {
        Ok(WebhookState {
            metrics: WebhookMetrics::register(registry)?,
            gates: gate::GateCache::new(GATE_TTL),
            writers: OnceLock::new(),
            production: config.environment == Environment::Production,
            body_limit: config.api.webhook_body_limit_bytes,
        })
    }

    /// Forgets what is cached about a connection, so a change to its secrets or webhook config
    /// applies to the next delivery (the connections API calls this after an update).
    pub fn invalidate(&self, connection_id: &str) {
        self.gates.invalidate(connection_id);
    }

    /// The group commits, started on first use.
    pub(crate) fn writers(&self, app: &Services) -> &writer::Writers {
        self.writers.get_or_init(|| {
            writer::Writers::start(
                &app.workers,
                app.store.clone(),
                app.clock.clone(),
                app.job_notify.clone(),
                self.metrics.clone(),
                app.config.api.webhook_queue_bytes,
            )
        })
    }
}

/// Job handlers of the gateway.
pub fn register(handlers: &mut Handlers<Services>) {
    handlers.register(PROCESS_KIND, process::process);
}
