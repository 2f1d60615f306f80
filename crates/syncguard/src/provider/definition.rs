//! Provider definitions as data (SPEC §1 "provider", §3.3). Being built: the types below are
//! the contract other parts (the webhook gateway) rely on.

use serde::{Deserialize, Serialize};

/// How a provider's webhooks are read: which event types map to which record action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookDef {
    /// Signature scheme connections of this provider use by default (`standard`, `stripe`, …).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// JSON pointer to the event type in the body (e.g. `/event_type`), when no header carries it.
    pub event_type_pointer: Option<String>,
    /// JSON pointer to the provider's delivery id in the body, when no header carries it.
    pub delivery_id_pointer: Option<String>,
    /// Rules tried in order; the first whose `event` matches applies.
    #[serde(default)]
    pub events: Vec<EventRule>,
}

fn default_scheme() -> String {
    "standard".into()
}

/// One event type (or a `prefix.*` family) and what it does to records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRule {
    /// Exact event type (`order.updated`) or a prefix followed by `*` (`order.*`).
    pub event: String,
    /// The resource the event's object belongs to (`orders`).
    pub resource: String,
    pub action: EventAction,
    /// JSON pointer to the object's external id (`/data/id`).
    pub id_pointer: String,
    /// JSON pointer to the object itself (`/data`); absent when the event carries only an id.
    pub data_pointer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventAction {
    /// The event carries the object's new state: store it.
    Upsert,
    /// The object is gone: mark it deleted.
    Delete,
    /// The event carries only an id: fetch the object from the provider.
    Refetch,
}

impl EventRule {
    pub fn matches(&self, event_type: &str) -> bool {
        match self.event.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => self.event == event_type,
        }
    }
}
