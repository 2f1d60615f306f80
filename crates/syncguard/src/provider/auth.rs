//! Credentials and how they become request headers (SPEC §3.3 "Auth"): API key headers
//! (Trackstar's pair is two of them), bearer tokens, and OAuth2 access tokens that are cached per
//! credential, shared by every call of the node, and refreshed once on a 401.
//!
//! Credentials are opened from the connection's sealed column only for the call being made and
//! never logged: [`Credentials`] prints as `Credentials([redacted])`, and header values are
//! marked sensitive.

use super::definition::{AuthDef, ClientAuth};
use super::error::{excerpt, ProviderError};
use super::ProviderCtx;
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use syncguard_core::class::ErrorClass;

/// Largest OAuth2 token answer read (a token answer is a few hundred bytes).
const TOKEN_ANSWER_LIMIT: u64 = 64 * 1024;

/// Tokens are renewed this long before the provider says they expire, so a call never leaves
/// with a token that dies on the way.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// A connection's opened credentials: a JSON object of strings.
#[derive(Clone)]
pub struct Credentials(Map<String, Value>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([redacted])")
    }
}

impl Credentials {
    pub fn from_json(bytes: &[u8]) -> Result<Credentials, ProviderError> {
        match serde_json::from_slice(bytes) {
            Ok(Value::Object(map)) => Ok(Credentials(map)),
            _ => Err(ProviderError::permanent(
                "stored credentials are not a JSON object",
            )),
        }
    }

    pub fn empty() -> Credentials {
        Credentials(Map::new())
    }

    /// A field as text (numbers are accepted, some providers issue numeric ids).
    pub fn field(&self, name: &str) -> Option<String> {
        match self.0.get(name)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    fn require(&self, name: &str) -> Result<String, ProviderError> {
        self.field(name).ok_or_else(|| {
            ProviderError::permanent(format!("the connection's credentials lack `{name}`"))
        })
    }

    /// Names the provider account these credentials act as, without revealing them: the
    /// provider's rate limit applies per credential, so connections sharing one share a limiter.
    pub fn fingerprint(&self, provider: &str) -> String {
        let canonical = syncguard_core::canonical::canonical_bytes(&Value::Object(self.0.clone()));
        let mut h = Sha256::new();
        h.update(b"syncguard-credential\0");
        h.update(provider.as_bytes());
        h.update(b"\0");
        h.update(&canonical);
        format!("{provider}:{}", hex::encode(&h.finalize()[..12]))
    }
}

/// OAuth2 access tokens by credential fingerprint, for the life of the node.
#[derive(Default)]
pub struct TokenCache {
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<TokenSlot>>>>,
}

impl TokenCache {
    fn slot(&self, fingerprint: &str) -> Arc<tokio::sync::Mutex<TokenSlot>> {
        let mut slots = self.slots.lock().expect("token cache lock");
        slots.entry(fingerprint.to_string()).or_default().clone()
    }
}

/// One credential's current token. Behind an async mutex so that concurrent calls needing a
/// new token wait for one request to the token endpoint instead of each making their own.
#[derive(Default)]
struct TokenSlot {
    token: Option<Token>,
    /// A refresh token the provider rotated after the credentials were opened.
    refresh_token: Option<String>,
}

struct Token {
    value: String,
    /// `None`: the provider did not say; used until it is refused.
    expires_at: Option<Instant>,
}

impl Token {
    fn fresh(&self) -> bool {
        match self.expires_at {
            None => true,
            Some(at) => Instant::now() + EXPIRY_MARGIN < at,
        }
    }
}

/// Everything needed to authenticate the calls of one connection.
pub(crate) struct Authenticator {
    def: AuthDef,
    creds: Credentials,
    fingerprint: String,
    connection_id: String,
    /// The token endpoint, resolved against the connection's base URL.
    token_url: Option<String>,
    timeout: Duration,
}

/// Headers for one attempt, and the OAuth2 token they carry (to refresh exactly that one on a
/// 401, not a newer one another call already fetched).
pub(crate) struct Applied {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub token: Option<String>,
}

impl Authenticator {
    pub fn new(
        def: AuthDef,
        creds: Credentials,
        fingerprint: String,
        connection_id: &str,
        base_url: &str,
        timeout: Duration,
    ) -> Authenticator {
        let token_url = match &def {
            AuthDef::Oauth2 { token_url, .. } if token_url.starts_with('/') => {
                Some(format!("{base_url}{token_url}"))
            }
            AuthDef::Oauth2 { token_url, .. } => Some(token_url.clone()),
            _ => None,
        };
        Authenticator {
            def,
            creds,
            fingerprint,
            connection_id: connection_id.into(),
            token_url,
            timeout,
        }
    }

    /// Whether a 401 may be cured by fetching a new token.
    pub fn refreshable(&self) -> bool {
        matches!(self.def, AuthDef::Oauth2 { .. })
    }

    /// The headers for one call. `stale` is a token the provider just refused: it is not used
    /// again, a new one is fetched.
    pub async fn apply(
        &self,
        app: &ProviderCtx,
        stale: Option<&str>,
    ) -> Result<Applied, ProviderError> {
        let header =
            |name: &str, value: &str| -> Result<(HeaderName, HeaderValue), ProviderError> {
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| ProviderError::permanent("bad header name"))?;
                let mut value = HeaderValue::from_str(value).map_err(|_| {
                    ProviderError::permanent(format!(
                        "credential for `{name}` is not a valid header value"
                    ))
                })?;
                value.set_sensitive(true);
                Ok((name, value))
            };
        match &self.def {
            AuthDef::ApiKey { headers } => {
                let mut out = Vec::with_capacity(headers.len());
                for (name, field) in headers {
                    out.push(header(name, &self.creds.require(field)?)?);
                }
                Ok(Applied {
                    headers: out,
                    token: None,
                })
            }
            AuthDef::Bearer { field } => {
                let value = format!("Bearer {}", self.creds.require(field)?);
                Ok(Applied {
                    headers: vec![header(AUTHORIZATION.as_str(), &value)?],
                    token: None,
                })
            }
            AuthDef::Oauth2 { .. } => {
                let token = self.token(app, stale).await?;
                let value = format!("Bearer {token}");
                Ok(Applied {
                    headers: vec![header(AUTHORIZATION.as_str(), &value)?],
                    token: Some(token),
                })
            }
        }
    }

    async fn token(&self, app: &ProviderCtx, stale: Option<&str>) -> Result<String, ProviderError> {
        let slot = app.providers.tokens().slot(&self.fingerprint);
        let mut slot = slot.lock().await;
        if slot.token.is_none() {
            // A token that came with the credentials (e.g. from a link flow) is used until the
            // provider refuses it.
            slot.token = self.creds.field("access_token").map(|value| Token {
                value,
                expires_at: None,
            });
        }
        if let Some(t) = &slot.token {
            if t.fresh() && Some(t.value.as_str()) != stale {
                return Ok(t.value.clone());
            }
        }
        let refresh = slot
            .refresh_token
            .clone()
            .or_else(|| self.creds.field("refresh_token"));
        let fetched = self.fetch(app, refresh.as_deref()).await?;
        if let Some(rotated) = fetched
            .refresh_token
            .filter(|r| Some(r) != refresh.as_ref())
        {
            self.persist_refresh_token(app, &rotated).await;
            slot.refresh_token = Some(rotated);
        }
        let value = fetched.access_token;
        slot.token = Some(Token {
            value: value.clone(),
            expires_at: fetched
                .expires_in
                .map(|s| Instant::now() + Duration::from_secs(s)),
        });
        tracing::info!(connection_id = %self.connection_id, expires_in_s = ?fetched.expires_in, "oauth2 access token fetched");
        Ok(value)
    }

    /// One request to the token endpoint. It goes around the limiter and the breaker: token
    /// endpoints are a separate service with their own budget (eBay's identity API is not the
    /// Sell API's quota), and a refresh must not queue behind the calls it is about to unblock.
    async fn fetch(
        &self,
        app: &ProviderCtx,
        refresh_token: Option<&str>,
    ) -> Result<TokenAnswer, ProviderError> {
        let AuthDef::Oauth2 {
            scopes,
            client_auth,
            ..
        } = &self.def
        else {
            unreachable!("only oauth2 fetches tokens");
        };
        let url = self.token_url.as_deref().expect("oauth2 has a token url");
        let client_id = self.creds.require("client_id")?;
        let client_secret = self.creds.require("client_secret")?;
        let mut form: Vec<(&str, String)> = match refresh_token {
            Some(r) => vec![
                ("grant_type", "refresh_token".into()),
                ("refresh_token", r.into()),
            ],
            None => vec![("grant_type", "client_credentials".into())],
        };
        if !scopes.is_empty() {
            form.push(("scope", scopes.join(" ")));
        }
        let egress = app.providers.egress();
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| ProviderError::permanent("oauth2 token URL is not a URL"))?;
        egress
            .check_url(&parsed)
            .map_err(|e| ProviderError::permanent(format!("oauth2 token request: {e}")))?;
        let mut req = app.providers.http().post(parsed).timeout(self.timeout);
        match client_auth {
            ClientAuth::Basic => req = req.basic_auth(&client_id, Some(&client_secret)),
            ClientAuth::Body => {
                form.push(("client_id", client_id));
                form.push(("client_secret", client_secret));
            }
        }
        let resp =
            req.form(&form)
                .send()
                .await
                .map_err(|e| match crate::egress::refused_in(&e) {
                    Some(refused) => {
                        ProviderError::permanent(format!("oauth2 token request: {refused}"))
                    }
                    None => ProviderError::transient(format!(
                        "oauth2 token request failed: {}",
                        super::client::describe_reqwest(&e)
                    )),
                })?;
        let status = resp.status().as_u16();
        // A token answer is small; anything near the limit is not one.
        let body = crate::egress::read_limited(resp, TOKEN_ANSWER_LIMIT)
            .await
            .map_err(|e| ProviderError::transient(format!("oauth2 token answer: {e}")))?;
        if !(200..300).contains(&status) {
            // 400/401 from a token endpoint (invalid_grant, invalid_client) mean the grant is
            // revoked or wrong: only reconnecting helps.
            let class = ErrorClass::from_status(status).unwrap_or(ErrorClass::Transient);
            return Err(ProviderError {
                class,
                status: Some(status),
                message: format!(
                    "oauth2 token request answered {status}: {}",
                    excerpt(&body, super::error::EXCERPT_CHARS)
                ),
                retry_after_ms: None,
            });
        }
        serde_json::from_slice::<TokenAnswer>(&body)
            .map_err(|_| ProviderError::transient("oauth2 token answer is not a token"))
    }

    /// Keeps a rotated refresh token: the old one may already be void at the provider, so
    /// losing the new one would disconnect the account. Failure is logged, not fatal: the
    /// in-memory copy still works until the node restarts.
    async fn persist_refresh_token(&self, app: &ProviderCtx, rotated: &str) {
        let result: Result<bool, String> = async {
            let store = &app.store;
            let sealed = store
                .connection_secrets(&self.connection_id)
                .await
                .map_err(|e| e.to_string())?;
            let Some(expected) = sealed else {
                return Ok(false);
            };
            let mut creds = self.creds.0.clone();
            creds.insert("refresh_token".into(), Value::String(rotated.into()));
            let new = syncguard_store::connections::SealedSecrets {
                credentials: Some(app.sealer.seal(
                    &serde_json::to_vec(&creds).expect("serializes"),
                    &self.connection_id,
                    &mut rand::rngs::OsRng,
                )),
                webhook_secrets: expected.webhook_secrets.clone(),
            };
            store
                .replace_connection_secrets_if_unchanged(
                    &self.connection_id,
                    &expected,
                    &new,
                    app.clock.now_ms(),
                )
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(true) => {
                tracing::info!(connection_id = %self.connection_id, "rotated oauth2 refresh token stored")
            }
            Ok(false) => {
                tracing::warn!(connection_id = %self.connection_id, "credentials changed meanwhile; rotated refresh token not stored")
            }
            Err(e) => {
                tracing::error!(connection_id = %self.connection_id, error = %e, "storing the rotated refresh token failed")
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
    refresh_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_print_and_fingerprints_hide_them() {
        let c = Credentials::from_json(br#"{"api_key":"k_123456","access_token":"tok_abcdef"}"#)
            .unwrap();
        assert_eq!(format!("{c:?}"), "Credentials([redacted])");
        let fp = c.fingerprint("trackstar");
        assert!(fp.starts_with("trackstar:") && !fp.contains("tok_abcdef"));
        let same = Credentials::from_json(br#"{"access_token":"tok_abcdef","api_key":"k_123456"}"#)
            .unwrap();
        assert_eq!(
            fp,
            same.fingerprint("trackstar"),
            "key order does not matter"
        );
        assert_ne!(fp, same.fingerprint("ebay"));
        assert!(Credentials::from_json(b"[1]").is_err());
    }
}
