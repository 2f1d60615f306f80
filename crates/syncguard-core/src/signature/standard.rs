//! Standard Webhooks (standardwebhooks.com), also what Svix sends under `svix-*` header names.
//!
//! The signed content is `{id}.{timestamp}.{body}`. The signature header is a space-separated
//! list of `version,signature` entries so that a sender can sign with an old and a new key
//! during a rotation: `v1` is base64 HMAC-SHA256 keyed by the base64 payload of a `whsec_`
//! secret, `v1a` is a base64 ed25519 signature checked against a `whpk_` public key. Entries of
//! other versions are ignored, as the spec asks, so new versions can be introduced.

use base64::Engine;
use ed25519_dalek::{Signature, SigningKey, VerifyingKey, PUBLIC_KEY_LENGTH, SECRET_KEY_LENGTH};
use rand::{CryptoRng, RngCore};

use super::config::Key;
use super::{
    check_timestamp, first_match, hmac_sha256, matches_any, parse_timestamp, required_header,
    HeaderLookup, Verified, VerifyError, BASE64, MAC_LEN,
};

/// Each header with its Svix alias; the `webhook-` name is the one reported when both are
/// missing.
const ID: [&str; 2] = ["webhook-id", "svix-id"];
const TIMESTAMP: [&str; 2] = ["webhook-timestamp", "svix-timestamp"];
const SIGNATURE: [&str; 2] = ["webhook-signature", "svix-signature"];

/// More entries than this in one signature header is not a rotation but an attempt to make us
/// burn CPU (each `v1a` entry costs an ed25519 verification per key).
const MAX_SIGNATURES: usize = 16;

pub(super) fn verify<H: HeaderLookup + ?Sized>(
    keys: &[Key],
    tolerance_s: i64,
    headers: &H,
    body: &[u8],
    now_s: i64,
) -> Result<Verified, VerifyError> {
    let id = aliased_header(headers, ID)?;
    let timestamp = parse_timestamp(aliased_header(headers, TIMESTAMP)?, TIMESTAMP[0])?;
    let signatures = Signatures::parse(aliased_header(headers, SIGNATURE)?)?;
    check_timestamp(timestamp, now_s, tolerance_s)?;

    let content = signed_content(id, timestamp, body);
    let secret_index = first_match(keys, |key| match key {
        Key::Hmac(secret) => matches_any(&hmac_sha256(secret, &[&content]), &signatures.hmac),
        Key::Ed25519(public) => signatures.ed25519.iter().fold(false, |ok, signature| {
            public.verify_strict(&content, signature).is_ok() | ok
        }),
    })
    .ok_or(VerifyError::Mismatch)?;

    Ok(Verified {
        delivery_id: Some(id.to_owned()),
        event_type: None,
        timestamp: Some(timestamp),
        secret_index,
    })
}

/// Signs `{id}.{timestamp}.{body}` as Standard Webhooks does: returns `v1,<base64 HMAC-SHA256>`,
/// keyed by the base64-decoded part of `secret` (`whsec_…`; a secret without the prefix is
/// decoded whole). A secret that is not base64 at all is used as raw bytes, so any test string
/// can sign; such a secret is refused by [`super::WebhookAuth`], so it cannot verify.
pub fn sign_standard(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let raw = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64
        .decode(raw)
        .unwrap_or_else(|_| raw.as_bytes().to_vec());
    let mac = hmac_sha256(&key, &[&signed_content(msg_id, timestamp, body)]);
    format!("v1,{}", BASE64.encode(mac))
}

/// Signs `{id}.{timestamp}.{body}` with ed25519 under a `whsk_` signing key: returns
/// `v1a,<base64 signature>`.
pub fn sign_standard_ed25519(
    signing_key: &str,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, KeyError> {
    use ed25519_dalek::Signer;
    let key = parse_signing_key(signing_key)?;
    let signature = key.sign(&signed_content(msg_id, timestamp, body));
    Ok(format!("v1a,{}", BASE64.encode(signature.to_bytes())))
}

/// A new ed25519 key pair as (`whsk_…` signing key, `whpk_…` public key).
///
/// The signing key holds the 64-byte seed-and-public-key form (as Go, NaCl and libsodium write
/// it); [`sign_standard_ed25519`] also accepts a bare 32-byte seed. `rng` must be a CSPRNG,
/// such as `rand::rngs::OsRng`.
pub fn generate_standard_keypair<R: RngCore + CryptoRng + ?Sized>(rng: &mut R) -> (String, String) {
    let mut seed = [0u8; SECRET_KEY_LENGTH];
    rng.fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    (
        format!("whsk_{}", BASE64.encode(key.to_keypair_bytes())),
        public_key_string(&key.verifying_key()),
    )
}

/// The `whpk_` public key of a `whsk_` signing key, for handing to receivers.
pub fn standard_public_key(signing_key: &str) -> Result<String, KeyError> {
    Ok(public_key_string(
        &parse_signing_key(signing_key)?.verifying_key(),
    ))
}

/// A `whsk_` signing key that cannot be used; says why without quoting it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signing key: {0}")]
pub struct KeyError(&'static str);

/// Decodes a secret configured for verification: `whsec_` (or bare base64, as Svix accepts)
/// for `v1`, `whpk_` for `v1a`.
pub(super) fn parse_verification_key(secret: &str) -> Result<Key, &'static str> {
    if let Some(encoded) = secret.strip_prefix("whpk_") {
        let bytes: [u8; PUBLIC_KEY_LENGTH] = BASE64
            .decode(encoded)
            .map_err(|_| "whpk_ key is not valid base64")?
            .try_into()
            .map_err(|_| "whpk_ key must be 32 bytes")?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| "whpk_ key is not an ed25519 point")?;
        // A small-order key would accept forged signatures.
        if key.is_weak() {
            return Err("whpk_ key is a weak ed25519 key");
        }
        return Ok(Key::Ed25519(key));
    }
    if secret.starts_with("whsk_") {
        return Err("whsk_ is a private signing key; configure its whpk_ public key instead");
    }
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = BASE64
        .decode(encoded)
        .map_err(|_| "whsec_ secret is not valid base64")?;
    if key.is_empty() {
        return Err("whsec_ secret is empty");
    }
    Ok(Key::Hmac(key))
}

fn parse_signing_key(signing_key: &str) -> Result<SigningKey, KeyError> {
    let encoded = signing_key
        .strip_prefix("whsk_")
        .ok_or(KeyError("must start with whsk_"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| KeyError("not valid base64 after whsk_"))?;
    if let Ok(seed) = <[u8; SECRET_KEY_LENGTH]>::try_from(bytes.as_slice()) {
        return Ok(SigningKey::from_bytes(&seed));
    }
    let pair = <[u8; 64]>::try_from(bytes.as_slice())
        .map_err(|_| KeyError("must hold a 32-byte seed or a 64-byte key pair"))?;
    SigningKey::from_keypair_bytes(&pair)
        .map_err(|_| KeyError("public half does not match the seed"))
}

fn public_key_string(key: &VerifyingKey) -> String {
    format!("whpk_{}", BASE64.encode(key.as_bytes()))
}

/// `{id}.{timestamp}.{body}`, with the timestamp re-formatted from its parsed value as the
/// reference libraries do.
fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

fn aliased_header<'h, H: HeaderLookup + ?Sized>(
    headers: &'h H,
    [name, alias]: [&str; 2],
) -> Result<&'h str, VerifyError> {
    required_header(headers, name)
        .or_else(|missing| required_header(headers, alias).map_err(|_| missing))
}

/// The decodable entries of a signature header, by kind.
struct Signatures {
    hmac: Vec<Vec<u8>>,
    ed25519: Vec<Signature>,
}

impl Signatures {
    fn parse(header: &str) -> Result<Self, VerifyError> {
        let entries: Vec<&str> = header.split_ascii_whitespace().collect();
        if entries.len() > MAX_SIGNATURES {
            return Err(VerifyError::Malformed(format!(
                "webhook-signature has more than {MAX_SIGNATURES} entries"
            )));
        }
        let mut signatures = Signatures {
            hmac: Vec::new(),
            ed25519: Vec::new(),
        };
        for entry in entries {
            match entry.split_once(',') {
                Some(("v1", encoded)) => signatures.hmac.extend(
                    BASE64
                        .decode(encoded)
                        .ok()
                        .filter(|mac| mac.len() == MAC_LEN),
                ),
                Some(("v1a", encoded)) => signatures.ed25519.extend(
                    BASE64
                        .decode(encoded)
                        .ok()
                        .and_then(|bytes| Signature::from_slice(&bytes).ok()),
                ),
                _ => {}
            }
        }
        if signatures.hmac.is_empty() && signatures.ed25519.is_empty() {
            return Err(VerifyError::Malformed(
                "webhook-signature has no valid v1 or v1a entry".into(),
            ));
        }
        Ok(signatures)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{verify, Scheme, WebhookAuth};
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    /// Published by Standard Webhooks: the `test_sign` vector of its reference libraries
    /// (github.com/standard-webhooks/standard-webhooks, `libraries/rust/src/lib.rs` and the
    /// other languages), also used by Svix's.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const MSG_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TIMESTAMP: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIGNATURE: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    /// An unrelated secret, for rotation and wrong-secret cases.
    const OTHER_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn auth(secrets: &[&str]) -> WebhookAuth {
        WebhookAuth::new(Scheme::Standard, secrets, 300).unwrap()
    }

    fn headers(signature: &str) -> Vec<(String, String)> {
        vec![
            ("webhook-id".into(), MSG_ID.into()),
            ("webhook-timestamp".into(), TIMESTAMP.to_string()),
            ("webhook-signature".into(), signature.into()),
        ]
    }

    fn check(
        auth: &WebhookAuth,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Verified, VerifyError> {
        verify(auth, headers, body, TIMESTAMP + 10)
    }

    #[test]
    fn published_vector_signs_and_verifies() {
        assert_eq!(sign_standard(SECRET, MSG_ID, TIMESTAMP, BODY), SIGNATURE);
        let verified = check(&auth(&[SECRET]), &headers(SIGNATURE), BODY).unwrap();
        assert_eq!(
            verified,
            Verified {
                delivery_id: Some(MSG_ID.into()),
                event_type: None,
                timestamp: Some(TIMESTAMP),
                secret_index: 0
            }
        );
    }

    #[test]
    fn svix_aliases_verify() {
        let svix = vec![
            ("Svix-Id".to_owned(), MSG_ID.to_owned()),
            ("Svix-Timestamp".to_owned(), TIMESTAMP.to_string()),
            ("Svix-Signature".to_owned(), SIGNATURE.to_owned()),
        ];
        assert!(check(&auth(&[SECRET]), &svix, BODY).is_ok());
    }

    #[test]
    fn rotation_accepts_old_and_new_secret() {
        let rotating = auth(&[OTHER_SECRET, SECRET]);
        assert_eq!(
            check(&rotating, &headers(SIGNATURE), BODY)
                .unwrap()
                .secret_index,
            1
        );
        let new = sign_standard(OTHER_SECRET, MSG_ID, TIMESTAMP, BODY);
        assert_eq!(
            check(&rotating, &headers(&new), BODY).unwrap().secret_index,
            0
        );
        // A sender mid-rotation signs with both keys; one valid entry is enough.
        let both = format!("v1,AAAA {new} {SIGNATURE}");
        assert!(check(&auth(&[SECRET]), &headers(&both), BODY).is_ok());
    }

    #[test]
    fn tampered_body_and_wrong_secret_mismatch() {
        let tampered = br#"{"email":"test@example.com","username":"test_user2"}"#;
        assert_eq!(
            check(&auth(&[SECRET]), &headers(SIGNATURE), tampered),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(&auth(&[OTHER_SECRET]), &headers(SIGNATURE), BODY),
            Err(VerifyError::Mismatch)
        );
        // Signing the id into the content means a signature cannot be moved to another id.
        let mut moved = headers(SIGNATURE);
        moved[0].1 = "msg_other".into();
        assert_eq!(
            check(&auth(&[SECRET]), &moved, BODY),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        for (index, name) in ["webhook-id", "webhook-timestamp", "webhook-signature"]
            .into_iter()
            .enumerate()
        {
            let mut partial = headers(SIGNATURE);
            partial.remove(index);
            assert_eq!(
                check(&auth(&[SECRET]), &partial, BODY),
                Err(VerifyError::MissingHeader(name.into()))
            );
        }
        let mut blank = headers(SIGNATURE);
        blank[2].1 = "  ".into();
        assert_eq!(
            check(&auth(&[SECRET]), &blank, BODY),
            Err(VerifyError::MissingHeader("webhook-signature".into()))
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let auth = auth(&[SECRET]);
        for now in [TIMESTAMP + 301, TIMESTAMP - 301] {
            let err = verify(&auth, &headers(SIGNATURE), BODY, now).unwrap_err();
            assert!(err.is_timestamp(), "{err}");
            assert_eq!(
                err,
                VerifyError::TimestampOutOfTolerance {
                    timestamp: TIMESTAMP,
                    now,
                    tolerance_s: 300
                }
            );
        }
        assert!(verify(&auth, &headers(SIGNATURE), BODY, TIMESTAMP + 300).is_ok());
    }

    #[test]
    fn malformed_headers_are_refused() {
        let auth = auth(&[SECRET]);
        let mut bad_time = headers(SIGNATURE);
        bad_time[1].1 = "yesterday".into();
        assert!(matches!(
            check(&auth, &bad_time, BODY),
            Err(VerifyError::Malformed(_))
        ));

        for signature in [
            "tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            "v1,not*base64",
            "v2,abcd",
            "v1a,AAAA",
        ] {
            assert!(
                matches!(
                    check(&auth, &headers(signature), BODY),
                    Err(VerifyError::Malformed(_))
                ),
                "{signature}"
            );
        }
        let flood = vec![SIGNATURE; MAX_SIGNATURES + 1].join(" ");
        assert!(matches!(
            check(&auth, &headers(&flood), BODY),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_versions_are_ignored() {
        let mixed = format!("v2,c29tZXRoaW5n {SIGNATURE}");
        assert!(check(&auth(&[SECRET]), &headers(&mixed), BODY).is_ok());
    }

    #[test]
    fn ed25519_v1a_verifies_with_whpk_key() {
        let mut rng = StdRng::seed_from_u64(7);
        let (signing, public) = generate_standard_keypair(&mut rng);
        assert!(signing.starts_with("whsk_") && public.starts_with("whpk_"));
        assert_eq!(standard_public_key(&signing).unwrap(), public);

        let v1a = sign_standard_ed25519(&signing, MSG_ID, TIMESTAMP, BODY).unwrap();
        assert!(v1a.starts_with("v1a,"));
        let asymmetric = auth(&[SECRET, &public]);
        let verified = check(&asymmetric, &headers(&v1a), BODY).unwrap();
        assert_eq!(verified.secret_index, 1);
        // HMAC and ed25519 entries side by side, as the spec's example header has them.
        let both = format!("{SIGNATURE} {v1a}");
        assert_eq!(
            check(&auth(&[&public]), &headers(&both), BODY)
                .unwrap()
                .secret_index,
            0
        );

        assert_eq!(
            check(&asymmetric, &headers(&v1a), b"tampered"),
            Err(VerifyError::Mismatch)
        );
        let (_, stranger) = generate_standard_keypair(&mut rng);
        assert_eq!(
            check(&auth(&[&stranger]), &headers(&v1a), BODY),
            Err(VerifyError::Mismatch)
        );
        // A v1a signature does not verify as HMAC under a whsec_ secret, nor the reverse.
        assert_eq!(
            check(&auth(&[SECRET]), &headers(&v1a), BODY),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(&auth(&[&public]), &headers(SIGNATURE), BODY),
            Err(VerifyError::Mismatch)
        );
    }

    /// RFC 8032 §7.1 TEST 1: its secret key (seed) and public key, to pin down that a 32-byte
    /// `whsk_` payload is read as the seed and the `whpk_` form is the raw public key.
    #[test]
    fn rfc8032_key_derivation() {
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
            .unwrap();
        let public =
            hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
                .unwrap();
        let signing = format!("whsk_{}", BASE64.encode(&seed));
        assert_eq!(
            standard_public_key(&signing).unwrap(),
            format!("whpk_{}", BASE64.encode(&public))
        );
        let pair = format!(
            "whsk_{}",
            BASE64.encode([seed.as_slice(), public.as_slice()].concat())
        );
        assert_eq!(
            sign_standard_ed25519(&pair, MSG_ID, TIMESTAMP, BODY),
            sign_standard_ed25519(&signing, MSG_ID, TIMESTAMP, BODY)
        );
    }

    #[test]
    fn bad_signing_keys_are_refused_without_quoting_them() {
        for key in ["whpk_AAAA", "whsk_***", "whsk_AAAA"] {
            let err = sign_standard_ed25519(key, MSG_ID, TIMESTAMP, BODY).unwrap_err();
            assert!(!err.to_string().contains("AAAA"), "{err}");
        }
        let mismatched = format!("whsk_{}", BASE64.encode([1u8; 64]));
        assert!(standard_public_key(&mismatched).is_err());
    }
}
