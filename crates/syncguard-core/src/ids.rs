//! Identifiers and API key material.
//!
//! Object ids are `prefix_` + a UUIDv7 in simple form, so they sort by creation time and say
//! what they name. API keys are `sg_live_` + 32 random bytes in hex; only their SHA-256 is
//! stored (a high-entropy token needs no slow hash: nothing to brute-force).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// A new time-ordered id such as `ten_0192…`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
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
        let a = new_id("job");
        let b = new_id("job");
        assert!(a.starts_with("job_"));
        assert!(a < b);
    }
}
