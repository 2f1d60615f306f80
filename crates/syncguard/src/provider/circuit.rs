//! The circuit breaker at run time (SPEC §3.3): one per (connection, provider), its state in the
//! shared `circuits` row so every node sees the same breaker; the state machine is
//! `syncguard_core::breaker`.
//!
//! Every call asks [`Circuit::admit`] first. A closed breaker costs one read; anything else is a
//! locked read-modify-write, because admission itself changes state (open → half-open, probes in
//! flight). After the call, [`Circuit::record`] counts its outcome. Every transition — automatic
//! or forced — is logged, counted in `syncguard_circuit_transitions_total`, audited, and
//! refreshes the `syncguard_circuit_state` gauge.

use super::error::ProviderError;
use super::ProviderCtx;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;
use syncguard_core::breaker::{
    Admission, BreakerConfig, BreakerState, CircuitState, ForceMode, Outcome, Transition,
};
use syncguard_core::Millis;
use syncguard_store::audit::NewAudit;
use syncguard_store::provider_state::CircuitOwner;

/// The breaker of one connection, as its client uses it.
#[derive(Debug, Clone)]
pub(crate) struct Circuit {
    pub key: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub provider: String,
    pub cfg: BreakerConfig,
}

/// What admission granted, which decides whether an outcome must be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ticket {
    Normal,
    Probe,
}

/// Who caused a transition, for the audit log.
pub enum Actor<'a> {
    /// The breaker's own rules.
    System,
    /// An operator's API key, and the request it came with.
    Key {
        id: &'a str,
        request_id: Option<&'a str>,
    },
}

impl Circuit {
    pub fn owner(&self) -> CircuitOwner<'_> {
        CircuitOwner {
            tenant_id: &self.tenant_id,
            connection_id: &self.connection_id,
            provider: &self.provider,
        }
    }

    /// Whether a call may go out now; refused calls fail as `circuit_open`, to be retried when
    /// the breaker lets a probe through (the queue does not count the attempt).
    pub async fn admit(&self, app: &ProviderCtx) -> Result<Ticket, ProviderError> {
        let current = app
            .store
            .circuit(&self.key)
            .await
            .map_err(ProviderError::store)?;
        let quiet = |m: &BreakerState| {
            m.forced() == Some(syncguard_core::breaker::Forced::Closed)
                || (m.forced().is_none() && m.state() == CircuitState::Closed)
        };
        let closed = match &current {
            None => true,
            Some(m) => quiet(m),
        };
        if closed {
            return Ok(Ticket::Normal);
        }
        let now = app.clock.now_ms();
        let cfg = self.cfg;
        let (admission, _) = app
            .store
            .update_circuit(self.owner(), now, move |m| m.admit(&cfg, now))
            .await
            .map_err(ProviderError::store)?;
        match admission {
            Admission::Allow => Ok(Ticket::Normal),
            Admission::Probe { transition } => {
                if let Some(t) = transition {
                    transitioned(app, self, t, Actor::System).await;
                }
                Ok(Ticket::Probe)
            }
            Admission::Reject { retry_at } => {
                let wait = u64::try_from(retry_at.saturating_sub(now)).unwrap_or(0);
                Err(ProviderError::circuit_open(
                    format!("circuit {} is open; calls resume in {wait} ms", self.key),
                    wait,
                ))
            }
        }
    }

    /// Counts how an admitted call ended. A store failure here is logged, never returned: the
    /// call already happened, and failing the job would make it happen again.
    ///
    /// Successes of normal calls are written in batches (at most [`BATCH_SUCCESSES`] calls or
    /// [`BATCH_MS`] old), so a healthy connection costs a write per batch rather than per call —
    /// on SQLite every write is an fsync on the one writer that webhooks also need. Failures and
    /// probe outcomes are written at once, together with the successes waiting before them, so
    /// every decision to open sees this node's complete count. What a crash loses is a second
    /// of successes: the breaker errs towards opening, never towards staying closed.
    pub async fn record(&self, app: &ProviderCtx, ticket: Ticket, outcome: Outcome) {
        if ticket == Ticket::Normal && outcome == Outcome::Ignored {
            // Nothing to count: ignored outcomes only matter to half-open probes.
            return;
        }
        let now = app.clock.now_ms();
        let circuits = app.providers.circuits();
        let batched = ticket == Ticket::Normal && outcome == Outcome::Success;
        let Some(successes) = circuits.take_pending(&self.key, batched, now) else {
            return;
        };
        let cfg = self.cfg;
        let change = move |m: &mut BreakerState| {
            // Successes from before a transition would read as probe results: only a breaker
            // still closed takes them.
            if m.state() == CircuitState::Closed {
                for at in successes {
                    m.record(&cfg, Outcome::Success, at);
                }
            }
            if batched {
                None
            } else {
                m.record(&cfg, outcome, now)
            }
        };
        match app.store.update_circuit(self.owner(), now, change).await {
            Ok((Some(t), _)) => transitioned(app, self, t, Actor::System).await,
            Ok((None, _)) => {}
            Err(e) => {
                app.metrics
                    .background_errors_total
                    .with_label_values(&["circuit_record"])
                    .inc();
                tracing::error!(circuit = %self.key, error = %e, "recording a call outcome failed");
            }
        }
    }

    /// An operator's override. Returns the transition (none when already in that mode) and the
    /// state after it.
    pub async fn force(
        &self,
        app: &ProviderCtx,
        mode: ForceMode,
        actor: Actor<'_>,
    ) -> Result<(Option<Transition>, BreakerState), syncguard_store::StoreError> {
        let now = app.clock.now_ms();
        // An operator's override is written with its audit entry; automatic transitions are
        // audited after the fact (they are no request's change).
        let entry = match actor {
            Actor::Key { id, request_id } => Some(NewAudit {
                tenant_id: Some(&self.tenant_id),
                connection_id: Some(&self.connection_id),
                actor: id,
                action: "circuit.force",
                target: Some(&self.key),
                params: json!({}),
                request_id,
            }),
            Actor::System => None,
        };
        let provider = self.provider.clone();
        let (t, machine) = app
            .store
            .update_circuit_audited(
                self.owner(),
                now,
                move |m| m.force(mode, now),
                entry,
                move |t: &Option<Transition>| t.as_ref().map(|t| transition_params(&provider, t)),
            )
            .await?;
        if let Some(t) = t {
            transitioned(app, self, t, actor).await;
        }
        Ok((t, machine))
    }
}

/// Logs, counts, audits and re-gauges one transition.
async fn transitioned(app: &ProviderCtx, c: &Circuit, t: Transition, actor: Actor<'_>) {
    let (from, to, reason) = (t.from.as_str(), t.to.as_str(), t.reason.as_str());
    app.providers
        .circuits()
        .transitions
        .with_label_values(&[&c.provider, from, to])
        .inc();
    if t.to == CircuitState::Closed {
        tracing::info!(circuit = %c.key, connection_id = %c.connection_id, provider = %c.provider, from, to, reason, "circuit transition");
    } else {
        tracing::warn!(circuit = %c.key, connection_id = %c.connection_id, provider = %c.provider, from, to, reason, "circuit transition");
    }
    if let Actor::Key { .. } = actor {
        // Written with the change (see `Circuit::force`).
        app.providers.refresh_gauges(app).await;
        return;
    }
    let entry = NewAudit {
        tenant_id: Some(&c.tenant_id),
        actor: "system",
        action: "circuit.transition",
        connection_id: Some(&c.connection_id),
        target: Some(&c.key),
        params: transition_params(&c.provider, &t),
        request_id: None,
    };
    if let Err(e) = app.store.append_audit(entry, app.clock.now_ms()).await {
        app.metrics
            .background_errors_total
            .with_label_values(&["circuit_audit"])
            .inc();
        tracing::error!(circuit = %c.key, error = %e, "auditing a circuit transition failed");
    }
    app.providers.refresh_gauges(app).await;
}

/// The audit params of a transition.
fn transition_params(provider: &str, t: &Transition) -> serde_json::Value {
    json!({ "provider": provider, "from": t.from.as_str(), "to": t.to.as_str(), "reason": t.reason.as_str() })
}

/// Most successes kept back before they are written.
const BATCH_SUCCESSES: usize = 50;
/// Oldest a kept-back success gets before it is written.
const BATCH_MS: Millis = 1_000;

/// Node-wide breaker bookkeeping: the two metrics of SPEC §3.3 (labels: provider and states,
/// never a connection) and the successes waiting to be written.
pub(crate) struct Circuits {
    /// Breakers per provider and state, recounted from the store (so it is the cluster's view).
    pub state: IntGaugeVec,
    pub transitions: IntCounterVec,
    /// Times of successes not yet written, per circuit key.
    pending: Mutex<HashMap<String, Vec<Millis>>>,
}

impl Circuits {
    /// The successes to write now with the outcome at hand, or `None` when a success (`batched`)
    /// was only kept back.
    fn take_pending(&self, key: &str, batched: bool, now: Millis) -> Option<Vec<Millis>> {
        let mut pending = self.pending.lock().expect("circuit lock");
        let waiting = pending.entry(key.to_string()).or_default();
        if batched {
            waiting.push(now);
            let oldest = waiting.first().copied().unwrap_or(now);
            if waiting.len() < BATCH_SUCCESSES && now - oldest < BATCH_MS {
                return None;
            }
        }
        let taken = std::mem::take(waiting);
        pending.remove(key);
        Some(taken)
    }

    pub fn new(registry: &Registry) -> anyhow::Result<Circuits> {
        let state = IntGaugeVec::new(
            Opts::new(
                "syncguard_circuit_state",
                "Circuit breakers by provider and state.",
            ),
            &["provider", "state"],
        )?;
        let transitions = IntCounterVec::new(
            Opts::new(
                "syncguard_circuit_transitions_total",
                "Circuit breaker state changes, forced ones included.",
            ),
            &["provider", "from", "to"],
        )?;
        registry.register(Box::new(state.clone()))?;
        registry.register(Box::new(transitions.clone()))?;
        Ok(Circuits {
            state,
            transitions,
            pending: Mutex::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successes_wait_in_batches_and_leave_with_the_next_other_outcome() {
        let c = Circuits::new(&Registry::new()).unwrap();
        for i in 0..10 {
            assert_eq!(c.take_pending("k", true, 1_000 + i), None);
        }
        assert_eq!(c.take_pending("k", false, 1_020).unwrap().len(), 10);
        assert_eq!(
            c.take_pending("k", false, 1_021).unwrap(),
            Vec::<Millis>::new()
        );
        assert_eq!(c.take_pending("k", true, 5_000), None);
        assert_eq!(
            c.take_pending("k", true, 6_000).unwrap(),
            vec![5_000, 6_000],
            "a second old"
        );
        for i in 0..49 {
            assert!(c.take_pending("j", true, i).is_none());
        }
        assert_eq!(
            c.take_pending("j", true, 49).unwrap().len(),
            50,
            "fifty kept back"
        );
    }
}
