//! JWT bearer tokens: the signature checked against the issuer's JWKS,
//! then `iss`, `aud`, `exp` and `nbf` (with a small leeway), then the
//! claims mapped to a principal by configurable claim names.
//!
//! Only asymmetric algorithms are accepted (RS*, PS*, ES256, ES384,
//! EdDSA): `alg: none` and shared-secret HS algorithms never are, and a
//! token must use an algorithm that fits the key it names, so an RSA public
//! key can never be used as an HMAC secret. A verified token's principal is
//! kept (by the token's SHA-256) until it expires, so a session's next
//! requests skip the signature check.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{AuthError, TokenRejection};
use crate::jwks::{KeySet, Lookup};
use crate::principal::{AuthMethod, Principal};

/// Most verified tokens kept.
const MAX_CACHED: usize = 10_000;
/// Longest agent, user or group name taken from a claim.
const MAX_NAME: usize = 256;
/// Most groups taken from a claim.
const MAX_GROUPS: usize = 64;

/// Every algorithm a route may accept (asymmetric only).
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Which claims name the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The agent (default `sub`).
    pub agent: String,
    /// The user on whose behalf the agent acts (none by default).
    pub user: Option<String>,
    /// The caller's groups: an array of strings, or one space-separated
    /// string such as `scope` (default `groups`).
    pub groups: Option<String>,
}

/// A route's JWT settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// The only `iss` accepted.
    pub issuer: String,
    /// `aud` must name one of these (RFC 8707: Warden's own resource URL).
    pub audiences: Vec<String>,
    /// Accepted algorithms (a subset of [`ASYMMETRIC`]).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Which claims name the caller.
    pub claims: ClaimNames,
}

/// Checks bearer tokens for one route.
pub struct JwtVerifier {
    settings: JwtSettings,
    keys: KeySet,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
    remembers: bool,
}

#[derive(Clone)]
struct Verified {
    principal: Arc<Principal>,
    expires: u64,
    not_before: Option<u64>,
    generation: u64,
    /// When the signature was checked (s since the epoch): a verdict is
    /// not trusted longer than the keys it was checked with (`max_age`).
    checked: u64,
}

#[derive(serde::Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Whether a bearer value has a JWT's shape (three base64url parts, the
/// first a JSON object): API keys never do.
pub fn looks_like_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.bytes().filter(|b| *b == b'.').count() == 2
}

// === impl JwtVerifier ===

impl JwtVerifier {
    /// A verifier checking tokens against `keys`.
    pub fn new(settings: JwtSettings, keys: KeySet) -> JwtVerifier {
        JwtVerifier {
            settings,
            keys,
            verified: Mutex::new(HashMap::new()),
            remembers: true,
        }
    }

    /// Check every token's signature every time, keeping no verdicts
    /// (to measure what the cache saves).
    pub fn without_verdict_cache(mut self) -> JwtVerifier {
        self.remembers = false;
        self
    }

    /// Who `token` stands for, at `now`.
    pub async fn verify(&self, token: &str, at: SystemTime) -> Result<Arc<Principal>, AuthError> {
        let now = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let header = read_header(token)?;
        if header.crit.is_some() {
            // Extensions Warden does not know must not be ignored (RFC 7515 §4.1.11).
            return Err(TokenRejection::Malformed.into());
        }
        let algorithm = header
            .alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| self.settings.algorithms.contains(a))
            .ok_or(TokenRejection::AlgorithmNotAllowed)?;
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verified) = self.cached(&digest, now) {
            self.check_times(verified.expires, verified.not_before, now)?;
            return Ok(verified.principal);
        }
        let generation = self.keys.generation();
        let key = match self
            .keys
            .key_for(header.kid.as_deref(), algorithm, at)
            .await
        {
            Lookup::Found(key) => key,
            Lookup::WrongAlgorithm => return Err(TokenRejection::AlgorithmMismatch.into()),
            Lookup::Unknown => return Err(TokenRejection::UnknownKey.into()),
            Lookup::Unavailable => return Err(AuthError::KeysUnavailable),
        };
        let mut validation = Validation::new(algorithm);
        // Times are checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &validation)
            .map_err(|err| rejection(err.kind()))?
            .claims;
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenRejection::MissingClaim { claim: "exp" })?;
        let not_before = match claims.get("nbf") {
            None => None,
            Some(value) => Some(
                value
                    .as_u64()
                    .ok_or(TokenRejection::MissingClaim { claim: "nbf" })?,
            ),
        };
        self.check_times(expires, not_before, now)?;
        let principal = Arc::new(self.principal(&claims)?);
        self.remember(
            digest,
            Verified {
                principal: principal.clone(),
                expires,
                not_before,
                generation,
                checked: now,
            },
            now,
        );
        Ok(principal)
    }

    fn check_times(
        &self,
        expires: u64,
        not_before: Option<u64>,
        now: u64,
    ) -> Result<(), AuthError> {
        let leeway = self.settings.leeway.as_secs();
        if now > expires.saturating_add(leeway) {
            return Err(TokenRejection::Expired.into());
        }
        if not_before.is_some_and(|nbf| now.saturating_add(leeway) < nbf) {
            return Err(TokenRejection::NotYetValid.into());
        }
        Ok(())
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, TokenRejection> {
        let names = &self.settings.claims;
        let agent = claims
            .get(&names.agent)
            .and_then(Value::as_str)
            .filter(|name| valid_name(name))
            .ok_or(TokenRejection::NoAgent)?;
        let user = names
            .user
            .as_ref()
            .and_then(|claim| claims.get(claim))
            .and_then(Value::as_str)
            .filter(|name| valid_name(name));
        let groups = match names.groups.as_ref().and_then(|claim| claims.get(claim)) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|name| valid_name(name))
                .take(MAX_GROUPS)
                .map(Arc::from)
                .collect(),
            Some(Value::String(list)) => list
                .split(' ')
                .filter(|name| valid_name(name))
                .take(MAX_GROUPS)
                .map(Arc::from)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Principal {
            agent: agent.into(),
            on_behalf_of: user.map(Arc::from),
            groups,
            method: AuthMethod::Jwt,
        })
    }

    fn cached(&self, digest: &[u8; 32], now: u64) -> Option<Verified> {
        if !self.remembers {
            return None;
        }
        let generation = self.keys.generation();
        let verified = self.lock().get(digest).cloned()?;
        // Keys changed since, or the verdict is older than the keys may
        // be kept: check again (the key may have been withdrawn).
        let fresh = now.saturating_sub(verified.checked) < self.keys.max_age().as_secs();
        (verified.generation == generation && fresh).then_some(verified)
    }

    fn remember(&self, digest: [u8; 32], verified: Verified, now: u64) {
        if !self.remembers {
            return;
        }
        let leeway = self.settings.leeway.as_secs();
        let mut cache = self.lock();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, v| v.expires.saturating_add(leeway) >= now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(digest, verified);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The token's JOSE header, read without trusting it.
fn read_header(token: &str) -> Result<Header, TokenRejection> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenRejection::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| TokenRejection::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenRejection::Malformed)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && !name.chars().any(char::is_control)
}

fn rejection(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenRejection::AlgorithmMismatch,
        ErrorKind::MissingRequiredClaim(claim) => TokenRejection::MissingClaim {
            claim: match claim.as_str() {
                "iss" => "iss",
                "aud" => "aud",
                _ => "exp",
            },
        },
        _ => TokenRejection::Malformed,
    }
}
