//! Provider keys at rest: a key entered in the admin UI is sealed with ChaCha20-Poly1305 under a
//! key derived (HKDF-SHA256) from the server's signing key, with a fresh random nonce at every
//! write and the connection's id as associated data (a sealed key copied onto another row does
//! not open). Only the sealed bytes, the nonce and the scheme version are stored.
//!
//! Rotating the signing key changes the derived key: keys sealed under the old one no longer
//! open, the connection is shown with `key_status: "unreadable"` and an admin enters its key
//! again (docs/operations.md).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chacha20poly1305::{
    ChaCha20Poly1305, Key, KeyInit, Nonce,
    aead::{Aead, Payload},
};

use crate::{auth::SigningKey, settings::Secret};

/// The derivation scheme of keys sealed now (`provider_connections.key_version`).
pub const KEY_VERSION: i64 = 1;
const INFO: &[u8] = b"emergence provider connection keys v1";

/// A sealed key, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub cipher: String,
    pub nonce: String,
}

/// Seals and opens provider keys.
pub struct KeyCipher(ChaCha20Poly1305);

impl KeyCipher {
    pub fn new(signing: &SigningKey) -> Self {
        let key = Key::from(signing.derive(INFO));
        Self(ChaCha20Poly1305::new(&key))
    }

    /// Seal `key` for the connection `id`, under a fresh random nonce.
    pub fn seal(&self, id: &str, key: &str) -> Sealed {
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random source works");
        let payload = Payload {
            msg: key.as_bytes(),
            aad: id.as_bytes(),
        };
        let cipher = self
            .0
            .encrypt(&Nonce::from(nonce), payload)
            .expect("sealing a short key cannot fail");
        Sealed {
            cipher: B64.encode(cipher),
            nonce: B64.encode(nonce),
        }
    }

    /// Open a key sealed for `id`; `None` when it does not open (sealed under another signing
    /// key, or altered).
    pub fn open(&self, id: &str, sealed: &Sealed) -> Option<Secret> {
        let cipher = B64.decode(&sealed.cipher).ok()?;
        let nonce: [u8; 12] = B64.decode(&sealed.nonce).ok()?.try_into().ok()?;
        let payload = Payload {
            msg: &cipher,
            aad: id.as_bytes(),
        };
        let plain = self.0.decrypt(&Nonce::from(nonce), payload).ok()?;
        String::from_utf8(plain).ok().map(Secret::new)
    }
}

/// What the admin UI may see of a key: at most its last 4 characters, and none of a short one.
pub fn hint(key: &str) -> Option<String> {
    let chars: Vec<char> = key.chars().collect();
    (chars.len() >= 12).then(|| chars[chars.len() - 4..].iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_with_the_same_signing_key_and_connection_only() {
        let cipher = KeyCipher::new(&SigningKey::new(b"one".to_vec()));
        let sealed = cipher.seal("c1", "sk-secret-123456");
        assert!(!sealed.cipher.contains("secret"));
        assert_eq!(
            cipher.open("c1", &sealed).map(|s| s.expose().to_string()),
            Some("sk-secret-123456".into())
        );
        assert!(cipher.open("c2", &sealed).is_none());
        let rotated = KeyCipher::new(&SigningKey::new(b"two".to_vec()));
        assert!(rotated.open("c1", &sealed).is_none());
        // A fresh nonce at every write.
        assert_ne!(cipher.seal("c1", "sk-secret-123456"), sealed);
    }

    #[test]
    fn the_hint_shows_at_most_four_characters_of_a_long_key() {
        assert_eq!(hint("sk-abcdefgh-wxyz").as_deref(), Some("wxyz"));
        assert_eq!(hint("short"), None);
    }
}
