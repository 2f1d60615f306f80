//! The `webhook.process` job: turns one stored event into an action on records, using the
//! provider definition's event rules (SPEC §3.2, §3.4).
//!
//! - `upsert`: the object in the event (its `data_pointer`) becomes the record's state; a rule
//!   without `data_pointer` means the event carries only an id, so it refetches instead.
//! - `delete`: the record is marked deleted.
//! - `refetch`: a `sync.refetch` job fetches the object from the provider (unique per object,
//!   so a burst of id-only events costs one fetch).
//! - no rule for the event type: nothing to apply; the event is kept (it can be replayed once
//!   a rule exists) and marked processed with a note saying so.
//!
//! Runs are idempotent: record writes are hash-gated, refetches are unique, and an event
//! already processed is skipped unless the job is an explicit replay. A failure is returned
//! with its class, so the queue retries or dead-letters it; the event's status follows
//! (`failed` while retries remain, `dead` after the last).

use super::{PROCESS_KIND, REFETCH_KIND};
use crate::engine::decide;
use crate::engine::handler::{JobContext, JobError};
use crate::provider::definition::{EventAction, EventRule, ResourceDef};
use crate::services::Services;
use serde::Deserialize;
use serde_json::{json, Value};
use syncguard_store::events::{EventRun, EventStatus, InboundEvent};
use syncguard_store::queue::{NewJob, Outcome};
use syncguard_store::records::RecordWrite;
use tracing::Instrument;

#[derive(Debug, Deserialize)]
struct Payload {
    event_id: String,
    /// Set by `POST /v1/events/replay`: process again even if already processed.
    #[serde(default)]
    replay: bool,
}

/// The job payload of a processing run.
pub fn payload(event_id: &str, replay: bool) -> Value {
    json!({ "event_id": event_id, "replay": replay })
}

/// The config name of an action, as it appears in content keys.
pub fn action_name(action: EventAction) -> &'static str {
    match action {
        EventAction::Upsert => "upsert",
        EventAction::Delete => "delete",
        EventAction::Refetch => "refetch",
    }
}

/// What one event asks for, read from its body by its rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Write {
        resource: String,
        external_id: String,
        write: RecordWrite,
    },
    Refetch {
        resource: String,
        external_id: String,
    },
}

/// Reads the body with the rule; `resource` (the provider's definition of the rule's resource)
/// says where an object keeps its last-modified time. Pure, so the mapping is tested without a
/// store. An error is a body that does not fit the rule: retrying cannot fix it.
pub fn plan(
    rule: &EventRule,
    body: &Value,
    resource: Option<&ResourceDef>,
) -> Result<Plan, String> {
    let external_id = match body.pointer(&rule.id_pointer) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(n @ Value::Number(_)) => n.to_string(),
        _ => {
            return Err(format!(
                "no id at `{}` for event rule `{}`",
                rule.id_pointer, rule.event
            ))
        }
    };
    let updated_at = |data: &Value| resource.and_then(|r| r.updated_at_of(data));
    let resource = rule.resource.clone();
    let data = rule.data_pointer.as_deref().map(|p| (p, body.pointer(p)));
    Ok(match (rule.action, data) {
        (EventAction::Delete, _) => Plan::Write {
            resource,
            external_id,
            write: RecordWrite::Delete,
        },
        (EventAction::Upsert, Some((_, Some(data)))) if data.is_object() => Plan::Write {
            resource,
            external_id,
            // With the object's own modification time, the record layer ignores a write older
            // than what it holds: a reordered, late event cannot roll the record back.
            write: RecordWrite::Upsert {
                data: data.clone(),
                remote_updated_at: updated_at(data),
            },
        },
        (EventAction::Upsert, Some((pointer, _))) => {
            return Err(format!(
                "no object at `{pointer}` for event rule `{}`",
                rule.event
            ))
        }
        (EventAction::Upsert, None) | (EventAction::Refetch, _) => Plan::Refetch {
            resource,
            external_id,
        },
    })
}

/// The handler of [`PROCESS_KIND`].
pub async fn process(ctx: JobContext<Services>) -> Result<(), JobError> {
    let p: Payload = serde_json::from_value(ctx.job.payload.clone())
        .map_err(|e| JobError::permanent(format!("invalid {PROCESS_KIND} payload: {e}")))?;
    let span = tracing::info_span!("webhook_process", event_id = %p.event_id, job_id = ctx.job.id,
        correlation_id = ctx.job.correlation_id.as_deref().unwrap_or(""));
    run(ctx, p).instrument(span).await
}

async fn run(ctx: JobContext<Services>, p: Payload) -> Result<(), JobError> {
    let JobContext {
        job, app, store, ..
    } = ctx;
    let Some((event, body)) = app.store.event_for_processing(&p.event_id).await? else {
        return Err(JobError::permanent(format!(
            "event {} does not exist",
            p.event_id
        )));
    };
    let already = event.status == EventStatus::Processed && !p.replay;
    if already || event.status == EventStatus::Duplicate {
        tracing::debug!(status = %event.status, "event needs no processing");
        return Ok(());
    }
    let result = apply(&app, &store, &event, &body).await;
    let now = app.clock.now_ms();
    let (status, note) = match &result {
        Ok(note) => (EventStatus::Processed, note.clone()),
        Err(err) => {
            // The queue applies the same rule to the same job right after this returns.
            let outcome = decide::after_failure(
                &job,
                err,
                &app.config.retry_policy(),
                app.config.queue.permanent_max_attempts,
                now,
                &mut rand::thread_rng(),
            );
            let status = match outcome {
                Outcome::Dead { .. } => EventStatus::Dead,
                _ => EventStatus::Failed,
            };
            tracing::warn!(connection_id = %event.connection_id, delivery_id = ?event.delivery_id,
                attempt = job.attempts, class = %err.class, error = %err.message, status = %status,
                "webhook processing failed");
            (status, format!("{}: {}", err.class, err.message))
        }
    };
    // Recorded before the job finishes: if this node dies in between, the job runs again and
    // records again, never the other way round.
    let run = EventRun {
        event_id: event.id.clone(),
        job_id: job.id,
        status,
        note: Some(note),
        fence: job.fence(),
    };
    let recorded = app.webhooks.writers(&app).runs.submit(run).await?;
    if !recorded {
        return Err(JobError::from(syncguard_store::StoreError::Fenced {
            job_id: job.id,
        }));
    }
    app.webhooks
        .metrics
        .processing_seconds
        .with_label_values(&[&event.provider, status.as_str()])
        .observe((now - event.received_at).max(0) as f64 / 1000.0);
    result.map(|_| ())
}

/// Applies the event; returns a note on what it did.
async fn apply(
    app: &Services,
    store: &syncguard_store::Store,
    event: &InboundEvent,
    body: &[u8],
) -> Result<String, JobError> {
    let event_type = event.event_type.as_deref().unwrap_or("");
    let Some(rule) = app.providers.event_rule(&event.provider, event_type) else {
        return Ok(format!(
            "no event rule of provider `{}` matches event type `{event_type}`; stored, nothing applied",
            event.provider
        ));
    };
    let json: Value = serde_json::from_slice(body)
        .map_err(|e| JobError::permanent(format!("the body is not JSON: {e}")))?;
    let now = app.clock.now_ms();
    let resource = app
        .providers
        .get(&event.provider)
        .and_then(|d| d.resource(&rule.resource));
    match plan(rule, &json, resource).map_err(JobError::permanent)? {
        Plan::Write {
            resource,
            external_id,
            write,
        } => {
            let change = store
                .apply_record(
                    syncguard_store::records::RecordKey {
                        tenant_id: &event.tenant_id,
                        connection_id: &event.connection_id,
                        resource: &resource,
                        external_id: &external_id,
                    },
                    &write,
                    "webhook",
                    now,
                )
                .await
                .map_err(|e| JobError::transient(e.to_string()))?;
            Ok(match change {
                Some(c) => format!("{resource}/{external_id} {} (change {})", c.kind, c.seq),
                None => format!("{resource}/{external_id} unchanged"),
            })
        }
        Plan::Refetch {
            resource,
            external_id,
        } => {
            let mut job = NewJob::new(
                REFETCH_KIND,
                json!({ "connection_id": event.connection_id, "resource": resource, "external_id": external_id }),
            );
            job.tenant_id = Some(event.tenant_id.clone());
            job.connection_id = Some(event.connection_id.clone());
            job.max_attempts = app.config.max_attempts(REFETCH_KIND);
            job.unique_key = Some(format!(
                "refetch:{}:{resource}:{external_id}",
                event.connection_id
            ));
            job.correlation_id = Some(event.correlation_id.clone());
            // Fenced: a run that lost its lease enqueues nothing.
            let enqueued = store
                .enqueue(&job, now)
                .await
                .map_err(|e| JobError::transient(e.to_string()))?;
            app.job_notify.notify_one();
            Ok(format!(
                "{resource}/{external_id}: refetch job {}{}",
                enqueued.id,
                if enqueued.deduplicated {
                    " (already queued)"
                } else {
                    ""
                }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: EventAction, data_pointer: Option<&str>) -> EventRule {
        EventRule {
            event: "order.*".into(),
            resource: "orders".into(),
            action,
            id_pointer: "/data/id".into(),
            data_pointer: data_pointer.map(String::from),
        }
    }

    #[test]
    fn upsert_takes_the_object_and_its_id() {
        let body =
            json!({"event_type": "order.updated", "data": {"id": "o1", "status": "shipped"}});
        assert_eq!(
            plan(&rule(EventAction::Upsert, Some("/data")), &body, None),
            Ok(Plan::Write {
                resource: "orders".into(),
                external_id: "o1".into(),
                write: RecordWrite::Upsert {
                    data: json!({"id": "o1", "status": "shipped"}),
                    remote_updated_at: None
                },
            })
        );
    }

    #[test]
    fn upserts_carry_the_objects_modification_time() {
        let orders: ResourceDef =
            serde_json::from_value(json!({"path": "/orders", "updated_at": "/updated_date"}))
                .unwrap();
        let body = json!({"data": {"id": "o1", "updated_date": "2026-01-02T03:04:05.678Z"}});
        let Ok(Plan::Write {
            write: RecordWrite::Upsert {
                remote_updated_at, ..
            },
            ..
        }) = plan(
            &rule(EventAction::Upsert, Some("/data")),
            &body,
            Some(&orders),
        )
        else {
            panic!("an upsert");
        };
        assert_eq!(remote_updated_at, Some(1_767_323_045_678));
    }

    #[test]
    fn numeric_ids_become_strings_and_delete_needs_no_object() {
        let body = json!({"data": {"id": 42}});
        assert_eq!(
            plan(&rule(EventAction::Delete, None), &body, None),
            Ok(Plan::Write {
                resource: "orders".into(),
                external_id: "42".into(),
                write: RecordWrite::Delete
            })
        );
    }

    #[test]
    fn id_only_events_refetch() {
        let body = json!({"data": {"id": "o9"}});
        let refetch = Ok(Plan::Refetch {
            resource: "orders".into(),
            external_id: "o9".into(),
        });
        assert_eq!(
            plan(&rule(EventAction::Refetch, None), &body, None),
            refetch
        );
        assert_eq!(plan(&rule(EventAction::Upsert, None), &body, None), refetch);
    }

    #[test]
    fn bodies_that_do_not_fit_the_rule_are_refused_with_the_pointer() {
        let missing_id = plan(
            &rule(EventAction::Upsert, Some("/data")),
            &json!({"data": {}}),
            None,
        );
        assert!(missing_id.unwrap_err().contains("/data/id"));
        let missing_object = plan(
            &rule(EventAction::Upsert, Some("/object")),
            &json!({"data": {"id": "o1"}}),
            None,
        );
        assert!(missing_object.unwrap_err().contains("/object"));
    }
}
