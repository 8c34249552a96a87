//! The audit trail's configuration and start-up: the `audit` section of
//! the config file → a running [`AuditLog`] over the configured store.
//!
//! ```yaml
//! audit:
//!   dir: ./audit                  # JSON Lines trail, hash-chained (relative to this file)
//!   instance: warden-a            # chain id (default: the host name)
//!   signing_key: ./audit.key      # Ed25519 checkpoint key; made at first start if missing
//!   rotate_size: 64MiB            # start a new file past this size...
//!   rotate_age: 24h               # ... or this age
//!   checkpoint_every: 1000        # a signed checkpoint every N records...
//!   checkpoint_interval: 60s      # ... or this long after the first unvouched one
//!   sync_interval: 1s             # records nobody waits for are fsynced this often
//!   read_calls: fail-open         # or fail-closed: refuse reads when the store fails
//!   max_result: 4KiB              # larger results are recorded by size and digest
//!   redaction_key_file: ./redaction.key   # HMAC key for `hash` redaction rules
//! ```
//!
//! Without an `audit` section Warden keeps no trail (and says so at start).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use serde::Deserialize;
use warden_audit::chain::{load_or_create_key, public_key_text};
use warden_audit::file::{FileOptions, FileStore};
use warden_audit::otlp::{
    OtlpLogStats, OtlpLogs, OtlpLogsHandle, OtlpLogsOptions, OtlpOptions, Telemetry,
};
use warden_audit::postgres::{PostgresOptions, PostgresStats, PostgresStore};
use warden_audit::spool::Spool;
use warden_audit::{AuditLog, AuditStats, WriterOptions};
use warden_pipeline::ReadCalls;
use warden_policy::located::{self, Collector as Errors, Diagnostic, Spanned};

/// Default size past which a trail file is left for a new one.
pub const DEFAULT_ROTATE_SIZE: u64 = 64 << 20;
/// Default largest result recorded in full.
pub const DEFAULT_MAX_RESULT: usize = 4 << 10;

/// The `audit` section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAudit {
    /// The trail's directory.
    dir: Option<Spanned<String>>,
    /// The chain id.
    instance: Option<Spanned<String>>,
    /// The checkpoint signing key's file.
    signing_key: Option<Spanned<String>>,
    /// e.g. `64MiB`.
    rotate_size: Option<Spanned<String>>,
    /// e.g. `24h`.
    rotate_age: Option<Spanned<String>>,
    /// Records between checkpoints.
    checkpoint_every: Option<Spanned<u64>>,
    /// e.g. `60s`.
    checkpoint_interval: Option<Spanned<String>>,
    /// e.g. `1s`.
    sync_interval: Option<Spanned<String>>,
    /// `fail-open` or `fail-closed`.
    read_calls: Option<Spanned<String>>,
    /// e.g. `4KiB`.
    max_result: Option<Spanned<String>>,
    /// The HMAC key of `hash` redaction rules.
    redaction_key_file: Option<Spanned<String>>,
    /// PostgreSQL instead of files.
    postgres: Option<RawPostgres>,
    /// OpenTelemetry export (OTLP/HTTP, protobuf).
    otlp: Option<RawOtlp>,
}

/// The `audit.otlp` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    /// The OTLP/HTTP base URL, e.g. `http://collector:4318`.
    endpoint: Spanned<String>,
    /// Extra request headers, name → value.
    #[serde(default)]
    headers: std::collections::BTreeMap<String, Spanned<String>>,
    /// Extra request headers whose values are in environment variables,
    /// name → variable (for API keys).
    #[serde(default)]
    headers_env: std::collections::BTreeMap<String, Spanned<String>>,
    /// e.g. `10s`.
    timeout: Option<Spanned<String>>,
    /// Where audit log records wait while the endpoint is unreachable.
    spool_dir: Option<Spanned<String>>,
    /// e.g. `256MiB`.
    spool_max: Option<Spanned<String>>,
    /// Export request spans and duration histograms (default true).
    traces: Option<Spanned<bool>>,
    /// The upstream continues Warden's span: a forwarded `tools/call`
    /// carries it as `_meta.traceparent` (default true).
    propagate: Option<Spanned<bool>>,
}

/// The `audit.postgres` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPostgres {
    /// The connection URL, written here (only for URLs without a password).
    url: Option<Spanned<String>>,
    /// The environment variable holding the URL.
    url_env: Option<Spanned<String>>,
    /// The file holding the URL.
    url_file: Option<Spanned<String>>,
    /// The schema of the audit table.
    schema: Option<Spanned<String>>,
    /// Where records wait while PostgreSQL is unreachable.
    spool_dir: Option<Spanned<String>>,
    /// e.g. `256MiB`.
    spool_max: Option<Spanned<String>>,
    /// e.g. `5s`.
    connect_timeout: Option<Spanned<String>>,
    /// e.g. `10s`.
    statement_timeout: Option<Spanned<String>>,
}

/// A validated `audit` section.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The trail's directory.
    pub dir: PathBuf,
    /// The chain id (the instance id).
    pub instance: String,
    /// The checkpoint signing key's file.
    pub signing_key: PathBuf,
    /// Rotation by size.
    pub rotate_size: u64,
    /// Rotation by age.
    pub rotate_age: Duration,
    /// Records between checkpoints.
    pub checkpoint_every: u64,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Sync interval of records nobody waits for.
    pub sync_interval: Duration,
    /// Read calls when the store fails.
    pub read_calls: ReadCalls,
    /// Largest result recorded in full.
    pub max_result: usize,
    /// The HMAC key file of `hash` redaction rules.
    pub redaction_key_file: Option<PathBuf>,
    /// PostgreSQL instead of files, when configured.
    pub postgres: Option<PostgresOptions>,
    /// OpenTelemetry export, when configured.
    pub otlp: Option<OtlpConfig>,
}

/// A validated `audit.otlp` section.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Endpoint, headers and timeout.
    pub options: OtlpOptions,
    /// The audit log records' spool.
    pub spool_dir: PathBuf,
    /// Its bound in bytes.
    pub spool_max: u64,
    /// Whether request spans and histograms are exported.
    pub traces: bool,
    /// Whether a forwarded `tools/call` carries Warden's span as its
    /// `_meta.traceparent`.
    pub propagate: bool,
}

/// Why the audit trail could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditStartError {
    /// The signing key could not be read or made.
    #[error(transparent)]
    Key(#[from] warden_audit::chain::KeyError),
    /// The signing key's directory could not be made.
    #[error("cannot create the directory of the audit signing key {path}")]
    KeyDir {
        /// The directory.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// OTLP export could not be set up.
    #[error("OTLP export")]
    Otlp(#[from] warden_audit::otlp::OtlpError),
    /// The store could not be opened.
    #[error("audit store")]
    Store(#[from] warden_audit::StoreError),
    /// The redaction key could not be read.
    #[error("cannot read the redaction key {path}")]
    RedactionKey {
        /// The file.
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

// === impl AuditConfig ===

impl AuditConfig {
    /// The defaults, with the trail (and its key) in `dir`.
    pub fn in_dir(dir: &Path, instance: &str) -> AuditConfig {
        RawAudit::default().validate_with(
            dir,
            dir.to_path_buf(),
            Some(instance),
            &mut Errors::default(),
        )
    }
}

// === impl RawAudit ===

impl RawAudit {
    pub(crate) fn validate(&self, base: &Path, errors: &mut Errors) -> AuditConfig {
        let dir = self
            .dir
            .as_ref()
            .map_or_else(|| base.join("audit"), |d| base.join(&d.value));
        self.validate_with(base, dir, None, errors)
    }

    /// `base`: what relative paths are relative to.
    fn validate_with(
        &self,
        base: &Path,
        dir: PathBuf,
        instance: Option<&str>,
        errors: &mut Errors,
    ) -> AuditConfig {
        let path = |value: &Option<Spanned<String>>| value.as_ref().map(|v| base.join(&v.value));
        let duration =
            |value: &Option<Spanned<String>>, default: Duration, errors: &mut Errors| match value {
                None => default,
                Some(text) => match located::duration(text, errors) {
                    Some(parsed) if parsed.is_zero() => {
                        errors.push(Diagnostic::at(
                            text,
                            "this duration must be longer than zero",
                        ));
                        default
                    }
                    Some(parsed) => parsed,
                    None => default,
                },
            };
        let size = |value: &Option<Spanned<String>>, default: usize, errors: &mut Errors| {
            value
                .as_ref()
                .and_then(|v| located::byte_size(v, errors))
                .unwrap_or(default)
        };
        let instance = match &self.instance {
            Some(name) if valid_instance(&name.value) => name.value.clone(),
            Some(name) => {
                errors.push(Diagnostic::at(
                    name,
                    "an instance id is 1-128 characters of letters, digits, '.', '_' or '-'",
                ));
                name.value.clone()
            }
            None => instance.map_or_else(default_instance, str::to_owned),
        };
        let read_calls = match &self.read_calls {
            None => ReadCalls::default(),
            Some(mode) => match mode.value.as_str() {
                "fail-open" => ReadCalls::FailOpen,
                "fail-closed" => ReadCalls::FailClosed,
                other => {
                    errors.push(Diagnostic::at(
                        mode,
                        format!(
                            "unknown read_calls \"{other}\" (expected fail-open or fail-closed)"
                        ),
                    ));
                    ReadCalls::default()
                }
            },
        };
        let checkpoint_every = match &self.checkpoint_every {
            Some(n) if n.value == 0 => {
                errors.push(Diagnostic::at(n, "checkpoint_every must be at least 1"));
                1000
            }
            Some(n) => n.value,
            None => 1000,
        };
        let postgres = self
            .postgres
            .as_ref()
            .map(|pg| pg.validate(base, &dir, errors, &duration, &size));
        let otlp = self
            .otlp
            .as_ref()
            .map(|otlp| otlp.validate(base, &dir, &instance, errors, &duration, &size));
        AuditConfig {
            otlp,
            postgres,
            signing_key: path(&self.signing_key).unwrap_or_else(|| dir.join("audit.key")),
            dir,
            instance,
            rotate_size: size(&self.rotate_size, DEFAULT_ROTATE_SIZE as usize, errors) as u64,
            rotate_age: duration(&self.rotate_age, Duration::from_secs(24 * 3600), errors),
            checkpoint_every,
            checkpoint_interval: duration(
                &self.checkpoint_interval,
                Duration::from_secs(60),
                errors,
            ),
            sync_interval: duration(&self.sync_interval, Duration::from_secs(1), errors),
            read_calls,
            max_result: size(&self.max_result, DEFAULT_MAX_RESULT, errors),
            redaction_key_file: path(&self.redaction_key_file),
        }
    }
}

impl RawOtlp {
    fn validate(
        &self,
        base: &Path,
        dir: &Path,
        instance: &str,
        errors: &mut Errors,
        duration: &ParseField<Duration>,
        size: &ParseField<usize>,
    ) -> OtlpConfig {
        let endpoint = &self.endpoint.value;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            errors.push(Diagnostic::at(
                &self.endpoint,
                format!("the OTLP endpoint \"{endpoint}\" must be an http:// or https:// URL (OTLP/HTTP)"),
            ));
        }
        let mut options = OtlpOptions::new(endpoint.clone(), instance);
        for (name, value) in &self.headers {
            options.headers.push((name.clone(), value.value.clone()));
        }
        for (name, var) in &self.headers_env {
            match std::env::var(&var.value) {
                Ok(value) => options.headers.push((name.clone(), value)),
                Err(_) => errors.push(Diagnostic::at(
                    var,
                    format!(
                        "the environment variable {} (OTLP header {name}) is not set",
                        var.value
                    ),
                )),
            }
        }
        options.timeout = duration(&self.timeout, options.timeout, errors);
        OtlpConfig {
            options,
            spool_dir: self
                .spool_dir
                .as_ref()
                .map_or_else(|| dir.join("otlp-spool"), |d| base.join(&d.value)),
            spool_max: size(&self.spool_max, 256 << 20, errors) as u64,
            traces: self.traces.as_ref().is_none_or(|t| t.value),
            propagate: self.propagate.as_ref().is_none_or(|p| p.value),
        }
    }
}

/// Reads an optional field as a `T`, or the default given, reporting a
/// bad value to the collector.
type ParseField<T> = dyn Fn(&Option<Spanned<String>>, T, &mut Errors) -> T;

impl RawPostgres {
    fn validate(
        &self,
        base: &Path,
        dir: &Path,
        errors: &mut Errors,
        duration: &ParseField<Duration>,
        size: &ParseField<usize>,
    ) -> PostgresOptions {
        let url = match (&self.url, &self.url_env, &self.url_file) {
            (Some(url), None, None) => url.value.clone(),
            (None, Some(var), None) => std::env::var(&var.value).unwrap_or_else(|_| {
                errors.push(Diagnostic::at(
                    var,
                    format!(
                        "the environment variable {} (the PostgreSQL URL) is not set",
                        var.value
                    ),
                ));
                String::new()
            }),
            (None, None, Some(file)) => {
                let path = base.join(&file.value);
                std::fs::read_to_string(&path)
                    .map(|text| text.trim().to_owned())
                    .unwrap_or_else(|err| {
                        errors.push(Diagnostic::at(
                            file,
                            format!(
                                "cannot read the PostgreSQL URL file {}: {err}",
                                path.display()
                            ),
                        ));
                        String::new()
                    })
            }
            (None, None, None) => {
                errors.push(Diagnostic::file(
                    "audit.postgres needs one of url, url_env or url_file",
                ));
                String::new()
            }
            (Some(first), _, _) | (None, Some(first), _) => {
                errors.push(Diagnostic::at(
                    first,
                    "give the PostgreSQL URL once: url, url_env or url_file",
                ));
                String::new()
            }
        };
        let mut options = PostgresOptions::new(
            url,
            self.schema
                .as_ref()
                .map_or_else(|| "warden_audit".to_owned(), |s| s.value.clone()),
            self.spool_dir
                .as_ref()
                .map_or_else(|| dir.join("spool"), |d| base.join(&d.value)),
        );
        options.spool_max_bytes =
            size(&self.spool_max, options.spool_max_bytes as usize, errors) as u64;
        options.connect_timeout = duration(&self.connect_timeout, options.connect_timeout, errors);
        options.statement_timeout =
            duration(&self.statement_timeout, options.statement_timeout, errors);
        options
    }
}

fn valid_instance(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The host name, made a valid instance id (`warden` when unknown).
fn default_instance() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_default();
    let cleaned: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(128)
        .collect();
    if cleaned.is_empty() {
        "warden".into()
    } else {
        cleaned
    }
}

/// A started audit trail.
pub struct AuditTrail {
    /// The log records go to.
    pub log: AuditLog,
    /// The PostgreSQL store's spool counters, when it is the store.
    pub postgres_stats: Option<Arc<PostgresStats>>,
    /// The OTLP log exporter (to close after the log) and its counters.
    pub otlp_logs: Option<(OtlpLogsHandle, Arc<OtlpLogStats>)>,
    /// Request spans and histograms (disabled without `otlp`).
    pub telemetry: Telemetry,
    /// The HMAC key of `hash` redaction rules, when configured.
    pub redaction_key: Option<Vec<u8>>,
    /// The config it was started from.
    pub config: AuditConfig,
}

impl AuditTrail {
    /// Open the store and start the writer.
    pub fn start(config: &AuditConfig) -> Result<AuditTrail, AuditStartError> {
        if let Some(parent) = config.signing_key.parent() {
            std::fs::create_dir_all(parent).map_err(|source| AuditStartError::KeyDir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let (key, made) = load_or_create_key(&config.signing_key)?;
        if made {
            tracing::warn!(
                key_file = %config.signing_key.display(),
                public_key = %public_key_text(&key),
                "Made a new audit signing key; keep the public key to verify the trail with `warden audit verify --public-key`."
            );
        }
        let redaction_key = match &config.redaction_key_file {
            Some(path) => {
                Some(
                    std::fs::read(path).map_err(|source| AuditStartError::RedactionKey {
                        path: path.display().to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        let options = WriterOptions {
            instance: config.instance.clone(),
            queue: 65_536,
            max_pending: 100_000,
            sync_interval: config.sync_interval,
            checkpoint_every: config.checkpoint_every,
            checkpoint_interval: config.checkpoint_interval,
            signing_key: key,
        };
        let mut followers: Vec<Box<dyn warden_audit::Follower>> = Vec::new();
        let mut otlp_logs = None;
        let mut telemetry = Telemetry::disabled();
        if let Some(otlp) = &config.otlp {
            let spool = Spool::open(&otlp.spool_dir, otlp.spool_max)?;
            let logs =
                OtlpLogs::start(OtlpLogsOptions::new(otlp.options.clone()), Box::new(spool))?;
            otlp_logs = Some((logs.handle(), logs.stats().clone()));
            followers.push(Box::new(logs));
            if otlp.traces {
                telemetry = Telemetry::new(otlp.options.clone())?;
            }
            tracing::info!(endpoint = %otlp.options.endpoint, "Audit records exported over OTLP.");
        }
        let mut postgres_stats = None;
        let log = match &config.postgres {
            Some(postgres) => {
                let store = PostgresStore::open(postgres)?;
                tracing::info!(server = %store.server(), schema = %postgres.schema, instance = %config.instance, "Audit trail open in PostgreSQL.");
                postgres_stats = Some(store.stats());
                AuditLog::start(store, followers, options)?
            }
            None => {
                let store = FileStore::open(FileOptions {
                    dir: config.dir.clone(),
                    max_file_size: config.rotate_size,
                    max_file_age: config.rotate_age,
                })?;
                tracing::info!(dir = %config.dir.display(), instance = %config.instance, "Audit trail open.");
                AuditLog::start(store, followers, options)?
            }
        };
        Ok(AuditTrail {
            log,
            otlp_logs,
            telemetry,
            postgres_stats,
            redaction_key,
            config: config.clone(),
        })
    }
}

/// The audit log's counters on `/metrics`.
#[derive(Debug)]
pub struct AuditMetrics {
    stats: Arc<AuditStats>,
    postgres: Option<Arc<PostgresStats>>,
    otlp: Option<Arc<OtlpLogStats>>,
    unrecorded: Vec<Arc<std::sync::atomic::AtomicU64>>,
}

impl AuditMetrics {
    /// Export the trail's counters, and the routes' unrecorded read calls.
    pub fn new(
        trail: &AuditTrail,
        unrecorded: Vec<Arc<std::sync::atomic::AtomicU64>>,
    ) -> AuditMetrics {
        AuditMetrics {
            stats: trail.log.stats().clone(),
            postgres: trail.postgres_stats.clone(),
            otlp: trail.otlp_logs.as_ref().map(|(_, stats)| stats.clone()),
            unrecorded,
        }
    }
}

impl Collector for AuditMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let load = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed);
        let flag = |value: &std::sync::atomic::AtomicBool| i64::from(value.load(Ordering::Relaxed));
        let stats = &self.stats;
        let mut counters: Vec<(&str, &str, u64)> = vec![
            (
                "audit_records_written",
                "Audit records the store took.",
                load(&stats.written),
            ),
            (
                "audit_records_dropped",
                "Audit records dropped (queue full, or kept too long while the store failed).",
                load(&stats.dropped),
            ),
            (
                "audit_refused",
                "Durable audit records refused (their write calls were refused).",
                load(&stats.refused),
            ),
            (
                "audit_store_failures",
                "Times the audit store failed.",
                load(&stats.failures),
            ),
            (
                "audit_unrecorded_calls",
                "Read calls forwarded without a record (read_calls: fail-open).",
                self.unrecorded.iter().map(|u| load(u)).sum(),
            ),
        ];
        let mut gauges: Vec<(&str, &str, i64)> = vec![
            (
                "audit_pending_records",
                "Audit records waiting for the store.",
                load(&stats.pending) as i64,
            ),
            (
                "audit_store_failing",
                "1 while the audit store fails.",
                flag(&stats.failing),
            ),
        ];
        if let Some(pg) = &self.postgres {
            counters.push((
                "audit_spooled_records",
                "Audit records spooled while PostgreSQL was unreachable.",
                load(&pg.spooled),
            ));
            counters.push((
                "audit_spool_delivered_records",
                "Spooled audit records delivered to PostgreSQL.",
                load(&pg.delivered),
            ));
            gauges.push((
                "audit_spool_bytes",
                "Bytes of audit records spooled while PostgreSQL is unreachable.",
                load(&pg.spool_bytes) as i64,
            ));
            gauges.push((
                "audit_postgres_failing",
                "1 while PostgreSQL is unreachable (records are spooled).",
                flag(&pg.failing),
            ));
        }
        if let Some(otlp) = &self.otlp {
            counters.push((
                "audit_otlp_exported_records",
                "Audit records exported as OTLP log records.",
                load(&otlp.exported),
            ));
            counters.push((
                "audit_otlp_spooled_records",
                "Audit records spooled while the OTLP endpoint failed.",
                load(&otlp.spooled),
            ));
            counters.push(("audit_otlp_dropped_records", "Audit records the OTLP endpoint refused as malformed, or that found the queue or spool full.", load(&otlp.dropped)));
            gauges.push((
                "audit_otlp_spool_bytes",
                "Bytes of audit records spooled while the OTLP endpoint fails.",
                load(&otlp.spool_bytes) as i64,
            ));
            gauges.push((
                "audit_otlp_failing",
                "1 while the OTLP endpoint fails.",
                flag(&otlp.failing),
            ));
        }
        for (name, help, value) in counters {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        for (name, help, value) in gauges {
            let metric = ConstGauge::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)?;
        }
        Ok(())
    }
}

/// Put a route's policy coming into force on the record (`why`: `start`
/// or `reload`).
pub fn record_policy_loaded(
    log: &AuditLog,
    route: &str,
    policy: &warden_policy::Policy,
    why: &str,
) {
    let mut record = log.new_record(warden_audit::Kind::PolicyLoaded);
    record.route = Some(route.into());
    record.policy_hash = Some(policy.content_hash().into());
    record.reason = Some(why.to_owned().into());
    log.record(record);
}
