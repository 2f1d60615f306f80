//! Reads for the health snapshot (SPEC §3.7). One background task makes them every few seconds;
//! no request ever does. They read the queue's and the webhook gateway's tables without writing
//! them, and live beside the checkpoints because sync lag is read from these and the health
//! snapshotter is their only caller.
//!
//! Webhook reads are bounded by event id: ids are `evt_` + a UUIDv7, whose first 48 bits are
//! the receive time in milliseconds, so "events since T" is a range scan of the primary key
//! ([`event_id_floor`]) rather than a scan of the whole table.

use crate::queue::JobState;
use crate::row::{DbRow, FromDbRow, RowResult};
use crate::sql::placeholder;
use crate::{on_reader, Millis, Result, Store};

/// What health needs of one checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointBrief {
    pub connection_id: String,
    pub resource: String,
    pub last_success_at: Option<Millis>,
    pub run_started_at: Option<Millis>,
    pub backfill_done: bool,
    pub last_error: Option<String>,
}

impl FromDbRow for CheckpointBrief {
    fn from_row(r: &impl DbRow) -> RowResult<Self> {
        Ok(CheckpointBrief {
            connection_id: r.string("connection_id")?,
            resource: r.string("resource")?,
            last_success_at: r.opt_i64("last_success_at")?,
            run_started_at: r.opt_i64("run_started_at")?,
            backfill_done: r.bool("backfill_done")?,
            last_error: r.opt_string("last_error")?,
        })
    }
}

/// Successful and failed sync calls of one connection, per window asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct OutcomeWindows {
    pub connection_id: String,
    /// `(ok, failed)` in the same order as the windows asked for.
    pub sums: Vec<(i64, i64)>,
}

/// Jobs of one (tenant, connection) in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueDepth {
    pub tenant_id: Option<String>,
    pub connection_id: Option<String>,
    pub state: JobState,
    pub count: i64,
}

/// Webhook events of one connection still waiting to be processed.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookBacklog {
    pub connection_id: String,
    pub oldest_received_at: Millis,
    /// Where the next backlog read may start.
    pub oldest_event_id: String,
    pub pending: i64,
}

/// The smallest event id received at or after `at` (see the module docs).
pub fn event_id_floor(at: Millis) -> String {
    format!("evt_{:012x}{}", at.max(0), "0".repeat(20))
}

impl Store {
    /// Every checkpoint, briefly.
    pub async fn checkpoint_briefs(&self) -> Result<Vec<CheckpointBrief>> {
        on_reader!(self, p => {
            let rows = sqlx::query(
                "SELECT connection_id, resource, last_success_at, run_started_at, backfill_done, last_error FROM sync_checkpoints")
                .fetch_all(p).await?;
            Ok(rows.iter().map(CheckpointBrief::from_row).collect::<RowResult<Vec<_>>>()?)
        })
    }

    /// Sync call outcomes per connection over each window ending at `now` (lengths in ms).
    pub async fn outcome_windows(
        &self,
        now: Millis,
        windows_ms: &[i64],
    ) -> Result<Vec<OutcomeWindows>> {
        let longest = windows_ms.iter().copied().max().unwrap_or(0);
        let mut sums = Vec::new();
        for (i, _) in windows_ms.iter().enumerate() {
            let from = placeholder(i + 2);
            sums.push(format!(
                "CAST(SUM(CASE WHEN minute >= {from} THEN ok ELSE 0 END) AS BIGINT) AS ok{i},
                 CAST(SUM(CASE WHEN minute >= {from} THEN failed ELSE 0 END) AS BIGINT) AS failed{i}"
            ));
        }
        let sql = format!(
            "SELECT connection_id, {} FROM sync_outcomes WHERE minute >= $1 GROUP BY connection_id",
            sums.join(", ")
        );
        let floor = |w: i64| super::minute_of(now - w);
        on_reader!(self, p => {
            let mut q = sqlx::query(&sql).bind(floor(longest));
            for w in windows_ms {
                q = q.bind(floor(*w));
            }
            let rows = q.fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let mut sums = Vec::with_capacity(windows_ms.len());
                for i in 0..windows_ms.len() {
                    sums.push((r.i64(&format!("ok{i}"))?, r.i64(&format!("failed{i}"))?));
                }
                out.push(OutcomeWindows { connection_id: r.string("connection_id")?, sums });
            }
            Ok(out)
        })
    }

    /// Jobs that are waiting, running or dead, per tenant, connection and state.
    pub async fn queue_depths(&self) -> Result<Vec<QueueDepth>> {
        on_reader!(self, p => {
            let rows: Vec<(Option<String>, Option<String>, String, i64)> = sqlx::query_as(
                "SELECT tenant_id, connection_id, state, COUNT(*) FROM jobs
                 WHERE state IN ('available', 'running', 'retryable', 'dead')
                 GROUP BY tenant_id, connection_id, state")
                .fetch_all(p).await?;
            let mut out = Vec::with_capacity(rows.len());
            for (tenant_id, connection_id, state, count) in rows {
                let state = state.parse().map_err(|e: String| crate::StoreError::Other(e))?;
                out.push(QueueDepth { tenant_id, connection_id, state, count });
            }
            Ok(out)
        })
    }

    /// Unreviewed dead letters per connection that died at or after `since`.
    pub async fn recent_dead_letters(&self, since: Millis) -> Result<Vec<(String, i64)>> {
        on_reader!(self, p => {
            Ok(sqlx::query_as(
                "SELECT connection_id, COUNT(*) FROM jobs
                 WHERE state = 'dead' AND reviewed = FALSE AND connection_id IS NOT NULL AND finished_at >= $1
                 GROUP BY connection_id")
                .bind(since)
                .fetch_all(p).await?)
        })
    }

    /// Per connection, the webhook events received at or after `from_event_id` that still wait
    /// for processing (received, or failed and to be retried).
    pub async fn webhook_backlog(&self, from_event_id: &str) -> Result<Vec<WebhookBacklog>> {
        on_reader!(self, p => {
            let rows: Vec<(String, i64, String, i64)> = sqlx::query_as(
                "SELECT connection_id, MIN(received_at), MIN(id), COUNT(*) FROM inbound_events
                 WHERE id >= $1 AND status IN ('received', 'failed')
                 GROUP BY connection_id")
                .bind(from_event_id)
                .fetch_all(p).await?;
            Ok(rows.into_iter().map(|(connection_id, oldest_received_at, oldest_event_id, pending)| WebhookBacklog {
                connection_id, oldest_received_at, oldest_event_id, pending,
            }).collect())
        })
    }

    /// Receive-to-processed times (ms) of the newest `limit` events processed among those
    /// received at or after `from_event_id`, with their connection.
    pub async fn webhook_latencies(
        &self,
        from_event_id: &str,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        on_reader!(self, p => {
            Ok(sqlx::query_as(
                "SELECT connection_id, processed_at - received_at FROM inbound_events
                 WHERE id >= $1 AND status = 'processed' AND processed_at IS NOT NULL
                 ORDER BY id DESC LIMIT $2")
                .bind(from_event_id)
                .bind(limit)
                .fetch_all(p).await?)
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_id_floors_sort_with_real_ids() {
        let at = 1_700_000_000_000;
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let id = syncguard_core::ids::new_id("evt", wall, rand::random());
        assert!(
            super::event_id_floor(at) < id,
            "ids made now sort after a floor in the past"
        );
        assert!(super::event_id_floor(4_000_000_000_000) > id);
        assert_eq!(super::event_id_floor(at).len(), id.len());
    }
}
