//! The health snapshot: one round of store reads ([`gather`]), then a pure assembly at a
//! chosen `now` ([`assemble`]), so the rules can be tested with any clock.

use super::status::{self, Burn, BurnPolicy, Signals, Status, Thresholds};
use crate::clock::rfc3339;
use crate::services::sync::plan::SyncSettings;
use crate::services::Services;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use syncguard_core::breaker::CircuitView;
use syncguard_core::connection::ConnectionStatus;
use syncguard_core::Millis;
use syncguard_store::checkpoints::health::{
    event_id_floor, CheckpointBrief, QueueDepth, WebhookBacklog,
};
use syncguard_store::connections::Connection;
use syncguard_store::page::PageRequest;
use syncguard_store::provider_state::CircuitFilter;
use syncguard_store::queue::JobState;
use syncguard_store::{Scope, StoreError};
use utoipa::ToSchema;

const DAY_MS: i64 = 86_400_000;
/// Webhook processing times are taken from events received in this window…
const LATENCY_WINDOW_MS: i64 = 15 * 60_000;
/// …at most this many, newest first.
const LATENCY_SAMPLE: i64 = 10_000;

/// Everything read from the store for one snapshot.
#[derive(Debug, Default)]
pub struct Inputs {
    pub connections: Vec<Connection>,
    pub circuits: HashMap<String, CircuitView>,
    pub near_depletion: HashSet<String>,
    pub checkpoints: Vec<CheckpointBrief>,
    /// Window lengths of `outcomes`.
    pub windows: Vec<i64>,
    /// `(ok, failed)` per window, by connection.
    pub outcomes: HashMap<String, Vec<(i64, i64)>>,
    pub depths: Vec<QueueDepth>,
    pub queue: Vec<(JobState, i64)>,
    pub dead_recent: HashMap<String, i64>,
    pub backlog: HashMap<String, WebhookBacklog>,
    pub latencies_ms: HashMap<String, Vec<f64>>,
}

/// Reads the inputs; `backlog_from` bounds the webhook backlog scan (see `HealthState`).
pub async fn gather(
    app: &Services,
    now: Millis,
    backlog_from: &str,
    policy: &BurnPolicy,
) -> Result<Inputs, StoreError> {
    let store = &app.store;
    let mut inputs = Inputs::default();
    let mut page = PageRequest {
        after: None,
        limit: 500,
    };
    loop {
        let batch = store.list_connections(&Scope::All, None, &page).await?;
        inputs.connections.extend(
            batch
                .items
                .into_iter()
                .filter(|c| c.status != ConnectionStatus::Disconnected),
        );
        match batch.next_cursor {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let by_id: HashMap<&str, &Connection> = inputs
        .connections
        .iter()
        .map(|c| (c.id.as_str(), c))
        .collect();
    let mut page = PageRequest {
        after: None,
        limit: 500,
    };
    loop {
        let batch = store
            .list_circuits(&Scope::All, None, &CircuitFilter::default(), &page)
            .await?;
        for row in batch.items {
            if let Some(conn) = by_id.get(row.connection_id.as_str()) {
                let cfg = app.providers.breaker_config(conn);
                inputs
                    .circuits
                    .insert(row.connection_id.clone(), row.machine.view(&cfg, now));
            }
        }
        match batch.next_cursor {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    inputs.near_depletion = inputs
        .connections
        .iter()
        .filter(|c| app.providers.near_depletion(&c.id))
        .map(|c| c.id.clone())
        .collect();
    inputs.checkpoints = store.checkpoint_briefs().await?;
    let mut windows = policy.windows();
    windows.push(DAY_MS);
    windows.sort_unstable();
    windows.dedup();
    for w in store.outcome_windows(now, &windows).await? {
        inputs.outcomes.insert(w.connection_id, w.sums);
    }
    inputs.windows = windows;
    inputs.depths = store.queue_depths().await?;
    inputs.queue = store.job_counts().await?;
    inputs.dead_recent = store
        .recent_dead_letters(now - DAY_MS)
        .await?
        .into_iter()
        .collect();
    inputs.backlog = store
        .webhook_backlog(backlog_from)
        .await?
        .into_iter()
        .map(|b| (b.connection_id.clone(), b))
        .collect();
    for (conn, ms) in store
        .webhook_latencies(&event_id_floor(now - LATENCY_WINDOW_MS), LATENCY_SAMPLE)
        .await?
    {
        inputs.latencies_ms.entry(conn).or_default().push(ms as f64);
    }
    Ok(inputs)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct QueueCounts {
    pub available: i64,
    pub running: i64,
    pub retryable: i64,
    pub dead: i64,
}

impl QueueCounts {
    pub fn add(&mut self, state: JobState, n: i64) {
        match state {
            JobState::Available => self.available += n,
            JobState::Running => self.running += n,
            JobState::Retryable => self.retryable += n,
            JobState::Dead => self.dead += n,
            JobState::Succeeded | JobState::Cancelled => {}
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CircuitHealth {
    /// closed, open, half_open
    pub state: String,
    /// open or closed when an operator forced it.
    pub forced: Option<String>,
    /// Failures in the breaker's window.
    pub failures: u32,
    pub opened_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, ToSchema)]
pub struct RateLimitHealth {
    /// At most 10 % of the credential's room left (as this node last saw it).
    pub near_depletion: bool,
}

/// One connection in the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConnectionHealth {
    pub id: String,
    pub tenant_id: String,
    pub name: String,
    pub provider: String,
    pub status: Status,
    /// Why it is not healthy.
    pub reasons: Vec<String>,
    /// pending, active, paused, error
    pub connection_status: String,
    /// Seconds since the stalest resource last completed a sync (null: it does not sync).
    pub sync_lag_s: Option<f64>,
    /// Age of the oldest webhook still waiting for processing (0: none waiting; null: it
    /// receives no webhooks).
    pub webhook_lag_s: Option<f64>,
    /// Share of sync's provider calls that failed in the last 24 h (null: no calls).
    pub error_rate_24h: Option<f64>,
    /// Dead letters of the last 24 h not yet reviewed.
    pub recent_failures: i64,
    /// Jobs waiting or running.
    pub queue_depth: i64,
    /// Receive-to-processed time of recent webhooks.
    pub webhook_latency_ms: Latency,
    pub circuit: CircuitHealth,
    pub rate_limit: RateLimitHealth,
    pub burn: Burn,
}

/// A snapshot, as kept in memory: every connection, and queue counts for any view.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub generated_at: Millis,
    pub connections: Vec<ConnectionHealth>,
    /// The whole queue (platform view).
    pub queue: QueueCounts,
    /// Per (tenant, connection, state), for tenant and connection-limited views.
    pub depths: Vec<QueueDepth>,
}

/// Builds the snapshot from `inputs` as of `now`.
pub fn assemble(
    app: &Services,
    inputs: &Inputs,
    now: Millis,
    thresholds: &Thresholds,
    policy: &BurnPolicy,
) -> Snapshot {
    let mut queue = QueueCounts::default();
    for (state, n) in &inputs.queue {
        queue.add(*state, *n);
    }
    let connections = inputs
        .connections
        .iter()
        .map(|c| connection_health(app, c, inputs, now, thresholds, policy))
        .collect();
    Snapshot {
        generated_at: now,
        connections,
        queue,
        depths: inputs.depths.clone(),
    }
}

fn connection_health(
    app: &Services,
    conn: &Connection,
    inputs: &Inputs,
    now: Millis,
    thresholds: &Thresholds,
    policy: &BurnPolicy,
) -> ConnectionHealth {
    let sync_lag_s = sync_lag_ms(app, conn, &inputs.checkpoints, now).map(|ms| ms as f64 / 1000.0);
    let receives_webhooks = conn.config.get("webhook").is_some() || conn.last_webhook_at.is_some();
    let webhook_lag_s = match inputs.backlog.get(&conn.id) {
        Some(b) => Some((now - b.oldest_received_at).max(0) as f64 / 1000.0),
        None if receives_webhooks => Some(0.0),
        None => None,
    };
    let sums = inputs.outcomes.get(&conn.id);
    let counts = |ms: i64| {
        let i = inputs.windows.iter().position(|w| *w == ms);
        i.and_then(|i| sums.map(|s| s[i])).unwrap_or((0, 0))
    };
    let (ok, failed) = counts(DAY_MS);
    let error_rate_24h = (ok + failed > 0).then(|| failed as f64 / (ok + failed) as f64);
    let recent_failures = inputs.dead_recent.get(&conn.id).copied().unwrap_or(0);
    let signals = Signals {
        // A paused connection is behind on purpose.
        sync_lag_s: sync_lag_s.filter(|_| conn.status != ConnectionStatus::Paused),
        webhook_lag_s,
        error_rate_24h,
        recent_failures: recent_failures as f64,
        connection_error: (conn.status == ConnectionStatus::Error)
            .then(|| "see its status history".to_string()),
    };
    let (status, reasons) = status::classify(&signals, thresholds);
    let queue_depth = inputs
        .depths
        .iter()
        .filter(|d| d.connection_id.as_deref() == Some(&conn.id) && d.state.is_active())
        .map(|d| d.count)
        .sum();
    let mut latencies = inputs
        .latencies_ms
        .get(&conn.id)
        .cloned()
        .unwrap_or_default();
    latencies.sort_by(f64::total_cmp);
    let circuit = inputs
        .circuits
        .get(&conn.id)
        .cloned()
        .unwrap_or(CircuitView {
            state: Default::default(),
            forced: None,
            failures: 0,
            opened_at: None,
        });
    ConnectionHealth {
        id: conn.id.clone(),
        tenant_id: conn.tenant_id.clone(),
        name: conn.name.clone(),
        provider: conn.provider.clone(),
        status,
        reasons,
        connection_status: conn.status.clone(),
        sync_lag_s,
        webhook_lag_s,
        error_rate_24h: error_rate_24h.map(|r| (r * 10_000.0).round() / 10_000.0),
        recent_failures,
        queue_depth,
        webhook_latency_ms: Latency {
            p50: status::percentile(&latencies, 0.50),
            p95: status::percentile(&latencies, 0.95),
            p99: status::percentile(&latencies, 0.99),
        },
        circuit: CircuitHealth {
            state: circuit.state.as_str().to_string(),
            forced: circuit.forced.map(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            }),
            failures: circuit.failures,
            opened_at: circuit.opened_at.map(rfc3339),
        },
        rate_limit: RateLimitHealth {
            near_depletion: inputs.near_depletion.contains(&conn.id),
        },
        burn: status::burn(policy, counts),
    }
}

/// How far behind the stalest resource of a syncing connection is: since its last completed
/// run, or since the connection was created while its first run has not completed.
fn sync_lag_ms(
    app: &Services,
    conn: &Connection,
    checkpoints: &[CheckpointBrief],
    now: Millis,
) -> Option<Millis> {
    if !conn.has_credentials || conn.status == ConnectionStatus::Pending {
        return None;
    }
    let def = app.providers.get(&conn.provider).filter(|d| d.has_api())?;
    let resources = SyncSettings::from_config(&conn.config, def).ok()?.resources;
    resources
        .iter()
        .map(|r| {
            checkpoints
                .iter()
                .find(|c| c.connection_id == conn.id && &c.resource == r)
                .and_then(|c| c.last_success_at)
                .unwrap_or(conn.created_at)
        })
        .min()
        .map(|oldest| (now - oldest).max(0))
}
