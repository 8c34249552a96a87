//! The reply tap: what became of a forwarded call, for the layers that need
//! to know (audit, and later the breaker, approvals and loop detection),
//! without buffering the reply or delaying its first byte.
//!
//! A layer asks with [`ReplyTap::on_reply`] on the call it passes inward.
//! The transport's forwarder turns the tap into a [`ReplyWatch`] when it
//! sends the call and shows it every message of the reply as the message
//! passes on to the agent (each SSE event's data, or the whole JSON body);
//! the watch finds the response to the call's id and reports a
//! [`ReplySummary`] once, to every watcher, then ignores the rest. A reply
//! that ends, breaks off or is dropped (the agent hung up) before its
//! response is reported too, as [`Answer::Missing`]. A call whose tap has
//! no watcher is forwarded untapped (today every forwarded call has one:
//! the duration metric).
//!
//! The tap reads the reply as the agent's side reads it, so the latency is
//! the time until Warden relays the response (an agent slow to read adds to
//! it), and `Missing` covers every reply Warden did not see answered: the
//! upstream unreachable, the stream cut, the agent gone (even after the
//! upstream ran the tool), a JSON reply over 16 MiB, an unreadable stream.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Largest response whose JSON text a summary keeps (larger ones are
/// summarised by size and digest).
pub const MAX_KEPT_ANSWER: usize = 64 << 10;

/// What the response to a call was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A result; `is_error` is the tool result's `isError`.
    Result {
        /// The tool reported a failure (`isError: true`).
        is_error: bool,
    },
    /// A JSON-RPC error, with its code when it had a valid one.
    Error {
        /// The error's `code`.
        code: Option<i64>,
    },
    /// No response came; why.
    Missing(&'static str),
}

/// What the tap saw of a call's reply. The response itself is lent to the
/// watchers while they are called: what a watcher needs of it (its digest,
/// a copy) it takes then, and only a watcher that needs it pays for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySummary<'a> {
    /// The response, or why there was none.
    pub answer: Answer,
    /// The response message's JSON text (empty when missing).
    pub message: &'a [u8],
    /// From forwarding the call to its response (or to the end of the reply).
    pub latency: Duration,
}

// === impl ReplySummary ===

impl ReplySummary<'_> {
    /// The response message's size in bytes (0 when missing).
    pub fn size(&self) -> usize {
        self.message.len()
    }

    /// SHA-256 of the response message's JSON text (`None` when missing).
    pub fn digest(&self) -> Option<[u8; 32]> {
        (!self.message.is_empty()).then(|| Sha256::digest(self.message).into())
    }

    /// A copy of the response message, when at most [`MAX_KEPT_ANSWER`]
    /// bytes (larger ones are known by size and digest).
    pub fn kept(&self) -> Option<Bytes> {
        (!self.message.is_empty() && self.message.len() <= MAX_KEPT_ANSWER)
            .then(|| Bytes::copy_from_slice(self.message))
    }
}

type Watcher = Box<dyn for<'a> FnOnce(&ReplySummary<'a>) + Send>;

/// Where layers ask to be told about a call's reply.
#[derive(Default)]
pub struct ReplyTap {
    watchers: Vec<Watcher>,
}

/// A tap in use: shown the reply's messages, it reports once.
pub struct ReplyWatch {
    id: Arc<str>,
    started: Instant,
    watchers: Vec<Watcher>,
}

// === impl ReplyTap ===

impl ReplyTap {
    /// Call `watcher` with the summary of the reply, once, when it is known.
    pub fn on_reply(&mut self, watcher: impl for<'a> FnOnce(&ReplySummary<'a>) + Send + 'static) {
        self.watchers.push(Box::new(watcher));
    }

    /// Whether anyone asked.
    pub fn is_watched(&self) -> bool {
        !self.watchers.is_empty()
    }

    /// The call with JSON-RPC id `id` (JSON text) is forwarded at `started`:
    /// the watch to show its reply to, or `None` when nobody asked.
    pub fn start(self, id: Arc<str>, started: Instant) -> Option<ReplyWatch> {
        self.is_watched().then(|| ReplyWatch {
            id,
            started,
            watchers: self.watchers,
        })
    }
}

impl fmt::Debug for ReplyTap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyTap")
            .field("watchers", &self.watchers.len())
            .finish()
    }
}

// === impl ReplyWatch ===

impl ReplyWatch {
    /// One message of the reply passed at `now`. Returns `true` once the
    /// response has been seen and reported (later messages need not be
    /// shown).
    pub fn message(&mut self, message: &[u8], now: Instant) -> bool {
        if self.watchers.is_empty() {
            return true;
        }
        let Some(answer) = answer_to(message, &self.id) else {
            return false;
        };
        let summary = ReplySummary {
            answer,
            message,
            latency: now.saturating_duration_since(self.started),
        };
        self.report(&summary);
        true
    }

    /// The reply ended at `now` (`why` says how) without its response, if
    /// it had none.
    pub fn end(mut self, why: &'static str, now: Instant) {
        self.missing(why, now);
    }

    fn missing(&mut self, why: &'static str, now: Instant) {
        if self.watchers.is_empty() {
            return;
        }
        let summary = ReplySummary {
            answer: Answer::Missing(why),
            message: &[],
            latency: now.saturating_duration_since(self.started),
        };
        self.report(&summary);
    }

    fn report(&mut self, summary: &ReplySummary<'_>) {
        for watcher in self.watchers.drain(..) {
            watcher(summary);
        }
    }
}

impl Drop for ReplyWatch {
    fn drop(&mut self) {
        // Dropped unanswered: the agent went away, or the reply was cut.
        // (Transports end their watch themselves, on their own clock; this
        // is the backstop.)
        if !self.watchers.is_empty() {
            let now = self.started.max(Instant::now());
            self.missing("the reply was dropped before its response", now);
        }
    }
}

/// The answer `message` gives to the request with id `id`, if it is its
/// response.
fn answer_to(message: &[u8], id: &str) -> Option<Answer> {
    #[derive(Deserialize)]
    struct Response<'a> {
        // Not an `Option`: `null` is an id here.
        #[serde(borrow)]
        id: &'a RawValue,
        method: Option<serde::de::IgnoredAny>,
        #[serde(borrow)]
        result: Option<&'a RawValue>,
        #[serde(borrow)]
        error: Option<ErrorObject<'a>>,
    }
    #[derive(Deserialize)]
    struct ErrorObject<'a> {
        #[serde(borrow)]
        code: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct ToolResult<'a> {
        #[serde(borrow, rename = "isError")]
        is_error: Option<&'a RawValue>,
    }
    let response: Response<'_> = serde_json::from_slice(message).ok()?;
    if response.method.is_some() || !warden_protocol::jsonrpc::same_id(response.id.get(), id) {
        return None;
    }
    match (response.result, response.error) {
        (Some(result), None) => {
            let is_error = result.get().starts_with('{')
                && serde_json::from_str::<ToolResult<'_>>(result.get())
                    .ok()
                    .and_then(|r| r.is_error)
                    .is_some_and(|v| v.get() == "true");
            Some(Answer::Result { is_error })
        }
        (None, Some(error)) => Some(Answer::Error {
            code: error
                .code
                .and_then(|c| serde_json::from_str::<i64>(c.get()).ok()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What a watcher took of a summary.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Seen {
        answer: Answer,
        size: usize,
        digest: Option<[u8; 32]>,
        kept: Option<Bytes>,
        latency: Duration,
    }

    fn watched() -> (ReplyTap, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut tap = ReplyTap::default();
        for _ in 0..2 {
            let seen = seen.clone();
            tap.on_reply(move |summary| {
                seen.lock().expect("lock").push(Seen {
                    answer: summary.answer.clone(),
                    size: summary.size(),
                    digest: summary.digest(),
                    kept: summary.kept(),
                    latency: summary.latency,
                })
            });
        }
        (tap, seen)
    }

    #[test]
    fn nobody_asking_means_no_watch() {
        assert!(
            ReplyTap::default()
                .start("1".into(), Instant::now())
                .is_none()
        );
    }

    #[test]
    fn the_response_to_the_call_is_reported_once_to_every_watcher() {
        let (tap, seen) = watched();
        let started = Instant::now();
        let mut watch = tap.start("7".into(), started).expect("watched");
        let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;
        let other = br#"{"jsonrpc":"2.0","id":8,"result":{}}"#;
        let answer = br#"{"jsonrpc":"2.0","id":7,"result":{"content":[],"isError":true}}"#;
        assert!(!watch.message(progress, started));
        assert!(!watch.message(other, started));
        assert!(watch.message(answer, started + Duration::from_millis(40)));
        assert!(
            watch.message(answer, started + Duration::from_millis(50)),
            "done"
        );
        watch.end("ended", started + Duration::from_secs(1));
        let seen = seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "once per watcher: {seen:?}");
        let summary = &seen[0];
        assert_eq!(summary.answer, Answer::Result { is_error: true });
        assert_eq!(summary.size, answer.len());
        assert_eq!(summary.latency, Duration::from_millis(40));
        assert_eq!(summary.kept.as_deref(), Some(&answer[..]));
        assert_eq!(summary.digest, Some(Sha256::digest(answer).into()));
        assert_eq!(seen[1], seen[0]);
    }

    #[test]
    fn errors_ids_by_value_and_missing_answers() {
        let (tap, seen) = watched();
        let mut watch = tap.start(r#""a""#.into(), Instant::now()).expect("watched");
        assert!(watch.message(
            br#"{"jsonrpc":"2.0","id":"\u0061","error":{"code":-32602,"message":"bad"}}"#,
            Instant::now()
        ));
        assert_eq!(
            seen.lock().expect("lock")[0].answer,
            Answer::Error { code: Some(-32602) }
        );

        let (tap, seen) = watched();
        let mut watch = tap.start("1".into(), Instant::now()).expect("watched");
        assert!(!watch.message(b"not json", Instant::now()));
        watch.end("the reply ended without its response", Instant::now());
        let seen = seen.lock().expect("lock");
        assert_eq!(
            seen[0].answer,
            Answer::Missing("the reply ended without its response")
        );
        assert_eq!((seen[0].size, seen[0].digest), (0, None));
    }

    #[test]
    fn a_dropped_watch_reports_a_missing_answer() {
        let (tap, seen) = watched();
        drop(tap.start("1".into(), Instant::now()));
        assert_eq!(
            seen.lock().expect("lock")[0].answer,
            Answer::Missing("the reply was dropped before its response")
        );
    }
}
