//! [`ProviderClient`]: the one way syncguard calls a provider's API. Every call passes, in order,
//! the circuit breaker, the rate limiter (waiting for its turn), authentication, the HTTP
//! request with the definition's timeout, and classification of the answer into the queue's
//! error classes; its outcome then goes back to the breaker and its rate-limit headers to the
//! limiter.

use super::auth::Authenticator;
use super::circuit::{Circuit, Ticket};
use super::definition::{ProviderDef, ResourceDef, WriteDef};
use super::error::{classify, excerpt, ProviderError, EXCERPT_CHARS};
use super::limiter::LimiterHandle;
use super::paginate::{self, Page, Target};
use super::ProviderCtx;
use crate::clock::wall_ms;
use crate::egress::{read_limited, refused_in, ReadError, Refused};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syncguard_core::breaker::Outcome;
use syncguard_core::class::ErrorClass;
use syncguard_core::egress::path_segment;
use syncguard_core::limiter::{parse_hints, Hints};
use syncguard_core::Millis;

/// Without a `Retry-After`, a 429 holds the credential's calls this long.
const DEFAULT_429_BACKOFF_MS: u64 = 1_000;

/// A connection's handle on its provider's API. Cheap to keep for the length of a job; build one
/// with [`super::ProviderState::client`].
pub struct ProviderClient {
    pub(crate) app: ProviderCtx,
    pub(crate) def: Arc<ProviderDef>,
    pub(crate) connection_id: String,
    /// The definition's base URL or the connection's `config.base_url`, without a trailing `/`.
    pub(crate) base_url: String,
    pub(crate) auth: Authenticator,
    pub(crate) limiter: LimiterHandle,
    pub(crate) circuit: Circuit,
    pub(crate) timeout: Duration,
}

/// What a write answered.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteOutcome {
    pub status: u16,
    /// The answer's JSON body, when it had one.
    pub body: Option<Value>,
}

/// One HTTP exchange the client makes.
struct Call<'a> {
    method: Method,
    url: Url,
    body: Option<Vec<u8>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// Statuses that are answers, not errors (404 on a read: the object does not exist).
    accept: &'a [u16],
}

/// What to do after an answer.
enum Verdict {
    Done,
    Fail(ProviderError),
    /// A 401 with an OAuth2 token: fetch a new one and try again, once.
    RefreshToken,
    /// A 429 whose wait fits the budget: queue behind the limiter and try again.
    WaitTurn,
}

/// Why a request brought no usable answer.
enum Sent {
    /// The egress policy refused the URL or every address of its host.
    Refused(Refused),
    /// The answer's body is over the definition's `max_response_bytes`.
    TooLarge {
        status: u16,
        limit: u64,
    },
    Http(reqwest::Error),
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
}

impl ProviderClient {
    pub fn provider(&self) -> &ProviderDef {
        &self.def
    }

    pub fn connection_id(&self) -> &str {
        &self.connection_id
    }

    /// A resource of the provider; unknown names fail as permanent (SPEC §3.9: a request naming
    /// an unknown resource is refused, not retried).
    pub fn resource(&self, name: &str) -> Result<&ResourceDef, ProviderError> {
        self.def.resource(name).ok_or_else(|| {
            ProviderError::permanent(format!(
                "provider `{}` has no resource `{name}`",
                self.def.name
            ))
        })
    }

    /// One page of `resource`: the first when `cursor` is `None`, else the page after it.
    /// `since` (Unix ms) filters to objects changed at or after it, when the provider can.
    pub async fn list_page(
        &self,
        resource: &str,
        cursor: Option<&str>,
        since: Option<Millis>,
    ) -> Result<Page, ProviderError> {
        let res = self.resource(resource)?;
        let pagination = self
            .def
            .pagination_of(res)
            .expect("validated: every resource has a pagination");
        let mut first: Vec<(String, String)> = res
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let (Some(param), Some(since)) = (&res.since_param, since) {
            first.push((
                param.clone(),
                super::time::format_instant(since, res.since_format),
            ));
        }
        let url = match paginate::target(pagination, cursor, first)? {
            Target::Query(query) => self.url(&res.path, &query)?,
            Target::Url(url) => self.own_url(&url)?,
        };
        let answer = self
            .call(Call {
                method: Method::GET,
                url: url.clone(),
                body: None,
                headers: vec![],
                accept: &[],
            })
            .await?;
        let body = json_body(&answer)?;
        let link = link_header(&answer.headers);
        paginate::read(pagination, &body, link.as_deref(), &url, cursor)
    }

    /// One object by external id; `None` when the provider says it does not exist (404, 410).
    pub async fn get(&self, resource: &str, id: &str) -> Result<Option<Value>, ProviderError> {
        let res = self.resource(resource)?;
        let template = res.get.as_deref().ok_or_else(|| {
            ProviderError::permanent(format!(
                "provider `{}` cannot read one `{resource}` (no `get` path)",
                self.def.name
            ))
        })?;
        let url = self.url(&fill(template, id)?, &[])?;
        let answer = self
            .call(Call {
                method: Method::GET,
                url,
                body: None,
                headers: vec![],
                accept: &[404, 410],
            })
            .await?;
        if matches!(answer.status, 404 | 410) {
            return Ok(None);
        }
        json_body(&answer).map(Some)
    }

    /// Runs write operation `op` (a `[writes.op]` of the definition) on object `id`. The
    /// idempotency key travels in the operation's header when it has one. A DELETE answered
    /// 404/410 succeeds: the object is gone either way, and a retried delete must not fail.
    pub async fn write(
        &self,
        op: &str,
        id: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<WriteOutcome, ProviderError> {
        let w: &WriteDef = self.def.writes.get(op).ok_or_else(|| {
            ProviderError::permanent(format!(
                "provider `{}` has no write operation `{op}`",
                self.def.name
            ))
        })?;
        let method = Method::from_bytes(w.method.as_bytes()).expect("validated method");
        let mut headers = Vec::new();
        if let (Some(name), Some(key)) = (&w.idempotency_header, idempotency_key) {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("validated header name");
            let value = HeaderValue::from_str(key).map_err(|_| {
                ProviderError::permanent("idempotency key is not a valid header value")
            })?;
            headers.push((name, value));
        }
        let body = body.map(|b| serde_json::to_vec(b).expect("JSON serializes"));
        if body.is_some() {
            headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
        }
        let accept: &[u16] = if method == Method::DELETE {
            &[404, 410]
        } else {
            &[]
        };
        let url = self.url(&fill(&w.path, id)?, &[])?;
        let answer = self
            .call(Call {
                method,
                url,
                body,
                headers,
                accept,
            })
            .await?;
        let body = serde_json::from_slice(&answer.body).ok();
        Ok(WriteOutcome {
            status: answer.status,
            body,
        })
    }

    /// Whether this credential's limiter has at most 10 % of its room left, read fresh from the
    /// shared state. Non-critical work (reconcile, audit) should yield while it holds.
    pub async fn near_depletion(&self) -> bool {
        self.app
            .providers
            .limiters()
            .near_depletion_now(&self.app.store, &self.limiter)
            .await
    }

    fn url(&self, path: &str, query: &[(String, String)]) -> Result<Url, ProviderError> {
        let mut url = Url::parse(&format!("{}{path}", self.base_url)).map_err(|e| {
            ProviderError::permanent(format!("cannot build a URL from `{path}`: {e}"))
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// A URL handed back as a cursor: it must still point at this provider.
    fn own_url(&self, url: &str) -> Result<Url, ProviderError> {
        let base =
            Url::parse(&self.base_url).map_err(|_| ProviderError::permanent("bad base URL"))?;
        match Url::parse(url) {
            Ok(u) if u.origin() == base.origin() => Ok(u),
            _ => Err(ProviderError::permanent(
                "the cursor is not a page URL of this provider",
            )),
        }
    }

    /// Makes one logical call: waits for the limiter, retries once after refreshing an OAuth2
    /// token on a 401, and waits out 429s while the wait budget lasts.
    async fn call(&self, call: Call<'_>) -> Result<Answer, ProviderError> {
        let app = &self.app;
        let deadline = Instant::now() + self.limiter.max_wait;
        let mut refused_token: Option<String> = None;
        loop {
            let ticket = self.circuit.admit(app).await?;
            let ready = async {
                let limiters = app.providers.limiters();
                limiters
                    .acquire(&app.store, &self.limiter, deadline)
                    .await?;
                self.auth.apply(app, refused_token.as_deref()).await
            };
            let applied = match ready.await {
                Ok(applied) => applied,
                Err(e) => {
                    // A probe that never went out must free its slot for another.
                    self.circuit.record(app, ticket, Outcome::Ignored).await;
                    return Err(e);
                }
            };
            let answer = self.exchange(&call, applied.headers, ticket).await?;
            match self.judge(&call, &answer, refused_token.is_some(), deadline) {
                Verdict::Done => return Ok(answer),
                Verdict::Fail(e) => return Err(e),
                Verdict::RefreshToken => refused_token = Some(applied.token.unwrap_or_default()),
                // The limiter now holds every call of this credential until the provider's
                // time; this one waits its turn with them.
                Verdict::WaitTurn => {}
            }
        }
    }

    /// One HTTP exchange, with its outcome reported to the breaker, its rate-limit headers to
    /// the limiter, and both to the metrics.
    async fn exchange(
        &self,
        call: &Call<'_>,
        auth: Vec<(HeaderName, HeaderValue)>,
        ticket: Ticket,
    ) -> Result<Answer, ProviderError> {
        let (app, provider) = (&self.app, self.def.name.as_str());
        let metrics = app.providers.call_metrics();
        let started = Instant::now();
        let sent = self.send(call, auth).await;
        metrics
            .duration
            .with_label_values(&[provider])
            .observe(started.elapsed().as_secs_f64());
        let (method, path) = (&call.method, call.url.path());
        match sent {
            Err(Sent::Refused(refused)) => {
                // Nothing left syncguard: no outcome for the breaker, and no retry will help
                // until the connection's base URL or the allowlist changes.
                metrics
                    .requests
                    .with_label_values(&[provider, "refused"])
                    .inc();
                self.circuit.record(app, ticket, Outcome::Ignored).await;
                Err(ProviderError::permanent(format!(
                    "{method} {path}: {refused}"
                )))
            }
            Err(Sent::TooLarge { status, limit }) => {
                metrics
                    .requests
                    .with_label_values(&[provider, "too_large"])
                    .inc();
                // The provider is up and answering; its answer is merely unusable.
                let health = Outcome::from_status(status);
                self.circuit.record(app, ticket, health).await;
                Err(ProviderError {
                    status: Some(status),
                    ..ProviderError::permanent(format!(
                        "{method} {path} answered {status} with more than {limit} bytes \
                         (the provider's `max_response_bytes`): not read"
                    ))
                })
            }
            Ok(answer) => {
                let outcome = status_outcome(answer.status);
                metrics
                    .requests
                    .with_label_values(&[provider, outcome])
                    .inc();
                self.observe_hints(&answer).await;
                let health = Outcome::from_status(answer.status);
                self.circuit.record(app, ticket, health).await;
                Ok(answer)
            }
            Err(Sent::Http(e)) => {
                let outcome = if e.is_timeout() { "timeout" } else { "network" };
                metrics
                    .requests
                    .with_label_values(&[provider, outcome])
                    .inc();
                self.circuit.record(app, ticket, Outcome::Failure).await;
                Err(ProviderError::transient(format!(
                    "{method} {path}: {}",
                    describe_reqwest(&e)
                )))
            }
        }
    }

    /// What an answer means for the call: done, retry, or the error to report.
    fn judge(
        &self,
        call: &Call<'_>,
        answer: &Answer,
        refreshed: bool,
        deadline: Instant,
    ) -> Verdict {
        let status = answer.status;
        let (method, path) = (&call.method, call.url.path());
        if (200..300).contains(&status) || call.accept.contains(&status) {
            return Verdict::Done;
        }
        if (300..400).contains(&status) {
            // Only same-origin redirects are followed (see `provider_http`).
            let to = header_text(&answer.headers, "location").unwrap_or_default();
            let message =
                format!("{method} {path} redirected to `{to}`, another origin: not followed");
            return Verdict::Fail(ProviderError {
                status: Some(status),
                ..ProviderError::permanent(message)
            });
        }
        if status == 401 && self.auth.refreshable() && !refreshed {
            // The token may have expired early or been revoked and re-issued: fetch a new one
            // and try once more. A second 401 is permanent.
            return Verdict::RefreshToken;
        }
        let body: Option<Value> = serde_json::from_slice(&answer.body).ok();
        let (class, reason) = classify(&self.def, status, body.as_ref());
        let reason = reason.map(|r| format!(" ({r})")).unwrap_or_default();
        let after_refresh = if status == 401 && refreshed {
            " (after refreshing the token)"
        } else {
            ""
        };
        let message = format!(
            "{method} {path} answered {status}{reason}{after_refresh}: {}",
            excerpt(&answer.body, EXCERPT_CHARS)
        );
        if class == ErrorClass::RateLimited {
            let hint = self.retry_hint(answer);
            if Instant::now() + Duration::from_millis(hint) <= deadline {
                return Verdict::WaitTurn;
            }
            return Verdict::Fail(ProviderError {
                status: Some(status),
                ..ProviderError::rate_limited(message, hint)
            });
        }
        Verdict::Fail(ProviderError {
            class,
            status: Some(status),
            message,
            retry_after_ms: None,
        })
    }

    /// Sends one request: the URL passes the egress policy (literal addresses; names are
    /// checked as they resolve), and the answer is read up to the definition's size limit.
    async fn send(
        &self,
        call: &Call<'_>,
        auth: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Answer, Sent> {
        let egress = self.app.providers.egress();
        egress.check_url(&call.url).map_err(Sent::Refused)?;
        let mut req = self
            .app
            .providers
            .http()
            .request(call.method.clone(), call.url.clone())
            .timeout(self.timeout);
        for (name, value) in call.headers.iter().cloned().chain(auth) {
            req = req.header(name, value);
        }
        if let Some(body) = &call.body {
            req = req.body(body.clone());
        }
        let resp = req.send().await.map_err(|e| match refused_in(&e) {
            Some(refused) => Sent::Refused(refused),
            None => Sent::Http(e),
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let limit = self.def.response_limit();
        let body = read_limited(resp, limit).await.map_err(|e| match e {
            ReadError::TooLarge { limit } => Sent::TooLarge { status, limit },
            ReadError::Http(e) => Sent::Http(e),
        })?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    async fn observe_hints(&self, answer: &Answer) {
        let mut hints = parse_hints(|name| header_text(&answer.headers, name), wall_ms());
        if answer.status == 429 && hints.retry_after_ms.is_none() {
            hints.retry_after_ms = Some(DEFAULT_429_BACKOFF_MS);
        }
        self.app
            .providers
            .limiters()
            .observe(&self.app.store, &self.limiter, hints)
            .await;
    }

    fn retry_hint(&self, answer: &Answer) -> u64 {
        let hints: Hints = parse_hints(|name| header_text(&answer.headers, name), wall_ms());
        hints.retry_after_ms.unwrap_or(DEFAULT_429_BACKOFF_MS)
    }
}

/// A path template with `{id}` replaced by the percent-encoded id: exactly one path segment, so
/// an id containing `/`, `%2F` or `?` cannot change the request's shape, and `.`, `..` or an
/// empty id (which would address the parent or the collection) fail as permanent.
fn fill(template: &str, id: &str) -> Result<String, ProviderError> {
    let segment = path_segment(id).map_err(|e| {
        ProviderError::permanent(format!("external id `{}`: {e}", id.escape_debug()))
    })?;
    Ok(template.replace("{id}", &segment))
}

fn json_body(answer: &Answer) -> Result<Value, ProviderError> {
    serde_json::from_slice(&answer.body).map_err(|_| {
        // A 2xx that is not JSON is usually a proxy's page or a cut connection: worth retrying.
        ProviderError::transient(format!(
            "answer {} is not JSON: {}",
            answer.status,
            excerpt(&answer.body, 120)
        ))
    })
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn link_header(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all("link")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn status_outcome(status: u16) -> &'static str {
    match status {
        200..=399 => "ok",
        429 => "rate_limited",
        400..=499 => "client_error",
        _ => "server_error",
    }
}

/// A reqwest error without its URL (the URL is logged by the caller when useful).
pub(crate) fn describe_reqwest(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the answer failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_one_path_segment() {
        let fill = |id: &str| super::fill("/items/{id}", id);
        assert_eq!(fill("SKU-1").unwrap(), "/items/SKU-1");
        assert_eq!(fill("a/b?c d").unwrap(), "/items/a%2Fb%3Fc%20d");
        assert_eq!(fill("a%2Fb").unwrap(), "/items/a%252Fb");
        for bad in ["..", ".", ""] {
            let e = fill(bad).unwrap_err();
            assert_eq!(e.class, super::ErrorClass::Permanent, "{bad}: {e}");
        }
    }
}
