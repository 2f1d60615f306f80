//! Records (the local mirror of provider objects) and the change feed (SPEC §1, §3.4).
//!
//! A write carries the object's content; its RFC 8785 hash decides whether anything changed.
//! An unchanged hash writes nothing and appends no change, so a record touched by a webhook and
//! then re-read by a sync produces one change, not two. A write older than what is stored (by
//! the provider's updated-at) is ignored, so out-of-order webhooks cannot roll a record back.
//!
//! Writes are applied in batches: one read of what is stored for the whole batch, then
//! multi-row statements for the records and the changes. A sync page of a thousand objects is
//! a handful of statements, not three thousand. [`apply_on`] runs a batch inside a caller's
//! transaction, which is how a sync page and its checkpoint commit together
//! (see the `checkpoints` module).
//!
//! Change sequence numbers are the feed's cursor, so they must become visible in order. On
//! PostgreSQL concurrent transactions could commit a higher `seq` before a lower one and a
//! poller would skip the lower; a transaction-scoped advisory lock serialises change appends so
//! commit order is sequence order. SQLite has one writer and needs nothing.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Backend, Millis, Result, Scope, Store};
use serde::Serialize;

/// Arbitrary constant naming the change-append lock.
pub(crate) const CHANGES_LOCK: i64 = 0x5359_4e43_4348_4e47; // "SYNCCHNG"

mod batch;

pub(crate) use batch::{groups, plan, Stored};

/// Bind parameters per statement. Multi-row statements save round trips, but the SQLite
/// driver's cost grows faster than linearly with a statement's parameters (measured: 1 000
/// record rows take 8 ms in statements of 25 rows, 50 ms in statements of 500), so a batch is
/// cut into statements of about this many binds.
pub(crate) const BINDS: usize = 250;

#[derive(Debug, Clone, PartialEq)]
pub enum RecordWrite {
    /// The object's current state.
    Upsert {
        data: serde_json::Value,
        remote_updated_at: Option<Millis>,
    },
    /// The provider deleted the object.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Created => "created",
            ChangeKind::Updated => "updated",
            ChangeKind::Deleted => "deleted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub seq: i64,
    pub tenant_id: String,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    pub kind: String,
    pub hash: Option<String>,
    /// `webhook`, `sync`, `refetch`, `reconcile` …: what observed the change.
    pub source: String,
    pub at: Millis,
}

impl FromDbRow for Change {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Change {
            seq: r.i64("seq")?,
            tenant_id: r.string("tenant_id")?,
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            external_id: r.string("external_id")?,
            kind: r.string("kind")?,
            hash: r.opt_string("hash")?,
            source: r.string("source")?,
            at: r.i64("at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Record {
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    pub data: serde_json::Value,
    pub hash: String,
    pub remote_updated_at: Option<Millis>,
    pub synced_at: Millis,
    pub deleted: bool,
}

impl FromDbRow for Record {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Record {
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            external_id: r.string("external_id")?,
            data: serde_json::from_str(&r.string("data")?).unwrap_or_default(),
            hash: r.string("hash")?,
            remote_updated_at: r.opt_i64("remote_updated_at")?,
            synced_at: r.i64("synced_at")?,
            deleted: r.bool("deleted")?,
        })
    }
}

const RECORD_COLUMNS: &str =
    "connection_id, resource, external_id, data, hash, remote_updated_at, synced_at, deleted";

/// Where a record lives.
#[derive(Debug, Clone, Copy)]
pub struct RecordKey<'a> {
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub resource: &'a str,
    pub external_id: &'a str,
}

/// What is stored of the records of one (connection, resource) whose ids are in the JSON
/// array bound as `$3`.
pub(crate) fn select_stored_sql(backend: Backend) -> &'static str {
    // Each form is the one its planner turns into primary-key lookups (measured). PostgreSQL
    // gets a join from the id list: whatever it knows of the table (a fresh one has no
    // statistics) that is a lookup per id or one hash join, where `IN`/`= ANY` over a long list
    // could become a scan comparing every row with every id. SQLite does the reverse: it keeps
    // the join's order and scans the list per row, but makes `IN (subquery)` an index probe.
    match backend {
        Backend::Sqlite => "SELECT external_id, hash, deleted, remote_updated_at FROM records
             WHERE connection_id = $1 AND resource = $2 AND external_id IN (SELECT value FROM json_each($3))",
        Backend::Postgres => "SELECT r.external_id, r.hash, r.deleted, r.remote_updated_at
             FROM json_array_elements_text(CAST($3 AS json)) AS ids(id) JOIN records r
               ON r.connection_id = $1 AND r.resource = $2 AND r.external_id = ids.id",
    }
}

/// Applies a batch of record writes on the open transaction `$tx`, evaluating to
/// `Result<Vec<Option<Change>>>` (one entry per write). On PostgreSQL the caller must hold
/// [`CHANGES_LOCK`] for the transaction (see the module docs).
macro_rules! apply_on {
    ($tx:expr, $backend:expr, $writes:expr, $source:expr, $now:expr) => {{
        use $crate::records::{groups, plan, select_stored_sql, Change, Stored, BINDS};
        use $crate::sql::placeholders;
        let writes: &[($crate::records::RecordKey<'_>, $crate::records::RecordWrite)] = $writes;
        let source: &str = $source;
        let now: $crate::Millis = $now;
        let mut results: Vec<Option<Change>> = vec![None; writes.len()];
        for group in groups(writes) {
            let (conn, res) = (group.connection_id, group.resource);
            let mut stored = std::collections::HashMap::new();
            // The ids travel as one JSON array, one bind whatever the batch's size.
            let ids = serde_json::to_string(&group.external_ids(writes)).expect("strings serialize");
            let rows: Vec<(String, String, bool, Option<i64>)> = sqlx::query_as(select_stored_sql($backend))
                .bind(conn)
                .bind(res)
                .bind(ids)
                .fetch_all(&mut *$tx)
                .await?;
            for (id, hash, deleted, remote_updated_at) in rows {
                stored.insert(id, Stored { hash, deleted, remote_updated_at });
            }
            let plan = plan(writes, &group, &mut stored);
            for rows in plan.rows.chunks(BINDS / 9) {
                // Rows whose content did not change only flip the deleted flag.
                let flags: Vec<&str> = rows.iter().filter(|r| r.content.is_none()).map(|r| r.external_id).collect();
                if !flags.is_empty() {
                    let sql = format!(
                        "UPDATE records SET deleted = TRUE, synced_at = $1
                         WHERE connection_id = $2 AND resource = $3 AND external_id IN {}",
                        placeholders(4, 1, flags.len())
                    );
                    let mut q = sqlx::query(&sql).bind(now).bind(conn).bind(res);
                    for id in &flags {
                        q = q.bind(*id);
                    }
                    q.execute(&mut *$tx).await?;
                }
                let full: Vec<_> = rows.iter().filter(|r| r.content.is_some()).collect();
                if !full.is_empty() {
                    let sql = format!(
                        "INSERT INTO records (connection_id, resource, external_id, tenant_id, data, hash, remote_updated_at, synced_at, deleted)
                         VALUES {}
                         ON CONFLICT (connection_id, resource, external_id) DO UPDATE SET
                           data = excluded.data, hash = excluded.hash, remote_updated_at = excluded.remote_updated_at,
                           synced_at = excluded.synced_at, deleted = excluded.deleted",
                        placeholders(1, full.len(), 9)
                    );
                    let mut q = sqlx::query(&sql);
                    for r in &full {
                        let (data, hash, remote_updated_at) = r.content.as_ref().expect("filtered");
                        q = q
                            .bind(conn)
                            .bind(res)
                            .bind(r.external_id)
                            .bind(r.tenant_id)
                            .bind(data.to_string())
                            .bind(hash.clone())
                            .bind(*remote_updated_at)
                            .bind(now)
                            .bind(r.deleted);
                    }
                    q.execute(&mut *$tx).await?;
                }
            }
            for changes in plan.changes.chunks(BINDS / 8) {
                let sql = format!(
                    "INSERT INTO changes (tenant_id, connection_id, resource, external_id, kind, hash, source, at)
                     VALUES {} RETURNING seq",
                    placeholders(1, changes.len(), 8)
                );
                let mut q = sqlx::query_as::<_, (i64,)>(&sql);
                for c in changes {
                    let k = &writes[c.index].0;
                    q = q
                        .bind(k.tenant_id)
                        .bind(conn)
                        .bind(res)
                        .bind(k.external_id)
                        .bind(c.kind.as_str())
                        .bind(c.hash.clone())
                        .bind(source)
                        .bind(now);
                }
                // Rows of one VALUES list take sequence numbers in list order (and the change
                // lock keeps other appenders out), so sorted numbers line up with the list.
                let mut seqs: Vec<i64> = q.fetch_all(&mut *$tx).await?.into_iter().map(|(s,)| s).collect();
                seqs.sort_unstable();
                for (c, seq) in changes.iter().zip(seqs) {
                    let k = &writes[c.index].0;
                    results[c.index] = Some(Change {
                        seq,
                        tenant_id: k.tenant_id.to_string(),
                        connection_id: conn.to_string(),
                        resource: res.to_string(),
                        external_id: k.external_id.to_string(),
                        kind: c.kind.as_str().to_string(),
                        hash: Some(c.hash.clone()),
                        source: source.to_string(),
                        at: now,
                    });
                }
            }
        }
        Ok::<_, $crate::StoreError>(results)
    }};
}
pub(crate) use apply_on;

/// Takes the change-append lock for the rest of the transaction `$tx` (PostgreSQL only).
macro_rules! lock_changes {
    ($tx:expr, $backend:expr) => {
        if $backend == $crate::Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind($crate::records::CHANGES_LOCK)
                .execute(&mut *$tx)
                .await?;
        }
    };
}
pub(crate) use lock_changes;

impl Store {
    /// Applies one observed state of a provider object; returns the change it made, or `None`
    /// when nothing changed (same hash, already deleted, or older than what is stored).
    pub async fn apply_record(
        &self,
        key: RecordKey<'_>,
        write: &RecordWrite,
        source: &str,
        now: Millis,
    ) -> Result<Option<Change>> {
        let mut out = self
            .apply_records(&[(key, write.clone())], source, now)
            .await?;
        Ok(out.pop().flatten())
    }

    /// Applies many writes in one transaction, in order; one result per write.
    pub async fn apply_records(
        &self,
        writes: &[(RecordKey<'_>, RecordWrite)],
        source: &str,
        now: Millis,
    ) -> Result<Vec<Option<Change>>> {
        let backend = self.backend();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            lock_changes!(tx, backend);
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let results = apply_on!(tx, backend, writes, source, now)?;
            tx.commit().await?;
            Ok(results)
        })
    }

    /// One record, if its connection is visible in `scope`.
    pub async fn get_record(
        &self,
        scope: &Scope,
        connection_id: &str,
        resource: &str,
        external_id: &str,
    ) -> Result<Option<Record>> {
        let mut c = Conditions::default();
        c.and("connection_id = ?", vec![Bind::Str(connection_id.into())]);
        c.and("resource = ?", vec![Bind::Str(resource.into())]);
        c.and("external_id = ?", vec![Bind::Str(external_id.into())]);
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.into())]);
        }
        let sql = format!("SELECT {RECORD_COLUMNS} FROM records{}", c.where_clause());
        on_reader!(self, p => {
            let row = bind_all!(sqlx::query(&sql), &c.binds).fetch_optional(p).await?;
            Ok(row.as_ref().map(Record::from_row).transpose()?)
        })
    }

    /// Records of one connection and resource, by external id.
    pub async fn list_records(
        &self,
        scope: &Scope,
        connection_id: &str,
        resource: &str,
        page: &PageRequest,
    ) -> Result<Page<Record>> {
        let mut c = Conditions::default();
        c.and("connection_id = ?", vec![Bind::Str(connection_id.into())]);
        c.and("resource = ?", vec![Bind::Str(resource.into())]);
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.into())]);
        }
        if let Some(after) = page.after.as_deref().and_then(decode_cursor) {
            c.and("external_id > ?", vec![Bind::Str(after)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT {RECORD_COLUMNS} FROM records{} ORDER BY external_id LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(Record::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |r| r.external_id.clone()))
        })
    }

    /// Changes after `after` (exclusive), oldest first.
    pub async fn list_changes(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        connection_id: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Change>> {
        let mut c = Conditions::default();
        c.and("seq > ?", vec![Bind::I64(after)]);
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.into())]);
        }
        if let Some(conn) = connection_id {
            c.and("connection_id = ?", vec![Bind::Str(conn.into())]);
        }
        if let Some(v) = visible {
            c.and_in_list(self.backend(), "connection_id", v);
        }
        let lim = c.push_bind(Bind::I64(limit));
        let sql = format!("SELECT seq, tenant_id, connection_id, resource, external_id, kind, hash, source, at FROM changes{} ORDER BY seq LIMIT {lim}", c.where_clause());
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            Ok(rows.iter().map(Change::from_row).collect::<RowResult<Vec<_>>>()?)
        })
    }
}
