//! Stored responses for the `Idempotency-Key` header (SPEC §3.8).
//!
//! The first request with a key claims it (`in_flight`); its response is stored when it ends.
//! The same key with the same request replays that response for 24 h, with a different request
//! is refused (422), and while the first is still running is refused (409). A claim whose
//! request died with its process expires after a short lock so the key is not stuck forever.
//!
//! `scope` is whatever the caller binds a key to (the API: the authenticated key's id) and
//! `body` is stored as given (the API seals it first); this module keeps no opinion on either.

use crate::{on_reader, on_writer, Millis, Result, Store};

/// How long stored responses are replayed.
pub const RETENTION_MS: Millis = 24 * 60 * 60 * 1000;
/// How long an in-flight claim blocks others before it counts as abandoned.
pub const LOCK_MS: Millis = 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// `status, content_type, body` of a stored row.
type StoredRow = (Option<i64>, Option<String>, Option<Vec<u8>>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours: run the request, then [`Store::finish_idempotent`].
    New,
    /// The same request already completed: answer this.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

impl Store {
    pub async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        request_hash: &str,
        now: Millis,
    ) -> Result<Claim> {
        on_writer!(self, p => {
            let mut tx = p.begin().await?;
            // Expired entries and abandoned claims make room for a fresh claim.
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND (created_at < $3 OR (state = 'in_flight' AND locked_until < $4))")
                .bind(scope)
                .bind(key)
                .bind(now - RETENTION_MS)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let inserted = sqlx::query("INSERT INTO idempotency_keys (scope, key, request_hash, state, created_at, locked_until) VALUES ($1, $2, $3, 'in_flight', $4, $5) ON CONFLICT (scope, key) DO NOTHING")
                .bind(scope)
                .bind(key)
                .bind(request_hash)
                .bind(now)
                .bind(now + LOCK_MS)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let claim = if inserted == 1 {
                Claim::New
            } else {
                let (hash, state, status, content_type, body): (String, String, Option<i64>, Option<String>, Option<Vec<u8>>) =
                    sqlx::query_as("SELECT request_hash, state, status, content_type, body FROM idempotency_keys WHERE scope = $1 AND key = $2")
                        .bind(scope)
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                if hash != request_hash {
                    Claim::Mismatch
                } else if state == "in_flight" {
                    Claim::InFlight
                } else {
                    Claim::Replay(StoredResponse {
                        status: status.unwrap_or(200) as u16,
                        content_type,
                        body: body.unwrap_or_default(),
                    })
                }
            };
            tx.commit().await?;
            Ok(claim)
        })
    }

    /// Stores the response of a claimed request so that retries replay it.
    pub async fn finish_idempotent(
        &self,
        scope: &str,
        key: &str,
        resp: &StoredResponse,
    ) -> Result<()> {
        on_writer!(self, p => {
            sqlx::query("UPDATE idempotency_keys SET state = 'done', status = $1, content_type = $2, body = $3 WHERE scope = $4 AND key = $5")
                .bind(resp.status as i64)
                .bind(&resp.content_type)
                .bind(&resp.body)
                .bind(scope)
                .bind(key)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// Forgets a claim whose request failed on our side, so a retry may run it again.
    pub async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<()> {
        on_writer!(self, p => {
            sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'")
                .bind(scope)
                .bind(key)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    /// How many keys are claimed or stored, over every scope (for tests and operators).
    pub async fn count_idempotency_keys(&self) -> Result<i64> {
        on_reader!(self, p => {
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM idempotency_keys").fetch_one(p).await?;
            Ok(n)
        })
    }

    /// The stored response of a finished key, as stored.
    pub async fn stored_idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>> {
        on_reader!(self, p => {
            let row: Option<StoredRow> =
                sqlx::query_as("SELECT status, content_type, body FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'done'")
                    .bind(scope)
                    .bind(key)
                    .fetch_optional(p)
                    .await?;
            Ok(row.map(|(status, content_type, body)| StoredResponse {
                status: status.unwrap_or(200) as u16,
                content_type,
                body: body.unwrap_or_default(),
            }))
        })
    }
}
