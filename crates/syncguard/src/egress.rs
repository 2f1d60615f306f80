//! The egress policy applied to real connections (SPEC §3.3): every outbound HTTP call that a
//! tenant can aim (provider APIs, OAuth2 token endpoints, link flows; outbound delivery should
//! build its client here too) goes through an [`Egress`].
//!
//! Which addresses are allowed is decided by the pure [`syncguard_core::egress`] rules; this
//! module applies them where it counts, to the addresses actually connected to:
//! - **Names** resolve through [`Egress`] as reqwest's DNS resolver: refused addresses are
//!   filtered out of every answer, and a name left with none fails with [`Refused`]. Since the
//!   filter runs on the very answer the connection uses, a DNS rebinding (a public address at
//!   creation, a metadata address at call time) gains nothing.
//! - **Literal addresses** never reach a resolver, so [`Egress::check_url`] judges them before
//!   each request and on each redirect hop.
//! - **URLs given by users** (`config.base_url`) are checked when a connection is created or
//!   changed, by [`Egress::check_base_url`] (422 naming the field), and again at call time.
//!   Only literal addresses can be judged then: a name's addresses are only known, and only
//!   meaningful, when it is resolved for a call.
//! - **Redirects**: the provider client follows them within one origin only (credentials must
//!   not travel elsewhere); each hop's connection resolves through the same resolver and each
//!   hop's URL passes [`Egress::check_url`] in the redirect policy.
//! - **Answers** are read with a size limit ([`read_limited`]), refusing early on a declared
//!   `Content-Length` and otherwise as soon as the running total passes the limit.

use bytes::{Bytes, BytesMut};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use syncguard_core::egress::Policy;

/// A call the egress policy does not allow. Its message names the host and the kind of
/// address, never the answer of anything internal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused by the egress policy: {0}")]
pub struct Refused(pub String);

type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Resolves a host name to addresses (the system resolver, or a fixed table in tests).
pub type Lookup = Arc<dyn Fn(String) -> LookupFuture + Send + Sync>;

/// The policy in force and the resolver it filters. Cheap to clone.
#[derive(Clone)]
pub struct Egress {
    policy: Arc<Policy>,
    lookup: Lookup,
}

impl Egress {
    /// The policy over the system resolver.
    pub fn new(policy: Policy) -> Egress {
        let lookup: Lookup = Arc::new(|host: String| {
            Box::pin(async move {
                let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
                Ok(addrs.map(|a| a.ip()).collect())
            })
        });
        Egress::with_lookup(policy, lookup)
    }

    /// The policy over another resolver (tests map names to chosen addresses).
    pub fn with_lookup(policy: Policy, lookup: Lookup) -> Egress {
        Egress {
            policy: Arc::new(policy),
            lookup,
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Checks a base URL given by a user: http or https, a host, no user name or password
    /// (credentials belong in sealed credentials), no query or fragment (paths and queries
    /// are appended to it), and not a refused literal address. The error says why, for a 422
    /// naming the field.
    pub fn check_base_url(&self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|_| "expected an http(s) URL".to_string())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("expected an http(s) URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain a user name or password".into());
        }
        if url.query().is_some() {
            return Err("must not contain a query string".into());
        }
        if url.fragment().is_some() {
            return Err("must not contain a fragment".into());
        }
        self.check_url(&url).map_err(|e| e.to_string())?;
        Ok(url)
    }

    /// Checks a URL about to be requested: http or https, and a literal address allowed by the
    /// policy. Host names pass here; their addresses are checked when they resolve.
    pub fn check_url(&self, url: &Url) -> Result<(), Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused(format!("scheme `{}` is not http(s)", url.scheme())));
        }
        let Some(host) = url.host_str() else {
            return Err(Refused("the URL has no host".into()));
        };
        // The URL parser has already normalized literal addresses (`0x7f.1`, `2130706433` and
        // `127.1` are all 127.0.0.1 here); IPv6 ones keep their brackets.
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = literal.parse::<IpAddr>() else {
            return Ok(());
        };
        self.policy
            .check(None, ip)
            .map_err(|r| Refused(format!("address {r}")))
    }

    /// The addresses of `host` that the policy allows; [`Refused`] when none is left.
    pub async fn resolve_allowed(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let found = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (self.lookup)(host.to_string())
                .await
                .map_err(ResolveError::Lookup)?,
        };
        let mut refusals = Vec::new();
        let allowed: Vec<IpAddr> = found
            .iter()
            .copied()
            .filter(|ip| match self.policy.check(Some(host), *ip) {
                Ok(()) => true,
                Err(r) => {
                    refusals.push(r);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            // The addresses go to the log, not to the caller: a tenant must not learn the
            // server's internal DNS through error messages.
            tracing::warn!(host, refused = ?refusals, "egress policy refused every address of a host");
            let why = match refusals.first() {
                Some(r) if r.always => format!("`{host}` resolves to a {} address", r.reason),
                Some(r) => format!(
                    "`{host}` resolves to a {} address, not allowlisted in `egress.allow`",
                    r.reason
                ),
                None => format!("`{host}` resolves to no address"),
            };
            return Err(ResolveError::Refused(Refused(why)));
        }
        Ok(allowed)
    }

    /// A reqwest client builder whose host names resolve through this policy. Callers add
    /// their redirect policy, checking each hop with [`Egress::check_url`].
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().dns_resolver(Arc::new(self.clone()))
    }
}

/// Why a name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Refused(Refused),
    #[error("DNS lookup failed: {0}")]
    Lookup(std::io::Error),
}

impl Resolve for Egress {
    fn resolve(&self, name: Name) -> Resolving {
        let this = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            match this.resolve_allowed(&host).await {
                Ok(ips) => {
                    let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                // The refusal itself travels, so callers can find it in the error's sources.
                Err(ResolveError::Refused(r)) => Err(Box::new(r) as _),
                Err(ResolveError::Lookup(e)) => Err(Box::new(e) as _),
            }
        })
    }
}

/// The egress refusal behind a failed request, if that is why it failed.
pub fn refused_in(e: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<Refused>() {
            return Some(r.clone());
        }
        source = s.source();
    }
    None
}

/// Why an answer's body was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Larger than the limit: refused without reading it whole.
    #[error("the answer is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The body of `resp`, at most `limit` bytes. A declared `Content-Length` over the limit is
/// refused before reading; otherwise reading stops as soon as the total passes the limit (the
/// connection is dropped, not drained).
pub async fn read_limited(mut resp: reqwest::Response, limit: u64) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(ReadError::TooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ReadError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests;
