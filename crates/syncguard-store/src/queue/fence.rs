//! Fencing tokens (SPEC §3.1 "Fencing").
//!
//! Every claim writes a fresh random `lease_id` on the job row; the pair (job id, lease id) is
//! the run's token. A node that lost a lease (it expired and was rescued, the job was cancelled,
//! or claimed again) still has the old token, and every store write a handler makes on behalf of
//! its job checks it inside the write's own transaction. So a zombie run — one that outlived its
//! lease — can never commit, whatever it does: its writes fail with [`StoreError::Fenced`].
//!
//! A handler gets a fenced store ([`Store::fenced`]): the same store, carrying the token, whose
//! job-facing write methods check it. Writes made outside any job (API, webhooks) carry none.

use crate::{Backend, Store, StoreError};

/// The fencing token of one claimed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub job_id: i64,
    pub lease_id: i64,
}

/// Holds while the job is running under this very lease. On PostgreSQL the row is share-locked
/// until the write commits, so a rescue (or a completion) waits for the write instead of
/// racing it; on SQLite the one writer connection serialises them anyway.
pub(crate) fn fence_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "SELECT id FROM jobs WHERE id = $1 AND lease_id = $2 AND state = 'running'"
        }
        Backend::Postgres => {
            "SELECT id FROM jobs WHERE id = $1 AND lease_id = $2 AND state = 'running' FOR SHARE"
        }
    }
}

/// The refusal for a token that no longer holds.
pub(crate) fn refused(f: &Fence, held: Option<(i64,)>) -> Result<(), StoreError> {
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced { job_id: f.job_id }),
    }
}

/// Checks `$fence` (an `Option<Fence>`) on the open transaction `$conn` of `$store`; returns
/// [`StoreError::Fenced`] from the enclosing function when the token no longer holds.
macro_rules! check_fence {
    ($store:expr, $fence:expr, $conn:expr) => {
        if let Some(f) = $fence {
            let held: Option<(i64,)> =
                sqlx::query_as($crate::queue::fence::fence_sql($store.backend()))
                    .bind(f.job_id)
                    .bind(f.lease_id)
                    .fetch_optional(&mut *$conn)
                    .await?;
            $crate::queue::fence::refused(&f, held)?;
        }
    };
}
pub(crate) use check_fence;

impl Store {
    /// This store, with every job-facing write made conditional on `fence`.
    pub fn fenced(&self, fence: Fence) -> Store {
        let mut s = self.clone();
        s.fence = Some(fence);
        s
    }

    /// The token this store's job-facing writes are conditional on, if any.
    pub fn fence(&self) -> Option<Fence> {
        self.fence
    }

    /// Fails with [`StoreError::Fenced`] unless the token still holds (a handler's last look
    /// before an external effect it cannot take back).
    pub async fn check_fence(&self) -> crate::Result<()> {
        crate::on_writer!(self, p => {
            let mut tx = p.begin().await?;
            check_fence!(self, self.fence, tx);
            tx.commit().await?;
        });
        Ok(())
    }
}
