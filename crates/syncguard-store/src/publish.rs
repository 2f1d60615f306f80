//! Storage of the publish path (SPEC §3.5): desired state, snapshots, drift findings and what
//! the integrity audit found.
//!
//! Desired state is what the app wants a provider object to be. Writing it and enqueueing its
//! publish job happen in one transaction, so an accepted `PUT` always has a job to carry it out
//! and a crash can never leave one without the other. The job's unique key is
//! [`publish_job_key`]: one active publish per object, debounced by the caller's window.
//!
//! # Lock order
//! On PostgreSQL an object's `desired_state` row is locked before its publish job's row. A
//! `PUT` locks the row (`FOR UPDATE`) and then updates the active job (payload, run time), so
//! the publish job's own writes update the row *before* checking their fencing token (which
//! share-locks the job row). Checked first, the token's lock and the `PUT`'s were taken in
//! opposite orders, and PostgreSQL broke the cycle by failing one of them (`deadlock
//! detected`, a 500 to the `PUT`). The token is still checked inside the same transaction, so
//! a run that lost its lease commits nothing either way.
//!
//! # Layout
//! - this file: desired state and its publish job.
//! - [`snapshots`]: captured states, their JSON stored once per (tenant, hash), each with its
//!   RFC 6902 patch from the object's previous snapshot.
//! - [`drift`]: reconciliation findings and the writes the reconcile policies make.
//! - [`integrity`]: the rolling integrity audit's windows and findings.
//!
//! The store never computes a JSON patch itself (that would pull a diff library into the
//! storage seam): writers pass a `diff(previous, next)` function, called inside the
//! transaction that reads the previous snapshot.

pub mod drift;
pub mod integrity;
pub mod snapshots;

use crate::queue::{enqueue_on, NewJob, ACTIVE};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::{on_reader, on_writer, Backend, Millis, Result, Scope, Store};
use serde::Serialize;
use serde_json::Value;

pub use drift::{Drift, DriftFilter, NewDrift, Reconciled};
pub use integrity::{IntegrityKind, IntegrityStatus, Mismatch, StoredContent};
pub use snapshots::{Snapshot, SnapshotDetail, SnapshotFilter};

/// A diff function: the RFC 6902 patch turning the first document into the second.
pub type DiffFn<'a> = &'a (dyn Fn(&Value, &Value) -> Value + Send + Sync);

/// Where a provider object lives.
#[derive(Debug, Clone, Copy)]
pub struct ObjectKey<'a> {
    pub tenant_id: &'a str,
    pub connection_id: &'a str,
    pub resource: &'a str,
    pub external_id: &'a str,
}

/// The unique key of an object's publish job.
pub fn publish_job_key(connection_id: &str, resource: &str, external_id: &str) -> String {
    format!("publish:{connection_id}:{resource}:{external_id}")
}

/// The same key, as SQL over the columns of `desired_state` aliased `d`.
const PUBLISH_KEY_SQL: &str =
    "('publish:' || d.connection_id || ':' || d.resource || ':' || d.external_id)";

/// Where an object's desired state stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DesiredStatus {
    /// The provider has the desired state (`hash == last_published_hash`).
    Published,
    /// A publish job is queued or running.
    Pending,
    /// Not published and nothing queued: the last publish failed for good (see `last_error`).
    Failed,
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Published => "published",
            DesiredStatus::Pending => "pending",
            DesiredStatus::Failed => "failed",
        }
    }
}

/// One object's desired state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    pub tenant_id: String,
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
    pub data: Value,
    /// SHA-256 of the RFC 8785 form of `data`.
    pub hash: String,
    /// What the provider was last known to hold (after a publish, or as reconciliation found).
    pub last_published_hash: Option<String>,
    /// A hash sent to the provider whose outcome was never recorded.
    pub attempted_hash: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: Millis,
    pub published_at: Option<Millis>,
    pub reconciled_at: Millis,
    /// A publish job for the object is active.
    pub publish_pending: bool,
}

impl Desired {
    pub fn is_published(&self) -> bool {
        self.last_published_hash.as_deref() == Some(self.hash.as_str())
    }

    pub fn status(&self) -> DesiredStatus {
        if self.is_published() {
            DesiredStatus::Published
        } else if self.publish_pending {
            DesiredStatus::Pending
        } else {
            DesiredStatus::Failed
        }
    }

    pub fn key(&self) -> ObjectKey<'_> {
        ObjectKey {
            tenant_id: &self.tenant_id,
            connection_id: &self.connection_id,
            resource: &self.resource,
            external_id: &self.external_id,
        }
    }
}

impl FromDbRow for Desired {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(Desired {
            tenant_id: r.string("tenant_id")?,
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            external_id: r.string("external_id")?,
            data: serde_json::from_str(&r.string("data")?).unwrap_or_default(),
            hash: r.string("hash")?,
            last_published_hash: r.opt_string("last_published_hash")?,
            attempted_hash: r.opt_string("attempted_hash")?,
            last_error: r.opt_string("last_error")?,
            updated_at: r.i64("updated_at")?,
            published_at: r.opt_i64("published_at")?,
            reconciled_at: r.i64("reconciled_at")?,
            publish_pending: r.bool("publish_pending")?,
        })
    }
}

/// The columns of a [`Desired`] from `desired_state d`.
fn desired_select() -> String {
    format!(
        "SELECT d.tenant_id, d.connection_id, d.resource, d.external_id, d.data, d.hash, d.last_published_hash,
                d.attempted_hash, d.last_error, d.updated_at, d.published_at, d.reconciled_at,
                EXISTS (SELECT 1 FROM jobs j WHERE j.unique_key = {PUBLISH_KEY_SQL} AND j.state IN {ACTIVE}) AS publish_pending
         FROM desired_state d"
    )
}

/// What a desired-state write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The provider already holds this state: no job.
    Unchanged,
    /// This state is already on its way: the active job is `job_id`.
    Duplicate { job_id: i64 },
    /// A publish job (new, or the active one with its run pushed back) carries this state.
    Enqueued { job_id: i64 },
}

impl Store {
    /// Records `data` (hashing to `hash`) as the desired state of `key` and, unless the provider
    /// already holds it or it is already pending, enqueues `job` (its publish job, carrying
    /// [`publish_job_key`] and the debounce window) in the same transaction.
    pub async fn put_desired(
        &self,
        key: ObjectKey<'_>,
        data: &Value,
        hash: &str,
        job: &NewJob,
        now: Millis,
    ) -> Result<PutOutcome> {
        let lock = match self.backend() {
            Backend::Sqlite => "",
            // Two PUTs of one object decide one after the other.
            Backend::Postgres => "FOR UPDATE",
        };
        let job_key = publish_job_key(key.connection_id, key.resource, key.external_id);
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let existing: Option<(String, Option<String>)> = sqlx::query_as(&format!(
                "SELECT hash, last_published_hash FROM desired_state WHERE connection_id = $1 AND resource = $2 AND external_id = $3 {lock}"))
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .fetch_optional(&mut *tx)
                .await?;
            let active: Option<(i64,)> = sqlx::query_as(&format!("SELECT id FROM jobs WHERE unique_key = $1 AND state IN {ACTIVE}"))
                .bind(&job_key)
                .fetch_optional(&mut *tx)
                .await?;
            let (current, published) = existing.unzip();
            let published = published.flatten();
            if let (Some(current), Some((job_id,))) = (&current, active) {
                if current == hash && published.as_deref() != Some(hash) {
                    return Ok(PutOutcome::Duplicate { job_id });
                }
            }
            if current.as_deref() != Some(hash) {
                sqlx::query("INSERT INTO desired_state (connection_id, resource, external_id, tenant_id, data, hash, updated_at)
                             VALUES ($1, $2, $3, $4, $5, $6, $7)
                             ON CONFLICT (connection_id, resource, external_id) DO UPDATE SET
                               data = excluded.data, hash = excluded.hash, updated_at = excluded.updated_at, last_error = NULL")
                    .bind(key.connection_id)
                    .bind(key.resource)
                    .bind(key.external_id)
                    .bind(key.tenant_id)
                    .bind(data.to_string())
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            let outcome = if published.as_deref() == Some(hash) {
                // Back to what the provider holds: a queued job will find nothing to do.
                PutOutcome::Unchanged
            } else {
                let e = enqueue_on!(tx, job, now)?;
                PutOutcome::Enqueued { job_id: e.id }
            };
            tx.commit().await?;
            Ok(outcome)
        })
    }

    /// One object's desired state, if its tenant is visible in `scope`.
    pub async fn get_desired(
        &self,
        scope: &Scope,
        connection_id: &str,
        resource: &str,
        external_id: &str,
    ) -> Result<Option<Desired>> {
        let sql = format!(
            "{} WHERE d.connection_id = $1 AND d.resource = $2 AND d.external_id = $3 AND (CAST($4 AS TEXT) IS NULL OR d.tenant_id = $4)",
            desired_select()
        );
        on_reader!(self, p => {
            let row = sqlx::query(&sql)
                .bind(connection_id)
                .bind(resource)
                .bind(external_id)
                .bind(scope.tenant())
                .fetch_optional(p)
                .await?;
            Ok(row.as_ref().map(Desired::from_row).transpose()?)
        })
    }

    /// Notes that `hash` is about to be sent to the provider. Until the outcome is recorded, a
    /// later attempt cannot know whether the provider applied it (the worker may die in
    /// between), so it reads the remote object before writing again.
    pub async fn mark_publish_attempt(&self, key: ObjectKey<'_>, hash: &str) -> Result<()> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE desired_state SET attempted_hash = $1 WHERE connection_id = $2 AND resource = $3 AND external_id = $4")
                .bind(hash)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .execute(&mut *tx)
                .await?;
            // After the row's update: see "Lock order" in the module docs.
            crate::queue::fence::check_fence!(self, self.fence, tx);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records why publishing `hash` failed, unless the desired state has moved on since.
    pub async fn record_publish_error(
        &self,
        key: ObjectKey<'_>,
        hash: &str,
        error: &str,
    ) -> Result<()> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            sqlx::query("UPDATE desired_state SET last_error = $1 WHERE connection_id = $2 AND resource = $3 AND external_id = $4 AND hash = $5")
                .bind(error)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            // After the row's update: see "Lock order" in the module docs.
            crate::queue::fence::check_fence!(self, self.fence, tx);
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records that the provider now holds `data` (hashing to `hash`) and snapshots it (source
    /// `publish`), in one transaction. Returns the snapshot, or `None` when the object's
    /// desired state was removed meanwhile.
    pub async fn mark_published(
        &self,
        key: ObjectKey<'_>,
        data: &Value,
        hash: &str,
        diff: DiffFn<'_>,
        now: Millis,
    ) -> Result<Option<Snapshot>> {
        let backend = self.backend();
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let updated = sqlx::query(
                "UPDATE desired_state SET last_published_hash = $1, published_at = $2,
                        attempted_hash = CASE WHEN attempted_hash = $1 THEN NULL ELSE attempted_hash END,
                        last_error = CASE WHEN hash = $1 THEN NULL ELSE last_error END
                 WHERE connection_id = $3 AND resource = $4 AND external_id = $5")
                .bind(hash)
                .bind(now)
                .bind(key.connection_id)
                .bind(key.resource)
                .bind(key.external_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            // After the row's update: see "Lock order" in the module docs.
            crate::queue::fence::check_fence!(self, self.fence, tx);
            if updated == 0 {
                return Ok(None);
            }
            let snap = snapshots::snapshot_on!(tx, backend, key, data, hash, "publish", diff, now)?;
            tx.commit().await?;
            Ok(Some(snap))
        })
    }
}
