//! The Streamable HTTP upstream client.
//!
//! One pooled, keep-alive client per route, over http or https (rustls with
//! the system's roots plus an optional CA bundle). It forwards what the agent
//! sent with the agent's own headers, minus hop-by-hop headers and the
//! agent's credentials, with the upstream's own session id in place of
//! Warden's. `Host` is the upstream's own authority, as any reverse proxy
//! sends it, so the upstream's DNS-rebinding protection sees itself; `Origin`
//! passes unchanged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use warden_pipeline::{Catalogue, read_page};
use warden_protocol::mcp;
use warden_protocol::sse::SseParser;

use crate::config::UpstreamConfig;
use crate::error::EdgeError;

/// Largest reply Warden reads whole (tools/list pages it inspects).
pub const MAX_INSPECTED_REPLY: usize = 16 << 20;
/// Most tools/list pages Warden follows when it fetches a catalogue itself.
const MAX_CATALOGUE_PAGES: usize = 100;

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// The CA bundle could not be read or holds no certificate.
    #[error("cannot use ca_file {path}: {detail}")]
    CaFile {
        /// The file.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The system trust store could not be loaded and no CA bundle was given.
    #[error("no TLS trust roots: the system store is empty and no ca_file is configured")]
    NoRoots,
}

/// A Streamable HTTP upstream.
pub struct HttpUpstream {
    route: Arc<str>,
    url: Uri,
    timeout: Duration,
    /// One connection pool per worker thread (and one for everything else),
    /// so a request never waits on a connection owned by another thread.
    clients: Vec<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
}

/// Headers never forwarded from agent to upstream: hop-by-hop headers,
/// the agent's credentials (the agent never holds the upstream's), and the
/// ones Warden sets itself. Warden states the body's type itself: it has
/// checked the body is UTF-8 JSON, and a charset or encoding parameter it
/// forwarded could make the upstream decode different bytes than it judged.
const STRIPPED_REQUEST_HEADERS: [HeaderName; 16] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    // Warden reads replies (tools/list, SSE taps): they must come uncompressed.
    header::ACCEPT_ENCODING,
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::HOST,
    header::CONTENT_LENGTH,
    header::AUTHORIZATION,
    header::COOKIE,
    header::EXPECT,
    HeaderName::from_static(mcp::HEADER_SESSION_ID),
];

impl HttpUpstream {
    /// Build the clients for one route's upstream, one pool per worker.
    pub fn new(
        route: &str,
        config: &UpstreamConfig,
        workers: usize,
    ) -> Result<HttpUpstream, UpstreamSetupError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout.min(Duration::from_secs(10))));
        let tls = tls_config(config)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let clients = (0..=workers)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .pool_max_idle_per_host(256)
                    .build(connector.clone())
            })
            .collect();
        Ok(HttpUpstream {
            route: route.into(),
            url: config.url.clone(),
            timeout: config.timeout,
            clients,
        })
    }

    /// The upstream's time limit (response head; also whole replies Warden reads).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn client(&self) -> &Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
        let last = self.clients.len() - 1;
        let index = crate::server::worker_index().map_or(last, |i| i.min(last));
        &self.clients[index]
    }

    /// Send one request to the upstream and wait for its response head.
    pub async fn send(
        &self,
        method: Method,
        agent_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Incoming>, EdgeError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        copy_request_headers(agent_headers, headers);
        if method == Method::POST {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(session) = session {
            headers.insert(mcp::HEADER_SESSION_ID, session.clone());
        }
        match tokio::time::timeout(self.timeout, self.client().request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => {
                tracing::warn!(route = %self.route, error = %err, "Upstream request failed.");
                Err(EdgeError::UpstreamUnavailable {
                    route: self.route.to_string(),
                })
            }
            Err(_) => Err(EdgeError::UpstreamTimeout {
                route: self.route.to_string(),
                seconds: self.timeout.as_secs(),
            }),
        }
    }

    /// Fetch the upstream's whole tool catalogue for one upstream session,
    /// following `nextCursor`, within the upstream timeout for each page.
    pub async fn fetch_catalogue(
        &self,
        session: Option<&HeaderValue>,
        protocol_version: Option<&HeaderValue>,
    ) -> Result<Catalogue, EdgeError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        if let Some(version) = protocol_version {
            headers.insert(mcp::HEADER_PROTOCOL_VERSION, version.clone());
        }
        let mut catalogue = Catalogue::default();
        let mut cursor: Option<String> = None;
        for page_number in 0..MAX_CATALOGUE_PAGES {
            let id = format!("\"warden-catalogue-{page_number}\"");
            let params = match &cursor {
                Some(cursor) => serde_json::json!({ "cursor": cursor }),
                None => serde_json::json!({}),
            };
            let body =
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{params}}}"#);
            let response = self
                .send(Method::POST, &headers, session, Bytes::from(body))
                .await?;
            if !response.status().is_success() {
                return Err(self.invalid(format!("tools/list answered HTTP {}", response.status())));
            }
            let message =
                tokio::time::timeout(self.timeout, self.read_reply_message(response, &id))
                    .await
                    .map_err(|_| EdgeError::UpstreamTimeout {
                        route: self.route.to_string(),
                        seconds: self.timeout.as_secs(),
                    })??;
            let page = read_page(&message)
                .map_err(|err| self.invalid(err.to_string()))?
                .ok_or_else(|| {
                    self.invalid("tools/list answered with a JSON-RPC error".to_owned())
                })?;
            catalogue.merge(&page);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(catalogue),
            }
        }
        Err(self.invalid(format!(
            "tools/list has more than {MAX_CATALOGUE_PAGES} pages"
        )))
    }

    /// Read the response message with `id_json` from a JSON or SSE reply.
    async fn read_reply_message(
        &self,
        response: Response<Incoming>,
        id_json: &str,
    ) -> Result<Bytes, EdgeError> {
        let is_sse = is_event_stream(response.headers());
        let mut body = Limited::new(response.into_body(), MAX_INSPECTED_REPLY);
        if !is_sse {
            return body
                .collect()
                .await
                .map(|collected| collected.to_bytes())
                .map_err(|err| self.invalid(format!("reading the reply failed: {err}")));
        }
        let mut parser = SseParser::new(MAX_INSPECTED_REPLY);
        let mut events = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|err| self.invalid(format!("reading the reply failed: {err}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            parser
                .feed(&data, &mut events)
                .map_err(|err| self.invalid(err.to_string()))?;
            for event in events.drain(..) {
                let Some(data) = event.data else { continue };
                if response_id_matches(&data, id_json) {
                    return Ok(Bytes::from(data));
                }
            }
        }
        Err(self.invalid("the event stream ended before the response".to_owned()))
    }

    fn invalid(&self, detail: String) -> EdgeError {
        EdgeError::UpstreamInvalid {
            route: self.route.to_string(),
            detail,
        }
    }
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

/// Whether a response declares an SSE body.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

/// Copy the agent's end-to-end headers onto the upstream request.
fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    let named_in_connection: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in from {
        if STRIPPED_REQUEST_HEADERS.contains(name)
            || name.as_str() == "keep-alive"
            || named_in_connection.iter().any(|n| n == name.as_str())
        {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

fn tls_config(config: &UpstreamConfig) -> Result<rustls::ClientConfig, UpstreamSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A malformed system certificate is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.ca_file {
        use rustls_pki_types::pem::PemObject;
        let ca_error = |detail: String| UpstreamSetupError::CaFile {
            path: path.display().to_string(),
            detail,
        };
        let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|err| ca_error(err.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| ca_error(err.to_string()))?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate in the file".to_owned()));
        }
        for cert in certs {
            roots.add(cert).map_err(|err| ca_error(err.to_string()))?;
        }
    }
    if roots.is_empty() && config.url.scheme_str() == Some("https") {
        return Err(UpstreamSetupError::NoRoots);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| UpstreamSetupError::NoRoots)?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_credentials_hop_by_hop_and_connection_named_headers() {
        let mut agent = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer agent-secret"),
            ("cookie", "sid=1"),
            ("connection", "keep-alive, x-drop-me"),
            ("x-drop-me", "1"),
            ("keep-alive", "timeout=5"),
            ("host", "warden.local:8080"),
            ("mcp-session-id", "warden-id"),
            ("mcp-protocol-version", "2025-06-18"),
            ("origin", "http://localhost:3000"),
            ("last-event-id", "7"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json; charset = utf-7"),
            ("content-encoding", "identity"),
            ("accept-encoding", "gzip, br"),
        ] {
            agent.append(name, HeaderValue::from_static(value));
        }
        let mut out = HeaderMap::new();
        copy_request_headers(&agent, &mut out);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec!["accept", "last-event-id", "mcp-protocol-version", "origin"]
        );
    }

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
