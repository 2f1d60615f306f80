//! Configuration (SPEC §4.3): embedded defaults → `syncguard.toml` → `SYNCGUARD_*` environment →
//! command-line flags → validation that names the key. The result is immutable and shared as
//! `Arc<Config>`.
//!
//! Environment variables map onto keys as `SYNCGUARD_<KEY>` for top-level keys
//! (`SYNCGUARD_DATABASE_URL`) and `SYNCGUARD_<SECTION>_<KEY>` for sectioned ones
//! (`SYNCGUARD_QUEUE_WORKERS`). Variables that name no key (`SYNCGUARD_BOOTSTRAP_KEY`, …) are
//! not configuration and are ignored here.

mod env_vars;

pub use env_vars::*;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Environment {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

/// Which parts of the engine this node runs (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// HTTP API only.
    Api,
    /// Workers and schedulers only (probes and metrics are still served).
    Worker,
    #[default]
    All,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `sqlite://path` (embedded) or `postgres://…` (shared by many nodes).
    pub database_url: String,
    /// Address of the HTTP API.
    pub listen: String,
    /// `production` refuses development-only switches such as unsigned webhooks.
    pub environment: Environment,
    pub log_format: LogFormat,
    pub role: NodeRole,
    /// File holding the base64 master key (when `SYNCGUARD_MASTER_KEY` is not set).
    pub master_key_file: String,
    /// Older master keys, base64: still opened, never used to seal (during a rotation).
    pub previous_master_keys: Vec<String>,
    /// Extra provider definition files (TOML), beside the built-in ones.
    pub provider_files: Vec<String>,
    pub queue: QueueConfig,
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub egress: EgressConfig,
    pub retention: RetentionConfig,
    pub health: HealthConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://syncguard.db".into(),
            listen: "127.0.0.1:8080".into(),
            environment: Environment::default(),
            log_format: LogFormat::default(),
            role: NodeRole::default(),
            master_key_file: "syncguard.key".into(),
            previous_master_keys: Vec::new(),
            provider_files: Vec::new(),
            queue: QueueConfig::default(),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            egress: EgressConfig::default(),
            retention: RetentionConfig::default(),
            health: HealthConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Jobs one node runs at once.
    pub workers: usize,
    /// How long a claimed job stays leased without a heartbeat.
    pub lease_ms: i64,
    /// How often an idle node looks for work it was not told about.
    pub poll_interval_ms: u64,
    /// Most jobs claimed in one fetch.
    pub fetch_batch: usize,
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// Default attempts before a job is dead (per kind below).
    pub max_attempts: i64,
    /// Attempts a permanently failing job gets (1: dead-letter at once).
    pub permanent_max_attempts: i64,
    /// How often expired leases are looked for.
    pub rescue_interval_ms: u64,
    /// How long SIGTERM waits for running jobs before releasing them.
    pub shutdown_grace_ms: u64,
    /// Most jobs of one connection running at once across the cluster (0: no cap), so one
    /// connection's backlog cannot occupy every worker.
    pub max_running_per_connection: i64,
    /// Per job kind: `max_attempts`, `timeout_ms`.
    pub kinds: BTreeMap<String, KindConfig>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            workers: 32,
            lease_ms: 30_000,
            poll_interval_ms: 1_000,
            fetch_batch: 256,
            retry_base_ms: 2_000,
            retry_cap_ms: 300_000,
            max_attempts: 6,
            permanent_max_attempts: 1,
            rescue_interval_ms: 5_000,
            shutdown_grace_ms: 10_000,
            max_running_per_connection: 8,
            kinds: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct KindConfig {
    pub max_attempts: Option<i64>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Largest API request body (413 beyond).
    pub body_limit_bytes: usize,
    /// Largest inbound webhook body (413 beyond).
    pub webhook_body_limit_bytes: usize,
    /// How long a verified API key is trusted for reads without asking the store again; the
    /// bound on how long a key revoked through another node keeps reading.
    pub key_cache_ttl_ms: u64,
    /// Connections served at once; beyond, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Time a client has to send a request head (also the keep-alive idle timeout).
    pub header_read_timeout_ms: u64,
    /// Time a client has to send a request body after its head (408 beyond).
    pub body_read_timeout_ms: u64,
    /// Webhook body bytes waiting to be stored at once; beyond, deliveries are answered 503
    /// with `Retry-After` at once rather than queued.
    pub webhook_queue_bytes: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_limit_bytes: 256 * 1024,
            webhook_body_limit_bytes: 1024 * 1024,
            key_cache_ttl_ms: 30_000,
            max_connections: 1024,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            webhook_queue_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The store connection and how its outages are noticed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// How long a request waits for a pooled connection before its 503.
    pub acquire_timeout_ms: u64,
    /// How often the store is probed while reachable (five times as often while not).
    pub probe_interval_ms: u64,
    /// How long one probe may take before it counts as a failure.
    pub probe_timeout_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            acquire_timeout_ms: 2_000,
            probe_interval_ms: 500,
            probe_timeout_ms: 800,
        }
    }
}

/// The SLO thresholds a connection's health status is judged by (SPEC §3.7), and the error
/// budget its burn-rate alerts use. Reloaded without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time since the last completed sync: degraded past the warning, unhealthy past critical.
    pub sync_lag_warning_s: f64,
    pub sync_lag_critical_s: f64,
    /// Time since the last webhook, for connections that receive them.
    pub webhook_lag_warning_s: f64,
    pub webhook_lag_critical_s: f64,
    /// Share of failed provider calls over 24 h: 0.01 is 1 %.
    pub error_rate_warning: f64,
    pub error_rate_critical: f64,
    /// Failed jobs of the connection in the last hour.
    pub recent_failures_warning: f64,
    pub recent_failures_critical: f64,
    /// The availability target the error budget comes from (0.99: 1 % of calls may fail).
    pub slo_target: f64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            sync_lag_warning_s: 300.0,
            sync_lag_critical_s: 900.0,
            webhook_lag_warning_s: 120.0,
            webhook_lag_critical_s: 600.0,
            error_rate_warning: 0.01,
            error_rate_critical: 0.05,
            recent_failures_warning: 5.0,
            recent_failures_critical: 20.0,
            slo_target: 0.99,
        }
    }
}

/// How long finished work is kept. The `cleanup` job deletes what is older every hour, in
/// batches of `batch_size` rows. Dead letters, failed and dead webhook events, records,
/// checkpoints and desired state are never deleted by age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Succeeded and cancelled jobs.
    pub finished_jobs_days: u32,
    /// Processed and duplicate inbound webhook events, with their raw bodies.
    pub inbound_events_days: u32,
    /// Entries of the change feed (`GET /v1/changes`).
    pub changes_days: u32,
    /// The audit log.
    pub audit_days: u32,
    /// Snapshots kept per object whatever their age, besides any a drift finding refers to.
    pub snapshots_per_object: u32,
    /// Rows deleted per statement, so no purge holds a long lock.
    pub batch_size: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            finished_jobs_days: 7,
            inbound_events_days: 30,
            changes_days: 30,
            audit_days: 365,
            snapshots_per_object: 10,
            batch_size: 1_000,
        }
    }
}

/// Where outbound calls may go (SPEC §3.3 "Egress policy"). Link-local and metadata addresses
/// are refused whatever this says; loopback and private ranges are refused in production
/// unless listed here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Address ranges (`10.0.0.0/8`, `fd12::/16`, one address) or host names
    /// (`api.internal.example`) that may be reached on internal addresses in production.
    pub allow: Vec<String>,
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

/// Overrides given on the command line; they win over file and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub role: Option<NodeRole>,
}

/// Where the configuration came from, for the startup line.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
}

impl Config {
    /// Loads the configuration: `path` (or `SYNCGUARD_CONFIG`, or `./syncguard.toml` when it
    /// exists), then the environment, then `overrides`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Loaded, ConfigError> {
        let file = match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError(format!(
                        "config file {} does not exist",
                        p.display()
                    )));
                }
                Some(p.to_path_buf())
            }
            None => Some(PathBuf::from("syncguard.toml")).filter(|p| p.exists()),
        };
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = &file {
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(env_provider()?);
        if let Some(v) = &overrides.database_url {
            fig = fig.merge(("database_url", v));
        }
        if let Some(v) = &overrides.listen {
            fig = fig.merge(("listen", v));
        }
        if let Some(v) = overrides.role {
            fig = fig.merge(("role", v));
        }
        let config: Config = fig.extract().map_err(|e| ConfigError(describe(e)))?;
        config.validate()?;
        Ok(Loaded { config, file })
    }

    /// Checks what types alone cannot; each message names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("`{key}`: {why}")));
        if self.listen.parse::<SocketAddr>().is_err() {
            return bad("listen", "expected an address such as 127.0.0.1:8080");
        }
        if !(self.database_url.starts_with("sqlite:")
            || self.database_url.starts_with("postgres:")
            || self.database_url.starts_with("postgresql:"))
        {
            return bad("database_url", "expected sqlite://… or postgres://…");
        }
        let q = &self.queue;
        if q.workers == 0 || q.workers > 10_000 {
            return bad("queue.workers", "must be between 1 and 10000");
        }
        if q.lease_ms < 1_000 {
            return bad("queue.lease_ms", "must be at least 1000");
        }
        if q.max_running_per_connection < 0 {
            return bad(
                "queue.max_running_per_connection",
                "must be 0 (no cap) or more",
            );
        }
        if q.fetch_batch == 0 {
            return bad("queue.fetch_batch", "must be at least 1");
        }
        if q.retry_base_ms == 0 || q.retry_cap_ms < q.retry_base_ms {
            return bad(
                "queue.retry_cap_ms",
                "must be at least queue.retry_base_ms, which must be positive",
            );
        }
        if q.max_attempts < 1 {
            return bad("queue.max_attempts", "must be at least 1");
        }
        if q.permanent_max_attempts < 1 {
            return bad("queue.permanent_max_attempts", "must be at least 1");
        }
        for (kind, k) in &q.kinds {
            if k.max_attempts.is_some_and(|m| m < 1) {
                return bad(
                    &format!("queue.kinds.{kind}.max_attempts"),
                    "must be at least 1",
                );
            }
        }
        if self.api.body_limit_bytes < 1024 || self.api.webhook_body_limit_bytes < 1024 {
            return bad(
                "api.body_limit_bytes",
                "body limits must be at least 1024 bytes",
            );
        }
        if self.api.key_cache_ttl_ms > 3_600_000 {
            return bad(
                "api.key_cache_ttl_ms",
                "must be at most 3600000 (revocation takes effect within it)",
            );
        }
        let st = &self.store;
        if !(100..=60_000).contains(&st.acquire_timeout_ms) {
            return bad("store.acquire_timeout_ms", "must be between 100 and 60000");
        }
        if !(50..=60_000).contains(&st.probe_interval_ms) {
            return bad("store.probe_interval_ms", "must be between 50 and 60000");
        }
        if !(50..=60_000).contains(&st.probe_timeout_ms) {
            return bad("store.probe_timeout_ms", "must be between 50 and 60000");
        }
        let h = &self.health;
        for (key, warning, critical) in [
            (
                "health.sync_lag",
                h.sync_lag_warning_s,
                h.sync_lag_critical_s,
            ),
            (
                "health.webhook_lag",
                h.webhook_lag_warning_s,
                h.webhook_lag_critical_s,
            ),
            (
                "health.error_rate",
                h.error_rate_warning,
                h.error_rate_critical,
            ),
            (
                "health.recent_failures",
                h.recent_failures_warning,
                h.recent_failures_critical,
            ),
        ] {
            if !(warning.is_finite()
                && critical.is_finite()
                && 0.0 <= warning
                && warning <= critical)
            {
                return bad(
                    key,
                    "the warning level must be at least 0 and at most the critical level",
                );
            }
        }
        if h.error_rate_critical > 1.0 {
            return bad("health.error_rate_critical", "is a share: at most 1");
        }
        if !(h.slo_target > 0.0 && h.slo_target < 1.0) {
            return bad("health.slo_target", "must be between 0 and 1, e.g. 0.99");
        }
        let r = &self.retention;
        for (key, days) in [
            ("retention.finished_jobs_days", r.finished_jobs_days),
            ("retention.inbound_events_days", r.inbound_events_days),
            ("retention.changes_days", r.changes_days),
            ("retention.audit_days", r.audit_days),
        ] {
            if !(1..=36_500).contains(&days) {
                return bad(key, "must be between 1 and 36500 days");
            }
        }
        if r.snapshots_per_object < 1 {
            return bad("retention.snapshots_per_object", "must be at least 1");
        }
        if !(1..=100_000).contains(&r.batch_size) {
            return bad("retention.batch_size", "must be between 1 and 100000");
        }
        self.egress_policy()
            .map_err(|e| ConfigError(format!("`egress.allow`: {e}")))?;
        if self.api.max_connections == 0 {
            return bad("api.max_connections", "must be at least 1");
        }
        if self.api.header_read_timeout_ms == 0 {
            return bad("api.header_read_timeout_ms", "must be positive");
        }
        if self.api.body_read_timeout_ms == 0 {
            return bad("api.body_read_timeout_ms", "must be positive");
        }
        if self.api.webhook_queue_bytes < self.api.webhook_body_limit_bytes {
            return bad(
                "api.webhook_queue_bytes",
                "must be at least api.webhook_body_limit_bytes",
            );
        }
        Ok(())
    }

    /// Pool sizes and timeouts of the store.
    pub fn store_options(&self) -> syncguard_store::StoreOptions {
        syncguard_store::StoreOptions {
            acquire_timeout: std::time::Duration::from_millis(self.store.acquire_timeout_ms),
            ..Default::default()
        }
    }

    /// The egress policy of this configuration (environment and allowlist).
    pub fn egress_policy(&self) -> Result<syncguard_core::egress::Policy, String> {
        syncguard_core::egress::Policy::new(
            self.environment == Environment::Production,
            &self.egress.allow,
        )
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }

    pub fn retry_policy(&self) -> syncguard_core::backoff::RetryPolicy {
        syncguard_core::backoff::RetryPolicy {
            base_ms: self.queue.retry_base_ms,
            cap_ms: self.queue.retry_cap_ms,
        }
    }

    /// Attempts a job of `kind` gets.
    pub fn max_attempts(&self, kind: &str) -> i64 {
        self.queue
            .kinds
            .get(kind)
            .and_then(|k| k.max_attempts)
            .unwrap_or(self.queue.max_attempts)
    }
}

impl Config {
    /// This configuration with its secrets replaced by `***`: the password of the database URL
    /// (in its user part or a `password=` parameter) and the previous master keys.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.database_url = redact_database_url(&c.database_url);
        for k in &mut c.previous_master_keys {
            *k = "***".into();
        }
        c
    }
}

fn redact_database_url(url: &str) -> String {
    let url = syncguard_store::redact_url(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let query: Vec<String> = query
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

/// figment's message, with its internal "default." profile prefix dropped from key paths.
fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let what = e.kind.to_string();
            let source = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            if key.is_empty() {
                format!("{what} ({source})")
            } else {
                format!("`{key}`: {what} ({source})")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
