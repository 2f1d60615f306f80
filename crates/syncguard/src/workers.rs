//! The supervisor of the node's background loops outside the engine's own: webhook group-commit
//! committers, the health snapshotter, the store probe, the gauge loop of API-only nodes, the
//! SIGHUP reloader, and the engine as one member.
//!
//! Every loop gets the same [`CancellationToken`] and is spawned under a name, so shutdown is
//! one call ([`Workers::shutdown`]): cancel everything, wait up to a deadline, and name each
//! loop that did not stop in the log (then abort it) instead of hanging the process. A loop
//! that stops on its own before shutdown is forgotten quietly unless it panicked.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Named background loops sharing one cancellation token.
pub struct Workers {
    cancel: CancellationToken,
    running: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Default for Workers {
    fn default() -> Self {
        Workers::new()
    }
}

impl Workers {
    pub fn new() -> Workers {
        Workers {
            cancel: CancellationToken::new(),
            running: Mutex::new(Vec::new()),
        }
    }

    /// The token every loop watches; cancelled by [`Workers::shutdown`].
    pub fn token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Runs `run(token)` as the loop `name`. After shutdown has begun, the loop still starts
    /// (with a cancelled token) so that whatever it owns is handled the same way.
    pub fn spawn<F, Fut>(&self, name: &'static str, run: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(run(self.cancel.clone()));
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|(_, h)| !h.is_finished());
        running.push((name, handle));
    }

    /// How many loops are still running.
    pub fn len(&self) -> usize {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.iter().filter(|(_, h)| !h.is_finished()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cancels every loop and waits for them until `deadline` has passed; returns the names
    /// of the loops that did not stop in time (logged, then aborted).
    pub async fn shutdown(&self, deadline: Duration) -> Vec<&'static str> {
        self.cancel.cancel();
        let until = tokio::time::Instant::now() + deadline;
        let mut stuck = Vec::new();
        // Loops spawned while others stop (a committer started by a last request) are joined too.
        loop {
            let batch: Vec<_> =
                std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
            if batch.is_empty() {
                break;
            }
            for (name, mut handle) in batch {
                match tokio::time::timeout_at(until, &mut handle).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.is_panic() => {
                        tracing::error!(worker = name, "background loop panicked")
                    }
                    Ok(Err(_)) => {}
                    Err(_) => {
                        tracing::error!(
                            worker = name,
                            deadline_ms = deadline.as_millis() as u64,
                            "background loop did not stop in time; aborting it"
                        );
                        handle.abort();
                        stuck.push(name);
                    }
                }
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[tokio::test]
    async fn shutdown_stops_loops_and_names_the_one_that_ignores_cancel() {
        let workers = Workers::new();
        let stopped = Arc::new(AtomicBool::new(false));
        let s = stopped.clone();
        workers.spawn("polite", move |cancel| async move {
            cancel.cancelled().await;
            s.store(true, Ordering::SeqCst);
        });
        workers.spawn("stubborn", |_cancel| async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert_eq!(workers.len(), 2);
        let started = tokio::time::Instant::now();
        let stuck = workers.shutdown(Duration::from_millis(300)).await;
        assert_eq!(stuck, ["stubborn"]);
        assert!(stopped.load(Ordering::SeqCst));
        // Waited out the deadline for the stubborn one, and no longer than it (generously).
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(workers.is_empty());
    }

    #[tokio::test]
    async fn a_loop_spawned_after_shutdown_starts_cancelled() {
        let workers = Workers::new();
        assert!(workers.shutdown(Duration::from_secs(1)).await.is_empty());
        workers.spawn("late", |cancel| async move { cancel.cancelled().await });
        assert!(workers.shutdown(Duration::from_secs(1)).await.is_empty());
    }
}
