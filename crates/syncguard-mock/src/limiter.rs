//! Per-token rate limiting with GCRA (the token bucket as a single timestamp per key).
//!
//! For each key we keep the theoretical arrival time (TAT). With emission interval `T = 1/rps`
//! and capacity `burst · T`, a request at `now` is allowed when `max(TAT, now) + T - now` fits
//! in the capacity; it then advances TAT by `T`. Rejected requests leave TAT alone, so a client
//! that hammers a full bucket is not punished beyond the limit itself.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

/// Buckets idle past their refill are dropped once the map grows beyond this.
const PRUNE_ABOVE: usize = 10_000;

/// The outcome of one check, and what the `x-rate-limit-*` headers report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Quota {
    /// Bucket capacity (`burst`).
    pub(crate) limit: u32,
    /// Requests that could be sent right now without a 429.
    pub(crate) remaining: u32,
    /// Time until the bucket is full again.
    pub(crate) reset: Duration,
    /// `Some` when the request was rejected: how long until it would be allowed.
    pub(crate) retry_after: Option<Duration>,
}

impl Quota {
    /// `x-rate-limit-limit`, `x-rate-limit-remaining`, `x-rate-limit-reset` (whole seconds until
    /// the bucket is full, rounded up), and on rejection `x-rate-limit-retry-after` (fractional
    /// seconds) with `Retry-After` (whole seconds, rounded up, as HTTP requires).
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        let mut set = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        set("x-rate-limit-limit", self.limit.to_string());
        set("x-rate-limit-remaining", self.remaining.to_string());
        set("x-rate-limit-reset", ceil_secs(self.reset).to_string());
        if let Some(wait) = self.retry_after {
            set(
                "x-rate-limit-retry-after",
                format!("{:.3}", wait.as_secs_f64()),
            );
            set("retry-after", ceil_secs(wait).max(1).to_string());
        }
    }
}

pub(crate) fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[derive(Debug)]
struct Buckets {
    rps: f64,
    burst: u32,
    tat: HashMap<String, Instant>,
}

/// All buckets, one per access token, sharing one `rps`/`burst` setting.
#[derive(Debug)]
pub(crate) struct Limiter {
    inner: Mutex<Buckets>,
}

impl Limiter {
    pub(crate) fn new(rps: f64, burst: u32) -> Self {
        Self {
            inner: Mutex::new(Buckets {
                rps,
                burst: burst.max(1),
                tat: HashMap::new(),
            }),
        }
    }

    /// Changes the limit for every bucket from now on; existing buckets keep their TAT.
    pub(crate) fn set(&self, rps: Option<f64>, burst: Option<u32>) {
        let mut b = self.inner.lock().expect("limiter lock");
        if let Some(rps) = rps {
            b.rps = rps;
        }
        if let Some(burst) = burst {
            b.burst = burst.max(1);
        }
    }

    pub(crate) fn settings(&self) -> (f64, u32) {
        let b = self.inner.lock().expect("limiter lock");
        (b.rps, b.burst)
    }

    /// Takes one request from `key`'s bucket at `now`, or says how long to wait.
    pub(crate) fn check(&self, key: &str, now: Instant) -> Quota {
        let mut b = self.inner.lock().expect("limiter lock");
        let burst = b.burst;
        // A zero, negative or non-finite rate means "no limit" (useful for benchmarks).
        if !(b.rps.is_finite() && b.rps > 0.0) {
            return Quota {
                limit: burst,
                remaining: burst,
                reset: Duration::ZERO,
                retry_after: None,
            };
        }
        let interval = Duration::from_secs_f64(1.0 / b.rps);
        let capacity = interval * burst;
        if b.tat.len() > PRUNE_ABOVE {
            b.tat.retain(|_, tat| *tat > now);
        }
        let tat = b.tat.get(key).copied().unwrap_or(now).max(now);
        let new_tat = tat + interval;
        let used = new_tat - now;
        // One microsecond of slack absorbs float rounding in `interval * burst`.
        if used > capacity + Duration::from_micros(1) {
            return Quota {
                limit: burst,
                remaining: 0,
                reset: tat - now,
                retry_after: Some(used - capacity),
            };
        }
        b.tat.insert(key.to_owned(), new_tat);
        let left = capacity.saturating_sub(used).as_secs_f64() / interval.as_secs_f64();
        Quota {
            limit: burst,
            // Rounding guards against 8.9999 reading as 8.
            remaining: (left + 1e-6).floor() as u32,
            reset: used,
            retry_after: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let limiter = Limiter::new(10.0, 10);
        let t0 = Instant::now();
        for expected_left in (0..10).rev() {
            let q = limiter.check("a", t0);
            assert_eq!(q.retry_after, None);
            assert_eq!(q.remaining, expected_left);
        }
        let denied = limiter.check("a", t0);
        let wait = denied
            .retry_after
            .expect("11th call in the same instant is over the limit");
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-3, "{wait:?}");
        assert_eq!(denied.remaining, 0);
        // Rejections do not consume: after one interval exactly one more call fits.
        let later = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check("a", later).retry_after, None);
        assert!(limiter.check("a", later).retry_after.is_some());
    }

    #[test]
    fn keys_are_independent_and_rate_changes_apply() {
        let limiter = Limiter::new(1.0, 1);
        let t0 = Instant::now();
        assert!(limiter.check("a", t0).retry_after.is_none());
        assert!(limiter.check("a", t0).retry_after.is_some());
        assert!(limiter.check("b", t0).retry_after.is_none());
        limiter.set(Some(0.0), None);
        assert!(
            limiter.check("a", t0).retry_after.is_none(),
            "0 rps disables the limit"
        );
    }

    #[test]
    fn headers_are_well_formed() {
        let mut headers = HeaderMap::new();
        Quota {
            limit: 10,
            remaining: 0,
            reset: Duration::from_millis(950),
            retry_after: Some(Duration::from_millis(100)),
        }
        .apply(&mut headers);
        assert_eq!(headers["x-rate-limit-limit"], "10");
        assert_eq!(headers["x-rate-limit-reset"], "1");
        assert_eq!(headers["x-rate-limit-retry-after"], "0.100");
        assert_eq!(headers["retry-after"], "1");
    }
}
