//! `cargo xtask test`: install what the tests need (pinned npm and PyPI
//! packages and Debian's Chromium, if missing), check the local services
//! answer, then run every check CI runs: fmt, clippy, docs, policy files,
//! the whole test suite (unit, integration, end-to-end with the official
//! SDKs and a browser, conformance), a build of the benchmarks, and a
//! short bounded run of each fuzz target.
//!
//! `cargo xtask deps` only installs; `cargo xtask test --quick` skips fmt,
//! clippy, docs, the benchmark build and the fuzzing; `cargo xtask fuzz` only
//! fuzzes (`WARDEN_FUZZ_SECONDS` per target, 20 by default).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&root, args.iter().any(|a| a == "--quick")),
        Some("deps") => deps(&root),
        Some("fuzz") => ensure_cargo_fuzz(&cargo()).and_then(|()| fuzz(&root, &cargo())),
        _ => {
            eprintln!("usage: cargo xtask test [--quick] | cargo xtask deps | cargo xtask fuzz");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err}");
            ExitCode::FAILURE
        }
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

type Result<T = ()> = std::result::Result<T, String>;

/// The cargo-fuzz release `deps` installs (from crates.io, `--locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// How long `test` runs each fuzz target, in seconds, unless
/// `WARDEN_FUZZ_SECONDS` says otherwise.
const FUZZ_SECONDS: u32 = 20;

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn run(what: &str, command: &mut Command) -> Result {
    eprintln!("==> {what}");
    let started = Instant::now();
    let status = command
        .status()
        .map_err(|err| format!("{what}: cannot start {:?}: {err}", command.get_program()))?;
    eprintln!("    ({what}: {:.1}s)", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn test(root: &Path, quick: bool) -> Result {
    deps(root)?;
    let cargo = cargo();
    if !quick {
        run(
            "cargo fmt --check",
            Command::new(&cargo)
                .current_dir(root)
                .args(["fmt", "--all", "--", "--check"]),
        )?;
        run(
            "cargo clippy -D warnings",
            Command::new(&cargo).current_dir(root).args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        )?;
        run(
            "cargo doc (broken links denied)",
            Command::new(&cargo)
                .current_dir(root)
                .env("RUSTDOCFLAGS", "-D warnings")
                .args(["doc", "--workspace", "--no-deps", "--exclude", "xtask"]),
        )?;
    }
    let policies = policy_files(root)?;
    let mut check = Command::new(&cargo);
    check
        .current_dir(root)
        .args(["run", "--quiet", "-p", "warden", "--", "policy", "check"])
        .args(&policies);
    run("warden policy check policies/*", &mut check)?;
    let deploy_configs = yaml_files(&root.join("deploy/config"))?;
    for config in &deploy_configs {
        run(
            &format!("warden check {}", config.display()),
            Command::new(&cargo)
                .current_dir(root)
                .args(["run", "--quiet", "-p", "warden", "--", "check"])
                .arg(config),
        )?;
    }
    run(
        "cargo test --workspace",
        Command::new(&cargo)
            .current_dir(root)
            .args(["test", "--workspace", "--no-fail-fast"]),
    )?;
    if !quick {
        run(
            "cargo bench --no-run",
            Command::new(&cargo)
                .current_dir(root)
                // CI only checks that the benchmarks build: unoptimized,
                // without LTO and with more codegen units the build takes a
                // fraction of the time (measurements use the real profile).
                .env("CARGO_PROFILE_BENCH_OPT_LEVEL", "0")
                .env("CARGO_PROFILE_BENCH_LTO", "false")
                .env("CARGO_PROFILE_BENCH_CODEGEN_UNITS", "256")
                .env("CARGO_PROFILE_BENCH_DEBUG", "false")
                .args(["bench", "--workspace", "--no-run"]),
        )?;
        fuzz(root, &cargo)?;
    }
    eprintln!("==> all checks passed");
    Ok(())
}

/// Build the fuzz targets (fuzz/, a workspace of its own) and run each for a
/// bounded time; a crash fails the run and leaves its input in
/// fuzz/artifacts/<target>/. No sanitizer: the code under test is safe Rust,
/// AddressSanitizer makes the fuzzer about five times slower, and without it
/// the build needs no nightly-only flag, so it runs on stable. New inputs go
/// to fuzz/target/corpus/<target>/; fuzz/corpus/ keeps only the seeds.
fn fuzz(root: &Path, cargo: &str) -> Result {
    let seconds = match std::env::var("WARDEN_FUZZ_SECONDS") {
        Ok(value) => value
            .parse::<u32>()
            .map_err(|err| format!("WARDEN_FUZZ_SECONDS={value:?}: {err}"))?,
        Err(_) => FUZZ_SECONDS,
    };
    let dir = root.join("fuzz");
    run(
        "cargo fuzz (bounded): build",
        Command::new(cargo)
            .current_dir(root)
            .args(["fuzz", "build", "--sanitizer", "none"]),
    )?;
    let list = Command::new(cargo)
        .current_dir(root)
        .args(["fuzz", "list"])
        .output()
        .map_err(|err| format!("cargo fuzz list: {err}"))?;
    if !list.status.success() {
        return Err(format!("cargo fuzz list failed ({})", list.status));
    }
    let listed = String::from_utf8_lossy(&list.stdout);
    let targets: Vec<&str> = listed.split_whitespace().collect();
    if targets.is_empty() {
        return Err("cargo fuzz list: no fuzz target".into());
    }
    for target in targets {
        let found = dir.join("target/corpus").join(target);
        std::fs::create_dir_all(&found)
            .map_err(|err| format!("creating {}: {err}", found.display()))?;
        let mut command = Command::new(cargo);
        command
            .current_dir(root)
            .args(["fuzz", "run", "--sanitizer", "none", target])
            .arg(&found)
            .arg(dir.join("corpus").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-dict={}", dir.join("jsonrpc.dict").display()))
            .args(["-rss_limit_mb=512", "-timeout=10", "-verbosity=0"])
            .arg("-print_final_stats=1");
        run(
            &format!("cargo fuzz (bounded): {target}, {seconds}s"),
            &mut command,
        )
        .map_err(|err| {
            format!("{err}: the input is in fuzz/artifacts/{target}/, see docs/fuzzing.md")
        })?;
    }
    Ok(())
}

fn policy_files(root: &Path) -> Result<Vec<PathBuf>> {
    let files = yaml_files(&root.join("policies"))?;
    if files.is_empty() {
        return Err("policies/ holds no .yaml file".into());
    }
    Ok(files)
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The end-to-end peers' folders (under `crates/e2e`). Each may hold a
/// `package-lock.json` (installed into its own `node_modules/`) and a
/// `requirements.txt` (installed into its own `.venv/`): one folder per
/// pinned set, since two lines of one SDK cannot share a venv.
const PEER_DIRS: [&str; 3] = ["peers", "peers/tasks", "conformance"];

/// Install the pinned test dependencies (cargo-fuzz, Debian's Chromium, the
/// end-to-end peers' npm and PyPI packages) when missing or changed.
fn deps(root: &Path) -> Result {
    ensure_services();
    ensure_cargo_fuzz(&cargo())?;
    ensure_chromium()?;
    let e2e = root.join("crates/e2e");
    for dir in PEER_DIRS {
        let dir = e2e.join(dir);
        if dir.join("package-lock.json").is_file() {
            npm_packages(&dir)?;
        }
        if dir.join("requirements.txt").is_file() {
            python_venv(&dir)?;
        }
    }
    Ok(())
}

/// The approvals page's end-to-end test drives Debian's Chromium through
/// Playwright (`playwright-core` downloads no browser, and nothing but the
/// package registries can be reached). Installed when missing; CI runs as
/// root.
fn ensure_chromium() -> Result {
    if Path::new("/usr/bin/chromium").is_file() {
        eprintln!("==> Chromium is installed");
        return Ok(());
    }
    run(
        "apt-get update",
        Command::new("apt-get").args(["update", "-qq"]),
    )?;
    run(
        "apt-get install chromium chromium-driver",
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ]),
    )
}

/// `npm ci` in `dir`, unless its `node_modules/` matches its lock file.
fn npm_packages(dir: &Path) -> Result {
    let stamp = "node_modules/.warden-stamp";
    if stamp_is_fresh(dir, "package-lock.json", stamp) {
        eprintln!("==> npm packages in {} are current", dir.display());
        return Ok(());
    }
    run(
        &format!("npm ci in {}", dir.display()),
        Command::new("npm").current_dir(dir).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]),
    )?;
    write_stamp(dir, "package-lock.json", stamp)
}

/// A venv at `dir/.venv` with `dir/requirements.txt` installed, unless it
/// already matches the file.
fn python_venv(dir: &Path) -> Result {
    let stamp = ".venv/.warden-stamp";
    if stamp_is_fresh(dir, "requirements.txt", stamp) {
        eprintln!("==> Python packages in {} are current", dir.display());
        return Ok(());
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        &format!("python venv in {}", dir.display()),
        Command::new(&python)
            .current_dir(dir)
            .args(["-m", "venv", ".venv"]),
    )?;
    run(
        &format!("pip install in {}", dir.display()),
        Command::new(dir.join(".venv/bin/pip"))
            .current_dir(dir)
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                "requirements.txt",
            ]),
    )?;
    write_stamp(dir, "requirements.txt", stamp)
}

fn ensure_cargo_fuzz(cargo: &str) -> Result {
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let installed = Command::new(cargo)
        .args(["fuzz", "--version"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned());
    if installed.as_deref() == Some(wanted.as_str()) {
        eprintln!("==> {wanted} is installed");
        return Ok(());
    }
    run(
        &format!("cargo install {wanted}"),
        Command::new(cargo).args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
        ]),
    )
}

fn stamp_is_fresh(dir: &Path, source: &str, stamp: &str) -> bool {
    match (
        std::fs::read(dir.join(source)),
        std::fs::read(dir.join(stamp)),
    ) {
        (Ok(source), Ok(stamp)) => source == stamp,
        _ => false,
    }
}

fn write_stamp(dir: &Path, source: &str, stamp: &str) -> Result {
    std::fs::copy(dir.join(source), dir.join(stamp))
        .map(|_| ())
        .map_err(|err| format!("writing {stamp}: {err}"))
}

/// PostgreSQL and Redis back Warden's scale stores; later tests use the real
/// servers. Start them if they are installed but down.
fn ensure_services() {
    if succeeds("pg_isready", &["-h", "127.0.0.1", "-p", "5432"]) {
        eprintln!("==> PostgreSQL answers on 127.0.0.1:5432");
    } else if Path::new("/etc/postgresql").is_dir() {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        if let Some(version) = version {
            let _ = run(
                "start PostgreSQL",
                Command::new("pg_ctlcluster").args([
                    "--skip-systemctl-redirect",
                    &version,
                    "main",
                    "start",
                ]),
            );
        }
    }
    if succeeds("redis-cli", &["-h", "127.0.0.1", "-p", "6379", "ping"]) {
        eprintln!("==> Redis answers on 127.0.0.1:6379");
    } else if succeeds("which", &["redis-server"]) {
        let _ = run(
            "start Redis",
            Command::new("redis-server").args([
                "--daemonize",
                "yes",
                "--bind",
                "127.0.0.1",
                "-::1",
                "--port",
                "6379",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                "/var/lib/redis",
                "--logfile",
                "/var/log/redis/ci.log",
            ]),
        );
    }
}
