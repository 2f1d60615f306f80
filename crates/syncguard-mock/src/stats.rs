//! Counters behind `GET /_mock/stats`. Only provider API traffic is counted: polling the control
//! plane must not move the numbers a test is asserting on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A snapshot of the mock's counters (the pinned shape of `GET /_mock/stats`, plus extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Provider API requests answered (including 401s, 429s and injected faults).
    pub requests_total: u64,
    /// Answers by status code, e.g. `{"200": 12, "429": 3}`.
    pub by_status: BTreeMap<String, u64>,
    /// Answers by `"METHOD /route"`, e.g. `"GET /wms/orders"`.
    pub by_endpoint: BTreeMap<String, u64>,
    /// Calls beyond a token's rate limit (each answered 429).
    pub rate_limit_violations: u64,
    /// PUTs and DELETEs that changed provider state.
    pub writes_applied: u64,
    /// Writes repeating an earlier one: same idempotency key, or a byte-identical PUT of the
    /// current state.
    pub duplicate_writes: u64,
    /// Webhook deliveries the target accepted (2xx), duplicates included.
    pub webhooks_sent: u64,
    /// Webhook POSTs made, retries included.
    #[serde(default)]
    pub webhook_attempts: u64,
    /// Webhook messages given up on after the last retry.
    #[serde(default)]
    pub webhooks_failed: u64,
    /// Answers produced by fault injection (errors, outages, storms, timeouts).
    #[serde(default)]
    pub faults_injected: u64,
    /// Mutations applied to WMS records (driver, `/_mock/mutate` and in-process).
    #[serde(default)]
    pub mutations: u64,
}

/// The live counters. Hot paths are atomics; the two maps share one lock.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests_total: AtomicU64,
    maps: Mutex<Maps>,
    pub(crate) rate_limit_violations: AtomicU64,
    pub(crate) writes_applied: AtomicU64,
    pub(crate) duplicate_writes: AtomicU64,
    pub(crate) webhooks_sent: AtomicU64,
    pub(crate) webhook_attempts: AtomicU64,
    pub(crate) webhooks_failed: AtomicU64,
    pub(crate) faults_injected: AtomicU64,
    pub(crate) mutations: AtomicU64,
}

#[derive(Debug, Default)]
struct Maps {
    by_status: BTreeMap<String, u64>,
    by_endpoint: BTreeMap<String, u64>,
}

/// Adds one to a counter; relaxed, since counters order nothing.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn record_request(&self, endpoint: String, status: u16) {
        bump(&self.requests_total);
        let mut maps = self.maps.lock().expect("stats lock");
        *maps.by_status.entry(status.to_string()).or_default() += 1;
        *maps.by_endpoint.entry(endpoint).or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let maps = self.maps.lock().expect("stats lock");
        Stats {
            requests_total: get(&self.requests_total),
            by_status: maps.by_status.clone(),
            by_endpoint: maps.by_endpoint.clone(),
            rate_limit_violations: get(&self.rate_limit_violations),
            writes_applied: get(&self.writes_applied),
            duplicate_writes: get(&self.duplicate_writes),
            webhooks_sent: get(&self.webhooks_sent),
            webhook_attempts: get(&self.webhook_attempts),
            webhooks_failed: get(&self.webhooks_failed),
            faults_injected: get(&self.faults_injected),
            mutations: get(&self.mutations),
        }
    }
}
