//! Who is calling Warden.
//!
//! Each route can name an [`Authenticator`]: the methods a caller may use
//! to prove who it is (API keys, JWT bearer tokens checked against a JWKS),
//! tried in order, and whether callers with no credential are let in as
//! `anonymous`. What it yields is a [`Principal`]: the agent, the user on
//! whose behalf it acts, and its groups. Audit records, spans, logs and
//! policy rules all name the caller by it.
//!
//! For MCP's authorization flow Warden is the OAuth resource server: it
//! publishes [`ProtectedResource`] metadata (RFC 9728) and answers a
//! request without a valid token with `401` and a `WWW-Authenticate`
//! challenge naming that metadata ([`Authenticator::challenge`]).
//!
//! ```
//! use std::sync::Arc;
//! use warden_identity::{ApiKey, ApiKeys, AuthMethod, Authenticator, Method, Principal};
//!
//! let key = warden_identity::api_key::new_key().unwrap();
//! let digest = warden_identity::api_key::parse_digest(&warden_identity::api_key::digest_hex(&key)).unwrap();
//! let bot = Principal { agent: "notes-bot".into(), on_behalf_of: None, groups: vec![], method: AuthMethod::ApiKey };
//! let auth = Authenticator::new(vec![Method::ApiKeys(ApiKeys::new(vec![ApiKey::new(digest, bot)]))]);
//! let mut headers = http::HeaderMap::new();
//! headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
//! let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let principal = runtime.block_on(auth.authenticate(&headers, None, std::time::SystemTime::now())).unwrap();
//! assert_eq!(&*principal.agent, "notes-bot");
//! ```

pub mod api_key;
mod error;
pub mod jwks;
pub mod jwt;
mod metadata;
pub mod mtls;
mod principal;
pub mod tls;

use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderMap;

pub use api_key::{ApiKey, ApiKeys};
pub use error::{AuthError, SetupError, TokenRejection};
pub use jsonwebtoken::Algorithm;
pub use jwks::{JwksRefresh, JwksSource, KeySet};
pub use jwt::{ClaimNames, JwtSettings, JwtVerifier};
pub use metadata::{METADATA_PATH, ProtectedResource};
pub use mtls::{CertificateName, ClientCertificate, MtlsMapping};
pub use principal::{AuthMethod, Principal};

/// The longest credential read (the largest JWTs in use are a few KiB).
pub const MAX_CREDENTIAL: usize = 8 << 10;

/// The header a trusted caller names the user it acts for with.
pub const ON_BEHALF_OF_HEADER: &str = "warden-on-behalf-of";

/// One way a caller may prove who it is.
pub enum Method {
    /// A configured API key, sent as `Authorization: Bearer <key>`.
    ApiKeys(ApiKeys),
    /// A JWT bearer token.
    Jwt(Box<JwtVerifier>),
    /// A client certificate the TLS listener verified.
    Mtls(MtlsMapping),
}

/// Callers trusted to name the user they act for (`Warden-On-Behalf-Of`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delegates {
    /// By agent name.
    pub agents: Vec<String>,
    /// By group.
    pub groups: Vec<String>,
}

/// A route's authentication: its methods, in order, and who else is let in.
pub struct Authenticator {
    methods: Vec<Method>,
    anonymous: bool,
    delegates: Delegates,
    resource: Option<ProtectedResource>,
}

// === impl Authenticator ===

impl Authenticator {
    /// Callers must prove who they are with one of `methods`, tried in order.
    pub fn new(methods: Vec<Method>) -> Authenticator {
        Authenticator {
            methods,
            anonymous: false,
            delegates: Delegates::default(),
            resource: None,
        }
    }

    /// Let callers that send no credential in, as `anonymous` (a caller
    /// that sends a bad one is still refused).
    pub fn allow_anonymous(mut self, anonymous: bool) -> Authenticator {
        self.anonymous = anonymous;
        self
    }

    /// Who may name the user it acts for.
    pub fn with_delegates(mut self, delegates: Delegates) -> Authenticator {
        self.delegates = delegates;
        self
    }

    /// Publish this resource's OAuth metadata and name it in challenges.
    pub fn with_resource(mut self, resource: ProtectedResource) -> Authenticator {
        self.resource = Some(resource);
        self
    }

    /// The OAuth protected-resource metadata, when configured.
    pub fn resource(&self) -> Option<&ProtectedResource> {
        self.resource.as_ref()
    }

    /// Who sent a request with `headers` (over a connection whose client
    /// presented `certificate`, verified by the TLS listener), at `now`.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        certificate: Option<&ClientCertificate>,
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthError> {
        let token = bearer(headers)?;
        let principal = self.verify_credential(token, certificate, now).await?;
        self.on_behalf_of(principal, headers)
    }

    /// Who a bearer `token` and/or a verified client `certificate` name,
    /// by the methods in order: the first that accepts the credential it
    /// reads wins; a credential sent and refused is never taken for none.
    /// `Warden-On-Behalf-Of` plays no part (see [`Self::authenticate`]).
    pub async fn verify_credential(
        &self,
        token: Option<&str>,
        certificate: Option<&ClientCertificate>,
        now: SystemTime,
    ) -> Result<Arc<Principal>, AuthError> {
        let is_jwt = token.is_some_and(jwt::looks_like_jwt);
        let mut refusal = None;
        for method in &self.methods {
            let checked = match (method, token, certificate) {
                (Method::Mtls(mapping), _, Some(certificate)) => mapping
                    .principal(certificate)
                    .ok_or(AuthError::CertificateNotMapped),
                (Method::ApiKeys(keys), Some(token), _) if !is_jwt => {
                    keys.check(token).ok_or(AuthError::UnknownKey)
                }
                (Method::Jwt(verifier), Some(token), _) if is_jwt => {
                    verifier.verify(token, now).await
                }
                _ => continue,
            };
            match checked {
                Ok(principal) => return Ok(principal),
                Err(err) => {
                    refusal.get_or_insert(err);
                }
            }
        }
        match (refusal, token) {
            (Some(refusal), _) => Err(refusal),
            (None, Some(_)) if is_jwt => Err(AuthError::Token(TokenRejection::UnknownKey)),
            (None, Some(_)) => Err(AuthError::UnknownKey),
            (None, None) if self.anonymous => Ok(Principal::anonymous()),
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// Apply `Warden-On-Behalf-Of`, which only a trusted caller may send.
    fn on_behalf_of(
        &self,
        principal: Arc<Principal>,
        headers: &HeaderMap,
    ) -> Result<Arc<Principal>, AuthError> {
        let mut values = headers.get_all(ON_BEHALF_OF_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(principal);
        };
        let trusted = principal.method != AuthMethod::Anonymous
            && (self
                .delegates
                .agents
                .iter()
                .any(|a| **a == *principal.agent)
                || self.delegates.groups.iter().any(|g| principal.in_group(g)));
        if !trusted {
            return Err(AuthError::OnBehalfOfNotAllowed);
        }
        let malformed = AuthError::Malformed {
            header: "Warden-On-Behalf-Of",
            detail: "it must be sent once, as a printable name of at most 256 bytes",
        };
        let user = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 256 && values.next().is_none())
            .ok_or(malformed)?;
        Ok(Arc::new(Principal {
            on_behalf_of: Some(user.into()),
            ..(*principal).clone()
        }))
    }

    /// The `WWW-Authenticate` value answering `error` (RFC 6750 §3, with
    /// RFC 9728's `resource_metadata` when the route publishes metadata).
    pub fn challenge(&self, error: &AuthError) -> String {
        let mut value = String::from("Bearer realm=\"warden\"");
        if let Some(resource) = &self.resource {
            value.push_str(&format!(
                ", resource_metadata=\"{}\"",
                resource.metadata_url()
            ));
            if !resource.scopes_supported.is_empty() {
                value.push_str(&format!(
                    ", scope=\"{}\"",
                    resource.scopes_supported.join(" ")
                ));
            }
        }
        if let Some(code) = error.bearer_error() {
            // The messages are fixed text without quotes or backslashes.
            value.push_str(&format!(
                ", error=\"{code}\", error_description=\"{error}\""
            ));
        }
        value
    }
}

/// The bearer credential of a request: `None` when it sends no
/// `Authorization` header.
fn bearer(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = |detail| AuthError::Malformed {
        header: "Authorization",
        detail,
    };
    if values.next().is_some() {
        return Err(malformed("it is sent more than once"));
    }
    if value.len() > MAX_CREDENTIAL + 7 {
        return Err(AuthError::TooLarge {
            max: MAX_CREDENTIAL,
        });
    }
    let text = value
        .to_str()
        .map_err(|_| malformed("it is not printable ASCII"))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or(malformed("expected `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed("only the Bearer scheme is accepted"));
    }
    let token = token.trim_matches(' ');
    // RFC 6750's b64token characters.
    let b64token = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
    if token.is_empty() || !token.bytes().all(b64token) {
        return Err(malformed(
            "the token is empty or has characters a token cannot have",
        ));
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(agent: &str, groups: &[&str]) -> (String, ApiKey) {
        let key = api_key::new_key().expect("random");
        let digest = api_key::parse_digest(&api_key::digest_hex(&key)).expect("hex");
        let principal = Principal {
            agent: agent.into(),
            on_behalf_of: None,
            groups: groups.iter().map(|g| Arc::from(*g)).collect(),
            method: AuthMethod::ApiKey,
        };
        (key, ApiKey::new(digest, principal))
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    fn block<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    #[test]
    fn api_keys_anonymous_and_on_behalf_of() {
        let (bot_key, bot) = keyed("notes-bot", &[]);
        let (gateway_key, gateway) = keyed("chat-gateway", &["gateways"]);
        let auth = Authenticator::new(vec![Method::ApiKeys(ApiKeys::new(vec![bot, gateway]))])
            .allow_anonymous(true)
            .with_delegates(Delegates {
                agents: vec![],
                groups: vec!["gateways".into()],
            });
        let now = SystemTime::now();
        let check = |pairs: &[(&str, &str)]| block(auth.authenticate(&headers(pairs), None, now));
        let bearer = |key: &str| format!("Bearer {key}");
        assert_eq!(
            &*check(&[("authorization", &bearer(&bot_key))])
                .expect("bot")
                .agent,
            "notes-bot"
        );
        assert_eq!(check(&[]).expect("anonymous").method, AuthMethod::Anonymous);
        // A bad credential is refused even where anonymous callers are let in.
        assert_eq!(
            check(&[("authorization", "Bearer wdn_not-a-key")]),
            Err(AuthError::UnknownKey)
        );
        // Only a trusted caller may say whom it acts for.
        let acting = check(&[
            ("authorization", &bearer(&gateway_key)),
            (ON_BEHALF_OF_HEADER, "ada@example.com"),
        ])
        .expect("trusted");
        assert_eq!(acting.on_behalf_of.as_deref(), Some("ada@example.com"));
        assert_eq!(&*acting.agent, "chat-gateway");
        for untrusted in [vec![("authorization", bearer(&bot_key))], vec![]] {
            let mut pairs: Vec<(&str, &str)> =
                untrusted.iter().map(|(n, v)| (*n, v.as_str())).collect();
            pairs.push((ON_BEHALF_OF_HEADER, "ada@example.com"));
            assert_eq!(check(&pairs), Err(AuthError::OnBehalfOfNotAllowed));
        }
        assert!(matches!(
            check(&[
                ("authorization", &bearer(&gateway_key)),
                (ON_BEHALF_OF_HEADER, "a"),
                (ON_BEHALF_OF_HEADER, "b"),
            ]),
            Err(AuthError::Malformed { .. })
        ));
        // A JWT-shaped token with no JWT method configured.
        assert_eq!(
            check(&[("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.sig")]),
            Err(AuthError::Token(TokenRejection::UnknownKey))
        );
    }

    #[test]
    fn without_anonymous_a_credential_is_required_and_the_challenge_names_the_metadata() {
        let auth = Authenticator::new(vec![]).with_resource(ProtectedResource::new(
            "https://warden.example.com/mcp".into(),
            vec!["https://auth.example.com".into()],
            vec!["mcp".into()],
            None,
        ));
        let missing = block(auth.authenticate(&HeaderMap::new(), None, SystemTime::now()))
            .expect_err("refused");
        assert_eq!(missing, AuthError::Missing);
        assert_eq!(
            auth.challenge(&missing),
            "Bearer realm=\"warden\", resource_metadata=\"https://warden.example.com/.well-known/oauth-protected-resource/mcp\", scope=\"mcp\""
        );
        let bad = auth.challenge(&AuthError::Token(TokenRejection::Expired));
        assert!(
            bad.ends_with(", error=\"invalid_token\", error_description=\"the bearer token was refused: it has expired\""),
            "{bad}"
        );
    }
}
