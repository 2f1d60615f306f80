//! The pure rules of health (SPEC §3.7): a connection's status from its signals and the SLO
//! thresholds, SRE burn-rate alerts from its error budget, and latency percentiles. No I/O, no
//! clock: everything time-dependent arrives already measured against a `now` the caller chose.

use crate::config::HealthConfig;
use serde::Serialize;
use utoipa::ToSchema;

/// A connection's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unhealthy => "unhealthy",
        }
    }
}

/// A warning and a critical level of one signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Level {
    pub warning: f64,
    pub critical: f64,
}

/// The SLO thresholds (SPEC defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub sync_lag_s: Level,
    pub webhook_lag_s: Level,
    /// A fraction: 0.01 is 1 %.
    pub error_rate: Level,
    pub recent_failures: Level,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds::from(&HealthConfig::default())
    }
}

impl From<&HealthConfig> for Thresholds {
    fn from(c: &HealthConfig) -> Self {
        let level = |warning, critical| Level { warning, critical };
        Thresholds {
            sync_lag_s: level(c.sync_lag_warning_s, c.sync_lag_critical_s),
            webhook_lag_s: level(c.webhook_lag_warning_s, c.webhook_lag_critical_s),
            error_rate: level(c.error_rate_warning, c.error_rate_critical),
            recent_failures: level(c.recent_failures_warning, c.recent_failures_critical),
        }
    }
}

/// What a connection's status is decided from. `None`: the signal does not apply (a paused
/// connection's sync lag, a connection that receives no webhooks, no calls in 24 h).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub sync_lag_s: Option<f64>,
    pub webhook_lag_s: Option<f64>,
    pub error_rate_24h: Option<f64>,
    pub recent_failures: f64,
    /// The connection itself is in `error` (e.g. its credentials were refused).
    pub connection_error: Option<String>,
}

/// Healthy below every warning, unhealthy above any critical level (or in `error`), degraded
/// otherwise; with the reasons for anything but healthy.
pub fn classify(s: &Signals, t: &Thresholds) -> (Status, Vec<String>) {
    let checks = [
        ("sync lag", s.sync_lag_s, t.sync_lag_s, "s"),
        ("webhook lag", s.webhook_lag_s, t.webhook_lag_s, "s"),
        ("error rate (24 h)", s.error_rate_24h, t.error_rate, ""),
        (
            "recent failures",
            Some(s.recent_failures),
            t.recent_failures,
            "",
        ),
    ];
    let mut status = Status::Healthy;
    let mut reasons = Vec::new();
    for (name, value, level, unit) in checks {
        let Some(v) = value else { continue };
        if v > level.critical {
            status = Status::Unhealthy;
            reasons.push(format!(
                "{name} {} above critical {}",
                show(v, unit),
                show(level.critical, unit)
            ));
        } else if v >= level.warning {
            status = status.max(Status::Degraded);
            reasons.push(format!(
                "{name} {} at or above warning {}",
                show(v, unit),
                show(level.warning, unit)
            ));
        }
    }
    if let Some(why) = &s.connection_error {
        status = Status::Unhealthy;
        reasons.push(format!("connection in error: {why}"));
    }
    (status, reasons)
}

fn show(v: f64, unit: &str) -> String {
    match unit {
        "s" => format!("{v:.0} s"),
        _ if v < 1.0 && v > 0.0 => format!("{:.2} %", v * 100.0),
        _ => format!("{v}"),
    }
}

/// What a burn-rate alert asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alert {
    None,
    Ticket,
    Page,
}

/// One pair of windows: both must burn at `threshold` or faster to alert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPair {
    pub long_ms: i64,
    pub short_ms: i64,
    pub threshold: f64,
    pub alert: Alert,
}

/// The error budget policy: the SPEC's pairs (1 h & 5 m → page at 14.4; 6 h & 30 m → page at
/// 6; 3 d & 6 h → ticket at 1) against a 99 % target, with a minimum-traffic guard.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnPolicy {
    pub slo_target: f64,
    /// A long window with fewer calls than this never alerts: one failure in three calls is
    /// not a budget burning.
    pub min_events: i64,
    pub pairs: Vec<WindowPair>,
}

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

impl Default for BurnPolicy {
    fn default() -> Self {
        BurnPolicy::for_target(HealthConfig::default().slo_target)
    }
}

impl BurnPolicy {
    /// The SPEC's window pairs against `slo_target`.
    pub fn for_target(slo_target: f64) -> Self {
        let pair = |long_ms, short_ms, threshold, alert| WindowPair {
            long_ms,
            short_ms,
            threshold,
            alert,
        };
        BurnPolicy {
            slo_target,
            min_events: 10,
            pairs: vec![
                pair(HOUR, 5 * MINUTE, 14.4, Alert::Page),
                pair(6 * HOUR, 30 * MINUTE, 6.0, Alert::Page),
                pair(72 * HOUR, 6 * HOUR, 1.0, Alert::Ticket),
            ],
        }
    }
}

impl BurnPolicy {
    /// Every window length the pairs need, without repeats, ascending.
    pub fn windows(&self) -> Vec<i64> {
        let mut w: Vec<i64> = self
            .pairs
            .iter()
            .flat_map(|p| [p.long_ms, p.short_ms])
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    }
}

/// One pair's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct BurnWindow {
    pub long_s: i64,
    pub short_s: i64,
    pub threshold: f64,
    /// Error rate ÷ error budget over each window; 0 when there is too little traffic.
    pub long_burn: f64,
    pub short_burn: f64,
    pub firing: bool,
    pub alert: Alert,
}

/// The burn-rate verdict of one connection.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Burn {
    pub alert: Alert,
    pub windows: Vec<BurnWindow>,
}

/// Evaluates `policy` over `(ok, failed)` counts per window length (`counts(ms)`).
pub fn burn(policy: &BurnPolicy, counts: impl Fn(i64) -> (i64, i64)) -> Burn {
    let budget = (1.0 - policy.slo_target).max(f64::EPSILON);
    let rate = |ms: i64, min: i64| {
        let (ok, failed) = counts(ms);
        let total = ok + failed;
        if total < min.max(1) {
            0.0
        } else {
            failed as f64 / total as f64 / budget
        }
    };
    let mut alert = Alert::None;
    let mut windows = Vec::with_capacity(policy.pairs.len());
    for p in &policy.pairs {
        let long_burn = rate(p.long_ms, policy.min_events);
        let short_burn = rate(p.short_ms, 1);
        let firing = long_burn >= p.threshold && short_burn >= p.threshold;
        if firing {
            alert = alert.max(p.alert);
        }
        windows.push(BurnWindow {
            long_s: p.long_ms / 1000,
            short_s: p.short_ms / 1000,
            threshold: p.threshold,
            long_burn: round2(long_burn),
            short_burn: round2(short_burn),
            firing,
            alert: p.alert,
        });
    }
    Burn { alert, windows }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Nearest-rank percentile `p` (0–1) of ascending `sorted` values.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lag(sync: f64) -> Signals {
        Signals {
            sync_lag_s: Some(sync),
            ..Default::default()
        }
    }

    #[test]
    fn each_threshold_separates_healthy_degraded_and_unhealthy() {
        let t = Thresholds::default();
        assert_eq!(classify(&lag(299.9), &t).0, Status::Healthy);
        assert_eq!(
            classify(&lag(300.0), &t).0,
            Status::Degraded,
            "at the warning is no longer below it"
        );
        assert_eq!(
            classify(&lag(900.0), &t).0,
            Status::Degraded,
            "at the critical is not above it"
        );
        assert_eq!(classify(&lag(900.1), &t).0, Status::Unhealthy);
        let hook = |s| Signals {
            webhook_lag_s: Some(s),
            ..Default::default()
        };
        assert_eq!(classify(&hook(119.0), &t).0, Status::Healthy);
        assert_eq!(classify(&hook(120.0), &t).0, Status::Degraded);
        assert_eq!(classify(&hook(601.0), &t).0, Status::Unhealthy);
        let errors = |r| Signals {
            error_rate_24h: Some(r),
            ..Default::default()
        };
        assert_eq!(classify(&errors(0.009), &t).0, Status::Healthy);
        assert_eq!(classify(&errors(0.01), &t).0, Status::Degraded);
        assert_eq!(classify(&errors(0.051), &t).0, Status::Unhealthy);
        let failures = |n| Signals {
            recent_failures: n,
            ..Default::default()
        };
        assert_eq!(classify(&failures(4.0), &t).0, Status::Healthy);
        assert_eq!(classify(&failures(5.0), &t).0, Status::Degraded);
        assert_eq!(classify(&failures(21.0), &t).0, Status::Unhealthy);
    }

    #[test]
    fn the_worst_signal_wins_and_reasons_name_it() {
        let t = Thresholds::default();
        let s = Signals {
            sync_lag_s: Some(10.0),
            webhook_lag_s: Some(700.0),
            recent_failures: 6.0,
            ..Default::default()
        };
        let (status, reasons) = classify(&s, &t);
        assert_eq!(status, Status::Unhealthy);
        assert_eq!(reasons.len(), 2, "{reasons:?}");
        assert!(
            reasons[0].starts_with("webhook lag 700 s above critical"),
            "{reasons:?}"
        );
        let absent = Signals::default();
        assert_eq!(classify(&absent, &t), (Status::Healthy, vec![]));
        let failed = Signals {
            connection_error: Some("credentials refused".into()),
            ..Default::default()
        };
        assert_eq!(classify(&failed, &t).0, Status::Unhealthy);
    }

    fn counts(table: &[(i64, (i64, i64))]) -> impl Fn(i64) -> (i64, i64) + '_ {
        move |ms| {
            table
                .iter()
                .find(|(w, _)| *w == ms)
                .map(|(_, c)| *c)
                .unwrap_or((0, 0))
        }
    }

    #[test]
    fn a_fast_burn_pages_only_when_both_windows_burn() {
        let p = BurnPolicy::default();
        assert_eq!(
            p.windows(),
            vec![5 * MINUTE, 30 * MINUTE, HOUR, 6 * HOUR, 72 * HOUR]
        );
        // 20 % errors over the last hour and the last 5 minutes: 20 × the 1 % budget.
        let hot = [
            (HOUR, (80, 20)),
            (5 * MINUTE, (8, 2)),
            (6 * HOUR, (980, 20)),
            (30 * MINUTE, (45, 5)),
            (72 * HOUR, (9_980, 20)),
        ];
        let b = burn(&p, counts(&hot));
        assert_eq!(b.alert, Alert::Page);
        assert!(b.windows[0].firing && b.windows[0].long_burn == 20.0);
        // The same hour, but the last 5 minutes are clean: it is over, no page.
        let cooled = [(HOUR, (80, 20)), (5 * MINUTE, (10, 0))];
        assert_eq!(burn(&p, counts(&cooled)).alert, Alert::None);
    }

    #[test]
    fn slow_burns_ticket_and_thin_traffic_never_alerts() {
        let p = BurnPolicy::default();
        // 1.5 % errors for three days and the last six hours: budget burning at 1.5.
        let slow = [
            (72 * HOUR, (9_850, 150)),
            (6 * HOUR, (985, 15)),
            (HOUR, (100, 1)),
            (5 * MINUTE, (10, 0)),
        ];
        let b = burn(&p, counts(&slow));
        assert_eq!(b.alert, Alert::Ticket);
        assert_eq!(b.windows.iter().filter(|w| w.firing).count(), 1);
        // Two failures out of four calls: 50 %, but below the minimum traffic.
        let thin = [
            (HOUR, (2, 2)),
            (5 * MINUTE, (0, 2)),
            (6 * HOUR, (2, 2)),
            (30 * MINUTE, (0, 2)),
            (72 * HOUR, (2, 2)),
        ];
        assert_eq!(burn(&p, counts(&thin)).alert, Alert::None);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
