//! The one source of "now" for the engine and API, so tests can hold time still or move it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use syncguard_core::Millis;

pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        wall_ms()
    }
}

/// The wall clock, for what must not follow a test's held clock: provider rate-limit waits are
/// real sleeps against a real provider, and ids sort by when they were really made.
pub fn wall_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A new time-ordered id such as `evt_0192…`, from the wall clock and this process's random
/// source; ids made by this process sort in the order they were made.
pub fn new_id(prefix: &str) -> String {
    static IDS: syncguard_core::ids::IdGen = syncguard_core::ids::IdGen::new();
    IDS.next(prefix, wall_ms(), rand::random())
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: Millis) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(start)))
    }
    pub fn set(&self, t: Millis) {
        self.0.store(t, Ordering::SeqCst);
    }
    pub fn advance(&self, by_ms: Millis) {
        self.0.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

pub type SharedClock = Arc<dyn Clock>;

/// RFC 3339 with milliseconds, UTC: how times appear in the API.
pub fn rfc3339(ms: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}
