//! The rate limiter at run time (SPEC §3.3): one GCRA limiter per credential, whose math is
//! `syncguard_core::limiter`. Where its state lives depends on the store and is the store's
//! business (`syncguard_store::limiter`): a shared row on PostgreSQL, this process on SQLite.
//!
//! A call that must wait sleeps for its turn and asks again, until the call's wait budget
//! (`rate_limit.max_wait_s`) would be exceeded; then it fails as `rate_limited`, and the queue
//! reschedules the job for when the limiter said room will exist.
//!
//! Provider hints (`Retry-After`, `x-rate-limit-*`) are handed to the store as they arrive.

use super::error::ProviderError;
use crate::clock::wall_ms;
use prometheus::{IntCounterVec, Opts, Registry};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use syncguard_core::limiter::{Hints, LimitConfig, LimiterState};
use syncguard_core::Millis;
use syncguard_store::Store;

/// One credential's limiter as a client uses it.
#[derive(Debug, Clone)]
pub(crate) struct LimiterHandle {
    /// `{provider}:{credential fingerprint}`: never the credential itself.
    pub key: String,
    pub provider: String,
    pub cfg: LimitConfig,
    /// The wait budget of one call.
    pub max_wait: Duration,
}

/// The last state this node saw of a limiter, for `near_depletion` without a store read.
struct Seen {
    state: LimiterState,
    cfg: LimitConfig,
    /// The clock the state was read against, and when (to age it).
    now: Millis,
    at: Instant,
}

/// Every limiter of the node.
pub(crate) struct Limiters {
    seen: Mutex<HashMap<String, Seen>>,
    /// Which limiter each connection uses, for health by connection.
    by_connection: Mutex<HashMap<String, String>>,
    waits_total: IntCounterVec,
}

impl Limiters {
    pub fn new(registry: &Registry) -> anyhow::Result<Limiters> {
        let waits_total = IntCounterVec::new(
            Opts::new("syncguard_rate_limit_waits_total", "Provider calls that waited for the rate limiter, by why; `exhausted` ran out of wait budget."),
            &["provider", "reason"],
        )?;
        registry.register(Box::new(waits_total.clone()))?;
        Ok(Limiters {
            seen: Mutex::default(),
            by_connection: Mutex::default(),
            waits_total,
        })
    }

    /// Notes that `connection_id` calls through limiter `key`.
    pub fn bind(&self, connection_id: &str, key: &str) {
        self.by_connection
            .lock()
            .expect("limiter lock")
            .insert(connection_id.into(), key.into());
    }

    /// Takes the room for one call, sleeping for its turn until `deadline`.
    pub async fn acquire(
        &self,
        store: &Store,
        h: &LimiterHandle,
        deadline: Instant,
    ) -> Result<(), ProviderError> {
        let mut waited = false;
        loop {
            let (result, state, now) = self.try_acquire(store, h).await?;
            self.remember(&h.key, state, h.cfg, now);
            let Err(wait) = result else { return Ok(()) };
            let sleep = Duration::from_millis(wait.retry_in_ms.max(1));
            if Instant::now() + sleep > deadline {
                self.waits_total
                    .with_label_values(&[&h.provider, "exhausted"])
                    .inc();
                return Err(ProviderError::rate_limited(
                    format!(
                        "rate limit of {} ({}): next call allowed in {} ms, beyond the wait budget",
                        h.provider, wait.reason, wait.retry_in_ms
                    ),
                    wait.retry_in_ms,
                ));
            }
            if !waited {
                self.waits_total
                    .with_label_values(&[&h.provider, wait.reason.as_str()])
                    .inc();
                waited = true;
            }
            tokio::time::sleep(sleep).await;
        }
    }

    async fn try_acquire(
        &self,
        store: &Store,
        h: &LimiterHandle,
    ) -> Result<
        (
            Result<(), syncguard_core::limiter::Wait>,
            LimiterState,
            Millis,
        ),
        ProviderError,
    > {
        let (acquired, reading) = store
            .acquire_limiter(&h.key, &h.provider, &h.cfg, wall_ms())
            .await
            .map_err(ProviderError::store)?;
        Ok((acquired, reading.state, reading.now))
    }

    /// Takes in what a response said about the provider's limit.
    pub async fn observe(&self, store: &Store, h: &LimiterHandle, hints: Hints) {
        match store
            .observe_limiter(&h.key, &h.provider, hints, wall_ms())
            .await
        {
            Ok(Some(reading)) => self.remember(&h.key, reading.state, h.cfg, reading.now),
            Ok(None) => {}
            // The provider will say it again on the next call; nothing is lost for good.
            Err(e) => {
                tracing::warn!(limiter = %h.key, error = %e, "storing a provider rate-limit hint failed")
            }
        }
    }

    /// Whether the limiter of `connection_id` had at most 10 % of its room left when this node
    /// last used it (false when this node never did).
    pub fn near_depletion(&self, connection_id: &str) -> bool {
        let key = self
            .by_connection
            .lock()
            .expect("limiter lock")
            .get(connection_id)
            .cloned();
        key.is_some_and(|k| self.near_depletion_of(&k))
    }

    pub fn near_depletion_of(&self, key: &str) -> bool {
        let seen = self.seen.lock().expect("limiter lock");
        seen.get(key).is_some_and(|s| {
            let now = s.now + s.at.elapsed().as_millis() as Millis;
            s.state.near_depletion(&s.cfg, now)
        })
    }

    /// The shared state right now (one read on PostgreSQL), for callers that must know before
    /// spending calls (reconcile and audit yield while it is set).
    pub async fn near_depletion_now(&self, store: &Store, h: &LimiterHandle) -> bool {
        if let Ok(Some(reading)) = store.shared_limiter(&h.key).await {
            self.remember(&h.key, reading.state, h.cfg, reading.now);
        }
        self.near_depletion_of(&h.key)
    }

    fn remember(&self, key: &str, state: LimiterState, cfg: LimitConfig, now: Millis) {
        let seen = Seen {
            state,
            cfg,
            now,
            at: Instant::now(),
        };
        self.seen
            .lock()
            .expect("limiter lock")
            .insert(key.to_string(), seen);
    }
}
