//! Sealed secrets (SPEC §3.3): credentials and webhook secrets are encrypted at rest with
//! XChaCha20-Poly1305 under a 32-byte master key. Every ciphertext names the key that sealed
//! it, so keys rotate: a [`Sealer`] holds the current key (used to seal) and any older keys
//! (used only to open), and `syncguard secrets rotate` re-seals everything under the current one.
//!
//! Layout of a sealed value: `b"sg1"` · key id length (1 byte) · key id · 24-byte nonce ·
//! ciphertext with tag. The key id is the first 16 hex characters of SHA-256 of the key, so it
//! identifies the key without revealing it.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 3] = b"sg1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("master key must be 32 bytes (base64 of 32 bytes)")]
    BadKey,
    #[error("sealed value is malformed")]
    Malformed,
    #[error("sealed with key {0}, which this node does not have")]
    UnknownKey(String),
    #[error("sealed value failed authentication (wrong key or tampered)")]
    Tampered,
}

/// A master key and its public id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        let id = hex::encode(&Sha256::digest(bytes)[..8]);
        let cipher = XChaCha20Poly1305::new_from_slice(bytes).map_err(|_| SealError::BadKey)?;
        Ok(MasterKey { id, cipher })
    }

    /// Parses the base64 form used by `SYNCGUARD_MASTER_KEY` and key files.
    pub fn from_base64(text: &str) -> Result<MasterKey, SealError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::BadKey)?;
        MasterKey::from_bytes(&bytes)
    }

    /// A fresh random key, in its base64 form.
    pub fn generate_base64<R: RngCore + CryptoRng>(rng: &mut R) -> String {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Seals with the current key, opens with any known key.
#[derive(Debug, Clone)]
pub struct Sealer {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Sealer {
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Sealer {
        Sealer { current, previous }
    }

    pub fn current_key_id(&self) -> &str {
        self.current.id()
    }

    /// Encrypts `plaintext`; `context` (e.g. the connection id) is bound as associated data, so
    /// a ciphertext copied onto another row does not open.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        plaintext: &[u8],
        context: &str,
        rng: &mut R,
    ) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rng.fill_bytes(&mut nonce);
        let ct = self
            .current
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("encryption of in-memory data cannot fail");
        let id = self.current.id.as_bytes();
        let mut out = Vec::with_capacity(MAGIC.len() + 1 + id.len() + nonce.len() + ct.len());
        out.extend_from_slice(MAGIC);
        out.push(id.len() as u8);
        out.extend_from_slice(id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The id of the key that sealed `sealed`.
    pub fn key_id_of(sealed: &[u8]) -> Result<&str, SealError> {
        let rest = sealed
            .strip_prefix(MAGIC.as_slice())
            .ok_or(SealError::Malformed)?;
        let (&len, rest) = rest.split_first().ok_or(SealError::Malformed)?;
        let id = rest.get(..len as usize).ok_or(SealError::Malformed)?;
        std::str::from_utf8(id).map_err(|_| SealError::Malformed)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, SealError> {
        let id = Sealer::key_id_of(sealed)?;
        let body = &sealed[MAGIC.len() + 1 + id.len()..];
        if body.len() < 24 + 16 {
            return Err(SealError::Malformed);
        }
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(id.to_string()))?;
        let (nonce, ct) = body.split_at(24);
        key.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| SealError::Tampered)
    }

    /// Whether `sealed` needs re-sealing under the current key.
    pub fn is_stale(&self, sealed: &[u8]) -> bool {
        Sealer::key_id_of(sealed)
            .map(|id| id != self.current.id)
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> MasterKey {
        MasterKey::from_bytes(&[b; 32]).unwrap()
    }

    #[test]
    fn round_trip_and_no_plaintext_in_ciphertext() {
        let s = Sealer::new(key(1), vec![]);
        let secret = b"x-trackstar-access-token=tok_live_123456";
        let sealed = s.seal(secret, "con_1", &mut rand::thread_rng());
        assert!(!sealed.windows(8).any(|w| secret.windows(8).any(|p| p == w)));
        assert_eq!(s.open(&sealed, "con_1").unwrap(), secret);
        assert_eq!(
            s.open(&sealed, "con_2"),
            Err(SealError::Tampered),
            "bound to its row"
        );
    }

    #[test]
    fn rotation_opens_old_and_seals_new() {
        let old = Sealer::new(key(1), vec![]);
        let sealed = old.seal(b"s", "c", &mut rand::thread_rng());
        let new = Sealer::new(key(2), vec![key(1)]);
        assert!(new.is_stale(&sealed));
        assert_eq!(new.open(&sealed, "c").unwrap(), b"s");
        let resealed = new.seal(b"s", "c", &mut rand::thread_rng());
        assert!(!new.is_stale(&resealed));
        let only_new = Sealer::new(key(2), vec![]);
        assert!(matches!(
            only_new.open(&sealed, "c"),
            Err(SealError::UnknownKey(_))
        ));
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let s = Sealer::new(key(3), vec![]);
        let mut sealed = s.seal(b"secret", "c", &mut rand::thread_rng());
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(s.open(&sealed, "c"), Err(SealError::Tampered));
        assert_eq!(s.open(b"nope", "c"), Err(SealError::Malformed));
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ=").unwrap_err(),
            SealError::BadKey
        );
    }
}
