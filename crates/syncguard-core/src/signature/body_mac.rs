//! Schemes that sign only the body: Shopify, GitHub and the configurable `hmac-sha256`.
//!
//! Each is HMAC-SHA256 of the raw body keyed by the secret's own bytes. Nothing time-bound is
//! signed, so replays are caught by delivery-id deduplication, not here.

use base64::Engine;

use super::config::{Encoding, Key};
use super::{
    first_match, hmac_sha256, matches_any, optional_header, required_header, HeaderLookup,
    Verified, VerifyError, BASE64, MAC_LEN,
};

const SHOPIFY_HMAC: &str = "x-shopify-hmac-sha256";
const SHOPIFY_WEBHOOK_ID: &str = "x-shopify-webhook-id";
const SHOPIFY_TOPIC: &str = "x-shopify-topic";
const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
const GITHUB_DELIVERY: &str = "x-github-delivery";
const GITHUB_EVENT: &str = "x-github-event";

pub(super) fn verify_shopify<H: HeaderLookup + ?Sized>(
    keys: &[Key],
    headers: &H,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let signature = BASE64
        .decode(required_header(headers, SHOPIFY_HMAC)?)
        .ok()
        .filter(|mac| mac.len() == MAC_LEN)
        .ok_or_else(|| {
            VerifyError::Malformed(format!("{SHOPIFY_HMAC} is not a base64 sha256 mac"))
        })?;
    let secret_index = verify_body_mac(keys, body, &signature)?;
    Ok(Verified {
        delivery_id: optional_header(headers, SHOPIFY_WEBHOOK_ID).map(str::to_owned),
        event_type: optional_header(headers, SHOPIFY_TOPIC).map(str::to_owned),
        timestamp: None,
        secret_index,
    })
}

pub(super) fn verify_github<H: HeaderLookup + ?Sized>(
    keys: &[Key],
    headers: &H,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let signature = required_header(headers, GITHUB_SIGNATURE)?
        .strip_prefix("sha256=")
        .and_then(|encoded| hex::decode(encoded).ok())
        .filter(|mac| mac.len() == MAC_LEN)
        .ok_or_else(|| VerifyError::Malformed(format!("{GITHUB_SIGNATURE} is not sha256=<hex>")))?;
    let secret_index = verify_body_mac(keys, body, &signature)?;
    Ok(Verified {
        delivery_id: optional_header(headers, GITHUB_DELIVERY).map(str::to_owned),
        event_type: optional_header(headers, GITHUB_EVENT).map(str::to_owned),
        timestamp: None,
        secret_index,
    })
}

pub(super) fn verify_hmac<H: HeaderLookup + ?Sized>(
    keys: &[Key],
    header: &str,
    prefix: Option<&str>,
    encoding: Encoding,
    headers: &H,
    body: &[u8],
) -> Result<Verified, VerifyError> {
    let value = required_header(headers, header)?;
    let encoded = match prefix {
        Some(prefix) => value.strip_prefix(prefix).ok_or_else(|| {
            VerifyError::Malformed(format!(
                "{header} does not start with the configured prefix"
            ))
        })?,
        None => value,
    };
    let signature = encoding
        .decode(encoded)
        .filter(|mac| mac.len() == MAC_LEN)
        .ok_or_else(|| {
            VerifyError::Malformed(format!("{header} is not a {} sha256 mac", encoding.name()))
        })?;
    let secret_index = verify_body_mac(keys, body, &signature)?;
    Ok(Verified {
        delivery_id: None,
        event_type: None,
        timestamp: None,
        secret_index,
    })
}

/// The `X-Shopify-Hmac-Sha256` header value for `body`.
pub fn sign_shopify(secret: &str, body: &[u8]) -> String {
    sign_hmac(secret, body, Encoding::Base64)
}

/// The `X-Hub-Signature-256` header value for `body`.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", sign_hmac(secret, body, Encoding::Hex))
}

/// HMAC-SHA256 of `body` keyed by the bytes of `secret`, encoded; no prefix.
pub fn sign_hmac(secret: &str, body: &[u8], encoding: Encoding) -> String {
    encoding.encode(&hmac_sha256(secret.as_bytes(), &[body]))
}

fn verify_body_mac(keys: &[Key], body: &[u8], signature: &[u8]) -> Result<usize, VerifyError> {
    first_match(keys, |key| {
        key.hmac()
            .is_some_and(|secret| matches_any(&hmac_sha256(secret, &[body]), &[signature]))
    })
    .ok_or(VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::super::{verify, Scheme, WebhookAuth};
    use super::*;

    fn auth(scheme: Scheme, secrets: &[&str]) -> WebhookAuth {
        WebhookAuth::new(scheme, secrets, 300).unwrap()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    mod shopify {
        use super::*;

        /// Shopify's PHP library test fixture (Shopify/shopify-api-php, tests/Webhooks/
        /// RegistryTest.php `processHeaders` with the `steffi` API secret of
        /// tests/BaseTestCase.php): body `json_encode(['foo' => 'bar'])`.
        const SECRET: &str = "steffi";
        const BODY: &[u8] = br#"{"foo":"bar"}"#;
        const HMAC: &str = "/Redz4YXHLnSmmSN8grr5/Jl/Ua3d7yX3iWbjb8R8wo=";

        fn headers(hmac: &str) -> Vec<(String, String)> {
            pairs(&[
                ("X-Shopify-Hmac-Sha256", hmac),
                ("X-Shopify-Topic", "products/update"),
                (
                    "X-Shopify-Webhook-Id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
            ])
        }

        #[test]
        fn published_vector_signs_and_verifies() {
            assert_eq!(sign_shopify(SECRET, BODY), HMAC);
            let verified =
                verify(&auth(Scheme::Shopify, &[SECRET]), &headers(HMAC), BODY, 0).unwrap();
            assert_eq!(
                verified,
                Verified {
                    delivery_id: Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043".into()),
                    event_type: Some("products/update".into()),
                    timestamp: None,
                    secret_index: 0
                }
            );
        }

        #[test]
        fn rotation_tampering_and_wrong_secret() {
            let rotating = auth(Scheme::Shopify, &["new-secret", SECRET]);
            assert_eq!(
                verify(&rotating, &headers(HMAC), BODY, 0)
                    .unwrap()
                    .secret_index,
                1
            );
            let new = sign_shopify("new-secret", BODY);
            assert_eq!(
                verify(&rotating, &headers(&new), BODY, 0)
                    .unwrap()
                    .secret_index,
                0
            );
            let only = auth(Scheme::Shopify, &[SECRET]);
            assert_eq!(
                verify(&only, &headers(HMAC), br#"{"foo":"baz"}"#, 0),
                Err(VerifyError::Mismatch)
            );
            assert_eq!(
                verify(&only, &headers(&new), BODY, 0),
                Err(VerifyError::Mismatch)
            );
        }

        #[test]
        fn missing_and_malformed_headers() {
            let only = auth(Scheme::Shopify, &[SECRET]);
            assert_eq!(
                verify(&only, &pairs(&[("X-Shopify-Topic", "x")]), BODY, 0),
                Err(VerifyError::MissingHeader("x-shopify-hmac-sha256".into()))
            );
            // The invalid value of the same PHP test (testProcessThrowsErrorOnInvalidHmac).
            assert!(matches!(
                verify(&only, &headers("whoops_this_is_wrong"), BODY, 0),
                Err(VerifyError::Malformed(_))
            ));
        }
    }

    mod github {
        use super::*;

        /// GitHub's documented test values ("Validating webhook deliveries", docs.github.com):
        /// secret "It's a Secret to Everybody", payload "Hello, World!".
        const SECRET: &str = "It's a Secret to Everybody";
        const BODY: &[u8] = b"Hello, World!";
        const SIGNATURE: &str =
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

        fn headers(signature: &str) -> Vec<(String, String)> {
            pairs(&[
                ("X-Hub-Signature-256", signature),
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ])
        }

        #[test]
        fn published_vector_signs_and_verifies() {
            assert_eq!(sign_github(SECRET, BODY), SIGNATURE);
            let verified = verify(
                &auth(Scheme::Github, &[SECRET]),
                &headers(SIGNATURE),
                BODY,
                0,
            )
            .unwrap();
            assert_eq!(
                verified,
                Verified {
                    delivery_id: Some("72d3162e-cc78-11e3-81ab-4c9367dc0958".into()),
                    event_type: Some("push".into()),
                    timestamp: None,
                    secret_index: 0
                }
            );
            // Hex case does not matter once decoded.
            assert!(verify(
                &auth(Scheme::Github, &[SECRET]),
                &headers(&SIGNATURE.to_uppercase().replace("SHA256=", "sha256=")),
                BODY,
                0
            )
            .is_ok());
        }

        #[test]
        fn rotation_tampering_and_wrong_secret() {
            let rotating = auth(Scheme::Github, &["new", SECRET]);
            assert_eq!(
                verify(&rotating, &headers(SIGNATURE), BODY, 0)
                    .unwrap()
                    .secret_index,
                1
            );
            assert_eq!(
                verify(&rotating, &headers(&sign_github("new", BODY)), BODY, 0)
                    .unwrap()
                    .secret_index,
                0
            );
            let only = auth(Scheme::Github, &[SECRET]);
            assert_eq!(
                verify(&only, &headers(SIGNATURE), b"Hello, World?", 0),
                Err(VerifyError::Mismatch)
            );
            assert_eq!(
                verify(
                    &auth(Scheme::Github, &["wrong"]),
                    &headers(SIGNATURE),
                    BODY,
                    0
                ),
                Err(VerifyError::Mismatch)
            );
        }

        #[test]
        fn missing_and_malformed_headers() {
            let only = auth(Scheme::Github, &[SECRET]);
            assert_eq!(
                verify(&only, &pairs(&[("X-GitHub-Event", "push")]), BODY, 0),
                Err(VerifyError::MissingHeader("x-hub-signature-256".into()))
            );
            let bare_hex = SIGNATURE.trim_start_matches("sha256=");
            let sha1 = "sha1=7d38cdd689735b008b3c702edd92eea23791c5f6";
            for signature in [bare_hex, sha1, "sha256=xyz"] {
                assert!(
                    matches!(
                        verify(&only, &headers(signature), BODY, 0),
                        Err(VerifyError::Malformed(_))
                    ),
                    "{signature}"
                );
            }
        }
    }

    mod generic {
        use super::*;

        fn scheme(prefix: Option<&str>, encoding: Encoding) -> Scheme {
            Scheme::HmacSha256 {
                header: "X-Signature".into(),
                prefix: prefix.map(str::to_owned),
                encoding,
            }
        }

        #[test]
        fn hex_and_base64_with_and_without_prefix() {
            // The GitHub vector again: the same MAC, read through the generic scheme.
            let secret = "It's a Secret to Everybody";
            let body = b"Hello, World!";
            let hex = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
            assert_eq!(sign_hmac(secret, body, Encoding::Hex), hex);

            let cases = [
                (scheme(None, Encoding::Hex), hex.to_owned()),
                (
                    scheme(Some("sha256="), Encoding::Hex),
                    format!("sha256={hex}"),
                ),
                (
                    scheme(None, Encoding::Base64),
                    sign_hmac(secret, body, Encoding::Base64),
                ),
            ];
            for (scheme, header) in cases {
                let verified = verify(
                    &auth(scheme, &[secret]),
                    &pairs(&[("x-signature", &header)]),
                    body,
                    0,
                )
                .unwrap();
                assert_eq!(
                    verified,
                    Verified {
                        delivery_id: None,
                        event_type: None,
                        timestamp: None,
                        secret_index: 0
                    }
                );
            }
        }

        #[test]
        fn rotation_tampering_missing_and_malformed() {
            let rotating = auth(scheme(Some("sha256="), Encoding::Hex), &["old", "new"]);
            for (index, secret) in ["old", "new"].into_iter().enumerate() {
                let header = format!("sha256={}", sign_hmac(secret, b"body", Encoding::Hex));
                let headers = pairs(&[("X-Signature", &header)]);
                assert_eq!(
                    verify(&rotating, &headers, b"body", 0)
                        .unwrap()
                        .secret_index,
                    index
                );
                assert_eq!(
                    verify(&rotating, &headers, b"bodY", 0),
                    Err(VerifyError::Mismatch)
                );
            }
            assert_eq!(
                verify(&rotating, &pairs(&[("x-other", "1")]), b"body", 0),
                Err(VerifyError::MissingHeader("x-signature".into()))
            );
            let unprefixed = sign_hmac("old", b"body", Encoding::Hex);
            for header in [unprefixed.as_str(), "sha256=not-hex"] {
                assert!(
                    matches!(
                        verify(&rotating, &pairs(&[("x-signature", header)]), b"body", 0),
                        Err(VerifyError::Malformed(_))
                    ),
                    "{header}"
                );
            }
        }
    }
}
