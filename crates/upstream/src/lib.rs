//! Upstream transports: how Warden reaches the MCP server behind a route.
//!
//! The proxy speaks Streamable HTTP to every upstream. A Streamable HTTP
//! server is reached directly ([`HttpUpstream`]); a server that speaks
//! stdio or the legacy HTTP+SSE transport (2024-11-05) is reached through a
//! [`Bridge`], an in-process Streamable HTTP endpoint in front of its
//! message links. So the session mapping, the pipeline and the reply
//! filters exist once, whatever the upstream speaks.

pub mod body;
mod bridge;
mod child;
pub mod config;
pub mod credential;
pub mod error;
mod http;
pub use http::FORWARDED_REQUEST_HEADERS;
mod legacy_sse;
pub mod line_io;
pub mod worker;

use std::time::Duration;

use ::http::header::{self, HeaderMap, HeaderValue};
use ::http::{Method, Response};
use bytes::Bytes;
use http_body_util::BodyExt;
use warden_pipeline::{Catalogue, read_page};
use warden_protocol::mcp;
use warden_protocol::sse::SseParser;

pub use self::bridge::{Bridge, BridgeLimits};
pub use self::http::HttpUpstream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::body::Body;
use crate::config::{UpstreamConfig, UpstreamTransport};
use crate::error::EdgeError;

/// Largest reply Warden reads whole (tools/list pages it inspects), and the
/// longest line it reads from a stdio upstream.
pub const MAX_INSPECTED_REPLY: usize = 16 << 20;
/// Most tools/list pages Warden follows when it fetches a catalogue itself.
const MAX_CATALOGUE_PAGES: usize = 100;
/// How the ids of Warden's own `tools/list` requests begin.
const CATALOGUE_ID_PREFIX: &str = "warden-catalogue-";

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// A CA bundle or client certificate file could not be used.
    #[error("cannot use {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The system trust store could not be loaded and no CA bundle was given.
    #[error("no TLS trust roots: the system store is empty and no ca_file is configured")]
    NoRoots,
    /// A stdio or legacy SSE upstream was built outside a Tokio runtime.
    #[error("stdio and legacy SSE upstreams must be built inside a Tokio runtime")]
    NoRuntime,
}

/// One route's upstream, whatever transport it speaks.
pub enum Upstream {
    /// A Streamable HTTP server.
    Http(HttpUpstream),
    /// A stdio or legacy HTTP+SSE server behind an in-process bridge.
    Bridged(Bridge),
}

/// The link metrics of one route's stdio or legacy SSE upstream.
#[derive(Clone, Debug)]
pub struct LinkMetrics {
    /// Links open now (children running, streams open).
    pub open: Gauge,
    /// Links that died.
    pub closed: Counter,
    /// Links that could not be opened.
    pub start_failed: Counter,
    /// Lines that were not JSON-RPC.
    pub garbage: Counter,
}

/// A session's request names a stateful revision in `MCP-Protocol-Version`,
/// or none (which means 2025-03-26).
fn check_protocol_version(headers: &HeaderMap) -> Result<(), EdgeError> {
    let Some(value) = headers.get(mcp::HEADER_PROTOCOL_VERSION) else {
        return Ok(());
    };
    match value.to_str() {
        Ok(version) if mcp::STATEFUL_REVISIONS.contains(&version) => Ok(()),
        other => Err(EdgeError::UnsupportedVersion {
            requested: other.unwrap_or("(not text)").to_owned(),
            in_session: true,
        }),
    }
}

/// The limits of a stdio or legacy SSE upstream's bridge.
fn bridge_limits(config: &UpstreamConfig) -> BridgeLimits {
    BridgeLimits {
        timeout: config.timeout,
        reply_timeout: config.reply_timeout,
        max_links: config.max_links,
    }
}

impl Upstream {
    /// Build the client for one lane of a route's upstream: its requests
    /// carry `credential` (a header over HTTP, an environment variable of
    /// the children of a stdio server), or none.
    pub fn new(
        route: &str,
        config: &UpstreamConfig,
        workers: usize,
        link_metrics: impl FnOnce() -> LinkMetrics,
        credential: Option<std::sync::Arc<credential::Credential>>,
    ) -> Result<Upstream, UpstreamSetupError> {
        Ok(match &config.transport {
            UpstreamTransport::StreamableHttp(endpoint) => Upstream::Http(
                HttpUpstream::new(route, endpoint, config.timeout, workers)?
                    .with_credential(credential),
            ),
            UpstreamTransport::LegacySse(endpoint) => {
                let client = HttpUpstream::new(route, endpoint, config.timeout, 0)?
                    .with_credential(credential);
                Upstream::Bridged(Bridge::legacy_sse(
                    route,
                    client,
                    bridge_limits(config),
                    link_metrics(),
                )?)
            }
            UpstreamTransport::Stdio(command) => {
                let mut command = command.clone();
                command.secrets.extend(credential);
                Upstream::Bridged(Bridge::stdio(
                    route,
                    command,
                    bridge_limits(config),
                    link_metrics(),
                )?)
            }
        })
    }

    /// The upstream's time limit (response head; also whole replies Warden reads).
    pub fn timeout(&self) -> Duration {
        match self {
            Upstream::Http(http) => http.timeout(),
            Upstream::Bridged(bridge) => bridge.timeout(),
        }
    }

    /// Send one request as Streamable HTTP and wait for its response head.
    pub async fn send(
        &self,
        method: Method,
        agent_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Body>, EdgeError> {
        match self {
            Upstream::Http(http) => http.send(method, agent_headers, session, body).await,
            Upstream::Bridged(bridge) => {
                // A Streamable HTTP server answers a request naming a
                // revision it does not speak with 400. The server behind a
                // bridge never sees the agent's headers, so Warden checks.
                if session.is_some() {
                    check_protocol_version(agent_headers)?;
                }
                let last_event_id = agent_headers
                    .get(mcp::HEADER_LAST_EVENT_ID)
                    .and_then(|v| v.to_str().ok());
                bridge
                    .clone()
                    .send(method, session.cloned(), last_event_id, body)
                    .await
            }
        }
    }

    /// Stop what the upstream runs in the background (children, streams),
    /// and wait until they are gone.
    pub async fn shutdown(&self) {
        if let Upstream::Bridged(bridge) = self {
            bridge.shutdown().await;
        }
    }

    /// Fetch the upstream's whole tool catalogue for one upstream session,
    /// following `nextCursor`, within the upstream timeout for each page.
    pub async fn fetch_catalogue(
        &self,
        route: &str,
        session: Option<&HeaderValue>,
        protocol_version: Option<&HeaderValue>,
    ) -> Result<Catalogue, EdgeError> {
        let timeout = self.timeout();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(version) = protocol_version {
            headers.insert(mcp::HEADER_PROTOCOL_VERSION, version.clone());
        }
        // A stateless revision's request carries its revision in `_meta` and
        // its method in a header; Warden declares no client capabilities.
        let stateless_meta = protocol_version
            .and_then(|v| v.to_str().ok())
            .filter(|v| mcp::is_stateless_revision(v))
            .map(|version| {
                headers.insert(mcp::HEADER_METHOD, HeaderValue::from_static("tools/list"));
                serde_json::json!({
                    mcp::META_PROTOCOL_VERSION: version,
                    mcp::META_CLIENT_CAPABILITIES: {},
                })
            });
        let mut catalogue = Catalogue::default();
        let mut cursor: Option<String> = None;
        for page_number in 0..MAX_CATALOGUE_PAGES {
            // Unique per fetch too: two fetches in one session may overlap.
            let id = format!("\"{CATALOGUE_ID_PREFIX}{}\"", next_request_number());
            let mut params = serde_json::Map::new();
            if let Some(cursor) = &cursor {
                params.insert("cursor".into(), cursor.clone().into());
            }
            if let Some(meta) = &stateless_meta {
                params.insert("_meta".into(), meta.clone());
            }
            let params = serde_json::Value::Object(params);
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{params}}}"#);
            let response = self
                .send(Method::POST, &headers, session, Bytes::from(body))
                .await?;
            if !response.status().is_success() {
                return Err(invalid(
                    route,
                    format!("tools/list answered HTTP {}", response.status()),
                ));
            }
            let message = tokio::time::timeout(timeout, read_reply_message(response, &id))
                .await
                .map_err(|_| EdgeError::UpstreamTimeout {
                    route: route.to_owned(),
                    seconds: timeout.as_secs(),
                })?
                .map_err(|detail| invalid(route, detail))?;
            let page = read_page(&message)
                .map_err(|err| invalid(route, err.to_string()))?
                .ok_or_else(|| {
                    invalid(
                        route,
                        "tools/list answered with a JSON-RPC error".to_owned(),
                    )
                })?;
            catalogue.merge(&page);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(catalogue),
            }
            tracing::trace!(page_number, "Catalogue page read.");
        }
        Err(invalid(
            route,
            format!("tools/list has more than {MAX_CATALOGUE_PAGES} pages"),
        ))
    }
}

fn invalid(route: &str, detail: String) -> EdgeError {
    EdgeError::UpstreamInvalid {
        route: route.to_owned(),
        detail,
    }
}

/// Whether a request id (JSON text) is one of Warden's own catalogue fetches.
fn is_catalogue_fetch(id_json: &str) -> bool {
    id_json
        .strip_prefix('"')
        .is_some_and(|id| id.starts_with(CATALOGUE_ID_PREFIX))
}

/// A process-wide counter for the ids of requests Warden makes itself.
fn next_request_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Read the response message with `id_json` from a JSON or SSE reply.
async fn read_reply_message(response: Response<Body>, id_json: &str) -> Result<Bytes, String> {
    let is_sse = is_event_stream(response.headers());
    let mut body = response.into_body();
    if !is_sse {
        return crate::body::collect_capped(body, MAX_INSPECTED_REPLY)
            .await
            .map_err(|err| format!("reading the reply failed: {err}"));
    }
    // The parser bounds each line and event; the stream ends at the response.
    let mut parser = SseParser::new(MAX_INSPECTED_REPLY);
    let mut events = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| format!("reading the reply failed: {err}"))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        parser
            .feed(&data, &mut events)
            .map_err(|err| err.to_string())?;
        for event in events.drain(..) {
            let Some(data) = event.data else { continue };
            if response_id_matches(&data, id_json) {
                return Ok(Bytes::from(data));
            }
        }
    }
    Err("the event stream ended before the response".to_owned())
}

/// Whether an SSE event's data is the response to the request with `id_json`.
fn response_id_matches(data: &str, id_json: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Option<&'a serde_json::value::RawValue>,
        method: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_str::<Head<'_>>(data)
        .is_ok_and(|head| head.method.is_none() && head.id.is_some_and(|id| id.get() == id_json))
}

/// The start of something a server sent that is not JSON-RPC, for the log
/// (never for the agent: it may hold whatever the server printed).
fn preview(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
    format!("{text:?}")
}

/// Whether a response declares an SSE body.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_response_among_notifications() {
        assert!(response_id_matches(
            r#"{"jsonrpc":"2.0","id":"warden-catalogue-0","result":{}}"#,
            "\"warden-catalogue-0\""
        ));
        assert!(!response_id_matches(
            r#"{"jsonrpc":"2.0","id":"warden-catalogue-0","method":"x"}"#,
            "\"warden-catalogue-0\""
        ));
        assert!(!response_id_matches(
            r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
            "\"warden-catalogue-0\""
        ));
        assert!(!response_id_matches("garbage", "1"));
    }
}
