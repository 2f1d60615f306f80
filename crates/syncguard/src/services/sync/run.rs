//! The `sync.resource` job: one run of one (connection, resource), page by page.
//!
//! 1. The connection must be active (a paused or disconnected one is skipped).
//! 2. [`plan_run`] decides: resume the run in progress, or start a new one (backfill,
//!    incremental from the cursor, or full). The run's parameters are stored before its first
//!    call, so a crash at any point resumes the same run.
//! 3. Each page is committed with its records and the next page token in one transaction
//!    ([`Store::commit_sync_page`]) while the page after it is already being fetched: the
//!    commit and the next call overlap, so the rate limit, not the database, sets the pace.
//! 4. Between pages the run stops early if the connection stopped being active, its job was
//!    cancelled or taken by another worker, or a disconnect on this node cancelled it. A paused
//!    connection keeps its run, which resumes where it stopped.
//!
//! A failed call is recorded on the checkpoint (`last_error`) and in the outcome counts, and
//! goes to the queue with its class: transient errors and 429s retry (resuming at the failed
//! page), an open circuit waits for the probe, permanent errors dead-letter. A 401 or 403 also
//! moves the connection to `error`, which stops its scheduling until someone fixes it.
//!
//! [`Store::commit_sync_page`]: syncguard_store::Store::commit_sync_page

use super::plan::{plan_run, SyncSettings};
use super::{SyncPayload, SYNC_KIND};
use crate::engine::handler::{JobContext, JobError};
use crate::provider::definition::ResourceDef;
use crate::provider::{Page, ProviderClient, ProviderError};
use crate::services::Services;
use serde_json::json;
use syncguard_core::class::ErrorClass;
use syncguard_core::connection::ConnectionStatus;
use syncguard_core::Millis;
use syncguard_store::audit::NewAudit;
use syncguard_store::checkpoints::{CheckpointKey, PageCommit, PageCounts, RunStart, SyncPage};
use syncguard_store::connections::Connection;
use syncguard_store::queue::JobState;
use syncguard_store::records::{RecordKey, RecordWrite};
use syncguard_store::{Scope, StoreError};
use tracing::Instrument;

/// How a run ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Completed,
    /// Stopped at a page boundary (paused, disconnected, cancelled, or superseded).
    Stopped(&'static str),
}

/// The handler of [`SYNC_KIND`].
pub async fn run(ctx: JobContext<Services>) -> Result<(), JobError> {
    let p: SyncPayload = serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| JobError::permanent(format!("invalid {SYNC_KIND} payload: {e}")))?;
    let span = tracing::info_span!("sync", connection_id = %p.connection_id, resource = %p.resource,
        job_id = ctx.job.id, reason = ?p.reason);
    run_job(ctx, p).instrument(span).await
}

async fn run_job(ctx: JobContext<Services>, p: SyncPayload) -> Result<(), JobError> {
    let JobContext {
        job, app, store, ..
    } = ctx;
    let Some(conn) = app
        .store
        .get_connection(&Scope::All, None, &p.connection_id)
        .await?
    else {
        tracing::info!("connection no longer exists; nothing to sync");
        return Ok(());
    };
    if conn.status != ConnectionStatus::Active {
        tracing::info!(status = %conn.status, "connection is not active; sync skipped");
        return Ok(());
    }
    let guard = app.sync.track(&conn.id, job.id);
    let run = Run {
        app: &app,
        store: &store,
        conn: &conn,
        resource: &p.resource,
        job_id: job.id,
        cancel: &guard.token,
    };
    let provider = conn.provider.clone();
    let outcome = run.execute(p.full).await;
    let label = match &outcome {
        Ok(Ended::Completed) => "completed",
        Ok(Ended::Stopped(why)) => {
            tracing::info!(why, "sync stopped at a page boundary");
            "stopped"
        }
        Err(_) => "failed",
    };
    app.sync
        .metrics
        .runs
        .with_label_values(&[&provider, label])
        .inc();
    outcome.map(|_| ())
}

/// One run in progress.
struct Run<'a> {
    app: &'a Services,
    /// Fenced by the job's lease token: the run's writes commit only while it holds the job.
    store: &'a syncguard_store::Store,
    conn: &'a Connection,
    resource: &'a str,
    job_id: i64,
    cancel: &'a tokio_util::sync::CancellationToken,
}

impl Run<'_> {
    fn key(&self) -> CheckpointKey<'_> {
        CheckpointKey {
            tenant_id: &self.conn.tenant_id,
            connection_id: &self.conn.id,
            resource: self.resource,
        }
    }

    async fn execute(&self, full: bool) -> Result<Ended, JobError> {
        let app = self.app;
        let def = app.providers.get(&self.conn.provider).ok_or_else(|| {
            JobError::permanent(format!("unknown provider `{}`", self.conn.provider))
        })?;
        let settings =
            SyncSettings::from_config(&self.conn.config, def).map_err(JobError::permanent)?;
        let client = match app.providers.client(app, self.conn).await {
            Ok(c) => c,
            Err(e) => return Err(self.failed(e).await),
        };
        let res = match client.resource(self.resource) {
            Ok(r) => r.clone(),
            Err(e) => return Err(self.failed(e).await),
        };
        let filterable = res.since_param.is_some();
        let now = app.clock.now_ms();
        let checkpoint = app
            .store
            .get_checkpoint(&self.conn.id, self.resource)
            .await?;
        let start = plan_run(checkpoint.as_ref(), &settings, full, filterable, now);
        let cp = self.store.begin_sync_run(self.key(), start, now).await?;
        let run = cp.run.clone().expect("a run was begun or is in progress");
        let resumed = start.is_none();
        let since = run
            .since
            .map(crate::clock::rfc3339)
            .unwrap_or_else(|| "(everything)".into());
        tracing::info!(since = %since, backfill = run.backfill, full = run.full, resumed,
            pages_done = run.pages, "sync run starts");
        let mut cursor = RunCursor {
            started_at: run.started_at,
            since: run.since,
            token: run.page_token.clone(),
        };
        let first = match self.fetch(&client, &cursor).await {
            Ok(page) => page,
            Err(e) if resumed && cursor.token.is_some() && e.class == ErrorClass::Permanent => {
                // The provider no longer knows the stored page token: list again from the
                // same `since`, as a new run, so nothing between it and now is skipped.
                tracing::warn!(error = %e.message, "resumed page token refused; restarting the listing");
                let restart = RunStart {
                    started_at: app.clock.now_ms(),
                    since: run.since,
                    backfill: run.backfill,
                    full: run.full,
                };
                self.store
                    .begin_sync_run(self.key(), Some(restart), restart.started_at)
                    .await?;
                cursor = RunCursor {
                    started_at: restart.started_at,
                    since: restart.since,
                    token: None,
                };
                self.fetch(&client, &cursor)
                    .await
                    .map_err(|e| e.into_job())?
            }
            Err(e) => return Err(e.into_job()),
        };
        self.pages(&client, &res, cursor, first).await
    }

    /// Commits `page` and every page after it, each commit overlapping the next fetch.
    async fn pages(
        &self,
        client: &ProviderClient,
        res: &ResourceDef,
        mut cursor: RunCursor,
        mut page: Page,
    ) -> Result<Ended, JobError> {
        loop {
            let next = page.next.clone();
            let commit = self.commit(res, &cursor, &page, next.as_deref());
            let prefetch = async {
                match &next {
                    Some(token) => {
                        let at = RunCursor {
                            token: Some(token.clone()),
                            ..cursor.clone()
                        };
                        Some(self.fetch(client, &at).await)
                    }
                    None => None,
                }
            };
            let (committed, fetched) = tokio::select! {
                both = async { tokio::join!(commit, prefetch) } => both,
                _ = self.cancel.cancelled() => return Ok(Ended::Stopped("cancelled by a disconnect")),
            };
            match committed? {
                PageCommit::Committed { done: true, .. } => return Ok(Ended::Completed),
                PageCommit::Committed { .. } => {}
                PageCommit::Disconnected => return Ok(Ended::Stopped("connection disconnected")),
                PageCommit::Superseded => return Ok(Ended::Stopped("another worker owns the run")),
            }
            if let Some(why) = self.should_stop().await {
                return Ok(Ended::Stopped(why));
            }
            page = fetched
                .expect("a next page was fetched")
                .map_err(|e| e.into_job())?;
            cursor.token = next;
        }
    }

    /// Fetches one page; a failure is recorded before it is returned.
    async fn fetch(&self, client: &ProviderClient, at: &RunCursor) -> Result<Page, Failure> {
        match client
            .list_page(self.resource, at.token.as_deref(), at.since)
            .await
        {
            Ok(page) => Ok(page),
            Err(e) => Err(Failure {
                class: e.class,
                message: e.message.clone(),
                job: self.failed(e).await,
            }),
        }
    }

    /// Turns a page into record writes and commits them with the checkpoint.
    async fn commit(
        &self,
        res: &ResourceDef,
        at: &RunCursor,
        page: &Page,
        next: Option<&str>,
    ) -> Result<PageCommit, JobError> {
        let app = self.app;
        let provider = self.conn.provider.as_str();
        let items = &app.sync.metrics.items;
        let mut ids = Vec::with_capacity(page.items.len());
        let mut no_id = 0u64;
        for item in &page.items {
            match res.id_of(item) {
                Some(id) => ids.push((id, item)),
                None => no_id += 1,
            }
        }
        if no_id > 0 {
            // Nothing can be stored without a key; the count is what can be reported.
            tracing::warn!(items = no_id, pointer = %res.id, "items without an id were not stored");
            items.with_label_values(&[provider, "no_id"]).inc_by(no_id);
        }
        let mut writes = Vec::with_capacity(ids.len());
        let (mut max_updated, mut missing) = (None::<Millis>, 0i64);
        for (id, item) in &ids {
            let updated = res.updated_at_of(item);
            if res.updated_at.is_some() && updated.is_none() {
                missing += 1;
            }
            max_updated = max_updated.max(updated);
            let key = RecordKey {
                tenant_id: &self.conn.tenant_id,
                connection_id: &self.conn.id,
                resource: self.resource,
                external_id: id,
            };
            let write = RecordWrite::Upsert {
                data: (*item).clone(),
                remote_updated_at: updated,
            };
            writes.push((key, write));
        }
        if missing > 0 {
            // Stored all the same (SPEC §3.4); counted on the checkpoint and here.
            tracing::warn!(items = missing, pointer = ?res.updated_at, "items without a readable cursor field stored");
            items
                .with_label_values(&[provider, "missing_cursor"])
                .inc_by(missing as u64);
        }
        let commit = SyncPage {
            key: self.key(),
            run_started_at: at.started_at,
            page_token: at.token.as_deref(),
            next_token: next,
            writes: &writes,
            max_updated_at: max_updated,
            missing_cursor: missing,
        };
        let out = self
            .store
            .commit_sync_page(&commit, app.clock.now_ms())
            .await?;
        if let PageCommit::Committed { counts, .. } = out {
            count(app, provider, counts);
        }
        Ok(out)
    }

    /// Why the run should stop at this page boundary, if it should.
    async fn should_stop(&self) -> Option<&'static str> {
        if self.cancel.is_cancelled() {
            return Some("cancelled by a disconnect");
        }
        let store = &self.app.store;
        match store.get_connection(&Scope::All, None, &self.conn.id).await {
            Ok(Some(c)) if c.status == ConnectionStatus::Active => {}
            Ok(_) => return Some("connection no longer active"),
            Err(_) => {} // the next commit finds out
        }
        // The run's own lease, not merely this node's: a rescued job claimed again by this
        // very node carries a new token, and the run holding the old one must stop.
        let fence = self.store.fence();
        match store.get_job(&Scope::All, None, self.job_id).await {
            Ok(Some(j))
                if j.state == JobState::Running
                    && match fence {
                        Some(f) => j.lease_id == Some(f.lease_id),
                        None => j.locked_by.as_deref() == Some(&self.app.worker_id),
                    } =>
            {
                None
            }
            Ok(_) => Some("the job was cancelled or taken over"),
            Err(_) => None,
        }
    }

    /// Records a failed call (checkpoint and outcome counts) and returns it for the queue. A
    /// refused credential also puts the connection in `error`.
    async fn failed(&self, e: ProviderError) -> JobError {
        let app = self.app;
        let now = app.clock.now_ms();
        tracing::warn!(class = %e.class, status = ?e.status, error = %e.message, "sync call failed");
        if e.class != ErrorClass::CircuitOpen {
            if let Err(se) = self
                .store
                .record_sync_failure(self.key(), &e.message, now)
                .await
            {
                tracing::warn!(error = %se, "recording the sync failure failed");
            }
        }
        if e.class == ErrorClass::Permanent && matches!(e.status, Some(401 | 403)) {
            let reason = format!("credentials refused: {}", e.message);
            if let Err(se) =
                set_status(app, self.store, self.conn, ConnectionStatus::Error, &reason).await
            {
                tracing::warn!(error = %se, "marking the connection as failed did not work");
            }
        }
        e.into()
    }
}

/// Where in its run a fetch is.
#[derive(Debug, Clone)]
struct RunCursor {
    started_at: Millis,
    since: Option<Millis>,
    token: Option<String>,
}

/// A failed fetch, already recorded.
struct Failure {
    class: ErrorClass,
    message: String,
    job: JobError,
}

impl Failure {
    fn into_job(self) -> JobError {
        self.job
    }
}

fn count(app: &Services, provider: &str, c: PageCounts) {
    let m = &app.sync.metrics;
    m.pages.with_label_values(&[provider]).inc();
    for (outcome, n) in [
        ("created", c.created),
        ("updated", c.updated + c.deleted),
        ("unchanged", c.unchanged),
    ] {
        m.items.with_label_values(&[provider, outcome]).inc_by(n);
    }
}

/// Changes a connection's status as the system (not a caller), recorded and audited. `store`
/// is the run's fenced store: a run that lost its lease changes nothing.
pub async fn set_status(
    app: &Services,
    store: &syncguard_store::Store,
    conn: &Connection,
    status: ConnectionStatus,
    reason: &str,
) -> Result<(), StoreError> {
    let now = app.clock.now_ms();
    let from = store
        .set_connection_status(&conn.id, status.as_str(), reason, now)
        .await?;
    if from != status {
        tracing::warn!(connection_id = %conn.id, from = %from, to = status.as_str(), reason, "connection status changed");
        app.store
            .append_audit(
                NewAudit {
                    tenant_id: Some(&conn.tenant_id),
                    actor: "system",
                    action: "connection.status_changed",
                    connection_id: Some(&conn.id),
                    target: Some(&conn.id),
                    params: json!({ "from": from, "to": status, "reason": reason }),
                    request_id: None,
                },
                now,
            )
            .await?;
    }
    Ok(())
}
