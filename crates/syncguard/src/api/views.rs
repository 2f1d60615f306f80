//! What the API answers: store models turned into the pinned JSON shapes (SPEC Appendix A),
//! times as RFC 3339.

use crate::clock::rfc3339;
use serde::Serialize;
use syncguard_store::audit::AuditEntry;
use syncguard_store::page::Page;
use syncguard_store::queue::Job;
use syncguard_store::tenancy::{ApiKey, Tenant};
use utoipa::ToSchema;

/// Every list endpoint answers `{"data": [...], "next_cursor": "…" | null}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    pub fn from_page<S>(page: Page<S>, view: impl Fn(S) -> T) -> List<T> {
        List {
            data: page.items.into_iter().map(view).collect(),
            next_cursor: page.next_cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

impl From<Tenant> for TenantView {
    fn from(t: Tenant) -> Self {
        TenantView {
            id: t.id,
            name: t.name,
            created_at: rfc3339(t.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub tenant_id: Option<String>,
    pub role: String,
    pub name: String,
    /// The last four characters of the key; the key itself is shown only once, on creation.
    pub last4: String,
    pub connections: Option<Vec<String>>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Present only in the answer to `POST /v1/keys`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

impl From<ApiKey> for KeyView {
    fn from(k: ApiKey) -> Self {
        KeyView {
            id: k.id,
            tenant_id: k.tenant_id,
            role: k.role.to_string(),
            name: k.name,
            last4: k.last4,
            connections: k.connections,
            created_at: rfc3339(k.created_at),
            revoked_at: k.revoked_at.map(rfc3339),
            key: None,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: i64,
    pub tenant_id: Option<String>,
    pub connection_id: Option<String>,
    pub kind: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// available, running, retryable, succeeded, dead, cancelled
    pub state: String,
    pub priority: i64,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub lease_until: Option<String>,
    pub unique_key: Option<String>,
    /// transient, rate_limited, permanent, circuit_open
    pub error_class: Option<String>,
    pub last_error: Option<String>,
    pub reviewed: bool,
    pub replayed_from: Option<i64>,
    pub replayed_as: Option<i64>,
    pub correlation_id: Option<String>,
}

impl From<Job> for JobView {
    fn from(j: Job) -> Self {
        JobView {
            id: j.id,
            tenant_id: j.tenant_id,
            connection_id: j.connection_id,
            kind: j.kind,
            payload: j.payload,
            state: j.state.to_string(),
            priority: j.priority,
            attempts: j.attempts,
            max_attempts: j.max_attempts,
            run_at: rfc3339(j.run_at),
            created_at: rfc3339(j.created_at),
            updated_at: rfc3339(j.updated_at),
            started_at: j.started_at.map(rfc3339),
            finished_at: j.finished_at.map(rfc3339),
            lease_until: j.lease_until.map(rfc3339),
            unique_key: j.unique_key,
            error_class: j.error_class.map(|c| c.to_string()),
            last_error: j.last_error,
            reviewed: j.reviewed,
            replayed_from: j.replayed_from,
            replayed_as: j.replayed_as,
            correlation_id: j.correlation_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub tenant_id: Option<String>,
    /// The connection the action concerned, if one.
    pub connection_id: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    pub request_id: Option<String>,
    pub at: String,
}

impl From<AuditEntry> for AuditView {
    fn from(e: AuditEntry) -> Self {
        AuditView {
            id: e.id,
            tenant_id: e.tenant_id,
            connection_id: e.connection_id,
            actor: e.actor,
            action: e.action,
            target: e.target,
            params: e.params,
            request_id: e.request_id,
            at: rfc3339(e.at),
        }
    }
}
