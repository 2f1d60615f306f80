//! Retry delay for the durable job queue (SPEC §3.1).
//!
//! For attempt `n` (1-based) the nominal delay is `d = min(cap, base · 2^(n−1))`; the actual delay
//! is drawn uniformly from `[d/2, d]` (jitter, so that a burst of failures does not retry in
//! lock-step). A provider hint (`Retry-After`) wins when it is larger.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Parameters of the retry formula. Defaults: base 2 s, cap 300 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Delay before the second attempt, before jitter.
    pub base_ms: u64,
    /// Upper bound of the nominal delay, whatever the attempt.
    pub cap_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_ms: 2_000,
            cap_ms: 300_000,
        }
    }
}

impl RetryPolicy {
    /// The nominal delay `d` after failed attempt `attempt` (1-based), before jitter.
    pub fn nominal_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(62);
        let factor = 1u64 << exp;
        self.base_ms.saturating_mul(factor).min(self.cap_ms)
    }

    /// The inclusive range `[d/2, d]` the jittered delay is drawn from.
    pub fn bounds_ms(&self, attempt: u32) -> (u64, u64) {
        let d = self.nominal_ms(attempt);
        (d / 2, d)
    }

    /// The delay to wait after failed attempt `attempt`, with jitter drawn from `rng` and the
    /// provider's hint (if any) taking precedence when it is larger.
    pub fn delay_ms<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        hint_ms: Option<u64>,
        rng: &mut R,
    ) -> u64 {
        let (lo, hi) = self.bounds_ms(attempt);
        let jittered = if hi > lo { rng.gen_range(lo..=hi) } else { hi };
        match hint_ms {
            Some(hint) if hint > jittered => hint,
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn nominal_doubles_then_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.nominal_ms(1), 2_000);
        assert_eq!(p.nominal_ms(2), 4_000);
        assert_eq!(p.nominal_ms(3), 8_000);
        assert_eq!(p.nominal_ms(8), 256_000);
        assert_eq!(p.nominal_ms(9), 300_000);
        assert_eq!(p.nominal_ms(500), 300_000);
    }

    #[test]
    fn hint_wins_only_when_larger() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(p.delay_ms(1, Some(60_000), &mut rng), 60_000);
        let d = p.delay_ms(1, Some(10), &mut rng);
        assert!((1_000..=2_000).contains(&d));
    }

    proptest! {
        #[test]
        fn delay_is_within_half_to_full(attempt in 1u32..40, seed in any::<u64>(), base in 1u64..10_000, cap in 1u64..1_000_000) {
            let p = RetryPolicy { base_ms: base, cap_ms: cap.max(base) };
            let mut rng = StdRng::seed_from_u64(seed);
            let d = p.delay_ms(attempt, None, &mut rng);
            let (lo, hi) = p.bounds_ms(attempt);
            prop_assert!(d >= lo && d <= hi);
            prop_assert!(hi <= p.cap_ms);
        }
    }
}
