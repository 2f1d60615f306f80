//! The rolling window of call outcomes the breaker decides on.
//!
//! Outcomes are counted in fixed time buckets rather than kept one by one, so the state stored
//! in the shared database row stays a handful of numbers however busy the connection is. The
//! price is granularity: with [`BUCKETS`] buckets an outcome counts for between 90 % and 100 % of
//! the window before it ages out.

use crate::Millis;
use serde::{Deserialize, Serialize};

/// How many slices the window is cut into.
pub(super) const BUCKETS: i64 = 10;

/// Calls and failures whose time fell in `[start, start + bucket length)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Bucket {
    start: Millis,
    calls: u32,
    failures: u32,
}

/// Non-empty buckets, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Window(Vec<Bucket>);

/// Counts over the window at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Totals {
    pub calls: u32,
    pub failures: u32,
}

impl Window {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Adds one call at `now` and drops buckets that no longer overlap the window.
    pub fn record(&mut self, window_ms: Millis, failed: bool, now: Millis) {
        let bucket_ms = bucket_ms(window_ms);
        let start = now.div_euclid(bucket_ms) * bucket_ms;
        self.0.retain(|b| in_window(b, window_ms, now));
        // Nodes sharing this state have slightly different clocks, so `now` may fall before the
        // newest bucket; keeping the buckets sorted by start keeps ageing-out correct anyway.
        let bucket = match self.0.binary_search_by_key(&start, |b| b.start) {
            Ok(i) => &mut self.0[i],
            Err(i) => {
                self.0.insert(
                    i,
                    Bucket {
                        start,
                        calls: 0,
                        failures: 0,
                    },
                );
                &mut self.0[i]
            }
        };
        bucket.calls = bucket.calls.saturating_add(1);
        if failed {
            bucket.failures = bucket.failures.saturating_add(1);
        }
    }

    /// Calls and failures that still count at `now`.
    pub fn totals(&self, window_ms: Millis, now: Millis) -> Totals {
        self.0
            .iter()
            .filter(|b| in_window(b, window_ms, now))
            .fold(Totals::default(), |t, b| Totals {
                calls: t.calls.saturating_add(b.calls),
                failures: t.failures.saturating_add(b.failures),
            })
    }
}

fn bucket_ms(window_ms: Millis) -> Millis {
    (window_ms / BUCKETS).max(1)
}

/// A bucket counts while its start is within the last `window_ms`: exactly the current bucket
/// and the `BUCKETS - 1` before it when the window length has not changed since it was written,
/// and still a sensible answer when it has (a config reload).
fn in_window(bucket: &Bucket, window_ms: Millis, now: Millis) -> bool {
    bucket.start > now.saturating_sub(window_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Millis = 300_000;

    #[test]
    fn counts_within_the_window_and_ages_out_by_bucket() {
        let mut w = Window::default();
        w.record(WINDOW, true, 1_000);
        w.record(WINDOW, false, 29_999);
        w.record(WINDOW, true, 30_000);
        assert_eq!(w.0.len(), 2, "the first two calls share the first bucket");
        assert_eq!(
            w.totals(WINDOW, 30_000),
            Totals {
                calls: 3,
                failures: 2
            }
        );
        // The first bucket [0, 30 s) leaves the window when the eleventh bucket begins.
        assert_eq!(w.totals(WINDOW, 299_999).calls, 3);
        assert_eq!(
            w.totals(WINDOW, 300_000),
            Totals {
                calls: 1,
                failures: 1
            }
        );
        assert_eq!(w.totals(WINDOW, 330_000), Totals::default());
    }

    #[test]
    fn recording_prunes_old_buckets_so_the_state_stays_small() {
        let mut w = Window::default();
        for i in 0..1_000 {
            w.record(WINDOW, i % 3 == 0, i * 7_000);
        }
        assert!(w.0.len() <= BUCKETS as usize);
    }

    #[test]
    fn an_outcome_from_a_clock_behind_lands_in_its_own_bucket_in_order() {
        let mut w = Window::default();
        w.record(WINDOW, false, 95_000);
        w.record(WINDOW, true, 61_000);
        let starts: Vec<_> = w.0.iter().map(|b| b.start).collect();
        assert_eq!(starts, vec![60_000, 90_000]);
        assert_eq!(w.totals(WINDOW, 95_000).failures, 1);
    }

    #[test]
    fn serializes_compactly() {
        let mut w = Window::default();
        w.record(WINDOW, true, 45_000);
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"[{"start":30000,"calls":1,"failures":1}]"#
        );
    }
}
