//! The publish path (SPEC §3.5): desired state, publishing, snapshots and diffs, reconciliation
//! and drift, and the integrity audit.
//!
//! # How a state reaches the provider
//! 1. `PUT /v1/connections/{id}/desired/{resource}/{external_id}` hashes the body (RFC 8785,
//!    SHA-256). The provider already holds that hash: `unchanged`. It is already on its way:
//!    `duplicate`. Otherwise the state and its publish job (unique per object, debounced, 2 s
//!    by default) are committed together: `enqueued`. A burst of edits keeps pushing the one
//!    job back and replacing its payload, so it becomes one provider call with the last state.
//! 2. The `publish` job reads the current desired state (not the payload), skips it when it
//!    is published already, and writes it through the provider layer with the definition's
//!    write operation for the resource, carrying an idempotency key derived from connection,
//!    object and hash where the definition names a header. Local state changes only after the
//!    provider said yes: `last_published_hash` and a `publish` snapshot, in one transaction.
//! 3. Crash safety without duplicate writes: the hash is noted as *attempted* before the call.
//!    An attempt that finds its own hash noted (its predecessor died, or its outcome was lost)
//!    reads the remote object first and, when the provider already holds the state, records it
//!    as published without writing again.
//!
//! # Reconciliation
//! `reconcile.tick` (every minute) schedules one `reconcile` job per active connection with
//! desired state per `config.reconcile_interval_s` (30 min) slot, once across the cluster, at an
//! offset derived from the connection id so that connections do not all reconcile at once
//! (the first one interval after the connection was created: what it holds was just published);
//! `POST /v1/connections/{id}/reconcile` asks for one now. A run reads each managed object from
//! the provider and classifies it against the last published state (see [`classify`]),
//! records findings (`GET /v1/drift`), snapshots remote changes, and applies
//! `config.reconcile_policy`: `report`, `local_wins` (publish the desired state again) or
//! `remote_wins` (adopt the remote state into records and desired state). It yields to the
//! rate limiter when it is near depletion, and resumes with the objects it has not reached.
//!
//! Comparisons cover the fields syncguard manages: the remote object is projected onto the
//! shape of the desired state, so fields the provider adds (its own ids, timestamps) are not
//! drift, while a managed field changed or removed behind our back is.
//!
//! # Integrity audit
//! `integrity.audit` (hourly) re-hashes a window of stored snapshot states and records, moving
//! on each run so that every row is checked in turn; mismatches are counted
//! (`syncguard_integrity_mismatches_total{kind}`), audited (`integrity.mismatch`), and kept in
//! the store until found sound again ([`syncguard_store::Store::integrity_status`] for health).
//!
//! # Connection settings
//! Read from the connection's `config` at use: `reconcile_policy`, `reconcile_interval_s`,
//! `publish_debounce_ms`. [`check_connection_config`] validates them.
//!
//! # Layout
//! - [`classify`]: projection and drift classification (pure).
//! - `publisher`: the `publish` job.
//! - `reconcile`: `reconcile.tick` and `reconcile` jobs.
//! - `integrity`: the `integrity.audit` job.
//! - The endpoints (desired state, reconcile-now, snapshots, drift) are `api::publish`.

pub mod classify;
mod integrity;
pub mod publisher;
pub mod reconcile;

use crate::config::Config;
use crate::engine::handler::Handlers;
use crate::engine::Schedule;
use crate::provider::definition::{ProviderDef, WriteDef};
use crate::services::Services;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::Value;

/// Publishes one object's desired state.
pub const PUBLISH: &str = "publish";
/// Reconciles one connection.
pub const RECONCILE: &str = "reconcile";
/// Schedules the reconciliations that are due.
pub const RECONCILE_TICK: &str = "reconcile.tick";
/// Re-hashes a window of stored snapshots and records.
pub const INTEGRITY_AUDIT: &str = "integrity.audit";

/// Defaults of the publish path. They are not in `syncguard.toml` yet; the connection-level
/// ones can be set per connection (see the module docs).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Debounce window of publish jobs.
    pub debounce_ms: i64,
    /// How often each connection is reconciled.
    pub reconcile_interval_ms: i64,
    /// Rows of each kind the integrity audit re-hashes per run.
    pub audit_sample: i64,
    /// How long a reconcile that yielded to the rate limiter waits before resuming.
    pub yield_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            debounce_ms: 2_000,
            reconcile_interval_ms: 30 * 60_000,
            audit_sample: 500,
            yield_ms: 30_000,
        }
    }
}

/// Everything the publish path keeps for the life of the node.
pub struct PublishState {
    pub settings: Settings,
    metrics: PublishMetrics,
}

/// Counters of the publish path (labels: outcome, classification, kind — never an id).
struct PublishMetrics {
    /// Publish runs: published, skipped (already published), already_applied, failed.
    publishes: IntCounterVec,
    /// Objects classified by reconciliation, by classification (including in_sync).
    drift: IntCounterVec,
    /// Reconcile runs: completed, yielded, failed.
    reconciles: IntCounterVec,
    integrity_checked: IntCounterVec,
    integrity_mismatches: IntCounterVec,
}

impl PublishState {
    pub fn new(_config: &Config, registry: &Registry) -> anyhow::Result<PublishState> {
        let counter = |name: &str, help: &str, label: &str| -> anyhow::Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        Ok(PublishState {
            settings: Settings::default(),
            metrics: PublishMetrics {
                publishes: counter(
                    "syncguard_publishes_total",
                    "Publish job runs, by outcome.",
                    "outcome",
                )?,
                drift: counter(
                    "syncguard_drift_total",
                    "Objects classified by reconciliation, by classification.",
                    "classification",
                )?,
                reconciles: counter(
                    "syncguard_reconciles_total",
                    "Reconcile runs, by outcome.",
                    "outcome",
                )?,
                integrity_checked: counter(
                    "syncguard_integrity_checked_total",
                    "Stored objects re-hashed by the integrity audit, by kind.",
                    "kind",
                )?,
                integrity_mismatches: counter(
                    "syncguard_integrity_mismatches_total",
                    "Stored objects whose content no longer matches their hash, by kind.",
                    "kind",
                )?,
            },
        })
    }
}

/// Job handlers of the publish path.
pub fn register(handlers: &mut Handlers<Services>) {
    handlers.register(PUBLISH, publisher::run);
    handlers.register(RECONCILE, reconcile::run);
    handlers.register(RECONCILE_TICK, reconcile::tick);
    handlers.register(INTEGRITY_AUDIT, integrity::run);
}

/// Periodic schedules of the publish path.
pub fn schedules() -> Vec<Schedule> {
    vec![
        Schedule {
            name: RECONCILE_TICK,
            kind: RECONCILE_TICK,
            interval_ms: 60_000,
        },
        Schedule {
            name: INTEGRITY_AUDIT,
            kind: INTEGRITY_AUDIT,
            interval_ms: 3_600_000,
        },
    ]
}

/// What reconciliation does about drift, per connection (`config.reconcile_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Report,
    LocalWins,
    RemoteWins,
}

impl Policy {
    pub fn of(config: &Value) -> Result<Policy, String> {
        match config.get("reconcile_policy") {
            None | Some(Value::Null) => Ok(Policy::Report),
            Some(v) => match v.as_str() {
                Some("report") => Ok(Policy::Report),
                Some("local_wins") => Ok(Policy::LocalWins),
                Some("remote_wins") => Ok(Policy::RemoteWins),
                _ => Err(format!(
                    "field `config.reconcile_policy`: expected `report`, `local_wins` or `remote_wins`, got {v}"
                )),
            },
        }
    }
}

/// A positive integer setting of a connection's config, within `range`, or `default`.
fn config_int(
    config: &Value,
    key: &str,
    range: std::ops::RangeInclusive<i64>,
    default: i64,
) -> Result<i64, String> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
            format!(
                "field `config.{key}`: expected an integer from {} to {}",
                range.start(),
                range.end()
            )
        }),
    }
}

/// The publish debounce window of a connection, in ms.
pub fn debounce_ms(config: &Value, settings: &Settings) -> Result<i64, String> {
    config_int(
        config,
        "publish_debounce_ms",
        0..=3_600_000,
        settings.debounce_ms,
    )
}

/// The reconcile interval of a connection, in ms.
pub fn reconcile_interval_ms(config: &Value, settings: &Settings) -> Result<i64, String> {
    config_int(
        config,
        "reconcile_interval_s",
        60..=7 * 86_400,
        settings.reconcile_interval_ms / 1_000,
    )
    .map(|s| s * 1_000)
}

/// Validates the publish settings of a connection's config (for the connection endpoints: a
/// 422 naming the field).
pub fn check_connection_config(config: &Value) -> Result<(), String> {
    let settings = Settings::default();
    Policy::of(config)?;
    debounce_ms(config, &settings)?;
    reconcile_interval_ms(config, &settings)?;
    Ok(())
}

/// The write operation that creates or replaces objects of `resource` (any method but DELETE).
pub fn upsert_write<'a>(def: &'a ProviderDef, resource: &str) -> Option<(&'a str, &'a WriteDef)> {
    def.writes
        .iter()
        .find(|(_, w)| w.resource == resource && !w.method.eq_ignore_ascii_case("DELETE"))
        .map(|(name, w)| (name.as_str(), w))
}

/// The RFC 6902 patch turning `from` into `to`: what snapshots store and diffs answer.
pub fn json_diff(from: &Value, to: &Value) -> Value {
    serde_json::to_value(json_patch::diff(from, to)).expect("a patch serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn connection_settings_default_and_are_validated() {
        let s = Settings::default();
        assert_eq!(Policy::of(&json!({})), Ok(Policy::Report));
        assert_eq!(
            Policy::of(&json!({"reconcile_policy": "remote_wins"})),
            Ok(Policy::RemoteWins)
        );
        assert!(Policy::of(&json!({"reconcile_policy": "mine"}))
            .unwrap_err()
            .contains("config.reconcile_policy"));
        assert_eq!(debounce_ms(&json!({}), &s), Ok(2_000));
        assert_eq!(
            reconcile_interval_ms(&json!({"reconcile_interval_s": 120}), &s),
            Ok(120_000)
        );
        assert!(check_connection_config(&json!({"reconcile_interval_s": 5})).is_err());
        assert!(check_connection_config(&json!({"publish_debounce_ms": "soon"})).is_err());
    }

    #[test]
    fn diffs_are_rfc_6902_patches() {
        let patch = json_diff(&json!({"a": 1, "b": [1]}), &json!({"a": 2, "b": [1, 2]}));
        let ops: Vec<&str> = patch
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["op"].as_str().unwrap())
            .collect();
        assert_eq!(ops, ["replace", "add"]);
        let mut doc = json!({"a": 1, "b": [1]});
        let patch: json_patch::Patch = serde_json::from_value(patch).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        assert_eq!(doc, json!({"a": 2, "b": [1, 2]}));
    }
}
