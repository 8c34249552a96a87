//! Resumable streams for a bridged session: every event the bridge sends
//! on a session's streams carries an id and is kept, within bounds, so an
//! agent whose connection broke can resume the stream with `Last-Event-ID`
//! (Streamable HTTP's resumability), although the stdio or legacy SSE
//! server behind the bridge knows nothing of it.
//!
//! Each stream (a POST's reply stream, a GET listen stream) is fed by a
//! pump that outlives the agent's connection: what the server sends after
//! a hang-up is kept, not lost. A reader (the response body) follows one
//! stream in the log from a cursor; a resumed GET is a reader of the same
//! stream from the event the agent names. Event ids are `<stream>-<event>`
//! with a session-wide event counter, so they are unique across the
//! session's streams, and a resumption never replays another stream's
//! messages.
//!
//! Bounds: at most [`MAX_EVENTS`] events and [`MAX_BYTES`] bytes per
//! session, oldest evicted first. A reader that falls behind the eviction,
//! or a `Last-Event-ID` older than what is kept, ends its stream (the agent
//! can tell: the next resumption names an id the bridge no longer has).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::Notify;
use warden_protocol::sse::SseEvent;

/// Events kept per session, at most.
pub const MAX_EVENTS: usize = 256;
/// Bytes of events kept per session, at most.
pub const MAX_BYTES: usize = 1 << 20;

/// One session's log of stream events.
#[derive(Default)]
pub struct Replay {
    state: Mutex<State>,
    /// Woken on every event kept and every stream ended.
    changed: Notify,
}

#[derive(Default)]
struct State {
    next_stream: u64,
    next_event: u64,
    /// Oldest first.
    kept: VecDeque<Kept>,
    bytes: usize,
    /// Streams open, or ended with events still kept.
    streams: HashMap<u64, StreamInfo>,
}

#[derive(Default)]
struct StreamInfo {
    /// Still fed (by its pump, or by its agent's open listen stream).
    open: bool,
    /// A GET listen stream (resumed by listening again), not a reply
    /// stream (resumed by reading on from the log).
    listen: bool,
    /// The newest of its events evicted, if any was.
    evicted: Option<u64>,
}

struct Kept {
    stream: u64,
    event: u64,
    frame: Bytes,
}

/// Where a reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The stream followed.
    pub stream: u64,
    /// Events up to this one were already sent (`None`: from the start).
    pub after: Option<u64>,
    /// Whether the stream is a GET listen stream.
    pub listen: bool,
}

// === impl Replay ===

impl Replay {
    /// A new reply stream, fed until [`Replay::end`].
    pub fn open(&self) -> u64 {
        self.open_stream(false)
    }

    /// A new GET listen stream, fed until [`Replay::end`].
    pub fn open_listen(&self) -> u64 {
        self.open_stream(true)
    }

    fn open_stream(&self, listen: bool) -> u64 {
        let mut state = lock(&self.state);
        let stream = state.next_stream;
        state.next_stream += 1;
        state.streams.insert(
            stream,
            StreamInfo {
                open: true,
                listen,
                evicted: None,
            },
        );
        stream
    }

    /// A listen stream fed again (its agent resumed it).
    pub fn reopen(&self, stream: u64) {
        if let Some(info) = lock(&self.state).streams.get_mut(&stream) {
            info.open = true;
        }
    }

    /// The events of `cursor`'s stream kept after its event.
    pub fn kept_after(&self, cursor: Cursor) -> Vec<Bytes> {
        let state = lock(&self.state);
        state
            .kept
            .iter()
            .filter(|k| k.stream == cursor.stream && cursor.after.is_none_or(|a| k.event > a))
            .map(|k| k.frame.clone())
            .collect()
    }

    /// Keep one message of `stream` as an SSE event with its id; returns
    /// the event.
    pub fn push(&self, stream: u64, message: &[u8]) -> Bytes {
        let sent = {
            let mut state = lock(&self.state);
            let event = state.next_event;
            state.next_event += 1;
            let frame = SseEvent {
                id: Some(format!("{stream}-{event}")),
                data: Some(String::from_utf8_lossy(message).into_owned()),
                ..SseEvent::default()
            }
            .encode();
            state.bytes += frame.len();
            state.kept.push_back(Kept {
                stream,
                event,
                frame: frame.clone(),
            });
            while state.kept.len() > MAX_EVENTS || state.bytes > MAX_BYTES {
                let Some(old) = state.kept.pop_front() else {
                    break;
                };
                state.bytes -= old.frame.len();
                let still_kept = state.kept.iter().any(|k| k.stream == old.stream);
                match state.streams.get_mut(&old.stream) {
                    Some(info) if info.open || still_kept => info.evicted = Some(old.event),
                    Some(_) => {
                        state.streams.remove(&old.stream);
                    }
                    None => {}
                }
            }
            frame
        };
        self.changed.notify_waiters();
        sent
    }

    /// `stream` gets no more events (its readers end once they have read
    /// what is kept).
    pub fn end(&self, stream: u64) {
        {
            let mut state = lock(&self.state);
            let kept = state.kept.iter().any(|k| k.stream == stream);
            if kept {
                if let Some(info) = state.streams.get_mut(&stream) {
                    info.open = false;
                }
            } else {
                state.streams.remove(&stream);
            }
        }
        self.changed.notify_waiters();
    }

    /// Where a `Last-Event-ID` resumes, if this log can resume it: its
    /// stream is known and nothing after the id was evicted.
    pub fn resume_at(&self, last_event_id: &str) -> Option<Cursor> {
        let (stream, event) = last_event_id.split_once('-')?;
        let (stream, event): (u64, u64) = (stream.parse().ok()?, event.parse().ok()?);
        let state = lock(&self.state);
        let info = state.streams.get(&stream)?;
        // Nothing of the stream after the id may have been evicted, and
        // the id must have been sent.
        if info.evicted.is_some_and(|e| e > event) || event >= state.next_event {
            return None;
        }
        Some(Cursor {
            stream,
            after: Some(event),
            listen: info.listen,
        })
    }

    /// The frames of `cursor`'s stream, as they come, until it ends.
    pub fn reader(self: Arc<Self>, cursor: Cursor) -> impl Stream<Item = Bytes> + Send {
        futures_util::stream::unfold(
            (self, cursor.after),
            move |(replay, mut after)| async move {
                loop {
                    let next = {
                        let changed = replay.changed.notified();
                        tokio::pin!(changed);
                        // Registered before looking, so no event slips
                        // between the look and the wait.
                        changed.as_mut().enable();
                        match replay.next_frame(cursor.stream, after) {
                            Next::Wait => {
                                changed.await;
                                continue;
                            }
                            next => next,
                        }
                    };
                    match next {
                        Next::Frame(event, frame) => {
                            after = Some(event);
                            return Some((frame, (replay, after)));
                        }
                        Next::End | Next::Wait => return None,
                    }
                }
            },
        )
    }

    fn next_frame(&self, stream: u64, after: Option<u64>) -> Next {
        let state = lock(&self.state);
        let Some(info) = state.streams.get(&stream) else {
            return Next::End;
        };
        // Fell behind the eviction: end rather than skip events silently.
        if info
            .evicted
            .is_some_and(|evicted| after.is_none_or(|a| evicted > a))
        {
            return Next::End;
        }
        let next = state
            .kept
            .iter()
            .find(|k| k.stream == stream && after.is_none_or(|a| k.event > a));
        match next {
            Some(kept) => Next::Frame(kept.event, kept.frame.clone()),
            None if info.open => Next::Wait,
            None => Next::End,
        }
    }

    /// The number of events kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).kept.len()
    }
}

enum Next {
    Frame(u64, Bytes),
    Wait,
    End,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn text(frame: &Bytes) -> String {
        String::from_utf8_lossy(frame).into_owned()
    }

    #[tokio::test]
    async fn a_reader_resumes_after_the_event_it_names_and_sees_only_its_stream() {
        let replay = Arc::new(Replay::default());
        let a = replay.open();
        let b = replay.open();
        replay.push(a, b"{\"n\":1}");
        replay.push(b, b"{\"other\":1}");
        replay.push(a, b"{\"n\":2}");
        replay.end(a);
        let all: Vec<String> = replay
            .clone()
            .reader(Cursor {
                stream: a,
                after: None,
                listen: false,
            })
            .map(|f| text(&f))
            .collect()
            .await;
        assert_eq!(
            all,
            vec![
                "id: 0-0\ndata: {\"n\":1}\n\n".to_owned(),
                "id: 0-2\ndata: {\"n\":2}\n\n".to_owned()
            ]
        );
        let cursor = replay.resume_at("0-0").expect("resumable");
        let rest: Vec<String> = replay
            .clone()
            .reader(cursor)
            .map(|f| text(&f))
            .collect()
            .await;
        assert_eq!(rest, vec!["id: 0-2\ndata: {\"n\":2}\n\n".to_owned()]);
        assert_eq!(replay.resume_at("7-0"), None, "an unknown stream");
        assert_eq!(replay.resume_at("0-99"), None, "an id never sent");
        assert_eq!(replay.resume_at("garbage"), None);
    }

    #[tokio::test]
    async fn a_reader_waits_for_events_still_to_come_and_ends_with_the_stream() {
        let replay = Arc::new(Replay::default());
        let a = replay.open();
        let mut reader = Box::pin(replay.clone().reader(Cursor {
            stream: a,
            after: None,
            listen: false,
        }));
        let writer = replay.clone();
        let feed = tokio::spawn(async move {
            for n in 0..3 {
                tokio::task::yield_now().await;
                writer.push(a, format!("{{\"n\":{n}}}").as_bytes());
            }
            writer.end(a);
        });
        let mut seen = 0;
        while let Some(frame) = reader.next().await {
            assert!(text(&frame).contains(&format!("\"n\":{seen}")));
            seen += 1;
        }
        assert_eq!(seen, 3);
        feed.await.expect("feed");
    }

    #[tokio::test]
    async fn the_log_is_bounded_and_an_evicted_resumption_is_refused() {
        let replay = Arc::new(Replay::default());
        let a = replay.open();
        for n in 0..(MAX_EVENTS + 10) {
            replay.push(a, format!("{{\"n\":{n}}}").as_bytes());
        }
        assert_eq!(replay.len(), MAX_EVENTS);
        assert_eq!(replay.resume_at("0-0"), None, "events after it are gone");
        assert!(replay.resume_at(&format!("0-{}", MAX_EVENTS + 5)).is_some());
        let big = vec![b'x'; MAX_BYTES / 4];
        for _ in 0..8 {
            replay.push(a, &big);
        }
        assert!(replay.len() <= 4, "{}", replay.len());
    }
}
