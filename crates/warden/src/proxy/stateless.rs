//! The stateless revision (MCP 2026-07-28) on the Streamable HTTP listener.
//!
//! A stateless request has no `initialize` and no session: it carries its
//! revision and the client's capabilities in `params._meta`, and mirrors
//! its method (and the tool, prompt or resource it names) in the
//! `Mcp-Method` and `Mcp-Name` headers, which intermediaries may route on.
//! Warden judges the body, so the headers must say exactly what the body
//! says: a header that disagrees is refused with the spec's `HeaderMismatch`
//! (-32020), and can never smuggle a tool past the policy or past a load
//! balancer routing on it.
//!
//! What passes is forwarded as it came, in the revision it names: a
//! `tools/call` through the pipeline (a multi-round-trip retry is a new
//! call, judged again), a `tools/list` through the filter, everything else
//! (`server/discover`, `subscriptions/listen`, `input_required` results and
//! their `inputResponses`/`requestState`) untouched. The route's stateless
//! requests share one catalogue of the upstream's tools, refreshed after
//! `catalogue_ttl` or a `list_changed` notice on a listen stream.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use http::HeaderMap;
use http::Response;
use serde::Deserialize;
use serde_json::value::RawValue;
use warden_protocol::{Envelope, MessageKind, mcp};

use super::relay::Body;
use super::{Failure, Route, Warden};
use crate::error::EdgeError;

/// Whether a single message without a session is a stateless request: the
/// version header or the body's `_meta` names a stateless revision.
pub(super) fn is_stateless(headers: &HeaderMap, message: &Envelope) -> bool {
    names_stateless_revision(headers)
        || Fields::read(&message.raw).is_some_and(|f| f.version().is_some())
}

/// Whether the `MCP-Protocol-Version` header names a stateless revision.
pub(super) fn names_stateless_revision(headers: &HeaderMap) -> bool {
    headers
        .get(mcp::HEADER_PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(mcp::is_stateless_revision)
}

/// Answer one stateless message.
pub(super) async fn handle(
    warden: &Arc<Warden>,
    route: &Route,
    headers: &Arc<HeaderMap>,
    message: Envelope,
    principal: &Arc<warden_pipeline::Principal>,
) -> Result<Response<Body>, Failure> {
    let id: Arc<str> = message.id_json().into();
    check(headers, &message).map_err(|err| Failure::with_id(err, id))?;
    let session = route.stateless.of(&warden.sessions, principal);
    super::post::one(warden, route, &session, headers, message, principal).await
}

/// The stateless rules a request must keep before Warden acts on it.
fn check(headers: &HeaderMap, message: &Envelope) -> Result<(), EdgeError> {
    let fields = Fields::read(&message.raw).ok_or(EdgeError::MetaMissing {
        key: mcp::META_PROTOCOL_VERSION,
    })?;
    match message.kind {
        MessageKind::Response => {
            return Err(EdgeError::StatelessInvalid {
                detail: "a client sends no responses in the stateless revision (answer input requests in a retry)",
            });
        }
        MessageKind::Notification => {
            // The spec sets no header rules for notifications; the body's
            // revision must still be one Warden serves.
            return match fields.version() {
                Some(version) if !is_served(version) => Err(EdgeError::UnsupportedVersion {
                    requested: version.to_owned(),
                    in_session: false,
                }),
                _ => Ok(()),
            };
        }
        MessageKind::Request => {}
    }
    let header_version = single_header(
        headers,
        mcp::HEADER_PROTOCOL_VERSION,
        "MCP-Protocol-Version",
    )?;
    let version = fields.version().ok_or(EdgeError::MetaMissing {
        key: mcp::META_PROTOCOL_VERSION,
    })?;
    match header_version {
        None => {
            return Err(EdgeError::HeaderMismatch {
                detail: "the MCP-Protocol-Version header is required on every stateless request"
                    .to_owned(),
            });
        }
        Some(header) if header != version => {
            return Err(EdgeError::HeaderMismatch {
                detail: format!(
                    "MCP-Protocol-Version is {header:?} but params._meta names {version:?}"
                ),
            });
        }
        Some(_) => {}
    }
    if !is_served(version) {
        return Err(EdgeError::UnsupportedVersion {
            requested: version.to_owned(),
            in_session: false,
        });
    }
    if !fields.has_capabilities() {
        return Err(EdgeError::MetaMissing {
            key: mcp::META_CLIENT_CAPABILITIES,
        });
    }
    let method = message.method.as_deref().unwrap_or_default();
    compare(
        headers,
        (mcp::HEADER_METHOD, "Mcp-Method"),
        method,
        Some(method),
        "method",
    )?;
    let named = match method {
        mcp::METHOD_TOOLS_CALL | "prompts/get" => Some(("params.name", fields.name())),
        "resources/read" => Some(("params.uri", fields.uri())),
        _ => None,
    };
    if let Some((field, value)) = named {
        compare(
            headers,
            (mcp::HEADER_NAME, "Mcp-Name"),
            method,
            value.as_deref(),
            field,
        )?;
    }
    Ok(())
}

fn is_served(version: &str) -> bool {
    mcp::STATELESS_REVISIONS.contains(&version)
}

fn missing(name: &str, method: &str) -> EdgeError {
    EdgeError::HeaderMismatch {
        detail: format!("the {name} header is required on a stateless {method} request"),
    }
}

/// The header's one value, decoded; a repeated header is refused (two
/// readers could each pick a different copy).
fn single_header(
    headers: &HeaderMap,
    name: &str,
    display: &str,
) -> Result<Option<String>, EdgeError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(EdgeError::HeaderMismatch {
            detail: format!("the {display} header is sent more than once"),
        });
    }
    decode_header_value(value.as_bytes())
        .map(Some)
        .ok_or_else(|| EdgeError::HeaderMismatch {
            detail: format!("the {display} header holds invalid characters or invalid base64"),
        })
}

/// Header `name` must be present and equal `body_value` (the body's `field`).
fn compare(
    headers: &HeaderMap,
    (name, display): (&str, &str),
    body_method: &str,
    body_value: Option<&str>,
    field: &str,
) -> Result<(), EdgeError> {
    let header =
        single_header(headers, name, display)?.ok_or_else(|| missing(display, body_method))?;
    match body_value {
        Some(body) if body == header => Ok(()),
        Some(body) => Err(EdgeError::HeaderMismatch {
            detail: format!("{display} is {header:?} but the body's {field} is {body:?}"),
        }),
        None => Err(EdgeError::HeaderMismatch {
            detail: format!("{display} is {header:?} but the body has no {field}"),
        }),
    }
}

/// A header value as the spec encodes it: plain visible ASCII (with inner
/// spaces), or `=?base64?…?=` around the UTF-8 value in standard base64.
fn decode_header_value(raw: &[u8]) -> Option<String> {
    if let Some(inner) = raw
        .strip_prefix(b"=?base64?")
        .and_then(|rest| rest.strip_suffix(b"?="))
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(inner)
            .ok()?;
        return String::from_utf8(bytes).ok();
    }
    let plain = raw
        .iter()
        .all(|&b| (0x21..=0x7e).contains(&b) || b == b' ' || b == b'\t');
    let trimmed = raw.first().is_some_and(|b| !b.is_ascii_whitespace())
        && raw.last().is_some_and(|b| !b.is_ascii_whitespace());
    (plain && trimmed)
        .then(|| String::from_utf8(raw.to_vec()).ok())
        .flatten()
}

/// What the stateless checks read of a body.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow)]
    name: Option<&'a RawValue>,
    #[serde(borrow)]
    uri: Option<&'a RawValue>,
    #[serde(borrow, rename = "_meta")]
    meta: Option<Meta<'a>>,
}

#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow, rename = "io.modelcontextprotocol/protocolVersion")]
    version: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "io.modelcontextprotocol/clientCapabilities")]
    capabilities: Option<&'a RawValue>,
}

impl<'a> Fields<'a> {
    fn read(message: &'a [u8]) -> Option<Fields<'a>> {
        serde_json::from_slice(message).ok()
    }

    fn meta(&self) -> Option<&Meta<'a>> {
        self.params.as_ref()?.meta.as_ref()
    }

    fn version(&self) -> Option<&str> {
        self.meta()?.version.as_deref()
    }

    fn has_capabilities(&self) -> bool {
        self.meta()
            .and_then(|m| m.capabilities)
            .is_some_and(|c| c.get().starts_with('{'))
    }

    fn name(&self) -> Option<Cow<'a, str>> {
        string_of(self.params.as_ref()?.name?)
    }

    fn uri(&self) -> Option<Cow<'a, str>> {
        string_of(self.params.as_ref()?.uri?)
    }
}

/// A JSON string's text, escapes decoded; `None` for any other value.
fn string_of(value: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str(value.get()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_decode_plain_or_base64_and_refuse_the_rest() {
        assert_eq!(
            decode_header_value(b"tools/call").as_deref(),
            Some("tools/call")
        );
        assert_eq!(
            decode_header_value(b"=?base64?SGVsbG8sIOS4lueVjA==?=").as_deref(),
            Some("Hello, 世界")
        );
        assert_eq!(
            decode_header_value(b"=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").as_deref(),
            Some("=?base64?literal?=")
        );
        assert_eq!(decode_header_value(b" padded"), None);
        assert_eq!(decode_header_value(b"=?base64?not base64!?="), None);
        assert_eq!(decode_header_value(b"tab\x01"), None);
        assert_eq!(decode_header_value(b""), None);
    }

    #[test]
    fn names_are_compared_as_the_body_means_them() {
        let fields = Fields::read(br#"{"params":{"name":"a\u0062"}}"#).expect("read");
        assert_eq!(fields.name().as_deref(), Some("ab"));
        let fields = Fields::read(br#"{"params":{"name":7}}"#).expect("read");
        assert_eq!(fields.name(), None);
    }
}
