//! Server-Sent Events: an incremental parser and an encoder.
//!
//! The parser follows the WHATWG event-stream rules (any of CRLF, LF, CR ends
//! a line, a leading space after the colon is dropped, `data` lines join with
//! `\n`), but unlike a browser it also yields blocks that carry only an `id`
//! or `retry`: a proxy that re-encodes a stream must not drop the priming
//! event a server sends so that clients can resume with `Last-Event-ID`.

use bytes::{BufMut, Bytes, BytesMut};

/// One event block of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// `id:`, when the block set one.
    pub id: Option<String>,
    /// `event:`, when the block named a type.
    pub event: Option<String>,
    /// The joined `data:` lines, when the block had any.
    pub data: Option<String>,
    /// `retry:` in milliseconds, when the block set a valid one.
    pub retry: Option<u64>,
}

impl SseEvent {
    /// An event carrying one JSON-RPC message.
    pub fn message(data: impl Into<String>) -> SseEvent {
        SseEvent {
            data: Some(data.into()),
            ..SseEvent::default()
        }
    }

    /// Encode the block, ending with the blank line that dispatches it.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.data.as_ref().map_or(0, String::len) + 32);
        if let Some(id) = &self.id {
            put_field(&mut out, "id", id);
        }
        if let Some(event) = &self.event {
            put_field(&mut out, "event", event);
        }
        if let Some(retry) = self.retry {
            put_field(&mut out, "retry", &retry.to_string());
        }
        if let Some(data) = &self.data {
            if data.contains('\r') {
                // A CR would end the line early at the reader and corrupt
                // the event: CR and CRLF become line breaks too (read back
                // as LF). Rare (relayed data never holds one), so kept off
                // the common path.
                for line in data
                    .split('\n')
                    .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
                {
                    put_field(&mut out, "data", line);
                }
            } else {
                for line in data.split('\n') {
                    put_field(&mut out, "data", line);
                }
            }
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

fn put_field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_slice(b": ");
    out.put_slice(value.as_bytes());
    out.put_u8(b'\n');
}

/// Why a stream could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum SseError {
    /// A single line, or one event's data, grew past the parser's limit.
    #[error("SSE line or event longer than {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Incremental parser: feed it chunks as they arrive.
#[derive(Debug)]
pub struct SseParser {
    line: BytesMut,
    pending: SseEvent,
    has_field: bool,
    data: Option<String>,
    after_cr: bool,
    max_line: usize,
    oversized: bool,
}

impl SseParser {
    /// A parser that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> SseParser {
        SseParser {
            line: BytesMut::new(),
            pending: SseEvent::default(),
            has_field: false,
            data: None,
            after_cr: false,
            max_line,
            oversized: false,
        }
    }

    /// Feed one chunk; every event it completes is pushed to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = chunk;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                Some(end) => {
                    self.push_line_bytes(&rest[..end])?;
                    self.after_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.take_line(&line) {
                        out.push(event);
                    }
                    if self.oversized {
                        return Err(SseError::LineTooLong {
                            limit: self.max_line,
                        });
                    }
                }
                None => {
                    self.push_line_bytes(rest)?;
                    rest = &[];
                }
            }
        }
        Ok(())
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(SseError::LineTooLong {
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn take_line(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            if !self.has_field {
                return None;
            }
            self.has_field = false;
            let mut event = std::mem::take(&mut self.pending);
            event.data = self.data.take();
            return Some(event);
        }
        if line[0] == b':' {
            return None;
        }
        let text = String::from_utf8_lossy(line);
        let (name, value) = match text.find(':') {
            Some(colon) => {
                let value = &text[colon + 1..];
                (&text[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (text.as_ref(), ""),
        };
        match name {
            "data" => {
                let continues = self.pending.data.is_some();
                let data = self.data.get_or_insert_with(String::new);
                if data.len() + value.len() + 1 > self.max_line {
                    // One event may not grow past the line limit either.
                    self.oversized = true;
                    return None;
                }
                if continues {
                    data.push('\n');
                }
                data.push_str(value);
                self.pending.data = Some(String::new());
            }
            "event" => self.pending.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.pending.id = Some(value.to_owned()),
            "retry" => match value.parse() {
                Ok(ms) if value.bytes().all(|b| b.is_ascii_digit()) => {
                    self.pending.retry = Some(ms)
                }
                _ => return None,
            },
            _ => return None,
        }
        self.has_field = true;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new(1024);
        let mut out = Vec::new();
        for chunk in chunks {
            parser.feed(chunk, &mut out).expect("parses");
        }
        out
    }

    #[test]
    fn carriage_returns_in_data_cannot_end_the_event_early() {
        let event = SseEvent::message("{\"a\":1,\r\r\"b\":2,\r\n\"c\":3}");
        let wire = event.encode();
        assert_eq!(
            wire.as_ref(),
            b"data: {\"a\":1,\ndata: \ndata: \"b\":2,\ndata: \"c\":3}\n\n"
        );
        let parsed = parse_chunks(&[&wire]);
        assert_eq!(parsed.len(), 1);
        let data = parsed[0].data.as_deref().expect("data");
        assert_eq!(data, "{\"a\":1,\n\n\"b\":2,\n\"c\":3}");
        let value: serde_json::Value = serde_json::from_str(data).expect("still JSON");
        assert_eq!(value, serde_json::json!({"a": 1, "b": 2, "c": 3}));
    }

    #[test]
    fn parses_fields_and_joins_data_lines() {
        let events =
            parse_chunks(&[b"id: 7\nevent: message\nretry: 1500\ndata: {\"a\":\ndata: 1}\n\n"]);
        assert_eq!(
            events,
            vec![SseEvent {
                id: Some("7".into()),
                event: Some("message".into()),
                data: Some("{\"a\":\n1}".into()),
                retry: Some(1500),
            }]
        );
    }

    #[test]
    fn handles_every_line_ending_split_across_chunks() {
        let events = parse_chunks(&[b"data: a\r", b"\n\r", b"\ndata: b\r\r", b"data:c\n", b"\n"]);
        let data: Vec<_> = events
            .iter()
            .map(|e| e.data.clone().unwrap_or_default())
            .collect();
        assert_eq!(data, vec!["a", "b", "c"]);
    }

    #[test]
    fn keeps_priming_events_with_only_an_id_and_skips_comments() {
        let events = parse_chunks(&[b": keepalive\n\nid: prime-1\ndata:\n\nid: x\n\n"]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id.as_deref(), Some("prime-1"));
        assert_eq!(events[0].data.as_deref(), Some(""));
        assert_eq!(events[1].data, None);
    }

    #[test]
    fn empty_data_lines_are_kept() {
        let events = parse_chunks(&[b"data:\ndata:\n\n"]);
        assert_eq!(events[0].data.as_deref(), Some("\n"));
    }

    #[test]
    fn encode_round_trips() {
        let event = SseEvent {
            id: Some("42".into()),
            event: Some("message".into()),
            data: Some("line1\nline2".into()),
            retry: Some(10),
        };
        assert_eq!(parse_chunks(&[&event.encode()]), vec![event]);
    }

    #[test]
    fn an_event_past_the_limit_is_an_error_even_in_short_lines() {
        let mut parser = SseParser::new(16);
        let err = parser
            .feed(
                b"data: 0123456\ndata: 0123456\ndata: 0123456\n",
                &mut Vec::new(),
            )
            .expect_err("too big");
        assert!(matches!(err, SseError::LineTooLong { limit: 16 }));
    }

    #[test]
    fn a_line_past_the_limit_is_an_error() {
        let mut parser = SseParser::new(8);
        let err = parser
            .feed(b"data: 0123456789", &mut Vec::new())
            .expect_err("too long");
        assert!(matches!(err, SseError::LineTooLong { limit: 8 }));
    }
}
