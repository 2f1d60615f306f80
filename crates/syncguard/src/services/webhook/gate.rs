//! A connection's gate: what the gateway must know to take a delivery for it (tenant, provider,
//! signature scheme with its unsealed secrets, `allow_unsigned`), and the cache that keeps it.
//!
//! Reading a connection and opening its sealed secrets for every delivery would cost two store
//! reads and an AEAD open per webhook. The cache keeps each gate for [`super::GATE_TTL`]; a
//! secret removed through the API stops verifying at once when the API calls
//! [`super::WebhookState::invalidate`], and at the latest when the entry expires.

use crate::services::Services;
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use syncguard_core::connection::ConnectionStatus;
use syncguard_core::signature::{verify, FnHeaders, VerifyError, WebhookAuth};
use syncguard_store::{Scope, StoreError};

/// Everything needed to verify and store a delivery for one connection.
#[derive(Debug)]
pub struct Gate {
    pub connection_id: String,
    pub tenant_id: String,
    /// Also the `provider` label of the metrics.
    pub provider: String,
    /// `None` when the connection has no secret (only with `allow_unsigned`).
    auth: Option<WebhookAuth>,
    /// Accept deliveries whose signature does not verify. Development only: always false in
    /// production, whatever the connection says.
    allow_unsigned: bool,
}

/// How a delivery was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub delivery_id: Option<String>,
    /// From a header that carries it (Shopify, GitHub).
    pub event_type: Option<String>,
    /// Stored with the event: `{scheme}:secret[{i}]` (which secret matched, so an operator
    /// can tell when an old one stops being used), or `unsigned: {why}`.
    pub signature: String,
    /// Accepted only because the connection allows unsigned deliveries.
    pub unsigned: bool,
}

/// Why a connection cannot take deliveries.
#[derive(Debug)]
pub enum GateError {
    /// No such connection, disconnected, or not set up for webhooks: all the same 404, so
    /// nothing is learned about connections by probing.
    Unknown,
    Store(StoreError),
    /// Stored secrets or config cannot be used (wrong master key, corrupt row).
    Broken(String),
}

impl From<StoreError> for GateError {
    fn from(e: StoreError) -> Self {
        GateError::Store(e)
    }
}

impl Gate {
    /// Verifies a delivery on its raw body. `now_s` is the current time in unix seconds.
    pub fn check(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_s: i64,
    ) -> Result<Signed, VerifyError> {
        let lookup = FnHeaders::new(|name: &str| headers.get(name).and_then(|v| v.to_str().ok()));
        let verified = match &self.auth {
            Some(auth) => verify(auth, &lookup, body, now_s).map(|v| (auth.scheme().name(), v)),
            None => Err(VerifyError::MissingHeader(
                "signature (no secret configured)".into(),
            )),
        };
        match verified {
            Ok((scheme, v)) => Ok(Signed {
                delivery_id: v.delivery_id,
                event_type: v.event_type,
                signature: format!("{scheme}:secret[{}]", v.secret_index),
                unsigned: false,
            }),
            Err(e) if self.allow_unsigned => Ok(Signed {
                // The scheme's own headers still name the delivery when they are there.
                delivery_id: [
                    "webhook-id",
                    "svix-id",
                    "x-shopify-webhook-id",
                    "x-github-delivery",
                ]
                .iter()
                .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
                .map(str::to_string),
                event_type: ["x-shopify-topic", "x-github-event"]
                    .iter()
                    .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
                    .map(str::to_string),
                signature: format!("unsigned: {e}"),
                unsigned: true,
            }),
            Err(e) => Err(e),
        }
    }
}

/// Gates by connection id, each trusted for a while.
pub struct GateCache {
    entries: RwLock<HashMap<String, (Instant, Arc<Gate>)>>,
    ttl: Duration,
}

/// Past this many entries, expired ones are swept on insert.
const SWEEP_AT: usize = 10_000;

impl GateCache {
    pub fn new(ttl: Duration) -> GateCache {
        GateCache {
            entries: RwLock::new(HashMap::new()),
            ttl,
        }
    }

    /// The gate of `connection_id`, from the cache or freshly loaded.
    pub async fn get(&self, app: &Services, connection_id: &str) -> Result<Arc<Gate>, GateError> {
        if let Some((at, gate)) = self.read().get(connection_id) {
            if at.elapsed() < self.ttl {
                return Ok(gate.clone());
            }
        }
        let gate = Arc::new(load(app, connection_id).await?);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        entries.insert(connection_id.to_string(), (Instant::now(), gate.clone()));
        Ok(gate)
    }

    /// The provider of a cached gate, fresh or not (to count a refusal against it).
    pub fn cached_provider(&self, connection_id: &str) -> Option<String> {
        self.read()
            .get(connection_id)
            .map(|(_, gate)| gate.provider.clone())
    }

    pub fn invalidate(&self, connection_id: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(connection_id);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, (Instant, Arc<Gate>)>> {
        // A panic elsewhere cannot leave a half-written entry: inserts are single statements.
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a connection and unseals its webhook secrets.
async fn load(app: &Services, connection_id: &str) -> Result<Gate, GateError> {
    let conn = app
        .store
        .get_connection(&Scope::All, None, connection_id)
        .await?
        .ok_or(GateError::Unknown)?;
    if conn.status == ConnectionStatus::Disconnected {
        return Err(GateError::Unknown);
    }
    let mut config = conn
        .config
        .get("webhook")
        .and_then(Value::as_object)
        .cloned()
        .ok_or(GateError::Unknown)?;
    let wants_unsigned = config
        .remove("allow_unsigned")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    let allow_unsigned = wants_unsigned && !app.webhooks.production;
    if wants_unsigned && app.webhooks.production {
        tracing::error!(
            connection_id,
            "allow_unsigned is refused in production; signatures are required"
        );
    }
    let secrets: Vec<String> = match app
        .store
        .connection_secrets(connection_id)
        .await?
        .and_then(|s| s.webhook_secrets)
    {
        None => Vec::new(),
        Some(sealed) => {
            let clear = app
                .sealer
                .open(&sealed, connection_id)
                .map_err(|e| GateError::Broken(format!("webhook secrets cannot be opened: {e}")))?;
            serde_json::from_slice(&clear)
                .map_err(|e| GateError::Broken(format!("webhook secrets are not a list: {e}")))?
        }
    };
    // The secrets were split out when the connection was created; put them back for the
    // verifier, with the provider's default scheme when the connection names none.
    config.remove("secret_count");
    if !config.contains_key("scheme") {
        if let Some(def) = app.providers.webhook_def(&conn.provider) {
            config.insert("scheme".into(), json!(def.scheme));
        }
    }
    let auth = if secrets.is_empty() {
        None
    } else {
        config.insert("secrets".into(), json!(secrets));
        Some(
            WebhookAuth::from_config(&Value::Object(config))
                .map_err(|e| GateError::Broken(format!("stored webhook config is invalid: {e}")))?,
        )
    };
    if auth.is_none() && !wants_unsigned {
        return Err(GateError::Unknown);
    }
    if allow_unsigned {
        tracing::warn!(connection_id, provider = %conn.provider,
            "connection accepts UNSIGNED webhooks (allow_unsigned): for local development only, refused in production");
    }
    Ok(Gate {
        connection_id: conn.id,
        tenant_id: conn.tenant_id,
        provider: conn.provider,
        auth,
        allow_unsigned,
    })
}
