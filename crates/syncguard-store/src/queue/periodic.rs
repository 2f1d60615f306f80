//! Periodic jobs that run once per interval across the whole cluster.
//!
//! Each interval is a numbered slot (`floor(now / interval)`); whoever first records the slot
//! in `periodic_runs` enqueues the job, in the same transaction. Nodes may race: the primary
//! key makes exactly one of them win, even without leadership.

use super::{enqueue_on, NewJob};
use crate::{on_writer, Millis, Result, Store};

impl Store {
    /// Enqueues `job` for slot `slot` of schedule `name` unless that slot already ran.
    /// Returns the job id when this call scheduled it.
    pub async fn schedule_periodic(
        &self,
        name: &str,
        slot: i64,
        job: &NewJob,
        now: Millis,
    ) -> Result<Option<i64>> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            let claimed = sqlx::query("INSERT INTO periodic_runs (name, slot, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(name)
                .bind(slot)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if claimed == 0 {
                return Ok(None);
            }
            let e = enqueue_on!(tx, job, now)?;
            sqlx::query("UPDATE periodic_runs SET job_id = $1 WHERE name = $2 AND slot = $3")
                .bind(e.id)
                .bind(name)
                .bind(slot)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(e.id))
        })
    }
}
