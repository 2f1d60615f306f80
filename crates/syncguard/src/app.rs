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
use syncguard_core::seal::Sealer;
use syncguard_store::{Store, StoreOptions};
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
        let checks: [(&'static str, bool); 6] = [
            ("database_url", next.database_url != current.database_url),
            ("listen", next.listen != current.listen),
            ("role", next.role != current.role),
            ("queue.workers", next.queue.workers != current.queue.workers),
            (
                "queue.lease_ms",
                next.queue.lease_ms != current.queue.lease_ms,
            ),
            ("api", next.api != current.api),
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
    let store = Store::connect(&config.database_url, &StoreOptions::default())
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
    /// `SYNCGUARD_BOOTSTRAP_KEY` was installed.
    FromEnv,
    /// The store was empty: this key was generated and is shown once.
    Generated(String),
    /// Keys exist already.
    Existing,
}

/// Installs the bootstrap platform key from the environment, or generates one for an empty store.
pub async fn bootstrap_key(store: &Store, now: i64) -> anyhow::Result<Bootstrap> {
    if let Ok(key) = std::env::var("SYNCGUARD_BOOTSTRAP_KEY") {
        if key.len() < 16 {
            anyhow::bail!("SYNCGUARD_BOOTSTRAP_KEY must be at least 16 characters");
        }
        store.upsert_bootstrap_key(&key, now).await?;
        return Ok(Bootstrap::FromEnv);
    }
    if store.count_api_keys().await? == 0 {
        let key = syncguard_core::ids::new_api_key(&mut rand::thread_rng());
        store.upsert_bootstrap_key(&key, now).await?;
        return Ok(Bootstrap::Generated(key));
    }
    Ok(Bootstrap::Existing)
}

/// Runs the API on `listener` and, unless the node is API-only, the engine, until `shutdown`
/// resolves; then stops accepting, lets running jobs finish or hands them back, and returns.
pub async fn run(
    app: App,
    listener: TcpListener,
    handlers: Handlers,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let cancel = CancellationToken::new();
    let engine = match app.config.role {
        NodeRole::Api => {
            // API-only nodes still keep the queue gauges current for /metrics.
            let (a, c) = (app.clone(), cancel.clone());
            tokio::spawn(async move { engine::gauge_loop(a, c).await });
            None
        }
        NodeRole::Worker | NodeRole::All => {
            Some(engine::start(app.clone(), handlers, cancel.clone()))
        }
    };
    crate::health::spawn(&app, cancel.clone());
    let router = crate::api::router(app.clone());
    let stop = cancel.clone();
    crate::server::serve(
        listener,
        router,
        crate::server::Limits::from_config(&app.config.api),
        async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
        },
    )
    .await;
    cancel.cancel();
    if let Some(engine) = engine {
        engine.join().await;
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
