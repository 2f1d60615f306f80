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
//! (`crate::checkpoints`).
//!
//! Change sequence numbers are the feed's cursor, so they must become visible in order. On
//! PostgreSQL concurrent transactions could commit a higher `seq` before a lower one and a
//! poller would skip the lower; a transaction-scoped advisory lock serialises change appends so
//! commit order is sequence order. SQLite has one writer and needs nothing.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store};
use serde::Serialize;
use std::collections::HashMap;
use syncguard_core::canonical::content_hash;

/// Arbitrary constant naming the change-append lock.
pub(crate) const CHANGES_LOCK: i64 = 0x5359_4e43_4348_4e47; // "SYNCCHNG"

/// Rows per multi-row statement: 9 binds per record row stays far below both backends' limits.
pub(crate) const CHUNK: usize = 500;

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

/// What is stored of a record, as far as deciding a write needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stored {
    pub hash: String,
    pub deleted: bool,
    pub remote_updated_at: Option<Millis>,
}

/// What `write` does to a record in state `stored`: the rule of hash gating and stale-write
/// protection. `new_hash` is the content hash of an upsert's data.
pub(crate) fn decide(
    stored: Option<&Stored>,
    write: &RecordWrite,
    new_hash: &str,
) -> Option<ChangeKind> {
    match write {
        RecordWrite::Upsert {
            remote_updated_at, ..
        } => match stored {
            Some(s) if !s.deleted && s.hash == new_hash => None,
            Some(s) if matches!((remote_updated_at, s.remote_updated_at), (Some(new), Some(old)) if *new < old) => {
                None
            }
            Some(s) if !s.deleted => Some(ChangeKind::Updated),
            _ => Some(ChangeKind::Created),
        },
        RecordWrite::Delete => match stored {
            Some(s) if !s.deleted => Some(ChangeKind::Deleted),
            _ => None,
        },
    }
}

/// The writes of a batch that target one (connection, resource), by position in the batch.
#[derive(Debug, PartialEq)]
pub(crate) struct Group<'w> {
    pub connection_id: &'w str,
    pub resource: &'w str,
    pub indices: Vec<usize>,
}

impl<'w> Group<'w> {
    /// The distinct external ids the group touches.
    pub fn external_ids(&self, writes: &'w [(RecordKey<'w>, RecordWrite)]) -> Vec<&'w str> {
        let mut seen = std::collections::HashSet::new();
        self.indices
            .iter()
            .map(|&i| writes[i].0.external_id)
            .filter(|id| seen.insert(*id))
            .collect()
    }
}

/// Splits a batch by (connection, resource), keeping the order of writes within each group.
pub(crate) fn groups<'w>(writes: &'w [(RecordKey<'w>, RecordWrite)]) -> Vec<Group<'w>> {
    let mut out: Vec<Group<'w>> = Vec::new();
    for (i, (k, _)) in writes.iter().enumerate() {
        match out
            .iter_mut()
            .find(|g| g.connection_id == k.connection_id && g.resource == k.resource)
        {
            Some(g) => g.indices.push(i),
            None => out.push(Group {
                connection_id: k.connection_id,
                resource: k.resource,
                indices: vec![i],
            }),
        }
    }
    out
}

/// The state one batch leaves a record in, when it changed it.
#[derive(Debug, PartialEq)]
pub(crate) struct FinalRow<'w> {
    pub tenant_id: &'w str,
    pub external_id: &'w str,
    /// New content, hash and updated-at; `None` when only the deleted flag changed.
    pub content: Option<(&'w serde_json::Value, String, Option<Millis>)>,
    pub deleted: bool,
}

/// A change to append for write number `index` of the batch.
#[derive(Debug, PartialEq)]
pub(crate) struct PendingChange {
    pub index: usize,
    pub kind: ChangeKind,
    pub hash: String,
}

/// What a group of writes amounts to: rows to store (one per record, its last state) and
/// changes to append (one per write that changed something).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Plan<'w> {
    pub rows: Vec<FinalRow<'w>>,
    pub changes: Vec<PendingChange>,
}

/// Decides every write of `group` in order against `stored` (which it keeps current, so two
/// writes of one record in a batch see each other). Pure.
pub(crate) fn plan<'w>(
    writes: &'w [(RecordKey<'w>, RecordWrite)],
    group: &Group<'w>,
    stored: &mut HashMap<String, Stored>,
) -> Plan<'w> {
    let mut plan = Plan::default();
    let mut row_of: HashMap<&'w str, usize> = HashMap::new();
    for &i in &group.indices {
        let (k, write) = (&writes[i].0, &writes[i].1);
        let id = k.external_id;
        let new_hash = match write {
            RecordWrite::Upsert { data, .. } => content_hash(data),
            RecordWrite::Delete => String::new(),
        };
        let Some(kind) = decide(stored.get(id), write, &new_hash) else {
            continue;
        };
        let slot = *row_of.entry(id).or_insert_with(|| {
            plan.rows.push(FinalRow {
                tenant_id: k.tenant_id,
                external_id: id,
                content: None,
                deleted: false,
            });
            plan.rows.len() - 1
        });
        let row = &mut plan.rows[slot];
        let hash = match write {
            RecordWrite::Upsert {
                data,
                remote_updated_at,
            } => {
                row.content = Some((data, new_hash.clone(), *remote_updated_at));
                row.deleted = false;
                stored.insert(
                    id.to_string(),
                    Stored {
                        hash: new_hash.clone(),
                        deleted: false,
                        remote_updated_at: *remote_updated_at,
                    },
                );
                new_hash
            }
            RecordWrite::Delete => {
                row.deleted = true;
                let s = stored.get_mut(id).expect("decide deletes only stored records");
                s.deleted = true;
                s.hash.clone()
            }
        };
        plan.changes.push(PendingChange {
            index: i,
            kind,
            hash,
        });
    }
    plan
}

/// `($first, $first+1, …), (…)`: `rows` groups of `cols` numbered placeholders.
pub(crate) fn placeholders(first: usize, rows: usize, cols: usize) -> String {
    (0..rows)
        .map(|r| {
            let cells: Vec<String> = (0..cols)
                .map(|c| format!("${}", first + r * cols + c))
                .collect();
            format!("({})", cells.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Applies a batch of record writes on the open transaction `$tx`, evaluating to
/// `Result<Vec<Option<Change>>>` (one entry per write). On PostgreSQL the caller must hold
/// [`CHANGES_LOCK`] for the transaction (see the module docs).
macro_rules! apply_on {
    ($tx:expr, $writes:expr, $source:expr, $now:expr) => {{
        use $crate::records::{groups, placeholders, plan, Change, Stored, CHUNK};
        let writes: &[($crate::records::RecordKey<'_>, $crate::records::RecordWrite)] = $writes;
        let source: &str = $source;
        let now: $crate::Millis = $now;
        let mut results: Vec<Option<Change>> = vec![None; writes.len()];
        for group in groups(writes) {
            let (conn, res) = (group.connection_id, group.resource);
            let mut stored = std::collections::HashMap::new();
            for ids in group.external_ids(writes).chunks(CHUNK) {
                let sql = format!(
                    "SELECT external_id, hash, deleted, remote_updated_at FROM records
                     WHERE connection_id = $1 AND resource = $2 AND external_id IN {}",
                    placeholders(3, 1, ids.len())
                );
                let mut q = sqlx::query_as::<_, (String, String, bool, Option<i64>)>(&sql)
                    .bind(conn)
                    .bind(res);
                for id in ids {
                    q = q.bind(*id);
                }
                for (id, hash, deleted, remote_updated_at) in q.fetch_all(&mut *$tx).await? {
                    stored.insert(id, Stored { hash, deleted, remote_updated_at });
                }
            }
            let plan = plan(writes, &group, &mut stored);
            for rows in plan.rows.chunks(CHUNK) {
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
            for changes in plan.changes.chunks(CHUNK) {
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
        tenant_id: &str,
        connection_id: &str,
        resource: &str,
        external_id: &str,
        write: &RecordWrite,
        source: &str,
        now: Millis,
    ) -> Result<Option<Change>> {
        let key = RecordKey {
            tenant_id,
            connection_id,
            resource,
            external_id,
        };
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
            let results = apply_on!(tx, writes, source, now)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(id: &str) -> RecordKey<'_> {
        RecordKey {
            tenant_id: "ten",
            connection_id: "con",
            resource: "orders",
            external_id: id,
        }
    }

    fn upsert(v: i64, at: Option<Millis>) -> RecordWrite {
        RecordWrite::Upsert {
            data: json!({ "v": v }),
            remote_updated_at: at,
        }
    }

    fn stored(v: i64, deleted: bool, at: Option<Millis>) -> Stored {
        Stored {
            hash: content_hash(&json!({ "v": v })),
            deleted,
            remote_updated_at: at,
        }
    }

    #[test]
    fn decisions_follow_hash_and_time() {
        let h = |v: i64| content_hash(&json!({ "v": v }));
        assert_eq!(decide(None, &upsert(1, None), &h(1)), Some(ChangeKind::Created));
        let live = stored(1, false, Some(10));
        assert_eq!(decide(Some(&live), &upsert(1, Some(20)), &h(1)), None, "same hash");
        assert_eq!(decide(Some(&live), &upsert(2, Some(5)), &h(2)), None, "older");
        assert_eq!(decide(Some(&live), &upsert(2, None), &h(2)), Some(ChangeKind::Updated));
        assert_eq!(decide(Some(&live), &upsert(2, Some(10)), &h(2)), Some(ChangeKind::Updated));
        let gone = stored(1, true, Some(10));
        assert_eq!(decide(Some(&gone), &upsert(1, Some(11)), &h(1)), Some(ChangeKind::Created));
        assert_eq!(decide(Some(&gone), &upsert(1, Some(9)), &h(1)), None, "older than the deletion's state");
        assert_eq!(decide(Some(&live), &RecordWrite::Delete, ""), Some(ChangeKind::Deleted));
        assert_eq!(decide(Some(&gone), &RecordWrite::Delete, ""), None);
        assert_eq!(decide(None, &RecordWrite::Delete, ""), None);
    }

    #[test]
    fn a_batch_sees_its_own_writes_and_keeps_one_row_per_record() {
        let writes = vec![
            (key("a"), upsert(1, Some(1))),
            (key("a"), upsert(1, Some(2))),
            (key("b"), RecordWrite::Delete),
            (key("a"), upsert(2, Some(3))),
            (key("a"), RecordWrite::Delete),
        ];
        let mut known = HashMap::from([("b".to_string(), stored(7, false, None))]);
        let groups = groups(&writes);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].external_ids(&writes), ["a", "b"]);
        let p = plan(&writes, &groups[0], &mut known);
        let kinds: Vec<_> = p.changes.iter().map(|c| (c.index, c.kind)).collect();
        assert_eq!(
            kinds,
            [(0, ChangeKind::Created), (2, ChangeKind::Deleted), (3, ChangeKind::Updated), (4, ChangeKind::Deleted)]
        );
        assert_eq!(p.rows.len(), 2);
        let a = &p.rows[0];
        assert_eq!((a.external_id, a.deleted), ("a", true));
        assert_eq!(a.content.as_ref().unwrap().0, &json!({ "v": 2 }));
        assert_eq!((p.rows[1].external_id, p.rows[1].content.is_none(), p.rows[1].deleted), ("b", true, true));
        assert_eq!(p.changes[1].hash, content_hash(&json!({ "v": 7 })), "a deletion names the last hash");
    }

    #[test]
    fn batches_split_by_target_in_order() {
        let mut other = key("x");
        other.resource = "products";
        let writes = vec![(key("a"), upsert(1, None)), (other, upsert(1, None)), (key("b"), upsert(1, None))];
        let g = groups(&writes);
        assert_eq!(g.iter().map(|g| (g.resource, g.indices.clone())).collect::<Vec<_>>(), [("orders", vec![0, 2]), ("products", vec![1])]);
        assert_eq!(placeholders(3, 2, 2), "($3, $4), ($5, $6)");
    }
}
