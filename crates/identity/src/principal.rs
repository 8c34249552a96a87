//! Who makes a call.

use std::sync::Arc;

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// Nothing: the route allows anonymous callers.
    Anonymous,
    /// A configured API key.
    ApiKey,
    /// A JWT bearer token checked against a JWKS.
    Jwt,
    /// A client certificate verified by the TLS listener.
    Mtls,
}

/// Who makes a call: the agent, the user on whose behalf it acts, its
/// groups, and how it authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The calling agent's identity (`anonymous` when nothing authenticates it).
    pub agent: Arc<str>,
    /// The user the agent acts for, when known.
    pub on_behalf_of: Option<Arc<str>>,
    /// Groups the caller belongs to.
    pub groups: Vec<Arc<str>>,
    /// How the caller authenticated.
    pub method: AuthMethod,
}

// === impl AuthMethod ===

impl AuthMethod {
    /// The method's name in config, logs and audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Mtls => "mtls",
        }
    }
}

// === impl Principal ===

impl Principal {
    /// The caller when nothing authenticates it (one shared value: naming
    /// it costs a reference count, not an allocation per call).
    pub fn anonymous() -> Arc<Principal> {
        static ANONYMOUS: std::sync::LazyLock<Arc<Principal>> = std::sync::LazyLock::new(|| {
            Arc::new(Principal {
                agent: "anonymous".into(),
                on_behalf_of: None,
                groups: Vec::new(),
                method: AuthMethod::Anonymous,
            })
        });
        ANONYMOUS.clone()
    }

    /// Whether the caller is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }

    /// Whether `other` is the same caller, authenticated the same way,
    /// acting for the same user (what a session is bound to: its id alone
    /// must not let another caller in, nor a JWT whose subject happens to
    /// equal an API key's agent name).
    pub fn same_caller(&self, other: &Principal) -> bool {
        self.agent == other.agent
            && self.method == other.method
            && self.on_behalf_of == other.on_behalf_of
    }
}
