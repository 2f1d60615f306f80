//! Health (SPEC §3.7): a snapshot of every connection's health, refreshed every 5 s by one
//! task ([`spawn`]) and served from memory by `GET /v1/health` and
//! `GET /v1/connections/{id}/health`, each caller seeing its tenant's (or its connections')
//! part of it.
//!
//! # Nothing on the request path touches the store
//! The snapshot is in memory, and so are the API keys that asked for it (`services::key_cache`:
//! verified keys by hash, for `api.key_cache_ttl_ms`). A store outage therefore leaves health
//! answering from the last snapshot, marked `stale` with the store reported unreachable; the
//! snapshotter skips its rounds while the store probe says the store is down, so it never
//! waits on the pool.
//!
//! # Layout
//! - [`status`]: the pure rules: SLO thresholds, burn-rate alerts, percentiles.
//! - [`snapshot`]: reading the inputs and assembling a snapshot at a given time.
//! - `api::health` (the HTTP layer): the two routes and the tenant-scoped views.

pub mod snapshot;
pub mod status;

use crate::config::Config;
use crate::services::Services;
use arc_swap::ArcSwapOption;
use prometheus::{IntGaugeVec, Opts, Registry};
use snapshot::Snapshot;
use status::{BurnPolicy, Status, Thresholds};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncguard_store::checkpoints::health::event_id_floor;
use syncguard_store::StoreError;
use tokio_util::sync::CancellationToken;

/// How often the snapshot is rebuilt.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(5);

/// How soon the snapshotter looks again while the store is unreachable.
const OUTAGE_RECHECK: Duration = Duration::from_millis(250);

/// How far back the first webhook backlog scan looks; later scans start at the oldest event
/// still waiting (or a minute back), so they stay short.
const BACKLOG_LOOKBACK_MS: i64 = 7 * 86_400_000;

/// The health snapshot and what keeps it.
pub struct HealthState {
    current: ArcSwapOption<Snapshot>,
    /// Where the next webhook backlog scan starts (an event id).
    backlog_from: Mutex<Option<String>>,
    /// Each connection's status in the last snapshot, to log changes.
    last_status: Mutex<HashMap<String, Status>>,
    /// Connections per health status.
    gauge: IntGaugeVec,
}

impl HealthState {
    pub fn new(_config: &Config, registry: &Registry) -> anyhow::Result<HealthState> {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "syncguard_health_connections",
                "Connections per health status, as of the last snapshot.",
            ),
            &["status"],
        )?;
        registry.register(Box::new(gauge.clone()))?;
        Ok(HealthState {
            current: ArcSwapOption::empty(),
            backlog_from: Mutex::new(None),
            last_status: Mutex::new(HashMap::new()),
            gauge,
        })
    }

    /// The last snapshot, if one was built.
    pub fn snapshot(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }
}

/// The snapshotter: rebuilds the snapshot every [`REFRESH_INTERVAL`] until `cancel`; skips
/// the round while the store is unreachable.
pub async fn run(app: Services, cancel: CancellationToken) {
    loop {
        // While the store is down, look again soon: the first round after it returns
        // replaces the stale snapshot.
        let pause = if !app.store.reachability().is_up() {
            tracing::debug!("store unreachable; health snapshot not refreshed");
            OUTAGE_RECHECK
        } else {
            if let Err(e) = refresh(&app).await {
                app.store.reachability().note(&e, app.clock.now_ms());
                tracing::warn!(error = %e, "health snapshot not refreshed; serving the previous one");
                app.metrics
                    .background_errors_total
                    .with_label_values(&["health"])
                    .inc();
            }
            REFRESH_INTERVAL
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => break,
        }
    }
}

/// Rebuilds the snapshot now, at the app's clock.
pub async fn refresh(app: &Services) -> Result<(), StoreError> {
    let health = &app.health;
    let now = app.clock.now_ms();
    // The thresholds as last reloaded (`[health]`).
    let settings = app.settings();
    let thresholds = Thresholds::from(&settings.health);
    let burn_policy = BurnPolicy::for_target(settings.health.slo_target);
    let from = health
        .backlog_from
        .lock()
        .expect("backlog floor")
        .clone()
        .unwrap_or_else(|| event_id_floor(now - BACKLOG_LOOKBACK_MS));
    let inputs = snapshot::gather(app, now, &from, &burn_policy).await?;
    let oldest_waiting = inputs
        .backlog
        .values()
        .map(|b| b.oldest_event_id.clone())
        .min();
    let next_from = match oldest_waiting {
        Some(id) => id.min(event_id_floor(now - 60_000)),
        None => event_id_floor(now - 60_000),
    };
    *health.backlog_from.lock().expect("backlog floor") = Some(next_from);
    let snap = snapshot::assemble(app, &inputs, now, &thresholds, &burn_policy);
    record(health, &snap);
    health.current.store(Some(Arc::new(snap)));
    Ok(())
}

/// Updates the gauge and logs connections whose status changed.
fn record(health: &HealthState, snap: &Snapshot) {
    let mut counts: HashMap<Status, i64> = HashMap::new();
    let mut last = health.last_status.lock().expect("health status map");
    let mut now_status = HashMap::with_capacity(snap.connections.len());
    for c in &snap.connections {
        *counts.entry(c.status).or_default() += 1;
        if let Some(before) = last.get(&c.id).filter(|b| **b != c.status) {
            tracing::info!(connection_id = %c.id, from = before.as_str(), to = c.status.as_str(), reasons = ?c.reasons, "connection health changed");
        }
        now_status.insert(c.id.clone(), c.status);
    }
    *last = now_status;
    for s in [Status::Healthy, Status::Degraded, Status::Unhealthy] {
        health
            .gauge
            .with_label_values(&[s.as_str()])
            .set(counts.get(&s).copied().unwrap_or(0));
    }
}
