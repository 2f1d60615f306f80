//! Where a provider's rate-limiter state lives (SPEC §3.3), one API for both backends; the
//! GCRA math is `syncguard_core::limiter`.
//!
//! - **PostgreSQL**: in the shared `rate_limiters` row, so every node obeys one limit. Each
//!   acquire is one short transaction on that row ([`Store::update_limiter`]), evaluated against
//!   the database's clock. A hint that stops calls (a retry-after, nothing remaining) is written
//!   at once so other nodes stop too; a merely informative one (calls remaining) rides along
//!   with this node's next acquire instead of costing a transaction of its own.
//! - **SQLite**: in this process, against the caller's wall clock. An embedded store means one
//!   node, and a write (an fsync) per call would only slow it down.
//!
//! Clones of a [`Store`] share this process's limiters.

use std::collections::HashMap;
use std::sync::Mutex;

use syncguard_core::limiter::{Hints, LimitConfig, LimiterState, Wait};

use crate::{Backend, Millis, Result, Store};

/// This process's part of the limiters: all of their state on SQLite, the informative hints
/// waiting for the next acquire on PostgreSQL.
#[derive(Debug, Default)]
pub(crate) struct LocalLimiters {
    state: Mutex<HashMap<String, LimiterState>>,
    pending: Mutex<HashMap<String, Hints>>,
}

/// A limiter's state after an operation, and the clock it was evaluated against (the
/// database's on PostgreSQL, the caller's on SQLite).
#[derive(Debug, Clone, PartialEq)]
pub struct LimiterReading {
    pub state: LimiterState,
    pub now: Millis,
}

impl Store {
    /// Takes the room for one call from limiter `key` (`provider` names its row when it is
    /// created), or says how long to wait. `wall_now` is the caller's wall clock, used where the
    /// state lives in this process.
    pub async fn acquire_limiter(
        &self,
        key: &str,
        provider: &str,
        cfg: &LimitConfig,
        wall_now: Millis,
    ) -> Result<(std::result::Result<(), Wait>, LimiterReading)> {
        let cfg = *cfg;
        match self.backend() {
            Backend::Postgres => {
                let pending = self
                    .limiters
                    .pending
                    .lock()
                    .expect("limiter lock")
                    .remove(key);
                self.update_limiter(key, provider, move |state, now| {
                    if let Some(hints) = pending {
                        state.apply_hints(&hints, now);
                    }
                    let acquired = state.acquire(&cfg, now);
                    (
                        acquired,
                        LimiterReading {
                            state: state.clone(),
                            now,
                        },
                    )
                })
                .await
            }
            Backend::Sqlite => {
                let mut local = self.limiters.state.lock().expect("limiter lock");
                let state = local.entry(key.to_string()).or_default();
                let acquired = state.acquire(&cfg, wall_now);
                Ok((
                    acquired,
                    LimiterReading {
                        state: state.clone(),
                        now: wall_now,
                    },
                ))
            }
        }
    }

    /// Takes in what a provider's response said about its limit. Returns the state when the
    /// hints were applied now, `None` when they wait for this node's next acquire.
    pub async fn observe_limiter(
        &self,
        key: &str,
        provider: &str,
        hints: Hints,
        wall_now: Millis,
    ) -> Result<Option<LimiterReading>> {
        if hints.is_empty() {
            return Ok(None);
        }
        match self.backend() {
            Backend::Sqlite => {
                let mut local = self.limiters.state.lock().expect("limiter lock");
                let state = local.entry(key.to_string()).or_default();
                state.apply_hints(&hints, wall_now);
                Ok(Some(LimiterReading {
                    state: state.clone(),
                    now: wall_now,
                }))
            }
            Backend::Postgres if hints.retry_after_ms.is_some() || hints.remaining == Some(0) => {
                let reading = self
                    .update_limiter(key, provider, |state, now| {
                        state.apply_hints(&hints, now);
                        LimiterReading {
                            state: state.clone(),
                            now,
                        }
                    })
                    .await?;
                Ok(Some(reading))
            }
            Backend::Postgres => {
                self.limiters
                    .pending
                    .lock()
                    .expect("limiter lock")
                    .insert(key.to_string(), hints);
                Ok(None)
            }
        }
    }

    /// The limiter's state as every node sees it right now: one read on PostgreSQL; on SQLite
    /// `None`, since the caller already saw every change this process made.
    pub async fn shared_limiter(&self, key: &str) -> Result<Option<LimiterReading>> {
        match self.backend() {
            Backend::Postgres => Ok(self
                .limiter_state(key)
                .await?
                .map(|(state, now)| LimiterReading { state, now })),
            Backend::Sqlite => Ok(None),
        }
    }
}
