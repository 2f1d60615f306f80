use super::*;
use proptest::prelude::*;

/// A minute boundary, so quota windows start here.
const T0: Millis = 1_700_000_040_000;

fn wait(retry_in_ms: u64, reason: WaitReason) -> Result<(), Wait> {
    Err(Wait {
        retry_in_ms,
        reason,
    })
}

#[test]
fn validate_names_the_bad_field() {
    assert_eq!(LimitConfig::new(10.0, 1).validate(), Ok(()));
    let cases = [
        (LimitConfig::new(0.0, 1), "rps"),
        (LimitConfig::new(-1.0, 1), "rps"),
        (LimitConfig::new(f64::NAN, 1), "rps"),
        (LimitConfig::new(f64::INFINITY, 1), "rps"),
        (LimitConfig::new(10.0, 0), "burst"),
        (
            LimitConfig {
                per_hour: Some(0),
                ..LimitConfig::new(10.0, 1)
            },
            "per_hour",
        ),
    ];
    for (cfg, field) in cases {
        let err = cfg.validate().unwrap_err();
        assert_eq!(err.field, field, "{cfg:?}");
        assert!(err.to_string().starts_with(field), "{err}");
    }
}

#[test]
fn config_json_has_optional_quotas_and_refuses_typos() {
    let cfg: LimitConfig = serde_json::from_str(r#"{"rps": 10, "burst": 5}"#).unwrap();
    assert_eq!(cfg, LimitConfig::new(10.0, 5));
    assert!(
        serde_json::from_str::<LimitConfig>(r#"{"rps": 10, "burst": 5, "per_min": 1}"#).is_err()
    );
}

#[test]
fn burst_one_spaces_calls_exactly_one_emission_interval_apart() {
    let cfg = LimitConfig::new(10.0, 1);
    let mut s = LimiterState::new();
    assert_eq!(s.acquire(&cfg, T0), Ok(()));
    assert_eq!(s.acquire(&cfg, T0), wait(100, WaitReason::Rate));
    assert_eq!(s.acquire(&cfg, T0 + 1), wait(99, WaitReason::Rate));
    assert_eq!(s.acquire(&cfg, T0 + 99), wait(1, WaitReason::Rate));
    assert_eq!(s.acquire(&cfg, T0 + 100), Ok(()));

    // Over ten seconds, polling every millisecond, exactly one call per 100 ms gets through.
    let mut s = LimiterState::new();
    let admitted: Vec<Millis> = (0..10_000)
        .map(|i| T0 + i)
        .filter(|&now| s.acquire(&cfg, now).is_ok())
        .collect();
    let expected: Vec<Millis> = (0..100).map(|i| T0 + i * 100).collect();
    assert_eq!(admitted, expected);
}

#[test]
fn burst_lets_that_many_through_at_once_then_the_rate() {
    let cfg = LimitConfig::new(10.0, 10);
    let mut s = LimiterState::new();
    for i in 0..10 {
        assert_eq!(s.acquire(&cfg, T0), Ok(()), "call {i}");
    }
    assert_eq!(s.acquire(&cfg, T0), wait(100, WaitReason::Rate));
    assert_eq!(s.acquire(&cfg, T0 + 99), wait(1, WaitReason::Rate));
    for i in 1..=5 {
        assert_eq!(s.acquire(&cfg, T0 + i * 100), Ok(()));
        assert!(s.acquire(&cfg, T0 + i * 100).is_err());
    }
    // Idle for a second: the whole burst is back.
    let later = T0 + 1_500;
    assert_eq!(
        (0..20).filter(|_| s.acquire(&cfg, later).is_ok()).count(),
        10
    );
}

#[test]
fn a_rate_that_is_not_a_whole_number_of_milliseconds_never_runs_fast() {
    // T = 333.33… ms. Calling as soon as allowed with some tolerance to carry the fractions,
    // call n (from 0) must not come before n − 1 intervals; rounding T down would let the
    // 1002nd call out at 333 333 ms, a microsecond early.
    let cfg = LimitConfig::new(3.0, 2);
    let mut s = LimiterState::new();
    let admitted: Vec<Millis> = (0..334_000)
        .map(|i| T0 + i)
        .filter(|&now| s.acquire(&cfg, now).is_ok())
        .collect();
    assert_eq!(admitted.len(), 1_003);
    for (n, t) in admitted.iter().enumerate().skip(2) {
        let elapsed = t - T0;
        assert!(
            (n as i64 - 1) * 1_000 <= elapsed * 3,
            "call {n} at {elapsed} ms"
        );
    }
}

#[test]
fn a_refusal_changes_nothing() {
    let cfg = LimitConfig::new(1.0, 1);
    let mut s = LimiterState::new();
    s.acquire(&cfg, T0).unwrap();
    let before = s.clone();
    for i in 0..50 {
        assert!(s.acquire(&cfg, T0 + i).is_err());
    }
    assert_eq!(s, before);
}

#[test]
fn minute_quota_waits_for_the_next_window() {
    let cfg = LimitConfig {
        per_minute: Some(3),
        ..LimitConfig::new(100.0, 100)
    };
    let mut s = LimiterState::new();
    for _ in 0..3 {
        s.acquire(&cfg, T0 + 10_000).unwrap();
    }
    assert_eq!(
        s.acquire(&cfg, T0 + 10_000),
        wait(50_000, WaitReason::MinuteQuota)
    );
    assert_eq!(
        s.acquire(&cfg, T0 + 59_999),
        wait(1, WaitReason::MinuteQuota)
    );
    assert_eq!(s.acquire(&cfg, T0 + 60_000), Ok(()));
}

#[test]
fn the_longest_quota_wait_is_reported() {
    let cfg = LimitConfig {
        per_minute: Some(2),
        per_hour: Some(2),
        per_day: Some(10),
        ..LimitConfig::new(100.0, 100)
    };
    let mut s = LimiterState::new();
    s.acquire(&cfg, T0).unwrap();
    s.acquire(&cfg, T0).unwrap();
    let Err(w) = s.acquire(&cfg, T0) else {
        panic!("quota exhausted")
    };
    assert_eq!(w.reason, WaitReason::HourQuota);
    let hour_end = (T0 / 3_600_000 + 1) * 3_600_000;
    assert_eq!(w.retry_in_ms, (hour_end - T0) as u64);
    assert_eq!(s.acquire(&cfg, hour_end), Ok(()));
    assert_eq!(
        w.to_string(),
        format!("rate limited (hour_quota), retry in {} ms", w.retry_in_ms)
    );
}

#[test]
fn a_quota_window_written_by_a_clock_ahead_is_not_reset() {
    let cfg = LimitConfig {
        per_minute: Some(1),
        ..LimitConfig::new(100.0, 100)
    };
    let mut s = LimiterState::new();
    s.acquire(&cfg, T0 + 60_000).unwrap();
    // A node whose clock is 2 s behind, just before the boundary, sees the quota used.
    assert_eq!(
        s.acquire(&cfg, T0 + 58_000),
        wait(62_000, WaitReason::MinuteQuota)
    );
}

#[test]
fn retry_after_blocks_until_then() {
    let cfg = LimitConfig::new(10.0, 10);
    let mut s = LimiterState::new();
    s.apply_hints(
        &Hints {
            retry_after_ms: Some(2_500),
            ..Hints::default()
        },
        T0,
    );
    assert_eq!(s.blocked_until(), Some(T0 + 2_500));
    assert_eq!(s.acquire(&cfg, T0 + 500), wait(2_000, WaitReason::Provider));
    assert_eq!(s.acquire(&cfg, T0 + 2_500), Ok(()));
    assert_eq!(s.blocked_until(), None, "an expired block is dropped");
}

#[test]
fn a_shorter_retry_after_does_not_shorten_a_block() {
    let mut s = LimiterState::new();
    let retry = |ms| Hints {
        retry_after_ms: Some(ms),
        ..Hints::default()
    };
    s.apply_hints(&retry(10_000), T0);
    s.apply_hints(&retry(1_000), T0 + 1);
    assert_eq!(s.blocked_until(), Some(T0 + 10_000));
}

#[test]
fn nothing_remaining_blocks_until_the_reset() {
    let cfg = LimitConfig::new(10.0, 10);
    let mut s = LimiterState::new();
    let headers = [
        ("x-rate-limit-remaining", "0".to_string()),
        ("x-rate-limit-limit", "600".to_string()),
        ("x-rate-limit-reset", ((T0 + 42_000) / 1_000).to_string()),
    ];
    let lookup = |name: &str| {
        headers
            .iter()
            .find(|(h, _)| *h == name)
            .map(|(_, v)| v.clone())
    };
    s.apply_hints(&parse_hints(lookup, T0), T0);
    assert_eq!(
        s.acquire(&cfg, T0 + 2_000),
        wait(40_000, WaitReason::Provider)
    );
    assert!(s.near_depletion(&cfg, T0 + 2_000));
    assert_eq!(s.acquire(&cfg, T0 + 42_000), Ok(()));
}

#[test]
fn nothing_remaining_without_a_reset_only_flags_depletion() {
    let cfg = LimitConfig::new(10.0, 10);
    let mut s = LimiterState::new();
    s.apply_hints(
        &Hints {
            remaining: Some(0),
            ..Hints::default()
        },
        T0,
    );
    assert_eq!(s.blocked_until(), None);
    assert!(s.near_depletion(&cfg, T0));
    assert_eq!(s.acquire(&cfg, T0), Ok(()));
}

#[test]
fn near_depletion_follows_the_burst() {
    let cfg = LimitConfig::new(10.0, 20);
    let mut s = LimiterState::new();
    assert!(!s.near_depletion(&cfg, T0));
    for _ in 0..17 {
        s.acquire(&cfg, T0).unwrap();
    }
    assert!(!s.near_depletion(&cfg, T0), "3 of 20 left");
    s.acquire(&cfg, T0).unwrap();
    assert!(s.near_depletion(&cfg, T0), "2 of 20 left");
    assert!(!s.near_depletion(&cfg, T0 + 100), "3 of 20 again");

    // With a burst of one, any wait is depletion.
    let one = LimitConfig::new(10.0, 1);
    let mut s = LimiterState::new();
    s.acquire(&one, T0).unwrap();
    assert!(s.near_depletion(&one, T0 + 99));
    assert!(!s.near_depletion(&one, T0 + 100));
}

#[test]
fn near_depletion_follows_quotas() {
    let cfg = LimitConfig {
        per_day: Some(100),
        ..LimitConfig::new(1_000.0, 1_000)
    };
    let mut s = LimiterState::new();
    for _ in 0..89 {
        s.acquire(&cfg, T0).unwrap();
    }
    assert!(!s.near_depletion(&cfg, T0));
    s.acquire(&cfg, T0).unwrap();
    assert!(s.near_depletion(&cfg, T0), "10 of 100 left today");
    assert!(!s.near_depletion(&cfg, T0 + 86_400_000), "a new day");
}

#[test]
fn near_depletion_follows_the_provider_until_its_reset() {
    let cfg = LimitConfig::new(10.0, 10);
    let mut s = LimiterState::new();
    let said = |remaining| Hints {
        remaining: Some(remaining),
        limit: Some(100),
        reset_ms: Some(60_000),
        ..Hints::default()
    };
    s.apply_hints(&said(11), T0);
    assert!(!s.near_depletion(&cfg, T0));
    s.apply_hints(&said(10), T0);
    assert!(s.near_depletion(&cfg, T0));
    assert_eq!(s.provider_remaining(), Some(10));
    assert_eq!(s.provider_limit(), Some(100));
    assert!(
        !s.near_depletion(&cfg, T0 + 60_000),
        "stale after the reset"
    );
}

#[test]
fn state_round_trips_through_json_and_starts_empty() {
    assert_eq!(serde_json::to_string(&LimiterState::new()).unwrap(), "{}");
    let cfg = LimitConfig {
        per_minute: Some(5),
        per_day: Some(50),
        ..LimitConfig::new(3.0, 2)
    };
    let mut s = LimiterState::new();
    s.acquire(&cfg, T0).unwrap();
    s.apply_hints(
        &Hints {
            retry_after_ms: Some(1_000),
            remaining: Some(3),
            limit: Some(40),
            reset_ms: Some(9_000),
        },
        T0,
    );
    let json = serde_json::to_string(&s).unwrap();
    let back: LimiterState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert!(!json.contains("hour"), "unused quotas take no room: {json}");
}

fn arb_config() -> impl Strategy<Value = LimitConfig> {
    (
        0.5f64..50.0,
        1u32..20,
        prop::option::of(1u32..200),
        prop::option::of(1u32..2_000),
    )
        .prop_map(|(rps, burst, per_minute, per_hour)| LimitConfig {
            per_minute,
            per_hour,
            ..LimitConfig::new(rps, burst)
        })
}

fn arb_gaps() -> impl Strategy<Value = Vec<Millis>> {
    prop::collection::vec(
        prop_oneof![4 => 0..5i64, 4 => 0..200i64, 1 => 0..120_000i64],
        1..400,
    )
}

proptest! {
    #[test]
    fn never_admits_more_than_the_limit(cfg in arb_config(), gaps in arb_gaps()) {
        let mut s = LimiterState::new();
        let mut now = T0;
        let mut admitted = Vec::new();
        for gap in gaps {
            now += gap;
            if s.acquire(&cfg, now).is_ok() {
                admitted.push(now);
            }
        }
        // The busiest span of any length starts and ends on admitted calls.
        for (i, first) in admitted.iter().enumerate() {
            for (j, last) in admitted.iter().enumerate().skip(i) {
                let calls = (j - i + 1) as f64;
                let span = (last - first) as f64;
                let allowed = f64::from(cfg.burst) + span * cfg.rps / 1_000.0;
                prop_assert!(
                    calls <= allowed + 1e-9,
                    "{calls} calls in {span} ms, limit {allowed}"
                );
            }
        }
        for period in Period::ALL {
            if let Some(quota) = cfg.quota(period) {
                let mut counts = std::collections::HashMap::new();
                for t in &admitted {
                    *counts.entry(t.div_euclid(period.len_ms())).or_insert(0u32) += 1;
                }
                prop_assert!(counts.values().all(|&n| n <= quota));
            }
        }
    }

    #[test]
    fn waiting_as_told_is_enough_and_refusals_change_nothing(
        cfg in arb_config(),
        gaps in arb_gaps(),
        retry_after in prop::option::of(0u64..5_000),
    ) {
        let mut s = LimiterState::new();
        s.apply_hints(&Hints { retry_after_ms: retry_after, ..Hints::default() }, T0);
        let mut now = T0;
        for gap in gaps {
            now += gap;
            let before = s.clone();
            if let Err(w) = s.acquire(&cfg, now) {
                prop_assert_eq!(&s, &before);
                prop_assert!(w.retry_in_ms > 0);
                prop_assert!(s.near_depletion(&cfg, now) || w.reason != WaitReason::Rate);
                let mut probe = s.clone();
                prop_assert_eq!(probe.acquire(&cfg, now + w.retry_in_ms as Millis), Ok(()));
            }
        }
    }
}
