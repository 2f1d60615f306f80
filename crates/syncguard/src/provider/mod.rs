//! The provider layer (SPEC §1 "provider", §3.3, §5): provider definitions, the outbound HTTP
//! client, the rate limiter, the circuit breaker and sealed credentials.
//!
//! # Calling a provider (for sync, publish, reconcile and webhook refetch)
//!
//! ```ignore
//! let client = app.providers.client(&app, &connection).await?;     // or client_by_id(&app, id)
//! // Lists: the cursor is opaque text; pass `next` back until it is `None`.
//! let page = client.list_page("orders", cursor.as_deref(), Some(since_ms)).await?;
//! for item in &page.items {
//!     let res = client.resource("orders")?;
//!     let (id, updated) = (res.id_of(item), res.updated_at_of(item));
//! }
//! // One object (`None`: the provider says it does not exist).
//! let item = client.get("inventory_item", "SKU-1").await?;
//! // A write operation of the definition, with the publish's idempotency key.
//! let done = client.write("upsert_inventory_item", "SKU-1", Some(&body), Some(&key)).await?;
//! // In a job handler, a failure goes to the queue as it is:
//! //     Err(provider_error)?  (ProviderError converts into JobError)
//! ```
//!
//! Every call passes the connection's circuit breaker, then the credential's rate limiter
//! (sleeping for its turn, up to `rate_limit.max_wait_s`), then authentication. Errors arrive as
//! [`ProviderError`] with the queue's class already decided:
//!
//! | what happened | class | `retry_after_ms` |
//! |---|---|---|
//! | 5xx, 408, network error, timeout, a 2xx that is not JSON | `transient` | — |
//! | 429 not cured within the wait budget, or the limiter's wait exceeds it | `rate_limited` | the provider's or limiter's hint |
//! | other 4xx (401 after one OAuth2 refresh), a redirect to another origin, unknown resource or operation, bad credentials | `permanent` | — |
//! | refused by the egress policy, an answer over `max_response_bytes`, an external id that is not one path segment (`.`, `..`, empty) | `permanent` | — |
//! | the breaker is open | `circuit_open` | until the breaker lets a probe through |
//!
//! `[[errors]]` rules of the definition override the status classes (Trackstar's 501 for a
//! resource the warehouse lacks is permanent). Non-critical work checks
//! [`ProviderClient::near_depletion`] and yields while it is set.
//!
//! # Definitions
//! Built-in definitions are `providers/*.toml` at the workspace root, compiled into the binary;
//! operators add their own with `provider_files` (same format, see [`definition`]). A
//! definition that cannot be used stops the start, naming the file, the key and the reason.
//! A connection's `config.base_url` points a definition at another host (the mock, a sandbox);
//! `config.rate_limit` and `config.circuit` override single fields of its limits.
//!
//! # Other seams
//! - [`ProviderState::get`] / [`ProviderState::check_connection`]: validate a connection's
//!   provider and config at creation (422 naming the field).
//! - [`ProviderState::webhook_def`] / [`ProviderState::event_rule`]: how the gateway reads
//!   webhooks.
//! - [`ProviderState::near_depletion`], [`ProviderState::circuit_status`]: health.
//! - [`ProviderState::refresh_gauges`]: recounts `syncguard_circuit_state` from the store (the
//!   engine's gauge loop may call it; transitions already do).
//! - [`credentials::reseal_all`]: `syncguard secrets rotate`.
//!
//! # Layout
//! - `definition` (the TOML shapes), `load` (built-ins, `provider_files`, validation), `time`.
//! - `client` ([`ProviderClient`]), `paginate`, `auth`, `error`.
//! - `limiter`, `circuit`: run-time state over the pure core math, shared through the store.
//! - `api`: `GET /v1/providers`, `GET /v1/circuits`, `POST /v1/circuits/{key}/force`.
//! - `credentials`: sealing at rest and key rotation.

mod auth;
pub mod circuit;
mod client;
pub mod credentials;
pub mod definition;
mod error;
mod limiter;
pub mod load;
pub mod paginate;
pub mod time;

pub use client::{ProviderClient, WriteOutcome};
pub use error::{excerpt, ProviderError};
pub use paginate::Page;

use crate::config::Config;
use crate::egress::Egress;
use crate::env::Env;
use definition::{EventRule, ProviderDef, RateLimitDef, WebhookDef};
use load::Loaded;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use syncguard_core::breaker::{BreakerConfig, CircuitState, CircuitView};
use syncguard_core::breaker::{BreakerState, ForceMode, Transition};
use syncguard_store::connections::Connection;
use syncguard_store::provider_state::circuit_key;

/// What the provider client's parts work with: the node's infrastructure and the provider state.
#[derive(Clone)]
pub(crate) struct ProviderCtx {
    env: Env,
    pub(crate) providers: Arc<ProviderState>,
}

impl std::ops::Deref for ProviderCtx {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

/// Provider definitions, limiters, breakers and token caches, for the life of the node.
pub struct ProviderState {
    defs: BTreeMap<String, Loaded>,
    limiters: limiter::Limiters,
    tokens: auth::TokenCache,
    circuits: circuit::Circuits,
    calls: CallMetrics,
    /// Outbound HTTP to providers. Not the shared `app.http`: redirects are followed only within
    /// one origin, because credential headers such as `x-trackstar-access-token` (unlike
    /// `Authorization`) would otherwise travel to wherever a redirect points. Its names resolve
    /// through `egress`.
    http: reqwest::Client,
    /// The egress policy every provider call passes (SPEC §3.3).
    egress: Egress,
}

/// Provider calls by outcome, and their latency (labels: provider and outcome only).
pub(crate) struct CallMetrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
}

impl ProviderState {
    /// Loads the built-in definitions and those of `provider_files`; a definition that cannot be
    /// used is an error naming its file, key and reason, and the node does not start.
    pub fn new(config: &Config, registry: &Registry) -> anyhow::Result<ProviderState> {
        let defs = load::load_all(&config.provider_files)?;
        let egress = Egress::new(config.egress_policy().map_err(anyhow::Error::msg)?);
        let requests = IntCounterVec::new(
            Opts::new(
                "syncguard_provider_requests_total",
                "Calls to provider APIs, by outcome.",
            ),
            &["provider", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "syncguard_provider_request_duration_seconds",
                "Provider call latency.",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["provider"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(ProviderState {
            defs,
            limiters: limiter::Limiters::new(registry)?,
            tokens: auth::TokenCache::default(),
            circuits: circuit::Circuits::new(registry)?,
            calls: CallMetrics { requests, duration },
            http: provider_http(&egress)?,
            egress,
        })
    }

    /// A provider's definition.
    pub fn get(&self, name: &str) -> Option<&ProviderDef> {
        self.defs.get(name).map(|l| l.def.as_ref())
    }

    /// Every definition, by name, with where it came from (`built-in` or `file`).
    pub fn all(&self) -> impl Iterator<Item = (&ProviderDef, &'static str)> {
        self.defs.values().map(|l| (l.def.as_ref(), l.source))
    }

    /// How webhooks of `provider` are read, if it receives any.
    pub fn webhook_def(&self, provider: &str) -> Option<&WebhookDef> {
        self.get(provider)?.webhook.as_ref()
    }

    /// The first rule of `provider` matching `event_type`.
    pub fn event_rule(&self, provider: &str, event_type: &str) -> Option<&EventRule> {
        self.webhook_def(provider)?
            .events
            .iter()
            .find(|r| r.matches(event_type))
    }

    /// Checks what a new or changed connection names: a known provider, and a usable
    /// `base_url`, `rate_limit`, `circuit` and `resources` in its config. The error names the
    /// field (`provider`, `config.rate_limit.rps`, …) for a 422.
    pub fn check_connection(&self, provider: &str, config: &Value) -> Result<(), String> {
        let def = self
            .get(provider)
            .ok_or_else(|| format!("field `provider`: unknown provider `{provider}`"))?;
        if let Some(url) = config.get("base_url") {
            let url = url
                .as_str()
                .ok_or("field `config.base_url`: expected an http(s) URL")?;
            self.egress
                .check_base_url(url)
                .map_err(|e| format!("field `config.base_url`: {e}"))?;
        }
        if let Some(resources) = config.get("resources") {
            let names = resources
                .as_array()
                .ok_or("field `config.resources`: expected a list of resource names")?;
            for name in names {
                let name = name.as_str().unwrap_or_default();
                if def.resource(name).is_none() {
                    return Err(format!(
                        "field `config.resources`: provider `{provider}` has no resource `{name}`"
                    ));
                }
            }
        }
        limit_for(def, config)?;
        breaker_for(def, config)?;
        Ok(())
    }

    /// A client for `connection`'s provider API: opens its credentials and binds it to its
    /// credential's limiter and its own breaker.
    pub async fn client(
        self: &Arc<Self>,
        app: &Env,
        connection: &Connection,
    ) -> Result<ProviderClient, ProviderError> {
        let loaded = self.defs.get(&connection.provider).ok_or_else(|| {
            ProviderError::permanent(format!(
                "connection {} names unknown provider `{}`",
                connection.id, connection.provider
            ))
        })?;
        let def = loaded.def.clone();
        let base = match connection.config.get("base_url").and_then(Value::as_str) {
            Some(url) => url,
            None => def.base_url.as_deref().ok_or_else(|| {
                ProviderError::permanent(format!(
                    "provider `{}` is webhook-only: it has no API to call",
                    def.name
                ))
            })?,
        };
        // Checked again at call time: the policy may have changed since the connection was made.
        self.egress.check_base_url(base).map_err(|e| {
            ProviderError::permanent(format!("connection {}: base URL {e}", connection.id))
        })?;
        let base_url = base.trim_end_matches('/').to_string();
        let ctx = ProviderCtx {
            env: app.clone(),
            providers: self.clone(),
        };
        let creds = credentials::open(&ctx, &connection.id).await?;
        let fingerprint = creds.fingerprint(&def.name);
        let rate = limit_for(&def, &connection.config)
            .map_err(ProviderError::permanent)?
            .expect("an API definition has a rate limit");
        let breaker = breaker_for(&def, &connection.config).map_err(ProviderError::permanent)?;
        self.limiters.bind(&connection.id, &fingerprint);
        let timeout = Duration::from_secs(def.timeout_s);
        let auth_def = def.auth.clone().expect("validated: an API has auth");
        Ok(ProviderClient {
            auth: auth::Authenticator::new(
                auth_def,
                creds,
                fingerprint.clone(),
                &connection.id,
                &base_url,
                timeout,
            ),
            limiter: limiter::LimiterHandle {
                key: fingerprint,
                provider: def.name.clone(),
                cfg: rate.limit(),
                max_wait: Duration::from_secs(rate.max_wait_s),
            },
            circuit: circuit::Circuit {
                key: circuit_key(&connection.id, &def.name),
                tenant_id: connection.tenant_id.clone(),
                connection_id: connection.id.clone(),
                provider: def.name.clone(),
                cfg: breaker,
            },
            app: ctx,
            connection_id: connection.id.clone(),
            base_url,
            timeout,
            def,
        })
    }

    /// [`ProviderState::client`] for a connection id (any tenant: for jobs, which are already
    /// scoped by the queue).
    pub async fn client_by_id(
        self: &Arc<Self>,
        app: &Env,
        connection_id: &str,
    ) -> Result<ProviderClient, ProviderError> {
        let connection = app
            .store
            .get_connection(&syncguard_store::Scope::All, None, connection_id)
            .await
            .map_err(ProviderError::store)?
            .ok_or_else(|| {
                ProviderError::permanent(format!("connection {connection_id} does not exist"))
            })?;
        self.client(app, &connection).await
    }

    /// Whether `connection_id`'s rate limiter was near depletion (≤ 10 % left, or told to wait)
    /// when this node last used it; false when it never did. Cheap: no store read.
    pub fn near_depletion(&self, connection_id: &str) -> bool {
        self.limiters.near_depletion(connection_id)
    }

    /// The breaker of `connection` as the API shows it (`{state, forced, failures, opened_at}`).
    pub async fn circuit_status(
        &self,
        app: &Env,
        connection: &Connection,
    ) -> Result<CircuitView, syncguard_store::StoreError> {
        let machine = app
            .store
            .circuit(&circuit_key(&connection.id, &connection.provider))
            .await?
            .unwrap_or_default();
        let cfg = self.breaker_config(connection);
        Ok(machine.view(&cfg, app.clock.now_ms()))
    }

    /// The breaker tunables of a connection (its definition's, with its config's overrides; the
    /// definition's alone when the overrides are unusable).
    pub fn breaker_config(&self, connection: &Connection) -> BreakerConfig {
        self.breaker_of(&connection.provider, &connection.config)
    }

    /// [`ProviderState::breaker_config`] for a provider name and a connection config.
    pub fn breaker_of(&self, provider: &str, config: &Value) -> BreakerConfig {
        match self.get(provider) {
            Some(def) => breaker_for(def, config).unwrap_or(def.circuit),
            None => BreakerConfig::default(),
        }
    }

    /// An operator's override of `connection`'s breaker (`circuit_key` names it), audited as
    /// `actor`'s. Returns the transition (none when already in that mode) and the state after.
    pub async fn force_circuit(
        self: &Arc<Self>,
        app: &Env,
        connection: &Connection,
        key: String,
        mode: ForceMode,
        actor: circuit::Actor<'_>,
    ) -> Result<(Option<Transition>, BreakerState), syncguard_store::StoreError> {
        let circuit = circuit::Circuit {
            key,
            tenant_id: connection.tenant_id.clone(),
            connection_id: connection.id.clone(),
            provider: connection.provider.clone(),
            cfg: self.breaker_config(connection),
        };
        let ctx = ProviderCtx {
            env: app.clone(),
            providers: self.clone(),
        };
        circuit.force(&ctx, mode, actor).await
    }

    /// Recounts `syncguard_circuit_state` from the store, so that it shows the whole cluster.
    pub async fn refresh_gauges(&self, app: &Env) {
        match app.store.circuit_counts().await {
            Ok(counts) => {
                let gauge = &self.circuits.state;
                let providers: Vec<String> = self
                    .defs
                    .keys()
                    .cloned()
                    .chain(counts.iter().map(|c| c.0.clone()))
                    .collect();
                for provider in &providers {
                    for state in CircuitState::ALL {
                        let n = counts
                            .iter()
                            .find(|c| &c.0 == provider && c.1 == state.as_str())
                            .map_or(0, |c| c.2);
                        gauge.with_label_values(&[provider, state.as_str()]).set(n);
                    }
                }
            }
            Err(e) => {
                app.metrics
                    .background_errors_total
                    .with_label_values(&["circuit_gauges"])
                    .inc();
                tracing::warn!(error = %e, "recounting circuit states failed");
            }
        }
    }

    pub(crate) fn limiters(&self) -> &limiter::Limiters {
        &self.limiters
    }

    pub(crate) fn tokens(&self) -> &auth::TokenCache {
        &self.tokens
    }

    pub(crate) fn circuits(&self) -> &circuit::Circuits {
        &self.circuits
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The egress policy of provider calls, for other outbound HTTP made on a provider's behalf
    /// (link flows).
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    pub(crate) fn call_metrics(&self) -> &CallMetrics {
        &self.calls
    }
}

/// The provider HTTP client: rustls, a connect timeout, names resolved through the egress
/// policy, same-origin redirects only (a refused redirect comes back as the 3xx answer, which
/// the client reports as permanent), and every hop's URL checked by the policy as well.
fn provider_http(egress: &Egress) -> anyhow::Result<reqwest::Client> {
    let hops = egress.clone();
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        let same_origin =
            attempt.previous().first().map(|first| first.origin()) == Some(attempt.url().origin());
        if attempt.previous().len() > 5 {
            attempt.error("too many redirects")
        } else if let Err(refused) = hops.check_url(attempt.url()) {
            attempt.error(refused)
        } else if same_origin {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    Ok(egress
        .client_builder()
        .redirect(policy)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("syncguard/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// `value` with the fields of `patch` (an object) written over it.
fn overlay(mut value: Value, patch: Option<&Value>) -> Result<Value, String> {
    match (value.as_object_mut(), patch) {
        (_, None) => Ok(value),
        (Some(base), Some(Value::Object(p))) => {
            for (k, v) in p {
                base.insert(k.clone(), v.clone());
            }
            Ok(value)
        }
        _ => Err("must be an object".into()),
    }
}

/// The definition's rate limit with the connection's `config.rate_limit` written over it;
/// `None` for a webhook-only provider, which has nothing to limit.
fn limit_for(def: &ProviderDef, config: &Value) -> Result<Option<RateLimitDef>, String> {
    let key = "config.rate_limit";
    let patch = config.get("rate_limit");
    let Some(base) = def.rate_limit else {
        return match patch {
            Some(_) => Err(format!(
                "field `{key}`: provider `{}` is webhook-only",
                def.name
            )),
            None => Ok(None),
        };
    };
    let merged = overlay(serde_json::to_value(base).expect("serializes"), patch)
        .map_err(|e| format!("field `{key}`: {e}"))?;
    let rate: RateLimitDef =
        serde_json::from_value(merged).map_err(|e| format!("field `{key}`: {e}"))?;
    if rate.max_wait_s > 3_600 {
        return Err(format!("field `{key}.max_wait_s`: must be at most 3600"));
    }
    rate.limit()
        .validate()
        .map_err(|e| format!("field `{key}.{}`: {}", e.field, e.reason))?;
    Ok(Some(rate))
}

/// The definition's breaker with the connection's `config.circuit` written over it.
fn breaker_for(def: &ProviderDef, config: &Value) -> Result<BreakerConfig, String> {
    let key = "config.circuit";
    let merged = overlay(
        serde_json::to_value(def.circuit).expect("serializes"),
        config.get("circuit"),
    )
    .map_err(|e| format!("field `{key}`: {e}"))?;
    let cfg: BreakerConfig =
        serde_json::from_value(merged).map_err(|e| format!("field `{key}`: {e}"))?;
    cfg.validate()
        .map_err(|e| format!("field `{key}.{}`: {}", e.field, e.reason))?;
    Ok(cfg)
}

#[cfg(test)]
mod tests;
