//! OpenTelemetry export over OTLP/HTTP with protobuf bodies.
//!
//! Three signals, one small HTTP client:
//! - [`logs`]: every sealed audit record as one OTLP log record
//!   ([`OtlpLogs`], a [`crate::Follower`]). Delivery is ours, not an SDK's:
//!   batches go out in chain order, a batch the endpoint did not take (5xx,
//!   429, refused connection, timeout) waits in an on-disk spool and is
//!   retried with backoff, and is removed only after a 2xx. That is why
//!   this module builds the `opentelemetry-proto` messages itself instead
//!   of using `opentelemetry-otlp`, whose batch processors drop what they
//!   cannot send and retry out of our sight.
//! - [`traces`]: one SERVER span per MCP request ([`Telemetry`]), following
//!   the MCP semantic conventions (`semantic-conventions-genai` v0.1.0,
//!   `docs/gen-ai/mcp.md`, status: development), continuing the agent's
//!   W3C trace context and handing a child context to the upstream.
//! - [`metrics`]: the histograms `mcp.server.operation.duration` and
//!   `mcp.client.operation.duration` (seconds), exported periodically.
//!
//! Traces and metrics are best effort: a batch the endpoint refuses is
//! dropped and counted. Audit log records are not.
//!
//! No gRPC, no tonic: OTLP/HTTP (`POST {endpoint}/v1/logs`, `/v1/traces`,
//! `/v1/metrics`, `Content-Type: application/x-protobuf`) on hyper and the
//! workspace's rustls (ring).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub mod logs;
pub mod metrics;
pub mod traces;

pub use logs::{LineSpool, MemorySpool, OtlpLogStats, OtlpLogs, OtlpLogsHandle, OtlpLogsOptions};
pub use traces::{
    Outcome, RequestSpan, Span, SpanContext, Telemetry, TelemetryStats, Transport, continue_from,
};

/// Where and how to export.
#[derive(Debug, Clone)]
pub struct OtlpOptions {
    /// The OTLP/HTTP base URL (`http://collector:4318`); the signal's path
    /// (`/v1/logs`, `/v1/traces`, `/v1/metrics`) is appended.
    pub endpoint: String,
    /// Extra request headers (an API key for a hosted backend).
    pub headers: Vec<(String, String)>,
    /// One export request, connect to last byte, at most.
    pub timeout: Duration,
    /// `service.instance.id` of the resource (the Warden instance id).
    pub service_instance: String,
    /// How often the histograms are exported.
    pub metrics_interval: Duration,
    /// Spans are sent at least this often...
    pub traces_interval: Duration,
    /// ... or as soon as this many wait.
    pub max_batch: usize,
    /// Spans waiting for export, at most (more are dropped and counted).
    pub queue: usize,
}

impl OtlpOptions {
    /// Defaults for `endpoint`: 10 s timeout, metrics every 60 s, spans
    /// every second or by 512.
    pub fn new(endpoint: impl Into<String>, service_instance: impl Into<String>) -> OtlpOptions {
        OtlpOptions {
            endpoint: endpoint.into(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            service_instance: service_instance.into(),
            metrics_interval: Duration::from_secs(60),
            traces_interval: Duration::from_secs(1),
            max_batch: 512,
            queue: 8192,
        }
    }
}

/// Why OTLP export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("OTLP endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be sent.
    #[error("OTLP header {name:?} is not a valid HTTP header")]
    Header {
        /// The header's name.
        name: String,
    },
    /// The platform's root certificates could not be loaded.
    #[error("OTLP TLS roots: {0}")]
    Tls(#[source] std::io::Error),
    /// The exporter's thread or runtime could not be started.
    #[error("OTLP exporter thread")]
    Thread(#[source] std::io::Error),
}

// === impl Exporter ===

/// What became of one export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// 2xx: the endpoint took the batch (its response body, for partial
    /// success).
    Taken(Bytes),
    /// 5xx, 429, no connection or no answer in time: try again later.
    Retry(String),
    /// Another 4xx: the endpoint will never take this batch.
    Rejected(u16),
}

/// The OTLP/HTTP client: one per exporter thread.
pub(crate) struct Exporter {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    headers: HeaderMap,
    timeout: Duration,
}

impl Exporter {
    pub(crate) fn new(options: &OtlpOptions) -> Result<Exporter, OtlpError> {
        let endpoint = options.endpoint.trim_end_matches('/');
        let uri: Uri =
            endpoint
                .parse()
                .map_err(|err: http::uri::InvalidUri| OtlpError::Endpoint {
                    endpoint: options.endpoint.clone(),
                    reason: err.to_string(),
                })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(OtlpError::Endpoint {
                endpoint: options.endpoint.clone(),
                reason: "expected http://host[:port][/path] or https://...".into(),
            });
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &options.headers {
            let header = || OtlpError::Header { name: name.clone() };
            let name = HeaderName::try_from(name.as_str()).map_err(|_| header())?;
            let value = HeaderValue::try_from(value.as_str()).map_err(|_| header())?;
            headers.append(name, value);
        }
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        http.set_connect_timeout(Some(options.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map_err(OtlpError::Tls)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Exporter {
            client,
            base: endpoint.to_owned(),
            headers,
            timeout: options.timeout,
        })
    }

    /// POST `body` to `{endpoint}{path}`, within the timeout.
    pub(crate) async fn post(&self, path: &str, body: Vec<u8>) -> Delivery {
        let url = format!("{}{path}", self.base);
        let mut request = match Request::builder()
            .method(Method::POST)
            .uri(&url)
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)))
        {
            Ok(request) => request,
            Err(err) => return Delivery::Retry(format!("request: {err}")),
        };
        request.headers_mut().extend(self.headers.clone());
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| format!("{url}: {}", crate::log::error_chain(&err)))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|err| format!("{url}: reading the response: {err}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Delivery::Retry(format!("{url}: no answer within {:?}", self.timeout)),
            Ok(Err(reason)) => Delivery::Retry(reason),
            Ok(Ok((status, body))) if status.is_success() => Delivery::Taken(body),
            Ok(Ok((status, _))) if status.as_u16() == 429 || status.is_server_error() => {
                Delivery::Retry(format!("{url}: HTTP {status}"))
            }
            Ok(Ok((status, _))) => Delivery::Rejected(status.as_u16()),
        }
    }
}

/// A current-thread runtime for an exporter thread.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, OtlpError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(OtlpError::Thread)
}

// === attributes and resource ===

pub(crate) fn string_value(value: impl Into<String>) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(value.into())),
    })
}

/// A string attribute.
pub(crate) fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: string_value(value),
    }
}

/// An integer attribute.
pub(crate) fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        key_strindex: 0,
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
    }
}

/// The resource every signal is exported under.
pub(crate) fn resource(service_instance: &str) -> Resource {
    Resource {
        attributes: vec![
            kv("service.name", "warden"),
            kv("service.version", env!("CARGO_PKG_VERSION")),
            kv("service.instance.id", service_instance),
        ],
        ..Resource::default()
    }
}

/// The instrumentation scope of `name`.
pub(crate) fn scope(name: &str) -> InstrumentationScope {
    InstrumentationScope {
        name: name.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

/// Nanoseconds since the Unix epoch.
pub(crate) fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_headers_are_checked() {
        let mut options = OtlpOptions::new("ftp://collector", "w");
        assert!(matches!(
            Exporter::new(&options),
            Err(OtlpError::Endpoint { .. })
        ));
        options.endpoint = "http://127.0.0.1:4318/".into();
        options.headers = vec![("bad header".into(), "x".into())];
        assert!(matches!(
            Exporter::new(&options),
            Err(OtlpError::Header { .. })
        ));
        options.headers = vec![("x-api-key".into(), "secret".into())];
        let exporter = Exporter::new(&options).expect("exporter");
        assert_eq!(exporter.base, "http://127.0.0.1:4318");
    }
}
