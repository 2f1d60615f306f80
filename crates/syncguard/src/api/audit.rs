//! Audit entries of API actions. A handler describes its entry with [`Audit`] and hands it to
//! the store method that makes the change, which writes both in one transaction: an admin
//! action never happens unaudited, and no entry describes a change that was rolled back.

use super::error::ApiResult;
use super::extract::{request_id, Caller};
use crate::services::Services;
use serde_json::Value;
use syncguard_store::audit::NewAudit;

/// One entry, owned, so that a handler can build it before the change and lend it to the store.
#[derive(Debug, Clone)]
pub struct Audit {
    actor: String,
    request_id: Option<String>,
    action: &'static str,
    tenant_id: Option<String>,
    connection_id: Option<String>,
    target: Option<String>,
    params: Value,
}

impl Audit {
    /// `caller` doing `action`, within the current request.
    pub fn by(caller: &Caller, action: &'static str) -> Audit {
        Audit {
            actor: caller.key.id.clone(),
            request_id: request_id(),
            action,
            tenant_id: None,
            connection_id: None,
            target: None,
            params: Value::Object(Default::default()),
        }
    }

    pub fn tenant(mut self, tenant_id: Option<&str>) -> Audit {
        self.tenant_id = tenant_id.map(String::from);
        self
    }

    /// The connection the action concerns: what a connection-scoped key may read back.
    pub fn connection(mut self, connection_id: Option<&str>) -> Audit {
        self.connection_id = connection_id.map(String::from);
        self
    }

    pub fn target(mut self, target: impl ToString) -> Audit {
        self.target = Some(target.to_string());
        self
    }

    pub fn params(mut self, params: Value) -> Audit {
        self.params = params;
        self
    }

    /// Records the entry on its own, for actions whose change is not a store write of their own
    /// (a link token, a queued sync, a reconcile). A failure to audit fails the request: an
    /// unaudited admin action must not happen silently.
    pub async fn record(&self, app: &Services) -> ApiResult<()> {
        app.store
            .append_audit(self.entry(), app.clock.now_ms())
            .await?;
        Ok(())
    }

    /// The entry as the store takes it.
    pub fn entry(&self) -> NewAudit<'_> {
        NewAudit {
            tenant_id: self.tenant_id.as_deref(),
            connection_id: self.connection_id.as_deref(),
            actor: &self.actor,
            action: self.action,
            target: self.target.as_deref(),
            params: self.params.clone(),
            request_id: self.request_id.as_deref(),
        }
    }
}
