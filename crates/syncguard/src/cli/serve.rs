//! `syncguard serve` and `syncguard migrate`.

use crate::app::Handlers;
use crate::app::{self, App, Bootstrap};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Loaded, LogFormat, NodeRole, Overrides};
use crate::secrets::KeySource;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Store URL: sqlite://path or postgres://user@host/db (SYNCGUARD_DATABASE_URL).
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on (SYNCGUARD_LISTEN), default 127.0.0.1:8080.
    #[arg(long)]
    pub listen: Option<String>,
    /// Which parts to run: api, worker or all (default).
    #[arg(long, value_enum)]
    pub role: Option<NodeRole>,
}

fn load(
    config: Option<&Path>,
    log_format: Option<LogFormat>,
    overrides: Overrides,
) -> anyhow::Result<Loaded> {
    let loaded = Config::load(config, &overrides)?;
    crate::logging::init(log_format.unwrap_or(loaded.config.log_format));
    Ok(loaded)
}

pub async fn serve(
    config: Option<&Path>,
    log_format: Option<LogFormat>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let overrides = Overrides {
        database_url: args.store.database_url,
        listen: args.listen,
        role: args.role,
    };
    let loaded = load(config, log_format, overrides.clone())?;
    let config_path = config.map(Path::to_path_buf);
    let watched = loaded.file.clone();
    let config = loaded.config;
    let (sealer, key_source) = crate::secrets::load_sealer(&config)?;
    let store = app::open_store(&config).await?;
    let clock = Arc::new(SystemClock);
    // Built before anything is announced: a bad provider definition stops the start here.
    let app = App::new(config.clone(), store.clone(), clock.clone(), sealer.clone())?;
    let bootstrap = app::bootstrap_key(&store, clock.now_ms()).await?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let config_source = loaded
        .file
        .as_ref()
        .map(|f| f.display().to_string())
        .unwrap_or_else(|| "built-in defaults and environment".into());
    eprintln!(
        "syncguard {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    );
    eprintln!(
        "  store:  {} ({})",
        store.url_redacted(),
        store.backend().as_str()
    );
    eprintln!("  config: {config_source}");
    for var in crate::config::unrecognized_env_vars() {
        eprintln!("  warning: {var} names no configuration key; it is ignored");
        tracing::warn!(variable = %var, "environment variable names no configuration key; ignored");
    }
    eprintln!(
        "  role:   {:?}, {} workers",
        config.role, config.queue.workers
    );
    match &key_source {
        KeySource::Env => eprintln!("  master key: from SYNCGUARD_MASTER_KEY (id {})", sealer.current_key_id()),
        KeySource::File(f) => eprintln!("  master key: {f} (id {})", sealer.current_key_id()),
        KeySource::Generated(f) => eprintln!("  master key: GENERATED {f} (id {}); back it up, stored credentials cannot be read without it", sealer.current_key_id()),
    }
    match &bootstrap {
        Bootstrap::Generated(key) => {
            eprintln!("  bootstrap platform key (shown once, store it now): {key}");
        }
        Bootstrap::FromEnv => eprintln!("  bootstrap platform key: from SYNCGUARD_BOOTSTRAP_KEY (earlier bootstrap keys revoked)"),
        Bootstrap::FromEnvKept => eprintln!("  bootstrap platform key: from SYNCGUARD_BOOTSTRAP_KEY"),
        Bootstrap::FromEnvRevoked => {
            eprintln!("  bootstrap platform key: SYNCGUARD_BOOTSTRAP_KEY names a REVOKED key; it stays revoked");
            tracing::warn!("SYNCGUARD_BOOTSTRAP_KEY names a revoked key; it stays revoked");
        }
        Bootstrap::Existing { revoked } if *revoked > 0 => {
            eprintln!("  bootstrap platform key: SYNCGUARD_BOOTSTRAP_KEY is unset; the key it named was revoked");
            tracing::info!(revoked, "bootstrap key from the environment revoked: the variable is unset");
        }
        Bootstrap::Existing { .. } => {}
    }
    tracing::info!(addr = %addr, store = store.backend().as_str(), config = %config_source, "syncguard started");
    {
        let a = app.clone();
        app.workers.spawn("config reloader", move |c| {
            reload_on_sighup_or_change(a, config_path, watched, overrides, c)
        });
    }
    app::run(app, listener, Handlers::builtin(), app::shutdown_signal()).await?;
    tracing::info!("syncguard stopped");
    Ok(())
}

pub async fn migrate(
    config: Option<&Path>,
    log_format: Option<LogFormat>,
    args: StoreArgs,
) -> anyhow::Result<()> {
    let loaded = load(
        config,
        log_format,
        Overrides {
            database_url: args.database_url,
            ..Default::default()
        },
    )?;
    let store = syncguard_store::Store::connect(
        &loaded.config.database_url,
        &loaded.config.store_options(),
    )
    .await?;
    let applied = store.migrate().await?;
    let version = store.schema_version().await?;
    if applied.is_empty() {
        eprintln!(
            "{}: schema is current (version {version})",
            store.url_redacted()
        );
    } else {
        eprintln!(
            "{}: applied {applied:?}; schema at version {version}",
            store.url_redacted()
        );
    }
    store.close().await;
    Ok(())
}

/// How often the configuration file is looked at for a change.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Re-reads the configuration (file and environment) on SIGHUP and when the content of the
/// configuration file changes. A valid one is adopted for thresholds and intervals; keys that
/// need a restart are named in the log; an invalid one is refused with its key and the running
/// configuration stays.
///
/// The file is compared by content every [`WATCH_INTERVAL`] (so editors that replace the file,
/// and mounted configuration maps, are seen too); a change is acted on once the content has
/// stayed the same for one more interval, so a file being written is not read half-way.
async fn reload_on_sighup_or_change(
    app: App,
    path: Option<std::path::PathBuf>,
    watched: Option<std::path::PathBuf>,
    overrides: Overrides,
    cancel: tokio_util::sync::CancellationToken,
) {
    let read = |f: &Option<std::path::PathBuf>| f.as_ref().and_then(|f| std::fs::read(f).ok());
    let mut adopted = read(&watched);
    let mut pending: Option<Option<Vec<u8>>> = None;
    #[cfg(unix)]
    let mut hup = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).ok()
    };
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let cause = tokio::select! {
            got = hangup => if got.is_none() { break } else { "SIGHUP" },
            _ = tick.tick(), if watched.is_some() => {
                let now = read(&watched);
                if now == adopted {
                    pending = None;
                    continue;
                }
                if pending.as_ref() != Some(&now) {
                    // Changed since the last look: wait until it holds still.
                    pending = Some(now);
                    continue;
                }
                pending = None;
                adopted = now;
                "file change"
            },
            _ = cancel.cancelled() => break,
        };
        if cause == "SIGHUP" {
            adopted = read(&watched);
        }
        match Config::load(path.as_deref(), &overrides) {
            Ok(loaded) => {
                let restart = app.reload(loaded.config);
                if restart.is_empty() {
                    tracing::info!(cause, "configuration reloaded");
                } else {
                    tracing::warn!(cause, keys = ?restart, "configuration reloaded; these keys take effect only after a restart");
                }
            }
            Err(e) => {
                tracing::error!(cause, error = %e, "configuration reload refused; keeping the running configuration")
            }
        }
    }
}
