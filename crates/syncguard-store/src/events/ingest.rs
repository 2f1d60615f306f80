//! Storing a batch of deliveries in one transaction, with multi-row statements.
//!
//! A batch costs about five statements whatever its size — insert the events, claim their
//! content keys, insert their jobs, link them, touch the connections — instead of several per
//! delivery: each statement is a round trip (to PostgreSQL, or to the SQLite connection's
//! worker thread) and those round trips, not the SQL, were the cost. Duplicates take a slower
//! path of one statement each; they are the exception.
//!
//! Within a batch, repeats are sorted out before any SQL runs (a multi-row upsert may not touch
//! one row twice): the first delivery of an id, or the first event of a content key, goes to
//! the database and decides for the later ones.

use super::{DuplicateBy, EventStatus, Ingested, NewInboundEvent};
use crate::{on_writer, Backend, Millis, Result, Store, StoreError};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

/// Rows per multi-row statement: 15 values each stays far below both engines' bind limits
/// (32 766 on SQLite, 65 535 on PostgreSQL).
const ROWS_PER_STATEMENT: usize = 400;

/// A value bound to a statement built at run time.
enum Val<'a> {
    Str(&'a str),
    OptStr(Option<&'a str>),
    I64(i64),
    Bytes(&'a [u8]),
}

macro_rules! bind_vals {
    ($q:expr, $vals:expr) => {{
        let mut q = $q;
        for v in $vals {
            q = match v {
                Val::Str(s) => q.bind(*s),
                Val::OptStr(s) => q.bind(*s),
                Val::I64(i) => q.bind(*i),
                Val::Bytes(b) => q.bind(*b),
            };
        }
        q
    }};
}

/// Appends the placeholder of the `n`th value (1-based). On SQLite an anonymous `?`: for every
/// named or numbered parameter (`$3`, `?3`) sqlx asks SQLite for its name, which SQLite finds by
/// a linear scan, so binding a statement of thousands of values would take quadratic time.
/// Values are always bound in order, so anonymous placeholders lose nothing.
fn push_placeholder(sql: &mut String, backend: Backend, n: usize) {
    match backend {
        Backend::Sqlite => sql.push('?'),
        Backend::Postgres => {
            let _ = write!(sql, "${n}");
        }
    }
}

/// `{head} VALUES (…), (…) {tail}`: one parenthesised row per item of `rows`.
struct Stmt<'a> {
    sql: String,
    vals: Vec<Val<'a>>,
}

impl<'a> Stmt<'a> {
    fn multi_row(
        backend: Backend,
        head: &str,
        rows: impl Iterator<Item = Vec<Val<'a>>>,
        tail: &str,
    ) -> Stmt<'a> {
        let mut sql = format!("{head} VALUES ");
        let mut vals = Vec::new();
        for (r, row) in rows.enumerate() {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..row.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                push_placeholder(&mut sql, backend, vals.len() + c + 1);
            }
            sql.push(')');
            vals.extend(row);
        }
        sql.push(' ');
        sql.push_str(tail);
        Stmt { sql, vals }
    }
}

/// One event row to insert: the delivery, its headers as JSON, its status and what it repeats.
type EventRow<'a> = (&'a NewInboundEvent, &'a str, EventStatus, Option<&'a str>);

fn insert_events<'a>(backend: Backend, rows: impl Iterator<Item = EventRow<'a>>) -> Stmt<'a> {
    Stmt::multi_row(
        backend,
        "INSERT INTO inbound_events (id, tenant_id, connection_id, provider, delivery_id, event_type, content_key, signature,
                                     correlation_id, headers, body, received_at, updated_at, status, duplicate_of)",
        rows.map(|(e, headers, status, duplicate_of)| {
            vec![
                Val::Str(&e.id),
                Val::Str(&e.tenant_id),
                Val::Str(&e.connection_id),
                Val::Str(&e.provider),
                Val::OptStr(e.delivery_id.as_deref()),
                Val::OptStr(e.event_type.as_deref()),
                Val::Str(&e.content_key),
                Val::Str(&e.signature),
                Val::Str(&e.correlation_id),
                Val::Str(headers),
                Val::Bytes(&e.body),
                Val::I64(e.received_at),
                Val::I64(e.received_at),
                Val::Str(status.as_str()),
                Val::OptStr(duplicate_of),
            ]
        }),
        // A stored event with the same (connection, delivery id) makes the row a no-op.
        "ON CONFLICT DO NOTHING RETURNING id",
    )
}

/// Claims content keys, unless a claim younger than `cutoff` holds them; returns the keys won.
fn claim_content_keys<'a>(
    backend: Backend,
    events: impl Iterator<Item = &'a NewInboundEvent>,
    cutoff: Millis,
) -> Stmt<'a> {
    let mut stmt = Stmt::multi_row(
        backend,
        "INSERT INTO inbound_content_keys (content_key, event_id, seen_at)",
        events.map(|e| {
            vec![
                Val::Str(&e.content_key),
                Val::Str(&e.id),
                Val::I64(e.received_at),
            ]
        }),
        "",
    );
    stmt.sql.push_str(
        "ON CONFLICT (content_key) DO UPDATE SET event_id = excluded.event_id, seen_at = excluded.seen_at
         WHERE inbound_content_keys.seen_at < ",
    );
    push_placeholder(&mut stmt.sql, backend, stmt.vals.len() + 1);
    stmt.sql.push_str(" RETURNING content_key");
    stmt.vals.push(Val::I64(cutoff));
    stmt
}

/// The processing jobs, each with its payload as text.
fn insert_jobs<'a>(
    backend: Backend,
    events: impl Iterator<Item = (&'a NewInboundEvent, &'a str)>,
) -> Stmt<'a> {
    // A fresh event cannot have an active job yet, so the unique-key lookup of an ordinary
    // enqueue has nothing to find and is skipped.
    Stmt::multi_row(
        backend,
        "INSERT INTO jobs (tenant_id, connection_id, kind, payload, state, priority, attempts, max_attempts, run_at,
                           created_at, updated_at, unique_key, correlation_id)",
        events.map(|(e, payload)| {
            let j = &e.job;
            vec![
                Val::OptStr(j.tenant_id.as_deref()),
                Val::OptStr(j.connection_id.as_deref()),
                Val::Str(&j.kind),
                Val::Str(payload),
                Val::Str("available"),
                Val::I64(j.priority),
                Val::I64(0),
                Val::I64(j.max_attempts),
                Val::I64(j.run_at.unwrap_or(e.received_at)),
                Val::I64(e.received_at),
                Val::I64(e.received_at),
                Val::OptStr(j.unique_key.as_deref()),
                Val::OptStr(j.correlation_id.as_deref()),
            ]
        }),
        "RETURNING id, unique_key",
    )
}

fn insert_links<'a>(backend: Backend, links: impl Iterator<Item = (&'a str, i64)>) -> Stmt<'a> {
    Stmt::multi_row(
        backend,
        "INSERT INTO inbound_event_jobs (event_id, job_id)",
        links.map(|(e, j)| vec![Val::Str(e), Val::I64(j)]),
        "ON CONFLICT DO NOTHING",
    )
}

/// Why one attempt at a batch failed: kept as the driver's error where it is one, so that a
/// deadlock can be told apart and the batch run again.
enum IngestError {
    Sql(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for IngestError {
    fn from(e: sqlx::Error) -> Self {
        IngestError::Sql(e)
    }
}

impl IngestError {
    /// PostgreSQL aborts one of two transactions that wait on each other (two batches, maybe
    /// on two nodes, holding the same keys in opposite orders); running the batch again is
    /// then correct.
    fn is_retryable(&self) -> bool {
        match self {
            IngestError::Sql(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c == "40P01" || c == "40001"),
            IngestError::Store(_) => false,
        }
    }

    fn into_store(self) -> StoreError {
        match self {
            IngestError::Sql(e) => e.into(),
            IngestError::Store(e) => e,
        }
    }
}

impl Store {
    /// Stores a batch of verified deliveries in one transaction (see the module docs of
    /// [`super`]) and returns one outcome per delivery, in order. Content keys claimed before
    /// `now - window_ms` no longer make duplicates. Every job must carry a unique key: it is
    /// how the batch insert maps jobs back to their events.
    pub async fn ingest_events(
        &self,
        batch: &[NewInboundEvent],
        window_ms: i64,
        now: Millis,
    ) -> Result<Vec<Ingested>> {
        if batch.iter().any(|e| e.job.unique_key.is_none()) {
            return Err(StoreError::Other(
                "every ingest job needs a unique key".into(),
            ));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.ingest_once(batch, now - window_ms).await {
                Err(e) if attempt < 3 && e.is_retryable() => {
                    tracing::debug!(attempt, "webhook batch met a deadlock; running it again");
                }
                other => return other.map_err(IngestError::into_store),
            }
        }
    }

    async fn ingest_once(
        &self,
        batch: &[NewInboundEvent],
        cutoff: Millis,
    ) -> std::result::Result<Vec<Ingested>, IngestError> {
        let n = batch.len();
        let backend = self.backend();
        let headers: Vec<String> = batch
            .iter()
            .map(|e| serde_json::to_string(&e.headers).expect("strings serialize"))
            .collect();
        let payloads: Vec<String> = batch.iter().map(|e| e.job.payload.to_string()).collect();
        // A delivery id seen earlier in the batch: the later copy follows the first.
        let mut first_of: HashMap<(&str, &str), usize> = HashMap::new();
        let mut repeats: Vec<Option<usize>> = vec![None; n];
        for (i, e) in batch.iter().enumerate() {
            if let Some(d) = e.delivery_id.as_deref() {
                match first_of.entry((e.connection_id.as_str(), d)) {
                    Entry::Occupied(o) => repeats[i] = Some(*o.get()),
                    Entry::Vacant(v) => {
                        v.insert(i);
                    }
                }
            }
        }
        // One key order for every batch makes lock waits between concurrent ones rarer.
        let mut fresh: Vec<usize> = (0..n).filter(|&i| repeats[i].is_none()).collect();
        fresh.sort_by(|&a, &b| {
            (&batch[a].connection_id, &batch[a].delivery_id)
                .cmp(&(&batch[b].connection_id, &batch[b].delivery_id))
        });
        // What each delivery turned out to repeat; `None` for a new event.
        let mut original: Vec<Option<(String, DuplicateBy)>> = vec![None; n];
        let mut job_of: HashMap<String, i64> = HashMap::new();
        let mut latest: HashMap<&str, Millis> = HashMap::new();
        for e in batch {
            let at = latest
                .entry(e.connection_id.as_str())
                .or_insert(e.received_at);
            *at = (*at).max(e.received_at);
        }

        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            // 1. The new deliveries, as received events.
            let mut inserted: HashSet<String> = HashSet::new();
            for chunk in fresh.chunks(ROWS_PER_STATEMENT) {
                let stmt = insert_events(backend, chunk.iter().map(|&i| (&batch[i], headers[i].as_str(), EventStatus::Received, None)));
                let rows: Vec<(String,)> = bind_vals!(sqlx::query_as(&stmt.sql), &stmt.vals).fetch_all(&mut *tx).await?;
                inserted.extend(rows.into_iter().map(|(id,)| id));
            }
            for &i in fresh.iter().filter(|&&i| !inserted.contains(&batch[i].id)) {
                let (id,): (String,) = sqlx::query_as(
                    "SELECT id FROM inbound_events WHERE connection_id = $1 AND delivery_id = $2 AND status <> 'duplicate'")
                    .bind(&batch[i].connection_id)
                    .bind(&batch[i].delivery_id)
                    .fetch_one(&mut *tx)
                    .await?;
                original[i] = Some((id, DuplicateBy::DeliveryId));
            }
            let new_events: Vec<usize> = fresh.iter().copied().filter(|&i| original[i].is_none()).collect();

            // 2. Content keys: the batch's first event of each key claims it.
            let mut claimers: Vec<usize> = Vec::new();
            let mut seen_keys: HashSet<&str> = HashSet::new();
            for &i in &new_events {
                if seen_keys.insert(batch[i].content_key.as_str()) {
                    claimers.push(i);
                }
            }
            claimers.sort_by(|&a, &b| batch[a].content_key.cmp(&batch[b].content_key));
            let mut won: HashSet<String> = HashSet::new();
            for chunk in claimers.chunks(ROWS_PER_STATEMENT) {
                let stmt = claim_content_keys(backend, chunk.iter().map(|&i| &batch[i]), cutoff);
                let rows: Vec<(String,)> = bind_vals!(sqlx::query_as(&stmt.sql), &stmt.vals).fetch_all(&mut *tx).await?;
                won.extend(rows.into_iter().map(|(k,)| k));
            }
            let mut holder: HashMap<&str, String> = HashMap::new();
            for &i in &claimers {
                let key = batch[i].content_key.as_str();
                let owner = if won.contains(key) {
                    batch[i].id.clone()
                } else {
                    let (owner,): (String,) = sqlx::query_as("SELECT event_id FROM inbound_content_keys WHERE content_key = $1")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                    owner
                };
                holder.insert(key, owner);
            }
            for &i in &new_events {
                let owner = &holder[batch[i].content_key.as_str()];
                if *owner != batch[i].id {
                    sqlx::query("UPDATE inbound_events SET status = 'duplicate', duplicate_of = $1 WHERE id = $2")
                        .bind(owner)
                        .bind(&batch[i].id)
                        .execute(&mut *tx)
                        .await?;
                    original[i] = Some((owner.clone(), DuplicateBy::ContentKey));
                }
            }

            // 3. Repeats of a delivery id get rows of their own, saying whose repeat they are.
            for i in 0..n {
                if let Some(first) = repeats[i] {
                    let of = original[first].as_ref().map(|(o, _)| o.clone()).unwrap_or_else(|| batch[first].id.clone());
                    original[i] = Some((of, DuplicateBy::DeliveryId));
                }
            }
            let repeated: Vec<usize> = (0..n).filter(|&i| matches!(original[i], Some((_, DuplicateBy::DeliveryId)))).collect();
            for chunk in repeated.chunks(ROWS_PER_STATEMENT) {
                let stmt = insert_events(backend, chunk.iter().map(|&i| {
                    let of = original[i].as_ref().map(|(o, _)| o.as_str());
                    (&batch[i], headers[i].as_str(), EventStatus::Duplicate, of)
                }));
                bind_vals!(sqlx::query_as::<_, (String,)>(&stmt.sql), &stmt.vals).fetch_all(&mut *tx).await?;
            }

            // 4. The accepted events' jobs, linked to them.
            let accepted: Vec<usize> = (0..n).filter(|&i| original[i].is_none()).collect();
            for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
                let stmt = insert_jobs(backend, chunk.iter().map(|&i| (&batch[i], payloads[i].as_str())));
                let rows: Vec<(i64, Option<String>)> = bind_vals!(sqlx::query_as(&stmt.sql), &stmt.vals).fetch_all(&mut *tx).await?;
                job_of.extend(rows.into_iter().filter_map(|(id, key)| Some((key?, id))));
            }
            let job_id = |i: usize| batch[i].job.unique_key.as_ref().and_then(|k| job_of.get(k)).copied();
            for chunk in accepted.chunks(ROWS_PER_STATEMENT) {
                let stmt = insert_links(backend, chunk.iter().filter_map(|&i| Some((batch[i].id.as_str(), job_id(i)?))));
                bind_vals!(sqlx::query(&stmt.sql), &stmt.vals).execute(&mut *tx).await?;
            }

            // 5. The connections' last_webhook_at (webhook lag in health).
            for (connection_id, at) in &latest {
                sqlx::query("UPDATE connections SET last_webhook_at = $1 WHERE id = $2 AND (last_webhook_at IS NULL OR last_webhook_at < $1)")
                    .bind(*at)
                    .bind(*connection_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        (0..n)
            .map(|i| match original[i].take() {
                Some((original_id, by)) => Ok(Ingested::Duplicate {
                    original_id,
                    stored_as: batch[i].id.clone(),
                    by,
                }),
                None => {
                    let job_id = batch[i]
                        .job
                        .unique_key
                        .as_ref()
                        .and_then(|k| job_of.get(k))
                        .copied()
                        .ok_or_else(|| {
                            IngestError::Store(StoreError::Other(
                                "an ingest job was not created".into(),
                            ))
                        })?;
                    Ok(Ingested::Accepted {
                        event_id: batch[i].id.clone(),
                        job_id,
                    })
                }
            })
            .collect()
    }

    /// Drops content-key claims older than `before` (the deduplication window has passed);
    /// returns how many.
    pub async fn purge_content_keys(&self, before: Millis) -> Result<u64> {
        on_writer!(self, p => {
            Ok(sqlx::query("DELETE FROM inbound_content_keys WHERE seen_at < $1")
                .bind(before)
                .execute(p)
                .await?
                .rows_affected())
        })
    }
}
