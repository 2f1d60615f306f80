//! Sync checkpoints (SPEC §1 "checkpoint", §3.4): per (connection, resource), the cursor (the
//! true high-water mark: the largest remote updated-at committed), when it last synced and last
//! succeeded, its last error, whether its backfill is done, and the run in progress.
//!
//! # How a run survives a crash
//! A run's parameters (its `since`, backfill or not) are stored when it starts
//! ([`Store::begin_sync_run`]). Each page's records, their changes and the checkpoint's next
//! page token commit in **one transaction** ([`Store::commit_sync_page`]), so a run that dies
//! resumes at the page after the last one committed: never from zero, never skipping one.
//!
//! A page is committed only if the checkpoint still names the run and the page token it was
//! fetched with. A worker that lost its lease while a second worker took the job over cannot
//! commit a page twice or out of order; its transaction is refused and rolled back whole. A
//! page of a disconnected connection is refused the same way, so a disconnect stops the data
//! as well as the calls.
//!
//! # Outcomes
//! `sync_outcomes` counts, per connection and minute, the provider calls sync made that
//! succeeded and failed: health's error rate and burn-rate windows are sums over it.
//!
//! The reads health needs every few seconds live in [`health`].

pub mod health;

use crate::records::{apply_on, lock_changes, ChangeKind, RecordKey, RecordWrite};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::{on_reader, on_writer, Backend, Millis, Result, Scope, Store};
use serde::Serialize;

/// Which checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointKey<'a> {
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub resource: &'a str,
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Checkpoint {
    pub tenant_id: String,
    pub connection_id: String,
    pub resource: String,
    pub cursor: Option<Millis>,
    /// When a run last started or resumed.
    pub last_sync_at: Option<Millis>,
    /// When a run last completed.
    pub last_success_at: Option<Millis>,
    pub last_error: Option<String>,
    pub backfill_done: bool,
    /// When the last completed run started.
    pub last_run_started_at: Option<Millis>,
    /// The run in progress, if any.
    pub run: Option<SyncRun>,
    pub pages_total: i64,
    pub items_total: i64,
    /// Items stored without a readable cursor field, over every run.
    pub missing_cursor_total: i64,
    pub updated_at: Millis,
}

/// A run in progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncRun {
    pub started_at: Millis,
    /// The query's lower bound (`None`: a full listing).
    pub since: Option<Millis>,
    pub backfill: bool,
    pub full: bool,
    /// The token of the next page to fetch; `None` before the first page is committed.
    pub page_token: Option<String>,
    pub pages: i64,
    pub items: i64,
    pub missing_cursor: i64,
}

/// The parameters of a new run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunStart {
    pub started_at: Millis,
    pub since: Option<Millis>,
    pub backfill: bool,
    pub full: bool,
}

/// One fetched page to commit.
#[derive(Debug, Clone)]
pub struct SyncPage<'a> {
    pub key: CheckpointKey<'a>,
    /// The run the page belongs to (`SyncRun::started_at`).
    pub run_started_at: Millis,
    /// The token the page was fetched with (`None`: the first page).
    pub page_token: Option<&'a str>,
    /// The token of the page after it (`None`: this was the last page and the run is done).
    pub next_token: Option<&'a str>,
    pub writes: &'a [(RecordKey<'a>, RecordWrite)],
    /// The largest readable updated-at among the page's items.
    pub max_updated_at: Option<Millis>,
    /// Items whose cursor field was null or unreadable (stored all the same).
    pub missing_cursor: i64,
}

/// What committing a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PageCounts {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Items whose content was already stored (or older than what is).
    pub unchanged: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCommit {
    Committed {
        counts: PageCounts,
        /// The run completed with this page.
        done: bool,
    },
    /// Nothing was written: the connection is disconnected (or gone).
    Disconnected,
    /// Nothing was written: the checkpoint no longer names this run and page (another worker
    /// committed it, or a new run started).
    Superseded,
}

const COLUMNS: &str = "tenant_id, connection_id, resource, cursor, last_sync_at, last_success_at, last_error, backfill_done,
    last_run_started_at, run_started_at, run_since, run_backfill, run_full, run_page_token, run_pages, run_items,
    run_missing_cursor, pages_total, items_total, missing_cursor_total, updated_at";

impl FromDbRow for Checkpoint {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        let run = match r.opt_i64("run_started_at")? {
            None => None,
            Some(started_at) => Some(SyncRun {
                started_at,
                since: r.opt_i64("run_since")?,
                backfill: r.bool("run_backfill")?,
                full: r.bool("run_full")?,
                page_token: r.opt_string("run_page_token")?,
                pages: r.i64("run_pages")?,
                items: r.i64("run_items")?,
                missing_cursor: r.i64("run_missing_cursor")?,
            }),
        };
        Ok(Checkpoint {
            tenant_id: r.string("tenant_id")?,
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            cursor: r.opt_i64("cursor")?,
            last_sync_at: r.opt_i64("last_sync_at")?,
            last_success_at: r.opt_i64("last_success_at")?,
            last_error: r.opt_string("last_error")?,
            backfill_done: r.bool("backfill_done")?,
            last_run_started_at: r.opt_i64("last_run_started_at")?,
            run,
            pages_total: r.i64("pages_total")?,
            items_total: r.i64("items_total")?,
            missing_cursor_total: r.i64("missing_cursor_total")?,
            updated_at: r.i64("updated_at")?,
        })
    }
}

/// The minute `at` falls in: outcome counts are kept per minute.
pub fn minute_of(at: Millis) -> Millis {
    at.div_euclid(60_000) * 60_000
}

const ENSURE_ROW: &str =
    "INSERT INTO sync_checkpoints (connection_id, resource, tenant_id, updated_at)
     VALUES ($1, $2, $3, $4) ON CONFLICT (connection_id, resource) DO NOTHING";

const ADD_OUTCOMES: &str = "INSERT INTO sync_outcomes (connection_id, minute, tenant_id, ok, failed) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (connection_id, minute) DO UPDATE SET ok = sync_outcomes.ok + excluded.ok, failed = sync_outcomes.failed + excluded.failed";

/// The checkpoint update of a page that ends its run: the run is cleared and becomes the last
/// success; a backfill run marks the backfill done.
const FINISH_RUN: &str = "UPDATE sync_checkpoints SET
       cursor = CASE WHEN CAST($1 AS BIGINT) IS NULL THEN cursor WHEN cursor IS NULL OR $1 > cursor THEN $1 ELSE cursor END,
       pages_total = pages_total + 1, items_total = items_total + $2, missing_cursor_total = missing_cursor_total + $3,
       last_success_at = $4, last_error = NULL, backfill_done = (backfill_done OR run_backfill),
       last_run_started_at = run_started_at, run_started_at = NULL, run_since = NULL, run_backfill = FALSE,
       run_full = FALSE, run_page_token = NULL, run_pages = 0, run_items = 0, run_missing_cursor = 0, updated_at = $4
     WHERE connection_id = $5 AND resource = $6";

/// The checkpoint update of a page with more to come: the run moves to the next page.
const ADVANCE_RUN: &str = "UPDATE sync_checkpoints SET
       cursor = CASE WHEN CAST($1 AS BIGINT) IS NULL THEN cursor WHEN cursor IS NULL OR $1 > cursor THEN $1 ELSE cursor END,
       pages_total = pages_total + 1, items_total = items_total + $2, missing_cursor_total = missing_cursor_total + $3,
       run_pages = run_pages + 1, run_items = run_items + $2, run_missing_cursor = run_missing_cursor + $3,
       run_page_token = $7, updated_at = $4
     WHERE connection_id = $5 AND resource = $6";

impl Store {
    /// A connection's checkpoint for `resource`, if a run ever started.
    pub async fn get_checkpoint(
        &self,
        connection_id: &str,
        resource: &str,
    ) -> Result<Option<Checkpoint>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sync_checkpoints WHERE connection_id = $1 AND resource = $2"
        );
        on_reader!(self, p => {
            let row = sqlx::query(&sql).bind(connection_id).bind(resource).fetch_optional(p).await?;
            Ok(row.as_ref().map(Checkpoint::from_row).transpose()?)
        })
    }

    /// Every checkpoint of a connection visible in `scope`, by resource.
    pub async fn list_checkpoints(
        &self,
        scope: &Scope,
        connection_id: &str,
    ) -> Result<Vec<Checkpoint>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sync_checkpoints
             WHERE connection_id = $1 AND (CAST($2 AS TEXT) IS NULL OR tenant_id = $2) ORDER BY resource"
        );
        on_reader!(self, p => {
            let rows = sqlx::query(&sql).bind(connection_id).bind(scope.tenant()).fetch_all(p).await?;
            Ok(rows.iter().map(Checkpoint::from_row).collect::<RowResult<Vec<_>>>()?)
        })
    }

    /// Notes a sync attempt (`last_sync_at`) and, with `start`, begins a new run in place of
    /// whatever run was in progress. Returns the checkpoint as it now is.
    pub async fn begin_sync_run(
        &self,
        key: CheckpointKey<'_>,
        start: Option<RunStart>,
        now: Millis,
    ) -> Result<Checkpoint> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            sqlx::query(ENSURE_ROW).bind(key.connection_id).bind(key.resource).bind(key.tenant_id).bind(now).execute(&mut *tx).await?;
            match start {
                Some(s) => {
                    sqlx::query("UPDATE sync_checkpoints SET run_started_at = $1, run_since = $2, run_backfill = $3, run_full = $4,
                                        run_page_token = NULL, run_pages = 0, run_items = 0, run_missing_cursor = 0,
                                        last_sync_at = $5, updated_at = $5
                                 WHERE connection_id = $6 AND resource = $7")
                        .bind(s.started_at).bind(s.since).bind(s.backfill).bind(s.full).bind(now)
                        .bind(key.connection_id).bind(key.resource)
                        .execute(&mut *tx).await?;
                }
                None => {
                    sqlx::query("UPDATE sync_checkpoints SET last_sync_at = $1, updated_at = $1 WHERE connection_id = $2 AND resource = $3")
                        .bind(now).bind(key.connection_id).bind(key.resource)
                        .execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        });
        self.get_checkpoint(key.connection_id, key.resource)
            .await?
            .ok_or(crate::StoreError::NotFound)
    }

    /// Commits one page: its records and changes, the checkpoint's next position, and one
    /// successful call in the outcome counts, all in one transaction (see the module docs).
    pub async fn commit_sync_page(&self, page: &SyncPage<'_>, now: Millis) -> Result<PageCommit> {
        let backend = self.backend();
        let k = page.key;
        let (status_sql, run_sql) = match backend {
            Backend::Postgres => (
                "SELECT status FROM connections WHERE id = $1 FOR SHARE",
                "SELECT run_started_at, run_page_token FROM sync_checkpoints WHERE connection_id = $1 AND resource = $2 FOR UPDATE",
            ),
            Backend::Sqlite => (
                "SELECT status FROM connections WHERE id = $1",
                "SELECT run_started_at, run_page_token FROM sync_checkpoints WHERE connection_id = $1 AND resource = $2",
            ),
        };
        let items = page.writes.len() as i64;
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            // The change lock first, as every record writer takes it first: one lock order.
            lock_changes!(tx, backend);
            crate::queue::fence::check_fence!(self, self.fence, tx);
            let status: Option<(String,)> = sqlx::query_as(status_sql).bind(k.connection_id).fetch_optional(&mut *tx).await?;
            if !matches!(status, Some((s,)) if s != "disconnected") {
                return Ok(PageCommit::Disconnected);
            }
            let run: Option<(Option<i64>, Option<String>)> =
                sqlx::query_as(run_sql).bind(k.connection_id).bind(k.resource).fetch_optional(&mut *tx).await?;
            if run != Some((Some(page.run_started_at), page.page_token.map(String::from))) {
                return Ok(PageCommit::Superseded);
            }
            let changes = apply_on!(tx, backend, page.writes, "sync", now)?;
            let done = page.next_token.is_none();
            let update = sqlx::query(if done { FINISH_RUN } else { ADVANCE_RUN })
                .bind(page.max_updated_at)
                .bind(items)
                .bind(page.missing_cursor)
                .bind(now)
                .bind(k.connection_id)
                .bind(k.resource);
            let update = if done { update } else { update.bind(page.next_token) };
            update.execute(&mut *tx).await?;
            sqlx::query(ADD_OUTCOMES).bind(k.connection_id).bind(minute_of(now)).bind(k.tenant_id).bind(1i64).bind(0i64).execute(&mut *tx).await?;
            tx.commit().await?;
            let mut counts = PageCounts::default();
            for change in &changes {
                match change.as_ref().map(|c| c.kind.as_str()) {
                    Some(k) if k == ChangeKind::Created.as_str() => counts.created += 1,
                    Some(k) if k == ChangeKind::Updated.as_str() => counts.updated += 1,
                    Some(_) => counts.deleted += 1,
                    None => counts.unchanged += 1,
                }
            }
            Ok(PageCommit::Committed { counts, done })
        })
    }

    /// Records a failed sync call: the checkpoint's `last_error` (its run stays, to resume) and
    /// one failure in the outcome counts.
    pub async fn record_sync_failure(
        &self,
        key: CheckpointKey<'_>,
        error: &str,
        now: Millis,
    ) -> Result<()> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            crate::queue::fence::check_fence!(self, self.fence, tx);
            sqlx::query(ENSURE_ROW).bind(key.connection_id).bind(key.resource).bind(key.tenant_id).bind(now).execute(&mut *tx).await?;
            sqlx::query("UPDATE sync_checkpoints SET last_error = $1, updated_at = $2 WHERE connection_id = $3 AND resource = $4")
                .bind(error).bind(now).bind(key.connection_id).bind(key.resource)
                .execute(&mut *tx).await?;
            sqlx::query(ADD_OUTCOMES).bind(key.connection_id).bind(minute_of(now)).bind(key.tenant_id).bind(0i64).bind(1i64).execute(&mut *tx).await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Adds provider call outcomes made outside a page commit (refetches). Not fenced: it
    /// counts calls that reached the provider, and a run that lost its lease made them too.
    pub async fn record_call_outcomes(
        &self,
        tenant_id: &str,
        connection_id: &str,
        ok: i64,
        failed: i64,
        now: Millis,
    ) -> Result<()> {
        on_writer!(self, p => {
            sqlx::query(ADD_OUTCOMES).bind(connection_id).bind(minute_of(now)).bind(tenant_id).bind(ok).bind(failed).execute(p).await?;
        });
        Ok(())
    }

    /// Forgets outcome counts older than `before` (health looks back three days at most).
    pub async fn purge_sync_outcomes(&self, before: Millis) -> Result<u64> {
        on_writer!(self, p => {
            Ok(sqlx::query("DELETE FROM sync_outcomes WHERE minute < $1").bind(before).execute(p).await?.rows_affected())
        })
    }

    /// Deletes everything sync stored for a connection (records, changes, checkpoints, outcome
    /// counts) in one transaction: a disconnect with `purge`.
    pub async fn purge_sync_data(&self, connection_id: &str) -> Result<PurgedData> {
        let backend = self.backend();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            lock_changes!(tx, backend);
            let mut n = [0u64; 3];
            for (i, table) in ["records", "changes", "sync_checkpoints"].iter().enumerate() {
                n[i] = sqlx::query(&format!("DELETE FROM {table} WHERE connection_id = $1"))
                    .bind(connection_id).execute(&mut *tx).await?.rows_affected();
            }
            sqlx::query("DELETE FROM sync_outcomes WHERE connection_id = $1").bind(connection_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(PurgedData { records: n[0], changes: n[1], checkpoints: n[2] })
        })
    }
}

/// What a purge deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct PurgedData {
    pub records: u64,
    pub changes: u64,
    pub checkpoints: u64,
}
