//! Audit records as OTLP log records, delivered in order, nothing lost.
//!
//! [`OtlpLogs`] is a [`Follower`] of the audit writer: it is told of each
//! batch once the primary store holds it and queues the lines for its own
//! thread (it never blocks the writer). The thread turns each sealed
//! record into one `LogRecord`:
//! - body: the record's JSON line, exactly as sealed (its hash is
//!   `warden.audit.hash`, so the line can be checked against the chain);
//! - time: the record's `time`; observed time: when it was exported;
//! - severity `INFO`, `WARN` for refusals, tripped limits, opened breakers
//!   and failed sinks;
//! - `trace_id` from the record's `trace_id`, so logs join their traces;
//! - attributes `warden.audit.kind`, `.seq`, `.chain`, `.hash`,
//!   `log.record.uid` (the event id), and when known `gen_ai.tool.name`,
//!   `warden.decision`, `warden.reason`, `warden.route`, `mcp.session.id`,
//!   `warden.agent.session`, `jsonrpc.request.id`;
//! - resource `service.name=warden`, `service.instance.id=<instance>`.
//!
//! **Delivery.** Batches of at most [`OtlpLogsOptions::max_batch`] lines
//! go out one at a time, in chain order. A batch the endpoint does not take
//! (5xx, 429, no connection, no answer within the timeout) goes to the
//! [`LineSpool`] with everything behind it, and the spool is retried with
//! exponential backoff, oldest first; lines leave the spool only after a
//! 2xx. While the spool holds anything, new lines join it at the back, so
//! order holds across an outage and across a restart (a spool left by the
//! last run is delivered first). Another 4xx means the endpoint will never
//! take the batch: it is logged, counted as dropped and skipped, so one
//! malformed batch cannot stall the trail. A 2xx whose body reports
//! rejected records (OTLP partial success) counts those as dropped too.
//!
//! Over the wire this is at-least-once: an endpoint that took a batch but
//! whose answer was lost (a timeout) gets it again. `warden.audit.chain` +
//! `warden.audit.seq` identify a record, for a consumer that must dedupe.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use prost::Message;

use super::{Delivery, Exporter, OtlpError, OtlpOptions, kv, kv_int, string_value, unix_nanos};
use crate::chain::Sealed;
use crate::log::{Follower, StoreError, error_chain};
use crate::record::{Kind, Record};

/// The exporter's on-disk FIFO of undelivered lines (the audit spool:
/// bounded, kept across restarts).
///
/// [`crate::spool::Spool`] is the one on disk (the PostgreSQL store's
/// too); [`MemorySpool`] keeps lines in memory only (order and retries,
/// nothing survives a restart).
pub trait LineSpool: Send + 'static {
    /// Append `lines`, in order, after everything held, durably; all or
    /// nothing ([`StoreError::SpoolFull`] when they do not fit).
    fn push(&mut self, lines: &[String]) -> Result<(), StoreError>;
    /// The oldest lines, at most `max_lines` and (past the first) about
    /// `max_bytes`, left in place.
    fn peek(&mut self, max_lines: usize, max_bytes: u64) -> Result<Vec<String>, StoreError>;
    /// Remove the first `count` lines the last `peek` handed out (they were
    /// delivered).
    fn ack(&mut self, count: usize) -> Result<(), StoreError>;
    /// Whether it holds nothing.
    fn is_empty(&self) -> bool;
    /// Bytes of lines it holds.
    fn bytes(&self) -> u64;
}

/// The audit spool: a push is synced before it returns (rolled back when it
/// fails), since the exporter forgets what it pushed.
impl LineSpool for crate::spool::Spool {
    fn push(&mut self, lines: &[String]) -> Result<(), StoreError> {
        let pushed = crate::spool::Spool::push(self, lines).and_then(|()| self.sync());
        if pushed.is_err() {
            let _ = self.rollback();
        }
        pushed
    }

    fn peek(&mut self, max_lines: usize, max_bytes: u64) -> Result<Vec<String>, StoreError> {
        crate::spool::Spool::peek(self, max_lines, max_bytes)
    }

    fn ack(&mut self, count: usize) -> Result<(), StoreError> {
        crate::spool::Spool::ack(self, count)
    }

    fn is_empty(&self) -> bool {
        crate::spool::Spool::is_empty(self)
    }

    fn bytes(&self) -> u64 {
        crate::spool::Spool::bytes(self)
    }
}

/// A bounded spool in memory: order and retries without persistence.
#[derive(Debug)]
pub struct MemorySpool {
    lines: std::collections::VecDeque<String>,
    bytes: u64,
    limit: u64,
}

/// How the log exporter batches and retries.
#[derive(Debug, Clone)]
pub struct OtlpLogsOptions {
    /// Endpoint, headers, timeout, instance.
    pub otlp: OtlpOptions,
    /// Lines in one export request, at most...
    pub max_batch: usize,
    /// ... and (past the first line) about this many bytes of lines.
    pub max_batch_bytes: u64,
    /// Lines waiting for the exporter thread, at most (beyond: dropped,
    /// counted).
    pub queue: usize,
    /// First wait after a failed export...
    pub retry_initial: Duration,
    /// ... doubled after each failure, up to this.
    pub retry_max: Duration,
}

impl OtlpLogsOptions {
    /// Defaults over `otlp`: batches of 512, retries from 1 s to 60 s.
    pub fn new(otlp: OtlpOptions) -> OtlpLogsOptions {
        OtlpLogsOptions {
            otlp,
            max_batch: 512,
            max_batch_bytes: 4 << 20,
            queue: 65_536,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// Counters of the log exporter, for `/metrics`.
#[derive(Debug, Default)]
pub struct OtlpLogStats {
    /// Records the endpoint took.
    pub exported: AtomicU64,
    /// Records written to the spool (each once, however often retried).
    pub spooled: AtomicU64,
    /// Records given up: refused as malformed (4xx), rejected in a partial
    /// success, or with no room in the queue or the spool.
    pub dropped: AtomicU64,
    /// Bytes of lines in the spool now.
    pub spool_bytes: AtomicU64,
    /// Export requests that failed (and will be retried).
    pub failures: AtomicU64,
    /// Whether the endpoint is failing now.
    pub failing: AtomicBool,
}

enum Command {
    Lines(Vec<String>),
    Close(mpsc::Sender<()>),
}

/// The audit follower that exports records as OTLP logs.
pub struct OtlpLogs {
    sender: SyncSender<Command>,
    stats: Arc<OtlpLogStats>,
    handle: OtlpLogsHandle,
}

/// Stops the exporter and reads its counters; kept by whoever owns the
/// audit log after [`OtlpLogs`] moved into it.
#[derive(Clone)]
pub struct OtlpLogsHandle {
    sender: SyncSender<Command>,
    stats: Arc<OtlpLogStats>,
    thread: Arc<std::sync::Mutex<Option<JoinHandle<()>>>>,
}

// === impl OtlpLogs ===

impl OtlpLogs {
    /// Start the exporter thread over `spool`; what the spool holds from
    /// the last run is delivered first.
    pub fn start(
        options: OtlpLogsOptions,
        spool: Box<dyn LineSpool>,
    ) -> Result<OtlpLogs, OtlpError> {
        let exporter = Exporter::new(&options.otlp)?;
        let runtime = super::runtime()?;
        let (sender, receiver) = mpsc::sync_channel(options.queue.max(1));
        let stats = Arc::new(OtlpLogStats::default());
        stats.spool_bytes.store(spool.bytes(), Ordering::Relaxed);
        let mut delivery = Delivering {
            exporter,
            runtime,
            spool,
            memory: Vec::new(),
            resource: super::resource(&options.otlp.service_instance),
            retry: options.retry_initial,
            retry_at: None,
            options,
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("warden-otlp-logs".into())
            .spawn(move || delivery.run(&receiver))
            .map_err(OtlpError::Thread)?;
        let handle = OtlpLogsHandle {
            sender: sender.clone(),
            stats: stats.clone(),
            thread: Arc::new(std::sync::Mutex::new(Some(thread))),
        };
        Ok(OtlpLogs {
            sender,
            stats,
            handle,
        })
    }

    /// The exporter's counters.
    pub fn stats(&self) -> &Arc<OtlpLogStats> {
        &self.stats
    }

    /// A handle to stop the exporter once this follower moved into the
    /// audit log.
    pub fn handle(&self) -> OtlpLogsHandle {
        self.handle.clone()
    }
}

impl Follower for OtlpLogs {
    fn committed(&mut self, batch: &[Sealed]) {
        let lines = batch.iter().map(|sealed| sealed.line.clone()).collect();
        match self.sender.try_send(Command::Lines(lines)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats
                    .dropped
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                tracing::warn!(
                    records = batch.len(),
                    "OTLP log export queue full; records dropped from the OTLP copy."
                );
            }
        }
    }
}

impl std::fmt::Debug for OtlpLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpLogs").finish_non_exhaustive()
    }
}

// === impl OtlpLogsHandle ===

impl OtlpLogsHandle {
    /// The exporter's counters.
    pub fn stats(&self) -> &Arc<OtlpLogStats> {
        &self.stats
    }

    /// Try to deliver what is queued (one attempt per batch, within the
    /// timeout), spool the rest, and stop the thread. Call after the audit
    /// log is closed, so its last records are in.
    pub fn close(&self) {
        let (done, wait) = mpsc::channel();
        if self.sender.send(Command::Close(done)).is_ok() {
            let _ = wait.recv();
        }
        let thread = self.thread.lock().map(|mut t| t.take());
        if let Ok(Some(thread)) = thread {
            let _ = thread.join();
        }
    }
}

// === impl Delivering ===

/// The exporter thread's state.
struct Delivering {
    exporter: Exporter,
    runtime: tokio::runtime::Runtime,
    /// Lines that failed once, and everything behind them while it holds any.
    spool: Box<dyn LineSpool>,
    /// Lines not yet sent, not spooled (only while the spool is empty).
    memory: Vec<String>,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    options: OtlpLogsOptions,
    stats: Arc<OtlpLogStats>,
    /// The next wait after a failure.
    retry: Duration,
    /// While failing: when to try again.
    retry_at: Option<Instant>,
}

impl Delivering {
    fn run(&mut self, receiver: &mpsc::Receiver<Command>) {
        loop {
            let command = if self.has_work() {
                let wait = self.retry_at.map_or(Duration::ZERO, |at| {
                    at.saturating_duration_since(Instant::now())
                });
                match receiver.recv_timeout(wait) {
                    Ok(command) => Some(command),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match receiver.recv() {
                    Ok(command) => Some(command),
                    Err(_) => break,
                }
            };
            match command {
                Some(Command::Lines(lines)) => {
                    self.take(lines);
                    // Everything already queued joins the next batch.
                    while let Ok(command) = receiver.try_recv() {
                        match command {
                            Command::Lines(lines) => self.take(lines),
                            Command::Close(done) => return self.close(receiver, done),
                        }
                    }
                }
                Some(Command::Close(done)) => return self.close(receiver, done),
                None => {}
            }
            if self.retry_at.is_none_or(|at| at <= Instant::now()) {
                self.send_next();
            }
        }
        self.spool_memory();
    }

    fn has_work(&self) -> bool {
        !self.memory.is_empty() || !self.spool.is_empty()
    }

    /// New lines: behind the spool when it holds anything, else in memory.
    fn take(&mut self, lines: Vec<String>) {
        if self.spool.is_empty() {
            self.memory.extend(lines);
        } else {
            self.spool_lines(lines);
        }
    }

    /// Send the oldest batch; on failure, spool what is in memory.
    fn send_next(&mut self) {
        let (max_lines, max_bytes) = (self.options.max_batch, self.options.max_batch_bytes);
        let (batch, from_spool) = if self.spool.is_empty() {
            let count = batch_len(self.memory.iter(), max_lines, max_bytes);
            (self.memory[..count].to_vec(), false)
        } else {
            match self.spool.peek(max_lines, max_bytes) {
                Ok(lines) => (lines, true),
                Err(err) => {
                    tracing::error!(error = %error_chain(&err), "OTLP log spool unreadable; retrying.");
                    self.failed();
                    return;
                }
            }
        };
        if batch.is_empty() {
            // A spool that says it holds lines but hands none out: wait,
            // rather than spin.
            if from_spool {
                self.failed();
            }
            return;
        }
        let body = self.request(&batch).encode_to_vec();
        let delivery = self.runtime.block_on(self.exporter.post("/v1/logs", body));
        let count = batch.len();
        match delivery {
            Delivery::Taken(response) => {
                let rejected = ExportLogsServiceResponse::decode(response)
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_log_records).unwrap_or(0));
                if rejected > 0 {
                    tracing::warn!(
                        rejected,
                        "OTLP endpoint rejected some audit log records (partial success)."
                    );
                }
                self.stats
                    .exported
                    .fetch_add(count as u64 - rejected.min(count as u64), Ordering::Relaxed);
                self.stats.dropped.fetch_add(rejected, Ordering::Relaxed);
                self.delivered(count, from_spool);
            }
            Delivery::Rejected(status) => {
                tracing::error!(
                    status,
                    records = count,
                    "OTLP endpoint refused a batch of audit log records as malformed; dropped."
                );
                self.stats
                    .dropped
                    .fetch_add(count as u64, Ordering::Relaxed);
                self.delivered(count, from_spool);
            }
            Delivery::Retry(reason) => {
                if !self.stats.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %reason, "OTLP log export failed; records are spooled and retried.");
                }
                self.spool_memory();
                self.failed();
            }
        }
    }

    /// `count` lines at the head are done with (taken or given up).
    fn delivered(&mut self, count: usize, from_spool: bool) {
        if from_spool {
            if let Err(err) = self.spool.ack(count) {
                tracing::error!(error = %error_chain(&err), "OTLP log spool could not drop delivered lines.");
                self.failed();
                return;
            }
            self.stats
                .spool_bytes
                .store(self.spool.bytes(), Ordering::Relaxed);
        } else {
            self.memory.drain(..count);
        }
        if self.stats.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("OTLP log export recovered.");
        }
        self.retry = self.options.retry_initial;
        self.retry_at = None;
    }

    fn failed(&mut self) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.retry_at = Some(Instant::now() + self.retry);
        self.retry = (self.retry * 2).min(self.options.retry_max);
    }

    /// Move what is in memory to the back of the spool.
    fn spool_memory(&mut self) {
        let lines = std::mem::take(&mut self.memory);
        self.spool_lines(lines);
    }

    fn spool_lines(&mut self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        match self.spool.push(&lines) {
            Ok(()) => {
                self.stats
                    .spooled
                    .fetch_add(lines.len() as u64, Ordering::Relaxed);
            }
            Err(err) => {
                tracing::error!(error = %error_chain(&err), records = lines.len(), "OTLP log spool cannot take records; dropped from the OTLP copy.");
                self.stats
                    .dropped
                    .fetch_add(lines.len() as u64, Ordering::Relaxed);
            }
        }
        self.stats
            .spool_bytes
            .store(self.spool.bytes(), Ordering::Relaxed);
    }

    /// One more attempt for what is queued (unless failing), then spool.
    fn close(&mut self, receiver: &mpsc::Receiver<Command>, done: mpsc::Sender<()>) {
        while let Ok(Command::Lines(lines)) = receiver.try_recv() {
            self.take(lines);
        }
        if self.retry_at.is_none() {
            while self.has_work() && self.retry_at.is_none() {
                self.send_next();
            }
        }
        self.spool_memory();
        let _ = done.send(());
    }

    fn request(&self, lines: &[String]) -> ExportLogsServiceRequest {
        let observed = unix_nanos(SystemTime::now());
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(self.resource.clone()),
                scope_logs: vec![ScopeLogs {
                    scope: Some(super::scope("warden.audit")),
                    log_records: lines
                        .iter()
                        .map(|line| log_record(line, observed))
                        .collect(),
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

/// One sealed line as a log record.
pub(crate) fn log_record(line: &str, observed: u64) -> LogRecord {
    let hash = crate::record::hex(&<sha2::Sha256 as sha2::Digest>::digest(line.as_bytes()));
    let mut record = LogRecord {
        observed_time_unix_nano: observed,
        severity_number: SeverityNumber::Info as i32,
        severity_text: "INFO".into(),
        body: string_value(line),
        event_name: "warden.audit".into(),
        ..LogRecord::default()
    };
    record.attributes.push(kv("warden.audit.hash", hash));
    let Ok(parsed) = serde_json::from_str::<Record>(line) else {
        // Sealed lines are records; should one not parse, its text still
        // goes out, with what can be said about it.
        record.time_unix_nano = observed;
        return record;
    };
    record.time_unix_nano = humantime::parse_rfc3339(&parsed.time).map_or(observed, unix_nanos);
    if matches!(
        parsed.kind,
        Kind::Refusal | Kind::LimitTripped | Kind::BreakerOpened | Kind::SinkFailed
    ) {
        record.severity_number = SeverityNumber::Warn as i32;
        record.severity_text = "WARN".into();
    }
    if let Some(trace) = parsed
        .trace_id
        .as_deref()
        .and_then(super::traces::parse_hex::<16>)
    {
        record.trace_id = trace.to_vec();
    }
    let kind = serde_json::to_value(parsed.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let attributes = &mut record.attributes;
    attributes.push(kv("warden.audit.kind", kind));
    attributes.push(kv_int(
        "warden.audit.seq",
        i64::try_from(parsed.seq).unwrap_or(i64::MAX),
    ));
    attributes.push(kv("warden.audit.chain", &*parsed.chain));
    attributes.push(kv("log.record.uid", parsed.id.to_string()));
    let optional = [
        ("gen_ai.tool.name", parsed.tool.as_deref()),
        ("warden.decision", parsed.decision.as_deref()),
        ("warden.reason", parsed.reason.as_deref()),
        ("warden.route", parsed.route.as_deref()),
        ("mcp.session.id", parsed.mcp_session.as_deref()),
        ("warden.agent.session", parsed.agent_session.as_deref()),
        ("jsonrpc.request.id", parsed.request_id.as_deref()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            attributes.push(kv(key, value));
        }
    }
    record
}

// === impl MemorySpool ===

impl MemorySpool {
    /// A spool of at most `limit` bytes of lines (each with a line feed,
    /// as on disk).
    pub fn new(limit: u64) -> MemorySpool {
        MemorySpool {
            lines: std::collections::VecDeque::new(),
            bytes: 0,
            limit,
        }
    }
}

impl LineSpool for MemorySpool {
    fn push(&mut self, lines: &[String]) -> Result<(), StoreError> {
        let size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if self.bytes + size > self.limit {
            return Err(StoreError::SpoolFull { limit: self.limit });
        }
        self.bytes += size;
        self.lines.extend(lines.iter().cloned());
        Ok(())
    }

    fn peek(&mut self, max_lines: usize, max_bytes: u64) -> Result<Vec<String>, StoreError> {
        let count = batch_len(self.lines.iter(), max_lines, max_bytes);
        Ok(self.lines.iter().take(count).cloned().collect())
    }

    fn ack(&mut self, count: usize) -> Result<(), StoreError> {
        for line in self.lines.drain(..count.min(self.lines.len())) {
            self.bytes -= line.len() as u64 + 1;
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// How many of `lines` make one batch: at most `max_lines`, and past the
/// first line at most about `max_bytes`.
fn batch_len<'a>(
    lines: impl Iterator<Item = &'a String>,
    max_lines: usize,
    max_bytes: u64,
) -> usize {
    let mut bytes = 0u64;
    let mut count = 0;
    for line in lines.take(max_lines.max(1)) {
        bytes += line.len() as u64 + 1;
        if count > 0 && bytes > max_bytes {
            break;
        }
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;

    fn attribute<'a>(record: &'a LogRecord, key: &str) -> Option<&'a Value> {
        record
            .attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn a_refusal_is_a_warning_with_its_facts() {
        let mut record = Record::new(Kind::Refusal, "w-1");
        record.tool = Some("delete_repo".into());
        record.decision = Some("deny".into());
        record.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".into());
        record.chain = "w-1".into();
        record.seq = 7;
        let line = serde_json::to_string(&record).expect("serialize");
        let log = log_record(&line, 5);
        assert_eq!(log.severity_text, "WARN");
        assert_eq!(log.observed_time_unix_nano, 5);
        assert!(log.time_unix_nano > 5);
        assert_eq!(log.trace_id.len(), 16);
        assert_eq!(
            attribute(&log, "warden.audit.seq"),
            Some(&Value::IntValue(7))
        );
        assert_eq!(
            attribute(&log, "gen_ai.tool.name"),
            Some(&Value::StringValue("delete_repo".into()))
        );
        assert_eq!(
            attribute(&log, "warden.audit.kind"),
            Some(&Value::StringValue("refusal".into()))
        );
        assert_eq!(attribute(&log, "warden.reason"), None);
    }

    #[test]
    fn a_line_that_is_not_a_record_still_goes_out() {
        let log = log_record("not json", 9);
        assert_eq!(log.severity_text, "INFO");
        assert_eq!(log.time_unix_nano, 9);
        assert_eq!(
            log.body.and_then(|b| b.value),
            Some(Value::StringValue("not json".into()))
        );
    }

    #[test]
    fn the_memory_spool_is_bounded_and_in_order() {
        let mut spool = MemorySpool::new(8);
        spool.push(&["ab".into(), "cd".into()]).expect("fits");
        assert!(matches!(
            spool.push(&["efg".into()]),
            Err(StoreError::SpoolFull { limit: 8 })
        ));
        assert_eq!(spool.peek(1, 100).expect("peek"), vec!["ab".to_string()]);
        assert_eq!(spool.peek(9, 1).expect("peek"), vec!["ab".to_string()]);
        spool.ack(1).expect("ack");
        spool.push(&["efg".into()]).expect("fits now");
        assert_eq!(spool.peek(9, 100).expect("peek"), vec!["cd", "efg"]);
        assert_eq!(spool.bytes(), 7);
    }
}
