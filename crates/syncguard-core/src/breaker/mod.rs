//! Circuit breaker for provider calls (SPEC §3.3), one per (connection, provider).
//!
//! The breaker stops syncguard from hammering a provider that is down: after enough failures it
//! *opens* and refuses calls for `open_for_s`, then *half-opens* and lets `half_open_probes`
//! calls through to test the water; if they succeed it *closes* again, if one fails it re-opens.
//! Operators may force it open or closed, and return it to automatic behaviour.
//!
//! [`BreakerState`] is what the store keeps (serialized as JSON in a row every node shares);
//! [`BreakerConfig`] is kept apart because it comes from provider definitions and connection
//! overrides, not from traffic. The caller loads the state, calls [`BreakerState::admit`] before
//! a provider call and [`BreakerState::record`] after it, and writes the state back. Every
//! change of state or of forced mode is returned as a [`Transition`] so that it can be audited,
//! logged and counted.

mod window;

#[cfg(test)]
mod tests;

use crate::Millis;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;
use window::Window;

/// Tunables of the breaker. Every field has the SPEC default, so a partial JSON override such as
/// `{"open_for_s": 30}` deserializes into a complete config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Length of the rolling window outcomes are counted in.
    pub window_s: u32,
    /// Fewer calls than this in the window never open the breaker, so that one failure out of
    /// one call is not read as a 100 % failure rate.
    pub min_calls: u32,
    /// Failures in the window that open the breaker whatever the rate.
    pub failure_threshold: u32,
    /// Share of failed calls in the window (0 < rate ≤ 1) that opens the breaker.
    pub failure_rate: f64,
    /// How long an open breaker refuses calls before probing.
    pub open_for_s: u32,
    /// Calls let through while half-open; all of them must succeed to close.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window_s: 300,
            min_calls: 5,
            failure_threshold: 5,
            failure_rate: 0.5,
            open_for_s: 60,
            half_open_probes: 1,
        }
    }
}

impl BreakerConfig {
    /// Checks the values a breaker cannot work with, naming the first bad field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError { field, reason });
        if self.window_s == 0 {
            return bad("window_s", "must be at least 1");
        }
        if self.min_calls == 0 {
            return bad("min_calls", "must be at least 1");
        }
        if self.failure_threshold == 0 {
            return bad("failure_threshold", "must be at least 1");
        }
        // Written so that NaN fails too.
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return bad("failure_rate", "must be greater than 0 and at most 1");
        }
        if self.open_for_s == 0 {
            return bad("open_for_s", "must be at least 1");
        }
        if self.half_open_probes == 0 {
            return bad("half_open_probes", "must be at least 1");
        }
        Ok(())
    }

    fn window_ms(&self) -> Millis {
        Millis::from(self.window_s) * 1_000
    }

    fn open_for_ms(&self) -> Millis {
        Millis::from(self.open_for_s) * 1_000
    }
}

/// A config value the breaker cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field} {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: &'static str,
}

/// A string that names no circuit state or force mode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown {what} `{value}` (expected {expected})")]
pub struct ParseError {
    what: &'static str,
    value: String,
    expected: &'static str,
}

/// The three states of SPEC §3.3, as shown in the API (`closed|open|half_open`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow; outcomes are counted.
    #[default]
    Closed,
    /// Calls are refused until `open_for_s` has passed.
    Open,
    /// A limited number of probe calls test whether the provider recovered.
    HalfOpen,
}

impl CircuitState {
    pub const ALL: [CircuitState; 3] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CircuitState {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CircuitState::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "circuit state",
                value: s.to_owned(),
                expected: "closed, open or half_open",
            })
    }
}

/// An operator's override, in force until they return the breaker to `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forced {
    Open,
    Closed,
}

/// What an operator asks for in `POST /v1/circuits/{key}/force`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForceMode {
    Open,
    Closed,
    /// Hand control back to the failure counting.
    Auto,
}

impl ForceMode {
    pub const ALL: [ForceMode; 3] = [ForceMode::Open, ForceMode::Closed, ForceMode::Auto];

    pub fn as_str(self) -> &'static str {
        match self {
            ForceMode::Open => "open",
            ForceMode::Closed => "closed",
            ForceMode::Auto => "auto",
        }
    }
}

impl fmt::Display for ForceMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ForceMode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ForceMode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "force mode",
                value: s.to_owned(),
                expected: "open, closed or auto",
            })
    }
}

/// How a provider call ended, as far as the provider's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider answered normally.
    Success,
    /// 5xx, 429, a network error or a timeout: the provider is struggling.
    Failure,
    /// The provider answered but the answer says nothing about its health: a 4xx other than
    /// 429 is our request's fault (bad input, missing object, expired token). It is counted
    /// neither as a call nor as a failure, so it can never open the breaker, and a half-open
    /// probe that ends this way just makes room for another probe.
    Ignored,
}

impl Outcome {
    /// Maps an HTTP status to an outcome: 1xx–3xx succeed; 429 fails; any other 4xx
    /// (including 408, which servers also send to close idle connections) is ignored; 5xx and
    /// anything nonsensical fail. Network errors and timeouts have no status: record
    /// [`Outcome::Failure`] for them directly.
    pub fn from_status(status: u16) -> Outcome {
        match status {
            100..=399 => Outcome::Success,
            429 => Outcome::Failure,
            400..=499 => Outcome::Ignored,
            _ => Outcome::Failure,
        }
    }
}

/// The decision for one call about to be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Make the call.
    Allow,
    /// Make the call as a half-open probe: its outcome decides whether the breaker closes.
    /// `transition` is set for the call that moved the breaker from open to half-open.
    Probe { transition: Option<Transition> },
    /// Do not call the provider; nothing will be let through before `retry_at`.
    Reject { retry_at: Millis },
}

impl Admission {
    /// Whether the call may go ahead (as a normal call or a probe).
    pub fn is_allowed(&self) -> bool {
        !matches!(self, Admission::Reject { .. })
    }
}

/// Why the breaker changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    /// Failures in the window reached `failure_threshold`.
    FailureThreshold,
    /// The share of failures in the window reached `failure_rate`.
    FailureRate,
    /// `open_for_s` passed; probing starts.
    OpenElapsed,
    /// Every half-open probe succeeded.
    ProbeSucceeded,
    /// A half-open probe failed.
    ProbeFailed,
    /// An operator forced it open.
    ForcedOpen,
    /// An operator forced it closed.
    ForcedClosed,
    /// An operator returned it to automatic behaviour.
    ForcedAuto,
}

impl TransitionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::FailureThreshold => "failure_threshold",
            TransitionReason::FailureRate => "failure_rate",
            TransitionReason::OpenElapsed => "open_elapsed",
            TransitionReason::ProbeSucceeded => "probe_succeeded",
            TransitionReason::ProbeFailed => "probe_failed",
            TransitionReason::ForcedOpen => "forced_open",
            TransitionReason::ForcedClosed => "forced_closed",
            TransitionReason::ForcedAuto => "forced_auto",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change to audit, log and count. Forcing may leave `from == to` (forcing an open breaker
/// open still changes who is in control), which is why the reason is always given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub from: CircuitState,
    pub to: CircuitState,
    pub reason: TransitionReason,
}

/// The API shape of a breaker, `{state, forced, failures, opened_at}`; the caller adds the key,
/// connection and provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitView {
    pub state: CircuitState,
    pub forced: Option<Forced>,
    pub failures: u32,
    pub opened_at: Option<Millis>,
}

/// The persisted state of one breaker. Fields are private so that only the state machine below
/// changes them; unknown or missing fields default, so nodes on neighbouring versions can share
/// a row during a rolling upgrade.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BreakerState {
    state: CircuitState,
    #[serde(skip_serializing_if = "Option::is_none")]
    forced: Option<Forced>,
    /// When the breaker last opened; the API shows it, and open + `open_for_s` is when probing
    /// may start.
    #[serde(skip_serializing_if = "Option::is_none")]
    opened_at: Option<Millis>,
    #[serde(skip_serializing_if = "Window::is_empty")]
    window: Window,
    /// Probes let through in this half-open period whose outcome has not come back.
    #[serde(skip_serializing_if = "is_zero")]
    probes_in_flight: u32,
    /// Probes in this half-open period that succeeded.
    #[serde(skip_serializing_if = "is_zero")]
    probes_succeeded: u32,
    /// When the latest probe was let through. A probe whose worker died never reports back;
    /// after `open_for_s` without news it is written off so the breaker cannot stay half-open
    /// forever.
    #[serde(skip_serializing_if = "Option::is_none")]
    probe_sent_at: Option<Millis>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl BreakerState {
    /// A closed breaker with an empty window.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn state(&self) -> CircuitState {
        self.state
    }

    pub fn forced(&self) -> Option<Forced> {
        self.forced
    }

    pub fn opened_at(&self) -> Option<Millis> {
        self.opened_at
    }

    /// Failures in the window at `now`.
    pub fn failures(&self, cfg: &BreakerConfig, now: Millis) -> u32 {
        self.window.totals(cfg.window_ms(), now).failures
    }

    /// Calls (successes and failures, not ignored outcomes) in the window at `now`.
    pub fn calls(&self, cfg: &BreakerConfig, now: Millis) -> u32 {
        self.window.totals(cfg.window_ms(), now).calls
    }

    /// What the API shows for this breaker at `now`.
    pub fn view(&self, cfg: &BreakerConfig, now: Millis) -> CircuitView {
        CircuitView {
            state: self.state,
            forced: self.forced,
            failures: self.failures(cfg, now),
            opened_at: self.opened_at,
        }
    }

    /// Decides whether a call may be made at `now`. An open breaker whose `open_for_s` has
    /// passed moves to half-open here, on the first call that asks, because the crate never
    /// reads the clock on its own.
    pub fn admit(&mut self, cfg: &BreakerConfig, now: Millis) -> Admission {
        match self.forced {
            Some(Forced::Closed) => return Admission::Allow,
            Some(Forced::Open) => {
                return Admission::Reject {
                    retry_at: now.saturating_add(cfg.open_for_ms()),
                }
            }
            None => {}
        }
        match self.state {
            CircuitState::Closed => Admission::Allow,
            CircuitState::Open => {
                // A row written without `opened_at` must not stay open forever.
                let opened_at = *self.opened_at.get_or_insert(now);
                let retry_at = opened_at.saturating_add(cfg.open_for_ms());
                if now < retry_at {
                    return Admission::Reject { retry_at };
                }
                let transition = self.go(CircuitState::HalfOpen, TransitionReason::OpenElapsed);
                self.reset_probes();
                self.send_probe(now);
                Admission::Probe {
                    transition: Some(transition),
                }
            }
            CircuitState::HalfOpen => {
                let write_off_at = self
                    .probe_sent_at
                    .unwrap_or(now)
                    .saturating_add(cfg.open_for_ms());
                if self.probes_in_flight > 0 && now >= write_off_at {
                    self.probes_in_flight = 0;
                }
                if self.probes_in_flight + self.probes_succeeded < cfg.half_open_probes {
                    self.send_probe(now);
                    Admission::Probe { transition: None }
                } else {
                    Admission::Reject {
                        retry_at: write_off_at,
                    }
                }
            }
        }
    }

    /// Records how a call admitted earlier ended, and returns the transition it caused, if any.
    ///
    /// While half-open every outcome is taken as a probe's; an outcome arriving when no probe is
    /// in flight belongs to a call admitted before the breaker opened and is disregarded, as are
    /// outcomes while open or forced open.
    pub fn record(
        &mut self,
        cfg: &BreakerConfig,
        outcome: Outcome,
        now: Millis,
    ) -> Option<Transition> {
        match self.forced {
            Some(Forced::Open) => return None,
            Some(Forced::Closed) => {
                // Keep counting so that returning to `auto` resumes from what really happened.
                self.count(cfg, outcome, now);
                return None;
            }
            None => {}
        }
        match self.state {
            CircuitState::Open => None,
            CircuitState::Closed => {
                self.count(cfg, outcome, now);
                if outcome != Outcome::Failure {
                    return None;
                }
                let reason = self.trip_reason(cfg, now)?;
                self.open(now);
                Some(self.go(CircuitState::Open, reason))
            }
            CircuitState::HalfOpen => {
                if self.probes_in_flight == 0 {
                    return None;
                }
                self.probes_in_flight -= 1;
                match outcome {
                    Outcome::Ignored => None,
                    Outcome::Failure => {
                        self.count(cfg, outcome, now);
                        self.open(now);
                        Some(self.go(CircuitState::Open, TransitionReason::ProbeFailed))
                    }
                    Outcome::Success => {
                        self.probes_succeeded += 1;
                        if self.probes_succeeded < cfg.half_open_probes {
                            return None;
                        }
                        self.close();
                        Some(self.go(CircuitState::Closed, TransitionReason::ProbeSucceeded))
                    }
                }
            }
        }
    }

    /// Applies an operator's override. Returns `None` when the breaker is already in that mode,
    /// so repeating a request does not produce a second audit entry.
    ///
    /// Forcing closed starts a fresh window. Returning to `auto` keeps the current state: a
    /// breaker that was forced open stays open from the time it opened, so if `open_for_s` has
    /// passed its next call is a probe rather than a flood.
    pub fn force(&mut self, mode: ForceMode, now: Millis) -> Option<Transition> {
        let (forced, reason) = match mode {
            ForceMode::Open => (Some(Forced::Open), TransitionReason::ForcedOpen),
            ForceMode::Closed => (Some(Forced::Closed), TransitionReason::ForcedClosed),
            ForceMode::Auto => (None, TransitionReason::ForcedAuto),
        };
        if self.forced == forced {
            return None;
        }
        self.forced = forced;
        let to = match forced {
            Some(Forced::Open) => {
                if self.state != CircuitState::Open {
                    self.open(now);
                }
                CircuitState::Open
            }
            Some(Forced::Closed) => {
                self.close();
                CircuitState::Closed
            }
            None => self.state,
        };
        Some(self.go(to, reason))
    }

    fn count(&mut self, cfg: &BreakerConfig, outcome: Outcome, now: Millis) {
        match outcome {
            Outcome::Success => self.window.record(cfg.window_ms(), false, now),
            Outcome::Failure => self.window.record(cfg.window_ms(), true, now),
            Outcome::Ignored => {}
        }
    }

    fn trip_reason(&self, cfg: &BreakerConfig, now: Millis) -> Option<TransitionReason> {
        let totals = self.window.totals(cfg.window_ms(), now);
        if totals.calls < cfg.min_calls {
            None
        } else if totals.failures >= cfg.failure_threshold {
            Some(TransitionReason::FailureThreshold)
        } else if f64::from(totals.failures) >= cfg.failure_rate * f64::from(totals.calls) {
            Some(TransitionReason::FailureRate)
        } else {
            None
        }
    }

    fn go(&mut self, to: CircuitState, reason: TransitionReason) -> Transition {
        let from = std::mem::replace(&mut self.state, to);
        Transition { from, to, reason }
    }

    fn open(&mut self, now: Millis) {
        self.opened_at = Some(now);
        self.reset_probes();
    }

    /// Closing forgets the failures that opened the breaker: they are the outage it just
    /// recovered from, and counting them again would re-open it on the first new failure.
    fn close(&mut self) {
        self.opened_at = None;
        self.window.clear();
        self.reset_probes();
    }

    fn send_probe(&mut self, now: Millis) {
        self.probes_in_flight += 1;
        self.probe_sent_at = Some(now);
    }

    fn reset_probes(&mut self) {
        self.probes_in_flight = 0;
        self.probes_succeeded = 0;
        self.probe_sent_at = None;
    }
}
