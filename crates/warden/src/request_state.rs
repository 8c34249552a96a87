//! The `requestState` Warden hands a 2026-07-28 client with an
//! `input_required` result (a `confirm`-tier call asking the user), and
//! checks when the client retries.
//!
//! The spec makes `requestState` attacker-controlled input that the server
//! must protect. Warden's is `warden1.<claims>.<mac>`: the claims (caller,
//! tool, SHA-256 of the canonical arguments, expiry, a random nonce) in
//! base64url JSON, and an HMAC-SHA256 over them. A state is accepted once:
//! for the caller and the exact call it was made for, before it expires,
//! and never again (its nonce is spent).
//!
//! The key is random per process unless `approvals.request_state_key`
//! names a secret the replicas share ([`RequestStates::shared`]); their
//! spent nonces are then kept in the approval store they share, so a
//! state is accepted once whichever replica the retry reaches. Without a
//! shared key, a replica that did not issue a state cannot open it: the
//! retry is refused and the agent starts over, asked again.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What every Warden request state starts with.
pub const PREFIX: &str = "warden1.";
/// Most unexpired spent nonces remembered; past it, new states are refused
/// until old ones expire (a flood cannot make Warden forget a spent one).
const MAX_SPENT: usize = 100_000;

/// What a request state vouches for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The route the call came on.
    pub route: String,
    /// The calling agent.
    pub agent: String,
    /// How it authenticated.
    pub method: String,
    /// The user it acts for.
    pub user: Option<String>,
    /// The tool.
    pub tool: String,
    /// SHA-256 of the canonical arguments.
    pub digest: String,
    /// When the state stops being accepted (ms since the epoch).
    pub expires_ms: i64,
    /// Random: what makes it single use.
    pub nonce: String,
}

/// Why a request state was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not Warden's, altered, or issued by another process.
    #[error("the request state is not one this Warden issued, or it was altered")]
    Invalid,
    /// Too old.
    #[error("the request state has expired")]
    Expired,
    /// Used already.
    #[error("the request state was used already")]
    Replayed,
    /// Issued for another caller or another call.
    #[error("the request state was issued for another call")]
    OtherCall,
    /// Too many states are outstanding.
    #[error("too many confirmations are outstanding; retry later")]
    Busy,
}

/// The shortest shared request-state secret accepted.
pub const MIN_SHARED_SECRET: usize = 32;

/// Seals and opens request states.
pub struct RequestStates {
    key: [u8; 32],
    /// The key came from the system's random source: without it, nothing
    /// is sealed or opened (every confirmation is refused).
    usable: bool,
    /// The key is shared with other replicas: nonces are spent in the
    /// shared store, not here.
    shared: bool,
    spent: Mutex<HashMap<String, i64>>,
}

impl Default for RequestStates {
    fn default() -> RequestStates {
        let mut key = [0u8; 32];
        // Without randomness no state could be trusted: every retry is
        // then refused, nothing confirmed.
        let usable = getrandom::fill(&mut key).is_ok();
        if !usable {
            tracing::error!(
                "No randomness for the request-state key; 2026-07-28 confirmations will be refused."
            );
        }
        RequestStates {
            key,
            usable,
            shared: false,
            spent: Mutex::default(),
        }
    }
}

impl RequestStates {
    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// A new random nonce.
    pub fn nonce() -> String {
        let mut bytes = [0u8; 16];
        let _ = getrandom::fill(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The state vouching for `claims`.
    pub fn seal(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{PREFIX}{body}.{tag}")
    }

    /// States sealed with a key derived from `secret`, which the replicas
    /// share (at least [`MIN_SHARED_SECRET`] bytes; the caller checks).
    pub fn shared(secret: &[u8]) -> RequestStates {
        let mut derive = Sha256::new();
        derive.update(b"warden request state v1\0");
        derive.update(secret);
        RequestStates {
            key: derive.finalize().into(),
            usable: true,
            shared: true,
            spent: Mutex::default(),
        }
    }

    /// Whether the key is shared with other replicas: spend nonces in the
    /// shared store ([`Self::verify`]), not with [`Self::open`].
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// Open `state` at `now_ms` for the call `expected` describes (its
    /// nonce and expiry are ignored), spending it in this process.
    pub fn open(&self, state: &str, expected: &Claims, now_ms: i64) -> Result<Claims, StateError> {
        let claims = self.verify(state, expected, now_ms)?;
        self.spend_here(&claims, now_ms)?;
        Ok(claims)
    }

    /// Check `state` at `now_ms` for the call `expected` describes, without
    /// spending it: the caller spends `claims.nonce` before acting on it.
    pub fn verify(
        &self,
        state: &str,
        expected: &Claims,
        now_ms: i64,
    ) -> Result<Claims, StateError> {
        if !self.usable {
            return Err(StateError::Invalid);
        }
        let rest = state.strip_prefix(PREFIX).ok_or(StateError::Invalid)?;
        let (body, tag) = rest.split_once('.').ok_or(StateError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| StateError::Invalid)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        // Constant time.
        mac.verify_slice(&tag).map_err(|_| StateError::Invalid)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(StateError::Invalid)?;
        if claims.expires_ms <= now_ms {
            return Err(StateError::Expired);
        }
        let same = claims.route == expected.route
            && claims.agent == expected.agent
            && claims.method == expected.method
            && claims.user == expected.user
            && claims.tool == expected.tool
            && claims.digest == expected.digest;
        if !same {
            return Err(StateError::OtherCall);
        }
        Ok(claims)
    }

    /// Spend `claims.nonce` in this process's memory.
    fn spend_here(&self, claims: &Claims, now_ms: i64) -> Result<(), StateError> {
        let mut spent = self
            .spent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        spent.retain(|_, expires| *expires > now_ms);
        if spent.contains_key(&claims.nonce) {
            return Err(StateError::Replayed);
        }
        if spent.len() >= MAX_SPENT {
            return Err(StateError::Busy);
        }
        spent.insert(claims.nonce.clone(), claims.expires_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            route: "/mcp".into(),
            agent: "bot".into(),
            method: "api-key".into(),
            user: Some("ada".into()),
            tool: "pay".into(),
            digest: "abc".into(),
            expires_ms: 10_000,
            nonce: RequestStates::nonce(),
        }
    }

    #[test]
    fn a_state_opens_once_for_its_own_call_before_it_expires() {
        let states = RequestStates::default();
        let sealed = states.seal(&claims());
        assert!(sealed.starts_with(PREFIX));
        assert_eq!(
            states.open(&sealed, &claims(), 20_000),
            Err(StateError::Expired)
        );
        let mut other = claims();
        other.digest = "abd".into();
        assert_eq!(
            states.open(&sealed, &other, 1_000),
            Err(StateError::OtherCall)
        );
        let mut other_route = claims();
        other_route.route = "/prod".into();
        assert_eq!(
            states.open(&sealed, &other_route, 1_000),
            Err(StateError::OtherCall)
        );
        let mut stranger = claims();
        stranger.user = Some("eve".into());
        assert_eq!(
            states.open(&sealed, &stranger, 1_000),
            Err(StateError::OtherCall)
        );
        assert!(states.open(&sealed, &claims(), 1_000).is_ok());
        assert_eq!(
            states.open(&sealed, &claims(), 1_000),
            Err(StateError::Replayed)
        );
    }

    #[test]
    fn an_altered_or_foreign_state_is_invalid() {
        let states = RequestStates::default();
        let sealed = states.seal(&claims());
        // Flip the claims: the tag no longer fits.
        let mut forged = claims();
        forged.tool = "wipe".into();
        let forged_body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).expect("json"));
        let tag = sealed.rsplit('.').next().expect("tag");
        let tampered = format!("{PREFIX}{forged_body}.{tag}");
        assert_eq!(
            states.open(&tampered, &forged, 1_000),
            Err(StateError::Invalid)
        );
        let elsewhere = RequestStates::default().seal(&claims());
        assert_eq!(
            states.open(&elsewhere, &claims(), 1_000),
            Err(StateError::Invalid)
        );
        // Two replicas with one shared secret open each other's states;
        // neither opens a random-key one, nor one with another secret.
        let secret = [7u8; MIN_SHARED_SECRET];
        let (a, b) = (
            RequestStates::shared(&secret),
            RequestStates::shared(&secret),
        );
        assert!(a.is_shared() && !states.is_shared());
        let from_a = a.seal(&claims());
        assert!(b.verify(&from_a, &claims(), 1_000).is_ok());
        assert!(
            b.verify(&from_a, &claims(), 1_000).is_ok(),
            "verify spends nothing"
        );
        assert_eq!(
            b.verify(&sealed, &claims(), 1_000),
            Err(StateError::Invalid)
        );
        assert_eq!(
            RequestStates::shared(&[8u8; MIN_SHARED_SECRET]).verify(&from_a, &claims(), 1_000),
            Err(StateError::Invalid)
        );
        for junk in ["", "warden1.", "warden1.x.y", "other"] {
            assert_eq!(
                states.open(junk, &claims(), 1_000),
                Err(StateError::Invalid)
            );
        }
    }
}
