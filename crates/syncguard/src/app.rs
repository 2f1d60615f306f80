//! The application: shared state, start-up (store, migrations, bootstrap key) and the server
//! loop that runs the API and the engine until shutdown.

use crate::clock::SharedClock;
use crate::config::{Config, NodeRole};
use crate::engine::{self, handler::Handlers};
use crate::metrics::Metrics;
use anyhow::Context;
use arc_swap::ArcSwap;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use syncguard_core::seal::Sealer;
use syncguard_store::tenancy::{BootstrapInstall, BootstrapSource};
use syncguard_store::Store;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Shared state of one node. Cheap to clone.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

pub struct AppInner {
    /// The configuration the node started with. Parts that cannot change without a restart
    /// (store, listener, pool sizes) are read here.
    pub config: Arc<Config>,
    /// The current configuration: thresholds and intervals reload on SIGHUP (see [`App::reload`]).
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
    /// State of the inbound webhook gateway.
    pub webhooks: crate::webhook::WebhookState,
    /// Provider definitions, rate limiters and circuit breakers.
    pub providers: crate::provider::ProviderState,
    /// The sync engine.
    pub sync: crate::sync::SyncState,
    /// The cached health snapshot.
    pub health: crate::health::HealthState,
    /// The publish path.
    pub publish: crate::publish::PublishState,
    /// API keys verified lately, so reads need no store round trip for their key.
    pub api_keys: crate::api::key_cache::KeyCache,
    /// The store probe's gauge.
    pub store_probe: crate::store_probe::StoreProbe,
    /// Every background loop of the node, stopped together at shutdown.
    pub workers: crate::workers::Workers,
}

impl Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    /// Builds the node's state; fails when a part of the configuration (e.g. a provider
    /// definition) cannot be used.
    pub fn new(
        config: Config,
        store: Store,
        clock: SharedClock,
        sealer: Sealer,
    ) -> anyhow::Result<App> {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "node".into());
        let metrics = Metrics::new();
        let webhooks = crate::webhook::WebhookState::new(&config, metrics.registry())?;
        let providers = crate::provider::ProviderState::new(&config, metrics.registry())?;
        let sync = crate::sync::SyncState::new(&config, metrics.registry())?;
        let health = crate::health::HealthState::new(&config, metrics.registry())?;
        let publish = crate::publish::PublishState::new(&config, metrics.registry())?;
        let store_probe = crate::store_probe::StoreProbe::new(metrics.registry())?;
        let api_keys = crate::api::key_cache::KeyCache::new(std::time::Duration::from_millis(
            config.api.key_cache_ttl_ms,
        ));
        let config = Arc::new(config);
        Ok(App(Arc::new(AppInner {
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
            webhooks,
            providers,
            sync,
            health,
            publish,
            api_keys,
            store_probe,
            workers: crate::workers::Workers::new(),
        })))
    }
}

impl App {
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

/// Opens and migrates the store named by the configuration.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database_url, &config.store_options())
        .await
        .with_context(|| {
            format!(
                "opening the store at {}",
                syncguard_store::redact_url(&config.database_url)
            )
        })?;
    let applied = store.migrate().await.context("applying migrations")?;
    if !applied.is_empty() {
        tracing::info!(versions = ?applied, "migrations applied");
    }
    Ok(store)
}

/// What to tell the operator about the bootstrap platform key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// `SYNCGUARD_BOOTSTRAP_KEY` was installed (earlier bootstrap keys were revoked).
    FromEnv,
    /// `SYNCGUARD_BOOTSTRAP_KEY` names the live bootstrap key already.
    FromEnvKept,
    /// `SYNCGUARD_BOOTSTRAP_KEY` names a key that was revoked: it stays revoked.
    FromEnvRevoked,
    /// The store was empty: this key was generated and is shown once.
    Generated(String),
    /// Keys exist already; `revoked` bootstrap keys from an earlier `SYNCGUARD_BOOTSTRAP_KEY`
    /// were revoked because the variable is gone.
    Existing { revoked: u64 },
}

/// Installs the bootstrap platform key from the environment, or generates one for an empty
/// store. A revoked bootstrap key stays revoked across starts; a changed variable revokes the
/// key it named before, and a removed one revokes it too (see `install_bootstrap_key`).
pub async fn bootstrap_key(store: &Store, now: i64) -> anyhow::Result<Bootstrap> {
    bootstrap_key_from(store, std::env::var("SYNCGUARD_BOOTSTRAP_KEY").ok(), now).await
}

/// [`bootstrap_key`] with the variable's value passed in (tests).
pub async fn bootstrap_key_from(
    store: &Store,
    env_key: Option<String>,
    now: i64,
) -> anyhow::Result<Bootstrap> {
    if let Some(key) = env_key {
        if key.len() < 16 {
            anyhow::bail!("SYNCGUARD_BOOTSTRAP_KEY must be at least 16 characters");
        }
        return Ok(
            match store
                .install_bootstrap_key(&key, BootstrapSource::Env, now)
                .await?
            {
                BootstrapInstall::Installed => Bootstrap::FromEnv,
                BootstrapInstall::Kept => Bootstrap::FromEnvKept,
                BootstrapInstall::Revoked => Bootstrap::FromEnvRevoked,
            },
        );
    }
    let revoked = store.revoke_env_bootstrap_keys(now).await?;
    if store.count_api_keys().await? == 0 {
        let key = syncguard_core::ids::new_api_key(&mut rand::thread_rng());
        store
            .install_bootstrap_key(&key, BootstrapSource::Generated, now)
            .await?;
        return Ok(Bootstrap::Generated(key));
    }
    Ok(Bootstrap::Existing { revoked })
}

/// How long shutdown waits for the background loops once the server has stopped: the
/// engine's grace for running jobs, plus time to hand back what is left.
fn drain_deadline(config: &Config) -> Duration {
    Duration::from_millis(config.queue.shutdown_grace_ms) + Duration::from_secs(2)
}

/// Runs the API on `listener` and, unless the node is API-only, the engine, until `shutdown`
/// resolves; then stops accepting, lets running jobs finish or hands them back, stops every
/// background loop (see [`crate::workers`]) and returns, within the drain deadline.
pub async fn run(
    app: App,
    listener: TcpListener,
    handlers: Handlers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let workers = &app.workers;
    let cancel = workers.token();
    {
        let a = app.clone();
        workers.spawn("store probe", move |c| {
            crate::store_probe::run(
                a.store.clone(),
                a.clock.clone(),
                a.store_probe.up.clone(),
                a.config.store.clone(),
                c,
            )
        });
    }
    match app.config.role {
        NodeRole::Api => {
            // API-only nodes still keep the queue gauges current for /metrics.
            let a = app.clone();
            workers.spawn("queue gauges", move |c| engine::gauge_loop(a, c));
        }
        NodeRole::Worker | NodeRole::All => {
            let engine = engine::start(app.clone(), handlers, cancel.clone());
            workers.spawn("engine", move |_| engine.join());
        }
    }
    {
        let a = app.clone();
        workers.spawn("health snapshotter", move |c| crate::health::run(a, c));
    }
    let router = crate::api::router(app.clone());
    let stop = cancel.clone();
    let stopping = CancellationToken::new();
    let begun = stopping.clone();
    let server = crate::server::serve(
        listener,
        router,
        crate::server::Limits::from_config(&app.config.api),
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            begun.cancel();
        },
    );
    let deadline = drain_deadline(&app.config);
    // Requests still running when shutdown begins get the drain deadline to finish; a client
    // that keeps its request open longer does not hold the process.
    tokio::select! {
        _ = server => {}
        _ = async {
            stopping.cancelled().await;
            tokio::time::sleep(deadline).await;
        } => {
            tracing::warn!("requests still open at the drain deadline were dropped");
        }
    };
    let stuck = workers.shutdown(deadline).await;
    if !stuck.is_empty() {
        tracing::error!(loops = ?stuck, "background loops aborted at shutdown");
    }
    app.store.close().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
