//! The environment side of configuration: which `SYNCGUARD_*` variables name which key, and the
//! figment provider that reads them.

use super::{Config, ConfigError};
use serde::Deserialize;

/// Variables of the command line and of tests. They share the `SYNCGUARD_` prefix but are never
/// configuration, even where their name looks like a key (`SYNCGUARD_API_KEY` is not `api.key`).
pub const CLI_VARIABLES: &[&str] = &[
    "SYNCGUARD_API_KEY",
    "SYNCGUARD_URL",
    "SYNCGUARD_CONFIG",
    "SYNCGUARD_BOOTSTRAP_KEY",
    "SYNCGUARD_MASTER_KEY",
    "SYNCGUARD_TEST_POSTGRES_URL",
    "SYNCGUARD_BENCH_KEY",
];

/// The fields of `[queue.kinds.<kind>]`.
pub(super) const KIND_KEYS: &[&str] = &["max_attempts", "timeout_ms"];

/// What an environment variable sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EnvKey {
    /// A key holding one value: `queue.workers`.
    Scalar(String),
    /// A key holding a list, written comma-separated: `egress.allow`.
    List(String),
}

impl EnvKey {
    fn path(&self) -> &str {
        match self {
            EnvKey::Scalar(k) | EnvKey::List(k) => k,
        }
    }
}

/// Every key of the configuration (dotted), with whether it holds a list; `queue.kinds` is
/// left out (its keys are per kind).
pub(super) fn known_keys() -> Vec<(String, bool)> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, bool)>) {
        let serde_json::Value::Object(m) = v else {
            return;
        };
        for (k, v) in m {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                _ if path == "queue.kinds" => {}
                serde_json::Value::Object(_) => walk(&path, v, out),
                _ => out.push((path, v.is_array())),
            }
        }
    }
    let defaults = serde_json::to_value(Config::default()).expect("the configuration serializes");
    let mut out = Vec::new();
    walk("", &defaults, &mut out);
    out
}

/// Maps a variable onto the key it sets:
/// - `SYNCGUARD_<KEY>` → a top-level key (`SYNCGUARD_DATABASE_URL` → `database_url`);
/// - `SYNCGUARD_<SECTION>_<KEY>` → a key of a section (`SYNCGUARD_QUEUE_LEASE_MS` →
///   `queue.lease_ms`);
/// - `SYNCGUARD_QUEUE_KINDS_<KIND>_<KEY>` → `queue.kinds.<kind>.<key>`, where in `<KIND>` a
///   single `_` stands for the `.` of a job kind and `__` for a literal `_`
///   (`SYNCGUARD_QUEUE_KINDS_WEBHOOK_PROCESS_MAX_ATTEMPTS` →
///   `queue.kinds."webhook.process".max_attempts`).
///
/// Variables of the command line ([`CLI_VARIABLES`]) and anything naming no key are not
/// configuration: `None`.
pub(super) fn env_key(var: &str) -> Option<EnvKey> {
    if CLI_VARIABLES.contains(&var) {
        return None;
    }
    let key = var.strip_prefix("SYNCGUARD_")?.to_ascii_lowercase();
    if let Some(rest) = key.strip_prefix("queue_kinds_") {
        let (kind, field) = KIND_KEYS.iter().find_map(|f| {
            rest.strip_suffix(f)
                .and_then(|k| k.strip_suffix('_'))
                .filter(|k| !k.is_empty())
                .map(|k| (k, *f))
        })?;
        let kind = kind
            .replace("__", "\u{0}")
            .replace('_', ".")
            .replace('\u{0}', "_");
        return Some(EnvKey::Scalar(format!("queue.kinds.{kind}.{field}")));
    }
    known_keys().into_iter().find_map(|(path, list)| {
        (path.replace('.', "_") == key).then_some(if list {
            EnvKey::List(path)
        } else {
            EnvKey::Scalar(path)
        })
    })
}

/// `SYNCGUARD_*` variables that are neither configuration nor a known variable of the command
/// line: most likely a misspelt key. They are ignored; `serve` and `config check` name them.
pub fn unrecognized_env_vars() -> Vec<String> {
    let mut vars: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with("SYNCGUARD_")
                && !CLI_VARIABLES.contains(&k.as_str())
                && env_key(k).is_none()
        })
        .collect();
    vars.sort();
    vars
}

/// A list from the environment: comma-separated (`a, b`), or a TOML array (`["a", "b"]`).
pub(super) fn env_list(value: &str) -> Result<Vec<String>, String> {
    let t = value.trim();
    if t.starts_with('[') {
        #[derive(Deserialize)]
        struct L {
            v: Vec<String>,
        }
        return toml::from_str::<L>(&format!("v = {t}"))
            .map(|l| l.v)
            .map_err(|e| e.message().to_string());
    }
    Ok(t.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect())
}

/// The `SYNCGUARD_*` variables that are configuration, as a figment provider.
pub(super) fn env_provider() -> Result<EnvVars, ConfigError> {
    let mut dict = figment::value::Dict::new();
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    vars.sort();
    for (var, value) in vars {
        let Some(key) = env_key(&var) else { continue };
        let value: figment::value::Value = match &key {
            EnvKey::List(_) => env_list(&value)
                .map_err(|e| ConfigError(format!("`{}` ({var}): {e}", key.path())))?
                .into(),
            EnvKey::Scalar(_) => value
                .parse()
                .expect("figment parses any string into a value"),
        };
        insert(&mut dict, key.path(), value);
    }
    Ok(EnvVars(dict))
}

/// The configuration read from the environment, named as such in errors.
pub(super) struct EnvVars(figment::value::Dict);

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("`SYNCGUARD_*` environment variable(s)")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Ok(figment::Profile::Default.collect(self.0.clone()))
    }
}

/// Sets `path` (dotted; a job kind is one segment) in `dict`.
pub(super) fn insert(dict: &mut figment::value::Dict, path: &str, value: figment::value::Value) {
    use figment::value::{Dict, Value};
    let segments: Vec<String> = match path.strip_prefix("queue.kinds.") {
        Some(rest) => {
            let (kind, field) = rest.rsplit_once('.').expect("kind and field");
            vec!["queue".into(), "kinds".into(), kind.into(), field.into()]
        }
        None => path.split('.').map(String::from).collect(),
    };
    let mut cur = dict;
    for seg in &segments[..segments.len() - 1] {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| Value::from(Dict::new()));
        if !matches!(entry, Value::Dict(..)) {
            *entry = Value::from(Dict::new());
        }
        let Value::Dict(_, d) = entry else {
            unreachable!()
        };
        cur = d;
    }
    cur.insert(segments[segments.len() - 1].clone(), value);
}
