//! Start-up configuration of the mock. Everything a test or the CLI may want to vary is here,
//! with the SPEC's numbers as defaults; run-time knobs (faults, rate, webhooks) live in
//! [`crate::MockState`].

use serde::{Deserialize, Serialize};

/// Configuration of one mock server. Build it with struct-update syntax:
/// `MockConfig { records: 50, ..Default::default() }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MockConfig {
    /// Seeds the data generator and the mutation sequence: same seed, same ids and fields.
    pub seed: u64,
    /// Objects generated per WMS resource (orders, products, inventory, inbound-shipments).
    pub records: usize,
    /// Sustained requests per second allowed per access token; `0` disables the limit.
    pub rate_limit_rps: f64,
    /// Requests a fresh token may send at once before the sustained rate applies.
    pub rate_limit_burst: u32,
    /// `limit` used by WMS lists when the client sends none.
    pub page_limit_default: usize,
    /// Largest WMS page; larger `limit` values are clamped, as Trackstar does.
    pub page_limit_max: usize,
    /// Lifetime of eBay OAuth access tokens, in seconds.
    pub token_ttl_s: u64,
    /// `integration_name` in link exchanges and webhooks (the WMS behind Trackstar).
    pub integration_name: String,
    /// `connection_id` put in webhooks unless the emitter configuration names another.
    pub connection_id: String,
    /// Share of random mutations that create an object (keeps collections growing slowly).
    pub create_ratio: f64,
    /// Share of random mutations that delete an object.
    pub delete_ratio: f64,
    /// How long a timeout fault holds a request before answering 504, in milliseconds.
    pub timeout_hold_ms: u64,
    /// Delivery attempts per webhook message, the first one included.
    pub webhook_max_attempts: u32,
    /// First retry delay of a failed webhook delivery; each further retry waits 4× longer.
    pub webhook_retry_base_ms: u64,
    /// Per-attempt HTTP timeout of a webhook delivery.
    pub webhook_timeout_ms: u64,
    /// Size of the batches inside which `reorder` shuffles deliveries.
    pub webhook_reorder_batch: usize,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            records: 200,
            rate_limit_rps: 10.0,
            rate_limit_burst: 10,
            page_limit_default: 1000,
            page_limit_max: 1000,
            token_ttl_s: 7200,
            integration_name: "mock_wms".to_owned(),
            connection_id: "conn_mock".to_owned(),
            create_ratio: 0.1,
            delete_ratio: 0.02,
            timeout_hold_ms: 30_000,
            webhook_max_attempts: 4,
            webhook_retry_base_ms: 200,
            webhook_timeout_ms: 10_000,
            webhook_reorder_batch: 8,
        }
    }
}
