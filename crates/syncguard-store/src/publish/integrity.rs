//! The integrity audit's storage: rolling windows over stored content, and the mismatches found.
//!
//! Each run of the audit reads the next window of rows of a kind (by primary key, wrapping
//! around at the end), so that successive runs re-hash every row in turn rather than a random
//! few again and again. What it finds lives in `integrity_mismatches` until a later run finds
//! the row sound again; [`Store::integrity_status`] is the flag health reads.

use crate::{on_reader, on_writer, Millis, Result, Store};
use serde::Serialize;
use std::collections::HashSet;

/// What is audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrityKind {
    /// Snapshot states (`snapshot_data`), keyed by (tenant, hash).
    Snapshot,
    /// Records, keyed by (connection, resource, external id).
    Record,
}

impl IntegrityKind {
    pub const ALL: [IntegrityKind; 2] = [IntegrityKind::Snapshot, IntegrityKind::Record];

    pub fn as_str(self) -> &'static str {
        match self {
            IntegrityKind::Snapshot => "snapshot",
            IntegrityKind::Record => "record",
        }
    }
}

/// One stored row as the audit sees it: its key, the hash stored with it and its content text.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContent {
    pub key: Vec<String>,
    pub tenant_id: String,
    pub hash: String,
    pub data: String,
}

impl StoredContent {
    /// The key as one string (a JSON array), as mismatches are stored and reported.
    pub fn object_key(&self) -> String {
        serde_json::to_string(&self.key).expect("strings serialize")
    }
}

/// A row whose content no longer hashes to its stored hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    pub kind: IntegrityKind,
    pub object_key: String,
    pub tenant_id: String,
    pub stored_hash: String,
    /// The hash of what is stored now (`unparseable` when it is not JSON any more).
    pub actual_hash: String,
}

/// The audit's standing, for health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IntegrityStatus {
    /// Rows found damaged and not found sound since. Non-zero means: investigate.
    pub open_mismatches: i64,
    pub last_mismatch_at: Option<Millis>,
    pub last_audit_at: Option<Millis>,
}

impl Store {
    /// The next `limit` rows of `kind` after where the previous window stopped, continuing from
    /// the start when the end is reached.
    pub async fn integrity_window(
        &self,
        kind: IntegrityKind,
        limit: i64,
    ) -> Result<Vec<StoredContent>> {
        let cursor: Option<Vec<String>> = on_reader!(self, p => {
            let row: Option<(Option<String>,)> = sqlx::query_as("SELECT cursor FROM integrity_audit_state WHERE kind = $1")
                .bind(kind.as_str())
                .fetch_optional(p)
                .await?;
            row.and_then(|(c,)| c).and_then(|c| serde_json::from_str(&c).ok())
        });
        let mut rows = self.content_after(kind, cursor.as_deref(), limit).await?;
        let short = (rows.len() as i64) < limit;
        if short && cursor.is_some() {
            let seen: HashSet<Vec<String>> = rows.iter().map(|r| r.key.clone()).collect();
            let wrapped = self
                .content_after(kind, None, limit - rows.len() as i64)
                .await?;
            rows.extend(wrapped.into_iter().filter(|r| !seen.contains(&r.key)));
        }
        Ok(rows)
    }

    async fn content_after(
        &self,
        kind: IntegrityKind,
        after: Option<&[String]>,
        limit: i64,
    ) -> Result<Vec<StoredContent>> {
        let part = |i: usize| after.and_then(|a| a.get(i)).cloned();
        on_reader!(self, p => {
            Ok(match kind {
                IntegrityKind::Snapshot => {
                    let rows: Vec<(String, String, String)> = sqlx::query_as(
                        "SELECT tenant_id, hash, data FROM snapshot_data
                         WHERE CAST($1 AS TEXT) IS NULL OR (tenant_id, hash) > ($1, $2)
                         ORDER BY tenant_id, hash LIMIT $3")
                        .bind(part(0))
                        .bind(part(1))
                        .bind(limit)
                        .fetch_all(p)
                        .await?;
                    rows.into_iter()
                        .map(|(tenant_id, hash, data)| StoredContent {
                            key: vec![tenant_id.clone(), hash.clone()],
                            tenant_id,
                            hash,
                            data,
                        })
                        .collect()
                }
                IntegrityKind::Record => {
                    let rows: Vec<(String, String, String, String, String, String)> = sqlx::query_as(
                        "SELECT connection_id, resource, external_id, tenant_id, hash, data FROM records
                         WHERE CAST($1 AS TEXT) IS NULL OR (connection_id, resource, external_id) > ($1, $2, $3)
                         ORDER BY connection_id, resource, external_id LIMIT $4")
                        .bind(part(0))
                        .bind(part(1))
                        .bind(part(2))
                        .bind(limit)
                        .fetch_all(p)
                        .await?;
                    rows.into_iter()
                        .map(|(connection, resource, external, tenant_id, hash, data)| StoredContent {
                            key: vec![connection, resource, external],
                            tenant_id,
                            hash,
                            data,
                        })
                        .collect()
                }
            })
        })
    }

    /// Records one audited window of `kind`: rows of `checked` not in `mismatches` are sound
    /// (an open mismatch of theirs is closed), `mismatches` are opened, and the window moves on
    /// past the last checked row. Returns the mismatches that were not open already.
    pub async fn finish_integrity_window(
        &self,
        kind: IntegrityKind,
        checked: &[StoredContent],
        mismatches: &[Mismatch],
        now: Millis,
    ) -> Result<Vec<Mismatch>> {
        let bad: HashSet<&str> = mismatches.iter().map(|m| m.object_key.as_str()).collect();
        let cursor = checked
            .last()
            .map(|c| serde_json::to_string(&c.key).expect("strings serialize"));
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            for c in checked {
                let key = c.object_key();
                if !bad.contains(key.as_str()) {
                    sqlx::query("DELETE FROM integrity_mismatches WHERE kind = $1 AND object_key = $2")
                        .bind(kind.as_str())
                        .bind(&key)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let mut opened = Vec::new();
            for m in mismatches {
                let new = sqlx::query("INSERT INTO integrity_mismatches (kind, object_key, tenant_id, stored_hash, actual_hash, detected_at)
                                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, object_key) DO NOTHING")
                    .bind(kind.as_str())
                    .bind(&m.object_key)
                    .bind(&m.tenant_id)
                    .bind(&m.stored_hash)
                    .bind(&m.actual_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if new > 0 {
                    opened.push(m.clone());
                }
            }
            sqlx::query("INSERT INTO integrity_audit_state (kind, cursor, last_run_at, checked) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (kind) DO UPDATE SET cursor = excluded.cursor, last_run_at = excluded.last_run_at,
                           checked = integrity_audit_state.checked + excluded.checked")
                .bind(kind.as_str())
                .bind(&cursor)
                .bind(now)
                .bind(checked.len() as i64)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(opened)
        })
    }

    /// Whether the integrity audit has open findings: the flag health reads.
    pub async fn integrity_status(&self) -> Result<IntegrityStatus> {
        on_reader!(self, p => {
            let (open, last): (i64, Option<i64>) =
                sqlx::query_as("SELECT COUNT(*), MAX(detected_at) FROM integrity_mismatches")
                    .fetch_one(p)
                    .await?;
            let (audited,): (Option<i64>,) = sqlx::query_as("SELECT MAX(last_run_at) FROM integrity_audit_state")
                .fetch_one(p)
                .await?;
            Ok(IntegrityStatus {
                open_mismatches: open,
                last_mismatch_at: last,
                last_audit_at: audited,
            })
        })
    }

    /// The open mismatches, newest first (at most `limit`).
    pub async fn integrity_mismatches(&self, limit: i64) -> Result<Vec<Mismatch>> {
        on_reader!(self, p => {
            let rows: Vec<(String, String, Option<String>, String, String)> = sqlx::query_as(
                "SELECT kind, object_key, tenant_id, stored_hash, actual_hash FROM integrity_mismatches
                 ORDER BY detected_at DESC, kind, object_key LIMIT $1")
                .bind(limit)
                .fetch_all(p)
                .await?;
            Ok(rows
                .into_iter()
                .map(|(kind, object_key, tenant_id, stored_hash, actual_hash)| Mismatch {
                    kind: if kind == "record" { IntegrityKind::Record } else { IntegrityKind::Snapshot },
                    object_key,
                    tenant_id: tenant_id.unwrap_or_default(),
                    stored_hash,
                    actual_hash,
                })
                .collect())
        })
    }
}
