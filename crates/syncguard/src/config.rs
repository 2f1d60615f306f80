//! Configuration (SPEC §4.3): embedded defaults → `syncguard.toml` → `SYNCGUARD_*` environment →
//! command-line flags → validation that names the key. The result is immutable and shared as
//! `Arc<Config>`.
//!
//! Environment variables map onto keys as `SYNCGUARD_<KEY>` for top-level keys
//! (`SYNCGUARD_DATABASE_URL`) and `SYNCGUARD_<SECTION>_<KEY>` for sectioned ones
//! (`SYNCGUARD_QUEUE_WORKERS`). Variables that name no key (`SYNCGUARD_BOOTSTRAP_KEY`, …) are
//! not configuration and are ignored here.

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

/// Variables of the command line and of tests. They share the `SYNCGUARD_` prefix but are never
/// configuration, even where their name looks like a key (`SYNCGUARD_API_KEY` is not `api.key`).
pub const CLI_VARIABLES: &[&str] = &[
    "SYNCGUARD_API_KEY",
    "SYNCGUARD_URL",
    "SYNCGUARD_CONFIG",
    "SYNCGUARD_BOOTSTRAP_KEY",
    "SYNCGUARD_MASTER_KEY",
    "SYNCGUARD_TEST_POSTGRES_URL",
    "SYNCGUARD_BENCH_KEY",
];

/// The fields of `[queue.kinds.<kind>]`.
const KIND_KEYS: &[&str] = &["max_attempts", "timeout_ms"];

/// What an environment variable sets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvKey {
    /// A key holding one value: `queue.workers`.
    Scalar(String),
    /// A key holding a list, written comma-separated: `egress.allow`.
    List(String),
}

impl EnvKey {
    fn path(&self) -> &str {
        match self {
            EnvKey::Scalar(k) | EnvKey::List(k) => k,
        }
    }
}

/// Every key of the configuration (dotted), with whether it holds a list; `queue.kinds` is
/// left out (its keys are per kind).
fn known_keys() -> Vec<(String, bool)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, bool)>) {
        let serde_json::Value::Object(m) = v else {
            return;
        };
        for (k, v) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                _ if path == "queue.kinds" => {}
                serde_json::Value::Object(_) => walk(&path, v, out),
                _ => out.push((path, v.is_array())),
            }
        }
    }
    let defaults = serde_json::to_value(Config::default()).expect("the configuration serializes");
    let mut out = Vec::new();
    walk("", &defaults, &mut out);
    out
}

/// Maps a variable onto the key it sets:
/// - `SYNCGUARD_<KEY>` → a top-level key (`SYNCGUARD_DATABASE_URL` → `database_url`);
/// - `SYNCGUARD_<SECTION>_<KEY>` → a key of a section (`SYNCGUARD_QUEUE_LEASE_MS` →
///   `queue.lease_ms`);
/// - `SYNCGUARD_QUEUE_KINDS_<KIND>_<KEY>` → `queue.kinds.<kind>.<key>`, where in `<KIND>` a
///   single `_` stands for the `.` of a job kind and `__` for a literal `_`
///   (`SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS` →
///   `queue.kinds."webhook.process".max_attempts`).
///
/// Variables of the command line ([`CLI_VARIABLES`]) and anything naming no key are not
/// configuration: `None`.
fn env_key(var: &str) -> Option<EnvKey> {
    if CLI_VARIABLES.contains(&var) {
        return None;
    }
    let key = var.strip_prefix("SYNCGUARD_")?.to_ascii_lowercase();
    if let Some(rest) = key.strip_prefix("queue_kinds_") {
        let (kind, field) = KIND_KEYS.iter().find_map(|f| {
            rest.strip_suffix(f)
                .and_then(|k| k.strip_suffix('_'))
                .filter(|k| !k.is_empty())
                .map(|k| (k, *f))
        })?;
        let kind = kind
            .replace("__", "\u{0}")
            .replace('_', ".")
            .replace('\u{0}', "_");
        return Some(EnvKey::Scalar(format!("queue.kinds.{kind}.{field}")));
    }
    known_keys().into_iter().find_map(|(path, list)| {
        (path.replace('.', "_") == key).then_some(if list {
            EnvKey::List(path)
        } else {
            EnvKey::Scalar(path)
        })
    })
}

/// `SYNCGUARD_*` variables that are neither configuration nor a known variable of the command
/// line: most likely a misspelt key. They are ignored; `serve` and `config check` name them.
pub fn unrecognized_env_vars() -> Vec<String> {
    let mut vars: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with("SYNCGUARD_")
                && !CLI_VARIABLES.contains(&k.as_str())
                && env_key(k).is_none()
        })
        .collect();
    vars.sort();
    vars
}

/// A list from the environment: comma-separated (`a, b`), or a TOML array (`["a", "b"]`).
fn env_list(value: &str) -> Result<Vec<String>, String> {
    let t = value.trim();
    if t.starts_with('[') {
        #[derive(Deserialize)]
        struct L {
            v: Vec<String>,
        }
        return toml::from_str::<L>(&format!("v = {t}"))
            .map(|l| l.v)
            .map_err(|e| e.message().to_string());
    }
    Ok(t.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

/// The `SYNCGUARD_*` variables that are configuration, as a figment provider.
fn env_provider() -> Result<EnvVars, ConfigError> {
    let mut dict = figment::value::Dict::new();
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let Some(key) = env_key(&var) else { continue };
        let value: figment::value::Value = match &key {
            EnvKey::List(_) => env_list(&value)
                .map_err(|e| ConfigError(format!("`{}` ({var}): {e}", key.path())))?
                .into(),
            EnvKey::Scalar(_) => value
                .parse()
                .expect("figment parses any string into a value"),
        };
        insert(&mut dict, key.path(), value);
    }
    Ok(EnvVars(dict))
}

/// The configuration read from the environment, named as such in errors.
struct EnvVars(figment::value::Dict);

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("`SYNCGUARD_*` environment variable(s)")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.0.clone()))
    }
}

/// Sets `path` (dotted; a job kind is one segment) in `dict`.
fn insert(dict: &mut figment::value::Dict, path: &str, value: figment::value::Value) {
    use figment::value::{Dict, Value};
    let segments: Vec<String> = match path.strip_prefix("queue.kinds.") {
        Some(rest) => {
            let (kind, field) = rest.rsplit_once('.').expect("kind and field");
            vec!["queue".into(), "kinds".into(), kind.into(), field.into()]
        }
        None => path.split('.').map(String::from).collect(),
    };
    let mut cur = dict;
    for seg in &segments[..segments.len() - 1] {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        if !matches!(entry, Value::Dict(..)) {
            *entry = Value::from(Dict::new());
        }
        let Value::Dict(_, d) = entry else {
            unreachable!()
        };
        cur = d;
    }
    cur.insert(segments[segments.len() - 1].clone(), value);
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
mod tests {
    use super::*;

    fn scalar(k: &str) -> Option<EnvKey> {
        Some(EnvKey::Scalar(k.into()))
    }

    #[test]
    fn env_names_map_to_keys() {
        assert_eq!(env_key("SYNCGUARD_DATABASE_URL"), scalar("database_url"));
        assert_eq!(
            env_key("SYNCGUARD_QUEUE_LEASE_MS"),
            scalar("queue.lease_ms")
        );
        assert_eq!(
            env_key("SYNCGUARD_API_BODY_LIMIT_BYTES"),
            scalar("api.body_limit_bytes")
        );
        assert_eq!(
            env_key("SYNCGUARD_MASTER_KEY_FILE"),
            scalar("master_key_file")
        );
        assert_eq!(
            env_key("SYNCGUARD_PREVIOUS_MASTER_KEYS"),
            Some(EnvKey::List("previous_master_keys".into()))
        );
        assert_eq!(
            env_key("SYNCGUARD_PROVIDER_FILES"),
            Some(EnvKey::List("provider_files".into()))
        );
        assert_eq!(
            env_key("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS"),
            scalar("queue.kinds.webhook.process.max_attempts")
        );
        assert_eq!(
            env_key("SYNCGUARD_QUEUE_KINDS_MY__KIND_TIMEOUT_MS"),
            scalar("queue.kinds.my_kind.timeout_ms")
        );
        assert_eq!(env_key("SYNCGUARD_QUEUE_KINDS_TIMEOUT_MS"), None);
        assert_eq!(env_key("SYNCGUARD_QUEUE_WOKERS"), None);
        assert_eq!(env_key("SYNCGUARD_QUEUE"), None);
        assert_eq!(env_key("DATABASE_URL"), None);
        for var in CLI_VARIABLES {
            assert_eq!(env_key(var), None, "{var} is not configuration");
        }
    }

    #[test]
    fn every_key_has_a_variable() {
        // Each key (but the per-kind map, tested above) round-trips through its variable name.
        let keys = known_keys();
        assert!(keys.len() >= 30, "{keys:?}");
        for (path, list) in keys {
            let var = format!("SYNCGUARD_{}", path.replace('.', "_").to_ascii_uppercase());
            let want = if list {
                EnvKey::List(path.clone())
            } else {
                EnvKey::Scalar(path.clone())
            };
            assert_eq!(env_key(&var), Some(want), "{var}");
        }
    }

    #[test]
    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn cli_variables_never_collide_with_keys() {
        figment::Jail::expect_with(|jail| {
            for var in CLI_VARIABLES {
                jail.set_env(var, "x");
            }
            jail.set_env("SYNCGUARD_QUEUE_WOKERS", "3");
            let c = Config::load(None, &Overrides::default()).unwrap().config;
            assert_eq!(c, Config::default());
            assert_eq!(unrecognized_env_vars(), ["SYNCGUARD_QUEUE_WOKERS"]);
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn every_kind_of_key_is_settable_by_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("SYNCGUARD_MASTER_KEY_FILE", "/etc/syncguard/master.key");
            jail.set_env("SYNCGUARD_PREVIOUS_MASTER_KEYS", "a2V5MQ==, a2V5Mg==");
            jail.set_env(
                "SYNCGUARD_PROVIDER_FILES",
                "/etc/p/one.toml,/etc/p/two.toml",
            );
            jail.set_env("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS", "9");
            jail.set_env("SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_TIMEOUT_MS", "1500");
            jail.set_env("SYNCGUARD_QUEUE_KINDS_SYNC_RESOURCE_TIMEOUT_MS", "60000");
            jail.set_env("SYNCGUARD_QUEUE_WORKERS", "7");
            jail.set_env("SYNCGUARD_ROLE", "worker");
            let c = Config::load(None, &Overrides::default()).unwrap().config;
            assert_eq!(c.master_key_file, "/etc/syncguard/master.key");
            assert_eq!(c.previous_master_keys, ["a2V5MQ==", "a2V5Mg=="]);
            assert_eq!(c.provider_files, ["/etc/p/one.toml", "/etc/p/two.toml"]);
            let wp = &c.queue.kinds["webhook.process"];
            assert_eq!((wp.max_attempts, wp.timeout_ms), (Some(9), Some(1500)));
            assert_eq!(c.queue.kinds["sync.resource"].timeout_ms, Some(60_000));
            assert_eq!(c.max_attempts("webhook.process"), 9);
            assert_eq!((c.queue.workers, c.role), (7, NodeRole::Worker));
            // The environment wins over the file, key by key within a kind.
            jail.create_file(
                "syncguard.toml",
                "[queue.kinds.\"webhook.process\"]\nmax_attempts = 2\n[queue.kinds.\"sync.tick\"]\nmax_attempts = 3\n",
            )?;
            let c = Config::load(None, &Overrides::default()).unwrap().config;
            assert_eq!(c.queue.kinds["webhook.process"].max_attempts, Some(9));
            assert_eq!(c.queue.kinds["sync.tick"].max_attempts, Some(3));
            // A bad value names the key.
            jail.set_env("SYNCGUARD_QUEUE_KINDS_SYNC_TICK_MAX_ATTEMPTS", "often");
            let e = Config::load(None, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("queue.kinds.sync.tick.max_attempts") && e.contains("SYNCGUARD_"),
                "{e}"
            );
            Ok(())
        });
    }

    /// The example file at the root of the repository.
    const EXAMPLE: &str = include_str!("../../../syncguard.example.toml");

    #[test]
    fn the_example_file_parses_into_exactly_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).expect("the example parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn the_example_file_names_every_key() {
        // Keys missing from the example would still parse (to their defaults): compare names.
        fn walk(prefix: &str, t: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(t) if path != "queue.kinds" => walk(&path, t, out),
                    _ => out.push(path),
                }
            }
        }
        let table: toml::Table = toml::from_str(EXAMPLE).unwrap();
        let mut in_example = Vec::new();
        walk("", &table, &mut in_example);
        in_example.retain(|k| k != "queue.kinds");
        in_example.sort();
        let mut keys: Vec<String> = known_keys().into_iter().map(|(k, _)| k).collect();
        keys.sort();
        assert_eq!(in_example, keys, "syncguard.example.toml lists every key");
        assert!(
            table["queue"].get("kinds").is_some(),
            "[queue.kinds] is shown"
        );
    }

    #[test]
    fn redaction_hides_passwords_and_master_keys() {
        let c = Config {
            database_url: "postgres://sg:hunter2@db:5432/sg?sslmode=require&password=hunter3"
                .into(),
            previous_master_keys: vec!["c2VjcmV0".into()],
            ..Config::default()
        };
        let r = c.redacted();
        assert_eq!(
            r.database_url,
            "postgres://sg:***@db:5432/sg?sslmode=require&password=***"
        );
        assert_eq!(r.previous_master_keys, ["***"]);
        let text = toml::to_string(&r).unwrap();
        assert!(
            !text.contains("hunter") && !text.contains("c2VjcmV0"),
            "{text}"
        );
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    /// Loads `text` as the file, inside a [`figment::Jail`]: the jail's lock keeps tests that
    /// set variables from running at the same time.
    #[allow(clippy::result_large_err)]
    fn load_toml(text: &str) -> Result<Config, ConfigError> {
        let mut out = None;
        figment::Jail::expect_with(|jail| {
            let path = jail.directory().join("syncguard.toml");
            std::fs::write(&path, text).unwrap();
            out = Some(Config::load(Some(&path), &Overrides::default()).map(|l| l.config));
            Ok(())
        });
        out.expect("the jail ran")
    }

    #[test]
    fn file_values_apply_and_errors_name_the_key() {
        let c = load_toml("listen = \"127.0.0.1:9999\"\n[queue]\nworkers = 4\n").unwrap();
        assert_eq!((c.listen.as_str(), c.queue.workers), ("127.0.0.1:9999", 4));
        let e = load_toml("[queue]\nworkers = \"many\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue.workers"), "{e}");
        let e = load_toml("[queue]\nwokers = 3\n").unwrap_err().to_string();
        assert!(e.contains("wokers"), "{e}");
        let e = load_toml("listen = \"nowhere\"\n").unwrap_err().to_string();
        assert!(e.contains("`listen`"), "{e}");
        let e = load_toml("[queue]\nlease_ms = 10\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("queue.lease_ms"), "{e}");
        let c = load_toml("[store]\nacquire_timeout_ms = 700\n").unwrap();
        assert_eq!(c.store.acquire_timeout_ms, 700);
        let e = load_toml("[store]\nprobe_interval_ms = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.probe_interval_ms"), "{e}");
    }

    #[test]
    // figment's Jail closure returns figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn egress_allow_comes_from_the_file_or_the_environment() {
        assert_eq!(
            env_key("SYNCGUARD_EGRESS_ALLOW"),
            Some(EnvKey::List("egress.allow".into()))
        );
        let c =
            load_toml("[egress]\nallow = [\"10.0.0.0/8\", \"api.internal.example\"]\n").unwrap();
        assert_eq!(c.egress.allow, ["10.0.0.0/8", "api.internal.example"]);
        let e = load_toml("[egress]\nallow = [\"10.0.0.0/99\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("egress.allow") && e.contains("10.0.0.0/99"),
            "{e}"
        );
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "SYNCGUARD_EGRESS_ALLOW",
                "[\"192.168.0.0/16\", \"db.internal\"]",
            );
            let c = Config::load(None, &Overrides::default()).unwrap().config;
            assert_eq!(c.egress.allow, ["192.168.0.0/16", "db.internal"]);
            jail.set_env("SYNCGUARD_EGRESS_ALLOW", "192.168.0.0/16, db.internal,");
            let c = Config::load(None, &Overrides::default()).unwrap().config;
            assert_eq!(c.egress.allow, ["192.168.0.0/16", "db.internal"]);
            Ok(())
        });
    }
}
