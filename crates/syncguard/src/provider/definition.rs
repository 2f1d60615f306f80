//! Provider definitions as data (SPEC §1 "provider", §3.3): what a `providers/*.toml` file
//! says. Parsing and checking live in [`super::load`]; this module is only the shapes, so a
//! reader can see the whole file format in one place.
//!
//! A definition with a `base_url` describes an API syncguard calls (auth, pagination, rate
//! limit, resources, writes, error rules); one without is webhook-only (Shopify, Stripe,
//! GitHub): syncguard only receives and verifies its webhooks.
//!
//! [`WebhookDef`], [`EventRule`] and [`EventAction`] are a contract with the webhook gateway,
//! which reads them through [`super::ProviderState::webhook_def`] and
//! [`super::ProviderState::event_rule`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use syncguard_core::breaker::BreakerConfig;
use syncguard_core::class::ErrorClass;
use syncguard_core::limiter::LimitConfig;

/// One provider, as written in its TOML file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// The name connections refer to (`provider = "trackstar"`): lowercase letters, digits,
    /// `_` and `-`.
    pub name: String,
    pub display_name: Option<String>,
    pub description: Option<String>,
    /// Where the API lives; a connection's `config.base_url` overrides it (the mock, a
    /// sandbox). Absent for webhook-only providers.
    pub base_url: Option<String>,
    /// Whole-request timeout of one call (connect, send, read the body).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: u64,
    /// Largest answer read from the API, in bytes (default [`DEFAULT_MAX_RESPONSE_BYTES`]).
    /// A larger answer fails the call as permanent without being read whole: the same request
    /// would bring the same answer, and memory must not be the provider's to spend.
    pub max_response_bytes: Option<u64>,
    pub auth: Option<AuthDef>,
    /// Required when `base_url` is set: a call never leaves faster than this.
    pub rate_limit: Option<RateLimitDef>,
    /// Breaker tunables; each field defaults to the SPEC value, and a connection's
    /// `config.circuit` overrides single fields.
    #[serde(default)]
    pub circuit: BreakerConfig,
    /// How lists are paged, unless a resource says otherwise.
    pub pagination: Option<PaginationDef>,
    #[serde(default)]
    pub resources: BTreeMap<String, ResourceDef>,
    /// Write operations by name (`upsert_inventory_item`), used by publish.
    #[serde(default)]
    pub writes: BTreeMap<String, WriteDef>,
    pub webhook: Option<WebhookDef>,
    /// Tried in order before the default status classification.
    #[serde(default)]
    pub errors: Vec<ErrorRule>,
}

/// 8 MiB: far above any page a provider sends, far below what hurts a node.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

fn default_timeout_s() -> u64 {
    30
}

/// How credentials become request headers. Every field name refers to a key of the
/// connection's (sealed) `credentials` object.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthDef {
    /// Fixed headers filled from credential fields, e.g. Trackstar's pair
    /// `{"x-trackstar-api-key" = "api_key", "x-trackstar-access-token" = "access_token"}`.
    ApiKey { headers: BTreeMap<String, String> },
    /// `Authorization: Bearer <credentials[field]>`, a token that does not expire.
    Bearer {
        #[serde(default = "default_token_field")]
        field: String,
    },
    /// OAuth2 access tokens from `token_url`, cached until shortly before they expire and
    /// refreshed once on a 401. The grant is `refresh_token` when the credentials hold one,
    /// else `client_credentials`.
    Oauth2 {
        /// Absolute, or a path joined onto the connection's base URL (so the mock serves it).
        token_url: String,
        #[serde(default)]
        scopes: Vec<String>,
        /// `basic` (HTTP Basic, RFC 6749 §2.3.1) or `body` (form fields).
        #[serde(default)]
        client_auth: ClientAuth,
    },
}

fn default_token_field() -> String {
    "access_token".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    Basic,
    Body,
}

impl AuthDef {
    pub fn kind(&self) -> &'static str {
        match self {
            AuthDef::ApiKey { .. } => "api_key",
            AuthDef::Bearer { .. } => "bearer",
            AuthDef::Oauth2 { .. } => "oauth2",
        }
    }
}

/// The provider's documented limit, per credential.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDef {
    pub rps: f64,
    /// Keep this below the provider's own bucket: the difference absorbs network jitter between
    /// the moment syncguard admits a call and the moment it reaches the provider.
    pub burst: u32,
    pub per_minute: Option<u32>,
    pub per_hour: Option<u32>,
    pub per_day: Option<u32>,
    /// How long a call may wait for its turn (or for a provider's `Retry-After`) before it
    /// fails as `rate_limited` and the queue reschedules it.
    #[serde(default = "default_max_wait_s")]
    pub max_wait_s: u64,
}

fn default_max_wait_s() -> u64 {
    30
}

impl RateLimitDef {
    pub fn limit(&self) -> LimitConfig {
        LimitConfig {
            rps: self.rps,
            burst: self.burst,
            per_minute: self.per_minute,
            per_hour: self.per_hour,
            per_day: self.per_day,
        }
    }
}

/// How one list is paged. Pointers are RFC 6901 JSON pointers into the response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaginationDef {
    pub style: PaginationStyle,
    /// Where the page's items are; `""` when the body is the array itself.
    #[serde(default)]
    pub items: String,
    /// `next_token`/`cursor`: the query parameter that carries the token back.
    pub param: Option<String>,
    /// `next_token`/`cursor`: where the next token is; null, empty or absent ends the list.
    pub next: Option<String>,
    /// `cursor`: a boolean saying whether another page exists (Stripe's `has_more`).
    pub has_more: Option<String>,
    /// The page-size parameter and the size asked for.
    pub limit_param: Option<String>,
    pub page_size: Option<u32>,
    /// `offset`: the offset parameter, and where the total count is (when the provider says).
    pub offset_param: Option<String>,
    pub total: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaginationStyle {
    /// Trackstar: `{data, next_token}`, sent back as `page_token`.
    NextToken,
    /// An opaque cursor in the body, optionally with a `has_more` flag.
    Cursor,
    /// `offset` + `limit`, ending at `total` or at a short page.
    Offset,
    /// RFC 8288 `Link: <…>; rel="next"` (GitHub, Shopify REST).
    Link,
}

impl PaginationStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            PaginationStyle::NextToken => "next_token",
            PaginationStyle::Cursor => "cursor",
            PaginationStyle::Offset => "offset",
            PaginationStyle::Link => "link",
        }
    }
}

/// One kind of object syncguard mirrors.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDef {
    /// The list endpoint, joined onto the base URL.
    pub path: String,
    /// Pointer to the object's external id in one item.
    #[serde(default = "default_id")]
    pub id: String,
    /// Pointer to the object's last-modified time (the incremental-sync cursor field).
    pub updated_at: Option<String>,
    /// Query parameter filtering the list to objects changed since a time; without one every
    /// listing is a full listing.
    pub since_param: Option<String>,
    #[serde(default)]
    pub since_format: TimeFormat,
    /// Path template (`…/{id}`) reading one object; without one the resource cannot be
    /// refetched or reconciled object by object.
    pub get: Option<String>,
    /// Fixed query parameters added to every list call.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Overrides the provider-wide pagination.
    pub pagination: Option<PaginationDef>,
}

fn default_id() -> String {
    "/id".into()
}

/// How a time travels in a query parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-01-02T03:04:05.678Z`.
    #[default]
    Rfc3339,
    UnixSeconds,
    UnixMillis,
}

/// One write operation (publish).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteDef {
    /// The resource the written object belongs to.
    pub resource: String,
    /// `PUT`, `POST`, `PATCH` or `DELETE`.
    pub method: String,
    /// Path template; `{id}` is replaced by the percent-encoded external id.
    pub path: String,
    /// Header carrying the publish's idempotency key, where the provider honours one.
    pub idempotency_header: Option<String>,
}

/// Overrides the class of an error answer: `status` matches, and when `pointer` is given the
/// body's value there must equal `equals`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRule {
    pub status: u16,
    pub pointer: Option<String>,
    pub equals: Option<serde_json::Value>,
    pub class: ErrorClass,
    /// Why, for the error message (`"the integration does not support this resource"`).
    pub reason: Option<String>,
}

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

impl ProviderDef {
    /// Whether syncguard calls this provider's API (rather than only receiving its webhooks).
    pub fn has_api(&self) -> bool {
        self.base_url.is_some()
    }

    /// The most bytes of one answer this provider's calls read.
    pub fn response_limit(&self) -> u64 {
        self.max_response_bytes
            .unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceDef> {
        self.resources.get(name)
    }

    /// The pagination of `resource`'s lists: its own, else the provider's.
    pub fn pagination_of<'a>(&'a self, resource: &'a ResourceDef) -> Option<&'a PaginationDef> {
        resource.pagination.as_ref().or(self.pagination.as_ref())
    }
}

impl ResourceDef {
    /// The external id of one item, as a string (numbers are written in decimal).
    pub fn id_of(&self, item: &serde_json::Value) -> Option<String> {
        match item.pointer(&self.id)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The item's last-modified time in Unix milliseconds, when it has a readable one (RFC 3339
    /// strings, or numbers in `since_format`'s unit). `None` is a row the sync must still store
    /// and report, never skip (SPEC §3.4).
    pub fn updated_at_of(&self, item: &serde_json::Value) -> Option<i64> {
        let value = item.pointer(self.updated_at.as_deref()?)?;
        super::time::parse_instant(value, self.since_format)
    }
}
