//! The edge error: every way a request can fail before or instead of reaching
//! the upstream, mapped exhaustively to an HTTP status, a JSON-RPC code, a
//! metric reason and who failed.
//!
//! Policy refusals are not here: they are tool results (see
//! `warden_pipeline::Refusal`). These are for requests that are malformed,
//! unauthorized, or that the upstream could not answer.

use bytes::Bytes;
use http::StatusCode;
use warden_identity::AuthError;
use warden_protocol::jsonrpc::{self, INTERNAL_ERROR, INVALID_REQUEST};
use warden_protocol::{ParseError, mcp};

/// Who a failure is attributed to (for metrics and for the operator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    /// The agent sent something Warden will not accept.
    Client,
    /// The upstream could not be reached or answered badly.
    Upstream,
    /// Warden itself.
    Warden,
}

impl Culprit {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Culprit::Client => "client",
            Culprit::Upstream => "upstream",
            Culprit::Warden => "warden",
        }
    }
}

/// JSON-RPC code: the upstream could not be reached.
pub const UPSTREAM_UNAVAILABLE: i64 = -32001;
/// JSON-RPC code: the upstream did not answer in time.
pub const UPSTREAM_TIMEOUT: i64 = -32002;
/// JSON-RPC code: the upstream answered with something that is not MCP.
pub const UPSTREAM_INVALID: i64 = -32003;

/// Every failure answered at the edge.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// No route is configured at the path.
    #[error("no MCP route at {path}")]
    NoRoute {
        /// The requested path.
        path: String,
    },
    /// The HTTP method is not one MCP uses.
    #[error("method {method} is not allowed; MCP uses POST, GET and DELETE")]
    MethodNotAllowed {
        /// The method sent.
        method: String,
    },
    /// A browser origin that is not allowed (DNS-rebinding protection).
    #[error("Origin {origin} is not allowed on this route")]
    ForbiddenOrigin {
        /// The origin sent.
        origin: String,
    },
    /// A `Host` that is not allowed on this route (DNS-rebinding
    /// protection: Warden replaces the agent's `Host` on the way out, so
    /// the upstream cannot check it).
    #[error("Host {host} is not allowed on this route")]
    ForbiddenHost {
        /// The host sent (`(none)` when the request named none).
        host: String,
    },
    /// The Accept header does not allow the replies MCP sends.
    #[error("Accept must include {needed}")]
    NotAcceptable {
        /// What the header must list.
        needed: &'static str,
    },
    /// The body is not declared as JSON.
    #[error("Content-Type must be application/json")]
    UnsupportedMediaType,
    /// The body is compressed or otherwise encoded.
    #[error("Content-Encoding {encoding} is not supported; send the body unencoded")]
    UnsupportedEncoding {
        /// The encoding sent.
        encoding: String,
    },
    /// The body is larger than the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body did not arrive in time or the connection failed while reading it.
    #[error("the request body was not received: {detail}")]
    BodyNotReceived {
        /// What happened.
        detail: &'static str,
    },
    /// The body is not valid JSON-RPC.
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// A batch where the negotiated revision forbids batches.
    #[error(
        "JSON-RPC batches are not allowed in MCP revision {revision}; send one message per request"
    )]
    BatchNotAllowed {
        /// The revision in force.
        revision: String,
    },
    /// A batch with more messages than Warden takes at once.
    #[error("a batch of {count} messages exceeds the limit of {limit}; send smaller batches")]
    BatchTooLarge {
        /// Messages sent.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// `initialize` inside a batch.
    #[error("initialize must not be part of a batch")]
    InitializeInBatch,
    /// A non-initialize request without a session header.
    #[error("missing Mcp-Session-Id header; send initialize first")]
    MissingSession,
    /// A session id Warden does not know (never issued, ended or expired).
    #[error("unknown or expired session; send initialize to start a new one")]
    UnknownSession,
    /// A stateless request's `Mcp-*` or `MCP-Protocol-Version` headers are
    /// missing or disagree with its body.
    #[error("header mismatch: {detail}")]
    HeaderMismatch {
        /// Which header, and how.
        detail: String,
    },
    /// A request names a revision Warden does not serve (a stateless one),
    /// or one its session cannot use (to a bridged upstream).
    #[error("unsupported protocol version {requested}")]
    UnsupportedVersion {
        /// What the request named.
        requested: String,
        /// Whether the request was in a session (which can use only the
        /// stateful revisions), not stateless.
        in_session: bool,
    },
    /// A stateless request lacks a required `params._meta` member.
    #[error("params._meta must carry {key}")]
    MetaMissing {
        /// The missing key.
        key: &'static str,
    },
    /// A message the stateless revision does not allow from a client.
    #[error("{detail}")]
    StatelessInvalid {
        /// What is wrong.
        detail: &'static str,
    },
    /// The caller could not be authenticated (or named a user it may not act for).
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    /// The session was opened by another caller: its id alone lets no one in.
    #[error("this session belongs to another caller; initialize a session of your own")]
    SessionOfAnotherCaller,
    /// The credential a request must carry cannot be had now (a file gone,
    /// a token endpoint down).
    #[error(
        "the credential {credential} for the upstream of {route} is unavailable; see Warden's log"
    )]
    CredentialUnavailable {
        /// The route.
        route: String,
        /// The credential's name (never its value).
        credential: String,
    },
    /// The upstream refused the credential Warden sent (or wanted one and
    /// got none): its challenge is never passed on, so an agent's SDK does
    /// not start an authorization flow against the upstream's server.
    #[error(
        "the upstream MCP server for {route} refused Warden's credential (HTTP 401); see Warden's config"
    )]
    UpstreamAuthFailed {
        /// The route.
        route: String,
    },
    /// Warden failed in a way it should not.
    #[error("internal error: {what}")]
    Internal {
        /// What failed.
        what: &'static str,
    },
    /// The upstream could not be reached.
    #[error("the upstream MCP server for {route} is unreachable or dropped the connection")]
    UpstreamUnavailable {
        /// The route.
        route: String,
    },
    /// A stdio or legacy SSE upstream is not running or its link failed.
    #[error("the upstream MCP server for {route} {detail}")]
    UpstreamDown {
        /// The route.
        route: String,
        /// What happened, e.g. "exited (exit status: 1); restarting in 2s".
        detail: String,
    },
    /// A stdio or legacy SSE upstream runs as many links as it may.
    #[error(
        "the upstream MCP server for {route} is at its limit of {limit} running sessions (upstream.max_links); retry when one ends"
    )]
    UpstreamBusy {
        /// The route.
        route: String,
        /// The limit.
        limit: usize,
    },
    /// The upstream did not answer in time.
    #[error("the upstream MCP server for {route} did not answer within {seconds}s")]
    UpstreamTimeout {
        /// The route.
        route: String,
        /// The timeout.
        seconds: u64,
    },
    /// The upstream answered with something that is not MCP.
    #[error("the upstream MCP server for {route} sent an invalid reply: {detail}")]
    UpstreamInvalid {
        /// The route.
        route: String,
        /// What was wrong.
        detail: String,
    },
}

impl EdgeError {
    /// The HTTP status the agent receives.
    pub fn status(&self) -> StatusCode {
        match self {
            EdgeError::NoRoute { .. } => StatusCode::NOT_FOUND,
            EdgeError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            EdgeError::ForbiddenOrigin { .. } | EdgeError::ForbiddenHost { .. } => {
                StatusCode::FORBIDDEN
            }
            EdgeError::NotAcceptable { .. } => StatusCode::NOT_ACCEPTABLE,
            EdgeError::UnsupportedMediaType | EdgeError::UnsupportedEncoding { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            EdgeError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::BodyNotReceived { .. } => StatusCode::REQUEST_TIMEOUT,
            EdgeError::Parse(_)
            | EdgeError::BatchNotAllowed { .. }
            | EdgeError::BatchTooLarge { .. }
            | EdgeError::InitializeInBatch
            | EdgeError::HeaderMismatch { .. }
            | EdgeError::UnsupportedVersion { .. }
            | EdgeError::MetaMissing { .. }
            | EdgeError::StatelessInvalid { .. }
            | EdgeError::MissingSession => StatusCode::BAD_REQUEST,
            EdgeError::UnknownSession => StatusCode::NOT_FOUND,
            EdgeError::Unauthenticated(AuthError::OnBehalfOfNotAllowed)
            | EdgeError::SessionOfAnotherCaller => StatusCode::FORBIDDEN,
            EdgeError::Unauthenticated(AuthError::KeysUnavailable) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            EdgeError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            EdgeError::CredentialUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            EdgeError::UpstreamAuthFailed { .. } => StatusCode::BAD_GATEWAY,
            EdgeError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            EdgeError::UpstreamUnavailable { .. }
            | EdgeError::UpstreamDown { .. }
            | EdgeError::UpstreamInvalid { .. } => StatusCode::BAD_GATEWAY,
            EdgeError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            EdgeError::UpstreamBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The JSON-RPC error code in the body.
    pub fn code(&self) -> i64 {
        match self {
            EdgeError::Parse(err) => err.code(),
            EdgeError::NoRoute { .. }
            | EdgeError::MethodNotAllowed { .. }
            | EdgeError::ForbiddenOrigin { .. }
            | EdgeError::ForbiddenHost { .. }
            | EdgeError::NotAcceptable { .. }
            | EdgeError::UnsupportedMediaType
            | EdgeError::UnsupportedEncoding { .. }
            | EdgeError::BodyTooLarge { .. }
            | EdgeError::BodyNotReceived { .. }
            | EdgeError::BatchNotAllowed { .. }
            | EdgeError::BatchTooLarge { .. }
            | EdgeError::InitializeInBatch
            | EdgeError::MissingSession
            | EdgeError::StatelessInvalid { .. }
            | EdgeError::Unauthenticated(_)
            | EdgeError::SessionOfAnotherCaller
            | EdgeError::UnknownSession => INVALID_REQUEST,
            EdgeError::HeaderMismatch { .. } => mcp::ERROR_HEADER_MISMATCH,
            EdgeError::UnsupportedVersion { .. } => mcp::ERROR_UNSUPPORTED_PROTOCOL_VERSION,
            EdgeError::MetaMissing { .. } => jsonrpc::INVALID_PARAMS,
            EdgeError::Internal { .. } | EdgeError::CredentialUnavailable { .. } => INTERNAL_ERROR,
            EdgeError::UpstreamUnavailable { .. }
            | EdgeError::UpstreamDown { .. }
            | EdgeError::UpstreamBusy { .. } => UPSTREAM_UNAVAILABLE,
            EdgeError::UpstreamTimeout { .. } => UPSTREAM_TIMEOUT,
            EdgeError::UpstreamInvalid { .. } | EdgeError::UpstreamAuthFailed { .. } => {
                UPSTREAM_INVALID
            }
        }
    }

    /// A low-cardinality reason for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            EdgeError::NoRoute { .. } => "no-route",
            EdgeError::MethodNotAllowed { .. } => "method-not-allowed",
            EdgeError::ForbiddenOrigin { .. } => "forbidden-origin",
            EdgeError::ForbiddenHost { .. } => "forbidden-host",
            EdgeError::NotAcceptable { .. } => "not-acceptable",
            EdgeError::UnsupportedMediaType => "unsupported-media-type",
            EdgeError::UnsupportedEncoding { .. } => "unsupported-encoding",
            EdgeError::BodyTooLarge { .. } => "body-too-large",
            EdgeError::BodyNotReceived { .. } => "body-not-received",
            EdgeError::Parse(ParseError::Syntax { .. }) => "malformed-json",
            EdgeError::Parse(_) => "invalid-jsonrpc",
            EdgeError::BatchNotAllowed { .. } => "batch-not-allowed",
            EdgeError::BatchTooLarge { .. } => "batch-too-large",
            EdgeError::InitializeInBatch => "initialize-in-batch",
            EdgeError::MissingSession => "missing-session",
            EdgeError::UnknownSession => "unknown-session",
            EdgeError::Unauthenticated(err) => err.reason(),
            EdgeError::SessionOfAnotherCaller => "session-of-another-caller",
            EdgeError::CredentialUnavailable { .. } => "credential-unavailable",
            EdgeError::UpstreamAuthFailed { .. } => "upstream-auth-failed",
            EdgeError::HeaderMismatch { .. } => "header-mismatch",
            EdgeError::UnsupportedVersion { .. } => "unsupported-version",
            EdgeError::MetaMissing { .. } => "meta-missing",
            EdgeError::StatelessInvalid { .. } => "stateless-invalid",
            EdgeError::Internal { .. } => "internal",
            EdgeError::UpstreamUnavailable { .. } => "upstream-unavailable",
            EdgeError::UpstreamDown { .. } => "upstream-down",
            EdgeError::UpstreamBusy { .. } => "upstream-busy",
            EdgeError::UpstreamTimeout { .. } => "upstream-timeout",
            EdgeError::UpstreamInvalid { .. } => "upstream-invalid",
        }
    }

    /// Who failed.
    pub fn culprit(&self) -> Culprit {
        match self {
            EdgeError::NoRoute { .. }
            | EdgeError::MethodNotAllowed { .. }
            | EdgeError::ForbiddenOrigin { .. }
            | EdgeError::ForbiddenHost { .. }
            | EdgeError::NotAcceptable { .. }
            | EdgeError::UnsupportedMediaType
            | EdgeError::UnsupportedEncoding { .. }
            | EdgeError::BodyTooLarge { .. }
            | EdgeError::BodyNotReceived { .. }
            | EdgeError::Parse(_)
            | EdgeError::BatchNotAllowed { .. }
            | EdgeError::BatchTooLarge { .. }
            | EdgeError::InitializeInBatch
            | EdgeError::MissingSession
            | EdgeError::HeaderMismatch { .. }
            | EdgeError::UnsupportedVersion { .. }
            | EdgeError::MetaMissing { .. }
            | EdgeError::StatelessInvalid { .. }
            | EdgeError::SessionOfAnotherCaller
            | EdgeError::UnknownSession => Culprit::Client,
            EdgeError::Unauthenticated(AuthError::KeysUnavailable) => Culprit::Upstream,
            EdgeError::Unauthenticated(_) => Culprit::Client,
            EdgeError::Internal { .. }
            | EdgeError::UpstreamBusy { .. }
            | EdgeError::CredentialUnavailable { .. } => Culprit::Warden,
            EdgeError::UpstreamUnavailable { .. }
            | EdgeError::UpstreamDown { .. }
            | EdgeError::UpstreamTimeout { .. }
            | EdgeError::UpstreamAuthFailed { .. }
            | EdgeError::UpstreamInvalid { .. } => Culprit::Upstream,
        }
    }

    /// The JSON-RPC error body, answering `id_json` (`null` when unknown).
    pub fn body(&self, id_json: &str) -> Bytes {
        let message = format!("Warden: {self}");
        match self {
            // The spec's UnsupportedProtocolVersion names what is served,
            // so a client can pick one and retry.
            EdgeError::UnsupportedVersion {
                requested,
                in_session,
            } => {
                let stateless: &[&str] = if *in_session {
                    &[]
                } else {
                    &mcp::STATELESS_REVISIONS
                };
                let error = serde_json::json!({
                    "code": self.code(),
                    "message": message,
                    "data": {
                        "supported": stateless
                            .iter()
                            .chain(mcp::STATEFUL_REVISIONS.iter().rev())
                            .collect::<Vec<_>>(),
                        "requested": requested,
                    },
                });
                Bytes::from(format!(
                    r#"{{"jsonrpc":"2.0","id":{id_json},"error":{error}}}"#
                ))
            }
            _ => jsonrpc::error_response(id_json, self.code(), &message),
        }
    }
}

/// An internal-error body for failures that should never happen.
pub fn internal_error_body() -> Bytes {
    jsonrpc::error_response("null", INTERNAL_ERROR, "Warden: internal error")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_rpc_errors_naming_warden() {
        let err = EdgeError::UnknownSession;
        let value: serde_json::Value = serde_json::from_slice(&err.body("5")).expect("json");
        assert_eq!(value["id"], 5);
        assert_eq!(value["error"]["code"], INVALID_REQUEST);
        assert!(
            value["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Warden: unknown"))
        );
        assert_eq!(err.status(), StatusCode::NOT_FOUND);
        assert_eq!(err.culprit(), Culprit::Client);
    }

    #[test]
    fn upstream_failures_are_gateway_errors() {
        let err = EdgeError::UpstreamTimeout {
            route: "/mcp".into(),
            seconds: 3,
        };
        assert_eq!(err.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(err.code(), UPSTREAM_TIMEOUT);
        assert_eq!(err.culprit(), Culprit::Upstream);
        assert_eq!(
            err.to_string(),
            "the upstream MCP server for /mcp did not answer within 3s"
        );
    }
}
