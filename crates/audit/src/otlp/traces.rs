//! One SERVER span per MCP request, and the operation histograms.
//!
//! The proxy asks [`Telemetry::request_span`] when it has read a request
//! and ends the [`Span`] with its [`Outcome`] when it has answered. The
//! span follows the MCP semantic conventions (`semantic-conventions-genai`
//! v0.1.0, `docs/gen-ai/mcp.md`):
//! - name `{mcp.method.name} {gen_ai.tool.name}` (the method alone when
//!   there is no tool), kind SERVER;
//! - `mcp.method.name`, `gen_ai.tool.name`, `gen_ai.operation.name =
//!   execute_tool` (for `tools/call`), `mcp.session.id`,
//!   `mcp.protocol.version`, `jsonrpc.request.id`, `network.transport`
//!   (`tcp` over HTTP, `pipe` over stdio);
//! - `error.type`: the JSON-RPC error code as text, or `tool_error` for an
//!   `isError` result; `rpc.response.status_code` too for a code; status
//!   ERROR when `error.type` is set;
//! - Warden's own `warden.decision` and `warden.reason`.
//!
//! The parent is the agent's W3C `traceparent` (with its `tracestate`),
//! read from `params._meta` or the headers by the caller
//! ([`continue_from`]); a parent that is not sampled (flags `00`) is
//! continued but not exported. [`Span::traceparent`] is what to send to the
//! upstream: the same trace, this span as parent.
//!
//! Ending a span also counts `mcp.server.operation.duration` and, given
//! [`Outcome::upstream_duration`], `mcp.client.operation.duration` (see
//! [`super::metrics`]).
//!
//! **Off is free.** [`Telemetry::disabled`] holds nothing; its spans are
//! `None` inside: building and ending one allocates nothing and takes no
//! lock. On, a span costs one allocation for its state, its attributes
//! when it ends, and a `try_send` to the exporter thread; a full queue
//! drops the span (counted), never the request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span as ProtoSpan, Status, span::SpanKind, status::StatusCode,
};
use prost::Message;

use super::metrics::{Histograms, Labels};
use super::{Delivery, Exporter, OtlpError, OtlpOptions, kv, unix_nanos};

/// The MCP transport a request came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Streamable HTTP (and the legacy HTTP+SSE): `network.transport=tcp`.
    Tcp,
    /// stdio: `network.transport=pipe`.
    Pipe,
}

/// What is known of a request when it is read.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan<'a> {
    /// `mcp.method.name`: the JSON-RPC method.
    pub method: &'a str,
    /// `gen_ai.tool.name`, for `tools/call`.
    pub tool: Option<&'a str>,
    /// `mcp.session.id`: Warden's MCP session id.
    pub session: Option<&'a str>,
    /// `warden.principal.agent`: the authenticated caller.
    pub agent: Option<&'a str>,
    /// `warden.principal.user`: the user it acts for.
    pub user: Option<&'a str>,
    /// `mcp.protocol.version`.
    pub protocol_version: Option<&'a str>,
    /// `jsonrpc.request.id` as text (`None` for a notification or a null id).
    pub request_id: Option<&'a str>,
    /// How the request came.
    pub transport: Transport,
    /// The agent's W3C `traceparent`, if it sent one.
    pub traceparent: Option<&'a str>,
    /// The agent's W3C `tracestate`, if it sent one.
    pub tracestate: Option<&'a str>,
}

/// How a request ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome<'a> {
    /// `error.type`: the JSON-RPC error code as text (`-32602`), or
    /// `tool_error` for an `isError` result; `None` when it succeeded.
    pub error_type: Option<&'a str>,
    /// The error's message (the span status description).
    pub error_message: Option<&'a str>,
    /// `warden.decision` (`allow`, `deny`, ...).
    pub decision: Option<&'a str>,
    /// `warden.reason`, the decision's stable reason code.
    pub reason: Option<&'a str>,
    /// How long the upstream took, when the request was forwarded
    /// (`mcp.client.operation.duration`).
    pub upstream_duration: Option<Duration>,
}

/// A W3C trace context: a trace, a span in it, and the vendor state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanContext {
    /// The trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// The span id (never all zeros).
    pub span_id: [u8; 8],
    /// The `sampled` flag.
    pub sampled: bool,
    /// The `tracestate`, passed on unchanged.
    pub tracestate: Option<String>,
}

/// Counters of the span and metric exporter, for `/metrics`.
#[derive(Debug, Default)]
pub struct TelemetryStats {
    /// Spans the endpoint took.
    pub spans_exported: AtomicU64,
    /// Spans dropped: queue full, or an export that failed.
    pub spans_dropped: AtomicU64,
    /// Metric exports that failed (the next one carries the same counts).
    pub metric_failures: AtomicU64,
    /// Metric exports the endpoint took.
    pub metric_exports: AtomicU64,
}

/// Traces and metrics for the proxy: cheap to clone, free when disabled.
#[derive(Clone, Default)]
pub struct Telemetry {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    sender: SyncSender<Command>,
    histograms: Arc<Histograms>,
    stats: Arc<TelemetryStats>,
    ids: IdSource,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

enum Command {
    Span(Box<ProtoSpan>),
    Flush(mpsc::Sender<()>),
    Close(mpsc::Sender<()>),
}

/// A request being served: end it with [`Span::end`]. Dropped without
/// `end`, it ends with an empty [`Outcome`].
#[must_use = "a span is exported when it ends"]
pub struct Span {
    live: Option<Box<Live>>,
}

struct Live {
    inner: Arc<Inner>,
    context: SpanContext,
    parent: Option<[u8; 8]>,
    start: SystemTime,
    started: Instant,
    method: String,
    tool: Option<String>,
    session: Option<String>,
    agent: Option<String>,
    user: Option<String>,
    protocol_version: Option<String>,
    request_id: Option<String>,
    transport: Transport,
}

// === impl Transport ===

impl Transport {
    /// The `network.transport` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Pipe => "pipe",
        }
    }
}

// === impl SpanContext ===

impl SpanContext {
    /// The `traceparent` header value (version `00`).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{}",
            crate::record::hex(&self.trace_id),
            crate::record::hex(&self.span_id),
            if self.sampled { "01" } else { "00" }
        )
    }

    /// The trace id as 32 lower-case hex digits (the audit record's
    /// `trace_id`).
    pub fn trace_id_hex(&self) -> String {
        crate::record::hex(&self.trace_id)
    }
}

/// The agent's trace context, if `traceparent` is a valid W3C value
/// (`tracestate` is kept only with a valid `traceparent`, and only when at
/// most 512 characters, as the W3C allows to drop longer ones).
pub fn continue_from(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<SpanContext> {
    let value = traceparent?.trim();
    let mut parts = value.split('-');
    let version = parse_hex::<1>(parts.next()?)?;
    let trace_id = parse_hex::<16>(parts.next()?)?;
    let span_id = parse_hex::<8>(parts.next()?)?;
    let flags = parse_hex::<1>(parts.next()?)?;
    let rest = parts.next();
    // Version ff is invalid; 00 has exactly four fields; a later version
    // may add fields after a dash.
    if version[0] == 0xff || (version[0] == 0 && rest.is_some()) {
        return None;
    }
    if trace_id == [0; 16] || span_id == [0; 8] {
        return None;
    }
    let tracestate = tracestate
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .map(str::to_owned);
    Some(SpanContext {
        trace_id,
        span_id,
        sampled: flags[0] & 1 == 1,
        tracestate,
    })
}

/// `N` bytes from exactly `2N` lower-case hex digits.
pub(crate) fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

// === impl Telemetry ===

impl Telemetry {
    /// No export: spans and histograms cost nothing.
    pub fn disabled() -> Telemetry {
        Telemetry { inner: None }
    }

    /// Export spans and histograms to `options.endpoint`, from a thread of
    /// its own.
    pub fn new(options: OtlpOptions) -> Result<Telemetry, OtlpError> {
        let exporter = Exporter::new(&options)?;
        let runtime = super::runtime()?;
        let (sender, receiver) = mpsc::sync_channel(options.queue.max(1));
        let histograms = Arc::new(Histograms::new());
        let stats = Arc::new(TelemetryStats::default());
        let mut thread = Exporting {
            exporter,
            runtime,
            resource: super::resource(&options.service_instance),
            histograms: histograms.clone(),
            stats: stats.clone(),
            spans: Vec::new(),
            options,
        };
        let thread = std::thread::Builder::new()
            .name("warden-otlp".into())
            .spawn(move || thread.run(&receiver))
            .map_err(OtlpError::Thread)?;
        Ok(Telemetry {
            inner: Some(Arc::new(Inner {
                sender,
                histograms,
                stats,
                ids: IdSource::new(),
                thread: std::sync::Mutex::new(Some(thread)),
            })),
        })
    }

    /// Whether anything is exported.
    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// The exporter's counters (`None` when disabled).
    pub fn stats(&self) -> Option<&Arc<TelemetryStats>> {
        self.inner.as_ref().map(|inner| &inner.stats)
    }

    /// Start the span of one MCP request, now.
    pub fn request_span(&self, request: RequestSpan<'_>) -> Span {
        let Some(inner) = &self.inner else {
            return Span { live: None };
        };
        let parent = continue_from(request.traceparent, request.tracestate);
        let (trace_id, parent_id, sampled, tracestate) = match parent {
            Some(parent) => (
                parent.trace_id,
                Some(parent.span_id),
                parent.sampled,
                parent.tracestate,
            ),
            None => (inner.ids.trace_id(), None, true, None),
        };
        Span {
            live: Some(Box::new(Live {
                inner: inner.clone(),
                context: SpanContext {
                    trace_id,
                    span_id: inner.ids.span_id(),
                    sampled,
                    tracestate,
                },
                parent: parent_id,
                start: SystemTime::now(),
                started: Instant::now(),
                method: request.method.to_owned(),
                tool: request.tool.map(str::to_owned),
                session: request.session.map(str::to_owned),
                agent: request.agent.map(str::to_owned),
                user: request.user.map(str::to_owned),
                protocol_version: request.protocol_version.map(str::to_owned),
                request_id: request.request_id.map(str::to_owned),
                transport: request.transport,
            })),
        }
    }

    /// Export the spans waiting and the histograms now, and wait for it
    /// (at most about twice the timeout). Blocks: call it outside async
    /// code (or in `spawn_blocking`).
    pub fn flush(&self) {
        if let Some(inner) = &self.inner {
            let (done, wait) = mpsc::channel();
            if inner.sender.send(Command::Flush(done)).is_ok() {
                let _ = wait.recv();
            }
        }
    }

    /// Flush, and stop the exporter thread. Later spans are dropped.
    pub fn shutdown(&self) {
        if let Some(inner) = &self.inner {
            let (done, wait) = mpsc::channel();
            if inner.sender.send(Command::Close(done)).is_ok() {
                let _ = wait.recv();
            }
            let thread = inner.thread.lock().map(|mut t| t.take());
            if let Ok(Some(thread)) = thread {
                let _ = thread.join();
            }
        }
    }
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

// === impl Span ===

impl Span {
    /// This span's context (`None` when telemetry is off).
    pub fn context(&self) -> Option<&SpanContext> {
        self.live.as_ref().map(|live| &live.context)
    }

    /// The `traceparent` to send to the upstream: this trace, this span as
    /// the parent (`None` when telemetry is off).
    pub fn traceparent(&self) -> Option<String> {
        self.context().map(SpanContext::traceparent)
    }

    /// The `tracestate` to send with it, as the agent sent it.
    pub fn tracestate(&self) -> Option<&str> {
        self.context().and_then(|c| c.tracestate.as_deref())
    }

    /// The trace id, 32 hex digits, for the audit record.
    pub fn trace_id(&self) -> Option<String> {
        self.context().map(SpanContext::trace_id_hex)
    }

    /// The request was answered: count it, export the span.
    pub fn end(mut self, outcome: Outcome<'_>) {
        if let Some(live) = self.live.take() {
            live.end(&outcome);
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(live) = self.live.take() {
            live.end(&Outcome::default());
        }
    }
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("context", &self.context())
            .finish()
    }
}

// === impl Live ===

impl Live {
    fn end(self, outcome: &Outcome<'_>) {
        let duration = self.started.elapsed();
        let labels = Labels {
            method: &self.method,
            tool: self.tool.as_deref(),
            error_type: outcome.error_type,
            protocol_version: self.protocol_version.as_deref(),
            transport: self.transport.as_str(),
        };
        self.inner.histograms.server.record(&labels, duration);
        if let Some(upstream) = outcome.upstream_duration {
            self.inner.histograms.client.record(&labels, upstream);
        }
        if !self.context.sampled {
            return;
        }
        let span = Box::new(self.to_proto(outcome, duration));
        match self.inner.sender.try_send(Command::Span(span)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner
                    .stats
                    .spans_dropped
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn to_proto(&self, outcome: &Outcome<'_>, duration: Duration) -> ProtoSpan {
        let name = match &self.tool {
            Some(tool) => format!("{} {tool}", self.method),
            None => self.method.clone(),
        };
        let mut attributes = vec![
            kv("mcp.method.name", &*self.method),
            kv("network.transport", self.transport.as_str()),
        ];
        if let Some(tool) = &self.tool {
            attributes.push(kv("gen_ai.tool.name", &**tool));
        }
        if self.method == "tools/call" {
            attributes.push(kv("gen_ai.operation.name", "execute_tool"));
        }
        let optional = [
            ("mcp.session.id", self.session.as_deref()),
            ("warden.principal.agent", self.agent.as_deref()),
            ("warden.principal.user", self.user.as_deref()),
            ("mcp.protocol.version", self.protocol_version.as_deref()),
            ("jsonrpc.request.id", self.request_id.as_deref()),
            ("error.type", outcome.error_type),
            ("warden.decision", outcome.decision),
            ("warden.reason", outcome.reason),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                attributes.push(kv(key, value));
            }
        }
        if let Some(code) = outcome.error_type.filter(|e| e.parse::<i64>().is_ok()) {
            attributes.push(kv("rpc.response.status_code", code));
        }
        let status = outcome.error_type.map(|_| Status {
            message: outcome.error_message.unwrap_or_default().to_owned(),
            code: StatusCode::Error as i32,
        });
        let start = unix_nanos(self.start);
        ProtoSpan {
            trace_id: self.context.trace_id.to_vec(),
            span_id: self.context.span_id.to_vec(),
            trace_state: self.context.tracestate.clone().unwrap_or_default(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            flags: 0x100 | u32::from(self.parent.is_some()) << 9 | 1,
            name,
            kind: SpanKind::Server as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: start
                + u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX - start),
            attributes,
            status,
            ..ProtoSpan::default()
        }
    }
}

// === impl Exporting ===

/// The exporter thread: spans in batches, histograms periodically.
struct Exporting {
    exporter: Exporter,
    runtime: tokio::runtime::Runtime,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    histograms: Arc<Histograms>,
    stats: Arc<TelemetryStats>,
    spans: Vec<ProtoSpan>,
    options: OtlpOptions,
}

impl Exporting {
    fn run(&mut self, receiver: &mpsc::Receiver<Command>) {
        let mut next_spans = Instant::now() + self.options.traces_interval;
        let mut next_metrics = Instant::now() + self.options.metrics_interval;
        loop {
            let wake = if self.spans.is_empty() {
                next_metrics
            } else {
                next_spans.min(next_metrics)
            };
            match receiver.recv_timeout(wake.saturating_duration_since(Instant::now())) {
                Ok(Command::Span(span)) => {
                    if self.spans.is_empty() {
                        next_spans = Instant::now() + self.options.traces_interval;
                    }
                    self.spans.push(*span);
                    if self.spans.len() >= self.options.max_batch.max(1) {
                        self.export_spans();
                    }
                }
                Ok(Command::Flush(done)) => {
                    self.drain(receiver);
                    self.export_spans();
                    self.export_metrics();
                    let _ = done.send(());
                }
                Ok(Command::Close(done)) => {
                    self.drain(receiver);
                    self.export_spans();
                    self.export_metrics();
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.export_spans();
                    self.export_metrics();
                    return;
                }
            }
            let now = Instant::now();
            if !self.spans.is_empty() && now >= next_spans {
                self.export_spans();
                next_spans = now + self.options.traces_interval;
            }
            if now >= next_metrics {
                self.export_metrics();
                next_metrics = now + self.options.metrics_interval;
            }
        }
    }

    /// Spans already queued join the batch.
    fn drain(&mut self, receiver: &mpsc::Receiver<Command>) {
        while let Ok(command) = receiver.try_recv() {
            match command {
                Command::Span(span) => self.spans.push(*span),
                Command::Flush(done) | Command::Close(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    fn export_spans(&mut self) {
        if self.spans.is_empty() {
            return;
        }
        let spans = std::mem::take(&mut self.spans);
        let count = spans.len() as u64;
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(super::scope("warden.mcp")),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let delivery = self
            .runtime
            .block_on(self.exporter.post("/v1/traces", request.encode_to_vec()));
        match delivery {
            Delivery::Taken(_) => {
                self.stats
                    .spans_exported
                    .fetch_add(count, Ordering::Relaxed);
            }
            Delivery::Retry(reason) => {
                tracing::warn!(spans = count, error = %reason, "OTLP span export failed; spans dropped.");
                self.stats.spans_dropped.fetch_add(count, Ordering::Relaxed);
            }
            Delivery::Rejected(status) => {
                tracing::warn!(
                    spans = count,
                    status,
                    "OTLP endpoint refused spans; dropped."
                );
                self.stats.spans_dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    fn export_metrics(&mut self) {
        let Some(request) = self.histograms.request(&self.resource) else {
            return;
        };
        let delivery = self
            .runtime
            .block_on(self.exporter.post("/v1/metrics", request.encode_to_vec()));
        match delivery {
            Delivery::Taken(_) => {
                self.stats.metric_exports.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Retry(reason) => {
                tracing::warn!(error = %reason, "OTLP metric export failed; the next carries the same counts.");
                self.stats.metric_failures.fetch_add(1, Ordering::Relaxed);
            }
            Delivery::Rejected(status) => {
                tracing::warn!(status, "OTLP endpoint refused metrics.");
                self.stats.metric_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

// === impl IdSource ===

/// Trace and span ids: a random seed, then SplitMix64 over a counter (no
/// system call per span; ids never repeat within a process).
struct IdSource {
    seed: u64,
    counter: AtomicU64,
}

impl IdSource {
    fn new() -> IdSource {
        let mut seed = [0u8; 8];
        if getrandom::fill(&mut seed).is_err() {
            // Still unique per process run: the clock is the seed.
            seed = unix_nanos(SystemTime::now()).to_le_bytes();
        }
        IdSource {
            seed: u64::from_le_bytes(seed),
            counter: AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut z = self
            .seed
            .wrapping_add(n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn span_id(&self) -> [u8; 8] {
        loop {
            let id = self.next();
            if id != 0 {
                return id.to_be_bytes();
            }
        }
    }

    fn trace_id(&self) -> [u8; 16] {
        let mut id = [0; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.span_id());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued() {
        let context = continue_from(Some(PARENT), Some("rojo=00f067aa0ba902b7")).expect("valid");
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(context.sampled);
        assert_eq!(context.traceparent(), PARENT);
        assert_eq!(context.tracestate.as_deref(), Some("rojo=00f067aa0ba902b7"));
    }

    #[test]
    fn invalid_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(continue_from(Some(bad), Some("a=b")), None, "{bad:?}");
        }
        assert_eq!(continue_from(None, Some("a=b")), None);
        // A later version may carry more fields.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let context = continue_from(Some(later), None).expect("a later version");
        assert!(!context.sampled);
    }

    #[test]
    fn disabled_telemetry_gives_inert_spans() {
        let telemetry = Telemetry::disabled();
        let span = telemetry.request_span(RequestSpan {
            method: "tools/call",
            tool: Some("search"),
            session: None,
            agent: None,
            user: None,
            protocol_version: None,
            request_id: Some("1"),
            transport: Transport::Tcp,
            traceparent: Some(PARENT),
            tracestate: None,
        });
        assert_eq!(span.traceparent(), None);
        assert_eq!(span.trace_id(), None);
        span.end(Outcome::default());
        telemetry.flush();
        assert!(telemetry.stats().is_none());
        assert_eq!(std::mem::size_of::<Span>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn ids_are_distinct_and_never_zero() {
        let ids = IdSource::new();
        let a = ids.span_id();
        let b = ids.span_id();
        assert_ne!(a, b);
        assert_ne!(ids.trace_id(), [0; 16]);
    }
}
