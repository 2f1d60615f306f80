//! The provider layer (SPEC §3.3, §5). Being built.

use crate::app::App;
use crate::config::Config;
use crate::engine::handler::Handlers;
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;

pub mod definition;

use definition::{EventRule, WebhookDef};

/// Provider definitions, limiters and breakers, for the life of the node.
pub struct ProviderState {
    webhooks: HashMap<String, WebhookDef>,
}

impl ProviderState {
    pub fn new(_config: &Config, _registry: &prometheus::Registry) -> anyhow::Result<ProviderState> {
        Ok(ProviderState { webhooks: HashMap::new() })
    }

    /// How webhooks of `provider` are read, if it receives any.
    pub fn webhook_def(&self, provider: &str) -> Option<&WebhookDef> {
        self.webhooks.get(provider)
    }

    /// The first rule of `provider` matching `event_type`.
    pub fn event_rule(&self, provider: &str, event_type: &str) -> Option<&EventRule> {
        self.webhook_def(provider)?.events.iter().find(|r| r.matches(event_type))
    }
}

/// Routes of the provider layer (`/v1/providers`, `/v1/circuits`), merged into the main router.
pub fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::new()
}

/// Job handlers of the provider layer.
pub fn register(_handlers: &mut Handlers) {}
