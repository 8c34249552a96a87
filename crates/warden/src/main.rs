//! The `warden` command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use warden::Config;
use warden::env::{WARDEN_AUDIT_POSTGRES_URL, WARDEN_CONFIG, WARDEN_LOG, WARDEN_LOG_FORMAT};
use warden_policy::Policy;

/// Warden: a policy sidecar for MCP.
#[derive(Parser)]
#[command(
    version,
    about = "Warden: a policy sidecar for MCP (Model Context Protocol)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a config file.
    Run {
        /// The config file (YAML).
        #[arg(long, env = WARDEN_CONFIG)]
        config: PathBuf,
    },
    /// Serve one MCP client on stdin/stdout (as a desktop client launches a
    /// server), in front of a route's upstream, with the full pipeline.
    Stdio {
        /// The config file (YAML); its listeners are not opened.
        #[arg(long, env = WARDEN_CONFIG)]
        config: PathBuf,
        /// The route to serve (default: the first one).
        #[arg(long)]
        route: Option<String>,
    },
    /// Run Warden on its embedded defaults in front of the demo MCP server.
    Demo {
        /// Where Warden's MCP endpoint listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Where the admin endpoint (/metrics, /healthz, the approvals API
        /// and page) listens.
        #[arg(long, default_value = "127.0.0.1:9090")]
        admin: SocketAddr,
        /// Exit after the showcase instead of serving until Ctrl-C.
        #[arg(long)]
        showcase_only: bool,
        /// Where the demo writes its audit trail and approval queue
        /// (default: a new directory under the system's temporary directory).
        #[arg(long)]
        audit_dir: Option<PathBuf>,
    },
    /// Policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// The audit trail: verify its chain and checkpoints, query it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The approval queue: list, show, approve or reject held calls.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// API keys for a route's `auth` section.
    Auth {
        #[command(subcommand)]
        command: AuthCommand,
    },
    /// Validate a config file and every policy it names.
    Check {
        /// The config file (YAML), as an argument or with `--config`.
        #[arg(required_unless_present = "config_flag")]
        config: Option<PathBuf>,
        /// The config file, as `run` and `stdio` take it.
        #[arg(long = "config", env = WARDEN_CONFIG, conflicts_with = "config")]
        config_flag: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// The queue, newest first.
    List {
        /// The config file whose `approvals.store` to read.
        #[arg(long, env = WARDEN_CONFIG)]
        config: PathBuf,
        /// Only these: pending, approved, rejected, expired, cancelled, abandoned.
        #[arg(long)]
        status: Option<String>,
    },
    /// One approval, whole.
    Show {
        /// The config file.
        #[arg(long, env = WARDEN_CONFIG)]
        config: PathBuf,
        /// The approval's id.
        id: String,
    },
    /// Approve a held call (a running Warden sees it at once with a
    /// PostgreSQL queue, within half a second with SQLite).
    Approve {
        /// The config file (not needed with `--admin`).
        #[arg(long, env = WARDEN_CONFIG, required_unless_present = "admin")]
        config: Option<PathBuf>,
        /// The approval's id.
        id: String,
        /// Who decides (an approver's name), deciding in the store directly.
        #[arg(long = "as", required_unless_present = "admin")]
        approver: Option<String>,
        #[command(flatten)]
        through: ThroughAdmin,
        /// Why (optional).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reject a held call.
    Reject {
        /// The config file (not needed with `--admin`).
        #[arg(long, env = WARDEN_CONFIG, required_unless_present = "admin")]
        config: Option<PathBuf>,
        /// The approval's id.
        id: String,
        /// Who decides (an approver's name), deciding in the store directly.
        #[arg(long = "as", required_unless_present = "admin")]
        approver: Option<String>,
        #[command(flatten)]
        through: ThroughAdmin,
        /// Why (required: the agent is told).
        #[arg(long)]
        reason: String,
    },
}

/// How `approve`/`reject` reach a running Warden's admin API.
#[derive(clap::Args)]
struct ThroughAdmin {
    /// Decide through a running Warden's admin API instead (the decision
    /// is audited and wakes the held call at once); the approver's token
    /// is read from `WARDEN_APPROVER_TOKEN`.
    #[arg(long, conflicts_with = "approver")]
    admin: Option<String>,
    /// A PEM file of CAs for an `https` admin URL (default: the system's).
    #[arg(long, requires = "admin")]
    ca_file: Option<PathBuf>,
    /// A PEM client certificate to present (approvers known by their
    /// certificate, `approvals.identity` with mtls); with it, the token is
    /// optional.
    #[arg(long, requires_all = ["admin", "client_key"])]
    client_cert: Option<PathBuf>,
    /// The PEM private key of `--client-cert`.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Make a new API key: prints the key (give it to the agent, once) and
    /// the `sha256` line for the config (which never holds the key).
    NewKey {
        /// The agent the key is for (named in the printed config entry).
        #[arg(long, default_value = "my-agent")]
        agent: String,
    },
    /// Print the SHA-256 of a key read from standard input (not from the
    /// command line, where other users could see it).
    HashKey,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files; every error is printed with its line and column.
    Check {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify audit files: the hash chain, the order of records, and the
    /// checkpoints' signatures. Exits 0 when every chain verifies, 1 with
    /// the first problem of each chain that does not, 2 when the files
    /// cannot be read.
    Verify {
        /// Audit files, or directories of `*.jsonl` files.
        #[arg()]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        postgres: PostgresArgs,
        /// The public key checkpoints must be signed with (base64, as
        /// Warden prints it). Without one, signatures are not checked.
        #[arg(long, conflicts_with = "public_key_file")]
        public_key: Option<String>,
        /// A file holding that public key.
        #[arg(long)]
        public_key_file: Option<PathBuf>,
    },
    /// Print the records that match every filter given.
    Query {
        /// Audit files, or directories of `*.jsonl` files.
        #[arg()]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        postgres: PostgresArgs,
        #[command(flatten)]
        filter: QueryFilter,
        /// How to print the records.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
    },
    /// Create or update the PostgreSQL audit table (run once with the
    /// owner role; Warden's runtime role needs only INSERT and SELECT).
    Migrate {
        /// The owner role's URL.
        #[arg(long, env = WARDEN_AUDIT_POSTGRES_URL, hide_env_values = true)]
        postgres: String,
        /// The schema of the audit table.
        #[arg(long, default_value = "warden_audit")]
        schema: String,
    },
}

/// Where the PostgreSQL audit table is.
#[derive(clap::Args)]
struct PostgresArgs {
    /// Read the PostgreSQL audit table at this URL instead of files (every
    /// instance's chain). Without files or this flag, the URL is read from
    /// WARDEN_AUDIT_POSTGRES_URL.
    #[arg(long, conflicts_with = "paths")]
    postgres: Option<String>,
    /// The schema of the audit table.
    #[arg(long, default_value = "warden_audit")]
    schema: String,
}

/// Which records `warden audit query` prints.
#[derive(clap::Args)]
struct QueryFilter {
    /// Records at or after this time (RFC 3339, or a prefix in UTC such as
    /// 2026-05-01).
    #[arg(long)]
    since: Option<String>,
    /// Records before this time.
    #[arg(long)]
    until: Option<String>,
    /// The MCP session or agent session.
    #[arg(long)]
    session: Option<String>,
    /// The calling agent or the user it acts for.
    #[arg(long)]
    principal: Option<String>,
    /// The tool.
    #[arg(long)]
    tool: Option<String>,
    /// The decision (allow, deny, ...).
    #[arg(long)]
    decision: Option<String>,
    /// The kind of record (tool_call, refusal, checkpoint, ...).
    #[arg(long)]
    kind: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum QueryFormat {
    /// One aligned row per record.
    Table,
    /// The records as JSON Lines.
    Jsonl,
}

/// `warden check`: the config, every policy, the TLS files, every route's
/// credentials and auth, the approvers' identity methods and the shared
/// request-state key (environment variables, secret files and JWKS files
/// are read; nothing is printed of them).
fn check_config(path: &std::path::Path) -> anyhow::Result<()> {
    let config = Config::from_file(path)?;
    for (what, settings) in [("tls", &config.tls), ("admin_tls", &config.admin_tls)] {
        if let Some(settings) = settings {
            warden::tls::acceptor(settings, config.limits.reload_interval)
                .with_context(|| what.to_owned())?;
        }
    }
    for route in &config.routes {
        for credential in &route.credentials {
            credential
                .build()
                .with_context(|| format!("route {}: credentials", route.path))?;
        }
        if let Some(auth) = &route.auth {
            auth.build()
                .with_context(|| format!("route {}: auth", route.path))?;
        }
    }
    if let Some(approvals) = &config.approvals {
        if let Some(identity) = &approvals.identity {
            identity.build().context("approvals.identity")?;
        }
        warden::request_states(&config)?;
        for line in warden::channels::describe(approvals)? {
            println!("{line}");
        }
    }
    println!("{}: ok ({} route(s))", path.display(), config.routes.len());
    if let Some(approvals) = &config.approvals {
        // Named (its password masked), not opened.
        println!("approvals: {}", approvals.store);
    }
    Ok(())
}

/// `warden approvals …`, straight against the queue the config names.
async fn approvals(command: ApprovalsCommand) -> anyhow::Result<()> {
    use warden_approvals::{Status, Verdict};
    let config_path = match &command {
        ApprovalsCommand::List { config, .. } | ApprovalsCommand::Show { config, .. } => {
            Some(config.clone())
        }
        ApprovalsCommand::Approve { config, .. } | ApprovalsCommand::Reject { config, .. } => {
            config.clone()
        }
    };
    match &command {
        ApprovalsCommand::Approve {
            id,
            through: through @ ThroughAdmin { admin: Some(_), .. },
            reason,
            ..
        } => {
            return decide_through_admin(through, id, "approve", reason.as_deref()).await;
        }
        ApprovalsCommand::Reject {
            id,
            through: through @ ThroughAdmin { admin: Some(_), .. },
            reason,
            ..
        } => {
            anyhow::ensure!(!reason.trim().is_empty(), "a rejection needs a reason");
            return decide_through_admin(through, id, "reject", Some(reason)).await;
        }
        _ => {}
    }
    let config_path = config_path.context("name the config file with --config")?;
    let config = Config::from_file(&config_path)?;
    let settings = config
        .approvals
        .as_ref()
        .with_context(|| format!("{} has no approvals section", config_path.display()))?;
    let store = warden_approvals::Store::open(&settings.store)
        .await
        .with_context(|| format!("opening the approval queue ({})", settings.store))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let line = |a: &warden_approvals::Approval| {
        format!(
            "{}  {:<9}  {}  {}  agent={}{}  {}",
            a.id,
            a.status.as_str(),
            a.call.route,
            a.call.tool,
            a.call.principal_agent,
            a.call
                .principal_user
                .as_deref()
                .map(|u| format!(" for={u}"))
                .unwrap_or_default(),
            a.call.arguments_shown
        )
    };
    let decide = |id: String, approver: String, verdict: Verdict, reason: Option<String>| {
        let store = store.clone();
        let config = &config;
        let config_path = &config_path;
        async move {
            anyhow::ensure!(
                settings.approvers.iter().any(|(_, name)| *name == approver),
                "{approver} is not one of the approvers in {}",
                config_path.display()
            );
            let held = store.get(&id).await?;
            let rule = config
                .routes
                .iter()
                .find(|r| r.path == held.call.route)
                .map(|r| r.policy.hold_of(&held.call.tool))
                .unwrap_or_default();
            anyhow::ensure!(
                warden::approvals::Approver::named(&approver).may_decide(&rule),
                "{approver} may not decide calls to {} (the rule's approvers: {}; a group's members decide through the page or --admin, logged in with their identity provider)",
                held.call.tool,
                rule.approvers.join(", ")
            );
            let decided = store
                .decide(
                    &id,
                    &approver,
                    verdict,
                    reason.as_deref(),
                    rule.allow_own,
                    now,
                )
                .await?;
            println!("{}", line(&decided));
            if decided.status != Status::Pending {
                // A running Warden's sweep writes the audit record, naming
                // this channel: this process has no trail of its own.
                store.note_decided_via(&id, "cli").await?;
                eprintln!(
                    "Decided in the store. The running Warden records it in its audit trail as \"{approver} (cli)\" within a minute (or when it next starts), and the held call sees it within half a second."
                );
            }
            Ok(())
        }
    };
    match command {
        ApprovalsCommand::List { status, .. } => {
            let status = match status.as_deref() {
                None => None,
                Some(text) => Some(Status::parse(text).with_context(|| {
                    format!("unknown status {text} (pending, approved, rejected, expired, cancelled, abandoned)")
                })?),
            };
            for approval in store.list(status, 500).await? {
                println!("{}", line(&approval));
            }
            Ok(())
        }
        ApprovalsCommand::Show { id, .. } => {
            let a = store.get(&id).await?;
            println!("{}", line(&a));
            for vote in &a.votes {
                println!(
                    "  {} {} {}",
                    vote.approver,
                    vote.verdict.as_str(),
                    vote.reason.as_deref().unwrap_or("")
                );
            }
            if let Some(rationale) = &a.call.rationale {
                println!("  rationale: {rationale}");
            }
            Ok(())
        }
        ApprovalsCommand::Approve {
            id,
            approver: Some(approver),
            reason,
            ..
        } => decide(id, approver, Verdict::Approve, reason).await,
        ApprovalsCommand::Reject {
            id,
            approver: Some(approver),
            reason,
            ..
        } => {
            anyhow::ensure!(!reason.trim().is_empty(), "a rejection needs a reason");
            decide(id, approver, Verdict::Reject, Some(reason)).await
        }
        // With `--admin` the command never gets here (see `approvals`).
        ApprovalsCommand::Approve { .. } | ApprovalsCommand::Reject { .. } => {
            anyhow::bail!("name the approver with --as, or decide through --admin")
        }
    }
}

/// The environment variable the approver's token is read from (never
/// from argv, where other users of the host could read it).
const APPROVER_TOKEN_ENV: &str = "WARDEN_APPROVER_TOKEN";

/// `approve`/`reject` through a running Warden's admin API.
async fn decide_through_admin(
    through: &ThroughAdmin,
    id: &str,
    verdict: &str,
    reason: Option<&str>,
) -> anyhow::Result<()> {
    use http_body_util::BodyExt;
    let admin = through
        .admin
        .as_deref()
        .context("name the admin API with --admin")?;
    let token = std::env::var(APPROVER_TOKEN_ENV)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let client = through
        .client_cert
        .as_deref()
        .zip(through.client_key.as_deref());
    anyhow::ensure!(
        token.is_some() || client.is_some(),
        "set {APPROVER_TOKEN_ENV} to your approver token, or present a client certificate with --client-cert and --client-key"
    );
    // An approval id is a UUID: anything else could turn the path into
    // another request (`X/approve?` rejecting by approving).
    anyhow::ensure!(
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
        "{id:?} is not an approval id"
    );
    let base = admin.trim_end_matches('/');
    let url: http::Uri = format!("{base}/approvals/{id}/{verdict}")
        .parse()
        .with_context(|| format!("{admin} is not a URL"))?;
    // The token must not cross a network in the clear.
    let loopback = url
        .host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
        .is_some_and(|h| {
            h == "localhost"
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
    anyhow::ensure!(
        url.scheme_str() == Some("https") || (url.scheme_str() == Some("http") && loopback),
        "{base} would carry your token in the clear: use https (http only on loopback)"
    );
    let roots = warden_identity::tls::trust_roots(through.ca_file.as_deref())
        .context("TLS for the admin URL")?;
    anyhow::ensure!(
        !roots.is_empty() || url.scheme_str() != Some("https"),
        "no trust roots for {base}: name a CA file with --ca-file"
    );
    let tls = warden_identity::tls::client_config_presenting(roots, client)
        .context("TLS for the admin URL")?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let body = serde_json::json!({ "reason": reason }).to_string();
    let mut request = http::Request::post(url);
    if let Some(token) = &token {
        request = request.header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.trim()),
        );
    }
    let request = request
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .context("building the request")?;
    let response =
        tokio::time::timeout(std::time::Duration::from_secs(30), client.request(request))
            .await
            .context("the admin API did not answer within 30 s")?
            .with_context(|| format!("reaching {base}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        let said = value["error"].as_str().unwrap_or("no explanation given");
        anyhow::bail!("the admin API refused the decision ({status}): {said}");
    }
    println!(
        "{}  {}  {}  {}",
        value["id"].as_str().unwrap_or(id),
        value["status"].as_str().unwrap_or("?"),
        value["route"].as_str().unwrap_or(""),
        value["tool"].as_str().unwrap_or("")
    );
    Ok(())
}

fn auth(command: AuthCommand) -> anyhow::Result<()> {
    use warden_identity::api_key;
    match command {
        AuthCommand::NewKey { agent } => {
            let key = api_key::new_key().context("the system's random source")?;
            println!("API key (give it to the agent; Warden keeps only its hash):\n  {key}\n");
            println!("Config entry, under auth.methods[].api_key.keys:");
            println!(
                "  - agent: {agent}\n    sha256: {}",
                api_key::digest_hex(&key)
            );
            Ok(())
        }
        AuthCommand::HashKey => {
            let mut key = String::new();
            std::io::stdin()
                .read_line(&mut key)
                .context("reading the key from standard input")?;
            let key = key.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!key.is_empty(), "no key on standard input");
            println!("{}", api_key::digest_hex(key));
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's showcase is the output; keep routine log lines out of it.
    init_logging(if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    });
    let result = match cli.command {
        Command::Policy {
            command: PolicyCommand::Check { files },
        } => return check_policies(&files),
        Command::Audit { command } => return audit(command),
        Command::Auth { command } => auth(command),
        Command::Approvals { command } => runtime().and_then(|rt| rt.block_on(approvals(command))),
        Command::Check {
            config,
            config_flag,
        } => {
            let config = config.or(config_flag).unwrap_or_default();
            check_config(&config)
        }
        Command::Run { config } => runtime().and_then(|rt| rt.block_on(run(config))),
        Command::Stdio { config, route } => {
            runtime().and_then(|rt| rt.block_on(stdio(config, route)))
        }
        Command::Demo {
            listen,
            admin,
            showcase_only,
            audit_dir,
        } => runtime().and_then(|rt| rt.block_on(demo(listen, admin, showcase_only, audit_dir))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("warden: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(WARDEN_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    if std::env::var(WARDEN_LOG_FORMAT).is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    // The MCP listener runs on its own worker threads (one runtime each);
    // this runtime only accepts, serves the admin port and sweeps sessions.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn check_policies(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        match Policy::from_file(file) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(err) => {
                failed = true;
                eprintln!("{:#}", anyhow::Error::from(err));
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn audit(command: AuditCommand) -> ExitCode {
    let result = match command {
        AuditCommand::Verify {
            paths,
            postgres,
            public_key,
            public_key_file,
        } => audit_verify(&paths, &postgres, public_key, public_key_file),
        AuditCommand::Query {
            paths,
            postgres,
            filter,
            format,
        } => {
            query_filter(filter).and_then(|filter| audit_query(&paths, &postgres, &filter, format))
        }
        AuditCommand::Migrate { postgres, schema } => {
            let options = warden_audit::postgres::PostgresOptions::new(postgres, schema, "");
            warden_audit::postgres::migrate(&options)
                .map(|prepared| {
                    println!("audit table ready ({prepared:?})");
                    ExitCode::SUCCESS
                })
                .map_err(anyhow::Error::from)
        }
    };
    result.unwrap_or_else(|err| {
        eprintln!("warden: {err:#}");
        ExitCode::from(2)
    })
}

impl PostgresArgs {
    /// The table to read, when no files are given: `--postgres`, else the
    /// environment.
    fn url(&self, paths: &[PathBuf]) -> anyhow::Result<Option<String>> {
        if !paths.is_empty() {
            return Ok(None);
        }
        match &self.postgres {
            Some(url) => Ok(Some(url.clone())),
            None => std::env::var(WARDEN_AUDIT_POSTGRES_URL).map(Some).map_err(|_| {
                anyhow::anyhow!(
                    "give audit files or directories, or --postgres URL (or set {WARDEN_AUDIT_POSTGRES_URL})"
                )
            }),
        }
    }
}

fn query_filter(args: QueryFilter) -> anyhow::Result<warden_audit::Filter> {
    use warden_audit::query::{parse_kind, time_bound};
    Ok(warden_audit::Filter {
        since: args.since.as_deref().map(time_bound).transpose()?,
        until: args.until.as_deref().map(time_bound).transpose()?,
        session: args.session,
        principal: args.principal,
        tool: args.tool,
        decision: args.decision,
        kind: args.kind.as_deref().map(parse_kind).transpose()?,
    })
}

fn audit_verify(
    paths: &[PathBuf],
    postgres: &PostgresArgs,
    public_key: Option<String>,
    public_key_file: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let key_text = match (public_key, public_key_file) {
        (Some(text), _) => Some(text),
        (None, Some(file)) => Some(
            std::fs::read_to_string(&file)
                .with_context(|| format!("reading the public key {}", file.display()))?,
        ),
        (None, None) => None,
    };
    let key = key_text
        .map(|text| {
            warden_audit::chain::parse_public_key(&text)
                .context("the public key is not a base64 Ed25519 public key (32 bytes)")
        })
        .transpose()?;
    let report = match &postgres.url(paths)? {
        Some(url) => warden_audit::postgres::verify_postgres(url, &postgres.schema, key)?,
        None => warden_audit::verify_files(paths, key)?,
    };
    for chain in &report.chains {
        match &chain.outcome {
            Ok(summary) => println!("{summary} ({} file(s))", chain.files.len()),
            Err(problem) if chain.chain.is_empty() => eprintln!("{problem}"),
            Err(problem) => eprintln!("chain {}: {problem}", chain.chain),
        }
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn audit_query(
    paths: &[PathBuf],
    postgres: &PostgresArgs,
    filter: &warden_audit::Filter,
    format: QueryFormat,
) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout);
    // The table's header comes with the first record (or at the end), so a
    // query that cannot start prints nothing on stdout.
    let mut header_due = matches!(format, QueryFormat::Table);
    let mut unreadable = false;
    let mut broken_pipe = false;
    let mut failure = None;
    let mut each = |record: Result<warden_audit::Record, warden_audit::query::QueryError>| {
        if broken_pipe || failure.is_some() {
            return;
        }
        match record {
            Ok(record) => {
                if std::mem::take(&mut header_due)
                    && writeln!(out, "{}", warden_audit::query::table_header()).is_err()
                {
                    broken_pipe = true;
                    return;
                }
                let line = match format {
                    QueryFormat::Table => warden_audit::query::table_row(&record),
                    QueryFormat::Jsonl => warden_audit::query::jsonl_line(&record),
                };
                if let Err(err) = writeln!(out, "{line}") {
                    // A closed pipe (`| head`) ends the query quietly.
                    if err.kind() == std::io::ErrorKind::BrokenPipe {
                        broken_pipe = true;
                    } else {
                        failure = Some(err);
                    }
                }
            }
            Err(err) => {
                unreadable = true;
                eprintln!("warden: {err:#}");
            }
        }
    };
    match &postgres.url(paths)? {
        Some(url) => {
            warden_audit::postgres::query_postgres(url, &postgres.schema, filter, &mut each)?;
        }
        None => warden_audit::query_files(paths, filter).for_each(&mut each),
    }
    if broken_pipe {
        return Ok(ExitCode::SUCCESS);
    }
    if header_due {
        writeln!(out, "{}", warden_audit::query::table_header())?;
    }
    if let Some(err) = failure {
        return Err(err.into());
    }
    out.flush()?;
    Ok(if unreadable {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::from_file(&path)?;
    let running = warden::start(&config).await?;
    for route in &config.routes {
        tracing::info!(route = %route.path, upstream = %route.upstream.describe(), policy = %route.policy_origin, "Route ready.");
    }
    match running.admin_addr {
        Some(admin) => {
            tracing::info!(mcp = %running.mcp_addr, admin = %admin, "Warden is serving.")
        }
        None => tracing::info!(mcp = %running.mcp_addr, "Warden is serving."),
    }
    shutdown_signal().await;
    tracing::info!("Shutting down: draining in-flight calls.");
    running.shutdown().await;
    Ok(())
}

async fn stdio(path: PathBuf, route: Option<String>) -> anyhow::Result<()> {
    let config = Config::from_file(&path)?;
    let route = match route {
        Some(route) => route,
        None => config.routes[0].path.clone(),
    };
    anyhow::ensure!(
        config.routes.iter().any(|r| r.path == route),
        "no route {route} in {}",
        path.display()
    );
    let warden = warden::build(&config).await?;
    tracing::info!(route = %route, "Serving MCP on stdin/stdout.");
    let served = tokio::select! {
        served = warden::stdio::serve(warden.clone(), &route) => served,
        () = shutdown_signal() => {
            tracing::info!("Shutting down on a signal.");
            Ok(())
        }
    };
    // Children are asked to exit (stdin closed, SIGTERM, SIGKILL), not
    // dropped with the runtime.
    warden.shutdown_upstreams().await;
    warden.close_trail().await;
    served?;
    Ok(())
}

async fn demo(
    listen: SocketAddr,
    admin: SocketAddr,
    showcase_only: bool,
    audit_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let audit_dir = audit_dir.unwrap_or_else(warden::demo::default_audit_dir);
    let running = warden::demo::start(listen, admin, &audit_dir)
        .await
        .context("starting the demo (is another program on that port? try --listen 127.0.0.1:0 --admin 127.0.0.1:0)")?;
    warden::demo::showcase(&running).await?;
    if showcase_only {
        running.warden.shutdown().await;
        return Ok(());
    }
    println!("{}", warden::demo::try_it_yourself(&running));
    shutdown_signal().await;
    running.warden.shutdown().await;
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
