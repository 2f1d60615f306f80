//! The `integrity.audit` job: re-hashes the next window of stored snapshot states and records
//! and reports what no longer matches its hash (metrics, audit log, the store's open findings).

use crate::engine::handler::{JobContext, JobError};
use crate::services::Services;
use serde::Deserialize;
use serde_json::{json, Value};
use syncguard_core::canonical::content_hash;
use syncguard_store::audit::NewAudit;
use syncguard_store::publish::{IntegrityKind, Mismatch, StoredContent};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuditPayload {
    /// Rows of each kind to re-hash (the periodic run uses the default).
    sample: Option<i64>,
}

/// The mismatch `row` shows, if any.
pub(super) fn check(kind: IntegrityKind, row: &StoredContent) -> Option<Mismatch> {
    let actual = match serde_json::from_str::<Value>(&row.data) {
        Ok(value) => content_hash(&value),
        Err(_) => "unparseable".to_string(),
    };
    (actual != row.hash).then(|| Mismatch {
        kind,
        object_key: row.object_key(),
        tenant_id: row.tenant_id.clone(),
        stored_hash: row.hash.clone(),
        actual_hash: actual,
    })
}

pub(super) async fn run(ctx: JobContext<Services>) -> Result<(), JobError> {
    let app = &ctx.app;
    let p: AuditPayload = serde_json::from_value(ctx.job.payload.clone()).unwrap_or_default();
    let sample = p
        .sample
        .unwrap_or(app.publish.settings.audit_sample)
        .clamp(1, 100_000);
    let metrics = &app.publish.metrics;
    for kind in IntegrityKind::ALL {
        let rows = app.store.integrity_window(kind, sample).await?;
        let found: Vec<Mismatch> = rows.iter().filter_map(|r| check(kind, r)).collect();
        metrics
            .integrity_checked
            .with_label_values(&[kind.as_str()])
            .inc_by(rows.len() as u64);
        metrics
            .integrity_mismatches
            .with_label_values(&[kind.as_str()])
            .inc_by(found.len() as u64);
        for m in &found {
            tracing::error!(kind = kind.as_str(), object = %m.object_key, stored_hash = %m.stored_hash, actual_hash = %m.actual_hash, "integrity mismatch: stored content no longer matches its hash");
        }
        let now = app.clock.now_ms();
        let opened = app
            .store
            .finish_integrity_window(kind, &rows, &found, now)
            .await?;
        // The audit log gets each finding once, when it is first seen.
        for m in &opened {
            app.store
                .append_audit(
                    NewAudit {
                        tenant_id: Some(&m.tenant_id),
                        actor: "system",
                        action: "integrity.mismatch",
                        target: Some(&m.object_key),
                        params: json!({
                            "kind": kind.as_str(),
                            "stored_hash": m.stored_hash,
                            "actual_hash": m.actual_hash,
                        }),
                        request_id: None,
                        ..Default::default()
                    },
                    now,
                )
                .await?;
        }
        tracing::info!(
            kind = kind.as_str(),
            checked = rows.len(),
            mismatches = found.len(),
            "integrity audit window done"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(data: &str, hash: &str) -> StoredContent {
        StoredContent {
            key: vec!["t".into(), hash.into()],
            tenant_id: "t".into(),
            hash: hash.into(),
            data: data.into(),
        }
    }

    #[test]
    fn content_must_hash_to_its_key_whatever_its_text() {
        let good = content_hash(&json!({"a": 1, "b": 2}));
        assert_eq!(
            check(IntegrityKind::Record, &row(r#"{ "b":2, "a":1 }"#, &good)),
            None
        );
        let bad = check(IntegrityKind::Record, &row(r#"{"a":1,"b":3}"#, &good)).unwrap();
        assert_eq!(bad.stored_hash, good);
        assert_ne!(bad.actual_hash, good);
        let torn = check(IntegrityKind::Snapshot, &row(r#"{"a":"#, &good)).unwrap();
        assert_eq!(torn.actual_hash, "unparseable");
    }
}
