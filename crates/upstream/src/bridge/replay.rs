//! Resumable streams for a bridged session: every event the bridge sends
//! on a session's streams carries an id and is kept, within bounds, so an
//! agent whose connection broke can resume the stream with `Last-Event-ID`
//! (Streamable HTTP's resumability), although the stdio or legacy SSE
//! server behind the bridge knows nothing of it.
//!
//! The log is only for resuming. Live delivery does not go through it: a
//! reply stream's pump hands each event to the agent's open response (a
//! bounded channel, so a slow agent slows the pump, as before) and also
//! keeps it here; a GET listen stream's response logs each event as it
//! sends it. So an event larger than the log, or a reader far behind,
//! still gets everything live; only a resumption can find an event gone.
//!
//! A reply stream's pump outlives the agent's connection: what the server
//! sends after a hang-up is kept, and a resumed GET gets it (then the rest,
//! live, while the pump runs). A resumed listen stream gets what was kept
//! after the id, then listens again under the same stream. Event ids are
//! `<stream>-<event>` with a session-wide event counter, so they are
//! unique across the session's streams, and a resumption never replays
//! another stream's messages.
//!
//! Bounds: at most [`MAX_EVENTS`] events and [`MAX_BYTES`] bytes kept per
//! session, oldest evicted first. A `Last-Event-ID` older than what is
//! kept, or not of this session, is not resumed (the bridge opens a fresh
//! listen stream, as a server without resumability does).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::mpsc;
use warden_protocol::sse::SseEvent;

/// Events kept per session, at most.
pub const MAX_EVENTS: usize = 256;
/// Bytes of events kept per session, at most.
pub const MAX_BYTES: usize = 1 << 20;
/// Events waiting for a slow agent on one reply stream.
const SINK_DEPTH: usize = 64;

/// One session's log of stream events.
#[derive(Default)]
pub struct Replay {
    state: Mutex<State>,
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

struct StreamInfo {
    /// Still fed (by its pump, or by its agent's listen response).
    open: bool,
    /// A GET listen stream, not a reply stream.
    listen: bool,
    /// The newest of its events evicted, if any was.
    evicted: Option<u64>,
    /// Where a reply stream's events go live (the agent's response).
    sink: Option<mpsc::Sender<Bytes>>,
    /// Which holder of a listen stream is current (each resumption takes
    /// it over; an earlier holder's end must not end it).
    holder: u64,
}

struct Kept {
    stream: u64,
    event: u64,
    frame: Bytes,
}

/// A stream resumed by `Last-Event-ID`.
pub struct Resumed {
    /// The stream.
    pub stream: u64,
    /// The events kept after the id, to send first.
    pub missed: Vec<Bytes>,
    /// How it goes on.
    pub then: Then,
}

/// What follows a resumed stream's missed events.
pub enum Then {
    /// A reply stream: its pump's next events, until it ends (closed at
    /// once when it has ended).
    Reply(mpsc::Receiver<Bytes>),
    /// A listen stream: listen again, as this holder.
    Listen {
        /// The holder number for [`Replay::end_listen`].
        holder: u64,
    },
}

// === impl Replay ===

impl Replay {
    /// A new reply stream, and the receiver of its live events.
    pub fn open_reply(&self) -> (u64, mpsc::Receiver<Bytes>) {
        let (sink, events) = mpsc::channel(SINK_DEPTH);
        let stream = self.open_stream(false, Some(sink));
        (stream, events)
    }

    /// A new GET listen stream (holder 0).
    pub fn open_listen(&self) -> u64 {
        self.open_stream(true, None)
    }

    fn open_stream(&self, listen: bool, sink: Option<mpsc::Sender<Bytes>>) -> u64 {
        let mut state = lock(&self.state);
        let stream = state.next_stream;
        state.next_stream += 1;
        state.streams.insert(
            stream,
            StreamInfo {
                open: true,
                listen,
                evicted: None,
                sink,
                holder: 0,
            },
        );
        stream
    }

    /// Keep one message of `stream` as an SSE event with its id. Returns
    /// the event, and where a reply stream's agent reads it live.
    pub fn push(&self, stream: u64, message: &[u8]) -> (Bytes, Option<mpsc::Sender<Bytes>>) {
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
        let sink = state.streams.get(&stream).and_then(|s| s.sink.clone());
        (frame, sink)
    }

    /// The agent reading `stream` live through `sink` is gone.
    pub fn detach(&self, stream: u64, sink: &mpsc::Sender<Bytes>) {
        let mut state = lock(&self.state);
        if let Some(info) = state.streams.get_mut(&stream)
            && info.sink.as_ref().is_some_and(|s| s.same_channel(sink))
        {
            info.sink = None;
        }
    }

    /// A reply stream gets no more events: its live reader ends, and a
    /// later resumption gets what is kept and no more.
    pub fn end_reply(&self, stream: u64) {
        let mut state = lock(&self.state);
        Self::close(&mut state, stream);
    }

    /// A listen stream's holder let go of it (its response was dropped);
    /// nothing happens if another holder took the stream over since.
    pub fn end_listen(&self, stream: u64, holder: u64) {
        let mut state = lock(&self.state);
        if state
            .streams
            .get(&stream)
            .is_some_and(|s| s.holder == holder)
        {
            Self::close(&mut state, stream);
        }
    }

    fn close(state: &mut State, stream: u64) {
        let kept = state.kept.iter().any(|k| k.stream == stream);
        match state.streams.get_mut(&stream) {
            Some(info) if kept => {
                info.open = false;
                info.sink = None;
            }
            Some(_) => {
                state.streams.remove(&stream);
            }
            None => {}
        }
    }

    /// Resume the stream `last_event_id` names, if this log can: the
    /// stream is this session's, the id was sent on it, and nothing of it
    /// after the id was evicted.
    pub fn resume(&self, last_event_id: &str) -> Option<Resumed> {
        let (stream, event) = last_event_id.split_once('-')?;
        let (stream, event): (u64, u64) = (stream.parse().ok()?, event.parse().ok()?);
        let mut state = lock(&self.state);
        let info = state.streams.get(&stream)?;
        if info.evicted.is_some_and(|e| e > event) || event >= state.next_event {
            return None;
        }
        // The id must be one of this stream's, when it is still kept.
        let oldest = state.kept.front().map_or(state.next_event, |k| k.event);
        if event >= oldest
            && !state
                .kept
                .iter()
                .any(|k| k.event == event && k.stream == stream)
        {
            return None;
        }
        let missed = state
            .kept
            .iter()
            .filter(|k| k.stream == stream && k.event > event)
            .map(|k| k.frame.clone())
            .collect();
        let info = state.streams.get_mut(&stream)?;
        let then = if info.listen {
            info.holder += 1;
            info.open = true;
            Then::Listen {
                holder: info.holder,
            }
        } else {
            let (sink, events) = mpsc::channel(SINK_DEPTH);
            if info.open {
                // Takes over from the agent's earlier response, if any.
                info.sink = Some(sink);
            }
            Then::Reply(events)
        };
        Some(Resumed {
            stream,
            missed,
            then,
        })
    }

    /// The number of events kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.state).kept.len()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frame: &Bytes) -> String {
        String::from_utf8_lossy(frame).into_owned()
    }

    /// Push like a pump: keep, and hand to the live reader.
    async fn pump(replay: &Replay, stream: u64, message: &str) {
        let (frame, sink) = replay.push(stream, message.as_bytes());
        if let Some(sink) = sink
            && sink.send(frame).await.is_err()
        {
            replay.detach(stream, &sink);
        }
    }

    async fn drain(mut events: mpsc::Receiver<Bytes>) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(frame) = events.recv().await {
            out.push(text(&frame));
        }
        out
    }

    #[tokio::test]
    async fn a_reply_stream_resumes_after_the_event_named_and_never_shows_another_stream() {
        let replay = Replay::default();
        let (a, live) = replay.open_reply();
        let (b, _other) = replay.open_reply();
        pump(&replay, a, "{\"n\":1}").await;
        pump(&replay, b, "{\"other\":1}").await;
        pump(&replay, a, "{\"n\":2}").await;
        replay.end_reply(a);
        assert_eq!(
            drain(live).await,
            vec![
                "id: 0-0\ndata: {\"n\":1}\n\n".to_owned(),
                "id: 0-2\ndata: {\"n\":2}\n\n".to_owned()
            ]
        );
        let resumed = replay.resume("0-0").expect("resumable");
        assert_eq!(resumed.stream, a);
        assert_eq!(
            resumed.missed.iter().map(text).collect::<Vec<_>>(),
            vec!["id: 0-2\ndata: {\"n\":2}\n\n".to_owned()]
        );
        let Then::Reply(rest) = resumed.then else {
            panic!("a reply stream")
        };
        assert!(drain(rest).await.is_empty(), "the stream had ended");
        assert!(replay.resume("0-1").is_none(), "1 is stream b's event");
        assert!(replay.resume("7-0").is_none(), "an unknown stream");
        assert!(replay.resume("0-99").is_none(), "an id never sent");
        assert!(replay.resume("garbage").is_none());
    }

    #[tokio::test]
    async fn a_resumed_reply_stream_goes_on_live_after_what_it_missed() {
        let replay = Replay::default();
        let (a, live) = replay.open_reply();
        pump(&replay, a, "{\"n\":0}").await;
        drop(live); // the agent hung up
        pump(&replay, a, "{\"n\":1}").await;
        let resumed = replay.resume("0-0").expect("resumable");
        assert_eq!(resumed.missed.len(), 1);
        let Then::Reply(rest) = resumed.then else {
            panic!("a reply stream")
        };
        pump(&replay, a, "{\"n\":2}").await;
        replay.end_reply(a);
        assert_eq!(
            drain(rest).await,
            vec!["id: 0-2\ndata: {\"n\":2}\n\n".to_owned()]
        );
    }

    #[tokio::test]
    async fn an_event_larger_than_the_log_still_reaches_its_live_reader() {
        let replay = Replay::default();
        let (a, live) = replay.open_reply();
        let big = "x".repeat(MAX_BYTES + 10);
        let writer = async {
            pump(&replay, a, &big).await;
            replay.end_reply(a);
        };
        let (_, got) = tokio::join!(writer, drain(live));
        assert_eq!(got.len(), 1);
        assert!(got[0].len() > MAX_BYTES);
        // An ended stream with nothing kept is forgotten.
        assert!(replay.resume("0-0").is_none());
    }

    #[tokio::test]
    async fn the_log_is_bounded_and_an_evicted_resumption_is_refused() {
        let replay = Replay::default();
        let stream = replay.open_listen();
        for n in 0..(MAX_EVENTS + 10) {
            let _ = replay.push(stream, format!("{{\"n\":{n}}}").as_bytes());
        }
        assert_eq!(replay.len(), MAX_EVENTS);
        assert!(replay.resume("0-0").is_none(), "events after it are gone");
        let resumed = replay
            .resume(&format!("0-{}", MAX_EVENTS + 5))
            .expect("recent");
        assert_eq!(resumed.missed.len(), 4);
        let big = vec![b'x'; MAX_BYTES / 4];
        for _ in 0..8 {
            let _ = replay.push(stream, &big);
        }
        assert!(replay.len() <= 4, "{}", replay.len());
    }

    #[test]
    fn a_listen_stream_taken_over_is_not_ended_by_its_earlier_holder() {
        let replay = Replay::default();
        let stream = replay.open_listen();
        let _ = replay.push(stream, b"{\"n\":0}");
        let resumed = replay.resume("0-0").expect("resumable");
        let Then::Listen { holder } = resumed.then else {
            panic!("a listen stream")
        };
        assert_eq!(holder, 1);
        replay.end_listen(stream, 0); // the first response, dropped late
        let _ = replay.push(stream, b"{\"n\":1}");
        let again = replay.resume("0-0").expect("still resumable");
        assert_eq!(again.missed.len(), 1);
        replay.end_listen(stream, 2);
        let _ = replay.push(stream, b"{\"n\":2}");
        assert!(replay.resume("0-1").is_some(), "kept events stay resumable");
    }
}
