//! Policy hot reload: each route's policy file is checked every
//! `limits.reload_interval` (and at once on SIGHUP); a changed file is
//! parsed and validated in full, then swapped in atomically. A file that
//! does not validate changes nothing: the last good policy stays in force
//! and every error is logged with its line and column.
//!
//! Polling the file's modification time and contents (rather than inotify)
//! also follows the symlink swaps Kubernetes uses to update a mounted
//! ConfigMap.
//!
//! A file rewritten in place (not renamed over) can be read half-written,
//! and half a policy may well be valid: its permissive first half, say. So
//! a change is only read as a policy once it is stable: the same bytes and
//! modification time on two reads `limits.reload_settle` apart (one wait
//! for all the files that changed). A file still changing is left for the
//! next check. A change that parses to the policy in force changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use warden_pipeline::SharedPolicy;
use warden_policy::Policy;

/// One watched policy file and the route snapshot it feeds.
pub struct WatchedPolicy {
    /// The route path (for logs).
    pub route: Arc<str>,
    /// The file.
    pub file: PathBuf,
    /// The snapshot the route's pipeline reads.
    pub policy: SharedPolicy,
    /// Where a policy coming into force is recorded.
    pub audit: Option<warden_audit::AuditLog>,
    /// Whether `hash` redaction rules can be applied (a key is configured).
    pub redaction_key: bool,
    /// The credentials the route defines (a policy may name only these).
    pub credentials: Vec<String>,
}

/// Counters of reload outcomes.
#[derive(Clone)]
pub struct ReloadCounters {
    /// Reloads that took effect.
    pub applied: Counter,
    /// Changed files that did not validate (the last good policy stayed).
    pub rejected: Counter,
}

/// How often policy files are looked at, and how long a change must hold.
#[derive(Debug, Clone, Copy)]
pub struct ReloadTiming {
    /// Time between checks (`limits.reload_interval`).
    pub interval: Duration,
    /// Time a changed file must stay the same before it is read
    /// (`limits.reload_settle`).
    pub settle: Duration,
}

/// The state of one file as last seen.
#[derive(PartialEq, Eq)]
struct Seen {
    modified: Option<SystemTime>,
    text: Option<String>,
}

/// Check the files until `stop` resolves.
pub async fn watch(
    files: Vec<WatchedPolicy>,
    timing: ReloadTiming,
    counters: ReloadCounters,
    stop: impl std::future::Future<Output = ()>,
) {
    // First of all: SIGHUP's default action would end the process.
    let mut hangup = hangup_signal();
    if files.is_empty() {
        return;
    }
    let mut stop = std::pin::pin!(stop);
    // Nothing seen yet: the first round looks at every file, so an edit
    // made between loading the config and now counts too.
    let mut seen: Vec<Option<Seen>> = files.iter().map(|_| None).collect();
    loop {
        let changed: Vec<(usize, Seen)> = files
            .iter()
            .zip(&seen)
            .enumerate()
            .map(|(index, (watched, last))| (index, read(&watched.file), last))
            .filter(|(_, now, last)| last.as_ref() != Some(now))
            .map(|(index, now, _)| (index, now))
            .collect();
        if !changed.is_empty() {
            // One wait for every changed file (a ConfigMap update changes
            // several at once), then each is read again.
            tokio::select! {
                () = tokio::time::sleep(timing.settle) => {}
                () = &mut stop => return,
            }
            for (index, first) in changed {
                let watched = &files[index];
                if read(&watched.file) != first {
                    tracing::info!(route = %watched.route, file = %watched.file.display(), "Policy file is still being written; checked again later.");
                    continue;
                }
                apply(watched, &first, &counters);
                seen[index] = Some(first);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(timing.interval) => {}
            () = next_hangup(&mut hangup) => tracing::info!("SIGHUP: checking policy files."),
            () = &mut stop => return,
        }
    }
}

/// Put a file's new content in force, or say why not.
fn apply(watched: &WatchedPolicy, now: &Seen, counters: &ReloadCounters) {
    match now
        .text
        .as_deref()
        .map(|text| Policy::from_yaml_str(text, &watched.file.display().to_string()))
    {
        Some(Ok(policy)) if policy == **watched.policy.load() => {}
        Some(Ok(policy)) if policy.redaction().uses_hash() && !watched.redaction_key => {
            counters.rejected.inc();
            tracing::error!(route = %watched.route, file = %watched.file.display(), "Policy file changed but has `hash` redaction rules and no audit.redaction_key_file is configured; the last good policy stays in force.");
        }
        Some(Ok(policy))
            if policy
                .credentials_named()
                .any(|name| !watched.credentials.iter().any(|c| c == name)) =>
        {
            counters.rejected.inc();
            let undefined: Vec<&str> = policy
                .credentials_named()
                .filter(|name| !watched.credentials.iter().any(|c| c == name))
                .collect();
            tracing::error!(route = %watched.route, file = %watched.file.display(), credentials = ?undefined, "Policy file changed but gives a tool a credential the route does not define; the last good policy stays in force.");
        }
        Some(Ok(policy)) => {
            if let Some(audit) = &watched.audit {
                crate::audit::record_policy_loaded(audit, &watched.route, &policy, "reload");
            }
            watched.policy.store(Arc::new(policy));
            counters.applied.inc();
            tracing::info!(route = %watched.route, file = %watched.file.display(), "Policy reloaded.");
        }
        Some(Err(err)) => {
            counters.rejected.inc();
            tracing::error!(route = %watched.route, errors = %err, "Policy file changed but is invalid; the last good policy stays in force.");
        }
        None => {
            counters.rejected.inc();
            tracing::error!(route = %watched.route, file = %watched.file.display(), "Policy file cannot be read; the last good policy stays in force.");
        }
    }
}

fn read(file: &std::path::Path) -> Seen {
    Seen {
        modified: std::fs::metadata(file).and_then(|m| m.modified()).ok(),
        text: std::fs::read_to_string(file).ok(),
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

async fn next_hangup(hangup: &mut Hangup) {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        signal.recv().await;
        return;
    }
    let _ = hangup;
    std::future::pending::<()>().await;
}
