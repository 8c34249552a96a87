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
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use warden_protocol::mcp;

use super::UpstreamSetupError;
use crate::body::{Body, BoxError};
use crate::config::HttpEndpoint;
use crate::error::EdgeError;

/// A Streamable HTTP upstream.
pub struct HttpUpstream {
    route: Arc<str>,
    url: Uri,
    timeout: Duration,
    /// One connection pool per worker thread (and one for everything else),
    /// so a request never waits on a connection owned by another thread.
    clients: Vec<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    /// The endpoint's own `forward_headers`.
    forward_headers: Arc<[HeaderName]>,
    /// The credential this lane's requests carry.
    credential: Option<Arc<crate::credential::Credential>>,
}

/// The agent's headers that reach the upstream (besides an endpoint's own
/// `forward_headers`): what MCP itself needs, the client's name and the
/// trace context. Everything else stays with Warden: the agent's
/// credentials (`Authorization`, `Cookie`, `Proxy-Authorization`, API-key
/// headers of any name), Warden's own `Warden-*` headers, hop-by-hop
/// headers, and the body's type and encoding, which Warden states itself
/// (it has checked the body is UTF-8 JSON, and a charset or encoding it
/// passed on could make the upstream decode other bytes than it judged).
/// Besides these, every `Mcp-*` header but `Mcp-Session-Id` passes (the
/// stateless revision's `Mcp-Method`, `Mcp-Name` and their kin).
pub const FORWARDED_REQUEST_HEADERS: [&str; 8] = [
    "accept",
    "mcp-protocol-version",
    "last-event-id",
    "origin",
    "user-agent",
    "traceparent",
    "tracestate",
    "baggage",
];

impl HttpUpstream {
    /// Build the clients for one route's upstream, one pool per worker.
    pub fn new(
        route: &str,
        config: &HttpEndpoint,
        timeout: Duration,
        workers: usize,
    ) -> Result<HttpUpstream, UpstreamSetupError> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout.min(Duration::from_secs(10))));
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
            timeout,
            clients,
            forward_headers: config.forward_headers.clone().into(),
            credential: None,
        })
    }

    /// The upstream's time limit (response head; also whole replies Warden reads).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Send `credential` with every request of this client (one lane).
    pub fn with_credential(
        mut self,
        credential: Option<Arc<crate::credential::Credential>>,
    ) -> HttpUpstream {
        self.credential = credential;
        self
    }

    fn client(&self) -> &Client<HttpsConnector<HttpConnector>, Full<Bytes>> {
        let last = self.clients.len() - 1;
        let index = crate::worker::worker_index().map_or(last, |i| i.min(last));
        &self.clients[index]
    }

    /// Send one request to the upstream and wait for its response head.
    pub async fn send(
        &self,
        method: Method,
        agent_headers: &HeaderMap,
        session: Option<&HeaderValue>,
        body: Bytes,
    ) -> Result<Response<Body>, EdgeError> {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method.clone();
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        copy_request_headers(agent_headers, headers, &self.forward_headers);
        if method == Method::POST {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        if let Some(session) = session {
            headers.insert(mcp::HEADER_SESSION_ID, session.clone());
        }
        if let Some(credential) = &self.credential {
            let value = credential
                .header_value(std::time::SystemTime::now())
                .await
                .map_err(|err| {
                    tracing::warn!(route = %self.route, error = %err, "A credential is unavailable.");
                    EdgeError::CredentialUnavailable {
                        route: self.route.to_string(),
                        credential: credential.name.to_string(),
                    }
                })?;
            request
                .headers_mut()
                .insert(credential.header.clone(), value);
        }
        self.request(request).await
    }

    /// The upstream's endpoint.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// Send a request Warden built itself (any URL on this client's pools)
    /// and wait for its response head.
    pub async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Body>, EdgeError> {
        match tokio::time::timeout(self.timeout, self.client().request(request)).await {
            Ok(Ok(response)) if response.status() == http::StatusCode::UNAUTHORIZED => {
                tracing::warn!(route = %self.route, "The upstream refused Warden's credential (HTTP 401).");
                Err(EdgeError::UpstreamAuthFailed {
                    route: self.route.to_string(),
                })
            }
            Ok(Ok(response)) => {
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
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
}

/// Copy the agent's headers that may pass onto the upstream request:
/// the allow-list, `Mcp-*` but the session id, and `extra`.
fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, extra: &[HeaderName]) {
    for (name, value) in from {
        let text = name.as_str();
        let passes = FORWARDED_REQUEST_HEADERS.contains(&text)
            || (text.starts_with("mcp-") && text != mcp::HEADER_SESSION_ID)
            || extra.contains(name);
        if passes {
            to.append(name.clone(), value.clone());
        }
    }
}

fn tls_config(config: &HttpEndpoint) -> Result<rustls::ClientConfig, UpstreamSetupError> {
    use warden_identity::{SetupError, tls};
    let setup = |err: SetupError| match err {
        SetupError::CaFile { path, detail } => UpstreamSetupError::CaFile { path, detail },
        SetupError::NoRoots | SetupError::Jwks { .. } => UpstreamSetupError::NoRoots,
    };
    let roots = tls::trust_roots(config.ca_file.as_deref()).map_err(setup)?;
    if roots.is_empty() && config.url.scheme_str() == Some("https") {
        return Err(UpstreamSetupError::NoRoots);
    }
    tls::client_config_presenting(
        roots,
        config
            .client_cert
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path())),
    )
    .map_err(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_allow_listed_headers_reach_the_upstream() {
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
            ("warden-on-behalf-of", "ada@example.com"),
        ] {
            agent.append(name, HeaderValue::from_static(value));
        }
        for (name, value) in [
            ("x-api-key", "agent-key"),
            ("proxy-authorization", "Basic eA=="),
            ("warden-rationale", "why"),
            ("x-tenant", "acme"),
            ("mcp-method", "tools/call"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ] {
            agent.append(name, HeaderValue::from_static(value));
        }
        let mut out = HeaderMap::new();
        copy_request_headers(&agent, &mut out, &[HeaderName::from_static("x-tenant")]);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            vec![
                "accept",
                "last-event-id",
                "mcp-method",
                "mcp-protocol-version",
                "origin",
                "traceparent",
                "x-tenant"
            ]
        );
    }
}
