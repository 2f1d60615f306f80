//! Reconciliation jobs: `reconcile.tick` schedules per-connection runs, `reconcile` runs one.

use super::classify::{classify, Classification, Finding, Local};
use super::publisher::{publish_job, PublishPayload};
use super::{json_diff, reconcile_interval_ms, Policy, RECONCILE};
use crate::engine::handler::{JobContext, JobError};
use crate::provider::ProviderClient;
use crate::services::Services;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use syncguard_core::connection::ConnectionStatus;
use syncguard_store::connections::Connection;
use syncguard_store::publish::{Desired, NewDrift, Reconciled};
use syncguard_store::queue::NewJob;
use syncguard_store::records::RecordWrite;
use syncguard_store::Scope;
use syncguard_store::Store;

/// Objects read from the store per step; their findings are recorded together.
const BATCH: i64 = 50;

/// The reconcile job of one connection (one active per connection).
pub fn reconcile_job(app: &Services, connection_id: &str, tenant_id: &str) -> NewJob {
    let mut job = NewJob::new(
        RECONCILE,
        serde_json::json!({ "connection_id": connection_id }),
    );
    job.tenant_id = Some(tenant_id.to_string());
    job.connection_id = Some(connection_id.to_string());
    job.unique_key = Some(format!("reconcile:{connection_id}"));
    job.max_attempts = app.settings().max_attempts(RECONCILE);
    job
}

/// Where in each interval a connection's reconciliation falls: a fixed offset derived from its
/// id, so that a thousand connections do not all reconcile in the same minute.
fn phase(connection_id: &str, interval_ms: i64) -> i64 {
    let digest = Sha256::digest(connection_id.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (n % interval_ms as u64) as i64
}

/// Enqueues the reconciliation of every active connection with desired state whose slot has
/// come, once per slot across the cluster (the slot is recorded with the job).
pub(super) async fn tick(ctx: JobContext<Services>) -> Result<(), JobError> {
    let app = &ctx.app;
    let now = app.clock.now_ms();
    let settings = &app.publish.settings;
    let mut scheduled = 0;
    for (id, tenant, config, created_at) in app.store.reconcile_candidates().await? {
        let interval = match reconcile_interval_ms(&config, settings) {
            Ok(ms) => ms,
            Err(e) => {
                tracing::warn!(connection_id = %id, error = %e, "using the default reconcile interval");
                settings.reconcile_interval_ms
            }
        };
        // What a new connection holds was just published: its first reconciliation comes
        // one interval after it was created.
        if now - created_at < interval {
            continue;
        }
        let slot = (now + phase(&id, interval)).div_euclid(interval);
        let job = reconcile_job(app, &id, &tenant);
        let name = format!("{RECONCILE}:{id}");
        if let Some(job_id) = app.store.schedule_periodic(&name, slot, &job, now).await? {
            tracing::debug!(connection_id = %id, job_id, slot, "reconciliation scheduled");
            scheduled += 1;
        }
    }
    if scheduled > 0 {
        app.job_notify.notify_one();
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
struct ReconcilePayload {
    connection_id: String,
}

/// What reconciling one object came to.
struct Outcome {
    finding: Option<(Finding, &'static str)>,
}

pub(super) async fn run(ctx: JobContext<Services>) -> Result<(), JobError> {
    let app = &ctx.app;
    let p: ReconcilePayload = serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| JobError::permanent(format!("invalid reconcile payload: {e}")))?;
    let Some(connection) = app
        .store
        .get_connection(&Scope::All, None, &p.connection_id)
        .await?
    else {
        return Ok(());
    };
    if connection.status != ConnectionStatus::Active {
        tracing::info!(connection_id = %connection.id, status = %connection.status, "not reconciled: connection not active");
        return Ok(());
    }
    let policy = Policy::of(&connection.config).map_err(JobError::permanent)?;
    let client = app.providers.client(app, &connection).await?;
    let runs = &app.publish.metrics.reconciles;
    // Objects not reconciled since this job was created are due: a retried or yielded run
    // resumes with what the earlier attempt did not reach.
    let since = ctx.job.created_at;
    loop {
        let batch = app
            .store
            .desired_due_for_reconcile(&connection.id, since, BATCH)
            .await?;
        if batch.is_empty() {
            break;
        }
        let mut outcomes = Vec::with_capacity(batch.len());
        let mut stopped = None;
        for d in &batch {
            if client.near_depletion().await {
                runs.with_label_values(&["yielded"]).inc();
                stopped = Some(yield_error(app.publish.settings.yield_ms));
                break;
            }
            match reconcile_one(app, &ctx.store, &client, &connection, policy, d).await {
                Ok(o) => outcomes.push(o),
                Err(e) => {
                    runs.with_label_values(&["failed"]).inc();
                    stopped = Some(e);
                    break;
                }
            }
        }
        record(app, &ctx.store, &batch, &outcomes).await?;
        if let Some(e) = stopped {
            return Err(e);
        }
    }
    runs.with_label_values(&["completed"]).inc();
    Ok(())
}

/// Reconciliation is not critical work: while the credential's rate limit is nearly spent it
/// steps aside for sync and publish, snoozing (no attempt spent, not a failure).
fn yield_error(wait_ms: u64) -> JobError {
    JobError::snooze(
        wait_ms,
        "yielded: the provider's rate limit is near depletion; resuming later",
    )
}

/// Reads one object from the provider, classifies it and applies the connection's policy.
async fn reconcile_one(
    app: &Services,
    store: &Store,
    client: &ProviderClient,
    connection: &Connection,
    policy: Policy,
    d: &Desired,
) -> Result<Outcome, JobError> {
    if client.resource(&d.resource)?.get.is_none() {
        tracing::warn!(connection_id = %d.connection_id, resource = %d.resource, "not reconciled: the provider cannot read one object of this resource");
        return Ok(Outcome { finding: None });
    }
    let remote = client.get(&d.resource, &d.external_id).await?;
    let base = match d.last_published_hash.as_deref() {
        None => None,
        Some(h) if h == d.hash => Some(Some(d.data.clone())),
        Some(h) => Some(app.store.snapshot_state(&d.tenant_id, h).await?),
    };
    let local = Local {
        desired: &d.data,
        desired_hash: &d.hash,
        published: d
            .last_published_hash
            .as_deref()
            .map(|h| (base.as_ref().and_then(|b| b.as_ref()), h)),
    };
    let finding = classify(local, remote.as_ref());
    let class = finding.classification;
    app.publish
        .metrics
        .drift
        .with_label_values(&[class.as_str()])
        .inc();
    let action = apply_policy(app, store, connection, policy, d, &finding, remote.as_ref()).await?;
    Ok(Outcome {
        finding: Some((finding, action)),
    })
}

/// Does what `policy` says about one finding; returns the action recorded with it.
async fn apply_policy(
    app: &Services,
    store: &Store,
    connection: &Connection,
    policy: Policy,
    d: &Desired,
    finding: &Finding,
    remote: Option<&serde_json::Value>,
) -> Result<&'static str, JobError> {
    let class = finding.classification;
    if class == Classification::InSync {
        return Ok("none");
    }
    let now = app.clock.now_ms();
    let remote_hash = finding.remote.as_ref().map(|(_, h)| h.as_str());
    match policy {
        Policy::Report => Ok("reported"),
        Policy::LocalWins => {
            // The provider's state becomes the base, so the publisher sees work to do; without
            // a debounce, so that a queued run (a local change's, still in its window) starts
            // now.
            let base = if class.remote_changed() {
                remote_hash
            } else {
                d.last_published_hash.as_deref()
            };
            let payload = PublishPayload {
                connection_id: d.connection_id.clone(),
                resource: d.resource.clone(),
                external_id: d.external_id.clone(),
            };
            let job = publish_job(app, &connection.tenant_id, payload, Some(0));
            let queued = app
                .store
                .republish(d.key(), d.last_published_hash.as_deref(), base, &job, now)
                .await?;
            if queued.is_some() {
                app.job_notify.notify_one();
            }
            Ok("publish_enqueued")
        }
        Policy::RemoteWins if !class.remote_changed() => Ok("reported"),
        Policy::RemoteWins => {
            let (tenant, conn, res, id) =
                (&d.tenant_id, &d.connection_id, &d.resource, &d.external_id);
            match (remote, &finding.remote) {
                (Some(full), Some((view, hash))) => {
                    let write = RecordWrite::Upsert {
                        data: full.clone(),
                        remote_updated_at: None,
                    };
                    store
                        .apply_record(
                            syncguard_store::records::RecordKey {
                                tenant_id: tenant,
                                connection_id: conn,
                                resource: res,
                                external_id: id,
                            },
                            &write,
                            "reconcile",
                            now,
                        )
                        .await?;
                    store
                        .accept_remote(d.key(), &d.hash, view, hash, now)
                        .await?;
                }
                _ => {
                    store
                        .apply_record(
                            syncguard_store::records::RecordKey {
                                tenant_id: tenant,
                                connection_id: conn,
                                resource: res,
                                external_id: id,
                            },
                            &RecordWrite::Delete,
                            "reconcile",
                            now,
                        )
                        .await?;
                    store.forget_desired(d.key(), &d.hash).await?;
                }
            }
            Ok("remote_accepted")
        }
    }
}

/// Records the findings of one batch and marks its objects reconciled.
async fn record(
    app: &Services,
    store: &Store,
    batch: &[Desired],
    outcomes: &[Outcome],
) -> Result<(), JobError> {
    let items: Vec<Reconciled<'_>> = batch
        .iter()
        .zip(outcomes)
        .map(|(d, o)| Reconciled {
            key: d.key(),
            finding: o.finding.as_ref().map(|(f, action)| NewDrift {
                classification: f.classification.as_str(),
                local_hash: Some(d.hash.clone()),
                remote_hash: f.remote.as_ref().map(|(_, h)| h.clone()),
                action,
            }),
            remote: o
                .finding
                .as_ref()
                .filter(|(f, _)| f.classification.remote_changed())
                .and_then(|(f, _)| f.remote.as_ref())
                .map(|(v, h)| (v, h.as_str())),
        })
        .collect();
    if items.is_empty() {
        return Ok(());
    }
    let recorded = store
        .record_reconciled(&items, &json_diff, app.clock.now_ms())
        .await?;
    for d in recorded {
        tracing::info!(connection_id = %d.connection_id, resource = %d.resource, external_id = %d.external_id, classification = %d.classification, action = %d.action, "drift");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::phase;

    #[test]
    fn phases_are_stable_and_within_the_interval() {
        let interval = 1_800_000;
        assert_eq!(phase("con_a", interval), phase("con_a", interval));
        assert_ne!(phase("con_a", interval), phase("con_b", interval));
        assert!((0..interval).contains(&phase("con_a", interval)));
    }
}
