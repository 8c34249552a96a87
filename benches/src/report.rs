//! Results of the load benchmark: per-run measurements, their aggregation
//! over rounds, and the markdown table with ratios and target checks.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::workload::Calls;

/// What a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Target {
    /// Straight to the upstream MCP server.
    Direct,
    /// Through nginx (plain HTTP reverse proxy, keep-alive upstream).
    Nginx,
    /// Through Warden with its full pipeline, no audit trail.
    Warden,
    /// Through Warden with the audit trail in JSON Lines files (temp dir).
    WardenAudit,
    /// Through Warden with the audit trail in PostgreSQL (a fresh schema).
    WardenAuditPg,
    /// Through Warden (no audit trail) on a route whose callers send an API key.
    WardenApiKey,
    /// Through Warden (no audit trail) on a route whose callers send an
    /// ES256 JWT (the same token per session: its verdict is cached).
    WardenJwt,
}

impl Target {
    /// Every target, in report order.
    pub const ALL: [Target; 7] = [
        Target::Direct,
        Target::Nginx,
        Target::Warden,
        Target::WardenAudit,
        Target::WardenAuditPg,
        Target::WardenApiKey,
        Target::WardenJwt,
    ];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Warden => "warden",
            Target::WardenAudit => "warden-audit",
            Target::WardenAuditPg => "warden-audit-pg",
            Target::WardenApiKey => "warden-api-key",
            Target::WardenJwt => "warden-jwt",
        }
    }

    /// Whether this target is a Warden process.
    pub fn is_warden(self) -> bool {
        matches!(
            self,
            Target::Warden
                | Target::WardenAudit
                | Target::WardenAuditPg
                | Target::WardenApiKey
                | Target::WardenJwt
        )
    }

    /// The audit sink, for a Warden with an audit trail.
    pub fn audit_sink(self) -> Option<&'static str> {
        match self {
            Target::WardenAudit => Some("file"),
            Target::WardenAuditPg => Some("PostgreSQL"),
            _ => None,
        }
    }
}

/// A latency histogram in nanoseconds (1 ns .. 60 s, 3 significant digits).
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// One measured run: one target, one concurrency, one round.
#[derive(Debug, Clone)]
pub struct Run {
    /// The target.
    pub target: Target,
    /// Which tool was called.
    pub calls_kind: Calls,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Round number (1-based).
    pub round: u32,
    /// Length of the measured window.
    pub window: Duration,
    /// Successful calls that started and finished inside the window.
    pub calls: u64,
    /// Failed calls or session set-ups, warm-up included.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// Latency of the counted calls, in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU ticks the proxy process(es) used in the window (None for direct).
    pub proxy_ticks: Option<u64>,
    /// CPU ticks the audit store (every `postgres` process on the machine)
    /// used in the window, for the PostgreSQL target.
    pub store_ticks: Option<u64>,
    /// CPU ticks the upstream used in the window.
    pub upstream_ticks: u64,
    /// CPU ticks the load generator used in the window.
    pub client_ticks: u64,
    /// Peak RSS of the proxy process(es) during the run, in KiB (summed over
    /// nginx's master and workers).
    pub proxy_peak_rss_kib: Option<u64>,
    /// Context switches of the proxy process(es) in the window.
    pub proxy_switches: Option<u64>,
    /// Busy CPU ticks of the whole machine in the window that none of the
    /// measured processes account for: other programs (noise).
    pub background_ticks: u64,
}

impl Run {
    /// Calls per second in the window.
    pub fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    /// Proxy CPU microseconds per call.
    pub fn proxy_cpu_us_per_call(&self, ticks_per_second: u64) -> Option<f64> {
        let ticks = self.proxy_ticks?;
        (self.calls > 0).then(|| ticks as f64 * 1e6 / ticks_per_second as f64 / self.calls as f64)
    }
}

/// Several rounds of one target at one concurrency, merged.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The target.
    pub target: Target,
    /// Which tool was called.
    pub calls_kind: Calls,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Rounds merged.
    pub rounds: usize,
    /// Total measured time.
    pub window: Duration,
    /// Total counted calls.
    pub calls: u64,
    /// Total errors.
    pub errors: u64,
    /// First error seen.
    pub first_error: Option<String>,
    /// Merged latency histogram (ns).
    pub latency: Histogram<u64>,
    /// Total proxy CPU ticks.
    pub proxy_ticks: Option<u64>,
    /// Total audit store CPU ticks (PostgreSQL target).
    pub store_ticks: Option<u64>,
    /// Total upstream CPU ticks.
    pub upstream_ticks: u64,
    /// Total client CPU ticks.
    pub client_ticks: u64,
    /// Highest per-run proxy peak RSS, KiB.
    pub proxy_peak_rss_kib: Option<u64>,
    /// Total proxy context switches.
    pub proxy_switches: Option<u64>,
    /// Total background ticks.
    pub background_ticks: u64,
    /// Calls/s of each round.
    pub per_round: Vec<f64>,
    /// Proxy CPU µs/call of each round (empty for direct).
    pub per_round_cpu: Vec<f64>,
}

impl Summary {
    /// Merge the runs of `target` calling `calls_kind` at `concurrency`;
    /// None if there are none.
    pub fn of(
        runs: &[Run],
        target: Target,
        calls_kind: Calls,
        concurrency: usize,
        ticks_per_second: u64,
    ) -> Option<Summary> {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| {
                r.target == target && r.calls_kind == calls_kind && r.concurrency == concurrency
            })
            .collect();
        let first = mine.first()?;
        let mut latency = new_histogram();
        for r in &mine {
            latency.add(&r.latency).expect("same histogram bounds");
        }
        let sum_opt = |f: fn(&Run) -> Option<u64>| {
            mine.iter()
                .map(|r| f(r))
                .try_fold(0u64, |acc, v| v.map(|v| acc + v))
        };
        Some(Summary {
            target,
            calls_kind,
            concurrency,
            rounds: mine.len(),
            window: mine.iter().map(|r| r.window).sum(),
            calls: mine.iter().map(|r| r.calls).sum(),
            errors: mine.iter().map(|r| r.errors).sum(),
            first_error: mine.iter().find_map(|r| r.first_error.clone()),
            latency,
            proxy_ticks: if first.proxy_ticks.is_some() {
                sum_opt(|r| r.proxy_ticks)
            } else {
                None
            },
            store_ticks: if first.store_ticks.is_some() {
                sum_opt(|r| r.store_ticks)
            } else {
                None
            },
            upstream_ticks: mine.iter().map(|r| r.upstream_ticks).sum(),
            client_ticks: mine.iter().map(|r| r.client_ticks).sum(),
            proxy_peak_rss_kib: mine.iter().filter_map(|r| r.proxy_peak_rss_kib).max(),
            proxy_switches: if first.proxy_switches.is_some() {
                sum_opt(|r| r.proxy_switches)
            } else {
                None
            },
            background_ticks: mine.iter().map(|r| r.background_ticks).sum(),
            per_round: mine.iter().map(|r| r.calls_per_second()).collect(),
            per_round_cpu: mine
                .iter()
                .filter_map(|r| r.proxy_cpu_us_per_call(ticks_per_second))
                .collect(),
        })
    }

    /// Calls per second over all rounds.
    pub fn calls_per_second(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    /// Latency quantile in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// CPU microseconds per call for `ticks`.
    pub fn cpu_us_per_call(&self, ticks: u64, ticks_per_second: u64) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        ticks as f64 * 1e6 / ticks_per_second as f64 / self.calls as f64
    }

    /// Background CPU (other programs) during the windows, % of one core.
    pub fn background_percent(&self, ticks_per_second: u64) -> f64 {
        self.background_ticks as f64 * 100.0 / ticks_per_second as f64 / self.window.as_secs_f64()
    }

    /// Proxy CPU µs per call over all rounds.
    pub fn proxy_cpu(&self, ticks_per_second: u64) -> Option<f64> {
        self.proxy_ticks
            .map(|t| self.cpu_us_per_call(t, ticks_per_second))
    }

    /// Proxy plus audit store CPU µs per call over all rounds.
    pub fn proxy_and_store_cpu(&self, ticks_per_second: u64) -> Option<f64> {
        self.proxy_ticks
            .map(|t| self.cpu_us_per_call(t + self.store_ticks.unwrap_or(0), ticks_per_second))
    }

    /// Whether the run is valid (no errors, some calls).
    pub fn valid(&self) -> bool {
        self.errors == 0 && self.calls > 0
    }
}

/// Targets from the issue.
pub mod targets {
    /// Warden's added median latency over direct at concurrency 1, µs.
    pub const ADDED_P50_US_AT_1: f64 = 30.0;
    /// Warden's calls/s over nginx's at concurrency 32.
    pub const WARDEN_OVER_NGINX_AT_32: f64 = 0.85;
    /// Warden's peak RSS, MB (10^6 bytes).
    pub const PEAK_RSS_MB: f64 = 20.0;
    /// Issue 9: Warden with audit over Warden without, CPU per read call.
    pub const AUDIT_READ_CPU_RATIO: f64 = 1.10;
    /// Issue 9: durable write calls' calls/s over read calls' at 32 clients.
    pub const WRITE_OVER_READ_AT_32: f64 = 0.50;
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "—".to_owned(),
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**missed**" }
}

/// The markdown report: table, ratios, targets.
pub fn markdown(summaries: &[Summary], ticks_per_second: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| clients | calls | target | calls/s | calls/s per round | p50 µs | p99 µs | proxy CPU µs/call | store CPU µs/call | upstream CPU µs/call | load-gen CPU µs/call | proxy ctx switches/call | proxy peak RSS MB | background CPU % | errors |"
    );
    let _ = writeln!(
        out,
        "|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for s in summaries {
        let rounds: Vec<String> = s.per_round.iter().map(|c| format!("{c:.0}")).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {}{} | {:.0} | {} | {:.1} | {:.1} | {} | {} | {:.1} | {:.1} | {} | {} | {:.0} | {} |",
            s.concurrency,
            s.calls_kind.name(),
            s.target.name(),
            if s.valid() { "" } else { " (INVALID)" },
            s.calls_per_second(),
            rounds.join(" / "),
            s.quantile_us(0.5),
            s.quantile_us(0.99),
            opt(s.proxy_cpu(ticks_per_second), 1),
            opt(
                s.store_ticks
                    .map(|t| s.cpu_us_per_call(t, ticks_per_second)),
                1
            ),
            s.cpu_us_per_call(s.upstream_ticks, ticks_per_second),
            s.cpu_us_per_call(s.client_ticks, ticks_per_second),
            opt(
                s.proxy_switches
                    .filter(|_| s.calls > 0)
                    .map(|n| n as f64 / s.calls as f64),
                2
            ),
            opt(s.proxy_peak_rss_kib.map(mb), 1),
            s.background_percent(ticks_per_second),
            s.errors,
        );
    }

    let find = |t: Target, k: Calls, c: usize| {
        summaries
            .iter()
            .find(|s| s.target == t && s.calls_kind == k && s.concurrency == c)
    };
    let mut concurrencies: Vec<usize> = summaries.iter().map(|s| s.concurrency).collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    let mut kinds: Vec<Calls> = summaries.iter().map(|s| s.calls_kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let read = |t: Target, c: usize| find(t, Calls::Read, c);

    if summaries
        .iter()
        .any(|s| s.calls_kind == Calls::Read && s.target.audit_sink().is_none())
    {
        let _ = writeln!(
            out,
            "\nRatios, read calls (calls/s ratio; added p50 = target p50 − direct p50):\n"
        );
        let _ = writeln!(
            out,
            "| clients | nginx/direct calls/s | warden/direct calls/s | warden/nginx calls/s | nginx added p50 µs | warden added p50 µs | warden − nginx p50 µs |"
        );
        let _ = writeln!(out, "|---:|---:|---:|---:|---:|---:|---:|");
        for &c in &concurrencies {
            let d = read(Target::Direct, c);
            let n = read(Target::Nginx, c);
            let w = read(Target::Warden, c);
            let _ = writeln!(
                out,
                "| {c} | {} | {} | {} | {} | {} | {} |",
                opt(ratio(n, d), 3),
                opt(ratio(w, d), 3),
                opt(ratio(w, n), 3),
                opt(added(n, d), 1),
                opt(added(w, d), 1),
                opt(added(w, n), 1),
            );
        }
    }

    // The audit trail against Warden without it, same calls, same clients.
    let audited: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.target.audit_sink().is_some())
        .collect();
    if !audited.is_empty() {
        let _ = writeln!(
            out,
            "\nAudit trail vs Warden without audit (same calls, same clients; CPU ratio = proxy CPU per call over Warden's; store CPU is PostgreSQL's, on top):\n"
        );
        let _ = writeln!(
            out,
            "| clients | calls | target | proxy CPU µs/call per round | CPU/call vs warden | (proxy + store) CPU/call vs warden | calls/s vs warden | added p50 µs over warden |"
        );
        let _ = writeln!(out, "|---:|---|---|---|---:|---:|---:|---:|");
        for &k in &kinds {
            for &c in &concurrencies {
                let w = find(Target::Warden, k, c);
                for t in [Target::Warden, Target::WardenAudit, Target::WardenAuditPg] {
                    let Some(a) = find(t, k, c) else { continue };
                    let rounds: Vec<String> =
                        a.per_round_cpu.iter().map(|c| format!("{c:.1}")).collect();
                    let _ = writeln!(
                        out,
                        "| {c} | {} | {} | {} | {} | {} | {} | {} |",
                        k.name(),
                        t.name(),
                        rounds.join(" / "),
                        opt(cpu_ratio(Some(a), w, ticks_per_second, false), 3),
                        opt(cpu_ratio(Some(a), w, ticks_per_second, true), 3),
                        opt(ratio(Some(a), w), 3),
                        opt(added(Some(a), w), 1),
                    );
                }
            }
        }
    }

    let _ = writeln!(out, "\nTargets (Warden, full pipeline, read calls):\n");
    if let (Some(w), Some(d)) = (read(Target::Warden, 1), read(Target::Direct, 1)) {
        let added = w.quantile_us(0.5) - d.quantile_us(0.5);
        let _ = writeln!(
            out,
            "- added p50 over direct at 1 client < {} µs: {added:.1} µs → {}",
            targets::ADDED_P50_US_AT_1,
            verdict(added < targets::ADDED_P50_US_AT_1 && w.valid() && d.valid())
        );
    }
    if let (Some(w), Some(n)) = (read(Target::Warden, 32), read(Target::Nginx, 32)) {
        let ratio = w.calls_per_second() / n.calls_per_second();
        let _ = writeln!(
            out,
            "- calls/s at 32 clients ≥ {}× nginx: {ratio:.3}× → {}",
            targets::WARDEN_OVER_NGINX_AT_32,
            verdict(ratio >= targets::WARDEN_OVER_NGINX_AT_32 && w.valid() && n.valid())
        );
    }
    let peak = summaries
        .iter()
        .filter(|s| s.target.is_warden())
        .filter_map(|s| s.proxy_peak_rss_kib)
        .max();
    if let Some(peak) = peak {
        let _ = writeln!(
            out,
            "- peak RSS < {} MB (every Warden target): {:.1} MB → {}",
            targets::PEAK_RSS_MB,
            mb(peak),
            verdict(mb(peak) < targets::PEAK_RSS_MB)
        );
    }

    if !audited.is_empty() {
        let _ = writeln!(out, "\nTargets (issue 9, the audit trail):\n");
        for &c in &concurrencies {
            for t in [Target::WardenAudit, Target::WardenAuditPg] {
                let (Some(a), Some(w)) = (read(t, c), read(Target::Warden, c)) else {
                    continue;
                };
                let (Some(r), Some(with_store)) = (
                    cpu_ratio(Some(a), Some(w), ticks_per_second, false),
                    cpu_ratio(Some(a), Some(w), ticks_per_second, true),
                ) else {
                    continue;
                };
                let store = if a.store_ticks.is_some() {
                    format!(" (with PostgreSQL's own CPU: {with_store:.3}×)")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "- audit ({}) on read calls at {c} client(s): CPU per call ≤ {}× Warden without audit: {r:.3}× ({:+.1} µs){store} → {}",
                    t.audit_sink().unwrap_or_default(),
                    targets::AUDIT_READ_CPU_RATIO,
                    a.proxy_cpu(ticks_per_second).unwrap_or(f64::NAN)
                        - w.proxy_cpu(ticks_per_second).unwrap_or(f64::NAN),
                    verdict(r <= targets::AUDIT_READ_CPU_RATIO && a.valid() && w.valid())
                );
            }
        }
        for t in [Target::WardenAudit, Target::WardenAuditPg] {
            let Some(wr) = find(t, Calls::Write, 32) else {
                continue;
            };
            let Some(rd) = read(t, 32) else { continue };
            let r = wr.calls_per_second() / rd.calls_per_second();
            let plain = read(Target::Warden, 32)
                .map(|w| {
                    format!(
                        "; against Warden without audit, read calls: {:.3}×",
                        wr.calls_per_second() / w.calls_per_second()
                    )
                })
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "- durable write calls ({}) at 32 clients ≥ {}× the read-call calls/s of the same target: {r:.3}×{plain} → {}",
                t.audit_sink().unwrap_or_default(),
                targets::WRITE_OVER_READ_AT_32,
                verdict(r >= targets::WRITE_OVER_READ_AT_32 && wr.valid() && rd.valid())
            );
        }
    }

    let invalid: Vec<&Summary> = summaries.iter().filter(|s| !s.valid()).collect();
    for s in invalid {
        let _ = writeln!(
            out,
            "- INVALID: {} ({} calls) at {} clients had {} error(s); first: {}",
            s.target.name(),
            s.calls_kind.name(),
            s.concurrency,
            s.errors,
            s.first_error.as_deref().unwrap_or("no calls counted")
        );
    }
    out
}

fn ratio(a: Option<&Summary>, b: Option<&Summary>) -> Option<f64> {
    Some(a?.calls_per_second() / b?.calls_per_second())
}

fn added(a: Option<&Summary>, b: Option<&Summary>) -> Option<f64> {
    Some(a?.quantile_us(0.5) - b?.quantile_us(0.5))
}

/// `a`'s proxy CPU per call over `b`'s (with `a`'s store CPU when
/// `with_store`).
fn cpu_ratio(
    a: Option<&Summary>,
    b: Option<&Summary>,
    ticks_per_second: u64,
    with_store: bool,
) -> Option<f64> {
    let (a, b) = (a?, b?);
    let top = if with_store {
        a.proxy_and_store_cpu(ticks_per_second)?
    } else {
        a.proxy_cpu(ticks_per_second)?
    };
    Some(top / b.proxy_cpu(ticks_per_second)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: Target, concurrency: usize, calls: u64, p50_ns: u64) -> Run {
        run_of(target, Calls::Read, concurrency, calls, p50_ns, 10)
    }

    fn run_of(
        target: Target,
        calls_kind: Calls,
        concurrency: usize,
        calls: u64,
        p50_ns: u64,
        proxy_ticks: u64,
    ) -> Run {
        let mut latency = new_histogram();
        latency.record_n(p50_ns, calls).expect("record");
        Run {
            target,
            calls_kind,
            concurrency,
            round: 1,
            window: Duration::from_secs(1),
            calls,
            errors: 0,
            first_error: None,
            latency,
            proxy_ticks: (target != Target::Direct).then_some(proxy_ticks),
            store_ticks: (target == Target::WardenAuditPg).then_some(1),
            upstream_ticks: 20,
            client_ticks: 30,
            proxy_peak_rss_kib: (target != Target::Direct).then_some(8000),
            proxy_switches: (target != Target::Direct).then_some(calls * 2),
            background_ticks: 1,
        }
    }

    fn summaries(runs: &[Run]) -> Vec<Summary> {
        let mut out = Vec::new();
        for k in [Calls::Read, Calls::Write] {
            for c in [1, 32] {
                for t in Target::ALL {
                    out.extend(Summary::of(runs, t, k, c, 100));
                }
            }
        }
        out
    }

    #[test]
    fn summarises_and_checks_targets() {
        let runs = vec![
            run(Target::Direct, 1, 10_000, 50_000),
            run(Target::Nginx, 1, 8_000, 70_000),
            run(Target::Warden, 1, 7_000, 75_000),
            run(Target::Direct, 32, 40_000, 500_000),
            run(Target::Nginx, 32, 30_000, 700_000),
            run(Target::Warden, 32, 27_000, 900_000),
        ];
        let summaries = summaries(&runs);
        let w = &summaries[2];
        assert_eq!(w.calls, 7_000);
        assert!((w.cpu_us_per_call(10, 100) - 100_000.0 / 7_000.0).abs() < 1e-9);
        let text = markdown(&summaries, 100);
        assert!(text.contains("| 1 | read | warden | 7000 |"), "{text}");
        assert!(
            text.contains("added p50 over direct at 1 client < 30 µs: 25.0 µs → **met**"),
            "{text}"
        );
        assert!(
            text.contains("calls/s at 32 clients ≥ 0.85× nginx: 0.900× → **met**"),
            "{text}"
        );
        assert!(
            text.contains("peak RSS < 20 MB (every Warden target): 8.2 MB → **met**"),
            "{text}"
        );
        assert!(!text.contains("audit"), "{text}");
    }

    #[test]
    fn checks_the_audit_targets() {
        let runs = vec![
            // Read calls: 100 ticks/s over 10 000 calls = 100 µs/call for
            // Warden; the file sink 105 (met), PostgreSQL 120 (missed).
            run_of(Target::Warden, Calls::Read, 32, 10_000, 900_000, 100),
            run_of(Target::WardenAudit, Calls::Read, 32, 10_000, 950_000, 105),
            run_of(Target::WardenAuditPg, Calls::Read, 32, 10_000, 990_000, 120),
            // Write calls: 6 000/s with files (0.6× met), 4 000 with PostgreSQL.
            run_of(Target::Warden, Calls::Write, 32, 9_000, 900_000, 100),
            run_of(Target::WardenAudit, Calls::Write, 32, 6_000, 900_000, 100),
            run_of(Target::WardenAuditPg, Calls::Write, 32, 4_000, 900_000, 100),
        ];
        let text = markdown(&summaries(&runs), 100);
        assert!(
            text.contains("| 32 | read | warden-audit | 105.0 | 1.050 | 1.050 | 1.000 | 50.2 |"),
            "{text}"
        );
        assert!(
            text.contains("audit (file) on read calls at 32 client(s): CPU per call ≤ 1.1× Warden without audit: 1.050× (+5.0 µs) → **met**"),
            "{text}"
        );
        assert!(
            text.contains("audit (PostgreSQL) on read calls at 32 client(s): CPU per call ≤ 1.1× Warden without audit: 1.200× (+20.0 µs) (with PostgreSQL's own CPU: 1.210×) → **missed**"),
            "{text}"
        );
        assert!(
            text.contains("durable write calls (file) at 32 clients ≥ 0.5× the read-call calls/s of the same target: 0.600×; against Warden without audit, read calls: 0.600× → **met**"),
            "{text}"
        );
        assert!(
            text.contains("durable write calls (PostgreSQL) at 32 clients ≥ 0.5× the read-call calls/s of the same target: 0.400×"),
            "{text}"
        );
    }
}
