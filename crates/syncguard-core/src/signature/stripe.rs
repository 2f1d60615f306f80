//! Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]` over `{t}.{body}`.
//!
//! The HMAC key is the secret string itself: Stripe's `whsec_…` secrets are not base64-decoded
//! the way Standard Webhooks secrets are. The signed timestamp gives replay protection.

use super::config::Key;
use super::{
    check_timestamp, first_match, hmac_sha256, matches_any, parse_timestamp, required_header,
    HeaderLookup, Verified, VerifyError, MAC_LEN,
};

const STRIPE_SIGNATURE: &str = "stripe-signature";

/// Stripe sends one `v1` per active secret; more than this is not a rotation.
const MAX_SIGNATURES: usize = 16;

pub(super) fn verify<H: HeaderLookup + ?Sized>(
    keys: &[Key],
    tolerance_s: i64,
    headers: &H,
    body: &[u8],
    now_s: i64,
) -> Result<Verified, VerifyError> {
    let (timestamp, signatures) = parse_header(required_header(headers, STRIPE_SIGNATURE)?)?;
    check_timestamp(timestamp, now_s, tolerance_s)?;
    let signed_prefix = format!("{timestamp}.");
    let secret_index = first_match(keys, |key| {
        key.hmac().is_some_and(|secret| {
            matches_any(
                &hmac_sha256(secret, &[signed_prefix.as_bytes(), body]),
                &signatures,
            )
        })
    })
    .ok_or(VerifyError::Mismatch)?;
    Ok(Verified {
        delivery_id: None,
        event_type: None,
        timestamp: Some(timestamp),
        secret_index,
    })
}

/// `t=<timestamp>,v1=<hex>[,v1=<hex>…]`, as Stripe's own libraries read it: items in any order,
/// unknown keys (such as the test-mode `v0`) ignored, undecodable `v1` values skipped.
fn parse_header(header: &str) -> Result<(i64, Vec<Vec<u8>>), VerifyError> {
    let malformed = |detail: &str| VerifyError::Malformed(format!("{STRIPE_SIGNATURE} {detail}"));
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for (key, value) in header
        .split(',')
        .filter_map(|item| item.trim().split_once('='))
    {
        match key {
            "t" if timestamp.is_some() => return Err(malformed("has more than one t")),
            "t" => timestamp = Some(parse_timestamp(value, STRIPE_SIGNATURE)?),
            "v1" => signatures.extend(hex::decode(value).ok().filter(|mac| mac.len() == MAC_LEN)),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("has no t"))?;
    if signatures.is_empty() {
        return Err(malformed("has no valid v1 signature"));
    }
    if signatures.len() > MAX_SIGNATURES {
        return Err(malformed("has too many v1 signatures"));
    }
    Ok((timestamp, signatures))
}

/// Signs `{t}.{body}` as Stripe does and returns the whole `Stripe-Signature` header value.
pub fn sign_stripe(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mac = hmac_sha256(
        secret.as_bytes(),
        &[format!("{timestamp}.").as_bytes(), body],
    );
    format!("t={timestamp},v1={}", hex::encode(mac))
}

#[cfg(test)]
mod tests {
    use super::super::{verify, Scheme, WebhookAuth};
    use super::*;

    fn auth(secrets: &[&str]) -> WebhookAuth {
        WebhookAuth::new(Scheme::Stripe, secrets, 300).unwrap()
    }

    /// stripe-dotnet's signature fixture (src/StripeTests/Services/Events/
    /// EventUtilityTest.cs with Resources/event_test_signature.json): secret
    /// `webhook_secret`, t=1533204620, the JSON file's bytes (LF line endings, trailing
    /// newline) as the body. The `v0` value is Stripe's test-mode scheme and is ignored.
    const SECRET: &str = "webhook_secret";
    const T: i64 = 1533204620;
    const HEADER: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";
    const BODY: &str = r#"{
  "id": "evt_123",
  "object": "event",
  "account": "acct_123",
  "api_version": "2017-05-25",
  "created": 1533204620,
  "data": {
    "object": {
      "id": "cus_123",
      "object": "customer",
      "created": 123456789,
      "email": "test@stripe.com",
      "livemode": false,
      "metadata": {}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {
    "id": "req_123",
    "idempotency_key": "idempotency-key-123"
  },
  "type": "customer.created"
}
"#;

    fn check(
        auth: &WebhookAuth,
        header: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        verify(auth, &[("Stripe-Signature", header)], body, now)
    }

    #[test]
    fn published_vector_signs_and_verifies() {
        let expected = HEADER.rsplit_once(",v0=").unwrap().0;
        assert_eq!(sign_stripe(SECRET, T, BODY.as_bytes()), expected);
        let verified = check(&auth(&[SECRET]), HEADER, BODY.as_bytes(), T + 100).unwrap();
        assert_eq!(
            verified,
            Verified {
                delivery_id: None,
                event_type: None,
                timestamp: Some(T),
                secret_index: 0
            }
        );
    }

    #[test]
    fn whsec_secrets_key_the_hmac_as_a_string() {
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let header = sign_stripe(secret, T, b"{}");
        assert_eq!(
            header,
            format!(
                "t={T},v1={}",
                hex::encode(hmac_sha256(secret.as_bytes(), &[b"1533204620.{}"]))
            )
        );
        assert!(check(&auth(&[secret]), &header, b"{}", T).is_ok());
    }

    #[test]
    fn rotation_and_multiple_v1() {
        let rotating = auth(&["whsec_new", SECRET]);
        assert_eq!(
            check(&rotating, HEADER, BODY.as_bytes(), T)
                .unwrap()
                .secret_index,
            1
        );
        let new = sign_stripe("whsec_new", T, BODY.as_bytes());
        assert_eq!(
            check(&rotating, &new, BODY.as_bytes(), T)
                .unwrap()
                .secret_index,
            0
        );
        // During a rotation on Stripe's side the header carries one v1 per secret.
        let both = format!("{new},v1={}", "00".repeat(32));
        assert!(check(&auth(&["whsec_new"]), &both, BODY.as_bytes(), T).is_ok());
    }

    #[test]
    fn tampered_body_and_wrong_secret_mismatch() {
        let auth_ok = auth(&[SECRET]);
        let tampered = format!("{BODY}this_changes_the_json");
        assert_eq!(
            check(&auth_ok, HEADER, tampered.as_bytes(), T),
            Err(VerifyError::Mismatch)
        );
        let wrong = auth(&["whsec_wrong"]);
        assert_eq!(
            check(&wrong, HEADER, BODY.as_bytes(), T),
            Err(VerifyError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        let moved = HEADER.replace("t=1533204620", "t=1533204621");
        assert_eq!(
            check(&auth_ok, &moved, BODY.as_bytes(), T),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let auth = auth(&[SECRET]);
        for now in [T + 301, T - 301] {
            let err = check(&auth, HEADER, BODY.as_bytes(), now).unwrap_err();
            assert_eq!(
                err,
                VerifyError::TimestampOutOfTolerance {
                    timestamp: T,
                    now,
                    tolerance_s: 300
                }
            );
        }
    }

    #[test]
    fn missing_and_malformed_headers() {
        let auth = auth(&[SECRET]);
        assert_eq!(
            verify(&auth, &[("x-other", "1")], BODY.as_bytes(), T),
            Err(VerifyError::MissingHeader("stripe-signature".into()))
        );
        // The malformed headers of stripe-dotnet's ValidateSignatureHandlesIncorrectHeaderValues.
        let v1 = "v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7";
        let no_t = format!("t=,{v1}");
        for header in [
            no_t.as_str(),
            "t,v1=,v0=",
            "t,v1=,v0",
            "t,v1=,",
            "t,,",
            ",,",
            "t",
            v1,
            "t=1,t=2,v1=00",
            "t=1,v1=zz",
        ] {
            assert!(
                matches!(
                    check(&auth, header, BODY.as_bytes(), T),
                    Err(VerifyError::Malformed(_))
                ),
                "{header}"
            );
        }
    }
}
