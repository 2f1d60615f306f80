//! Whether the store can be reached, as this node last saw it.
//!
//! The state lives in the store crate, on the [`Store`] handle itself, because it describes
//! that handle: every holder of a clone (API handlers, the webhook writers, the engine) shares
//! one state without the application threading it through, and the probe that feeds it is a
//! store operation ([`Store::probe`]). What the state is *used* for (fast 503s, readiness, a
//! stale health view) is the application's business.
//!
//! Two sources feed it: any caller that meets a [`StoreError::Unavailable`] reports it
//! ([`Reachability::note`]), and a background probe marks the store up or down. Only the probe
//! (or a caller that just succeeded) marks it up again, so once the store is known unreachable
//! nothing waits on the pool until the probe has seen it come back.

use crate::{Millis, Result, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Sentinel of `down_since` while the store is reachable.
const UP: i64 = i64::MIN;

/// The shared reachability state of one store handle (and its clones).
#[derive(Debug)]
pub struct Reachability {
    /// When the store was first seen unreachable in the current outage, or [`UP`].
    down_since: AtomicI64,
    /// Why it was last marked down, for logs and `/readyz`.
    reason: Mutex<String>,
}

impl Default for Reachability {
    fn default() -> Self {
        Reachability {
            down_since: AtomicI64::new(UP),
            reason: Mutex::new(String::new()),
        }
    }
}

impl Reachability {
    pub fn is_up(&self) -> bool {
        self.down_since.load(Ordering::Acquire) == UP
    }

    /// Since when (the caller's clock) the store has been unreachable, if it is.
    pub fn down_since(&self) -> Option<Millis> {
        Some(self.down_since.load(Ordering::Acquire)).filter(|t| *t != UP)
    }

    /// Why the store was last marked unreachable.
    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Marks the store unreachable at `now`; returns whether it was up until now.
    pub fn mark_down(&self, now: Millis, why: &str) -> bool {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = why.to_string();
        let was_up = self
            .down_since
            .compare_exchange(UP, now, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if was_up {
            tracing::warn!(reason = why, "store unreachable");
        }
        was_up
    }

    /// Marks the store reachable; returns whether it was down until now.
    pub fn mark_up(&self) -> bool {
        let before = self.down_since.swap(UP, Ordering::AcqRel);
        if before != UP {
            tracing::info!(down_since = before, "store reachable again");
        }
        before != UP
    }

    /// Reports what a store call met: an `Unavailable` error marks the store down.
    pub fn note(&self, error: &StoreError, now: Millis) {
        if let StoreError::Unavailable(why) = error {
            self.mark_down(now, why);
        }
    }
}

impl Store {
    /// The reachability state shared by every clone of this handle.
    pub fn reachability(&self) -> &Reachability {
        &self.reachability
    }

    /// One `SELECT 1` within `timeout`, on a connection kept for probing alone, so a pool
    /// busy with real work is not mistaken for an outage. Does not change the state: the
    /// caller decides what a failure means. A timeout is `Unavailable("probe timed out …")`.
    pub async fn probe(&self, timeout: Duration) -> Result<()> {
        let round_trip = async {
            match &self.probe {
                Some(pg) => pg.select_one().await,
                None => self.ping().await,
            }
        };
        match tokio::time::timeout(timeout, round_trip).await {
            Ok(r) => r,
            Err(_) => {
                // The abandoned round trip may have left the connection mid-reply.
                // (Busy: another probe holds it and handles its own timeout.)
                if let Some(mut slot) = self.probe.as_ref().and_then(|pg| pg.conn.try_lock().ok()) {
                    slot.take();
                }
                Err(StoreError::Unavailable(format!(
                    "probe timed out after {} ms",
                    timeout.as_millis()
                )))
            }
        }
    }
}

/// The probe's own PostgreSQL connection: opened with one attempt (no pool retrying until its
/// acquire timeout), dropped on any failure and opened again on the next probe, so a refused or
/// cut connection shows at once.
pub(crate) struct PgProbe {
    opts: PgConnectOptions,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl PgProbe {
    pub(crate) fn new(opts: PgConnectOptions) -> PgProbe {
        PgProbe {
            opts,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn select_one(&self) -> Result<()> {
        let mut slot = self.conn.lock().await;
        if slot.is_none() {
            *slot = Some(PgConnection::connect_with(&self.opts).await?);
        }
        let conn = slot.as_mut().expect("just opened");
        let outcome = sqlx::query("SELECT 1").execute(&mut *conn).await;
        if outcome.is_err() {
            *slot = None;
        }
        outcome?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        if let Some(conn) = self.conn.lock().await.take() {
            let _ = conn.close().await;
        }
    }
}

/// Whether a probe failure was a timeout (the network may be slow, not gone).
pub fn is_timeout(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(m) if m.starts_with("probe timed out"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_keeps_its_first_time_and_up_clears_it() {
        let r = Reachability::default();
        assert!(r.is_up());
        assert!(r.mark_down(1_000, "refused"));
        assert!(!r.mark_down(2_000, "refused again"));
        assert_eq!(r.down_since(), Some(1_000));
        assert_eq!(r.reason(), "refused again");
        r.note(&StoreError::NotFound, 3_000);
        assert_eq!(r.down_since(), Some(1_000));
        assert!(r.mark_up());
        assert!(!r.mark_up());
        assert!(r.is_up());
        r.note(&StoreError::Unavailable("pool timed out".into()), 4_000);
        assert_eq!(r.down_since(), Some(4_000));
    }
}
