//! Inbound webhook signature schemes (SPEC §3.2).
//!
//! `POST /v1/webhooks/{connection_id}` has no API key: the signature is the credential. Each
//! connection names a [`Scheme`] and one or more secrets (several during a rotation); a delivery
//! is accepted when any one signature it carries verifies under any one secret.
//!
//! # Layout
//! - [`WebhookAuth`]: a connection's webhook config, validated and with its secrets decoded once,
//!   so a bad secret is a config error when the connection is created, not a 401 on every
//!   delivery.
//! - [`verify`]: checks one delivery and reports what it learned ([`Verified`]) or why it was
//!   refused ([`VerifyError`]).
//! - [`HeaderLookup`]: how `verify` reads headers, without depending on an HTTP crate.
//! - `sign_*`: the producing side of each scheme, for tests and the mock provider.
//!
//! # Security rules kept here
//! - MACs are compared with [`subtle`] on decoded bytes, and every (secret, signature) pair is
//!   tried even after a match, so timing reveals neither where a guess went wrong nor which
//!   secret matched.
//! - The timestamp is checked before any signature work: a replayed or forged old delivery costs
//!   no HMAC or ed25519 verification, and the reference libraries check in the same order.
//! - No error message contains secret material; they name headers and configured fields only.

mod body_mac;
mod config;
mod headers;
mod standard;
mod stripe;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

pub use body_mac::{sign_github, sign_hmac, sign_shopify};
pub use config::{ConfigError, Encoding, Scheme, WebhookAuth, DEFAULT_TOLERANCE_S};
pub use headers::{FnHeaders, HeaderLookup};
pub use standard::{
    generate_standard_keypair, sign_standard, sign_standard_ed25519, standard_public_key, KeyError,
};
pub use stripe::sign_stripe;

use config::Key;

/// What a successful verification learned about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The provider's id of this delivery, for deduplication: `webhook-id` (`svix-id`),
    /// `X-Shopify-Webhook-Id`, `X-GitHub-Delivery`. Stripe sends none in headers (the event id
    /// is in the body).
    pub delivery_id: Option<String>,
    /// The provider's event type when a header carries it: `X-Shopify-Topic`, `X-GitHub-Event`.
    pub event_type: Option<String>,
    /// The signed timestamp (unix seconds) for schemes that sign one: standard and stripe.
    pub timestamp: Option<i64>,
    /// Which configured secret matched, so operators can tell when an old secret stops being
    /// used and can be retired.
    pub secret_index: usize,
}

/// Why a delivery was refused. Every variant maps to a 401; the message is safe to return and to
/// log (it never contains a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A header the scheme needs is absent or empty; carries its lowercase name.
    #[error("missing header {0}")]
    MissingHeader(String),
    /// A header is present but cannot be parsed; says which and how.
    #[error("malformed webhook headers: {0}")]
    Malformed(String),
    /// The signed timestamp is too old (a possible replay) or too far in the future.
    #[error(
        "timestamp {timestamp} is outside the tolerance of {tolerance_s} s around now ({now})"
    )]
    TimestampOutOfTolerance {
        timestamp: i64,
        now: i64,
        tolerance_s: i64,
    },
    /// The headers are well formed but no signature verifies under any configured secret.
    #[error("no signature matches any configured secret")]
    Mismatch,
}

impl VerifyError {
    /// Whether the refusal is about time rather than authenticity (SPEC §3.9 gives it its own
    /// detail, and a burst of them usually means clock skew).
    pub fn is_timestamp(&self) -> bool {
        matches!(self, VerifyError::TimestampOutOfTolerance { .. })
    }
}

/// Verifies one delivery against a connection's webhook config.
///
/// `body` must be the raw bytes as received: every scheme signs the exact bytes, and re-encoded
/// JSON would not verify. `now_s` is the current time in unix seconds.
pub fn verify<H: HeaderLookup + ?Sized>(
    auth: &WebhookAuth,
    headers: &H,
    body: &[u8],
    now_s: i64,
) -> Result<Verified, VerifyError> {
    let keys = auth.keys();
    let tolerance_s = auth.tolerance_s();
    match auth.scheme() {
        Scheme::Standard => standard::verify(keys, tolerance_s, headers, body, now_s),
        Scheme::Stripe => stripe::verify(keys, tolerance_s, headers, body, now_s),
        Scheme::Shopify => body_mac::verify_shopify(keys, headers, body),
        Scheme::Github => body_mac::verify_github(keys, headers, body),
        Scheme::HmacSha256 {
            header,
            prefix,
            encoding,
        } => body_mac::verify_hmac(keys, header, prefix.as_deref(), *encoding, headers, body),
    }
}

/// Base64 as the providers use it: standard alphabet, padded on output, padding optional on
/// input (some senders strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Length of an HMAC-SHA256 output; a signature of any other length is malformed, not merely
/// wrong.
const MAC_LEN: usize = 32;

/// HMAC-SHA256 of the concatenation of `parts`, without building the concatenation.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; MAC_LEN] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac accepts keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `mac` equals any of `candidates`, comparing each one in constant time and all of
/// them whatever the outcome.
fn matches_any<C: AsRef<[u8]>>(mac: &[u8], candidates: &[C]) -> bool {
    candidates
        .iter()
        .fold(Choice::from(0), |acc, candidate| {
            acc | mac.ct_eq(candidate.as_ref())
        })
        .into()
}

/// Index of the first key for which `matches` holds. Every key is tried even after a match, so
/// the time taken does not tell which secret matched.
fn first_match(keys: &[Key], mut matches: impl FnMut(&Key) -> bool) -> Option<usize> {
    let mut found = None;
    for (index, key) in keys.iter().enumerate() {
        if matches(key) && found.is_none() {
            found = Some(index);
        }
    }
    found
}

/// The trimmed value of header `name`; absent and blank are the same thing to a verifier.
fn optional_header<'h, H: HeaderLookup + ?Sized>(headers: &'h H, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

fn required_header<'h, H: HeaderLookup + ?Sized>(
    headers: &'h H,
    name: &str,
) -> Result<&'h str, VerifyError> {
    optional_header(headers, name).ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))
}

/// Parses a unix-seconds timestamp header.
fn parse_timestamp(value: &str, header: &str) -> Result<i64, VerifyError> {
    value.parse().map_err(|_| {
        VerifyError::Malformed(format!("{header} is not an integer number of seconds"))
    })
}

/// Rejects timestamps more than `tolerance_s` seconds before or after `now`.
fn check_timestamp(timestamp: i64, now: i64, tolerance_s: i64) -> Result<(), VerifyError> {
    if now.abs_diff(timestamp) > tolerance_s.unsigned_abs() {
        return Err(VerifyError::TimestampOutOfTolerance {
            timestamp,
            now,
            tolerance_s,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_tolerance_is_inclusive_and_symmetric() {
        assert!(check_timestamp(1_000, 1_300, 300).is_ok());
        assert!(check_timestamp(1_600, 1_300, 300).is_ok());
        assert!(check_timestamp(999, 1_300, 300).unwrap_err().is_timestamp());
        assert!(check_timestamp(1_601, 1_300, 300)
            .unwrap_err()
            .is_timestamp());
        assert!(check_timestamp(i64::MIN, i64::MAX, 300).is_err());
    }

    #[test]
    fn matches_any_needs_equal_length_and_bytes() {
        let mac = [7u8; 32];
        assert!(matches_any(&mac, &[vec![1u8; 32], vec![7u8; 32]]));
        assert!(!matches_any(&mac, &[vec![7u8; 31]]));
        assert!(!matches_any::<Vec<u8>>(&mac, &[]));
    }

    #[test]
    fn error_messages_are_lowercase() {
        let errors = [
            VerifyError::MissingHeader("webhook-id".into()),
            VerifyError::Malformed("webhook-timestamp is not an integer number of seconds".into()),
            VerifyError::TimestampOutOfTolerance {
                timestamp: 1,
                now: 1_000,
                tolerance_s: 300,
            },
            VerifyError::Mismatch,
        ];
        for error in errors {
            let message = error.to_string();
            assert_eq!(message, message.to_lowercase(), "{message}");
        }
    }
}
