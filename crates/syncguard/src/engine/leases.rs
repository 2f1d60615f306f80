//! The leases this process holds, and the heartbeat that renews exactly those (SPEC §3.1
//! "Fencing").
//!
//! A job enters the table when it is claimed and leaves once its result is recorded (or given
//! up on). The heartbeat renews the table's tokens, never "whatever this worker id has": a job
//! the process no longer runs, or whose result it could not record, is not renewed and so
//! lapses to the rescuer. A lease the heartbeat cannot renew — the store says it is gone, or
//! the store cannot be reached and the lease would lapse before the next beat — is *lost*: its
//! token is cancelled, which stops the handler before anyone else can run the job.

use crate::env::Env;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use syncguard_store::queue::Fence;
use syncguard_store::Millis;
use tokio_util::sync::CancellationToken;

struct Held {
    fence: Fence,
    lease_until: Millis,
    lost: CancellationToken,
}

/// The leases of this process, by job id.
#[derive(Clone, Default)]
pub(crate) struct Leases(Arc<Mutex<HashMap<i64, Held>>>);

impl Leases {
    /// Starts tracking a claimed run; the token fires when its lease is lost.
    pub fn hold(&self, fence: Fence, lease_until: Millis) -> CancellationToken {
        let lost = CancellationToken::new();
        self.0.lock().expect("lease table").insert(
            fence.job_id,
            Held {
                fence,
                lease_until,
                lost: lost.clone(),
            },
        );
        lost
    }

    /// Stops renewing `id` (its result is recorded, or will never be).
    pub fn forget(&self, id: i64) {
        self.0.lock().expect("lease table").remove(&id);
    }

    fn fences(&self) -> Vec<Fence> {
        let t = self.0.lock().expect("lease table");
        t.values().map(|h| h.fence).collect()
    }

    fn renewed(&self, fences: &[Fence], lease_until: Millis) {
        let mut t = self.0.lock().expect("lease table");
        for f in fences {
            if let Some(h) = t.get_mut(&f.job_id).filter(|h| h.fence == *f) {
                h.lease_until = lease_until;
            }
        }
    }

    /// Cancels and forgets the runs of `ids`; returns how many there were.
    fn lose(&self, ids: &[i64]) -> usize {
        let mut t = self.0.lock().expect("lease table");
        ids.iter()
            .filter_map(|id| t.remove(id))
            .map(|h| h.lost.cancel())
            .count()
    }

    /// Ids whose lease ends before `at`.
    fn lapsing_before(&self, at: Millis) -> Vec<i64> {
        let t = self.0.lock().expect("lease table");
        t.values()
            .filter(|h| h.lease_until <= at)
            .map(|h| h.fence.job_id)
            .collect()
    }
}

/// Renews the held leases every third of the lease, until `stopped` (every result recorded).
pub(crate) async fn heartbeat_loop(app: Env, leases: Leases, stopped: CancellationToken) {
    let lease = app.config.queue.lease_ms;
    let every_ms = (lease / 3).max(100);
    let every = Duration::from_millis(every_ms as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped.cancelled() => break,
        }
        let fences = leases.fences();
        if fences.is_empty() {
            continue;
        }
        let until = app.clock.now_ms() + lease;
        let renewed = tokio::select! {
            r = app.store.renew_leases(&fences, until) => r,
            _ = stopped.cancelled() => break,
        };
        match renewed {
            Ok(gone) => {
                leases.renewed(&fences, until);
                let n = leases.lose(&gone);
                if n > 0 {
                    tracing::warn!(jobs = ?gone, "leases lost (expired and rescued, or cancelled): stopping their runs");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease heartbeat failed");
                app.metrics
                    .background_errors_total
                    .with_label_values(&["heartbeat"])
                    .inc();
                // Whatever lapses before the next beat may be rescued and run elsewhere: stop it
                // here first.
                let lapsing = leases.lapsing_before(app.clock.now_ms() + every_ms + every_ms / 2);
                if leases.lose(&lapsing) > 0 {
                    tracing::warn!(jobs = ?lapsing, "leases about to lapse without renewal: stopping their runs");
                }
            }
        }
    }
}
