//! Warden's configuration file: raw, located structs → validated [`Config`].
//!
//! ```yaml
//! version: 1
//! listen: 127.0.0.1:8080          # the MCP listener
//! admin: 127.0.0.1:9090           # /healthz, /readyz, /metrics (optional)
//! workers: 2                      # threads serving MCP (default: one per core)
//! limits:
//!   max_body: 4MiB                # largest request body accepted
//!   header_timeout: 10s           # a client must send its headers within this
//!   body_timeout: 30s             # ... and its body within this
//!   max_sessions: 10000           # concurrent agent sessions
//!   session_idle: 30m             # a session unused this long is ended
//!   shutdown_grace: 30s           # how long SIGTERM waits for in-flight calls
//!   catalogue_ttl: 5m             # re-read the upstream's tool list after this
//!   reload_interval: 2s           # how often policy files are checked for changes
//!   reload_settle: 500ms          # a change must hold this long before it is read
//! routes:
//!   - path: /mcp
//!     upstream:
//!       url: http://127.0.0.1:3001/mcp
//!       timeout: 60s              # time to the upstream's response headers
//!       # reply_timeout: 5m       # stdio and legacy SSE: time to any answer
//!       ca_file: /etc/warden/ca.pem   # extra trust roots for https (optional)
//!     policy: ../policies/demo.yaml   # relative to this file
//!     allowed_origins: [http://localhost:6274]
//! ```
//!
//! Every semantic problem is reported at once, each with its line and column;
//! each route's policy file is loaded and validated too.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::Uri;
use serde::Deserialize;
use warden_policy::located::{self, Collector, Diagnostic, Spanned};
use warden_policy::{Diagnostics, Policy, PolicyError};

pub use warden_upstream::config::{
    ChildSharing, DEFAULT_MAX_LINKS, DEFAULT_REPLY_TIMEOUT, HttpEndpoint, StdioCommand,
    UpstreamConfig, UpstreamTransport,
};

/// The only config file version this build reads.
pub const CONFIG_VERSION: u32 = 1;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Io {
        /// The file.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error(transparent)]
    Invalid(#[from] Diagnostics),
    /// A route's policy file is not valid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of the MCP listener.
    pub listen: SocketAddr,
    /// Address of the admin listener, if any.
    pub admin: Option<SocketAddr>,
    /// Worker threads serving the MCP listener (default: one per core).
    pub workers: usize,
    /// Listener limits.
    pub limits: Limits,
    /// The routes, each one path in front of one upstream.
    pub routes: Vec<RouteConfig>,
    /// The audit trail, when configured.
    pub audit: Option<crate::audit::AuditConfig>,
    /// TLS on the MCP listener.
    pub tls: Option<crate::tls::ListenerTls>,
    /// TLS on the admin listener.
    pub admin_tls: Option<crate::tls::ListenerTls>,
    /// The approval queue, for `approve`-tier tools.
    pub approvals: Option<crate::approvals::ApprovalsConfig>,
}

/// Limits that protect the listener and the sessions table.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Time a client has to send its request headers (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// Time a client has to send its request body.
    pub body_timeout: Duration,
    /// Most concurrent agent sessions.
    pub max_sessions: usize,
    /// A session unused this long is ended.
    pub session_idle: Duration,
    /// How long a shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// How long Warden trusts what it learned of an upstream's tools before
    /// it fetches the catalogue again to decide a call.
    pub catalogue_ttl: Duration,
    /// How often policy files are checked for changes.
    pub reload_interval: Duration,
    /// How long a changed policy file must stay the same before it is read
    /// (a file rewritten in place is not read half-written).
    pub reload_settle: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 4 << 20,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_sessions: 10_000,
            session_idle: Duration::from_secs(30 * 60),
            shutdown_grace: Duration::from_secs(30),
            catalogue_ttl: Duration::from_secs(300),
            reload_interval: Duration::from_secs(2),
            reload_settle: Duration::from_millis(500),
        }
    }
}

/// One route: a path in front of one upstream, with its policy.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The listener path, e.g. `/mcp`.
    pub path: String,
    /// Where calls go.
    pub upstream: UpstreamConfig,
    /// What may be called.
    pub policy: Policy,
    /// Where the policy came from (a path, or `embedded`).
    pub policy_origin: String,
    /// The policy file, watched for changes (`None`: embedded, never reloaded).
    pub policy_file: Option<PathBuf>,
    /// Browser origins allowed to call this route (loopback origins always are).
    pub allowed_origins: Vec<String>,
    /// `Host` values allowed on this route (lower case; a name alone
    /// allows any port). `None`: the loopback names when the listener is
    /// on loopback, anything otherwise.
    pub allowed_hosts: Option<Vec<String>>,
    /// Who may call this route (`None`: anyone, as `anonymous`).
    pub auth: Option<crate::auth::AuthConfig>,
    /// The credentials the policy can give tools' calls, by name.
    pub credentials: Vec<crate::credentials::CredentialConfig>,
    /// The credential of requests that are not tool calls.
    pub base_credential: Option<String>,
}

// === raw ===

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// File format version; must be 1.
    version: Spanned<u32>,
    /// Address of the MCP listener.
    listen: Spanned<String>,
    /// Address of the admin listener.
    #[serde(default)]
    admin: Option<Spanned<String>>,
    /// Worker threads for the MCP listener.
    #[serde(default)]
    workers: Option<Spanned<usize>>,
    /// Listener limits.
    #[serde(default)]
    limits: RawLimits,
    /// The routes.
    routes: Spanned<Vec<RawRoute>>,
    /// The audit trail.
    #[serde(default)]
    audit: Option<crate::audit::RawAudit>,
    /// TLS on the MCP listener.
    #[serde(default)]
    tls: Option<crate::tls::RawTls>,
    /// TLS on the admin listener.
    #[serde(default)]
    admin_tls: Option<crate::tls::RawTls>,
    /// The approval queue.
    #[serde(default)]
    approvals: Option<crate::approvals::RawApprovals>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    /// Largest request body, e.g. `4MiB`.
    max_body: Option<Spanned<String>>,
    /// e.g. `10s`.
    header_timeout: Option<Spanned<String>>,
    /// e.g. `30s`.
    body_timeout: Option<Spanned<String>>,
    /// Most concurrent sessions.
    max_sessions: Option<Spanned<usize>>,
    /// e.g. `30m`.
    session_idle: Option<Spanned<String>>,
    /// e.g. `30s`.
    shutdown_grace: Option<Spanned<String>>,
    /// e.g. `5m`.
    catalogue_ttl: Option<Spanned<String>>,
    /// e.g. `2s`.
    reload_interval: Option<Spanned<String>>,
    /// e.g. `500ms`.
    reload_settle: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    /// The listener path.
    path: Spanned<String>,
    /// The upstream.
    upstream: RawUpstream,
    /// Policy file, relative to the config file.
    policy: Spanned<String>,
    /// Allowed browser origins.
    #[serde(default)]
    allowed_origins: Vec<Spanned<String>>,
    /// Allowed `Host` header values.
    #[serde(default)]
    allowed_hosts: Option<Vec<Spanned<String>>>,
    /// Who may call the route.
    #[serde(default)]
    auth: Option<crate::auth::RawAuth>,
    /// Credentials the policy gives tools' calls.
    #[serde(default)]
    credentials: std::collections::HashMap<Spanned<String>, crate::credentials::RawCredential>,
    /// The credential of requests that are not tool calls.
    #[serde(default)]
    base_credential: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    /// The upstream's endpoint (http or https).
    url: Option<Spanned<String>>,
    /// `streamable-http` (default) or `sse` (legacy HTTP+SSE).
    transport: Option<Spanned<String>>,
    /// A stdio server's program.
    command: Option<Spanned<String>>,
    /// Its arguments.
    #[serde(default)]
    args: Vec<String>,
    /// Environment variables set for it.
    #[serde(default)]
    env: std::collections::BTreeMap<String, String>,
    /// Names of Warden's environment variables passed on to it.
    #[serde(default)]
    inherit_env: Vec<Spanned<String>>,
    /// Its working directory, relative to the config file.
    cwd: Option<Spanned<String>>,
    /// `per-session` (default) or `shared`.
    sessions: Option<Spanned<String>>,
    /// Most children or streams open at once.
    max_links: Option<Spanned<usize>>,
    /// Time to the upstream's answer, e.g. `60s`.
    timeout: Option<Spanned<String>>,
    /// Time to a stdio or legacy SSE upstream's response, e.g. `5m`.
    reply_timeout: Option<Spanned<String>>,
    /// Extra PEM trust roots.
    ca_file: Option<Spanned<String>>,
    /// Agent headers passed on besides the built-in allow-list.
    #[serde(default)]
    forward_headers: Vec<Spanned<String>>,
    /// The certificate Warden presents to an https upstream (mTLS).
    client_cert_file: Option<Spanned<String>>,
    /// Its key.
    client_key_file: Option<Spanned<String>>,
}

impl Config {
    /// Load a config file and every policy it names.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_yaml_str(&text, &path.display().to_string(), base)
    }

    /// Parse config text; relative paths in it are taken from `base`.
    pub fn from_yaml_str(text: &str, origin: &str, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = located::parse(text, origin)?;
        let mut errors = Collector::default();
        if raw.version.value != CONFIG_VERSION {
            errors.push(Diagnostic::at(
                &raw.version,
                format!(
                    "unsupported config version {} (this Warden reads version {CONFIG_VERSION})",
                    raw.version.value
                ),
            ));
        }
        let listen = address(&raw.listen, &mut errors);
        let admin = raw.admin.as_ref().and_then(|a| address(a, &mut errors));
        let limits = raw.limits.validate(&mut errors);
        let audit = raw.audit.as_ref().map(|a| a.validate(base, &mut errors));
        let tls = raw
            .tls
            .as_ref()
            .map(|t| t.validate(base, false, &mut errors));
        let by_certificate = raw
            .approvals
            .as_ref()
            .is_some_and(|a| a.approvers_by_certificate());
        let admin_tls = raw
            .admin_tls
            .as_ref()
            .map(|t| t.validate(base, !by_certificate, &mut errors));
        let admin_client_ca = admin_tls
            .as_ref()
            .is_some_and(|t| t.client_ca_file.is_some());
        let approvals = raw
            .approvals
            .as_ref()
            .map(|a| a.validate(base, raw.admin.is_some(), admin_client_ca, &mut errors));
        let workers = match &raw.workers {
            Some(n) if n.value == 0 || n.value > 1024 => {
                errors.push(Diagnostic::at(n, "workers must be between 1 and 1024"));
                default_workers()
            }
            Some(n) => n.value,
            None => default_workers(),
        };
        if raw.routes.value.is_empty() {
            errors.push(Diagnostic::at(&raw.routes, "at least one route is needed"));
        }
        let mut paths = HashSet::new();
        let mut routes = Vec::new();
        let mut policy_errors = Vec::new();
        let client_ca = tls.as_ref().is_some_and(|t| t.client_ca_file.is_some());
        for route in &raw.routes.value {
            let has_key = audit
                .as_ref()
                .is_some_and(|a| a.redaction_key_file.is_some());
            if let Some(route) = route.validate(
                base,
                &mut errors,
                &mut paths,
                &mut policy_errors,
                has_key,
                client_ca,
            ) {
                routes.push(route);
            }
        }
        errors.finish(origin, ())?;
        if let Some(first) = policy_errors.into_iter().next() {
            return Err(ConfigError::Policy(first));
        }
        Ok(Config {
            listen: listen.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()),
            admin,
            workers,
            limits,
            routes,
            audit,
            tls,
            admin_tls,
            approvals,
        })
    }
}

impl RawUpstream {
    fn validate(
        &self,
        route: &Spanned<String>,
        base: &Path,
        errors: &mut Collector,
    ) -> Option<UpstreamConfig> {
        let timeout = positive_duration(&self.timeout, Duration::from_secs(60), errors);
        let reply_timeout = positive_duration(&self.reply_timeout, DEFAULT_REPLY_TIMEOUT, errors);
        let transport = match (&self.url, &self.command) {
            (Some(url), None) => self.http(url, base, errors),
            (None, Some(command)) => self.stdio(command, base, errors),
            (Some(url), Some(_)) => {
                errors.push(Diagnostic::at(
                    url,
                    "an upstream has either a url (HTTP) or a command (stdio), not both",
                ));
                None
            }
            (None, None) => {
                errors.push(Diagnostic::at(
                    route,
                    "this route's upstream needs a url (HTTP) or a command (stdio)",
                ));
                None
            }
        };
        let max_links = match &self.max_links {
            Some(n) if n.value == 0 => {
                errors.push(Diagnostic::at(n, "max_links must be at least 1"));
                DEFAULT_MAX_LINKS
            }
            Some(n) if matches!(transport, Some(UpstreamTransport::StreamableHttp(_))) => {
                errors.push(Diagnostic::at(
                    n,
                    "max_links applies to stdio (command) and legacy SSE upstreams",
                ));
                n.value
            }
            Some(n) => n.value,
            None => DEFAULT_MAX_LINKS,
        };
        if let (Some(t), Some(UpstreamTransport::StreamableHttp(_))) =
            (&self.reply_timeout, &transport)
        {
            errors.push(Diagnostic::at(
                t,
                "reply_timeout applies to stdio (command) and legacy SSE upstreams",
            ));
        }
        Some(UpstreamConfig {
            transport: transport?,
            timeout,
            reply_timeout,
            max_links,
        })
    }

    fn http(
        &self,
        url: &Spanned<String>,
        base: &Path,
        errors: &mut Collector,
    ) -> Option<UpstreamTransport> {
        for (set, name) in [
            (!self.args.is_empty(), "args"),
            (!self.env.is_empty(), "env"),
            (!self.inherit_env.is_empty(), "inherit_env"),
            (self.cwd.is_some(), "cwd"),
            (self.sessions.is_some(), "sessions"),
        ] {
            if set {
                errors.push(Diagnostic::at(
                    url,
                    format!("{name} applies to stdio upstreams (command), not to a url"),
                ));
            }
        }
        let parsed = match url.value.parse::<Uri>() {
            Ok(parsed)
                if matches!(parsed.scheme_str(), Some("http" | "https"))
                    && parsed.host().is_some() =>
            {
                Some(parsed)
            }
            _ => {
                errors.push(Diagnostic::at(
                    url,
                    format!(
                        "invalid upstream url \"{}\" (write e.g. \"http://127.0.0.1:3001/mcp\"; http or https)",
                        url.value
                    ),
                ));
                None
            }
        };
        let ca_file = self.ca_file.as_ref().map(|ca| base.join(&ca.value));
        if let (Some(ca), Some(path)) = (&self.ca_file, &ca_file)
            && !path.is_file()
        {
            errors.push(Diagnostic::at(
                ca,
                format!("ca_file {} does not exist", path.display()),
            ));
        }
        let mut forward_headers = Vec::new();
        for name in &self.forward_headers {
            let lower = name.value.trim().to_ascii_lowercase();
            let never = matches!(
                lower.as_str(),
                "authorization"
                    | "proxy-authorization"
                    | "cookie"
                    | "accept-encoding"
                    | "host"
                    | "content-type"
                    | "content-encoding"
                    | "content-length"
                    | "transfer-encoding"
                    | "connection"
                    | "te"
                    | "upgrade"
                    | "mcp-session-id"
            ) || lower.starts_with("warden-");
            match http::HeaderName::from_bytes(lower.as_bytes()) {
                Ok(header) if !never => forward_headers.push(header),
                Ok(_) => errors.push(Diagnostic::at(
                    name,
                    format!(
                        "header \"{}\" is never forwarded (an agent's credentials and Warden's own headers stay with Warden)",
                        name.value
                    ),
                )),
                Err(_) => errors.push(Diagnostic::at(
                    name,
                    format!("\"{}\" is not a header name", name.value),
                )),
            }
        }
        let client_cert = match (&self.client_cert_file, &self.client_key_file) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                let (cert_path, key_path) = (base.join(&cert.value), base.join(&key.value));
                for (at, path) in [(cert, &cert_path), (key, &key_path)] {
                    if !path.is_file() {
                        errors.push(Diagnostic::at(
                            at,
                            format!("{} does not exist", path.display()),
                        ));
                    }
                }
                Some((cert_path, key_path))
            }
            (Some(at), None) | (None, Some(at)) => {
                errors.push(Diagnostic::at(
                    at,
                    "client_cert_file and client_key_file go together",
                ));
                None
            }
        };
        let endpoint = HttpEndpoint {
            url: parsed?,
            ca_file,
            forward_headers,
            client_cert,
        };
        match self.transport.as_ref().map(|t| t.value.as_str()) {
            None | Some("streamable-http") => Some(UpstreamTransport::StreamableHttp(endpoint)),
            Some("sse") => Some(UpstreamTransport::LegacySse(endpoint)),
            Some(other) => {
                errors.push(Diagnostic::at(
                    self.transport.as_ref()?,
                    format!("unknown transport \"{other}\" (write streamable-http or sse)"),
                ));
                None
            }
        }
    }

    fn stdio(
        &self,
        command: &Spanned<String>,
        base: &Path,
        errors: &mut Collector,
    ) -> Option<UpstreamTransport> {
        for (value, name) in [(&self.transport, "transport"), (&self.ca_file, "ca_file")] {
            if let Some(value) = value {
                errors.push(Diagnostic::at(
                    value,
                    format!("{name} applies to HTTP upstreams (url), not to a command"),
                ));
            }
        }
        let program = resolve_program(&command.value, base);
        if program.is_none() {
            errors.push(Diagnostic::at(
                command,
                format!(
                    "command \"{}\" not found (give a path, or a program on Warden's PATH)",
                    command.value
                ),
            ));
        }
        let cwd = self.cwd.as_ref().map(|dir| {
            std::path::absolute(base.join(&dir.value)).unwrap_or_else(|_| base.join(&dir.value))
        });
        if let (Some(dir), Some(path)) = (&self.cwd, &cwd)
            && !path.is_dir()
        {
            errors.push(Diagnostic::at(
                dir,
                format!("cwd {} is not a directory", path.display()),
            ));
        }
        let sharing = match self.sessions.as_ref().map(|s| s.value.as_str()) {
            None | Some("per-session") => ChildSharing::PerSession,
            Some("shared") => ChildSharing::Shared,
            Some(other) => {
                errors.push(Diagnostic::at(
                    self.sessions.as_ref()?,
                    format!("unknown sessions mode \"{other}\" (write per-session or shared)"),
                ));
                ChildSharing::PerSession
            }
        };
        let mut env: Vec<(String, String)> = Vec::new();
        for name in &self.inherit_env {
            if name.value.is_empty() || name.value.contains('=') {
                errors.push(Diagnostic::at(name, "not an environment variable name"));
            } else if let Some(value) = std::env::var_os(&name.value) {
                env.push((name.value.clone(), value.to_string_lossy().into_owned()));
            }
        }
        // Values written in the file win over inherited ones.
        env.retain(|(k, _)| !self.env.contains_key(k));
        env.extend(self.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Some(UpstreamTransport::Stdio(StdioCommand {
            program: program?,
            args: self.args.clone(),
            env,
            cwd,
            sharing,
            secrets: Vec::new(),
        }))
    }
}

/// A program given by path (relative to `base`), or found on Warden's PATH.
fn resolve_program(program: &str, base: &Path) -> Option<PathBuf> {
    let is_executable = |path: &Path| {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        // Absolute now: the child runs in its own `cwd`, where a relative
        // path would name something else.
        let path = std::path::absolute(base.join(program)).ok()?;
        return is_executable(&path).then_some(path);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|path| is_executable(path))
}

/// One worker thread per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A duration that must not be zero (zero would close every connection at
/// once, spin a loop, or fail every call); `default` when absent or invalid.
fn positive_duration(
    value: &Option<Spanned<String>>,
    default: Duration,
    errors: &mut Collector,
) -> Duration {
    let Some(text) = value else { return default };
    match located::duration(text, errors) {
        Some(parsed) if parsed.is_zero() => {
            errors.push(Diagnostic::at(
                text,
                "this duration must be longer than zero",
            ));
            default
        }
        Some(parsed) => parsed,
        None => default,
    }
}

fn address(value: &Spanned<String>, errors: &mut Collector) -> Option<SocketAddr> {
    match value.value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(Diagnostic::at(
                value,
                format!(
                    "invalid listen address \"{}\" (write e.g. \"127.0.0.1:8080\")",
                    value.value
                ),
            ));
            None
        }
    }
}

impl RawLimits {
    fn validate(&self, errors: &mut Collector) -> Limits {
        let defaults = Limits::default();
        let duration = |value: &Option<Spanned<String>>, default, errors: &mut Collector| {
            value
                .as_ref()
                .and_then(|v| located::duration(v, errors))
                .unwrap_or(default)
        };
        let positive = positive_duration;
        let max_sessions = match &self.max_sessions {
            Some(n) if n.value == 0 => {
                errors.push(Diagnostic::at(n, "max_sessions must be at least 1"));
                defaults.max_sessions
            }
            Some(n) => n.value,
            None => defaults.max_sessions,
        };
        Limits {
            max_body: self
                .max_body
                .as_ref()
                .and_then(|v| located::byte_size(v, errors))
                .unwrap_or(defaults.max_body),
            header_timeout: positive(&self.header_timeout, defaults.header_timeout, errors),
            body_timeout: positive(&self.body_timeout, defaults.body_timeout, errors),
            max_sessions,
            session_idle: positive(&self.session_idle, defaults.session_idle, errors),
            shutdown_grace: duration(&self.shutdown_grace, defaults.shutdown_grace, errors),
            catalogue_ttl: duration(&self.catalogue_ttl, defaults.catalogue_ttl, errors),
            reload_interval: positive(&self.reload_interval, defaults.reload_interval, errors),
            reload_settle: positive(&self.reload_settle, defaults.reload_settle, errors),
        }
    }
}

impl RawRoute {
    fn validate(
        &self,
        base: &Path,
        errors: &mut Collector,
        paths: &mut HashSet<String>,
        policy_errors: &mut Vec<PolicyError>,
        redaction_key: bool,
        client_ca: bool,
    ) -> Option<RouteConfig> {
        let path = &self.path.value;
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            errors.push(Diagnostic::at(
                &self.path,
                format!("route path \"{path}\" must start with '/' and hold no '?', '#' or spaces"),
            ));
        } else if !paths.insert(path.clone()) {
            errors.push(Diagnostic::at(
                &self.path,
                format!("route path \"{path}\" is declared twice"),
            ));
        }
        let upstream = self.upstream.validate(&self.path, base, errors);
        let stdio = self.upstream.command.is_some();
        let credentials = crate::credentials::validate(&self.credentials, stdio, base, errors);
        if let Some(transport) = &self.upstream.transport
            && transport.value == "sse"
            && let Some((first, _)) = self.credentials.iter().next()
        {
            errors.push(Diagnostic::at(
                first,
                "credentials are not sent to legacy HTTP+SSE upstreams yet: front a Streamable HTTP or stdio server",
            ));
        }
        let defined = |name: &str| self.credentials.keys().any(|k| k.value == name);
        if let Some(name) = &self.base_credential
            && !defined(&name.value)
        {
            errors.push(Diagnostic::at(
                name,
                format!(
                    "base_credential \"{}\" is not one of this route's credentials",
                    name.value
                ),
            ));
        }
        let auth = self
            .auth
            .as_ref()
            .map(|auth| auth.validate(&self.path, base, client_ca, errors));
        for origin in &self.allowed_origins {
            if origin
                .value
                .parse::<Uri>()
                .map_or(true, |u| u.scheme().is_none() || u.host().is_none())
            {
                errors.push(Diagnostic::at(
                    origin,
                    format!(
                        "invalid origin \"{}\" (write e.g. \"https://app.example.com\")",
                        origin.value
                    ),
                ));
            }
        }
        for host in self.allowed_hosts.iter().flatten() {
            if !valid_host_entry(&host.value) {
                errors.push(Diagnostic::at(
                    host,
                    format!(
                        "invalid host \"{}\" (write a name or address, with an optional port: \"mcp.example.com\", \"10.0.0.5:8080\", \"[::1]\"; or \"*\" for any)",
                        host.value
                    ),
                ));
            }
        }
        let policy_path = base.join(&self.policy.value);
        let policy = match Policy::from_file(&policy_path) {
            Ok(policy) if policy.redaction().uses_hash() && !redaction_key => {
                errors.push(Diagnostic::at(
                    &self.policy,
                    format!(
                        "the policy {} has `hash` redaction rules, which need audit.redaction_key_file",
                        policy_path.display()
                    ),
                ));
                None
            }
            Ok(policy) => {
                for name in policy.credentials_named() {
                    if !defined(name) {
                        errors.push(Diagnostic::at(
                            &self.policy,
                            format!(
                                "the policy {} gives a tool the credential \"{name}\", which this route does not define under credentials",
                                policy_path.display()
                            ),
                        ));
                    }
                }
                Some(policy)
            }
            Err(PolicyError::Io { source, .. }) => {
                errors.push(Diagnostic::at(
                    &self.policy,
                    format!(
                        "cannot read policy file {}: {source}",
                        policy_path.display()
                    ),
                ));
                None
            }
            Err(err) => {
                policy_errors.push(err);
                None
            }
        };
        Some(RouteConfig {
            path: path.clone(),
            upstream: upstream?,
            policy: policy?,
            policy_origin: policy_path.display().to_string(),
            policy_file: Some(policy_path.clone()),
            allowed_origins: self
                .allowed_origins
                .iter()
                .map(|o| o.value.trim_end_matches('/').to_owned())
                .collect(),
            allowed_hosts: self
                .allowed_hosts
                .as_ref()
                .map(|hosts| hosts.iter().map(|h| h.value.to_ascii_lowercase()).collect()),
            auth,
            credentials,
            base_credential: self.base_credential.as_ref().map(|b| b.value.clone()),
        })
    }
}

/// Whether `entry` is an `allowed_hosts` entry: `*`, or a host name or IP
/// address (IPv6 in brackets), with an optional port.
fn valid_host_entry(entry: &str) -> bool {
    if entry == "*" {
        return true;
    }
    !entry.is_empty()
        && !entry.contains(['/', '@', '?', '#', ' '])
        && entry
            .parse::<http::uri::Authority>()
            .is_ok_and(|a| a.as_str() == entry && !a.host().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// The diagnostics of a config that must not load.
    fn diagnostics(text: &str, base: &Path) -> Diagnostics {
        match Config::from_yaml_str(text, "w.yaml", base) {
            Err(ConfigError::Invalid(d)) => d,
            Err(other) => panic!("expected diagnostics, got {other}"),
            Ok(_) => panic!("the config loaded"),
        }
    }

    /// Each diagnostic's line and message.
    fn lines_and_messages(d: &Diagnostics) -> Vec<(u64, &str)> {
        d.items
            .iter()
            .map(|i| (i.line, i.message.as_str()))
            .collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("warden-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn loads_a_full_config() {
        let dir = temp_dir("full");
        write(&dir, "p.yaml", "version: 1\ntools:\n  create_note: write\n");
        let path = write(
            &dir,
            "w.yaml",
            "version: 1\nlisten: 127.0.0.1:8080\nadmin: 127.0.0.1:9090\nlimits:\n  max_body: 2MiB\n  session_idle: 5m\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:3001/mcp\n      timeout: 5s\n    policy: p.yaml\n    allowed_origins: [\"https://app.example.com/\"]\n",
        );
        let config = Config::from_file(&path).expect("valid");
        assert_eq!(config.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(config.limits.max_body, 2 << 20);
        assert_eq!(config.limits.session_idle, Duration::from_secs(300));
        assert_eq!(config.routes[0].upstream.timeout, Duration::from_secs(5));
        assert_eq!(
            config.routes[0].allowed_origins,
            vec!["https://app.example.com"]
        );
        assert_eq!(
            config.routes[0].policy.rule("create_note"),
            Some(warden_policy::Tier::Write)
        );
    }

    #[test]
    fn reports_every_error_with_its_position() {
        let dir = temp_dir("errors");
        write(&dir, "p.yaml", "version: 1\n");
        let text = "version: 1\nlisten: localhost\nlimits:\n  max_body: lots\nroutes:\n  - path: mcp\n    upstream:\n      url: ftp://x\n    policy: p.yaml\n  - path: /b\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: missing.yaml\n";
        let d = diagnostics(text, &dir);
        let lines: Vec<u64> = d.items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![2, 4, 6, 8, 13], "{d}");
        assert!(d.items[4].message.contains("missing.yaml"), "{d}");
    }

    #[test]
    fn allowed_hosts_are_read_lower_case_and_bad_entries_are_reported_where_they_are() {
        let dir = temp_dir("hosts");
        write(&dir, "p.yaml", "version: 1\n");
        let text = "version: 1\nlisten: 0.0.0.0:8080\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n    allowed_hosts: [MCP.Example.com, \"10.0.0.5:8080\", \"[::1]\"]\n  - path: /b\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n";
        let config = Config::from_yaml_str(text, "w.yaml", &dir).expect("valid");
        assert_eq!(
            config.routes[0].allowed_hosts.as_deref(),
            Some(
                &[
                    "mcp.example.com".to_owned(),
                    "10.0.0.5:8080".to_owned(),
                    "[::1]".to_owned()
                ][..]
            )
        );
        assert_eq!(config.routes[1].allowed_hosts, None);
        let text = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n    allowed_hosts:\n      - https://mcp.example.com\n      - \"\"\n      - ok.example\n      - \"a b\"\n";
        let d = diagnostics(text, &dir);
        let lines: Vec<u64> = d.items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![9, 10, 12], "{d}");
        assert!(
            d.items[0]
                .message
                .contains("invalid host \"https://mcp.example.com\""),
            "{d}"
        );
    }

    #[test]
    fn an_auth_section_is_read_and_its_mistakes_are_reported_where_they_are() {
        let dir = temp_dir("auth");
        write(&dir, "p.yaml", "version: 1\n");
        write(&dir, "jwks.json", "{\"keys\": []}");
        let head = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n    auth:\n";
        let good = format!(
            "{head}      methods:\n        - api_key:\n            keys:\n              - agent: bot\n                sha256: {}\n                groups: [editors]\n        - jwt:\n            issuer: https://auth.example.com\n            jwks_file: jwks.json\n            algorithms: [ES256]\n            claims: {{ agent: client_id, user: sub }}\n      delegates: {{ groups: [gateways] }}\n      oauth:\n        resource: https://warden.example.com/mcp\n        authorization_servers: [https://auth.example.com]\n",
            "ab".repeat(32)
        );
        let config = Config::from_yaml_str(&good, "w.yaml", &dir).expect("valid");
        let auth = config.routes[0].auth.as_ref().expect("auth");
        assert_eq!(auth.methods.len(), 2);
        assert!(!auth.anonymous);
        assert_eq!(auth.delegates.groups, vec!["gateways".to_owned()]);
        let crate::auth::MethodConfig::Jwt(jwt) = &auth.methods[1] else {
            panic!("jwt second");
        };
        // The audience defaults to the resource Warden publishes.
        assert_eq!(
            jwt.settings.audiences,
            vec!["https://warden.example.com/mcp".to_owned()]
        );
        assert_eq!(jwt.settings.claims.agent, "client_id");
        auth.build().expect("the JWKS file is read");

        let bad = format!(
            "{head}      methods:\n        - api_key:\n            keys:\n              - agent: bot\n                sha256: wdn_the-key-itself\n        - jwt:\n            issuer: https://auth.example.com\n            jwks_url: http://auth.example.com/jwks.json\n            algorithms: [HS256, none]\n"
        );
        let d = diagnostics(&bad, &dir);
        let found: Vec<(u64, &str)> = lines_and_messages(&d);
        assert_eq!(
            found.iter().map(|(line, _)| *line).collect::<Vec<_>>(),
            vec![13, 15, 16, 17, 17],
            "{d}"
        );
        assert!(found[0].1.contains("never the key itself"), "{d}");
        assert!(found[1].1.contains("needs an audience"), "{d}");
        assert!(found[2].1.contains("https"), "{d}");
        assert!(found[3].1.contains("never none or HS*"), "{d}");
        let none = format!("{head}      anonymous: false\n");
        let d = diagnostics(&none, &dir);
        assert!(d.items[0].message.contains("at least one method"), "{d}");
    }

    #[test]
    fn approvers_from_the_identity_layer_are_read_and_must_be_limited_by_allow() {
        let dir = temp_dir("approver-identity");
        write(&dir, "p.yaml", "version: 1\n");
        write(&dir, "jwks.json", "{\"keys\": []}");
        let head = "version: 1\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\napprovals:\n  identity:\n";
        let jwt = "    methods:\n      - jwt:\n          issuer: https://auth.example.com\n          audience: https://warden-admin.example.com\n          jwks_file: jwks.json\n          claims: { agent: email, groups: roles }\n";
        let good = format!("{head}{jwt}    allow: {{ groups: [payments-approvers] }}\n");
        let config = Config::from_yaml_str(&good, "w.yaml", &dir).expect("valid");
        let identity = config
            .approvals
            .as_ref()
            .and_then(|a| a.identity.as_ref())
            .expect("identity");
        assert_eq!(identity.allow.groups, vec!["payments-approvers".to_owned()]);
        let crate::auth::MethodConfig::Jwt(method) = &identity.methods[0] else {
            panic!("jwt");
        };
        assert_eq!(method.settings.claims.agent, "email");
        identity.build().expect("the JWKS file is read");

        // No allow, an empty one, no methods, mTLS without the admin
        // listener's client CA: each reported where it is.
        let d = diagnostics(&format!("{head}{jwt}"), &dir);
        assert!(d.items[0].message.contains("identity needs allow"), "{d}");
        let d = diagnostics(&format!("{head}{jwt}    allow: {{}}\n"), &dir);
        assert_eq!(d.items[0].line, 17, "{d}");
        assert!(
            d.items[0].message.contains("at least one agent or group"),
            "{d}"
        );
        let d = diagnostics(
            &format!(
                "{head}    methods:\n      - mtls: {{ name_from: san_email }}\n    allow: {{ agents: [ada@example.com] }}\n"
            ),
            &dir,
        );
        assert_eq!(d.items[0].line, 12, "{d}");
        assert!(d.items[0].message.contains("admin_tls"), "{d}");
        let d = diagnostics(&format!("{head}    allow: {{ agents: [ada] }}\n"), &dir);
        assert!(d.items[0].message.contains("at least one method"), "{d}");

        // Approvers by certificate: the admin listener may take them
        // optionally (token approvers and Slack come without one).
        for name in ["c.pem", "k.pem", "ca.pem"] {
            write(&dir, name, "");
        }
        let tls = "admin_tls:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n  client_auth: optional\n";
        let mtls = "    methods:\n      - mtls: { name_from: san_email }\n    allow: { agents: [ada@example.com] }\n";
        let config = Config::from_yaml_str(&format!("{tls}{head}{mtls}"), "w.yaml", &dir)
            .expect("optional client certificates with mtls approvers");
        assert!(
            !config
                .admin_tls
                .expect("admin tls")
                .client_certificate_required
        );
        let d = diagnostics(
            &format!("{tls}{head}{jwt}    allow: {{ agents: [ada] }}\n"),
            &dir,
        );
        assert!(d.items[0].message.contains("required only"), "{d}");
    }

    #[test]
    fn credentials_are_read_and_every_name_the_policy_gives_must_be_defined() {
        let dir = temp_dir("credentials");
        write(
            &dir,
            "p.yaml",
            "version: 1\ntools:\n  note:\n    tier: write\n    credential: notes\n",
        );
        write(&dir, "token", "t0ken\n");
        let head = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n";
        let good = format!(
            "{head}    credentials:\n      notes:\n        file: token\n        header: x-api-key\n      crm:\n        env: PATH\n    base_credential: crm\n"
        );
        let config = Config::from_yaml_str(&good, "w.yaml", &dir).expect("valid");
        let route = &config.routes[0];
        let names: Vec<&str> = route.credentials.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["crm", "notes"]);
        assert_eq!(route.base_credential.as_deref(), Some("crm"));
        assert_eq!(route.credentials[0].scheme.as_deref(), Some("Bearer"));
        assert_eq!(
            route.credentials[1].scheme, None,
            "no scheme on a custom header"
        );
        for credential in &route.credentials {
            credential.build().expect("readable");
        }
        let bad = format!(
            "{head}    credentials:\n      crm:\n        env: A\n        file: b\n      other:\n        oauth:\n          token_url: ftp://x\n          client_id: c\n    base_credential: missing\n"
        );
        let d = diagnostics(&bad, &dir);
        let found = lines_and_messages(&d);
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 9 && m.contains("exactly one of env, file")),
            "{d}"
        );
        assert!(
            found.iter().any(|(l, m)| *l == 14 && m.contains("https")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 16 && m.contains("base_credential")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 7 && m.contains("credential \"notes\"")),
            "{d}"
        );
        let refused = format!(
            "{head}    credentials:\n      notes:\n        inline: \"\"\n        header: host\n      crm:\n        oauth:\n          token_url: http://auth.example.com/token\n          client_id: c\n          client_secret_env: S\n"
        );
        let d = diagnostics(&refused, &dir);
        let found = lines_and_messages(&d);
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 14 && m.contains("http only on loopback")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 10 && m.contains("must not be empty")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 11 && m.contains("Warden sets itself")),
            "{d}"
        );
        let sse = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/sse\n      transport: sse\n    policy: p.yaml\n    credentials:\n      notes:\n        file: token\n";
        let d = diagnostics(sse, &dir);
        assert!(
            d.to_string()
                .contains("not sent to legacy HTTP+SSE upstreams"),
            "{d}"
        );
        let missing_env = format!(
            "{head}    credentials:\n      notes:\n        env: WARDEN_TEST_SURELY_UNSET_VARIABLE\n"
        );
        let config = Config::from_yaml_str(&missing_env, "w.yaml", &dir).expect("valid");
        let err = config.routes[0].credentials[0].build().expect_err("unset");
        assert!(
            err.to_string()
                .contains("WARDEN_TEST_SURELY_UNSET_VARIABLE is not set"),
            "{err}"
        );
    }

    #[test]
    fn tls_sections_are_read_and_admin_tls_takes_no_optional_client_certificates() {
        let dir = temp_dir("tls");
        write(&dir, "p.yaml", "version: 1\n");
        for file in ["c.pem", "k.pem", "ca.pem"] {
            write(&dir, file, "x");
        }
        let text = "version: 1\nlisten: 127.0.0.1:0\nadmin: 127.0.0.1:0\ntls:\n  cert_file: c.pem\n  key_file: k.pem\n  client_ca_file: ca.pem\n  client_auth: optional\nadmin_tls:\n  cert_file: c.pem\n  key_file: missing.pem\n  client_ca_file: ca.pem\n  client_auth: optional\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n";
        let d = diagnostics(text, &dir);
        let found = lines_and_messages(&d);
        assert_eq!(found.len(), 2, "{d}");
        assert!(
            found[0].0 == 11 && found[0].1.contains("does not exist"),
            "{d}"
        );
        assert!(
            found[1].0 == 13 && found[1].1.contains("required only"),
            "{d}"
        );
        let good = text
            .replace("missing.pem", "k.pem")
            .replace("  client_auth: optional\nroutes", "routes");
        let config = Config::from_yaml_str(&good, "w.yaml", &dir).expect("valid");
        let tls = config.tls.expect("tls");
        assert!(!tls.client_certificate_required);
        assert!(
            config
                .admin_tls
                .expect("admin tls")
                .client_certificate_required
        );
    }

    #[test]
    fn the_approvals_store_is_a_file_or_a_postgres_url_in_a_plain_schema() {
        use warden_approvals::StoreLocation;
        let dir = temp_dir("approvals-store");
        write(&dir, "p.yaml", "version: 1\n");
        let config_with = |approvals: &str| {
            format!(
                "version: 1\nlisten: 127.0.0.1:0\napprovals:\n{approvals}routes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n"
            )
        };
        let store_of = |approvals: &str| {
            Config::from_yaml_str(&config_with(approvals), "w.yaml", &dir)
                .expect("valid")
                .approvals
                .expect("approvals")
                .store
        };
        assert_eq!(
            store_of("  hold_budget: 1s\n"),
            StoreLocation::Sqlite(dir.join("approvals.db"))
        );
        assert_eq!(
            store_of("  store: q/a.db\n"),
            StoreLocation::Sqlite(dir.join("q/a.db"))
        );
        assert_eq!(
            store_of("  store: postgres://warden@db:5432/app\n"),
            StoreLocation::Postgres {
                url: "postgres://warden@db:5432/app".into(),
                schema: "warden".into()
            }
        );
        assert_eq!(
            store_of("  store: postgresql://warden@db/app\n  schema: approvals_eu\n"),
            StoreLocation::Postgres {
                url: "postgresql://warden@db/app".into(),
                schema: "approvals_eu".into()
            }
        );
        let d = diagnostics(
            &config_with("  store: postgres://warden:s3cret@db:port/app\n  schema: Approvals\n"),
            &dir,
        );
        let found = lines_and_messages(&d);
        assert_eq!(found.len(), 2, "{d}");
        assert!(found[0].0 == 4 && found[0].1.contains("malformed"), "{d}");
        assert!(
            found[1].0 == 5 && found[1].1.contains("plain lower-case name"),
            "{d}"
        );
        assert!(
            !d.to_string().contains("s3cret"),
            "the password leaked: {d}"
        );
        let d = diagnostics(&config_with("  store: a.db\n  schema: warden\n"), &dir);
        assert_eq!(
            lines_and_messages(&d),
            vec![(
                5,
                "schema applies to a PostgreSQL store only (store: postgres://…)"
            )],
            "{d}"
        );
    }

    #[test]
    fn zero_timeouts_are_refused() {
        let dir = temp_dir("zero");
        write(&dir, "p.yaml", "version: 1\n");
        let text = "version: 1\nlisten: 127.0.0.1:0\nlimits:\n  header_timeout: 0s\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n      timeout: 0ms\n    policy: p.yaml\n";
        let d = diagnostics(text, &dir);
        let lines: Vec<u64> = d.items.iter().map(|i| i.line).collect();
        assert_eq!(lines, vec![4, 9], "{d}");
        assert!(
            d.items
                .iter()
                .all(|i| i.message == "this duration must be longer than zero"),
            "{d}"
        );
    }

    #[test]
    fn reply_timeout_is_read_for_stdio_and_refused_for_http() {
        let dir = temp_dir("reply");
        write(&dir, "p.yaml", "version: 1\n");
        let text = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /a\n    upstream:\n      command: sh\n      reply_timeout: 90s\n    policy: p.yaml\n";
        let config = Config::from_yaml_str(text, "w.yaml", &dir).expect("valid");
        assert_eq!(
            config.routes[0].upstream.reply_timeout,
            Duration::from_secs(90)
        );
        let text = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /a\n    upstream:\n      command: sh\n    policy: p.yaml\n  - path: /b\n    upstream:\n      url: http://127.0.0.1:1/mcp\n      reply_timeout: 90s\n    policy: p.yaml\n  - path: /c\n    upstream:\n      command: sh\n      reply_timeout: 0s\n    policy: p.yaml\n";
        let d = diagnostics(text, &dir);
        let found = lines_and_messages(&d);
        assert_eq!(
            found,
            vec![
                (
                    11,
                    "reply_timeout applies to stdio (command) and legacy SSE upstreams"
                ),
                (16, "this duration must be longer than zero"),
            ],
            "{d}"
        );
    }

    #[test]
    fn a_bad_policy_is_reported_with_its_own_file_and_line() {
        let dir = temp_dir("badpolicy");
        write(&dir, "p.yaml", "version: 1\ntools:\n  a: wirte\n");
        let text = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:1/mcp\n    policy: p.yaml\n";
        let err = Config::from_yaml_str(text, "w.yaml", &dir).expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("p.yaml:3:6: unknown tier \"wirte\""),
            "{text}"
        );
    }

    #[test]
    fn loads_stdio_and_legacy_sse_upstreams() {
        let dir = temp_dir("transports");
        write(&dir, "p.yaml", "version: 1\n");
        std::fs::create_dir_all(dir.join("work")).expect("mkdir");
        let text = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /files\n    upstream:\n      command: sh\n      args: [-c, \"exec cat\"]\n      env: {API_BASE: https://api.example.com, PATH: /bin}\n      inherit_env: [PATH, WARDEN_SURELY_UNSET_VARIABLE]\n      cwd: work\n      sessions: shared\n    policy: p.yaml\n  - path: /old\n    upstream:\n      url: http://127.0.0.1:3001/sse\n      transport: sse\n    policy: p.yaml\n";
        let config = Config::from_yaml_str(text, "w.yaml", &dir).expect("valid");
        let UpstreamTransport::Stdio(command) = &config.routes[0].upstream.transport else {
            panic!("stdio expected")
        };
        assert!(command.program.is_absolute() && command.program.ends_with("sh"));
        assert_eq!(command.args, vec!["-c", "exec cat"]);
        assert_eq!(
            command.env,
            vec![
                ("API_BASE".to_owned(), "https://api.example.com".to_owned()),
                ("PATH".to_owned(), "/bin".to_owned()),
            ],
            "written values win over inherited ones; unset names are skipped"
        );
        assert_eq!(command.cwd.as_deref(), Some(dir.join("work").as_path()));
        assert_eq!(command.sharing, ChildSharing::Shared);
        assert!(matches!(
            config.routes[1].upstream.transport,
            UpstreamTransport::LegacySse(_)
        ));
        assert_eq!(
            config.routes[1].upstream.describe(),
            "http://127.0.0.1:3001/sse (legacy SSE)"
        );
    }

    #[test]
    fn upstream_mistakes_are_reported_where_they_are() {
        let dir = temp_dir("upstream-errors");
        write(&dir, "p.yaml", "version: 1\n");
        let text = "version: 1\nlisten: 127.0.0.1:0\nroutes:\n  - path: /a\n    upstream:\n      command: no-such-mcp-server-anywhere\n      sessions: some\n      cwd: missing-dir\n    policy: p.yaml\n  - path: /b\n    upstream:\n      url: http://127.0.0.1:1/mcp\n      transport: carrier-pigeon\n      args: [x]\n    policy: p.yaml\n  - path: /c\n    upstream:\n      timeout: 5s\n    policy: p.yaml\n";
        let d = diagnostics(text, &dir);
        let found = lines_and_messages(&d);
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 6 && m.contains("not found")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 7 && m.contains("per-session or shared")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 8 && m.contains("not a directory")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 12 && m.contains("args applies to stdio")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 13 && m.contains("streamable-http or sse")),
            "{d}"
        );
        assert!(
            found
                .iter()
                .any(|(l, m)| *l == 16 && m.contains("needs a url")),
            "{d}"
        );
    }
}
