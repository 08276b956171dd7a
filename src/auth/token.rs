//! Signed session tokens: `v1.<payload>.<signature>`, base64url, HMAC-SHA256 over the payload.
//! Verifying one needs only the key — never the database — so the WebSocket handshake works
//! while the database is down.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token says about its bearer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// User id.
    pub uid: String,
    /// Session id (what logout revokes).
    pub sid: String,
    /// Username, so `/api/me` and `welcome` need no database.
    pub name: String,
    /// Expiry, milliseconds since the epoch.
    pub exp: i64,
    /// `read` or `chat` for a personal API token; absent for a sign-in session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The account was waiting for approval when the token was issued: each use checks (once
    /// per instance, then remembered) whether an admin has approved it since.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

/// The HMAC key tokens are signed with.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// A fresh random key, hex encoded (what is stored when none is configured).
    pub fn generate_hex() -> String {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).expect("the OS random source works");
        buf.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A 32-byte key for another purpose, derived from this one with HKDF-SHA256 (`info` names
    /// the purpose): a rotated signing key derives other keys.
    pub fn derive(&self, info: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(Some(b"emergence"), &self.0)
            .expand(info, &mut out)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        out
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("v1.{payload}.{sig}")
    }

    /// Check the signature (in constant time) and the expiry.
    pub fn verify(&self, token: &str, now_ms: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some("v1"), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or(TokenError::Malformed)?;
        if claims.exp <= now_ms {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: i64) -> Claims {
        Claims {
            uid: "u".into(),
            sid: "s".into(),
            name: "alice".into(),
            exp,
            scope: None,
            pending: false,
        }
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let key = SigningKey::new(b"k".to_vec());
        let token = key.sign(&claims(2_000));
        assert_eq!(key.verify(&token, 1_000).unwrap(), claims(2_000));
        assert_eq!(key.verify(&token, 2_000), Err(TokenError::Expired));
        let other = SigningKey::new(b"other".to_vec());
        assert_eq!(other.verify(&token, 1_000), Err(TokenError::BadSignature));
        let forged = {
            let payload = B64.encode(serde_json::to_vec(&claims(9_999)).unwrap());
            let sig = token.rsplit('.').next().unwrap();
            format!("v1.{payload}.{sig}")
        };
        assert_eq!(key.verify(&forged, 1_000), Err(TokenError::BadSignature));
        assert_eq!(key.verify("garbage", 1_000), Err(TokenError::Malformed));
    }
}
