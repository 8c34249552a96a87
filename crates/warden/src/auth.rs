//! A route's `auth` section: raw, located structs → a validated
//! [`AuthConfig`] → the running [`Authenticator`].
//!
//! ```yaml
//! routes:
//!   - path: /mcp
//!     auth:
//!       methods:                        # tried in order
//!         - api_key:
//!             keys:
//!               - agent: notes-bot      # the principal this key stands for
//!                 sha256: 3f1c9a7e0b52d84e6a19c0f7d23b8e45a6d1f09c7b2e48a53d6f1c08e9a7b241
//!                 groups: [editors]
//!         - jwt:
//!             issuer: https://auth.example.com
//!             audience: https://warden.example.com/mcp   # default: oauth.resource
//!             jwks_url: https://auth.example.com/.well-known/jwks.json   # or jwks_file
//!             algorithms: [RS256, ES256]                 # default: every asymmetric one
//!             leeway: 30s
//!             claims: { agent: sub, user: act_for, groups: groups }
//!         - mtls:                       # needs the listener's tls.client_ca_file
//!             name_from: san_uri        # or san_dns, san_email, subject_cn
//!             groups: [internal]
//!       anonymous: false                # let callers with no credential in
//!       delegates: { groups: [gateways] }   # may send Warden-On-Behalf-Of
//!       oauth:                          # RFC 9728 protected-resource metadata
//!         resource: https://warden.example.com/mcp
//!         authorization_servers: [https://auth.example.com]
//!         scopes_supported: [mcp]
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use warden_identity::{
    ApiKey, ApiKeys, AuthMethod, Authenticator, ClaimNames, Delegates, JwksRefresh, JwksSource,
    JwtSettings, JwtVerifier, KeySet, Method, Principal, ProtectedResource, SetupError,
};
use warden_policy::located::{self, Collector as Errors, Diagnostic, Spanned};

/// The default clock skew allowed on `exp` and `nbf`.
const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// The most clock skew a route may allow.
const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// A route's validated `auth` section.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The methods, in order.
    pub methods: Vec<MethodConfig>,
    /// Whether callers with no credential are let in as `anonymous`.
    pub anonymous: bool,
    /// Who may name the user it acts for.
    pub delegates: Delegates,
    /// The OAuth protected-resource metadata, when published.
    pub oauth: Option<ProtectedResource>,
}

/// One validated method.
// Read once at start: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum MethodConfig {
    /// API keys, by digest, each with its principal.
    ApiKeys(Vec<([u8; 32], Principal)>),
    /// JWT bearer tokens.
    Jwt(JwtConfig),
    /// Client certificates verified by the TLS listener.
    Mtls(warden_identity::MtlsMapping),
}

/// A validated `jwt` method.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// What tokens must say.
    pub settings: JwtSettings,
    /// Where the keys come from.
    pub source: JwksSource,
    /// How often they are fetched again.
    pub refresh: JwksRefresh,
    /// Extra trust roots for an https JWKS URL.
    pub ca_file: Option<PathBuf>,
}

// === raw ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAuth {
    /// The methods, tried in order.
    #[serde(default)]
    methods: Vec<Spanned<RawMethod>>,
    /// Let callers with no credential in, as `anonymous`.
    #[serde(default)]
    anonymous: bool,
    /// Who may send `Warden-On-Behalf-Of`.
    #[serde(default)]
    delegates: Option<RawNames>,
    /// The OAuth protected-resource metadata.
    #[serde(default)]
    oauth: Option<RawOauth>,
}

#[allow(clippy::large_enum_variant)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum RawMethod {
    /// API keys.
    ApiKey(RawApiKeys),
    /// JWT bearer tokens.
    Jwt(RawJwt),
    /// Client certificates (mutual TLS).
    Mtls(RawMtls),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMtls {
    /// `san_uri` (default), `san_dns`, `san_email` or `subject_cn`.
    name_from: Option<Spanned<String>>,
    /// Groups of every certificate-authenticated caller.
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApiKeys {
    /// The keys.
    keys: Vec<RawKey>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    /// The agent the key stands for.
    agent: Spanned<String>,
    /// SHA-256 of the key, hex (`warden auth new-key` prints it).
    sha256: Spanned<String>,
    /// The user the agent acts for, if always the same.
    #[serde(default)]
    on_behalf_of: Option<String>,
    /// The agent's groups.
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    /// The only `iss` accepted.
    issuer: Spanned<String>,
    /// Accepted `aud` values (default: `oauth.resource`).
    #[serde(default)]
    audience: Option<OneOrMany>,
    /// The JWKS file.
    jwks_file: Option<Spanned<String>>,
    /// The JWKS URL.
    jwks_url: Option<Spanned<String>>,
    /// Extra trust roots for the URL.
    ca_file: Option<Spanned<String>>,
    /// Accepted algorithms.
    #[serde(default)]
    algorithms: Vec<Spanned<String>>,
    /// Clock skew allowed, e.g. `30s`.
    leeway: Option<Spanned<String>>,
    /// Keys older than this are fetched again, e.g. `10m`.
    refresh: Option<Spanned<String>>,
    /// At most one fetch per this interval, e.g. `30s`.
    refresh_min_interval: Option<Spanned<String>>,
    /// Which claims name the caller.
    #[serde(default)]
    claims: RawClaims,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClaims {
    /// The agent's claim (default `sub`).
    agent: Option<String>,
    /// The user's claim.
    user: Option<String>,
    /// The groups' claim (default `groups`).
    groups: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNames {
    #[serde(default)]
    agents: Vec<String>,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOauth {
    /// This route's URL as agents reach it.
    resource: Spanned<String>,
    /// Who issues tokens for it.
    authorization_servers: Spanned<Vec<String>>,
    /// Scopes a client may ask for.
    #[serde(default)]
    scopes_supported: Vec<String>,
    /// A name for people.
    #[serde(default)]
    resource_name: Option<String>,
}

// === impl RawAuth ===

impl RawAuth {
    /// Validate the section; `route` locates errors about the whole of it.
    pub(crate) fn validate(
        &self,
        route: &Spanned<String>,
        base: &Path,
        client_ca: bool,
        errors: &mut Errors,
    ) -> AuthConfig {
        let oauth = self.oauth.as_ref().and_then(|o| o.validate(errors));
        if self.methods.is_empty() && !self.anonymous {
            errors.push(Diagnostic::at(
                route,
                "auth needs at least one method, or `anonymous: true`",
            ));
        }
        let methods = validate_methods(&self.methods, oauth.as_ref(), base, client_ca, errors);
        AuthConfig {
            methods,
            anonymous: self.anonymous,
            delegates: self
                .delegates
                .as_ref()
                .map(|d| Delegates {
                    agents: d.agents.clone(),
                    groups: d.groups.clone(),
                })
                .unwrap_or_default(),
            oauth,
        }
    }
}

/// The `methods` list of an `auth` or `approvals.identity` section;
/// `client_ca`: whether the listener verifies client certificates.
fn validate_methods(
    methods: &[Spanned<RawMethod>],
    oauth: Option<&ProtectedResource>,
    base: &Path,
    client_ca: bool,
    errors: &mut Errors,
) -> Vec<MethodConfig> {
    methods
        .iter()
        .filter_map(|method| match &method.value {
            RawMethod::ApiKey(keys) => keys.validate(method, errors),
            RawMethod::Jwt(jwt) => jwt.validate(oauth, base, errors),
            RawMethod::Mtls(mtls) => {
                if !client_ca {
                    errors.push(Diagnostic::at(
                        method,
                        "mtls needs the listener's client_ca_file (client certificates are verified by the TLS listener: tls for a route, admin_tls for approvers)",
                    ));
                }
                mtls.validate(errors)
            }
        })
        .collect()
}

// === approvers ===

/// `approvals.identity`: approvers prove who they are on the admin
/// listener by the identity layer's methods, as agents do on a route.
///
/// ```yaml
/// approvals:
///   identity:
///     methods:
///       - jwt:
///           issuer: https://auth.example.com
///           audience: https://warden-admin.example.com
///           jwks_url: https://auth.example.com/.well-known/jwks.json
///           claims: { agent: email, groups: groups }
///       - mtls: { name_from: san_email }   # needs admin_tls.client_ca_file
///     allow: { groups: [payments-approvers], agents: [ops-lead@example.com] }
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawApproverIdentity {
    /// The methods, tried in order.
    #[serde(default)]
    methods: Vec<Spanned<RawMethod>>,
    /// Who among those the methods name approves at all.
    allow: Option<Spanned<RawNames>>,
}

/// A validated `approvals.identity` section.
#[derive(Debug, Clone)]
pub struct ApproverIdentityConfig {
    /// The methods, in order.
    pub methods: Vec<MethodConfig>,
    /// Who among the principals they name is an approver (by agent name
    /// or group).
    pub allow: Delegates,
}

impl RawApproverIdentity {
    /// Whether approvers may be known by a client certificate.
    pub(crate) fn has_mtls(&self) -> bool {
        self.methods
            .iter()
            .any(|m| matches!(m.value, RawMethod::Mtls(_)))
    }

    /// Validate; `at` locates errors about the whole section, `client_ca`
    /// says whether the admin listener verifies client certificates.
    pub(crate) fn validate(
        &self,
        at: &Spanned<RawApproverIdentity>,
        base: &Path,
        client_ca: bool,
        errors: &mut Errors,
    ) -> ApproverIdentityConfig {
        if self.methods.is_empty() {
            errors.push(Diagnostic::at(
                at,
                "identity needs at least one method (jwt, mtls or api_key)",
            ));
        }
        let methods = validate_methods(&self.methods, None, base, client_ca, errors);
        let allow = match &self.allow {
            Some(allow) if allow.value.agents.is_empty() && allow.value.groups.is_empty() => {
                errors.push(Diagnostic::at(
                    allow,
                    "allow must name at least one agent or group",
                ));
                Delegates::default()
            }
            Some(allow) => Delegates {
                agents: allow.value.agents.clone(),
                groups: allow.value.groups.clone(),
            },
            None => {
                errors.push(Diagnostic::at(
                    at,
                    "identity needs allow: { groups: [...], agents: [...] }, who among those the identity provider vouches for may approve (without it, anyone it knows could)",
                ));
                Delegates::default()
            }
        };
        ApproverIdentityConfig { methods, allow }
    }
}

impl ApproverIdentityConfig {
    /// The running authenticator (reads JWKS files now): no anonymous
    /// approver, and nobody names a user they act for.
    pub fn build(&self) -> Result<Authenticator, SetupError> {
        AuthConfig {
            methods: self.methods.clone(),
            anonymous: false,
            delegates: Delegates::default(),
            oauth: None,
        }
        .build()
    }

    /// Whether `principal` is one of the approvers `allow` names.
    pub fn allows(&self, principal: &Principal) -> bool {
        self.allow.agents.iter().any(|a| **a == *principal.agent)
            || self.allow.groups.iter().any(|g| principal.in_group(g))
    }
}

impl RawApiKeys {
    fn validate(&self, at: &Spanned<RawMethod>, errors: &mut Errors) -> Option<MethodConfig> {
        if self.keys.is_empty() {
            errors.push(Diagnostic::at(at, "api_key needs at least one key"));
        }
        let mut keys = Vec::new();
        for key in &self.keys {
            let Some(digest) = warden_identity::api_key::parse_digest(&key.sha256.value) else {
                errors.push(Diagnostic::at(
                    &key.sha256,
                    "sha256 must be 64 hex digits: the SHA-256 of the key (`warden auth new-key` makes a key and prints it), never the key itself",
                ));
                continue;
            };
            if keys.iter().any(|(d, _)| *d == digest) {
                errors.push(Diagnostic::at(&key.sha256, "this key is listed twice"));
            }
            if key.agent.value.trim().is_empty() {
                errors.push(Diagnostic::at(&key.agent, "agent must not be empty"));
            }
            keys.push((
                digest,
                Principal {
                    agent: key.agent.value.as_str().into(),
                    on_behalf_of: key.on_behalf_of.as_deref().map(Arc::from),
                    groups: key.groups.iter().map(|g| Arc::from(g.as_str())).collect(),
                    method: AuthMethod::ApiKey,
                },
            ));
        }
        Some(MethodConfig::ApiKeys(keys))
    }
}

impl RawMtls {
    fn validate(&self, errors: &mut Errors) -> Option<MethodConfig> {
        use warden_identity::CertificateName;
        let name_from = match self.name_from.as_ref().map(|n| n.value.as_str()) {
            None | Some("san_uri") => CertificateName::SanUri,
            Some("san_dns") => CertificateName::SanDns,
            Some("san_email") => CertificateName::SanEmail,
            Some("subject_cn") => CertificateName::SubjectCn,
            Some(other) => {
                if let Some(at) = &self.name_from {
                    errors.push(Diagnostic::at(
                        at,
                        format!(
                            "unknown name_from \"{other}\" (write san_uri, san_dns, san_email or subject_cn)"
                        ),
                    ));
                }
                return None;
            }
        };
        Some(MethodConfig::Mtls(warden_identity::MtlsMapping {
            name_from,
            groups: self.groups.clone(),
        }))
    }
}

impl RawJwt {
    fn validate(
        &self,
        oauth: Option<&ProtectedResource>,
        base: &Path,
        errors: &mut Errors,
    ) -> Option<MethodConfig> {
        let audiences = match &self.audience {
            Some(OneOrMany::One(one)) => vec![one.clone()],
            Some(OneOrMany::Many(many)) => many.clone(),
            None => oauth.map(|o| vec![o.resource.clone()]).unwrap_or_default(),
        };
        if audiences.is_empty() {
            errors.push(Diagnostic::at(
                &self.issuer,
                "jwt needs an audience (the URL its tokens are issued for, RFC 8707: a route's own URL, or the admin listener's for approvers), or an oauth.resource to default to",
            ));
        }
        let source = match (&self.jwks_file, &self.jwks_url) {
            (Some(file), None) => Some(JwksSource::File(base.join(&file.value))),
            (None, Some(url)) => match url.value.parse::<Uri>() {
                Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {
                    Some(JwksSource::Url(uri))
                }
                Ok(uri) if uri.scheme_str() == Some("http") && is_loopback(&uri) => {
                    Some(JwksSource::Url(uri))
                }
                _ => {
                    errors.push(Diagnostic::at(
                        url,
                        "jwks_url must be an https URL (http only on loopback, for tests)",
                    ));
                    None
                }
            },
            _ => {
                errors.push(Diagnostic::at(
                    &self.issuer,
                    "jwt needs exactly one of jwks_file and jwks_url",
                ));
                None
            }
        };
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            match name.value.parse::<warden_identity::Algorithm>() {
                Ok(alg) if warden_identity::jwt::ASYMMETRIC.contains(&alg) => algorithms.push(alg),
                _ => errors.push(Diagnostic::at(
                    name,
                    format!(
                        "algorithm \"{}\" is not accepted (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA; never none or HS*)",
                        name.value
                    ),
                )),
            }
        }
        if self.algorithms.is_empty() {
            algorithms = warden_identity::jwt::ASYMMETRIC.to_vec();
        }
        let leeway = self
            .leeway
            .as_ref()
            .and_then(|l| located::duration(l, errors))
            .unwrap_or(DEFAULT_LEEWAY);
        if leeway > MAX_LEEWAY
            && let Some(at) = &self.leeway
        {
            errors.push(Diagnostic::at(at, "leeway must be at most 5m"));
        }
        let defaults = JwksRefresh::default();
        let positive = |value: &Option<Spanned<String>>, default: Duration, errors: &mut Errors| {
            value
                .as_ref()
                .and_then(|v| located::duration(v, errors))
                .unwrap_or(default)
        };
        let refresh = JwksRefresh {
            max_age: positive(&self.refresh, defaults.max_age, errors),
            min_interval: positive(&self.refresh_min_interval, defaults.min_interval, errors),
        };
        // Zero would let tokens naming made-up keys trigger a fetch each.
        for (value, got) in [
            (&self.refresh, refresh.max_age),
            (&self.refresh_min_interval, refresh.min_interval),
        ] {
            if let Some(at) = value
                && got < Duration::from_secs(1)
            {
                errors.push(Diagnostic::at(at, "must be at least 1s"));
            }
        }
        Some(MethodConfig::Jwt(JwtConfig {
            settings: JwtSettings {
                issuer: self.issuer.value.clone(),
                audiences,
                algorithms,
                leeway,
                claims: ClaimNames {
                    agent: self.claims.agent.clone().unwrap_or_else(|| "sub".into()),
                    user: self.claims.user.clone(),
                    groups: Some(
                        self.claims
                            .groups
                            .clone()
                            .unwrap_or_else(|| "groups".into()),
                    ),
                },
            },
            source: source?,
            refresh,
            ca_file: self.ca_file.as_ref().map(|c| base.join(&c.value)),
        }))
    }
}

impl RawOauth {
    fn validate(&self, errors: &mut Errors) -> Option<ProtectedResource> {
        let absolute = |text: &str| {
            text.parse::<Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("https" | "http")) && u.host().is_some()
            })
        };
        if !absolute(&self.resource.value) {
            errors.push(Diagnostic::at(
                &self.resource,
                "oauth.resource must be this route's absolute URL as agents reach it, e.g. https://warden.example.com/mcp",
            ));
            return None;
        }
        if self.authorization_servers.value.is_empty()
            || !self.authorization_servers.value.iter().all(|s| absolute(s))
        {
            errors.push(Diagnostic::at(
                &self.authorization_servers,
                "oauth.authorization_servers must list at least one issuer URL",
            ));
        }
        Some(ProtectedResource::new(
            self.resource.value.clone(),
            self.authorization_servers.value.clone(),
            self.scopes_supported.clone(),
            self.resource_name.clone(),
        ))
    }
}

/// Whether `uri` names a loopback host (where plain http is allowed, for tests).
pub(crate) fn is_loopback(uri: &Uri) -> bool {
    match uri.host() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

// === impl AuthConfig ===

impl AuthConfig {
    /// The running authenticator (reads JWKS files now).
    pub fn build(&self) -> Result<Authenticator, SetupError> {
        let mut methods = Vec::with_capacity(self.methods.len());
        for method in &self.methods {
            methods.push(match method {
                MethodConfig::ApiKeys(keys) => Method::ApiKeys(ApiKeys::new(
                    keys.iter()
                        .map(|(digest, principal)| ApiKey::new(*digest, principal.clone()))
                        .collect(),
                )),
                MethodConfig::Mtls(mapping) => Method::Mtls(mapping.clone()),
                MethodConfig::Jwt(jwt) => Method::Jwt(Box::new(JwtVerifier::new(
                    jwt.settings.clone(),
                    KeySet::new(jwt.source.clone(), jwt.refresh, jwt.ca_file.as_deref())?,
                ))),
            });
        }
        let mut authenticator = Authenticator::new(methods)
            .allow_anonymous(self.anonymous)
            .with_delegates(self.delegates.clone());
        if let Some(resource) = &self.oauth {
            authenticator = authenticator.with_resource(resource.clone());
        }
        Ok(authenticator)
    }
}
