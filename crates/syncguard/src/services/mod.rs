//! The services: what syncguard does, by SPEC concept, with no HTTP in them.
//!
//! [`Services`] is the state they share: the node's [`Env`] and each service's own state. The
//! HTTP layer (`api`) calls into it; the composition root (`app`) builds it and registers the
//! services' job handlers with the runtime (`engine`), which hands it back to them as
//! `JobContext::app` without knowing its type.
//!
//! # Layout
//! - [`webhook`]: the inbound webhook gateway after the socket: gates, the batched writer,
//!   processing (SPEC §3.2).
//! - [`sync`]: backfill and incremental sync with checkpoints (SPEC §3.4).
//! - [`publish`]: desired state, publishing, snapshots, reconciliation and drift (SPEC §3.5).
//! - [`health`]: the cached health snapshot and SLO status (SPEC §3.7).
//! - [`retention`]: the hourly cleanup of what has outlived its use (SPEC §3.6 "Retention").
//! - [`key_cache`]: API keys verified lately (tenancy, SPEC §3.8).
//! - [`jobs`]: how a provider failure becomes a job outcome.
//!
//! Services never import `api`, `app` or `cli`, and never name an axum type.

pub mod health;
pub mod jobs;
pub mod key_cache;
pub mod publish;
pub mod retention;
pub mod sync;
pub mod webhook;

use crate::engine::handler::Handlers;
use crate::engine::Schedule;
use crate::env::Env;
use crate::provider::ProviderState;
use std::ops::Deref;
use std::sync::Arc;

/// The services' shared state. Cheap to clone; derefs to [`ServicesInner`] and on to [`Env`].
#[derive(Clone)]
pub struct Services(Arc<ServicesInner>);

pub struct ServicesInner {
    env: Env,
    /// State of the inbound webhook gateway.
    pub webhooks: webhook::WebhookState,
    /// Provider definitions, rate limiters and circuit breakers.
    pub providers: Arc<ProviderState>,
    /// The sync engine.
    pub sync: sync::SyncState,
    /// The cached health snapshot.
    pub health: health::HealthState,
    /// The publish path.
    pub publish: publish::PublishState,
    /// API keys verified lately, so reads need no store round trip for their key.
    pub api_keys: key_cache::KeyCache,
    /// Retention's counters.
    pub retention: retention::RetentionState,
}

impl Deref for Services {
    type Target = ServicesInner;
    fn deref(&self) -> &ServicesInner {
        &self.0
    }
}

impl Deref for ServicesInner {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

impl Services {
    /// Builds every service's state on `env`; fails when a part of the configuration (e.g. a
    /// provider definition) cannot be used.
    pub fn new(env: Env) -> anyhow::Result<Services> {
        let config = env.config.clone();
        let registry = env.metrics.registry();
        Ok(Services(Arc::new(ServicesInner {
            webhooks: webhook::WebhookState::new(&config, registry)?,
            providers: Arc::new(ProviderState::new(&config, registry)?),
            sync: sync::SyncState::new(&config, registry)?,
            health: health::HealthState::new(&config, registry)?,
            publish: publish::PublishState::new(&config, registry)?,
            retention: retention::RetentionState::new(registry)?,
            api_keys: key_cache::KeyCache::new(std::time::Duration::from_millis(
                config.api.key_cache_ttl_ms,
            )),
            env,
        })))
    }

    /// The node's infrastructure.
    pub fn env(&self) -> &Env {
        &self.env
    }
}

impl Handlers<Services> {
    /// The handlers every node has: the runtime's own and every service's.
    pub fn builtin() -> Handlers<Services> {
        let mut h = Handlers::runtime();
        webhook::register(&mut h);
        sync::register(&mut h);
        publish::register(&mut h);
        retention::register(&mut h);
        h
    }
}

/// The periodic schedules every node runs: the runtime's own and every service's.
pub fn schedules() -> Vec<Schedule> {
    let mut all = retention::schedules();
    all.extend(sync::schedules());
    all.extend(publish::schedules());
    all
}

/// Recounts `syncguard_circuit_state` from the store every few seconds (never per scrape), so
/// that it shows the whole cluster, until `cancel`.
pub async fn circuit_gauges(app: Services, cancel: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = app.providers.refresh_gauges(&app) => {}
            _ = cancel.cancelled() => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = cancel.cancelled() => break,
        }
    }
}
