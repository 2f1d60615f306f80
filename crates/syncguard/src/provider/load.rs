//! Loading provider definitions: the built-in files compiled into the binary, then the files
//! named by `provider_files`. A definition that cannot be used stops the start with the file,
//! the key and the reason — a provider that half works would fail much later, in a job, at
//! 3 a.m.

use super::definition::{
    AuthDef, EventAction, PaginationDef, PaginationStyle, ProviderDef, WebhookDef,
};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The definitions shipped with syncguard (`providers/*.toml` at the workspace root).
const BUILTIN: &[(&str, &str)] = &[
    (
        "providers/trackstar.toml",
        include_str!("../../../../providers/trackstar.toml"),
    ),
    (
        "providers/ebay.toml",
        include_str!("../../../../providers/ebay.toml"),
    ),
    (
        "providers/shopify.toml",
        include_str!("../../../../providers/shopify.toml"),
    ),
    (
        "providers/stripe.toml",
        include_str!("../../../../providers/stripe.toml"),
    ),
    (
        "providers/github.toml",
        include_str!("../../../../providers/github.toml"),
    ),
];

/// A definition that cannot be used: which file, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider definition {file}: `{key}`: {reason}")]
pub struct DefinitionError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// A loaded definition and where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub def: Arc<ProviderDef>,
    /// `built-in` or `file`.
    pub source: &'static str,
}

/// Every built-in definition plus those in `files`, by name.
pub fn load_all(files: &[String]) -> Result<BTreeMap<String, Loaded>, DefinitionError> {
    let mut out: BTreeMap<String, (Loaded, String)> = BTreeMap::new();
    let mut add = |file: &str, text: &str, source: &'static str| -> Result<(), DefinitionError> {
        let def = parse(file, text)?;
        if let Some((_, first)) = out.get(&def.name) {
            return Err(DefinitionError {
                file: file.into(),
                key: "name".into(),
                reason: format!("provider `{}` is already defined by {first}", def.name),
            });
        }
        let name = def.name.clone();
        out.insert(
            name,
            (
                Loaded {
                    def: Arc::new(def),
                    source,
                },
                file.to_string(),
            ),
        );
        Ok(())
    };
    for (file, text) in BUILTIN {
        add(file, text, "built-in")?;
    }
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| DefinitionError {
            file: file.clone(),
            key: "provider_files".into(),
            reason: format!("cannot read the file: {e}"),
        })?;
        add(file, &text, "file")?;
    }
    Ok(out
        .into_iter()
        .map(|(k, (loaded, _))| (k, loaded))
        .collect())
}

/// Parses and checks one definition; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<ProviderDef, DefinitionError> {
    let de = toml::Deserializer::new(text);
    let def: ProviderDef = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let line = inner
            .span()
            .map(|s| {
                format!(
                    " (line {})",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_default();
        DefinitionError {
            file: file.into(),
            key: if key == "." { "(file)".into() } else { key },
            reason: format!("{}{line}", inner.message().trim()),
        }
    })?;
    validate(&def).map_err(|(key, reason)| DefinitionError {
        file: file.into(),
        key,
        reason,
    })?;
    Ok(def)
}

type Invalid = (String, String);

fn bad<T>(key: impl Into<String>, reason: impl Into<String>) -> Result<T, Invalid> {
    Err((key.into(), reason.into()))
}

/// What the types alone cannot say. Each error names the key at fault.
fn validate(def: &ProviderDef) -> Result<(), Invalid> {
    let valid_name = !def.name.is_empty()
        && def.name.len() <= 64
        && def
            .name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-');
    if !valid_name {
        return bad("name", "1 to 64 lowercase letters, digits, `_` or `-`");
    }
    if def.timeout_s == 0 || def.timeout_s > 600 {
        return bad("timeout_s", "must be between 1 and 600");
    }
    if def
        .max_response_bytes
        .is_some_and(|n| !(1024..=1 << 30).contains(&n))
    {
        return bad(
            "max_response_bytes",
            "must be between 1024 and 1073741824 (1 GiB)",
        );
    }
    def.circuit
        .validate()
        .or_else(|e| bad(format!("circuit.{}", e.field), e.reason))?;
    match &def.base_url {
        Some(url) => validate_api(def, url)?,
        None => {
            for key in ["auth", "rate_limit", "pagination"] {
                let present = match key {
                    "auth" => def.auth.is_some(),
                    "rate_limit" => def.rate_limit.is_some(),
                    _ => def.pagination.is_some(),
                };
                if present {
                    return bad(key, "only an API definition (with `base_url`) can have it");
                }
            }
            if !def.resources.is_empty() || !def.writes.is_empty() {
                return bad("base_url", "resources and writes need an API to call");
            }
            if def.webhook.is_none() {
                return bad(
                    "base_url",
                    "a definition needs an API (`base_url`) or a `[webhook]` section",
                );
            }
        }
    }
    for (i, rule) in def.errors.iter().enumerate() {
        let key = |f: &str| format!("errors[{i}].{f}");
        if !(400..=599).contains(&rule.status) {
            return bad(key("status"), "must be an error status (400-599)");
        }
        if let Some(p) = &rule.pointer {
            pointer(&key("pointer"), p)?;
        }
        if rule.pointer.is_some() != rule.equals.is_some() {
            return bad(key("equals"), "`pointer` and `equals` go together");
        }
    }
    if let Some(webhook) = &def.webhook {
        validate_webhook(def, webhook)?;
    }
    Ok(())
}

fn validate_api(def: &ProviderDef, url: &str) -> Result<(), Invalid> {
    http_url("base_url", url)?;
    let Some(rate) = &def.rate_limit else {
        return bad(
            "rate_limit",
            "required for an API: calls must never leave faster than the provider allows",
        );
    };
    rate.limit()
        .validate()
        .or_else(|e| bad(format!("rate_limit.{}", e.field), e.reason))?;
    if rate.max_wait_s > 3_600 {
        return bad("rate_limit.max_wait_s", "must be at most 3600");
    }
    match &def.auth {
        None => return bad("auth", "required for an API"),
        Some(AuthDef::ApiKey { headers }) => {
            if headers.is_empty() {
                return bad("auth.headers", "name at least one header");
            }
            for name in headers.keys() {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return bad(format!("auth.headers.{name}"), "not a valid header name");
                }
            }
        }
        Some(AuthDef::Bearer { field }) if field.is_empty() => {
            return bad("auth.field", "must not be empty")
        }
        Some(AuthDef::Bearer { .. }) => {}
        Some(AuthDef::Oauth2 { token_url, .. }) => {
            if !token_url.starts_with('/') {
                http_url("auth.token_url", token_url)?;
            }
        }
    }
    if let Some(p) = &def.pagination {
        validate_pagination("pagination", p)?;
    }
    for (name, res) in &def.resources {
        let key = |f: &str| format!("resources.{name}.{f}");
        path(&key("path"), &res.path)?;
        pointer(&key("id"), &res.id)?;
        if let Some(p) = &res.updated_at {
            pointer(&key("updated_at"), p)?;
        }
        if let Some(get) = &res.get {
            path(&key("get"), get)?;
            if !get.contains("{id}") {
                return bad(key("get"), "must contain `{id}`");
            }
        }
        match &res.pagination {
            Some(p) => validate_pagination(&key("pagination"), p)?,
            None if def.pagination.is_none() => {
                return bad(
                    key("pagination"),
                    "no pagination here nor at the top of the file",
                )
            }
            None => {}
        }
    }
    for (name, w) in &def.writes {
        let key = |f: &str| format!("writes.{name}.{f}");
        if !def.resources.contains_key(&w.resource) {
            return bad(
                key("resource"),
                format!("unknown resource `{}`", w.resource),
            );
        }
        if !["PUT", "POST", "PATCH", "DELETE"].contains(&w.method.as_str()) {
            return bad(key("method"), "must be PUT, POST, PATCH or DELETE");
        }
        path(&key("path"), &w.path)?;
        if let Some(h) = &w.idempotency_header {
            if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return bad(key("idempotency_header"), "not a valid header name");
            }
        }
    }
    Ok(())
}

fn validate_pagination(key: &str, p: &PaginationDef) -> Result<(), Invalid> {
    let field = |f: &str| format!("{key}.{f}");
    pointer(&field("items"), &p.items)?;
    for (name, value) in [
        ("next", &p.next),
        ("has_more", &p.has_more),
        ("total", &p.total),
    ] {
        if let Some(v) = value {
            pointer(&field(name), v)?;
        }
    }
    let need = |name: &str, present: bool| {
        if present {
            Ok(())
        } else {
            bad(
                field(name),
                format!("required by style `{}`", p.style.as_str()),
            )
        }
    };
    match p.style {
        PaginationStyle::NextToken | PaginationStyle::Cursor => {
            need("param", p.param.is_some())?;
            need("next", p.next.is_some())?;
        }
        PaginationStyle::Offset => {
            need("offset_param", p.offset_param.is_some())?;
            need("limit_param", p.limit_param.is_some())?;
            need("page_size", p.page_size.is_some())?;
        }
        PaginationStyle::Link => {}
    }
    if p.page_size == Some(0) {
        return bad(field("page_size"), "must be at least 1");
    }
    if p.page_size.is_some() && p.limit_param.is_none() {
        return bad(
            field("limit_param"),
            "`page_size` needs the parameter that carries it",
        );
    }
    Ok(())
}

fn validate_webhook(def: &ProviderDef, w: &WebhookDef) -> Result<(), Invalid> {
    const SCHEMES: [&str; 5] = ["standard", "stripe", "shopify", "github", "hmac-sha256"];
    if !SCHEMES.contains(&w.scheme.as_str()) {
        return bad(
            "webhook.scheme",
            format!("unknown scheme (expected one of {})", SCHEMES.join(", ")),
        );
    }
    for (name, p) in [
        ("event_type_pointer", &w.event_type_pointer),
        ("delivery_id_pointer", &w.delivery_id_pointer),
    ] {
        if let Some(p) = p {
            pointer(&format!("webhook.{name}"), p)?;
        }
    }
    for (i, rule) in w.events.iter().enumerate() {
        let key = |f: &str| format!("webhook.events[{i}].{f}");
        let star = rule.event.find('*');
        if rule.event.is_empty() || star.is_some_and(|at| at + 1 != rule.event.len()) {
            return bad(key("event"), "an event type, or a prefix ending in `*`");
        }
        if rule.resource.is_empty() {
            return bad(key("resource"), "must not be empty");
        }
        if !def.resources.is_empty() && !def.resources.contains_key(&rule.resource) {
            return bad(
                key("resource"),
                format!("unknown resource `{}`", rule.resource),
            );
        }
        pointer(&key("id_pointer"), &rule.id_pointer)?;
        if let Some(p) = &rule.data_pointer {
            pointer(&key("data_pointer"), p)?;
        }
        let can_fetch = def
            .resources
            .get(&rule.resource)
            .is_some_and(|r| r.get.is_some());
        if rule.action == EventAction::Refetch && !can_fetch {
            return bad(key("action"), "`refetch` needs the resource's `get` path");
        }
        if rule.action == EventAction::Upsert && rule.data_pointer.is_none() {
            return bad(
                key("data_pointer"),
                "`upsert` needs the object: give its pointer",
            );
        }
    }
    Ok(())
}

/// RFC 6901: empty (the whole document) or starting with `/`.
fn pointer(key: &str, p: &str) -> Result<(), Invalid> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        bad(
            key,
            format!("`{p}` is not a JSON pointer (it must start with `/`)"),
        )
    }
}

fn path(key: &str, p: &str) -> Result<(), Invalid> {
    if p.starts_with('/') && !p.contains("://") {
        Ok(())
    } else {
        bad(key, format!("`{p}` must be a path starting with `/`"))
    }
}

fn http_url(key: &str, url: &str) -> Result<(), Invalid> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => bad(key, format!("`{url}` is not an http(s) URL")),
    }
}
