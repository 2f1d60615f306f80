//! The gateway's metrics (SPEC §3.7, §3.9). Labels stay low-cardinality: provider and outcome,
//! never a connection or tenant (per-connection detail is `last_webhook_at` and `/v1/health`).

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// What became of one delivery, as counted in `syncguard_webhooks_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Duplicate,
    BadSignature,
    /// The signed timestamp is outside the tolerance.
    Stale,
    UnknownConnection,
    TooLarge,
    /// The body did not arrive within `api.body_read_timeout_ms`; answered 408.
    Timeout,
    /// The ingest queue was full (items or `api.webhook_queue_bytes`); answered 503 at once.
    Overloaded,
    /// The store could not take it; not acknowledged.
    Unavailable,
    /// The body could not be read, or the server failed.
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Duplicate => "duplicate",
            Outcome::BadSignature => "bad_signature",
            Outcome::Stale => "stale",
            Outcome::UnknownConnection => "unknown_connection",
            Outcome::TooLarge => "too_large",
            Outcome::Timeout => "timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
        }
    }
}

/// Buckets for processing lag: from a millisecond to several minutes of queueing and retries.
const PROCESSING_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0, 900.0,
];

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Clone)]
pub struct WebhookMetrics {
    /// Deliveries by provider and [`Outcome`].
    pub received_total: IntCounterVec,
    /// Deliveries accepted without a valid signature because the connection allows it
    /// (development only). Anything but zero deserves a look.
    pub unsigned_total: IntCounterVec,
    /// From acknowledgement to the end of a processing run, by provider and outcome
    /// (processed, failed, dead).
    pub processing_seconds: HistogramVec,
    /// Deliveries stored per group commit: how much the writer batches under load.
    pub batch_events: Histogram,
    /// Body bytes of deliveries waiting to be stored (bounded by `api.webhook_queue_bytes`).
    pub queue_bytes: IntGauge,
}

impl WebhookMetrics {
    pub fn register(registry: &Registry) -> anyhow::Result<WebhookMetrics> {
        let received_total = IntCounterVec::new(
            Opts::new(
                "syncguard_webhooks_received_total",
                "Inbound webhook deliveries by provider and outcome.",
            ),
            &["provider", "outcome"],
        )?;
        let unsigned_total = IntCounterVec::new(
            Opts::new(
                "syncguard_webhooks_unsigned_total",
                "Deliveries accepted without a valid signature (allow_unsigned, development only).",
            ),
            &["provider"],
        )?;
        let processing_seconds = HistogramVec::new(
            HistogramOpts::new(
                "syncguard_webhook_processing_seconds",
                "Time from acknowledging a webhook to the end of its processing run.",
            )
            .buckets(PROCESSING_BUCKETS.to_vec()),
            &["provider", "outcome"],
        )?;
        let batch_events = Histogram::with_opts(
            HistogramOpts::new(
                "syncguard_webhook_batch_events",
                "Webhook deliveries committed together in one transaction.",
            )
            .buckets(BATCH_BUCKETS.to_vec()),
        )?;
        let queue_bytes = IntGauge::new(
            "syncguard_webhook_queue_bytes",
            "Body bytes of webhook deliveries waiting to be stored.",
        )?;
        registry.register(Box::new(received_total.clone()))?;
        registry.register(Box::new(queue_bytes.clone()))?;
        registry.register(Box::new(unsigned_total.clone()))?;
        registry.register(Box::new(processing_seconds.clone()))?;
        registry.register(Box::new(batch_events.clone()))?;
        Ok(WebhookMetrics {
            received_total,
            unsigned_total,
            processing_seconds,
            batch_events,
            queue_bytes,
        })
    }

    pub fn count(&self, provider: &str, outcome: Outcome) {
        self.received_total
            .with_label_values(&[provider, outcome.as_str()])
            .inc();
    }
}
