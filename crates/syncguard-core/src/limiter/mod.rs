//! Rate limiting of provider calls (SPEC §3.3), one limiter per credential.
//!
//! A call may leave syncguard only when three things agree:
//! - the GCRA (generic cell rate algorithm, a token bucket kept as one timestamp) allows it:
//!   calls are spaced by the emission interval `T = 1000 / rps` ms, with up to `burst` calls at
//!   once when the limiter has been idle;
//! - every configured quota (per minute, hour, day) has room; quotas use fixed windows aligned
//!   to the Unix epoch (a day is a UTC day), as providers count them;
//! - the provider has not asked us to wait (`Retry-After`, or zero calls remaining until reset).
//!
//! [`LimiterState`] is what the store keeps in the row all nodes share, so every node obeys one
//! limit; [`LimitConfig`] comes from the provider definition and connection overrides. Time is
//! always passed in: the crate never reads the clock.

mod hints;

#[cfg(test)]
mod tests;

pub use crate::time::parse_http_date;
pub use hints::{parse_hints, parse_retry_after, Hints};

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Bounds on `rps` that keep the emission interval a sane whole number of microseconds.
const MIN_RPS: f64 = 0.001;
const MAX_RPS: f64 = 1_000_000.0;
/// Keeps `burst · T` far from overflowing.
const MAX_BURST: u32 = 1_000_000;

/// One credential's limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Sustained calls per second.
    pub rps: f64,
    /// Calls that may go at once after an idle period; 1 spaces every call by `1 / rps`.
    pub burst: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
}

impl LimitConfig {
    /// A limit with no quotas.
    pub fn new(rps: f64, burst: u32) -> Self {
        Self {
            rps,
            burst,
            per_minute: None,
            per_hour: None,
            per_day: None,
        }
    }

    /// Checks the values a limiter cannot work with, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError { field, reason });
        // Written so that NaN fails too.
        if !(self.rps >= MIN_RPS && self.rps <= MAX_RPS) {
            return bad("rps", "must be between 0.001 and 1000000");
        }
        if self.burst == 0 || self.burst > MAX_BURST {
            return bad("burst", "must be between 1 and 1000000");
        }
        for period in Period::ALL {
            if self.quota(period) == Some(0) {
                return bad(period.field(), "must be at least 1 when set");
            }
        }
        Ok(())
    }

    fn quota(&self, period: Period) -> Option<u32> {
        match period {
            Period::Minute => self.per_minute,
            Period::Hour => self.per_hour,
            Period::Day => self.per_day,
        }
    }

    /// The emission interval `T` in microseconds, rounded up: rounding down would let calls
    /// through slightly faster than `rps`. An unusable `rps` (zero, negative, NaN) fails closed.
    fn emission_us(&self) -> i64 {
        let t = 1_000_000.0 / self.rps;
        if t < 1.0 {
            1
        } else if t <= 1e15 {
            t.ceil() as i64
        } else {
            1_000_000_000_000_000
        }
    }

    /// The GCRA tolerance `tau = (burst − 1) · T`: how far ahead of now the theoretical arrival
    /// time may run.
    fn tolerance_us(&self) -> i64 {
        self.emission_us()
            .saturating_mul(i64::from(self.burst.saturating_sub(1)))
    }
}

/// A config value the limiter cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

/// Why a call has to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitReason {
    /// `rps` / `burst`.
    Rate,
    MinuteQuota,
    HourQuota,
    DayQuota,
    /// The provider said so (`Retry-After`, or nothing remaining until reset).
    Provider,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Rate => "rate",
            WaitReason::MinuteQuota => "minute_quota",
            WaitReason::HourQuota => "hour_quota",
            WaitReason::DayQuota => "day_quota",
            WaitReason::Provider => "provider",
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused call: trying again after `retry_in_ms` will succeed if nothing else took the room
/// meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Error)]
#[error("rate limited ({reason}), retry in {retry_in_ms} ms")]
pub struct Wait {
    pub retry_in_ms: u64,
    /// The constraint that needs the longest wait.
    pub reason: WaitReason,
}

/// The quota periods, each a fixed window aligned to the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Minute,
    Hour,
    Day,
}

impl Period {
    const ALL: [Period; 3] = [Period::Minute, Period::Hour, Period::Day];

    fn len_ms(self) -> Millis {
        match self {
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
        }
    }

    fn field(self) -> &'static str {
        match self {
            Period::Minute => "per_minute",
            Period::Hour => "per_hour",
            Period::Day => "per_day",
        }
    }

    fn reason(self) -> WaitReason {
        match self {
            Period::Minute => WaitReason::MinuteQuota,
            Period::Hour => WaitReason::HourQuota,
            Period::Day => WaitReason::DayQuota,
        }
    }
}

/// Calls counted in the quota window starting at `start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct QuotaWindow {
    start: Millis,
    count: u32,
}

impl QuotaWindow {
    fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The window to count in at `now`. A stored window *later* than ours was written by a node
    /// whose clock is ahead; it is kept rather than reset, because resetting would forget calls
    /// that really happened and let the quota be exceeded.
    fn current(self, period: Period, now: Millis) -> QuotaWindow {
        let start = now.div_euclid(period.len_ms()) * period.len_ms();
        if self.start >= start {
            self
        } else {
            QuotaWindow { start, count: 0 }
        }
    }
}

/// The persisted state of one limiter. Fields are private so that only the rules below change
/// them; missing fields default, so nodes on neighbouring versions can share a row.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimiterState {
    /// GCRA theoretical arrival time, in microseconds since the epoch: when the next call would
    /// be due if calls were spaced exactly `T` apart. Microseconds keep `T` exact for any
    /// sensible rate (10 rps is 100 000 µs) where milliseconds would not (3 rps).
    #[serde(skip_serializing_if = "is_zero")]
    tat_us: i64,
    /// Calls in the current window of each quota; an unconfigured quota's stays empty and is
    /// not stored.
    #[serde(skip_serializing_if = "QuotaWindow::is_empty")]
    minute: QuotaWindow,
    #[serde(skip_serializing_if = "QuotaWindow::is_empty")]
    hour: QuotaWindow,
    #[serde(skip_serializing_if = "QuotaWindow::is_empty")]
    day: QuotaWindow,
    /// No call before this, because the provider asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    blocked_until: Option<Millis>,
    /// The provider's last `x-rate-limit-remaining`.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_remaining: Option<u64>,
    /// The provider's last `x-rate-limit-limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_limit: Option<u64>,
    /// When the provider's window resets; after it, `provider_remaining` is stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    provider_reset_at: Option<Millis>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl LimiterState {
    /// A limiter that has never been used: a full burst is available.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn blocked_until(&self) -> Option<Millis> {
        self.blocked_until
    }

    pub fn provider_remaining(&self) -> Option<u64> {
        self.provider_remaining
    }

    pub fn provider_limit(&self) -> Option<u64> {
        self.provider_limit
    }

    /// Takes the room for one call at `now`, or says how long to wait. A refusal leaves the
    /// state untouched, so asking again costs nothing.
    ///
    /// Guarantee: in any span of `W` ms at most `burst + W · rps / 1000` calls are admitted,
    /// and in any quota window at most its quota.
    pub fn acquire(&mut self, cfg: &LimitConfig, now: Millis) -> Result<(), Wait> {
        if let Some(wait) = self.wait(cfg, now) {
            return Err(wait);
        }
        let now_us = micros(now);
        self.tat_us = self.tat_us.max(now_us).saturating_add(cfg.emission_us());
        for period in Period::ALL {
            if cfg.quota(period).is_some() {
                let window = self.window_mut(period);
                let mut current = window.current(period, now);
                current.count = current.count.saturating_add(1);
                *window = current;
            }
        }
        if self.blocked_until.is_some_and(|until| until <= now) {
            self.blocked_until = None;
        }
        Ok(())
    }

    /// Whether at most 10 % of some headroom is left at `now` — of the burst, of a quota, or of
    /// the provider's own count — or the provider asked us to wait. Non-critical work yields
    /// while this holds, leaving what is left to the calls that matter.
    pub fn near_depletion(&self, cfg: &LimitConfig, now: Millis) -> bool {
        let at_most_a_tenth = |left: u64, of: u64| left.saturating_mul(10) <= of;

        if self.blocked_until.is_some_and(|until| now < until) {
            return true;
        }
        if at_most_a_tenth(self.calls_available(cfg, now), u64::from(cfg.burst)) {
            return true;
        }
        for period in Period::ALL {
            if let Some(quota) = cfg.quota(period) {
                let used = self.window(period).current(period, now).count;
                if at_most_a_tenth(u64::from(quota.saturating_sub(used)), u64::from(quota)) {
                    return true;
                }
            }
        }
        // After the provider's reset its last count no longer says anything.
        if self.provider_reset_at.is_some_and(|reset| reset <= now) {
            return false;
        }
        match (self.provider_remaining, self.provider_limit) {
            (Some(0), _) => true,
            (Some(remaining), Some(limit)) => at_most_a_tenth(remaining, limit),
            _ => false,
        }
    }

    /// Takes in what a provider's response said at `now`. A `Retry-After` blocks calls for
    /// that long; zero calls remaining blocks them until the provider's window resets (when
    /// the reset is unknown the next 429 and its `Retry-After` will do it). Blocks only ever
    /// extend: several nodes may report hints in any order, and the longest wait is the safe
    /// one.
    pub fn apply_hints(&mut self, hints: &Hints, now: Millis) {
        let after = |ms: u64| now.saturating_add(Millis::try_from(ms).unwrap_or(Millis::MAX));
        if let Some(ms) = hints.retry_after_ms {
            self.block_until(after(ms));
        }
        if let Some(remaining) = hints.remaining {
            self.provider_remaining = Some(remaining);
            self.provider_limit = hints.limit.or(self.provider_limit);
            self.provider_reset_at = hints.reset_ms.map(after);
            if let (0, Some(reset_at)) = (remaining, self.provider_reset_at) {
                self.block_until(reset_at);
            }
        }
    }

    /// The longest of the waits the constraints impose at `now`, if any. Each constraint only
    /// relaxes as time passes, so after the longest wait all of them are met.
    fn wait(&self, cfg: &LimitConfig, now: Millis) -> Option<Wait> {
        let gcra_wait_us = self
            .tat_us
            .saturating_sub(cfg.tolerance_us())
            .saturating_sub(micros(now));
        // Rounded up: retrying a fraction of a millisecond early would be refused again.
        let rate = (ceil_div(gcra_wait_us, 1_000), WaitReason::Rate);

        let quota = |period: Period| {
            let quota = cfg.quota(period)?;
            let window = self.window(period).current(period, now);
            let ends = window.start.saturating_add(period.len_ms());
            (window.count >= quota).then(|| (ends.saturating_sub(now), period.reason()))
        };
        let provider = self
            .blocked_until
            .map(|until| (until.saturating_sub(now), WaitReason::Provider));

        [
            Some(rate),
            quota(Period::Minute),
            quota(Period::Hour),
            quota(Period::Day),
            provider,
        ]
        .into_iter()
        .flatten()
        .filter(|(ms, _)| *ms > 0)
        .max_by_key(|(ms, _)| *ms)
        .map(|(ms, reason)| Wait {
            retry_in_ms: u64::try_from(ms).unwrap_or(0),
            reason,
        })
    }

    /// Calls the GCRA alone would admit right now, back to back.
    fn calls_available(&self, cfg: &LimitConfig, now: Millis) -> u64 {
        let backlog = self.tat_us.saturating_sub(micros(now)).max(0);
        let slack = cfg.tolerance_us().saturating_sub(backlog);
        if slack < 0 {
            0
        } else {
            u64::try_from(slack / cfg.emission_us() + 1).unwrap_or(0)
        }
    }

    fn block_until(&mut self, until: Millis) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }

    fn window(&self, period: Period) -> QuotaWindow {
        match period {
            Period::Minute => self.minute,
            Period::Hour => self.hour,
            Period::Day => self.day,
        }
    }

    fn window_mut(&mut self, period: Period) -> &mut QuotaWindow {
        match period {
            Period::Minute => &mut self.minute,
            Period::Hour => &mut self.hour,
            Period::Day => &mut self.day,
        }
    }
}

fn micros(ms: Millis) -> i64 {
    ms.saturating_mul(1_000)
}

/// `n / d` rounded up, for `d > 0`; 0 for `n ≤ 0`.
fn ceil_div(n: i64, d: i64) -> i64 {
    if n <= 0 {
        0
    } else {
        n / d + i64::from(n % d != 0)
    }
}
