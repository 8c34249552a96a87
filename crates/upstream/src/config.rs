//! How a route reaches its upstream: the validated settings the config file
//! loader (in the `warden` crate) produces.

use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

/// Default time a stdio or legacy SSE upstream has to answer a request.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(300);

/// Default bound on a stdio or legacy SSE upstream's open links.
pub const DEFAULT_MAX_LINKS: usize = 64;

/// A route's upstream MCP server and how to reach it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// The transport the server speaks.
    pub transport: UpstreamTransport,
    /// Time to the upstream's answer (response headers over HTTP; the
    /// `initialize` result and whole replies Warden reads over any transport).
    pub timeout: Duration,
    /// Time to a stdio or legacy SSE upstream's response to a request: one
    /// whose answer never comes ends with a timeout error after this.
    pub reply_timeout: Duration,
    /// Most links open at once to a stdio or legacy SSE upstream (children
    /// running, streams open); an `initialize` past it is refused with 503.
    pub max_links: usize,
}

impl UpstreamConfig {
    /// A Streamable HTTP upstream at `url` with default settings.
    pub fn new(url: Uri) -> UpstreamConfig {
        UpstreamConfig {
            transport: UpstreamTransport::StreamableHttp(HttpEndpoint {
                url,
                ca_file: None,
                forward_headers: Vec::new(),
                client_cert: None,
            }),
            timeout: Duration::from_secs(60),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            max_links: DEFAULT_MAX_LINKS,
        }
    }

    /// A stdio upstream with default settings.
    pub fn stdio(command: StdioCommand) -> UpstreamConfig {
        UpstreamConfig {
            transport: UpstreamTransport::Stdio(command),
            timeout: Duration::from_secs(60),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            max_links: DEFAULT_MAX_LINKS,
        }
    }

    /// Where the upstream is, for logs and audit records (never the URL's
    /// query or user info, nor the command's arguments or environment,
    /// which may hold secrets).
    pub fn describe(&self) -> String {
        let url = |url: &Uri| {
            let host = url.authority().map_or("", |a| {
                a.as_str()
                    .rsplit_once('@')
                    .map_or(a.as_str(), |(_, host)| host)
            });
            format!(
                "{}://{host}{}",
                url.scheme_str().unwrap_or("http"),
                url.path()
            )
        };
        match &self.transport {
            UpstreamTransport::StreamableHttp(endpoint) => url(&endpoint.url),
            UpstreamTransport::LegacySse(endpoint) => {
                format!("{} (legacy SSE)", url(&endpoint.url))
            }
            UpstreamTransport::Stdio(command) => format!("{} (stdio)", command.display()),
        }
    }
}

/// The transports an upstream can speak.
#[derive(Debug, Clone)]
pub enum UpstreamTransport {
    /// Streamable HTTP (MCP 2025-03-26 and later): `url` is the MCP endpoint.
    StreamableHttp(HttpEndpoint),
    /// HTTP+SSE (MCP 2024-11-05): `url` is the event stream's.
    LegacySse(HttpEndpoint),
    /// A child process speaking newline-delimited JSON-RPC on stdin/stdout.
    Stdio(StdioCommand),
}

/// An HTTP upstream's address.
#[derive(Debug, Clone)]
pub struct HttpEndpoint {
    /// The endpoint.
    pub url: Uri,
    /// Extra PEM trust roots for https upstreams.
    pub ca_file: Option<PathBuf>,
    /// Agent headers passed on besides the built-in allow-list
    /// ([`crate::FORWARDED_REQUEST_HEADERS`]), lower case.
    pub forward_headers: Vec<http::HeaderName>,
    /// The certificate chain and key Warden presents to an https upstream
    /// that asks for one (upstream mTLS), PEM files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// How Warden starts a stdio upstream.
#[derive(Debug, Clone)]
pub struct StdioCommand {
    /// The program (resolved on Warden's `PATH` when the config is loaded).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its whole environment: what `env` and `inherit_env` name, nothing else.
    pub env: Vec<(String, String)>,
    /// Its working directory (default: Warden's).
    pub cwd: Option<PathBuf>,
    /// One child per agent session, or one for all.
    pub sharing: ChildSharing,
    /// The credentials of the lane these children serve, given to each
    /// child as environment variables when it starts.
    pub secrets: Vec<std::sync::Arc<crate::credential::Credential>>,
}

impl StdioCommand {
    /// The program's file name, for logs and errors.
    pub fn display(&self) -> String {
        self.program.file_name().map_or_else(
            || self.program.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        )
    }
}

/// Whether agent sessions share a stdio child.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChildSharing {
    /// One child per agent session (the default): the server's per-connection
    /// state, its requests to the client and a crash each touch one session.
    #[default]
    PerSession,
    /// One child for every session of the route: for costly servers that keep
    /// no per-client state.
    Shared,
}
