//! API keys: long random secrets, stored in config only as their SHA-256.
//!
//! Why SHA-256 and not argon2: a Warden key is 32 random bytes (256 bits),
//! so nobody can guess it whatever the hash costs; a slow password hash
//! protects low-entropy secrets, and here it would only spend ~50 ms of CPU
//! on every request. A leaked config file still gives no key away (the
//! hash is one-way), and keys are compared in constant time.

use std::sync::Arc;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::principal::Principal;

/// Every key `warden auth new-key` makes starts with this, so a leaked key
/// is easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "wdn_";

/// One configured key: the SHA-256 of the secret and who it is.
#[derive(Debug, Clone)]
pub struct ApiKey {
    digest: [u8; 32],
    principal: Arc<Principal>,
}

/// A route's API keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

/// A new API key: [`KEY_PREFIX`] and 32 random bytes, base64url.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The SHA-256 of `key`, lower-case hex, as the config stores it.
pub fn digest_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Read a digest written as 64 hex digits.
pub fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.as_bytes().chunks(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(digest)
}

// === impl ApiKey ===

impl ApiKey {
    /// A key known by its SHA-256, standing for `principal`.
    pub fn new(digest: [u8; 32], principal: Principal) -> ApiKey {
        ApiKey {
            digest,
            principal: Arc::new(principal),
        }
    }
}

// === impl ApiKeys ===

impl ApiKeys {
    /// The keys of one route.
    pub fn new(keys: Vec<ApiKey>) -> ApiKeys {
        ApiKeys { keys }
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Who `presented` stands for. Every configured digest is compared, in
    /// constant time, whatever matches: the time taken says nothing about
    /// which key (or how much of one) was right.
    pub fn check(&self, presented: &str) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&digest)) {
                found = Some(&key.principal);
            }
        }
        found.cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::AuthMethod;

    fn principal(agent: &str) -> Principal {
        Principal {
            agent: agent.into(),
            on_behalf_of: None,
            groups: vec!["editors".into()],
            method: AuthMethod::ApiKey,
        }
    }

    #[test]
    fn a_key_is_known_by_its_digest_alone() {
        let key = new_key().expect("random");
        assert!(key.starts_with(KEY_PREFIX) && key.len() == KEY_PREFIX.len() + 43);
        let digest = parse_digest(&digest_hex(&key)).expect("hex");
        let keys = ApiKeys::new(vec![
            ApiKey::new([7; 32], principal("other")),
            ApiKey::new(digest, principal("notes-bot")),
        ]);
        assert_eq!(keys.check(&key).expect("known").agent.as_ref(), "notes-bot");
        assert!(keys.check(&format!("{key}x")).is_none());
        assert!(keys.check("").is_none());
        assert_ne!(new_key().expect("random"), key);
    }

    #[test]
    fn digests_must_be_64_hex_digits() {
        assert!(parse_digest(&"ab".repeat(32)).is_some());
        assert!(parse_digest(&"AB".repeat(32)).is_some());
        assert!(parse_digest(&"ab".repeat(31)).is_none());
        assert!(parse_digest(&"zz".repeat(32)).is_none());
        assert!(parse_digest(&"é".repeat(32)).is_none());
    }
}
