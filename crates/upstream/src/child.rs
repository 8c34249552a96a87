//! A stdio upstream: one child process, newline-delimited JSON-RPC on its
//! stdin and stdout, its stderr relayed to Warden's log.
//!
//! The child gets exactly the environment the config names, never
//! Warden's own (which may hold Warden's secrets). It leads a process group
//! of its own, so whatever it starts (`npx`, `uvx` and `sh -c` wrappers
//! start the real server as a grandchild) is stopped with it: asked to stop,
//! the child has its stdin closed, then the group gets SIGTERM, then
//! SIGKILL, as the MCP stdio transport prescribes; when the child exits on
//! its own, what is left of its group is killed.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use bytes::Bytes;
use tokio::io::BufReader;
use tokio::process::Command;
use tokio::sync::oneshot;

use super::bridge::{Link, LinkEnd, LinkEvent};
use super::{MAX_INSPECTED_REPLY, preview};
use crate::config::StdioCommand;
use crate::line_io::{LineEnds, WriteLineError, read_line_capped, write_message};

/// Longest stderr line kept for the log; the rest of the line is cut.
const MAX_STDERR_LINE: usize = 8 << 10;

/// How long a child has to exit after its stdin is closed, then after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// How long the stdout reader may go on after the child exited (a
/// grandchild may hold stdout open) before the link is reported closed.
const READER_GRACE: Duration = Duration::from_secs(1);

/// Start the child and link to it.
pub(super) fn spawn(route: &Arc<str>, command: &StdioCommand) -> Result<Link, String> {
    let mut process = Command::new(&command.program);
    process
        .args(&command.args)
        .env_clear()
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &command.cwd {
        process.current_dir(dir);
    }
    // This lane's credentials, read now (a rotated file reaches new children).
    for credential in &command.secrets {
        if let Some((name, value)) = credential
            .env_pair()
            .map_err(|err| format!("could not be started ({err})"))?
        {
            process.env(name, value.expose());
        }
    }
    let mut child = process
        .spawn()
        .map_err(|err| format!("could not be started ({}: {err})", command.display()))?;
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err("could not be started (no pipes to the child)".to_owned());
    };
    let pid = child.id().unwrap_or_default();
    tracing::info!(route = %route, pid, command = %command.display(), "Upstream process started.");

    let (link, end) = Link::pair();
    let LinkEnd {
        to_server: mut to_child,
        events,
        stopped,
        finished,
    } = end;
    let (close_stdin, stdin_closed) = oneshot::channel::<()>();

    let refusals = events.clone();
    tokio::spawn(async move {
        let mut stdin_closed = stdin_closed;
        loop {
            let message = tokio::select! {
                message = to_child.recv() => message,
                _ = &mut stdin_closed => None,
            };
            let Some(message) = message else { break };
            // One line per message, whatever its bytes: the child's line
            // reader must not find a second message inside this one.
            match write_message(&mut stdin, &message).await {
                Ok(()) => {}
                Err(WriteLineError::NotAMessage(err)) => {
                    let _ = refusals.send(LinkEvent::Refused {
                        message,
                        detail: format!("was not sent a message Warden could not frame ({err})"),
                    });
                }
                // The child is gone; the waiter reports why.
                Err(WriteLineError::Io(_)) => break,
            }
        }
        // Dropping stdin closes it: the child's signal to exit.
    });

    let log_route = route.clone();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line_capped(&mut reader, &mut line, MAX_STDERR_LINE, LineEnds::Lf).await {
                Ok(None) | Err(_) => break,
                Ok(Some(_)) => {
                    let text = String::from_utf8_lossy(line.trim_ascii_end());
                    tracing::info!(target: "warden::upstream::stderr", route = %log_route, pid, "{text}");
                }
            }
        }
    });

    let stdout_events = events.clone();
    let reader = tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line_capped(&mut reader, &mut line, MAX_INSPECTED_REPLY, LineEnds::Lf).await
            {
                Ok(None) | Err(_) => break,
                Ok(Some(false)) => {
                    let _ = stdout_events.send(LinkEvent::Garbage(format!(
                        "a line longer than {} MiB",
                        MAX_INSPECTED_REPLY >> 20
                    )));
                }
                Ok(Some(true)) => {
                    let message = line.trim_ascii();
                    if message.is_empty() {
                        continue;
                    }
                    let event = if is_json_rpc(message) {
                        LinkEvent::Message(Bytes::copy_from_slice(message))
                    } else {
                        LinkEvent::Garbage(preview(message))
                    };
                    if stdout_events.send(event).is_err() {
                        break;
                    }
                }
            }
        }
    });

    let group = i32::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .map(Pid::from_raw);
    tokio::spawn(async move {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stopped => {
                let _ = close_stdin.send(());
                match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        signal_group(group, Signal::SIGTERM);
                        match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
                            Ok(status) => status,
                            Err(_) => {
                                let _ = child.start_kill();
                                child.wait().await
                            }
                        }
                    }
                }
            }
        };
        // Whatever the child left running in its group goes with it: asked
        // first, then killed.
        stop_group(group).await;
        // Every message the child wrote before it died is delivered first;
        // a reader still blocked after that (a process that left the group
        // holds stdout) is given up.
        let mut reader = reader;
        if tokio::time::timeout(READER_GRACE, &mut reader)
            .await
            .is_err()
        {
            reader.abort();
        }
        let detail = match status {
            Ok(status) => format!("exited ({status})"),
            Err(err) => format!("could not be waited for ({err})"),
        };
        let _ = events.send(LinkEvent::Closed(detail));
        let _ = finished.send(());
    });

    Ok(link)
}

/// Signal a child's process group (a no-op once it is gone).
fn signal_group(group: Option<Pid>, signal: Signal) {
    if let Some(group) = group {
        let _ = killpg(group, signal);
    }
}

/// SIGTERM what is left of a group, then SIGKILL what is still there after
/// `EXIT_GRACE`.
async fn stop_group(group: Option<Pid>) {
    let Some(pid) = group else { return };
    if killpg(pid, Signal::SIGTERM).is_err() {
        return; // Nothing left.
    }
    let deadline = tokio::time::Instant::now() + EXIT_GRACE;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if killpg(pid, None).is_err() {
            return;
        }
    }
    signal_group(group, Signal::SIGKILL);
}

/// Whether a stdout line is one JSON-RPC message (or batch): JSON with an
/// object or array at the top. What it says is judged later, as for HTTP.
fn is_json_rpc(line: &[u8]) -> bool {
    matches!(line.first(), Some(b'{' | b'['))
        && serde_json::from_slice::<serde::de::IgnoredAny>(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_objects_and_arrays_are_messages() {
        assert!(is_json_rpc(br#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
        assert!(is_json_rpc(br#"[{"jsonrpc":"2.0","method":"x"}]"#));
        assert!(!is_json_rpc(b"Server listening on stdio"));
        assert!(!is_json_rpc(b"42"));
        assert!(!is_json_rpc(br#"{"jsonrpc":"2.0""#));
    }
}
