//! The `publish` job: brings one provider object to its desired state (see the module docs of
//! [`super`] for the order of steps and why it never writes the same state twice).

use super::classify::remote_view;
use super::{json_diff, upsert_write, PUBLISH};
use crate::engine::handler::{JobContext, JobError};
use crate::services::Services;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use syncguard_core::connection::ConnectionStatus;
use syncguard_store::publish::{publish_job_key, Desired};
use syncguard_store::queue::NewJob;
use syncguard_store::Scope;

/// What a publish job names: the object. Its state is read when the job runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PublishPayload {
    pub connection_id: String,
    pub resource: String,
    pub external_id: String,
}

/// The publish job of one object, debounced by `debounce_ms` (`None`: run as soon as possible
/// without pushing an already queued run back).
pub fn publish_job(
    app: &Services,
    tenant_id: &str,
    payload: PublishPayload,
    debounce_ms: Option<i64>,
) -> NewJob {
    let mut job = NewJob::new(
        PUBLISH,
        serde_json::to_value(&payload).expect("payload serializes"),
    );
    job.tenant_id = Some(tenant_id.to_string());
    job.connection_id = Some(payload.connection_id.clone());
    job.unique_key = Some(publish_job_key(
        &payload.connection_id,
        &payload.resource,
        &payload.external_id,
    ));
    job.debounce_ms = debounce_ms;
    job.max_attempts = app.settings().max_attempts(PUBLISH);
    job
}

/// The idempotency key of one state of one object: a retry of the same state sends the same
/// key, a new state a new one.
pub(super) fn idempotency_key(d: &Desired) -> String {
    let mut h = Sha256::new();
    for part in [&d.connection_id, &d.resource, &d.external_id, &d.hash] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!("sg-{}", &hex::encode(h.finalize())[..40])
}

pub(super) async fn run(ctx: JobContext<Services>) -> Result<(), JobError> {
    let app = &ctx.app;
    let p: PublishPayload = serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| JobError::permanent(format!("invalid publish payload: {e}")))?;
    let outcome = |o: &str| app.publish.metrics.publishes.with_label_values(&[o]).inc();
    let desired = app
        .store
        .get_desired(&Scope::All, &p.connection_id, &p.resource, &p.external_id)
        .await?;
    let Some(desired) = desired else {
        return Ok(());
    };
    // Re-checked here, not at enqueue time: a debounced burst, a replay or a follow-up run may
    // find the provider holding this state already.
    if desired.is_published() {
        outcome("skipped");
        return Ok(());
    }
    let connection = app
        .store
        .get_connection(&Scope::All, None, &p.connection_id)
        .await?
        .ok_or_else(|| JobError::permanent(format!("connection {} is gone", p.connection_id)))?;
    match connection.status.parse() {
        Ok(ConnectionStatus::Disconnected) => {
            return Err(JobError::permanent(format!(
                "connection {} is disconnected",
                connection.id
            )))
        }
        Ok(ConnectionStatus::Paused) => {
            return Err(JobError {
                retry_after_ms: Some(60_000),
                ..JobError::transient(format!("connection {} is paused", connection.id))
            })
        }
        _ => {}
    }
    let client = app.providers.client(app, &connection).await?;
    let (op, write) = upsert_write(client.provider(), &p.resource).ok_or_else(|| {
        JobError::permanent(format!(
            "provider `{}` has no write operation for `{}`",
            connection.provider, p.resource
        ))
    })?;
    let key = desired.key();
    let now = || app.clock.now_ms();
    if desired.attempted_hash.as_deref() == Some(desired.hash.as_str()) {
        // An earlier attempt sent this very state and its outcome was never recorded: the
        // provider may hold it already, and writing it again would be a duplicate write.
        if client.resource(&p.resource)?.get.is_some() {
            let remote = client.get(&p.resource, &p.external_id).await?;
            let held = remote.is_some_and(|r| remote_view(&r, &desired.data).1 == desired.hash);
            if held {
                ctx.store
                    .mark_published(key, &desired.data, &desired.hash, &json_diff, now())
                    .await?;
                outcome("already_applied");
                tracing::info!(connection_id = %p.connection_id, resource = %p.resource, external_id = %p.external_id, "provider already held the state; recorded without writing");
                return Ok(());
            }
        }
    } else {
        ctx.store.mark_publish_attempt(key, &desired.hash).await?;
    }
    let idempotency = write
        .idempotency_header
        .as_ref()
        .map(|_| idempotency_key(&desired));
    let written = client
        .write(
            op,
            &p.external_id,
            Some(&desired.data),
            idempotency.as_deref(),
        )
        .await;
    if let Err(e) = written {
        outcome("failed");
        if let Err(store) = ctx
            .store
            .record_publish_error(key, &desired.hash, &e.message)
            .await
        {
            tracing::warn!(error = %store, "recording the publish error failed");
        }
        return Err(e.into());
    }
    ctx.store
        .mark_published(key, &desired.data, &desired.hash, &json_diff, now())
        .await?;
    outcome("published");
    tracing::info!(connection_id = %p.connection_id, resource = %p.resource, external_id = %p.external_id, hash = %desired.hash, "published");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_follow_the_state() {
        let d = |hash: &str| Desired {
            tenant_id: "t".into(),
            connection_id: "con_1".into(),
            resource: "inventory_item".into(),
            external_id: "SKU-1".into(),
            data: serde_json::json!({}),
            hash: hash.into(),
            last_published_hash: None,
            attempted_hash: None,
            last_error: None,
            updated_at: 0,
            published_at: None,
            reconciled_at: 0,
            publish_pending: false,
        };
        assert_eq!(idempotency_key(&d("a")), idempotency_key(&d("a")));
        assert_ne!(idempotency_key(&d("a")), idempotency_key(&d("b")));
        assert!(idempotency_key(&d("a")).len() <= 64);
    }
}
