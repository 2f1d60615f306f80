use super::*;
use proptest::prelude::*;
use Outcome::{Failure as F, Ignored as I, Success as S};

const T0: Millis = 1_700_000_000_000;
const SEC: Millis = 1_000;

fn cfg() -> BreakerConfig {
    BreakerConfig::default()
}

/// Records `outcomes` one second apart from `start`, returning the transitions they caused.
fn feed(b: &mut BreakerState, outcomes: &[Outcome], start: Millis) -> Vec<Transition> {
    outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| b.record(&cfg(), *o, start + i as Millis * SEC))
        .collect()
}

/// A breaker opened at `T0` by five failures.
fn opened() -> BreakerState {
    let mut b = BreakerState::new();
    for _ in 0..5 {
        b.record(&cfg(), Outcome::Failure, T0);
    }
    assert_eq!(b.state(), CircuitState::Open);
    b
}

#[test]
fn default_config_is_the_spec_and_valid() {
    let c = cfg();
    assert_eq!(
        (c.window_s, c.min_calls, c.failure_threshold, c.open_for_s),
        (300, 5, 5, 60)
    );
    assert_eq!((c.failure_rate, c.half_open_probes), (0.5, 1));
    assert_eq!(c.validate(), Ok(()));
}

#[test]
fn validate_names_the_bad_field() {
    let spoiled = |field| {
        let mut c = cfg();
        match field {
            "window_s" => c.window_s = 0,
            "min_calls" => c.min_calls = 0,
            "failure_threshold" => c.failure_threshold = 0,
            "failure_rate" => c.failure_rate = f64::NAN,
            "open_for_s" => c.open_for_s = 0,
            "half_open_probes" => c.half_open_probes = 0,
            _ => unreachable!(),
        }
        c
    };
    let fields = [
        "window_s",
        "min_calls",
        "failure_threshold",
        "failure_rate",
        "open_for_s",
        "half_open_probes",
    ];
    for field in fields {
        let err = spoiled(field).validate().unwrap_err();
        assert_eq!(err.field, field);
        assert!(err.to_string().starts_with(field), "{err}");
    }
    for rate in [0.0, -0.5, 1.01] {
        let c = BreakerConfig {
            failure_rate: rate,
            ..cfg()
        };
        assert_eq!(c.validate().unwrap_err().field, "failure_rate", "{rate}");
    }
}

#[test]
fn partial_config_override_keeps_the_other_defaults() {
    let c: BreakerConfig = serde_json::from_str(r#"{"open_for_s": 30}"#).unwrap();
    assert_eq!(c.open_for_s, 30);
    assert_eq!(c.window_s, 300);
    assert!(serde_json::from_str::<BreakerConfig>(r#"{"open_for": 30}"#).is_err());
}

#[test]
fn opens_when_failures_reach_the_threshold() {
    let mut b = BreakerState::new();
    // Six successes first keep the rate below 50 % so only the count can trip it.
    assert!(feed(&mut b, &[S, S, S, S, S, S, F, F, F, F], T0).is_empty());
    assert_eq!(b.state(), CircuitState::Closed);
    let t = b.record(&cfg(), F, T0 + 10 * SEC).unwrap();
    assert_eq!(
        t,
        Transition {
            from: CircuitState::Closed,
            to: CircuitState::Open,
            reason: TransitionReason::FailureThreshold,
        }
    );
    assert_eq!(b.opened_at(), Some(T0 + 10 * SEC));
    assert_eq!(b.failures(&cfg(), T0 + 10 * SEC), 5);
}

#[test]
fn fewer_than_min_calls_never_open() {
    let c = BreakerConfig {
        failure_threshold: 2,
        ..cfg()
    };
    let mut b = BreakerState::new();
    for i in 0..4 {
        assert_eq!(b.record(&c, F, T0 + i), None, "call {i}");
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(
        b.record(&c, F, T0 + 4).map(|t| t.reason),
        Some(TransitionReason::FailureThreshold)
    );
}

#[test]
fn opens_when_the_failure_rate_is_reached() {
    let mut b = BreakerState::new();
    let t = feed(&mut b, &[S, F, S, F, F], T0);
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].reason, TransitionReason::FailureRate);
    assert_eq!(b.failures(&cfg(), T0 + 5 * SEC), 3);

    // Two of five is below 50 %.
    let mut b = BreakerState::new();
    assert!(feed(&mut b, &[S, F, S, F, S], T0).is_empty());
}

#[test]
fn old_outcomes_age_out_of_the_window() {
    let mut b = BreakerState::new();
    feed(&mut b, &[F, F, F, F], T0);
    // Five minutes later those four are gone: one more failure is one failure.
    let later = T0 + 301 * SEC;
    assert_eq!(b.failures(&cfg(), later), 0);
    assert_eq!(b.record(&cfg(), F, later), None);
    assert_eq!(b.calls(&cfg(), later), 1);
    assert_eq!(b.state(), CircuitState::Closed);
}

#[test]
fn client_errors_never_open_it() {
    let mut b = BreakerState::new();
    for status in [400, 401, 403, 404, 408, 409, 422, 423] {
        assert_eq!(Outcome::from_status(status), I, "{status}");
        for _ in 0..20 {
            assert_eq!(b.record(&cfg(), Outcome::from_status(status), T0), None);
        }
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.calls(&cfg(), T0), 0, "ignored outcomes are not calls");
}

#[test]
fn statuses_map_to_outcomes() {
    for s in [200, 201, 204, 304] {
        assert_eq!(Outcome::from_status(s), S, "{s}");
    }
    for s in [429, 500, 502, 503, 504, 0, 600] {
        assert_eq!(Outcome::from_status(s), F, "{s}");
    }
}

#[test]
fn stays_open_for_open_for_then_admits_exactly_the_probes() {
    let mut b = opened();
    let retry_at = T0 + 60 * SEC;
    for now in [T0, T0 + 59_999] {
        assert_eq!(b.admit(&cfg(), now), Admission::Reject { retry_at });
    }
    assert_eq!(b.state(), CircuitState::Open);

    let first = b.admit(&cfg(), retry_at);
    assert_eq!(
        first,
        Admission::Probe {
            transition: Some(Transition {
                from: CircuitState::Open,
                to: CircuitState::HalfOpen,
                reason: TransitionReason::OpenElapsed,
            })
        }
    );
    assert_eq!(b.state(), CircuitState::HalfOpen);
    // One probe is in flight: everyone else waits.
    assert!(!b.admit(&cfg(), retry_at + 1).is_allowed());

    let c3 = BreakerConfig {
        half_open_probes: 3,
        ..cfg()
    };
    let mut b = opened();
    let admitted = (0..10)
        .filter(|i| b.admit(&c3, retry_at + i).is_allowed())
        .count();
    assert_eq!(admitted, 3);
}

#[test]
fn a_successful_probe_closes_with_a_fresh_window() {
    let mut b = opened();
    let now = T0 + 60 * SEC;
    assert!(b.admit(&cfg(), now).is_allowed());
    let t = b.record(&cfg(), S, now + 200).unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (
            CircuitState::HalfOpen,
            CircuitState::Closed,
            TransitionReason::ProbeSucceeded
        )
    );
    assert_eq!(b.opened_at(), None);
    assert_eq!(b.failures(&cfg(), now + 200), 0);
    assert_eq!(b.admit(&cfg(), now + 300), Admission::Allow);
    // The failures that opened it are forgotten: one new failure does not re-open it.
    assert_eq!(b.record(&cfg(), F, now + 400), None);
}

#[test]
fn every_probe_must_succeed_to_close() {
    let c = BreakerConfig {
        half_open_probes: 2,
        ..cfg()
    };
    let mut b = opened();
    let now = T0 + 60 * SEC;
    assert!(b.admit(&c, now).is_allowed());
    assert!(b.admit(&c, now).is_allowed());
    assert_eq!(b.record(&c, S, now + 1), None);
    assert!(
        !b.admit(&c, now + 2).is_allowed(),
        "the used slot stays used"
    );
    assert_eq!(
        b.record(&c, S, now + 3).map(|t| t.to),
        Some(CircuitState::Closed)
    );
}

#[test]
fn a_failed_probe_reopens_from_now() {
    let mut b = opened();
    let now = T0 + 60 * SEC;
    assert!(b.admit(&cfg(), now).is_allowed());
    let t = b.record(&cfg(), F, now + 500).unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (
            CircuitState::HalfOpen,
            CircuitState::Open,
            TransitionReason::ProbeFailed
        )
    );
    assert_eq!(b.opened_at(), Some(now + 500));
    assert_eq!(
        b.admit(&cfg(), now + 501),
        Admission::Reject {
            retry_at: now + 500 + 60 * SEC
        }
    );
}

#[test]
fn an_ignored_probe_makes_room_for_another() {
    let mut b = opened();
    let now = T0 + 60 * SEC;
    assert!(b.admit(&cfg(), now).is_allowed());
    assert_eq!(b.record(&cfg(), I, now + 1), None);
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert_eq!(
        b.admit(&cfg(), now + 2),
        Admission::Probe { transition: None }
    );
}

#[test]
fn a_probe_that_never_reports_is_written_off_after_open_for() {
    let mut b = opened();
    let now = T0 + 60 * SEC;
    assert!(b.admit(&cfg(), now).is_allowed());
    let write_off = now + 60 * SEC;
    assert_eq!(
        b.admit(&cfg(), write_off - 1),
        Admission::Reject {
            retry_at: write_off
        }
    );
    assert_eq!(
        b.admit(&cfg(), write_off),
        Admission::Probe { transition: None }
    );
}

#[test]
fn outcomes_of_calls_admitted_before_opening_are_disregarded() {
    let mut b = opened();
    assert_eq!(b.record(&cfg(), S, T0 + SEC), None);
    assert_eq!(b.state(), CircuitState::Open);
    assert!(b.admit(&cfg(), T0 + 60 * SEC).is_allowed());
    assert_eq!(
        b.record(&cfg(), S, T0 + 61 * SEC).map(|t| t.to),
        Some(CircuitState::Closed)
    );
    assert_eq!(b.record(&cfg(), F, T0 + 62 * SEC), None);
}

#[test]
fn forcing_open_rejects_whatever_the_traffic() {
    let mut b = BreakerState::new();
    let t = b.force(ForceMode::Open, T0).unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (
            CircuitState::Closed,
            CircuitState::Open,
            TransitionReason::ForcedOpen
        )
    );
    assert_eq!(b.forced(), Some(Forced::Open));
    assert_eq!(b.force(ForceMode::Open, T0 + 1), None, "idempotent");
    let later = T0 + 3_600 * SEC;
    assert_eq!(
        b.admit(&cfg(), later),
        Admission::Reject {
            retry_at: later + 60 * SEC
        }
    );
    assert_eq!(b.record(&cfg(), S, later), None);
    assert_eq!(b.state(), CircuitState::Open);
}

#[test]
fn forcing_closed_allows_whatever_the_failures() {
    let mut b = opened();
    let t = b.force(ForceMode::Closed, T0 + SEC).unwrap();
    assert_eq!((t.from, t.to), (CircuitState::Open, CircuitState::Closed));
    assert_eq!(b.opened_at(), None);
    for i in 0..20 {
        assert_eq!(b.admit(&cfg(), T0 + 2 * SEC + i), Admission::Allow);
        assert_eq!(b.record(&cfg(), F, T0 + 2 * SEC + i), None);
    }
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.failures(&cfg(), T0 + 3 * SEC), 20, "still counted");

    // Back to auto, the counted failures apply again on the next one.
    let t = b.force(ForceMode::Auto, T0 + 4 * SEC).unwrap();
    assert_eq!(
        (t.from, t.to, t.reason),
        (
            CircuitState::Closed,
            CircuitState::Closed,
            TransitionReason::ForcedAuto
        )
    );
    assert_eq!(b.forced(), None);
    assert_eq!(
        b.record(&cfg(), F, T0 + 5 * SEC).map(|t| t.to),
        Some(CircuitState::Open)
    );
}

#[test]
fn returning_to_auto_after_forced_open_probes_first() {
    let mut b = BreakerState::new();
    b.force(ForceMode::Open, T0);
    let t = b.force(ForceMode::Auto, T0 + 3_600 * SEC).unwrap();
    assert_eq!((t.from, t.to), (CircuitState::Open, CircuitState::Open));
    assert!(matches!(
        b.admit(&cfg(), T0 + 3_600 * SEC),
        Admission::Probe {
            transition: Some(_)
        }
    ));
    assert!(!b.admit(&cfg(), T0 + 3_600 * SEC).is_allowed());
    assert_eq!(b.force(ForceMode::Auto, T0), None, "already auto");
}

#[test]
fn names_parse_and_print() {
    for s in CircuitState::ALL {
        assert_eq!(s.as_str().parse::<CircuitState>(), Ok(s));
        assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
    }
    for m in ForceMode::ALL {
        assert_eq!(m.as_str().parse::<ForceMode>(), Ok(m));
        assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
    }
    let err = "halfopen".parse::<CircuitState>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown circuit state `halfopen` (expected closed, open or half_open)"
    );
    assert!("Auto".parse::<ForceMode>().is_err());
}

#[test]
fn state_round_trips_through_json() {
    let fresh = BreakerState::new();
    assert_eq!(
        serde_json::to_string(&fresh).unwrap(),
        r#"{"state":"closed"}"#
    );

    let mut b = opened();
    b.admit(&cfg(), T0 + 60 * SEC);
    b.force(ForceMode::Closed, T0 + 61 * SEC);
    b.record(&cfg(), F, T0 + 62 * SEC);
    let json = serde_json::to_string(&b).unwrap();
    let back: BreakerState = serde_json::from_str(&json).unwrap();
    assert_eq!(back, b);

    let half_open = {
        let mut b = opened();
        b.admit(&cfg(), T0 + 60 * SEC);
        b
    };
    let back: BreakerState =
        serde_json::from_str(&serde_json::to_string(&half_open).unwrap()).unwrap();
    assert_eq!(back, half_open);
}

#[test]
fn view_has_the_api_shape() {
    let b = opened();
    let v = serde_json::to_value(b.view(&cfg(), T0)).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"state": "open", "forced": null, "failures": 5, "opened_at": T0})
    );
}

proptest! {
    #[test]
    fn never_opens_without_failures(
        steps in prop::collection::vec((any::<bool>(), 0..120_000i64, any::<bool>()), 1..300)
    ) {
        let mut b = BreakerState::new();
        let mut now = T0;
        for (success, gap, admit) in steps {
            now += gap;
            if admit {
                prop_assert!(b.admit(&cfg(), now).is_allowed());
            }
            let outcome = if success { S } else { I };
            prop_assert_eq!(b.record(&cfg(), outcome, now), None);
            prop_assert_eq!(b.state(), CircuitState::Closed);
        }
    }

    #[test]
    fn failures_in_view_never_exceed_calls(
        outcomes in prop::collection::vec((0..3u8, 0..40_000i64), 1..200)
    ) {
        let mut b = BreakerState::new();
        b.force(ForceMode::Closed, T0);
        let mut now = T0;
        for (o, gap) in outcomes {
            now += gap;
            b.record(&cfg(), [S, F, I][usize::from(o)], now);
            prop_assert!(b.failures(&cfg(), now) <= b.calls(&cfg(), now));
        }
    }
}
