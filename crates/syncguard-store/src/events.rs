//! Inbound webhook events (SPEC §1 "inbound event", §3.2).
//!
//! An event is one received delivery: its raw body, its headers (credentials already removed by
//! the gateway), the provider's delivery id and event type, a content key, how its signature was
//! checked, and a status: `received → processed`, `failed` (a run failed and will retry), `dead`,
//! or `duplicate` (never processed).
//!
//! # Acknowledgement
//! [`Store::ingest_events`] writes a batch of deliveries in **one transaction**: for each one the
//! event row, its content-key claim and its processing job (or, for a duplicate, a row saying
//! whose duplicate it is). The gateway answers a delivery only after that commit, so an
//! acknowledged delivery is on disk with the job that will process it. Batching is what makes
//! this fast: a batch shares one commit and one fsync.
//!
//! # Deduplication
//! - By delivery id: a partial unique index admits one non-duplicate event per
//!   (connection, delivery id); the insert is `ON CONFLICT DO NOTHING`, so concurrent
//!   transactions (other batches, other nodes) settle the race in the database.
//! - By content key: `inbound_content_keys` maps each key to the first event seen with it; a
//!   claim older than the window is taken over by the next event with that key. The claim is
//!   one upsert, so it is race-free the same way.

use crate::page::{decode_cursor, Page, PageRequest};
use crate::queue::{enqueue_on, NewJob};
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::{bind_all, Bind, Conditions};
use crate::{on_reader, on_writer, Millis, Result, Scope, Store};
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

mod ingest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored and acknowledged; its processing job has not finished yet.
    Received,
    Processed,
    /// The last processing run failed; the job will retry.
    Failed,
    /// Processing gave up (the job is a dead letter).
    Dead,
    /// A repeat of an earlier event, kept for the record and never processed.
    Duplicate,
}

impl EventStatus {
    pub const ALL: [EventStatus; 5] = [
        EventStatus::Received,
        EventStatus::Processed,
        EventStatus::Failed,
        EventStatus::Dead,
        EventStatus::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Received => "received",
            EventStatus::Processed => "processed",
            EventStatus::Failed => "failed",
            EventStatus::Dead => "dead",
            EventStatus::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for EventStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("unknown event status `{s}`; expected received, processed, failed, dead or duplicate")
            })
    }
}

/// An event as listed: everything but the headers and the body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundEvent {
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub provider: String,
    pub delivery_id: Option<String>,
    pub event_type: Option<String>,
    pub content_key: String,
    pub status: EventStatus,
    /// For a duplicate: the event it repeats.
    pub duplicate_of: Option<String>,
    /// How the delivery was authenticated, e.g. `standard:verified` or `unsigned`.
    pub signature: String,
    pub correlation_id: String,
    /// Processing runs so far.
    pub attempts: i64,
    /// What the last processing run did or why it failed.
    pub note: Option<String>,
    pub received_at: Millis,
    pub processed_at: Option<Millis>,
    pub updated_at: Millis,
}

const EVENT_COLUMNS: &str = "id, tenant_id, connection_id, provider, delivery_id, event_type, content_key, status, duplicate_of, signature, correlation_id, attempts, note, received_at, processed_at, updated_at";

impl FromDbRow for InboundEvent {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(InboundEvent {
            id: r.string("id")?,
            tenant_id: r.string("tenant_id")?,
            connection_id: r.string("connection_id")?,
            provider: r.string("provider")?,
            delivery_id: r.opt_string("delivery_id")?,
            event_type: r.opt_string("event_type")?,
            content_key: r.string("content_key")?,
            status: r
                .string("status")?
                .parse()
                .map_err(|e: String| sqlx::Error::Decode(e.into()))?,
            duplicate_of: r.opt_string("duplicate_of")?,
            signature: r.string("signature")?,
            correlation_id: r.string("correlation_id")?,
            attempts: r.i64("attempts")?,
            note: r.opt_string("note")?,
            received_at: r.i64("received_at")?,
            processed_at: r.opt_i64("processed_at")?,
            updated_at: r.i64("updated_at")?,
        })
    }
}

/// An event with what the list leaves out.
#[derive(Debug, Clone, PartialEq)]
pub struct EventDetail {
    pub event: InboundEvent,
    pub headers: Vec<(String, String)>,
    /// The raw bytes exactly as received.
    pub body: Vec<u8>,
    /// Every job enqueued for or run on this event, oldest first.
    pub job_ids: Vec<i64>,
}

/// An event row read with its headers and body; its jobs are read separately.
fn detail_from_row(r: &impl DbRow) -> RowResult<EventDetail> {
    Ok(EventDetail {
        event: InboundEvent::from_row(r)?,
        headers: serde_json::from_str(&r.string("headers")?).unwrap_or_default(),
        body: r.opt_bytes("body")?.unwrap_or_default(),
        job_ids: Vec::new(),
    })
}

/// How one processing run of an event ended.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRun {
    pub event_id: String,
    /// The job that ran.
    pub job_id: i64,
    pub status: EventStatus,
    /// What the run did, or why it failed.
    pub note: Option<String>,
    /// The run's lease token: when set, the outcome is recorded only while it holds.
    pub fence: Option<crate::queue::Fence>,
}

/// A verified delivery to store.
#[derive(Debug, Clone)]
pub struct NewInboundEvent {
    /// Chosen by the caller so that the processing job's payload can name it.
    pub id: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub provider: String,
    pub delivery_id: Option<String>,
    pub event_type: Option<String>,
    pub content_key: String,
    pub signature: String,
    pub correlation_id: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub received_at: Millis,
    /// Enqueued in the same transaction, unless the event turns out to be a duplicate. Its
    /// unique key must be set (the gateway uses `webhook.process:{event id}`).
    pub job: NewJob,
}

/// Which rule found a duplicate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateBy {
    DeliveryId,
    ContentKey,
}

/// What became of one delivery of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// A new event, with the job that will process it.
    Accepted { event_id: String, job_id: i64 },
    /// A repeat of `original_id`; stored as the duplicate row `stored_as`, no job.
    Duplicate {
        original_id: String,
        stored_as: String,
        by: DuplicateBy,
    },
}

/// Filters of `GET /v1/events` (and of filter replays).
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub connection_id: Option<String>,
    pub status: Option<EventStatus>,
    pub event_type: Option<String>,
    /// Received at or after.
    pub since: Option<Millis>,
    /// The caller's key is limited to these connections: other events do not exist for it.
    pub visible_connections: Option<Vec<String>>,
}

/// What `POST /v1/events/replay` did (or, dry, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventReplay {
    pub matched: u64,
    pub replayed: u64,
    pub event_ids: Vec<String>,
    pub job_ids: Vec<i64>,
}

/// At most this many events are replayed by one request.
pub const REPLAY_MAX: i64 = 10_000;

/// Which events `POST /v1/events/replay` processes again, and how.
#[derive(Debug, Clone, Default)]
pub struct EventReplayRequest {
    /// Explicit ids; otherwise every event matching `filter`.
    pub ids: Option<Vec<String>>,
    pub filter: EventFilter,
    /// Report what would be replayed without replaying.
    pub dry_run: bool,
    /// Spread the re-runs this many milliseconds apart.
    pub stagger_ms: i64,
}

impl Store {
    fn event_conditions(&self, scope: &Scope, f: &EventFilter) -> Conditions {
        let mut c = Conditions::default();
        if let Some(t) = scope.tenant() {
            c.and("tenant_id = ?", vec![Bind::Str(t.to_string())]);
        }
        if let Some(list) = &f.visible_connections {
            c.and_in_list(self.backend(), "connection_id", list);
        }
        if let Some(conn) = &f.connection_id {
            c.and("connection_id = ?", vec![Bind::Str(conn.clone())]);
        }
        if let Some(s) = f.status {
            c.and("status = ?", vec![Bind::Str(s.as_str().into())]);
        }
        if let Some(t) = &f.event_type {
            c.and("event_type = ?", vec![Bind::Str(t.clone())]);
        }
        if let Some(since) = f.since {
            c.and("received_at >= ?", vec![Bind::I64(since)]);
        }
        c
    }

    /// Events newest first (ids are time-ordered).
    pub async fn list_events(
        &self,
        scope: &Scope,
        f: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<InboundEvent>> {
        let mut c = self.event_conditions(scope, f);
        if let Some(before) = page.after.as_deref().and_then(decode_cursor) {
            c.and("id < ?", vec![Bind::Str(before)]);
        }
        let limit = c.push_bind(Bind::I64(page.limit + 1));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM inbound_events{} ORDER BY id DESC LIMIT {limit}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(p).await?;
            let items = rows.iter().map(InboundEvent::from_row).collect::<RowResult<Vec<_>>>()?;
            Ok(Page::from_overfetch(items, page.limit, |e| e.id.clone()))
        })
    }

    /// One event with headers, body and jobs, if `scope` (and the key's connection list) may
    /// see it.
    pub async fn get_event(
        &self,
        scope: &Scope,
        visible: Option<&[String]>,
        id: &str,
    ) -> Result<Option<EventDetail>> {
        let f = EventFilter {
            visible_connections: visible.map(|v| v.to_vec()),
            ..Default::default()
        };
        let mut c = self.event_conditions(scope, &f);
        c.and("id = ?", vec![Bind::Str(id.to_string())]);
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, headers, body FROM inbound_events{}",
            c.where_clause()
        );
        on_reader!(self, p => {
            let Some(row) = bind_all!(sqlx::query(&sql), &c.binds).fetch_optional(p).await? else {
                return Ok(None);
            };
            let mut detail = detail_from_row(&row)?;
            let jobs: Vec<(i64,)> = sqlx::query_as("SELECT job_id FROM inbound_event_jobs WHERE event_id = $1 ORDER BY job_id")
                .bind(id)
                .fetch_all(p)
                .await?;
            detail.job_ids = jobs.into_iter().map(|(j,)| j).collect();
            Ok(Some(detail))
        })
    }

    /// An event and its body, for a processing run (read-only: what the run did is recorded
    /// afterwards by [`Store::record_event_runs`]). `None` when the event does not exist.
    pub async fn event_for_processing(
        &self,
        event_id: &str,
    ) -> Result<Option<(InboundEvent, Vec<u8>)>> {
        let sql =
            format!("SELECT {EVENT_COLUMNS}, headers, body FROM inbound_events WHERE id = $1");
        on_reader!(self, p => {
            let row = sqlx::query(&sql).bind(event_id).fetch_optional(p).await?;
            Ok(row.as_ref().map(detail_from_row).transpose()?.map(|d| (d.event, d.body)))
        })
    }

    /// Records how processing runs ended, all in one transaction: each event's new status and
    /// note, one more attempt, and the link to the run's job (a dead-letter replay is a job the
    /// gateway did not enqueue itself). A duplicate stays a duplicate. Returns, per run,
    /// whether it was recorded: a run whose fence no longer holds is not (`false`).
    pub async fn record_event_runs(&self, runs: &[EventRun], now: Millis) -> Result<Vec<bool>> {
        let mut recorded = Vec::with_capacity(runs.len());
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            for run in runs {
                if let Some(f) = run.fence {
                    let held: Option<(i64,)> = sqlx::query_as(crate::queue::fence::fence_sql(self.backend()))
                        .bind(f.job_id)
                        .bind(f.lease_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if held.is_none() {
                        recorded.push(false);
                        continue;
                    }
                }
                recorded.push(true);
                let processed_at = (run.status == EventStatus::Processed).then_some(now);
                sqlx::query("UPDATE inbound_events SET status = $1, note = $2, attempts = attempts + 1,
                                    processed_at = COALESCE($3, processed_at), updated_at = $4
                             WHERE id = $5 AND status <> 'duplicate'")
                    .bind(run.status.as_str())
                    .bind(&run.note)
                    .bind(processed_at)
                    .bind(now)
                    .bind(&run.event_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO inbound_event_jobs (event_id, job_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(&run.event_id)
                    .bind(run.job_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(recorded)
    }

    /// Processes events again: the requested ids (within `scope`), or every event matching the
    /// filter, oldest first, at most [`REPLAY_MAX`]. Duplicates are never replayed. Each
    /// replayed event goes back to `received` with a fresh job from `make_job`, run
    /// `stagger_ms` after the previous one; an event whose job is still waiting keeps that job
    /// (its unique key) and is not counted as replayed. A dry run writes nothing.
    pub async fn replay_events(
        &self,
        scope: &Scope,
        req: &EventReplayRequest,
        make_job: &(dyn Fn(&InboundEvent) -> NewJob + Send + Sync),
        now: Millis,
    ) -> Result<EventReplay> {
        self.replay_events_audited(scope, req, make_job, None, now)
            .await
    }

    /// As [`Store::replay_events`], writing `audit` (with `matched`, `replayed`, `event_ids`
    /// and `job_ids`) in the replay's transaction, dry runs included.
    pub async fn replay_events_audited(
        &self,
        scope: &Scope,
        req: &EventReplayRequest,
        make_job: &(dyn Fn(&InboundEvent) -> NewJob + Send + Sync),
        audit: Option<crate::audit::NewAudit<'_>>,
        now: Millis,
    ) -> Result<EventReplay> {
        let (dry_run, stagger_ms) = (req.dry_run, req.stagger_ms);
        let mut c = self.event_conditions(scope, &req.filter);
        c.and("status <> 'duplicate'", vec![]);
        if let Some(ids) = &req.ids {
            c.and_in_list(self.backend(), "id", ids);
        }
        let limit = c.push_bind(Bind::I64(REPLAY_MAX));
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM inbound_events{} ORDER BY id LIMIT {limit}",
            c.where_clause()
        );
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let rows = bind_all!(sqlx::query(&sql), &c.binds).fetch_all(&mut *tx).await?;
            let events = rows.iter().map(InboundEvent::from_row).collect::<RowResult<Vec<_>>>()?;
            let mut out = EventReplay { matched: events.len() as u64, replayed: 0, event_ids: Vec::new(), job_ids: Vec::new() };
            if dry_run {
                out.event_ids = events.into_iter().map(|e| e.id).collect();
                if let Some(mut a) = audit {
                    fill_replay_audit(&mut a, &out);
                    crate::audit::insert_audit!(&mut *tx, &a, now)?;
                    tx.commit().await?;
                }
                return Ok(out);
            }
            for (i, event) in events.iter().enumerate() {
                let mut job = make_job(event);
                job.run_at = Some(now + stagger_ms.max(0) * i as i64);
                let enqueued = enqueue_on!(tx, &job, now)?;
                if enqueued.deduplicated {
                    continue;
                }
                sqlx::query("UPDATE inbound_events SET status = 'received', note = NULL, updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(&event.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO inbound_event_jobs (event_id, job_id) VALUES ($1, $2)")
                    .bind(&event.id)
                    .bind(enqueued.id)
                    .execute(&mut *tx)
                    .await?;
                out.replayed += 1;
                out.event_ids.push(event.id.clone());
                out.job_ids.push(enqueued.id);
            }
            if let Some(mut a) = audit {
                fill_replay_audit(&mut a, &out);
                crate::audit::insert_audit!(&mut *tx, &a, now)?;
            }
            tx.commit().await?;
            Ok(out)
        })
    }
}

fn fill_replay_audit(a: &mut crate::audit::NewAudit<'_>, out: &EventReplay) {
    a.add_param("matched", serde_json::json!(out.matched));
    a.add_param("replayed", serde_json::json!(out.replayed));
    a.add_param("event_ids", serde_json::json!(out.event_ids));
    a.add_param("job_ids", serde_json::json!(out.job_ids));
}
