//! The `sync.refetch` job: a webhook named an object without carrying it (the gateway's
//! `refetch` action), so the object is read from the provider and applied like any observed
//! state. A provider that says the object does not exist (404, 410) deleted it.
//!
//! Some providers cannot read one object (the resource has no `get` path, as Trackstar's
//! definition today); the object then arrives with the resource's next listing, so a sync of
//! that resource is enqueued instead (unique per resource: a burst of events costs one run).

use super::{start_syncs, Reason, REFETCH_KIND};
use crate::engine::handler::{JobContext, JobError};
use crate::services::Services;
use serde::Deserialize;
use syncguard_core::connection::ConnectionStatus;
use syncguard_store::records::RecordWrite;
use syncguard_store::Scope;

#[derive(Debug, Deserialize)]
struct Payload {
    connection_id: String,
    resource: String,
    external_id: String,
}

/// The handler of [`REFETCH_KIND`].
pub async fn refetch(ctx: JobContext<Services>) -> Result<(), JobError> {
    let p: Payload = serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| JobError::permanent(format!("invalid {REFETCH_KIND} payload: {e}")))?;
    let (app, ctx_store) = (ctx.app, ctx.store);
    let Some(conn) = app
        .store
        .get_connection(&Scope::All, None, &p.connection_id)
        .await?
    else {
        return Ok(());
    };
    if conn.status != ConnectionStatus::Active {
        // No provider calls for a paused or disconnected connection; a resume syncs again.
        tracing::info!(connection_id = %conn.id, status = %conn.status, "refetch skipped");
        return Ok(());
    }
    let client = app.providers.client(&app, &conn).await?;
    let res = client.resource(&p.resource)?;
    if res.get.is_none() {
        start_syncs(
            &app,
            &conn,
            std::slice::from_ref(&p.resource),
            Reason::Refetch,
            false,
        )
        .await?;
        return Ok(());
    }
    let fetched = client.get(&p.resource, &p.external_id).await;
    let now = app.clock.now_ms();
    let (ok, failed) = if fetched.is_ok() { (1, 0) } else { (0, 1) };
    if let Err(e) = app
        .store
        .record_call_outcomes(&conn.tenant_id, &conn.id, ok, failed, now)
        .await
    {
        tracing::warn!(error = %e, "recording the refetch outcome failed");
    }
    let write = match fetched? {
        Some(item) => RecordWrite::Upsert {
            remote_updated_at: res.updated_at_of(&item),
            data: item,
        },
        None => RecordWrite::Delete,
    };
    let change = ctx_store
        .apply_record(
            syncguard_store::records::RecordKey {
                tenant_id: &conn.tenant_id,
                connection_id: &conn.id,
                resource: &p.resource,
                external_id: &p.external_id,
            },
            &write,
            "refetch",
            now,
        )
        .await?;
    tracing::debug!(connection_id = %conn.id, resource = %p.resource, external_id = %p.external_id,
        change = ?change.map(|c| c.kind), "refetched");
    Ok(())
}
