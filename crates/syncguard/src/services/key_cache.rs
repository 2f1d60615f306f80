//! Verified API keys, by key hash, for a short time (`api.key_cache_ttl_ms`, 30 s by default).
//!
//! Reads (`GET`, `HEAD`) authenticate from here once this node has verified the key, so a
//! health or list request costs no store round trip for its key and a store outage does not
//! stop a known key from reading what can be answered without the store (health). Writes
//! always ask the store: a revoked key can never change anything.
//!
//! Revocation takes effect on other nodes within the TTL; through this node's own API it takes
//! effect at once ([`KeyCache::evict_id`]). While the store is unreachable, health reads
//! accept a key this node verified before even past its TTL (nothing can be revoked while the
//! store is down, and health is exactly what an operator needs then); every other read still
//! needs a fresh entry or the store.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};
use syncguard_store::tenancy::ApiKey;

/// Most keys kept; beyond this the oldest entries are dropped (bounds memory against a flood
/// of distinct valid keys, which only an operator could create).
const MAX_ENTRIES: usize = 10_000;

/// How fresh an entry must be for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Verified within the TTL.
    WithinTtl,
    /// Verified at any time (health while the store is unreachable).
    Any,
}

pub struct KeyCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, (ApiKey, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The key whose hash is `key_hash`, if verified recently enough.
    pub fn get(&self, key_hash: &str, freshness: Freshness) -> Option<ApiKey> {
        if self.ttl.is_zero() && freshness == Freshness::WithinTtl {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let (key, at) = entries.get(key_hash)?;
        match freshness {
            Freshness::Any => Some(key.clone()),
            Freshness::WithinTtl => (at.elapsed() < self.ttl).then(|| key.clone()),
        }
    }

    /// Remembers a key the store just verified.
    pub fn insert(&self, key_hash: String, key: ApiKey) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key_hash) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key_hash, (key, Instant::now()));
    }

    /// Forgets a key the store no longer accepts.
    pub fn evict_hash(&self, key_hash: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key_hash);
    }

    /// Forgets the key with this id (revoked through this node's API).
    pub fn evict_id(&self, key_id: &str) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, (key, _)| key.id != key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncguard_core::role::Role;

    fn key(id: &str) -> ApiKey {
        ApiKey {
            id: id.into(),
            tenant_id: Some("ten_1".into()),
            role: Role::Viewer,
            name: "k".into(),
            last4: "abcd".into(),
            connections: None,
            created_at: 0,
            revoked_at: None,
        }
    }

    #[test]
    fn entries_expire_for_reads_but_not_for_outage_health() {
        let cache = KeyCache::new(Duration::from_millis(30));
        cache.insert("h1".into(), key("key_1"));
        assert!(cache.get("h1", Freshness::WithinTtl).is_some());
        std::thread::sleep(Duration::from_millis(40));
        assert!(cache.get("h1", Freshness::WithinTtl).is_none());
        assert!(cache.get("h1", Freshness::Any).is_some());
    }

    #[test]
    fn eviction_by_id_and_by_hash() {
        let cache = KeyCache::new(Duration::from_secs(30));
        cache.insert("h1".into(), key("key_1"));
        cache.insert("h2".into(), key("key_2"));
        cache.evict_id("key_1");
        assert!(cache.get("h1", Freshness::Any).is_none());
        assert!(cache.get("h2", Freshness::Any).is_some());
        cache.evict_hash("h2");
        assert!(cache.get("h2", Freshness::Any).is_none());
    }

    #[test]
    fn a_zero_ttl_disables_the_cache_for_reads() {
        let cache = KeyCache::new(Duration::ZERO);
        cache.insert("h1".into(), key("key_1"));
        assert!(cache.get("h1", Freshness::WithinTtl).is_none());
    }
}
