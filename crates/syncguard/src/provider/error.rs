//! Errors of provider calls, already sorted into the queue's classes (SPEC §3.1). The provider
//! client knows no job: the services turn a [`ProviderError`] into a job outcome (see
//! `services::jobs`).

use super::definition::ProviderDef;
use syncguard_core::class::ErrorClass;

/// A failed provider call. The message names what failed and never carries a credential; a
/// body excerpt in it is redacted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    pub class: ErrorClass,
    /// The provider's HTTP status, when it answered.
    pub status: Option<u16>,
    pub message: String,
    /// When to try again: the provider's hint, the limiter's wait, or the time until the circuit
    /// half-opens.
    pub retry_after_ms: Option<u64>,
}

impl ProviderError {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> ProviderError {
        ProviderError {
            class,
            status: None,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> ProviderError {
        ProviderError::new(ErrorClass::Permanent, message)
    }

    pub fn transient(message: impl Into<String>) -> ProviderError {
        ProviderError::new(ErrorClass::Transient, message)
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_ms: u64) -> ProviderError {
        ProviderError {
            retry_after_ms: Some(retry_after_ms),
            ..ProviderError::new(ErrorClass::RateLimited, message)
        }
    }

    pub fn circuit_open(message: impl Into<String>, retry_after_ms: u64) -> ProviderError {
        ProviderError {
            retry_after_ms: Some(retry_after_ms),
            ..ProviderError::new(ErrorClass::CircuitOpen, message)
        }
    }

    /// A store failure met on the way (limiter, breaker, credentials): the call can be retried.
    pub fn store(e: syncguard_store::StoreError) -> ProviderError {
        ProviderError::transient(format!("store: {e}"))
    }
}

/// Classifies an error answer: the definition's first matching `[[errors]]` rule, else the
/// status (5xx and 408 transient, 429 rate limited, other 4xx permanent). Returns the class and
/// the rule's reason, if one applied.
pub fn classify(
    def: &ProviderDef,
    status: u16,
    body: Option<&serde_json::Value>,
) -> (ErrorClass, Option<String>) {
    for rule in def.errors.iter().filter(|r| r.status == status) {
        let matched = match (&rule.pointer, &rule.equals) {
            (Some(p), Some(want)) => body.and_then(|b| b.pointer(p)) == Some(want),
            _ => true,
        };
        if matched {
            return (rule.class, rule.reason.clone());
        }
    }
    let class = ErrorClass::from_status(status).unwrap_or(ErrorClass::Transient);
    (class, None)
}

/// How much of a provider's error answer goes into an error message. Messages reach job
/// records and API problem details, so a body must never come back whole: a short excerpt says
/// what went wrong without relaying a provider's (or anything else's) page.
pub const EXCERPT_CHARS: usize = 160;

/// At most `max` characters of a response body, on one line (runs of whitespace and control
/// characters become one space), redacted, for an error message.
pub fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let text: String = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let text = text.as_str();
    let cut: String = text.chars().take(max).collect();
    let cut = if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    };
    syncguard_core::redact::redact(&cut).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(rules: &str) -> ProviderDef {
        let text = format!(
            "name = \"p\"\nbase_url = \"https://p.example\"\n[auth]\ntype = \"bearer\"\n[rate_limit]\nrps = 1\nburst = 1\n[pagination]\nstyle = \"link\"\n{rules}"
        );
        super::super::load::parse("test.toml", &text).unwrap()
    }

    #[test]
    fn statuses_follow_the_spec_and_rules_win() {
        let d = def(
            "[[errors]]\nstatus = 501\nclass = \"permanent\"\nreason = \"unsupported\"\n\
             [[errors]]\nstatus = 400\npointer = \"/errors/0/errorId\"\nequals = 25001\nclass = \"transient\"\n",
        );
        assert_eq!(classify(&d, 503, None).0, ErrorClass::Transient);
        assert_eq!(classify(&d, 408, None).0, ErrorClass::Transient);
        assert_eq!(classify(&d, 429, None).0, ErrorClass::RateLimited);
        assert_eq!(classify(&d, 404, None).0, ErrorClass::Permanent);
        assert_eq!(
            classify(&d, 501, None),
            (ErrorClass::Permanent, Some("unsupported".into()))
        );
        let system_error = json!({"errors": [{"errorId": 25001}]});
        assert_eq!(
            classify(&d, 400, Some(&system_error)).0,
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&d, 400, Some(&json!({"errors": [{"errorId": 2}]}))).0,
            ErrorClass::Permanent
        );
    }

    #[test]
    fn excerpts_are_short_and_redacted() {
        let e = excerpt(
            br#"{"error":"bad token Bearer abcdefghijklmnopqrstuvwxyz0123456789"}"#,
            500,
        );
        assert!(!e.contains("abcdefghijklmnopqrstuvwxyz0123456789"), "{e}");
        assert_eq!(excerpt(b"0123456789", 4), "0123…");
        assert_eq!(
            excerpt(b"<html>\n  <body>\r\n\tsecret\x00page", 100),
            "<html> <body> secret page"
        );
        let big = "x".repeat(100_000);
        assert!(excerpt(big.as_bytes(), EXCERPT_CHARS).chars().count() <= EXCERPT_CHARS + 1);
    }
}
