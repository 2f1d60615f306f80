//! The composition root: builds the node (infrastructure, services, runtime, HTTP), runs it
//! until shutdown, and owns start-up (store, migrations, bootstrap key). Nothing below imports
//! this module; see ARCHITECTURE.md for the layers.

use crate::api;
use crate::clock::SharedClock;
use crate::config::{Config, NodeRole};
use crate::engine;
use crate::env::Env;
use crate::services::{self, Services};
use anyhow::Context;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;
use syncguard_core::seal::Sealer;
use syncguard_store::tenancy::{BootstrapInstall, BootstrapSource};
use syncguard_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The job handlers a node runs: the runtime's, registered for the services' state.
pub type Handlers = engine::handler::Handlers<Services>;

/// What a job handler of this node gets.
pub type JobContext = engine::handler::JobContext<Services>;

/// One node: its infrastructure and services, built and wired here. Cheap to clone; derefs to
/// [`Services`] (and on to [`Env`]). Nothing but the command line and tests holds one: the
/// layers below get the part they need.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

pub struct AppInner {
    services: Services,
}

impl Deref for App {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0.services
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
        let env = Env::new(config, store, clock, sealer)?;
        let services = Services::new(env)?;
        Ok(App(Arc::new(AppInner { services })))
    }

    /// The services, for what takes them by value.
    pub fn services(&self) -> Services {
        self.0.services.clone()
    }
}

/// Starts the runtime on `app`: `handlers` bound to its services, with every service's
/// periodic schedules. Cancel `cancel`, then join the handle.
pub fn start_engine(
    app: &App,
    handlers: Handlers,
    cancel: CancellationToken,
) -> engine::EngineHandle {
    engine::start(
        app.env().clone(),
        handlers.bind(app.services()),
        services::schedules(),
        cancel,
    )
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
            let a = app.env().clone();
            workers.spawn("queue gauges", move |c| engine::gauge_loop(a, c));
        }
        NodeRole::Worker | NodeRole::All => {
            let engine = start_engine(&app, handlers, cancel.clone());
            workers.spawn("engine", move |_| engine.join());
        }
    }
    {
        let a = app.services();
        workers.spawn("circuit gauges", move |c| services::circuit_gauges(a, c));
    }
    {
        let a = app.services();
        workers.spawn("health snapshotter", move |c| services::health::run(a, c));
    }
    let router = api::router(app.services());
    let stop = cancel.clone();
    let stopping = CancellationToken::new();
    let begun = stopping.clone();
    let server = api::server::serve(
        listener,
        router,
        api::server::Limits::from_config(&app.config.api),
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
