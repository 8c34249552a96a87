//! Why a caller was not let in, and why an authenticator could not be built.

/// Why a request's credentials were refused. Every message is safe to send
/// back and to log: none repeats the credential or any part of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The route needs credentials and the request carries none.
    #[error("this route needs credentials: send Authorization: Bearer <token>")]
    Missing,
    /// The credential header is not `Bearer <token>` (or is sent twice).
    #[error("the {header} header is malformed: {detail}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// The credential is longer than any Warden accepts.
    #[error("the credential is longer than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The API key is not one this route knows.
    #[error("the API key is not valid for this route")]
    UnknownKey,
    /// The JWT was refused.
    #[error("the bearer token was refused: {0}")]
    Token(#[from] TokenRejection),
    /// The keys to check the JWT with cannot be fetched now.
    #[error("the keys to check the bearer token cannot be fetched now; try again shortly")]
    KeysUnavailable,
    /// The client certificate does not carry the name the route reads.
    #[error("the client certificate does not carry the name Warden reads from it (name_from)")]
    CertificateNotMapped,
    /// The caller named a user it acts for without being trusted to.
    #[error("this caller may not name the user it acts for (Warden-On-Behalf-Of)")]
    OnBehalfOfNotAllowed,
}

/// Why a JWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// Not three base64url parts with a JSON header and claims.
    #[error("it is not a well-formed JWT")]
    Malformed,
    /// `alg` is `none`, a shared-secret (HS) algorithm, or one the route does not accept.
    #[error("its signing algorithm is not accepted here")]
    AlgorithmNotAllowed,
    /// The key the token names is for another algorithm (e.g. HS256 with an RSA key).
    #[error("its algorithm does not match the key it names")]
    AlgorithmMismatch,
    /// No key of the JWKS has the token's `kid` (after fetching it again).
    #[error("it names a signing key the issuer does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("its signature is not valid")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("it was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name this resource.
    #[error("it was not issued for this resource (audience)")]
    WrongAudience,
    /// `exp` has passed.
    #[error("it has expired")]
    Expired,
    /// `nbf` is still to come.
    #[error("it is not valid yet")]
    NotYetValid,
    /// A claim Warden needs is absent or not a string.
    #[error("a required claim ({claim}) is missing or invalid")]
    MissingClaim {
        /// The claim.
        claim: &'static str,
    },
    /// The claim naming the agent is absent, empty or too long.
    #[error("the claim naming the caller is missing or invalid")]
    NoAgent,
}

/// Why an authenticator could not be built from a valid config.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The CA bundle could not be read or holds no certificate.
    #[error("cannot use ca_file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// There are no TLS trust roots.
    #[error("no TLS trust roots: the system store is empty and no ca_file is configured")]
    NoRoots,
    /// A JWKS file could not be read or is not a JWKS.
    #[error("cannot read the JWKS {source_name}: {detail}")]
    Jwks {
        /// The file.
        source_name: String,
        /// What went wrong.
        detail: String,
    },
}

// === impl AuthError ===

impl AuthError {
    /// A stable, low-cardinality code for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "auth-missing",
            AuthError::Malformed { .. } => "auth-malformed",
            AuthError::TooLarge { .. } => "auth-too-large",
            AuthError::UnknownKey => "auth-unknown-key",
            AuthError::Token(rejection) => rejection.reason(),
            AuthError::KeysUnavailable => "auth-keys-unavailable",
            AuthError::CertificateNotMapped => "auth-certificate-not-mapped",
            AuthError::OnBehalfOfNotAllowed => "on-behalf-of-not-allowed",
        }
    }

    /// The RFC 6750 `error` code of the challenge (`None`: the request
    /// carried no credential, so the challenge names no error).
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::Malformed { .. } | AuthError::TooLarge { .. } => Some("invalid_request"),
            AuthError::UnknownKey
            | AuthError::Token(_)
            | AuthError::KeysUnavailable
            | AuthError::CertificateNotMapped => Some("invalid_token"),
            AuthError::OnBehalfOfNotAllowed => Some("insufficient_scope"),
        }
    }
}

// === impl TokenRejection ===

impl TokenRejection {
    /// A stable code for metrics and logs.
    pub fn reason(self) -> &'static str {
        match self {
            TokenRejection::Malformed => "token-malformed",
            TokenRejection::AlgorithmNotAllowed => "token-algorithm-not-allowed",
            TokenRejection::AlgorithmMismatch => "token-algorithm-mismatch",
            TokenRejection::UnknownKey => "token-unknown-key",
            TokenRejection::BadSignature => "token-bad-signature",
            TokenRejection::WrongIssuer => "token-wrong-issuer",
            TokenRejection::WrongAudience => "token-wrong-audience",
            TokenRejection::Expired => "token-expired",
            TokenRejection::NotYetValid => "token-not-yet-valid",
            TokenRejection::MissingClaim { .. } => "token-missing-claim",
            TokenRejection::NoAgent => "token-no-agent",
        }
    }
}
