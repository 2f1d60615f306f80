//! The store probe: a `SELECT 1` on its own connection every `store.probe_interval_ms` (five
//! times as often while the store is down), feeding the store's reachability state
//! ([`syncguard_store::reachability`]) and the `syncguard_store_up` gauge.
//!
//! While the store is known unreachable the node answers without waiting for the pool: webhooks
//! get a 503 with `Retry-After` at once, `/readyz` is not ready, `GET /v1/health` serves the
//! last snapshot marked stale, and the health snapshotter skips its round. The probe is what
//! notices the store is back, so everything recovers by itself.
//!
//! A refused or broken connection marks the store down at once; a probe that only times out
//! does so on the second timeout in a row, so one slow round trip on a busy machine does not
//! turn webhooks away.

use crate::clock::SharedClock;
use crate::config::StoreConfig;
use prometheus::{IntGauge, Registry};
use std::time::Duration;
use syncguard_store::reachability::is_timeout;
use syncguard_store::Store;
use tokio_util::sync::CancellationToken;

/// Timeouts in a row that mark the store down.
const TIMEOUTS_TO_DOWN: u32 = 2;

/// What the probe keeps for the life of the node.
pub struct StoreProbe {
    /// `syncguard_store_up`: 1 while the store is reachable, 0 while it is not.
    pub up: IntGauge,
}

impl StoreProbe {
    pub fn new(registry: &Registry) -> anyhow::Result<StoreProbe> {
        let up = IntGauge::new(
            "syncguard_store_up",
            "Whether the store is reachable (1) or not (0), as the probe last saw it.",
        )?;
        up.set(1);
        registry.register(Box::new(up.clone()))?;
        Ok(StoreProbe { up })
    }
}

/// Probes `store` until `cancel`, keeping `up` current. Takes its parts rather than the app,
/// so it depends on nothing but the store.
pub async fn run(
    store: Store,
    clock: SharedClock,
    up: IntGauge,
    config: StoreConfig,
    cancel: CancellationToken,
) {
    let interval = Duration::from_millis(config.probe_interval_ms);
    let timeout = Duration::from_millis(config.probe_timeout_ms);
    let state = store.reachability();
    let mut timeouts = 0u32;
    loop {
        tokio::select! {
            r = store.probe(timeout) => match r {
                Ok(()) => {
                    timeouts = 0;
                    state.mark_up();
                }
                Err(e) => {
                    timeouts = if is_timeout(&e) { timeouts + 1 } else { TIMEOUTS_TO_DOWN };
                    if timeouts >= TIMEOUTS_TO_DOWN {
                        state.mark_down(clock.now_ms(), &e.to_string());
                    } else {
                        tracing::debug!(error = %e, "store probe timed out once");
                    }
                }
            },
            _ = cancel.cancelled() => break,
        }
        up.set(i64::from(state.is_up()));
        let pause = if state.is_up() {
            interval
        } else {
            interval / 5
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => break,
        }
    }
}
