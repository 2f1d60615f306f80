//! Sync (pull, SPEC §3.4), the connection lifecycle around it, and the change feed.
//!
//! # What runs
//! - `sync.resource` ([`run`]): one run of one (connection, resource): a backfill of
//!   `backfill_days` on connect, then incremental runs from the stored cursor minus the overlap.
//!   Each page commits with its records and the checkpoint in one transaction, so a crash
//!   resumes at the next page. One active job per (connection, resource), by unique key.
//! - `sync.tick` ([`tick`]): every minute, enqueues the incremental runs that fall due (every
//!   `sync_interval_s` ± 10 %), once per interval across the cluster, for active connections
//!   only: a paused connection is not scheduled.
//! - `sync.refetch` ([`refetch`]): reads one object whose webhook carried only its id.
//!
//! # Connections and the HTTP side
//! The connection API (create with a link flow or credentials, `PATCH` pause/resume/config,
//! `DELETE` disconnect) is `api::connections`, the provider link flow `api::link`; manual
//! syncs, checkpoints, records and `GET /v1/changes` are `api::sync`. They call
//! [`start_syncs`] and [`syncs`] here. Every status change is recorded and audited.
//!
//! The rules (settings, where a run starts, when slots fall due) are pure, in [`plan`]; all SQL
//! is in `syncguard_store::{checkpoints, records}`.

pub mod plan;
pub mod refetch;
pub mod run;
pub mod tick;

use crate::config::Config;
use crate::engine::handler::Handlers;
use crate::engine::Schedule;
use crate::services::Services;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use syncguard_core::connection::ConnectionStatus;
use syncguard_store::connections::Connection;
use syncguard_store::queue::{Enqueued, NewJob};
use syncguard_store::StoreError;
use tokio_util::sync::CancellationToken;

/// Kind of the job that runs one sync of one resource.
pub const SYNC_KIND: &str = "sync.resource";
/// Kind of the periodic job that enqueues due incremental syncs.
pub const TICK_KIND: &str = "sync.tick";
/// Kind of the job that reads one object (enqueued by the webhook gateway).
pub const REFETCH_KIND: &str = crate::services::webhook::REFETCH_KIND;

/// Why a sync job exists (in its payload and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The backfill of a new connection.
    Connect,
    /// An incremental sync that fell due.
    Schedule,
    /// `POST /v1/connections/{id}/sync` or `syncguard sync`.
    Manual,
    /// A paused (or failed) connection became active again.
    Resume,
    /// A webhook's object cannot be read alone; the next listing brings it.
    Refetch,
}

/// The payload of a `sync.resource` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncPayload {
    pub connection_id: String,
    pub resource: String,
    /// Start a fresh, unfiltered listing instead of resuming or reading from the cursor.
    #[serde(default)]
    pub full: bool,
    pub reason: Reason,
}

/// Everything the sync engine keeps for the life of the node.
pub struct SyncState {
    pub metrics: SyncMetrics,
    /// Runs in progress on this node, by connection then job id: a disconnect cancels them at
    /// once instead of waiting for their next page.
    running: Mutex<HashMap<String, HashMap<i64, CancellationToken>>>,
    /// The last slot this node scheduled per (connection, resource), so a tick writes only
    /// when a slot changes. The store's slot table is what makes it once per cluster.
    scheduled: Mutex<HashMap<(String, String), i64>>,
}

/// Sync counters (labels: provider and outcome only).
pub struct SyncMetrics {
    /// Items read, by what became of them: created, updated, unchanged, missing_cursor, no_id.
    pub items: IntCounterVec,
    /// Pages committed.
    pub pages: IntCounterVec,
    /// Runs ended, by outcome: completed, failed, stopped.
    pub runs: IntCounterVec,
}

impl SyncState {
    pub fn new(_config: &Config, registry: &Registry) -> anyhow::Result<SyncState> {
        let counter = |name: &str, help: &str, labels: &[&str]| -> anyhow::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(SyncState {
            metrics: SyncMetrics {
                items: counter(
                    "syncguard_sync_items_total",
                    "Items read by sync, by what became of them.",
                    &["provider", "outcome"],
                )?,
                pages: counter(
                    "syncguard_sync_pages_total",
                    "Pages committed by sync.",
                    &["provider"],
                )?,
                runs: counter(
                    "syncguard_sync_runs_total",
                    "Sync runs ended, by outcome.",
                    &["provider", "outcome"],
                )?,
            },
            running: Mutex::new(HashMap::new()),
            scheduled: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a run of `job_id`; the token is cancelled by [`SyncState::stop_connection`].
    /// The run is forgotten when the guard drops.
    pub(crate) fn track(&self, connection_id: &str, job_id: i64) -> RunGuard<'_> {
        let token = CancellationToken::new();
        self.running
            .lock()
            .expect("sync registry lock")
            .entry(connection_id.to_string())
            .or_default()
            .insert(job_id, token.clone());
        RunGuard {
            state: self,
            connection_id: connection_id.to_string(),
            job_id,
            token,
        }
    }

    /// Cancels every run of `connection_id` on this node; returns how many there were.
    pub fn stop_connection(&self, connection_id: &str) -> usize {
        let runs = self
            .running
            .lock()
            .expect("sync registry lock")
            .remove(connection_id)
            .unwrap_or_default();
        for token in runs.values() {
            token.cancel();
        }
        runs.len()
    }

    /// Whether this node already scheduled `slot` (or a later one) for the pair.
    fn scheduled(&self, connection_id: &str, resource: &str, slot: i64) -> bool {
        let seen = self.scheduled.lock().expect("sync schedule lock");
        let key = (connection_id.to_string(), resource.to_string());
        seen.get(&key).is_some_and(|s| *s >= slot)
    }

    /// Remembers that `slot` of the pair is in the store's slot table.
    fn mark_scheduled(&self, connection_id: &str, resource: &str, slot: i64) {
        let mut seen = self.scheduled.lock().expect("sync schedule lock");
        seen.insert((connection_id.to_string(), resource.to_string()), slot);
    }
}

/// A run registered with [`SyncState::track`].
pub(crate) struct RunGuard<'a> {
    state: &'a SyncState,
    connection_id: String,
    job_id: i64,
    pub token: CancellationToken,
}

impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        let mut running = self.state.running.lock().expect("sync registry lock");
        if let Some(jobs) = running.get_mut(&self.connection_id) {
            jobs.remove(&self.job_id);
            if jobs.is_empty() {
                running.remove(&self.connection_id);
            }
        }
    }
}

/// The unique key of a (connection, resource)'s sync jobs: one active at a time.
pub fn unique_key(connection_id: &str, resource: &str) -> String {
    format!("sync:{connection_id}:{resource}")
}

/// A `sync.resource` job for one resource of `connection`.
pub fn sync_job(
    app: &Services,
    connection: &Connection,
    resource: &str,
    reason: Reason,
    full: bool,
) -> NewJob {
    let payload = SyncPayload {
        connection_id: connection.id.clone(),
        resource: resource.to_string(),
        full,
        reason,
    };
    let mut job = NewJob::new(
        SYNC_KIND,
        serde_json::to_value(payload).expect("payload serializes"),
    );
    job.tenant_id = Some(connection.tenant_id.clone());
    job.connection_id = Some(connection.id.clone());
    job.max_attempts = app.settings().max_attempts(SYNC_KIND);
    job.unique_key = Some(unique_key(&connection.id, resource));
    if matches!(reason, Reason::Manual | Reason::Resume) {
        // Someone is waiting: a sync already queued for later runs now (with this payload),
        // and one already running is followed by one more run.
        job.debounce_ms = Some(0);
    }
    job
}

/// Enqueues a sync of each of `resources` (all of the connection's when empty) in one
/// transaction; returns each resource with its job.
pub async fn start_syncs(
    app: &Services,
    connection: &Connection,
    resources: &[String],
    reason: Reason,
    full: bool,
) -> Result<Vec<(String, Enqueued)>, StoreError> {
    let resources: Vec<String> = if resources.is_empty() {
        match app.providers.get(&connection.provider) {
            Some(def) => plan::SyncSettings::from_config(&connection.config, def)
                .map(|s| s.resources)
                .unwrap_or_default(),
            None => Vec::new(),
        }
    } else {
        resources.to_vec()
    };
    let jobs: Vec<NewJob> = resources
        .iter()
        .map(|r| sync_job(app, connection, r, reason, full))
        .collect();
    let enqueued = app.store.enqueue_many(&jobs, app.clock.now_ms()).await?;
    app.job_notify.notify_one();
    Ok(resources.into_iter().zip(enqueued).collect())
}

/// Whether `connection` is one sync runs for: active, with credentials, of a provider with an
/// API to call.
pub fn syncs(app: &Services, connection: &Connection) -> bool {
    connection.status == ConnectionStatus::Active
        && connection.has_credentials
        && app
            .providers
            .get(&connection.provider)
            .is_some_and(|d| d.has_api())
}

/// Job handlers of sync.
pub fn register(handlers: &mut Handlers<Services>) {
    handlers.register(SYNC_KIND, run::run);
    handlers.register(TICK_KIND, tick::tick);
    handlers.register(REFETCH_KIND, refetch::refetch);
}

/// Periodic schedules of sync: the tick that enqueues due incremental syncs.
pub fn schedules() -> Vec<Schedule> {
    vec![Schedule {
        name: TICK_KIND,
        kind: TICK_KIND,
        interval_ms: tick::TICK_INTERVAL_MS,
    }]
}
