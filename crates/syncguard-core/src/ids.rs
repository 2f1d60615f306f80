//! Identifiers and API key material.
//!
//! Object ids are `prefix_` + a UUIDv7 in simple form, so they sort by creation time and say
//! what they name. The caller passes the time and the random bits (this crate reads no clock and
//! draws no randomness of its own). API keys are `sg_live_` + 32 random bytes in hex; only their SHA-256 is
//! stored (a high-entropy token needs no slow hash: nothing to brute-force).

use crate::Millis;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Mutex;

/// A new time-ordered id such as `ten_0192…` for the Unix time `now_ms`, with `random` as its
/// random bits. Ids made for the same millisecond sort by their random bits; [`IdGen`] keeps
/// them in the order they were made.
pub fn new_id(prefix: &str, now_ms: Millis, random: [u8; 10]) -> String {
    format!(
        "{prefix}_{}",
        uuid::Uuid::from_u128(v7(now_ms, random)).simple()
    )
}

fn v7(now_ms: Millis, random: [u8; 10]) -> u128 {
    uuid::Builder::from_unix_timestamp_millis(now_ms.max(0) as u64, &random)
        .into_uuid()
        .as_u128()
}

/// Makes ids that sort in the order they were made, also within one millisecond (UUIDv7's
/// counter method): the owner keeps one per process.
#[derive(Debug, Default)]
pub struct IdGen {
    /// The millisecond of the last id and its value.
    last: Mutex<(Millis, u128)>,
}

impl IdGen {
    pub const fn new() -> IdGen {
        IdGen {
            last: Mutex::new((Millis::MIN, 0)),
        }
    }

    /// As [`new_id`], but never at or below the previous id of the same millisecond.
    pub fn next(&self, prefix: &str, now_ms: Millis, random: [u8; 10]) -> String {
        let fresh = v7(now_ms, random);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        // The low 62 bits are random; adding one stays inside them for any real burst.
        let value = if last.0 == now_ms && fresh <= last.1 {
            last.1 + 1
        } else {
            fresh
        };
        *last = (now_ms, value);
        format!("{prefix}_{}", uuid::Uuid::from_u128(value).simple())
    }
}

/// The prefix every API key starts with.
pub const API_KEY_PREFIX: &str = "sg_live_";

/// A fresh random API key, returned once to its creator and never stored in clear.
pub fn new_api_key<R: RngCore + ?Sized>(rng: &mut R) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    format!("{API_KEY_PREFIX}{}", hex::encode(bytes))
}

/// The stored form of an API key.
pub fn hash_api_key(key: &str) -> String {
    sha256_hex(key.as_bytes())
}

/// The last four characters of a key: enough for a person to tell keys apart, never enough
/// to use one.
pub fn last4(key: &str) -> String {
    let start = key.char_indices().rev().nth(3).map(|(i, _)| i).unwrap_or(0);
    key[start..].to_string()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_and_distinct() {
        let mut rng = rand::thread_rng();
        let a = new_api_key(&mut rng);
        let b = new_api_key(&mut rng);
        assert!(a.starts_with(API_KEY_PREFIX));
        assert_eq!(a.len(), API_KEY_PREFIX.len() + 64);
        assert_ne!(a, b);
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
        assert_eq!(hash_api_key(&a).len(), 64);
    }

    #[test]
    fn last4_is_the_tail() {
        assert_eq!(last4("sg_live_abcd1234"), "1234");
        assert_eq!(last4("ab"), "ab");
    }

    #[test]
    fn ids_sort_by_creation() {
        let ids = IdGen::new();
        let t = 1_800_000_000_000;
        let a = ids.next("job", t, [0xff; 10]);
        let b = ids.next("job", t, [0x00; 10]);
        let c = ids.next("job", t + 1, [0x00; 10]);
        assert!(a.starts_with("job_"));
        assert!(
            a < b,
            "same millisecond: in the order made, whatever the random bits"
        );
        assert!(b < c);
        assert!(
            new_id("job", t - 1, [0xff; 10]) < a,
            "an earlier time sorts first"
        );
        assert!(new_id("job", t, [0x00; 10]) < new_id("job", t, [0x01; 10]));
    }

    #[test]
    fn ids_carry_the_given_time_and_bits() {
        let t = 1_700_000_000_123;
        let id = new_id("evt", t + 7, [7; 10]);
        let u = uuid::Uuid::parse_str(id.strip_prefix("evt_").unwrap()).unwrap();
        assert_eq!(u.get_version_num(), 7);
        let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(secs as i64 * 1_000 + i64::from(nanos / 1_000_000), t + 7);
    }
}
