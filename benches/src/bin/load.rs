//! Load benchmark: the same MCP `tools/call` workload directly against the
//! demo upstream, through nginx, and through Warden (without audit, with the
//! audit trail in files, with it in PostgreSQL), interleaved in one run.
//!
//! ```text
//! cargo build --release -p warden-demo -p warden -p warden-benches
//! target/release/load --duration 5s --rounds 3
//! ```
//!
//! Each client opens one keep-alive HTTP/1.1 connection, initializes one MCP
//! session, then calls `echo` (`--calls read`) or `create_note`
//! (`--calls write`) in a closed loop. Every reply is checked; a
//! run with any error is reported INVALID and the program exits non-zero.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::net::TcpStream;
use warden_benches::report::{self, Run, Summary, Target};
use warden_benches::workload::Calls;
use warden_benches::{nginx, procfs, workload};

/// Direct vs nginx vs Warden: calls/s, p50/p99, CPU per call, peak RSS.
#[derive(Parser, Debug)]
#[command(about)]
struct Args {
    /// Measured time per target per round (after the warm-up).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Warm-up before each measured window (connect, initialize, first calls).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Rounds; each round runs every target once, in rotating order.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent clients (closed loop), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32])]
    concurrency: Vec<usize>,
    /// Targets, comma-separated: direct, nginx, warden (no audit),
    /// warden-audit (audit trail in files in the temp dir), warden-audit-pg
    /// (audit trail in PostgreSQL, a fresh schema dropped at the end).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Target::Direct, Target::Nginx, Target::Warden])]
    targets: Vec<Target>,
    /// Calls, comma-separated: read (`echo`) and/or write (`create_note`,
    /// granted `write`, so its audit intent is durable before forwarding).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Calls::Read])]
    calls: Vec<Calls>,
    /// Concurrencies at which write calls run (default: every --concurrency).
    #[arg(long, value_delimiter = ',')]
    write_concurrency: Option<Vec<usize>>,
    /// PostgreSQL for warden-audit-pg (a schema `warden_bench_<pid>_<time>`
    /// is made there by Warden and dropped at the end with psql).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// The psql binary (drops the benchmark's schema, counts its records).
    #[arg(long, default_value = "psql")]
    psql: PathBuf,
    /// nginx `worker_processes` (a number or `auto` = one per core).
    #[arg(long, default_value = "auto")]
    nginx_workers: String,
    /// The nginx binary.
    #[arg(long, default_value = nginx::NGINX_BIN)]
    nginx: PathBuf,
    /// The warden binary (default: next to this program).
    #[arg(long)]
    warden: Option<PathBuf>,
    /// The warden-demo binary (default: next to this program).
    #[arg(long)]
    demo: Option<PathBuf>,
    /// Policy for Warden's routes (default: the repo's policies/read-only.yaml,
    /// plus `create_note: write` when write calls are run).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Threads of the load generator's runtime (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// Pin the load generator to these CPUs (taskset list, e.g. `0`).
    #[arg(long)]
    client_cpus: Option<String>,
    /// Pin demo, nginx and Warden to these CPUs (taskset list, e.g. `1`).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Extra environment for the Warden process only, e.g.
    /// `--warden-env TOKIO_WORKER_THREADS=1` (repeatable).
    #[arg(long, value_parser = parse_env_pair)]
    warden_env: Vec<(String, String)>,
    /// A run during which other programs used more than this much CPU (% of
    /// one core, from /proc/stat minus the measured processes) is noisy...
    #[arg(long, default_value_t = 25.0)]
    max_background: f64,
    /// ... and is discarded and re-run up to this many times.
    #[arg(long, default_value_t = 2)]
    noisy_retries: u32,
    /// Per-call timeout; a call that takes longer is an error.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    call_timeout: Duration,
    /// Also write the markdown report to this file.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

fn parse_env_pair(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

const MAX_DURATION: Duration = Duration::from_secs(300);
const MAX_ROUNDS: u32 = 50;
const MAX_CONCURRENCY: usize = 1024;

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let schema = PgSchema::new(&args);
    let mut children = Children::default();
    let result = run_main(&args, &mut children, &schema);
    drop(children); // stop every child before reporting the outcome
    drop(schema); // then drop the PostgreSQL schema, once Warden is gone
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("load: some runs had errors (see INVALID above)");
            std::process::ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("load: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_main(args: &Args, children: &mut Children, schema: &PgSchema) -> anyhow::Result<bool> {
    validate(args)?;
    if let Some(cpus) = &args.client_cpus {
        pin_self(cpus)?;
    }
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()?
    };
    let per_run = args.warmup + args.duration + Duration::from_millis(300);
    let runs = args.rounds as u64
        * args.targets.len() as u64
        * args
            .calls
            .iter()
            .map(|&k| concurrencies(args, k).len() as u64)
            .sum::<u64>();
    let estimate = per_run * runs as u32;
    // Bounded: a hung target cannot keep the benchmark going forever.
    let deadline = estimate * (args.noisy_retries + 2) + Duration::from_secs(60);
    eprintln!(
        "load: {runs} runs of {:?} warm-up + {:?}; about {:.0} s (hard limit {:.0} s)",
        args.warmup,
        args.duration,
        estimate.as_secs_f64(),
        deadline.as_secs_f64()
    );
    runtime.block_on(async {
        tokio::select! {
            result = tokio::time::timeout(deadline, bench(args, children, schema)) => {
                result.map_err(|_| anyhow!("the benchmark overran its {deadline:?} limit"))?
            }
            signal = interrupted() => Err(anyhow!("interrupted by {signal}; stopping children")),
        }
    })
}

fn validate(args: &Args) -> anyhow::Result<()> {
    if args.duration.is_zero() || args.duration > MAX_DURATION {
        bail!("--duration must be in (0, {MAX_DURATION:?}]");
    }
    if args.warmup > MAX_DURATION {
        bail!("--warmup must be at most {MAX_DURATION:?}");
    }
    if args.rounds == 0 || args.rounds > MAX_ROUNDS {
        bail!("--rounds must be in 1..={MAX_ROUNDS}");
    }
    if args.concurrency.is_empty()
        || args
            .concurrency
            .iter()
            .any(|&c| c == 0 || c > MAX_CONCURRENCY)
    {
        bail!("--concurrency values must be in 1..={MAX_CONCURRENCY}");
    }
    if args.noisy_retries > 5 {
        bail!("--noisy-retries must be at most 5");
    }
    if args.targets.is_empty() {
        bail!("--targets must name at least one target");
    }
    if args.calls.is_empty() {
        bail!("--calls must name read, write or both");
    }
    if let Some(list) = &args.write_concurrency
        && (list.is_empty() || list.iter().any(|&c| c == 0 || c > MAX_CONCURRENCY))
    {
        bail!("--write-concurrency values must be in 1..={MAX_CONCURRENCY}");
    }
    Ok(())
}

/// The concurrencies at which `kind` calls run.
fn concurrencies(args: &Args, kind: Calls) -> &[usize] {
    match (kind, &args.write_concurrency) {
        (Calls::Write, Some(list)) => list,
        _ => &args.concurrency,
    }
}

/// The PostgreSQL schema of the warden-audit-pg target: a fresh name per
/// run, dropped (with psql) when this is dropped, after Warden has stopped.
struct PgSchema {
    name: String,
    url: String,
    psql: PathBuf,
    used: bool,
}

impl PgSchema {
    fn new(args: &Args) -> PgSchema {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PgSchema {
            name: format!("warden_bench_{}_{secs}", std::process::id()),
            url: args.postgres_url.clone(),
            psql: args.psql.clone(),
            used: args.targets.contains(&Target::WardenAuditPg),
        }
    }

    fn psql(&self, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.psql)
            .arg(&self.url)
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.psql.display()))?;
        if !out.status.success() {
            bail!(
                "psql {sql:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Records in the schema's table.
    fn records(&self) -> anyhow::Result<u64> {
        let text = self.psql(&format!(
            "SELECT count(*) FROM \"{}\".audit_records",
            self.name
        ))?;
        text.parse().with_context(|| format!("count {text:?}"))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if !self.used {
            return;
        }
        match self.psql(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.name)) {
            Ok(_) => eprintln!("load: dropped PostgreSQL schema {}", self.name),
            Err(err) => eprintln!(
                "load: could not drop PostgreSQL schema {} ({err:#}); drop it by hand",
                self.name
            ),
        }
    }
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn pin_self(cpus: &str) -> anyhow::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for cpu in parse_cpu_list(cpus)? {
        set.set(cpu).with_context(|| format!("CPU {cpu}"))?;
    }
    // Called before the runtime starts, so every runtime thread inherits it.
    sched_setaffinity(Pid::from_raw(0), &set).context("pinning the load generator")?;
    Ok(())
}

fn parse_cpu_list(list: &str) -> anyhow::Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.trim().parse::<usize>()?..=b.trim().parse::<usize>()?),
            None => cpus.push(part.trim().parse()?),
        }
    }
    Ok(cpus)
}

/// The processes under test.
struct Setup {
    demo_pid: u32,
    demo_port: u16,
    nginx: Option<(u32, u16)>,
    /// Warden targets: pid and port.
    wardens: HashMap<Target, (u32, u16)>,
    /// The `Authorization` each auth target's clients send.
    credentials: HashMap<Target, HeaderValue>,
}

async fn bench(args: &Args, children: &mut Children, schema: &PgSchema) -> anyhow::Result<bool> {
    let dir = tempfile::Builder::new()
        .prefix("warden-load-")
        .tempdir()
        .context("creating a temp dir")?;
    let setup = start_everything(args, children, dir.path(), schema)?;
    let hz = procfs::clock_ticks_per_second();

    let mut runs: Vec<Run> = Vec::new();
    // Successful calls per target, warm-up included (what the trail holds).
    let mut all_calls: HashMap<(Target, Calls), u64> = HashMap::new();
    for &kind in &args.calls {
        for &concurrency in concurrencies(args, kind) {
            for round in 1..=args.rounds {
                // Rotate the order each round so no target always runs first.
                let n = args.targets.len();
                for i in 0..n {
                    let target = args.targets[(i + round as usize - 1) % n];
                    let mut attempt = 0;
                    let run = loop {
                        let (run, done) =
                            run_one(args, &setup, target, kind, concurrency, round).await?;
                        *all_calls.entry((target, kind)).or_default() += done;
                        let background = run.background_ticks as f64 * 100.0
                            / hz as f64
                            / run.window.as_secs_f64();
                        eprintln!(
                            "  c={concurrency:<3} {:<5} round {round} {:<15} {:>8.0} calls/s  p50 {:>7.1} µs  p99 {:>8.1} µs  proxy CPU {:>5.1} µs/call  background {:>3.0}%  errors {}{}",
                            kind.name(),
                            target.name(),
                            run.calls_per_second(),
                            run.latency.value_at_quantile(0.5) as f64 / 1000.0,
                            run.latency.value_at_quantile(0.99) as f64 / 1000.0,
                            run.proxy_ticks.map_or(0.0, |t| t as f64 * 1e6
                                / hz as f64
                                / run.calls.max(1) as f64),
                            background,
                            run.errors,
                            run.first_error
                                .as_deref()
                                .map(|e| format!(" (first: {e})"))
                                .unwrap_or_default(),
                        );
                        if background <= args.max_background || attempt >= args.noisy_retries {
                            break run;
                        }
                        attempt += 1;
                        eprintln!(
                            "    other programs used {background:.0}% of a core (> {}%): discarding and retrying ({attempt}/{})",
                            args.max_background, args.noisy_retries
                        );
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    };
                    runs.push(run);
                }
            }
        }
    }

    let mut summaries = Vec::new();
    for &kind in &args.calls {
        for &c in concurrencies(args, kind) {
            for t in Target::ALL {
                if let Some(s) = Summary::of(&runs, t, kind, c, hz) {
                    summaries.push(s);
                }
            }
        }
    }
    let all_valid = summaries.iter().all(Summary::valid);
    let mut text = String::new();
    text.push_str(&describe(args, hz));
    text.push('\n');
    text.push_str(&report::markdown(&summaries, hz));
    if args.targets.iter().any(|t| t.audit_sink().is_some()) {
        // Let the writers catch up with the last records before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    text.push_str(&trail_counts(args, dir.path(), schema, &all_calls));
    println!("{text}");
    if let Some(path) = &args.markdown {
        fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    drop(dir);
    Ok(all_valid)
}

/// What the audit trails hold against the calls made (warm-up included):
/// each read call is one record, each write call two (intent, outcome),
/// plus session, policy and checkpoint records.
fn trail_counts(
    args: &Args,
    dir: &Path,
    schema: &PgSchema,
    all_calls: &HashMap<(Target, Calls), u64>,
) -> String {
    let expected = |t: Target| {
        all_calls.get(&(t, Calls::Read)).copied().unwrap_or(0)
            + 2 * all_calls.get(&(t, Calls::Write)).copied().unwrap_or(0)
    };
    let mut out = String::new();
    if args.targets.contains(&Target::WardenAudit) {
        let lines = fs::read_dir(dir.join("audit-file"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
                    .filter_map(|e| fs::read(e.path()).ok())
                    .map(|bytes| bytes.iter().filter(|&&b| b == b'\n').count() as u64)
                    .sum::<u64>()
            })
            .unwrap_or(0);
        out.push_str(&format!(
            "- file trail: {lines} lines for {} call records expected (reads + 2 × writes)\n",
            expected(Target::WardenAudit)
        ));
    }
    if args.targets.contains(&Target::WardenAuditPg) {
        let rows = schema
            .records()
            .map_or_else(|e| format!("unknown ({e:#})"), |n| n.to_string());
        out.push_str(&format!(
            "- PostgreSQL trail (schema {}): {rows} rows for {} call records expected (reads + 2 × writes)\n",
            schema.name,
            expected(Target::WardenAuditPg)
        ));
    }
    if out.is_empty() {
        out
    } else {
        format!("\nAudit trails at the end of the run:\n\n{out}")
    }
}

fn describe(args: &Args, hz: u64) -> String {
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let command: Vec<String> = std::env::args().collect();
    format!(
        "Command: `{}`\n\nMachine: {cores} CPUs ({cpu_model}), kernel {kernel}; CPU time from /proc at {hz} ticks/s. \
         nginx worker_processes {}; Warden extra env: {}; load generator: {} runtime thread(s), pinned to {}; servers pinned to {}. \
         {} round(s) × {:?} per target per concurrency after a {:?} warm-up, order rotated each round; \
         a run during which other programs used > {}% of a core is re-run (up to {} times). \
         Calls: {}. Audit: warden-audit writes JSON Lines files in the temp dir (defaults: fsync every 1 s, group commit for durable intents), \
         warden-audit-pg a fresh PostgreSQL schema; store CPU is every `postgres` process's, counted apart from the background.\n",
        command.join(" "),
        args.nginx_workers,
        if args.warden_env.is_empty() {
            "none".to_owned()
        } else {
            args.warden_env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        },
        args.client_threads.max(1),
        args.client_cpus.as_deref().unwrap_or("any CPU"),
        args.server_cpus.as_deref().unwrap_or("any CPU"),
        args.rounds,
        args.duration,
        args.warmup,
        args.max_background,
        args.noisy_retries,
        args.calls
            .iter()
            .map(|&k| format!(
                "{} at {:?} clients",
                match k {
                    Calls::Read => "read (`echo`)",
                    Calls::Write => "write (`create_note`, granted `write`)",
                },
                concurrencies(args, k)
            ))
            .collect::<Vec<_>>()
            .join(", "),
    )
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this program")?;
    let dir = exe.parent().context("this program has no directory")?;
    Ok(dir.join(name))
}

fn require_file(path: &Path, hint: &str) -> anyhow::Result<()> {
    if path.is_file() {
        Ok(())
    } else {
        bail!("{} not found: {hint}", path.display())
    }
}

fn free_port() -> anyhow::Result<u16> {
    let listener = StdListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn start_everything(
    args: &Args,
    children: &mut Children,
    dir: &Path,
    schema: &PgSchema,
) -> anyhow::Result<Setup> {
    const BUILD: &str =
        "build it with `cargo build --release -p warden-demo -p warden` (or pass its path)";
    let demo_bin = match &args.demo {
        Some(p) => p.clone(),
        None => sibling_binary("warden-demo")?,
    };
    require_file(&demo_bin, BUILD)?;
    let want = |t: Target| args.targets.contains(&t);

    let demo_port = free_port()?;
    let taskset = args.server_cpus.as_deref();

    let mut demo = command(taskset, &demo_bin);
    demo.arg("--listen").arg(format!("127.0.0.1:{demo_port}"));
    let demo_pid = children.spawn("warden-demo", demo, dir)?;
    children.wait_ready("warden-demo", demo_port, dir)?;

    let nginx = if want(Target::Nginx) {
        require_file(&args.nginx, nginx::INSTALL_HINT)?;
        let port = free_port()?;
        let conf = dir.join("nginx.conf");
        fs::write(
            &conf,
            nginx::render(&nginx::NginxConfig {
                dir,
                listen_port: port,
                upstream_port: demo_port,
                workers: &args.nginx_workers,
            }),
        )?;
        let mut cmd = command(taskset, &args.nginx);
        cmd.arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf);
        let pid = children.spawn("nginx", cmd, dir)?;
        children.wait_ready("nginx", port, dir)?;
        Some((pid, port))
    } else {
        None
    };

    let mut wardens = HashMap::new();
    let mut credentials = HashMap::new();
    let warden_targets: Vec<Target> = Target::ALL
        .into_iter()
        .filter(|&t| t.is_warden() && want(t))
        .collect();
    if !warden_targets.is_empty() {
        let warden_bin = match &args.warden {
            Some(p) => p.clone(),
            None => sibling_binary("warden")?,
        };
        require_file(&warden_bin, BUILD)?;
        let policy = match &args.policy {
            Some(p) => p
                .canonicalize()
                .with_context(|| format!("policy file {}", p.display()))?,
            None if args.calls.contains(&Calls::Write) => {
                // read-only.yaml, plus the one write tool the workload calls.
                let path = dir.join("bench-policy.yaml");
                fs::write(
                    &path,
                    "version: 1\ndefault: read-only-hint\ntools:\n  create_note: write\n",
                )?;
                path
            }
            None => {
                let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/read-only.yaml");
                p.canonicalize()
                    .with_context(|| format!("policy file {}", p.display()))?
            }
        };
        for target in warden_targets {
            let (port, admin) = (free_port()?, free_port()?);
            let auth = match target {
                Target::WardenApiKey => {
                    let key = warden_identity::api_key::new_key()
                        .map_err(|e| anyhow!("random source: {e}"))?;
                    credentials.insert(target, HeaderValue::from_str(&format!("Bearer {key}"))?);
                    format!(
                        "    auth:\n      methods:\n        - api_key:\n            keys:\n              - agent: bench\n                sha256: {}\n",
                        warden_identity::api_key::digest_hex(&key)
                    )
                }
                Target::WardenJwt => {
                    let (jwks, token) = bench_jwt(dir)?;
                    credentials.insert(target, HeaderValue::from_str(&format!("Bearer {token}"))?);
                    format!(
                        "    auth:\n      methods:\n        - jwt:\n            issuer: https://auth.bench\n            audience: https://warden.bench/mcp\n            jwks_file: {}\n            algorithms: [ES256]\n",
                        jwks.display()
                    )
                }
                _ => String::new(),
            };
            let audit = match target {
                Target::WardenAudit => format!(
                    "audit:\n  dir: {}\n  instance: bench-file\n",
                    dir.join("audit-file").display()
                ),
                Target::WardenAuditPg => format!(
                    "audit:\n  dir: {}\n  instance: bench-pg\n  postgres:\n    url: {}\n    schema: {}\n",
                    dir.join("audit-pg").display(),
                    schema.url,
                    schema.name
                ),
                _ => String::new(),
            };
            let conf = dir.join(format!("{}.yaml", target.name()));
            fs::write(
                &conf,
                format!(
                    "version: 1\nlisten: 127.0.0.1:{port}\nadmin: 127.0.0.1:{admin}\nroutes:\n  - path: /mcp\n    upstream:\n      url: http://127.0.0.1:{demo_port}/mcp\n    policy: {}\n{auth}{audit}",
                    policy.display()
                ),
            )?;
            let mut cmd = command(taskset, &warden_bin);
            cmd.arg("run")
                .arg("--config")
                .arg(&conf)
                .env("WARDEN_LOG", "warn")
                .envs(args.warden_env.iter().map(|(k, v)| (k, v)));
            let pid = children.spawn(target.name(), cmd, dir)?;
            children.wait_ready(target.name(), port, dir)?;
            wardens.insert(target, (pid, port));
        }
    }

    Ok(Setup {
        demo_pid,
        demo_port,
        nginx,
        wardens,
        credentials,
    })
}

/// A JWKS file with one fresh ES256 key in `dir`, and a token signed with
/// it that stays valid for a day.
fn bench_jwt(dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    use jsonwebtoken::jwk::{Jwk, JwkSet};
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let key = jsonwebtoken::EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes())?;
    let mut jwk = Jwk::from_encoding_key(&key, jsonwebtoken::Algorithm::ES256)?;
    jwk.common.key_id = Some("bench".into());
    let jwks = dir.join("bench-jwks.json");
    fs::write(&jwks, serde_json::to_vec(&JwkSet { keys: vec![jwk] })?)?;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 86_400;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("bench".into());
    let claims = serde_json::json!({"iss": "https://auth.bench", "aud": "https://warden.bench/mcp",
        "sub": "bench", "exp": exp});
    Ok((jwks, jsonwebtoken::encode(&header, &claims, &key)?))
}

/// `program`, prefixed with `taskset -c CPUS` when pinning (so the affinity is
/// set before the program starts its threads).
fn command(taskset: Option<&str>, program: &Path) -> Command {
    match taskset {
        Some(cpus) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(cpus).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Every child the benchmark started; all are stopped when this is dropped
/// (normal end, error, panic, or SIGINT/SIGTERM via `interrupted`).
#[derive(Default)]
struct Children {
    procs: Vec<(&'static str, Child)>,
}

impl Children {
    fn spawn(&mut self, name: &'static str, mut cmd: Command, dir: &Path) -> anyhow::Result<u32> {
        let log = fs::File::create(dir.join(format!("{name}.log")))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", cmd.get_program()))?;
        let pid = child.id();
        self.procs.push((name, child));
        Ok(pid)
    }

    fn wait_ready(&mut self, name: &str, port: u16, dir: &Path) -> anyhow::Result<()> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if StdStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if let Some((_, child)) = self.procs.iter_mut().find(|(n, _)| *n == name)
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
                let errlog = fs::read_to_string(dir.join("error.log")).unwrap_or_default();
                bail!("{name} exited ({status}) before listening:\n{log}{errlog}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("{name} did not listen on {addr} within 15 s")
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        // Remember grandchildren (nginx workers) in case the parent dies hard.
        let mut orphans = Vec::new();
        for (_, child) in self.procs.iter_mut().rev() {
            if matches!(child.try_wait(), Ok(None)) {
                orphans.extend(procfs::children_of(child.id()));
                let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            }
        }
        let give_up = Instant::now() + Duration::from_secs(3);
        for (name, child) in self.procs.iter_mut() {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() < give_up => {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Ok(None) => {
                        eprintln!("load: {name} ignored SIGTERM; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        for pid in orphans {
            if procfs::stat(pid).is_ok() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let _ = std::io::stderr().flush();
    }
}

/// The processes whose CPU counts as "proxy" for a target.
fn proxy_pids(setup: &Setup, target: Target) -> Option<Vec<u32>> {
    match target {
        Target::Direct => None,
        Target::Nginx => setup.nginx.map(|(m, _)| {
            let mut pids = vec![m];
            pids.extend(procfs::children_of(m));
            pids
        }),
        _ => setup.wardens.get(&target).map(|&(w, _)| vec![w]),
    }
}

fn ticks(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|&p| {
            Ok(procfs::stat(p)
                .with_context(|| format!("/proc/{p}/stat"))?
                .cpu_ticks)
        })
        .sum()
}

fn self_ticks() -> anyhow::Result<u64> {
    Ok(procfs::stat_of("self")?.cpu_ticks)
}

fn switches(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter()
        .map(|&p| procfs::context_switches(p).with_context(|| format!("/proc/{p}/task")))
        .sum()
}

/// CPU and context-switch counters at one instant.
struct Snapshot {
    proxy: Option<u64>,
    proxy_switches: Option<u64>,
    /// CPU ticks of every `postgres` process, by pid (PostgreSQL target).
    store: Option<HashMap<u32, u64>>,
    upstream: u64,
    client: u64,
    system: u64,
}

impl Snapshot {
    fn take(proxy: Option<&[u32]>, upstream: u32, store: bool) -> anyhow::Result<Snapshot> {
        Ok(Snapshot {
            proxy: proxy.map(ticks).transpose()?,
            proxy_switches: proxy.map(switches).transpose()?,
            store: store.then(|| {
                procfs::pids_named("postgres")
                    .into_iter()
                    .filter_map(|p| Some((p, procfs::stat(p).ok()?.cpu_ticks)))
                    .collect()
            }),
            upstream: ticks(&[upstream])?,
            client: self_ticks()?,
            system: procfs::system_busy_ticks()?,
        })
    }
}

/// CPU ticks the processes in `after` used since `before` (a process that
/// started in between counts from zero; one that ended is lost).
fn store_delta(
    after: Option<&HashMap<u32, u64>>,
    before: Option<&HashMap<u32, u64>>,
) -> Option<u64> {
    let (after, before) = (after?, before?);
    Some(
        after
            .iter()
            .map(|(pid, &t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
            .sum(),
    )
}

fn delta(after: Option<u64>, before: Option<u64>) -> Option<u64> {
    Some(after?.saturating_sub(before?))
}

/// The measured window, shared by every client of a run.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What one client saw.
struct ClientOutcome {
    calls: u64,
    /// Successful calls, warm-up included.
    done: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

async fn run_one(
    args: &Args,
    setup: &Setup,
    target: Target,
    kind: Calls,
    concurrency: usize,
    round: u32,
) -> anyhow::Result<(Run, u64)> {
    let port = match target {
        Target::Direct => Some(setup.demo_port),
        Target::Nginx => setup.nginx.map(|(_, port)| port),
        _ => setup.wardens.get(&target).map(|&(_, port)| port),
    }
    .with_context(|| format!("{} was not started", target.name()))?;
    let store = target == Target::WardenAuditPg;
    let proxy = proxy_pids(setup, target);
    for &pid in proxy.iter().flatten() {
        if let Err(err) = procfs::reset_peak_rss(pid) {
            eprintln!("load: cannot reset peak RSS of {pid} ({err}); peak is since start");
        }
    }

    let now = Instant::now();
    let window = Window {
        start: now + args.warmup,
        end: now + args.warmup + args.duration,
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let host = HeaderValue::from_str(&format!("127.0.0.1:{port}"))?;
    let authorization = setup.credentials.get(&target).cloned();
    let clients: Vec<_> = (0..concurrency)
        .map(|_| {
            tokio::spawn(client(
                addr,
                host.clone(),
                authorization.clone(),
                kind,
                window,
                args.call_timeout,
            ))
        })
        .collect();

    tokio::time::sleep_until(window.start.into()).await;
    let before = Snapshot::take(proxy.as_deref(), setup.demo_pid, store)?;
    tokio::time::sleep_until(window.end.into()).await;
    let after = Snapshot::take(proxy.as_deref(), setup.demo_pid, store)?;
    let measured = window.end - window.start;

    let mut latency = report::new_histogram();
    let (mut calls, mut done, mut errors, mut first_error) = (0, 0, 0, None);
    for handle in clients {
        let outcome = handle.await.context("a client task panicked")?;
        calls += outcome.calls;
        done += outcome.done;
        errors += outcome.errors;
        first_error = first_error.or(outcome.first_error);
        latency.add(&outcome.latency).expect("same bounds");
    }
    let proxy_peak_rss_kib = proxy
        .as_deref()
        .map(|pids| {
            pids.iter()
                .map(|&p| procfs::peak_rss_kib(p))
                .sum::<std::io::Result<u64>>()
        })
        .transpose()?;
    let proxy_ticks = delta(after.proxy, before.proxy);
    let upstream_ticks = after.upstream.saturating_sub(before.upstream);
    let client_ticks = after.client.saturating_sub(before.client);
    let store_ticks = store_delta(after.store.as_ref(), before.store.as_ref());
    let accounted =
        proxy_ticks.unwrap_or(0) + store_ticks.unwrap_or(0) + upstream_ticks + client_ticks;
    let run = Run {
        target,
        calls_kind: kind,
        concurrency,
        round,
        window: measured,
        calls,
        errors,
        first_error,
        latency,
        proxy_ticks,
        store_ticks,
        upstream_ticks,
        client_ticks,
        proxy_peak_rss_kib,
        proxy_switches: delta(after.proxy_switches, before.proxy_switches),
        background_ticks: after
            .system
            .saturating_sub(before.system)
            .saturating_sub(accounted),
    };
    Ok((run, done))
}

/// One closed-loop client: connect, initialize, call `echo` (or
/// `create_note`) until the window ends, then end the session.
async fn client(
    addr: SocketAddr,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    kind: Calls,
    window: Window,
    call_timeout: Duration,
) -> ClientOutcome {
    let mut outcome = ClientOutcome {
        calls: 0,
        done: 0,
        errors: 0,
        first_error: None,
        latency: report::new_histogram(),
    };
    let fail = |outcome: &mut ClientOutcome, err: String| {
        outcome.errors += 1;
        outcome.first_error.get_or_insert(err);
    };
    let mut conn = match Conn::open(addr, host, authorization, call_timeout).await {
        Ok(c) => c,
        Err(err) => {
            fail(&mut outcome, format!("session set-up: {err:#}"));
            return outcome;
        }
    };
    let mut id = 0u64;
    loop {
        id += 1;
        let body = kind.body(id);
        let t0 = Instant::now();
        let result = conn.call(kind, body, id).await;
        let t1 = Instant::now();
        if let Err(err) = result {
            fail(&mut outcome, format!("call {id}: {err:#}"));
            break; // the connection may be unusable; the run is invalid anyway
        }
        outcome.done += 1;
        if t1 >= window.end {
            break;
        }
        if t0 >= window.start {
            outcome.calls += 1;
            let ns = u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX);
            let _ = outcome.latency.record(ns.max(1));
        }
    }
    conn.close().await;
    outcome
}

/// One keep-alive HTTP/1.1 connection carrying one MCP session.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    authorization: Option<HeaderValue>,
    session: Option<HeaderValue>,
    timeout: Duration,
}

struct Reply {
    status: StatusCode,
    content_type: Option<HeaderValue>,
    session: Option<HeaderValue>,
    body: Bytes,
}

impl Reply {
    fn content_type(&self) -> &str {
        self.content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

impl Conn {
    async fn open(
        addr: SocketAddr,
        host: HeaderValue,
        authorization: Option<HeaderValue>,
        timeout: Duration,
    ) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut conn = Conn {
            sender,
            host,
            authorization,
            session: None,
            timeout,
        };
        let reply = conn
            .send(
                Method::POST,
                Bytes::from_static(workload::INITIALIZE.as_bytes()),
            )
            .await?;
        if reply.status != StatusCode::OK {
            bail!("initialize: HTTP {}", reply.status);
        }
        workload::check_initialize(reply.content_type(), &reply.body).map_err(|e| anyhow!(e))?;
        conn.session = Some(
            reply
                .session
                .context("initialize reply has no mcp-session-id")?,
        );
        let reply = conn
            .send(
                Method::POST,
                Bytes::from_static(workload::INITIALIZED.as_bytes()),
            )
            .await?;
        if !reply.status.is_success() {
            bail!("notifications/initialized: HTTP {}", reply.status);
        }
        Ok(conn)
    }

    async fn call(&mut self, kind: Calls, body: Bytes, id: u64) -> anyhow::Result<()> {
        let reply = self.send(Method::POST, body).await?;
        if reply.status != StatusCode::OK {
            bail!(
                "HTTP {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        kind.check(reply.content_type(), &reply.body, id)
            .map_err(|e| anyhow!(e))
    }

    async fn close(&mut self) {
        if self.session.is_some() {
            let _ = self.send(Method::DELETE, Bytes::new()).await;
        }
    }

    async fn send(&mut self, method: Method, body: Bytes) -> anyhow::Result<Reply> {
        let mut req = Request::builder()
            .method(method)
            .uri("/mcp")
            .header(HOST, self.host.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        if let Some(session) = &self.session {
            req = req
                .header("mcp-session-id", session.clone())
                .header("mcp-protocol-version", workload::PROTOCOL_VERSION);
        }
        if let Some(authorization) = &self.authorization {
            req = req.header(http::header::AUTHORIZATION, authorization.clone());
        }
        let req = req.body(Full::new(body))?;
        let exchange = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>((parts, body))
        };
        let (parts, body) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| anyhow!("no reply within {:?}", self.timeout))??;
        Ok(Reply {
            status: parts.status,
            content_type: parts.headers.get(CONTENT_TYPE).cloned(),
            session: parts.headers.get("mcp-session-id").cloned(),
            body,
        })
    }
}
