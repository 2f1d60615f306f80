//! The pure rules of sync (SPEC §3.4): a connection's sync settings, where a run starts, and
//! when scheduled runs fall due. No I/O and no clock reads: time comes in as a parameter.

use crate::provider::definition::ProviderDef;
use serde_json::Value;
use syncguard_core::Millis;
use syncguard_store::checkpoints::{Checkpoint, RunStart};

const DAY_MS: i64 = 86_400_000;

/// A connection's sync settings, read from its `config` with the SPEC's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncSettings {
    /// `config.resources`, or every resource of the provider.
    pub resources: Vec<String>,
    /// `config.sync_interval_s` (300): how often incremental syncs run.
    pub interval_ms: i64,
    /// `config.backfill_days` (30): how far back the first sync reads.
    pub backfill_days: i64,
    /// `config.sync_overlap_s` (120): subtracted from each query's lower bound, never from the
    /// stored cursor, so late writes and clock skew cannot hide a change.
    pub overlap_ms: i64,
}

impl SyncSettings {
    /// Reads and checks the settings; the error names the field, for a 422.
    pub fn from_config(config: &Value, def: &ProviderDef) -> Result<SyncSettings, String> {
        let int =
            |key: &str, default: i64, range: std::ops::RangeInclusive<i64>| match config.get(key) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_i64().filter(|n| range.contains(n)).ok_or_else(|| {
                    format!(
                        "field `config.{key}`: expected a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )
                }),
            };
        let resources = match config.get("resources") {
            Some(Value::Array(names)) => {
                let mut out = Vec::with_capacity(names.len());
                for n in names {
                    match n.as_str() {
                        Some(name) if def.resource(name).is_some() => out.push(name.to_string()),
                        _ => {
                            return Err(format!(
                                "field `config.resources`: provider `{}` has no resource {n}",
                                def.name
                            ))
                        }
                    }
                }
                out.dedup();
                out
            }
            None | Some(Value::Null) => def.resources.keys().cloned().collect(),
            Some(_) => return Err("field `config.resources`: expected a list of names".into()),
        };
        Ok(SyncSettings {
            resources,
            // The scheduler looks every minute: shorter intervals could not be kept.
            interval_ms: int("sync_interval_s", 300, 60..=7 * 86_400)? * 1_000,
            backfill_days: int("backfill_days", 30, 0..=3_650)?,
            overlap_ms: int("sync_overlap_s", 120, 0..=86_400)? * 1_000,
        })
    }
}

/// How a new run of one resource starts, or `None` when the run in progress resumes.
///
/// - A run in progress resumes (a crash or a retry continues at its next page), unless `full`
///   asks for a fresh listing.
/// - Until a backfill has completed, a run is the backfill: it reads `backfill_days` back.
/// - After it, a run reads from the stored cursor (the largest updated-at committed), but no
///   later than when the previous run started: an object that changed while that run was
///   listing may have been passed over, and the stored cursor may already be past it.
/// - The overlap is subtracted from that query value only; the stored cursor never moves back.
/// - `full`, or a resource the provider cannot filter by time, lists everything.
pub fn plan_run(
    checkpoint: Option<&Checkpoint>,
    settings: &SyncSettings,
    full: bool,
    filterable: bool,
    now: Millis,
) -> Option<RunStart> {
    if !full && checkpoint.is_some_and(|c| c.run.is_some()) {
        return None;
    }
    let backfill = !checkpoint.is_some_and(|c| c.backfill_done);
    let window_start = now - settings.backfill_days * DAY_MS;
    let since = if full || !filterable {
        None
    } else if backfill {
        Some(window_start - settings.overlap_ms)
    } else {
        let c = checkpoint.expect("a completed backfill has a checkpoint");
        let from = match (c.cursor, c.last_run_started_at) {
            (Some(cursor), Some(started)) => cursor.min(started),
            (Some(cursor), None) => cursor,
            (None, Some(started)) => started,
            // Nothing ever carried a readable time: read the backfill window again.
            (None, None) => window_start,
        };
        Some(from - settings.overlap_ms)
    };
    Some(RunStart {
        started_at: now,
        since,
        backfill,
        full,
    })
}

/// One scheduled run of a (connection, resource): its slot number (the periodic key) and when
/// it should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub slot: i64,
    pub run_at: Millis,
}

/// Where a (connection, resource)'s interval starts: a stable offset within the interval, so
/// that many connections do not all sync at the same moment.
pub fn phase_of(connection_id: &str, resource: &str, interval_ms: i64) -> i64 {
    let digest = syncguard_core::ids::sha256_hex(format!("{connection_id}\0{resource}").as_bytes());
    let n = u64::from_str_radix(&digest[..15], 16).expect("hex digits");
    (n % interval_ms.max(1) as u64) as i64
}

/// How long before a slot's start the tick schedules it: past the jitter and a late tick, but
/// at most half an interval, so the previous slot's run has long been and gone.
pub fn lookahead(interval_ms: i64) -> i64 {
    (interval_ms / 10 + super::tick::TICK_INTERVAL_MS * 3 / 2).min(interval_ms / 2)
}

/// The slot to schedule at `now`: the next one once `now` is within `lookahead` of its start
/// (so its ±10 % jitter can fall on either side of the nominal time although the scheduler only
/// looks every so often), else the current one (a connection that is new or resumed catches
/// up). `jitter_unit` is uniform in `[0, 1)`.
pub fn due_slot(
    phase: i64,
    interval_ms: i64,
    now: Millis,
    lookahead: i64,
    jitter_unit: f64,
) -> Slot {
    let current = (now - phase).div_euclid(interval_ms);
    let next_start = (current + 1) * interval_ms + phase;
    let slot = if now >= next_start - lookahead {
        current + 1
    } else {
        current
    };
    let start = slot * interval_ms + phase;
    let jitter = ((jitter_unit * 2.0 - 1.0) * 0.1 * interval_ms as f64) as i64;
    Slot {
        slot,
        run_at: (start + jitter).max(now),
    }
}

/// The credential fields an API's auth needs that `credentials` lacks (empty: complete).
pub fn missing_credentials(def: &ProviderDef, credentials: &Value) -> Vec<String> {
    use crate::provider::definition::AuthDef;
    let needed: Vec<String> = match &def.auth {
        None => Vec::new(),
        Some(AuthDef::ApiKey { headers }) => headers.values().cloned().collect(),
        Some(AuthDef::Bearer { field }) => vec![field.clone()],
        Some(AuthDef::Oauth2 { .. }) => vec!["client_id".into(), "client_secret".into()],
    };
    let present = |f: &str| match credentials.get(f) {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Number(_)) => true,
        _ => false,
    };
    let mut missing: Vec<String> = needed.into_iter().filter(|f| !present(f)).collect();
    missing.sort();
    missing.dedup();
    missing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> ProviderDef {
        crate::provider::load::load_all(&[])
            .unwrap()
            .remove("trackstar")
            .unwrap()
            .def
            .as_ref()
            .clone()
    }

    fn settings() -> SyncSettings {
        SyncSettings::from_config(&json!({}), &def()).unwrap()
    }

    fn checkpoint(cursor: Option<Millis>, last_started: Option<Millis>, done: bool) -> Checkpoint {
        Checkpoint {
            tenant_id: "t".into(),
            connection_id: "c".into(),
            resource: "orders".into(),
            cursor,
            last_sync_at: None,
            last_success_at: None,
            last_error: None,
            backfill_done: done,
            last_run_started_at: last_started,
            run: None,
            pages_total: 0,
            items_total: 0,
            missing_cursor_total: 0,
            updated_at: 0,
        }
    }

    const NOW: Millis = 1_800_000_000_000;

    #[test]
    fn settings_default_to_the_spec_and_name_bad_fields() {
        let s = settings();
        assert_eq!(
            (s.interval_ms, s.backfill_days, s.overlap_ms),
            (300_000, 30, 120_000)
        );
        assert_eq!(
            s.resources,
            ["inbound-shipments", "inventory", "orders", "products"]
        );
        let c = json!({"resources": ["orders"], "sync_interval_s": 60, "backfill_days": 7});
        assert!(SyncSettings::from_config(&json!({"sync_interval_s": 59}), &def()).is_err());
        let s = SyncSettings::from_config(&c, &def()).unwrap();
        assert_eq!(
            (s.resources, s.interval_ms, s.backfill_days),
            (vec!["orders".to_string()], 60_000, 7)
        );
        let e = SyncSettings::from_config(&json!({"sync_interval_s": 0}), &def()).unwrap_err();
        assert!(e.contains("config.sync_interval_s"), "{e}");
        let e = SyncSettings::from_config(&json!({"resources": ["shoes"]}), &def()).unwrap_err();
        assert!(e.contains("config.resources") && e.contains("shoes"), "{e}");
    }

    #[test]
    fn the_first_run_is_a_backfill_of_the_window_minus_the_overlap() {
        let run = plan_run(None, &settings(), false, true, NOW).unwrap();
        assert!(run.backfill && !run.full);
        assert_eq!(run.since, Some(NOW - 30 * DAY_MS - 120_000));
    }

    #[test]
    fn incremental_runs_start_at_the_cursor_or_the_last_run_start_minus_the_overlap() {
        let s = settings();
        let cp = checkpoint(Some(NOW - 600_000), Some(NOW - 300_000), true);
        let run = plan_run(Some(&cp), &s, false, true, NOW).unwrap();
        assert_eq!(
            (run.since, run.backfill),
            (Some(NOW - 600_000 - 120_000), false)
        );
        // The cursor ran ahead of the previous run's start (objects changed while it listed).
        let ahead = checkpoint(Some(NOW - 10_000), Some(NOW - 300_000), true);
        assert_eq!(
            plan_run(Some(&ahead), &s, false, true, NOW).unwrap().since,
            Some(NOW - 420_000)
        );
        let no_cursor = checkpoint(None, None, true);
        assert_eq!(
            plan_run(Some(&no_cursor), &s, false, true, NOW)
                .unwrap()
                .since,
            Some(NOW - 30 * DAY_MS - 120_000)
        );
    }

    #[test]
    fn runs_in_progress_resume_unless_full_and_unfilterable_lists_are_full() {
        let s = settings();
        let mut cp = checkpoint(Some(NOW), Some(NOW), true);
        cp.run = Some(syncguard_store::checkpoints::SyncRun {
            started_at: NOW - 5,
            since: Some(1),
            backfill: false,
            full: false,
            page_token: Some("t".into()),
            pages: 1,
            items: 1,
            missing_cursor: 0,
        });
        assert_eq!(plan_run(Some(&cp), &s, false, true, NOW), None);
        let full = plan_run(Some(&cp), &s, true, true, NOW).unwrap();
        assert_eq!((full.since, full.full, full.backfill), (None, true, false));
        assert_eq!(plan_run(None, &s, false, false, NOW).unwrap().since, None);
    }

    #[test]
    fn slots_are_jittered_within_ten_percent_and_looked_ahead() {
        let interval = 300_000;
        let phase = phase_of("con_1", "orders", interval);
        assert!((0..interval).contains(&phase));
        assert_eq!(phase, phase_of("con_1", "orders", interval), "stable");
        assert_ne!(phase, phase_of("con_2", "orders", interval));
        let start = 1_000 * interval + phase;
        // Just after a slot starts: it is due, at once or up to 10 % later.
        let due = due_slot(phase, interval, start + 1, 90_000, 1.0);
        assert_eq!(
            due,
            Slot {
                slot: 1_000,
                run_at: start + 30_000
            }
        );
        assert_eq!(
            due_slot(phase, interval, start + 1, 90_000, 0.0).run_at,
            start + 1
        );
        // Within the lookahead of the next start: the next slot, possibly early.
        let due = due_slot(phase, interval, start + interval - 60_000, 90_000, 0.0);
        assert_eq!(
            due,
            Slot {
                slot: 1_001,
                run_at: start + interval - 30_000
            }
        );
    }

    #[test]
    fn credentials_are_complete_when_every_auth_field_is_there() {
        let d = def();
        assert_eq!(
            missing_credentials(&d, &json!({"api_key": "k"})),
            ["access_token"]
        );
        assert!(missing_credentials(&d, &json!({"api_key": "k", "access_token": "t"})).is_empty());
    }
}
