//! A connection's webhook config (SPEC Appendix A, `config.webhook`) and its validation.
//!
//! ```json
//! {"scheme": "standard", "secrets": ["whsec_…"], "tolerance_s": 300,
//!  "header": "x-signature", "prefix": "sha256=", "encoding": "hex"}
//! ```
//!
//! `scheme` defaults to `standard` and `tolerance_s` to 300; `header`, `prefix` and `encoding`
//! belong to `hmac-sha256` only and are refused elsewhere, so a typo'd scheme cannot silently
//! ignore them.

use std::fmt;

use base64::Engine;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::{standard, BASE64};

/// Timestamps further than this from now are refused unless the config says otherwise.
pub const DEFAULT_TOLERANCE_S: i64 = 300;

/// How a provider signs its webhooks (SPEC §3.2 table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scheme", rename_all = "kebab-case")]
pub enum Scheme {
    /// Standard Webhooks, as sent by Svix and syncguard itself: `webhook-id`,
    /// `webhook-timestamp`, `webhook-signature` (or their `svix-` twins) over
    /// `{id}.{timestamp}.{body}`; `v1` HMAC-SHA256 with `whsec_` secrets, `v1a` ed25519 with
    /// `whpk_` public keys.
    Standard,
    /// `Stripe-Signature: t=…,v1=…` over `{t}.{body}`, hex HMAC-SHA256 keyed by the whole
    /// `whsec_…` string.
    Stripe,
    /// Base64 HMAC-SHA256 of the body in `X-Shopify-Hmac-Sha256`.
    Shopify,
    /// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
    Github,
    /// HMAC-SHA256 of the body in a configurable header, for providers with no scheme of their
    /// own.
    HmacSha256 {
        /// Lowercase header name.
        header: String,
        /// Text before the MAC in the header value (such as `sha256=`), if any.
        prefix: Option<String>,
        encoding: Encoding,
    },
}

impl Scheme {
    /// The config name of the scheme, also fit for a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::Standard => "standard",
            Scheme::Stripe => "stripe",
            Scheme::Shopify => "shopify",
            Scheme::Github => "github",
            Scheme::HmacSha256 { .. } => "hmac-sha256",
        }
    }
}

/// How a MAC is written in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Hex,
    Base64,
}

impl Encoding {
    /// The config name of the encoding.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }

    pub(super) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
        }
    }

    pub(super) fn decode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => BASE64.decode(text).ok(),
        }
    }
}

/// A secret as verification uses it, decoded at config time.
#[derive(Clone)]
pub(super) enum Key {
    /// HMAC key bytes: the decoded `whsec_` payload for `standard`, the secret's own bytes for
    /// every other scheme.
    Hmac(Vec<u8>),
    /// A `whpk_` public key, for `standard` `v1a` signatures.
    Ed25519(VerifyingKey),
}

impl Key {
    /// The HMAC key, if this is one. Only `standard` configs hold ed25519 keys, so for every
    /// other scheme this is always `Some`.
    pub(super) fn hmac(&self) -> Option<&[u8]> {
        match self {
            Key::Hmac(secret) => Some(secret),
            Key::Ed25519(_) => None,
        }
    }
}

/// A connection's validated webhook authentication.
#[derive(Clone)]
pub struct WebhookAuth {
    scheme: Scheme,
    /// One per configured secret, in config order, so [`super::Verified::secret_index`] points
    /// back into the config.
    keys: Vec<Key>,
    tolerance_s: i64,
}

impl WebhookAuth {
    /// Validates `secrets` for `scheme` and decodes them. `tolerance_s` must not be negative.
    pub fn new<I>(scheme: Scheme, secrets: I, tolerance_s: i64) -> Result<Self, ConfigError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let scheme = normalize_scheme(scheme)?;
        if tolerance_s < 0 {
            return Err(ConfigError::new("tolerance_s", "must not be negative"));
        }
        let keys = secrets
            .into_iter()
            .enumerate()
            .map(|(index, secret)| {
                parse_key(&scheme, secret.as_ref())
                    .map_err(|reason| ConfigError::new(format!("secrets[{index}]"), reason))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(ConfigError::new(
                "secrets",
                "at least one secret is required",
            ));
        }
        Ok(Self {
            scheme,
            keys,
            tolerance_s,
        })
    }

    /// Reads the Appendix A shape (the `webhook` object of a connection's config).
    pub fn from_config(config: &Value) -> Result<Self, ConfigError> {
        let object = config
            .as_object()
            .ok_or_else(|| ConfigError::new("", "must be an object"))?;
        const KNOWN: [&str; 6] = [
            "scheme",
            "secrets",
            "tolerance_s",
            "header",
            "prefix",
            "encoding",
        ];
        if let Some(unknown) = object.keys().find(|key| !KNOWN.contains(&key.as_str())) {
            return Err(ConfigError::new(unknown.clone(), "unknown field"));
        }
        let tolerance_s = match object.get("tolerance_s") {
            None | Some(Value::Null) => DEFAULT_TOLERANCE_S,
            Some(value) => value.as_i64().ok_or_else(|| {
                ConfigError::new("tolerance_s", "must be a whole number of seconds")
            })?,
        };
        Self::new(
            scheme_from_config(object)?,
            secrets_from_config(object)?,
            tolerance_s,
        )
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub fn tolerance_s(&self) -> i64 {
        self.tolerance_s
    }

    /// How many secrets are configured (the secrets themselves never leave this type).
    pub fn secret_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn keys(&self) -> &[Key] {
        &self.keys
    }
}

/// Accepts the Appendix A shape from any serde format (JSON, TOML, …).
impl<'de> Deserialize<'de> for WebhookAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_config(&value).map_err(serde::de::Error::custom)
    }
}

/// Shows the scheme and how many secrets there are, never the secrets, so a config can be
/// logged.
impl fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookAuth")
            .field("scheme", &self.scheme)
            .field("secrets", &format_args!("[{} redacted]", self.keys.len()))
            .field("tolerance_s", &self.tolerance_s)
            .finish()
    }
}

/// A config field that cannot be used, and why. The field is a path inside the webhook config
/// (`secrets[1]`, `header`); the reason never quotes a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webhook{}{field}: {reason}", if field.is_empty() { "" } else { "." })]
pub struct ConfigError {
    field: String,
    reason: String,
}

impl ConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The offending field, relative to the webhook config object; empty for the object itself.
    pub fn field(&self) -> &str {
        &self.field
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

fn scheme_from_config(object: &Map<String, Value>) -> Result<Scheme, ConfigError> {
    let header = optional_str(object, "header")?;
    let prefix = optional_str(object, "prefix")?;
    let encoding = optional_str(object, "encoding")?;
    let scheme = match optional_str(object, "scheme")?.unwrap_or("standard") {
        "standard" => Scheme::Standard,
        "stripe" => Scheme::Stripe,
        "shopify" => Scheme::Shopify,
        "github" => Scheme::Github,
        "hmac-sha256" => {
            let header = header
                .ok_or_else(|| ConfigError::new("header", "is required for scheme hmac-sha256"))?;
            let encoding = match encoding {
                None | Some("hex") => Encoding::Hex,
                Some("base64") => Encoding::Base64,
                Some(_) => {
                    return Err(ConfigError::new(
                        "encoding",
                        "must be \"hex\" or \"base64\"",
                    ))
                }
            };
            return Ok(Scheme::HmacSha256 {
                header: header.to_owned(),
                prefix: prefix.map(str::to_owned),
                encoding,
            });
        }
        _ => {
            return Err(ConfigError::new(
                "scheme",
                "must be one of standard, stripe, shopify, github, hmac-sha256",
            ))
        }
    };
    for (field, value) in [
        ("header", header),
        ("prefix", prefix),
        ("encoding", encoding),
    ] {
        if value.is_some() {
            return Err(ConfigError::new(
                field,
                "only applies to scheme hmac-sha256",
            ));
        }
    }
    Ok(scheme)
}

fn secrets_from_config(object: &Map<String, Value>) -> Result<Vec<&str>, ConfigError> {
    object
        .get("secrets")
        .ok_or_else(|| ConfigError::new("secrets", "is required"))?
        .as_array()
        .ok_or_else(|| ConfigError::new("secrets", "must be an array of strings"))?
        .iter()
        .enumerate()
        .map(|(index, secret)| {
            secret
                .as_str()
                .ok_or_else(|| ConfigError::new(format!("secrets[{index}]"), "must be a string"))
        })
        .collect()
}

fn optional_str<'v>(
    object: &'v Map<String, Value>,
    field: &str,
) -> Result<Option<&'v str>, ConfigError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ConfigError::new(field, "must be a string")),
    }
}

/// Lowercases the configured header name (lookups are by lowercase name) and drops an empty
/// prefix.
fn normalize_scheme(scheme: Scheme) -> Result<Scheme, ConfigError> {
    let Scheme::HmacSha256 {
        header,
        prefix,
        encoding,
    } = scheme
    else {
        return Ok(scheme);
    };
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if header.is_empty() || !header.chars().all(is_token_char) {
        return Err(ConfigError::new(
            "header",
            "must be a valid http header name",
        ));
    }
    Ok(Scheme::HmacSha256 {
        header: header.to_ascii_lowercase(),
        prefix: prefix.filter(|p| !p.is_empty()),
        encoding,
    })
}

fn parse_key(scheme: &Scheme, secret: &str) -> Result<Key, &'static str> {
    if secret.is_empty() {
        return Err("must not be empty");
    }
    // A pasted secret with a stray newline would otherwise never match, with no hint why.
    if secret.trim() != secret {
        return Err("must not start or end with whitespace");
    }
    match scheme {
        Scheme::Standard => standard::parse_verification_key(secret),
        _ => Ok(Key::Hmac(secret.as_bytes().to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(config: Value) -> ConfigError {
        WebhookAuth::from_config(&config).unwrap_err()
    }

    #[test]
    fn defaults_to_standard_with_300_s() {
        let auth = WebhookAuth::from_config(
            &json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]}),
        )
        .unwrap();
        assert_eq!(auth.scheme(), &Scheme::Standard);
        assert_eq!(auth.tolerance_s(), 300);
        assert_eq!(auth.secret_count(), 1);
    }

    #[test]
    fn reads_every_field() {
        let auth = WebhookAuth::from_config(&json!({
            "scheme": "hmac-sha256", "secrets": ["a", "b"], "tolerance_s": 60,
            "header": "X-Signature", "prefix": "sha256=", "encoding": "base64"
        }))
        .unwrap();
        assert_eq!(
            auth.scheme(),
            &Scheme::HmacSha256 {
                header: "x-signature".into(),
                prefix: Some("sha256=".into()),
                encoding: Encoding::Base64
            }
        );
        assert_eq!(auth.tolerance_s(), 60);
        assert_eq!(auth.secret_count(), 2);
    }

    #[test]
    fn deserializes_from_serde_formats() {
        let auth: WebhookAuth =
            serde_json::from_str(r#"{"scheme": "github", "secrets": ["s3cret"]}"#).unwrap();
        assert_eq!(auth.scheme(), &Scheme::Github);
        let err = serde_json::from_str::<WebhookAuth>(r#"{"scheme": "gitlab", "secrets": ["x"]}"#)
            .unwrap_err();
        assert!(err.to_string().contains("webhook.scheme"), "{err}");
    }

    #[test]
    fn scheme_serializes_to_the_config_shape() {
        let scheme = Scheme::HmacSha256 {
            header: "x-sig".into(),
            prefix: None,
            encoding: Encoding::Hex,
        };
        assert_eq!(
            serde_json::to_value(&scheme).unwrap(),
            json!({"scheme": "hmac-sha256", "header": "x-sig", "prefix": null, "encoding": "hex"})
        );
        assert_eq!(
            serde_json::to_value(Scheme::Standard).unwrap(),
            json!({"scheme": "standard"})
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (json!({"scheme": "gitlab", "secrets": ["x"]}), "scheme"),
            (json!({"scheme": "hmac-sha256", "secrets": ["x"]}), "header"),
            (
                json!({"scheme": "hmac-sha256", "header": "x y", "secrets": ["x"]}),
                "header",
            ),
            (
                json!({"scheme": "hmac-sha256", "header": "x", "encoding": "b64", "secrets": ["x"]}),
                "encoding",
            ),
            (
                json!({"scheme": "github", "header": "x", "secrets": ["x"]}),
                "header",
            ),
            (json!({"scheme": "github"}), "secrets"),
            (json!({"scheme": "github", "secrets": []}), "secrets"),
            (json!({"scheme": "github", "secrets": "x"}), "secrets"),
            (
                json!({"scheme": "github", "secrets": ["x", 1]}),
                "secrets[1]",
            ),
            (
                json!({"scheme": "github", "secrets": ["x", ""]}),
                "secrets[1]",
            ),
            (
                json!({"scheme": "github", "secrets": ["x\n"]}),
                "secrets[0]",
            ),
            (json!({"secrets": ["whsec_not base64!"]}), "secrets[0]"),
            (json!({"secrets": ["whsec_"]}), "secrets[0]"),
            (
                json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whpk_AAAA"]}),
                "secrets[1]",
            ),
            (json!({"secrets": ["whsk_AAAA"]}), "secrets[0]"),
            (
                json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "tolerance_s": -1}),
                "tolerance_s",
            ),
            (
                json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "tolerance_s": "300"}),
                "tolerance_s",
            ),
            (
                json!({"secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"], "tolerence_s": 1}),
                "tolerence_s",
            ),
            (json!(["whsec_x"]), ""),
        ];
        for (config, field) in cases {
            let err = error(config.clone());
            assert_eq!(err.field(), field, "{config} -> {err}");
            assert_eq!(err.to_string(), err.to_string().to_lowercase(), "{err}");
        }
    }

    #[test]
    fn root_error_reads_well() {
        assert_eq!(error(json!([])).to_string(), "webhook: must be an object");
        assert_eq!(
            error(json!({"scheme": "gitlab", "secrets": ["x"]})).to_string(),
            "webhook.scheme: must be one of standard, stripe, shopify, github, hmac-sha256"
        );
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        let secret = "whsec_not base64 at all";
        let err = error(json!({"secrets": [secret]}));
        assert!(!err.to_string().contains("not base64 at all"), "{err}");

        let auth =
            WebhookAuth::from_config(&json!({"scheme": "stripe", "secrets": ["whsec_topsecret"]}))
                .unwrap();
        let debug = format!("{auth:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
        assert!(debug.contains("1 redacted"), "{debug}");
    }

    #[test]
    fn stripe_secrets_are_not_decoded() {
        // Stripe keys HMAC with the `whsec_…` string itself, so anything non-empty is usable.
        assert!(WebhookAuth::from_config(
            &json!({"scheme": "stripe", "secrets": ["whsec_not base64!"]})
        )
        .is_ok());
    }
}
