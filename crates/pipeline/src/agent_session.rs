//! The agent session: what per-session limits and the audit trail key on.
//!
//! MCP has a protocol session only in its stateful revisions; the stateless
//! revision (2026-07-28) has none, yet a runaway loop must still be stopped
//! per agent. Warden therefore defines the agent session as, in order:
//!
//! 1. the MCP session (Warden's own `Mcp-Session-Id`) where one exists;
//! 2. else the `Warden-Agent-Session` request header, set by the agent
//!    runtime;
//! 3. else the `warden/agentSession` key of the request's `params._meta`;
//! 4. else the authenticated principal (one session per caller identity).
//!
//! A supplied id must be 1–128 visible ASCII characters; anything else is
//! refused rather than silently merged with another agent's session.

use std::sync::Arc;

/// The request header an agent runtime sets to name its session.
pub const AGENT_SESSION_HEADER: &str = "warden-agent-session";
/// The `params._meta` key an agent runtime sets to name its session.
pub const AGENT_SESSION_META_KEY: &str = "warden/agentSession";
/// Longest agent session id accepted.
pub const MAX_AGENT_SESSION_LEN: usize = 128;

/// Where an agent session id came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentSessionSource {
    /// Warden's MCP session.
    McpSession,
    /// The `Warden-Agent-Session` header.
    Header,
    /// `params._meta["warden/agentSession"]`.
    Meta,
    /// The authenticated principal.
    Principal,
}

/// Why no agent session could be named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentSessionError {
    /// A supplied id is empty, too long or not visible ASCII.
    #[error(
        "invalid agent session id in {source_name}: use 1-{MAX_AGENT_SESSION_LEN} visible ASCII characters"
    )]
    Invalid {
        /// `the Warden-Agent-Session header` or `params._meta`.
        source_name: &'static str,
    },
    /// Nothing names a session.
    #[error(
        "no agent session: send Mcp-Session-Id, the Warden-Agent-Session header, or params._meta[\"warden/agentSession\"]"
    )]
    Missing,
}

/// The candidates a request offers, most authoritative first.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionCandidates<'a> {
    /// Warden's MCP session id, if the request has one.
    pub mcp_session: Option<&'a str>,
    /// The `Warden-Agent-Session` header's value.
    pub header: Option<&'a [u8]>,
    /// The `_meta` key's value.
    pub meta: Option<&'a str>,
    /// The authenticated principal.
    pub principal: Option<&'a str>,
}

/// Name the agent session of a request (see the module docs for the order).
pub fn resolve(
    candidates: SessionCandidates<'_>,
) -> Result<(Arc<str>, AgentSessionSource), AgentSessionError> {
    if let Some(id) = candidates.mcp_session {
        return Ok((id.into(), AgentSessionSource::McpSession));
    }
    if let Some(value) = candidates.header {
        let id = valid(value).ok_or(AgentSessionError::Invalid {
            source_name: "the Warden-Agent-Session header",
        })?;
        return Ok((id.into(), AgentSessionSource::Header));
    }
    if let Some(value) = candidates.meta {
        let id = valid(value.as_bytes()).ok_or(AgentSessionError::Invalid {
            source_name: "params._meta",
        })?;
        return Ok((id.into(), AgentSessionSource::Meta));
    }
    match candidates.principal {
        Some(principal) => Ok((
            format!("principal:{principal}").into(),
            AgentSessionSource::Principal,
        )),
        None => Err(AgentSessionError::Missing),
    }
}

fn valid(value: &[u8]) -> Option<&str> {
    let ok = !value.is_empty()
        && value.len() <= MAX_AGENT_SESSION_LEN
        && value.iter().all(|b| (0x21..=0x7e).contains(b));
    if ok {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mcp_session_wins() {
        let (id, source) = resolve(SessionCandidates {
            mcp_session: Some("abc"),
            header: Some(b"runtime-1"),
            meta: Some("meta-1"),
            principal: Some("alice"),
        })
        .expect("resolves");
        assert_eq!((&*id, source), ("abc", AgentSessionSource::McpSession));
    }

    #[test]
    fn then_the_header_then_meta_then_the_principal() {
        let header = resolve(SessionCandidates {
            header: Some(b"run-7"),
            meta: Some("m"),
            ..Default::default()
        });
        assert_eq!(
            header.map(|(id, s)| (id.to_string(), s)),
            Ok(("run-7".into(), AgentSessionSource::Header))
        );
        let meta = resolve(SessionCandidates {
            meta: Some("m-1"),
            principal: Some("alice"),
            ..Default::default()
        });
        assert_eq!(
            meta.map(|(id, s)| (id.to_string(), s)),
            Ok(("m-1".into(), AgentSessionSource::Meta))
        );
        let principal = resolve(SessionCandidates {
            principal: Some("alice"),
            ..Default::default()
        });
        assert_eq!(
            principal.map(|(id, s)| (id.to_string(), s)),
            Ok(("principal:alice".into(), AgentSessionSource::Principal))
        );
    }

    #[test]
    fn bad_ids_are_refused_not_merged() {
        let long = "x".repeat(MAX_AGENT_SESSION_LEN + 1);
        for bad in [
            &b""[..],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
            long.as_bytes(),
        ] {
            assert!(matches!(
                resolve(SessionCandidates {
                    header: Some(bad),
                    principal: Some("alice"),
                    ..Default::default()
                }),
                Err(AgentSessionError::Invalid { .. })
            ));
        }
        assert_eq!(
            resolve(SessionCandidates::default()),
            Err(AgentSessionError::Missing)
        );
    }
}
