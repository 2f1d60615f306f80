//! Fault injection on the provider API routes: errors, latency, timeouts, outages, 429 storms
//! and schema drift, all changeable at run time through `/_mock/faults` or [`crate::MockState`].
//!
//! The decision is made per request from the current settings ([`Faults::plan`]), then the
//! middleware (`inject_faults` in the `middleware` module) sleeps and/or answers in the route's provider style.

use std::time::Duration;

use axum::http::StatusCode;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A change to the fault settings: every field optional, an absent field keeps its value.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultsPatch {
    /// Share of calls (0–1) answered `error_status` instead of being served.
    pub error_rate: Option<f64>,
    /// Status of injected errors; default 500.
    pub error_status: Option<u16>,
    /// Delay added to every call, in milliseconds.
    pub latency_ms: Option<u64>,
    /// Share of calls (0–1) held for `timeout_ms` and then answered 504.
    pub timeout_rate: Option<f64>,
    /// How long a timed-out call is held; default `MockConfig::timeout_hold_ms` (30 s).
    pub timeout_ms: Option<u64>,
    /// Every call answers 503 for this many seconds from now (0 ends an outage).
    pub outage_s: Option<f64>,
    /// Every call answers 429 with a retry-after for this many seconds from now.
    pub rate_limit_storm_s: Option<f64>,
    /// Adds an unexpected field to every object the APIs return (renames nothing).
    pub schema_drift: Option<bool>,
    /// New sustained rate per token (0 disables limiting).
    pub rate_limit_rps: Option<f64>,
    /// New burst per token.
    pub rate_limit_burst: Option<u32>,
}

impl FaultsPatch {
    pub(crate) fn validate(&self) -> Result<(), String> {
        let share = |name: &str, v: Option<f64>| match v {
            Some(x) if !(0.0..=1.0).contains(&x) => Err(format!("{name} must be between 0 and 1")),
            _ => Ok(()),
        };
        let secs = |name: &str, v: Option<f64>| match v {
            Some(x) if !(x.is_finite() && x >= 0.0) => Err(format!("{name} must be >= 0")),
            _ => Ok(()),
        };
        share("error_rate", self.error_rate)?;
        share("timeout_rate", self.timeout_rate)?;
        secs("outage_s", self.outage_s)?;
        secs("rate_limit_storm_s", self.rate_limit_storm_s)?;
        secs("rate_limit_rps", self.rate_limit_rps)?;
        match self.error_status {
            Some(s) if !(400..=599).contains(&s) => Err("error_status must be 400-599".into()),
            _ => Ok(()),
        }
    }
}

/// The current fault settings, as `GET /_mock/faults` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultsView {
    pub error_rate: f64,
    pub error_status: u16,
    pub latency_ms: u64,
    pub timeout_rate: f64,
    pub timeout_ms: u64,
    pub outage_remaining_s: f64,
    pub rate_limit_storm_remaining_s: f64,
    pub schema_drift: bool,
    pub rate_limit_rps: f64,
    pub rate_limit_burst: u32,
}

/// Fault settings (the limiter's rate lives in the limiter).
#[derive(Debug, Clone)]
pub(crate) struct Faults {
    error_rate: f64,
    error_status: u16,
    latency: Duration,
    timeout_rate: f64,
    timeout_hold: Duration,
    outage_until: Option<Instant>,
    storm_until: Option<Instant>,
    pub(crate) schema_drift: bool,
}

/// What to do to one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub(crate) latency: Duration,
    pub(crate) injected: Option<Injected>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Injected {
    /// 503 with `Retry-After` for the rest of the outage.
    Outage(Duration),
    /// 429 with retry-after headers for the rest of the storm.
    Storm(Duration),
    /// Hold the request this long, then 504.
    Timeout(Duration),
    /// Answer this status.
    Error(StatusCode),
}

impl Faults {
    pub(crate) fn new(timeout_hold_ms: u64) -> Self {
        Self {
            error_rate: 0.0,
            error_status: 500,
            latency: Duration::ZERO,
            timeout_rate: 0.0,
            timeout_hold: Duration::from_millis(timeout_hold_ms),
            outage_until: None,
            storm_until: None,
            schema_drift: false,
        }
    }

    /// Applies a validated patch; windows (`outage_s`, storms) start at `now`.
    pub(crate) fn apply(&mut self, patch: &FaultsPatch, now: Instant) {
        let window = |secs: f64| (secs > 0.0).then(|| now + Duration::from_secs_f64(secs));
        if let Some(v) = patch.error_rate {
            self.error_rate = v;
        }
        if let Some(v) = patch.error_status {
            self.error_status = v;
        }
        if let Some(v) = patch.latency_ms {
            self.latency = Duration::from_millis(v);
        }
        if let Some(v) = patch.timeout_rate {
            self.timeout_rate = v;
        }
        if let Some(v) = patch.timeout_ms {
            self.timeout_hold = Duration::from_millis(v);
        }
        if let Some(v) = patch.outage_s {
            self.outage_until = window(v);
        }
        if let Some(v) = patch.rate_limit_storm_s {
            self.storm_until = window(v);
        }
        if let Some(v) = patch.schema_drift {
            self.schema_drift = v;
        }
    }

    pub(crate) fn view(&self, now: Instant, (rps, burst): (f64, u32)) -> FaultsView {
        let left = |until: Option<Instant>| {
            until.map_or(0.0, |u| u.saturating_duration_since(now).as_secs_f64())
        };
        FaultsView {
            error_rate: self.error_rate,
            error_status: self.error_status,
            latency_ms: self.latency.as_millis() as u64,
            timeout_rate: self.timeout_rate,
            timeout_ms: self.timeout_hold.as_millis() as u64,
            outage_remaining_s: left(self.outage_until),
            rate_limit_storm_remaining_s: left(self.storm_until),
            schema_drift: self.schema_drift,
            rate_limit_rps: rps,
            rate_limit_burst: burst,
        }
    }

    /// Decides the fate of one request. Outages win over storms, storms over random faults.
    pub(crate) fn plan(&self, now: Instant, rng: &mut impl Rng) -> Plan {
        let remaining = |until: Option<Instant>| until.filter(|u| *u > now).map(|u| u - now);
        let injected = if let Some(left) = remaining(self.outage_until) {
            Some(Injected::Outage(left))
        } else if let Some(left) = remaining(self.storm_until) {
            Some(Injected::Storm(left))
        } else if self.timeout_rate > 0.0 && rng.gen_bool(self.timeout_rate) {
            Some(Injected::Timeout(self.timeout_hold))
        } else if self.error_rate > 0.0 && rng.gen_bool(self.error_rate) {
            Some(Injected::Error(
                StatusCode::from_u16(self.error_status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            ))
        } else {
            None
        };
        Plan {
            latency: self.latency,
            injected,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn outage_beats_storm_beats_random_faults() {
        let mut faults = Faults::new(30_000);
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(faults.plan(now, &mut rng).injected, None);

        faults.apply(
            &FaultsPatch {
                error_rate: Some(1.0),
                error_status: Some(502),
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            faults.plan(now, &mut rng).injected,
            Some(Injected::Error(StatusCode::BAD_GATEWAY))
        );

        faults.apply(
            &FaultsPatch {
                rate_limit_storm_s: Some(5.0),
                ..Default::default()
            },
            now,
        );
        assert!(matches!(
            faults.plan(now, &mut rng).injected,
            Some(Injected::Storm(_))
        ));

        faults.apply(
            &FaultsPatch {
                outage_s: Some(2.0),
                ..Default::default()
            },
            now,
        );
        assert_eq!(
            faults.plan(now, &mut rng).injected,
            Some(Injected::Outage(Duration::from_secs(2)))
        );
        // Windows end on their own.
        let later = now + Duration::from_secs(3);
        assert!(matches!(
            faults.plan(later, &mut rng).injected,
            Some(Injected::Storm(_))
        ));
        let much_later = now + Duration::from_secs(6);
        assert!(matches!(
            faults.plan(much_later, &mut rng).injected,
            Some(Injected::Error(_))
        ));
    }

    #[test]
    fn patches_are_validated() {
        assert!(FaultsPatch {
            error_rate: Some(1.5),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(FaultsPatch {
            error_status: Some(200),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(FaultsPatch {
            outage_s: Some(-1.0),
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(FaultsPatch {
            latency_ms: Some(5),
            ..Default::default()
        }
        .validate()
        .is_ok());
    }
}
