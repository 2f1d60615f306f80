//! Snapshots: states of a provider object captured after a publish, on drift, or on demand.
//!
//! The JSON of a state is stored once per (tenant, hash) in `snapshot_data`, as its RFC 8785
//! canonical text, so the same state captured many times costs one copy and the integrity
//! audit can re-hash it byte for byte. A capture whose hash equals the object's latest snapshot
//! adds nothing. Each snapshot row keeps the RFC 6902 patch from the object's previous one.

use super::{DiffFn, ObjectKey};
use crate::page::{Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    pub id: i64,
    pub tenant_id: String,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    pub hash: String,
    /// `publish`, `drift` or `manual`.
    pub source: String,
    pub previous_id: Option<i64>,
    pub created_at: Millis,
}

pub(crate) const SNAPSHOT_COLUMNS: &str =
    "s.id, s.tenant_id, s.connection_id, s.resource, s.external_id, s.hash, s.source, s.previous_id, s.created_at";

impl FromDbRow for Snapshot {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Snapshot {
            id: r.i64("id")?,
            tenant_id: r.string("tenant_id")?,
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            external_id: r.string("external_id")?,
            hash: r.string("hash")?,
            source: r.string("source")?,
            previous_id: r.opt_i64("previous_id")?,
            created_at: r.i64("created_at")?,
        })
    }
}

/// A snapshot with its state and its patch from the previous snapshot.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotDetail {
    pub snapshot: Snapshot,
    /// `None` when the stored text no longer parses (the integrity audit reports it).
    pub data: Option<Value>,
    pub patch: Value,
}

/// Filters of the snapshot list.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    pub connection_id: Option<String>,
    pub resource: Option<String>,
    pub external_id: Option<String>,
    /// The key's connection list, if it has one.
    pub visible_connections: Option<Vec<String>>,
}

/// The canonical text a state is stored as.
pub(crate) fn canonical_text(data: &Value) -> String {
    String::from_utf8(syncguard_core::canonical::canonical_bytes(data))
        .expect("canonical JSON is UTF-8")
}

/// Captures `$data` (hashing to `$hash`) as a snapshot of `$key` on an open transaction,
/// unless the object's latest snapshot has that hash already; evaluates to the new or latest
/// [`Snapshot`]. On PostgreSQL a transaction-scoped advisory lock per object orders concurrent
/// captures, so that each patch is taken from the snapshot that really precedes it.
macro_rules! snapshot_on {
    ($tx:expr, $backend:expr, $key:expr, $data:expr, $hash:expr, $source:expr, $diff:expr, $now:expr) => {{
        let key: $crate::publish::ObjectKey<'_> = $key;
        let data: &serde_json::Value = $data;
        let hash: &str = $hash;
        let source: &str = $source;
        let diff: $crate::publish::DiffFn<'_> = $diff;
        let now: $crate::Millis = $now;
        async {
            if $backend == $crate::Backend::Postgres {
                // PostgreSQL text cannot hold NUL; a rare collision only serialises two objects.
                let object = format!("{}/{}/{}", key.connection_id, key.resource, key.external_id);
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
                    .bind(object)
                    .execute(&mut *$tx)
                    .await?;
            }
            let select = format!(
                "SELECT {} FROM snapshots s WHERE s.connection_id = $1 AND s.resource = $2 AND s.external_id = $3 ORDER BY s.id DESC LIMIT 1",
                $crate::publish::snapshots::SNAPSHOT_COLUMNS
            );
            let latest = sqlx::query(&select)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .fetch_optional(&mut *$tx)
                .await?;
            let latest = latest
                .as_ref()
                .map(<$crate::publish::Snapshot as $crate::row::FromDbRow>::from_row)
                .transpose()?;
            if let Some(latest) = latest.as_ref().filter(|s| s.hash == hash) {
                return Ok::<_, $crate::StoreError>(latest.clone());
            }
            let previous = match &latest {
                Some(s) => {
                    let text: Option<(String,)> = sqlx::query_as("SELECT data FROM snapshot_data WHERE tenant_id = $1 AND hash = $2")
                        .bind(&s.tenant_id)
                        .bind(&s.hash)
                        .fetch_optional(&mut *$tx)
                        .await?;
                    text.and_then(|(t,)| serde_json::from_str(&t).ok()).unwrap_or(serde_json::Value::Null)
                }
                None => serde_json::Value::Null,
            };
            let patch = diff(&previous, data);
            // The text is canonical, so an existing row that differs was damaged: rewrite it.
            sqlx::query("INSERT INTO snapshot_data (tenant_id, hash, data) VALUES ($1, $2, $3)
                         ON CONFLICT (tenant_id, hash) DO UPDATE SET data = excluded.data WHERE snapshot_data.data <> excluded.data")
                .bind(key.tenant_id)
                .bind(hash)
                .bind($crate::publish::snapshots::canonical_text(data))
                .execute(&mut *$tx)
                .await?;
            let previous_id = latest.as_ref().map(|s| s.id);
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO snapshots (tenant_id, connection_id, resource, external_id, hash, source, previous_id, patch, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id")
                .bind(key.tenant_id)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .bind(hash)
                .bind(source)
                .bind(previous_id)
                .bind(patch.to_string())
                .bind(now)
                .fetch_one(&mut *$tx)
                .await?;
            Ok($crate::publish::Snapshot {
                id,
                tenant_id: key.tenant_id.to_string(),
                connection_id: key.connection_id.to_string(),
                resource: key.resource.to_string(),
                external_id: key.external_id.to_string(),
                hash: hash.to_string(),
                source: source.to_string(),
                previous_id,
                created_at: now,
            })
        }
        .await
    }};
}
pub(crate) use snapshot_on;

impl Store {
    /// Captures `data` as a snapshot of `key` (source `manual` or `drift`), with its patch from
    /// the previous snapshot; returns the object's latest snapshot when the hash is unchanged.
    pub async fn record_snapshot(
        &self,
        key: ObjectKey<'_>,
        data: &Value,
        hash: &str,
        source: &str,
        diff: DiffFn<'_>,
        now: Millis,
    ) -> Result<Snapshot> {
        let backend = self.backend();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let snap = snapshot_on!(tx, backend, key, data, hash, source, diff, now)?;
            tx.commit().await?;
            Ok(snap)
        })
    }

    /// Snapshots visible in `scope`, newest first.
    pub async fn list_snapshots(
        &self,
        scope: &Scope,
        filter: &SnapshotFilter,
        page: &PageRequest,
    ) -> Result<Page<Snapshot>> {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("s.tenant_id = ?", vec![Bind::Str(t.into())]);
        }
        if let Some(v) = &filter.visible_connections {
            c.and_in_list(self.backend(), "s.connection_id", v);
        }
        for (col, value) in [
            ("s.connection_id = ?", &filter.connection_id),
            ("s.resource = ?", &filter.resource),
            ("s.external_id = ?", &filter.external_id),
        ] {
            if let Some(v) = value {
                c.and(col, vec![Bind::Str(v.clone())]);
            }
        }
        self.list_newest_first(
            SNAPSHOT_COLUMNS,
            "snapshots s",
            "s.id",
            c,
            page,
            |s: &Snapshot| s.id,
        )
        .await
    }

    /// One snapshot with its state and patch, if visible in `scope` and `visible`.
    pub async fn get_snapshot(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: i64,
    ) -> Result<Option<SnapshotDetail>> {
        let mut c = Conditions::default();
        c.and("s.id = ?", vec![Bind::I64(id)]);
        if let Some(t) = scope.tenant() {
            c.and("s.tenant_id = ?", vec![Bind::Str(t.into())]);
        }
        if let Some(v) = visible {
            c.and_in_list(self.backend(), "s.connection_id", v);
        }
        let sql = format!(
            "SELECT {SNAPSHOT_COLUMNS}, s.patch, b.data FROM snapshots s
             LEFT JOIN snapshot_data b ON b.tenant_id = s.tenant_id AND b.hash = s.hash{}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let Some(row) = bind_all!(sqlx::query(&sql), &c.binds).fetch_optional(p).await? else {
                return Ok(None);
            };
            Ok(Some(SnapshotDetail {
                snapshot: Snapshot::from_row(&row)?,
                data: row.opt_string("data")?.and_then(|t| serde_json::from_str(&t).ok()),
                patch: serde_json::from_str(&row.string("patch")?).unwrap_or(Value::Null),
            }))
        })
    }

    /// The stored state with `hash` in `tenant_id`, if it is stored and still parses.
    pub async fn snapshot_state(&self, tenant_id: &str, hash: &str) -> Result<Option<Value>> {
        on_reader!(self, p => {
            let text: Option<(String,)> = sqlx::query_as("SELECT data FROM snapshot_data WHERE tenant_id = $1 AND hash = $2")
                .bind(tenant_id)
                .bind(hash)
                .fetch_optional(p)
                .await?;
            Ok(text.and_then(|(t,)| serde_json::from_str(&t).ok()))
        })
    }
}
