//! The node's shared infrastructure: configuration (as started and as last reloaded), the store,
//! metrics, the clock, outbound HTTP, the sealer, and the loops' supervisor.
//!
//! [`Env`] is what every layer below the composition root may hold. It knows no job kind, no
//! provider and no HTTP route: the runtime (`engine`), the provider client (`provider`) and the
//! services (`services`) each build on it, and the composition root (`app`) builds it first.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::store_probe::StoreProbe;
use crate::workers::Workers;
use arc_swap::ArcSwap;
use std::ops::Deref;
use std::sync::Arc;
use syncguard_core::seal::Sealer;
use syncguard_store::Store;
use tokio::sync::Notify;

/// Shared infrastructure of one node. Cheap to clone.
#[derive(Clone)]
pub struct Env(Arc<EnvInner>);

pub struct EnvInner {
    /// The configuration the node started with. Parts that cannot change without a restart
    /// (store, listener, pool sizes) are read here.
    pub config: Arc<Config>,
    /// The current configuration: thresholds and intervals reload on SIGHUP (see [`Env::reload`]).
    live: ArcSwap<Config>,
    pub store: Store,
    pub metrics: Metrics,
    pub clock: SharedClock,
    /// Names this process's leases; unique per start.
    pub worker_id: String,
    /// Wakes this node's idle workers when it enqueues due work itself.
    pub job_notify: Arc<Notify>,
    /// Outbound HTTP (rustls), shared so connections are reused.
    pub http: reqwest::Client,
    /// Seals and opens credentials and webhook secrets.
    pub sealer: Sealer,
    /// The store probe's gauge.
    pub store_probe: StoreProbe,
    /// Every background loop of the node, stopped together at shutdown.
    pub workers: Workers,
}

impl Deref for Env {
    type Target = EnvInner;
    fn deref(&self) -> &EnvInner {
        &self.0
    }
}

impl Env {
    /// Builds the infrastructure; fails when a metric cannot be registered.
    pub fn new(
        config: Config,
        store: Store,
        clock: SharedClock,
        sealer: Sealer,
    ) -> anyhow::Result<Env> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
        let metrics = Metrics::new();
        let store_probe = StoreProbe::new(metrics.registry())?;
        let config = Arc::new(config);
        Ok(Env(Arc::new(EnvInner {
            live: ArcSwap::new(config.clone()),
            config,
            store,
            metrics,
            clock,
            worker_id: format!(
                "{host}-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            job_notify: Arc::new(Notify::new()),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("http client builds"),
            sealer,
            store_probe,
            workers: Workers::new(),
        })))
    }

    /// The current configuration (thresholds and intervals as last reloaded).
    pub fn settings(&self) -> Arc<Config> {
        self.live.load_full()
    }

    /// Adopts `next` for what can change at run time; returns the keys that changed but need
    /// a restart to take effect (they keep their running values).
    pub fn reload(&self, next: Config) -> Vec<&'static str> {
        let current = &self.config;
        let mut restart = Vec::new();
        let checks = [
            ("database_url", next.database_url != current.database_url),
            ("listen", next.listen != current.listen),
            ("role", next.role != current.role),
            ("queue.workers", next.queue.workers != current.queue.workers),
            (
                "queue.lease_ms",
                next.queue.lease_ms != current.queue.lease_ms,
            ),
            ("api", next.api != current.api),
            (
                "store.acquire_timeout_ms",
                next.store.acquire_timeout_ms != current.store.acquire_timeout_ms,
            ),
            // The provider HTTP client holds the policy in its resolver.
            ("egress", next.egress != current.egress),
        ];
        for (key, changed) in checks {
            if changed {
                restart.push(key);
            }
        }
        self.live.store(Arc::new(next));
        restart
    }
}
