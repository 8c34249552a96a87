//! Property tests: the SSE codec round-trips whatever the chunking, and the
//! envelope parser never panics, never accepts what `serde_json` rejects, and
//! hands back exactly the bytes it was given, and whatever it accepts the
//! line writer turns into one line with the same value.

use bytes::Bytes;
use proptest::prelude::*;
use warden_protocol::Incoming;
use warden_protocol::sse::{SseEvent, SseParser};

fn event() -> impl Strategy<Value = SseEvent> {
    let field = "[a-zA-Z0-9 {}\":,._-]{0,40}";
    (
        proptest::option::of(field),
        proptest::option::of("[a-z]{1,10}"),
        proptest::option::of(
            proptest::collection::vec(field, 1..4).prop_map(|lines| lines.join("\n")),
        ),
        proptest::option::of(0u64..100_000),
    )
        .prop_map(|(id, event, data, retry)| SseEvent {
            id,
            event,
            data,
            retry,
        })
        .prop_filter("a block needs a field", |e| {
            e.id.is_some() || e.event.is_some() || e.data.is_some() || e.retry.is_some()
        })
}

proptest! {
    #[test]
    fn sse_round_trips_across_any_chunking(events in proptest::collection::vec(event(), 1..6), cuts in proptest::collection::vec(0usize..400, 0..8)) {
        let mut wire = Vec::new();
        for event in &events {
            wire.extend_from_slice(&event.encode());
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (wire.len() + 1)).collect();
        cuts.sort_unstable();
        let mut parser = SseParser::new(1 << 20);
        let mut parsed = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain(std::iter::once(wire.len())) {
            parser.feed(&wire[start..cut], &mut parsed).expect("parses");
            start = cut;
        }
        prop_assert_eq!(parsed, events);
    }

    #[test]
    fn the_envelope_parser_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Incoming::parse(&Bytes::from(body));
    }

    #[test]
    fn accepted_messages_are_valid_json_and_keep_their_bytes(
        id in 0u64..1_000_000,
        method in "[a-z/_]{1,20}",
        arg in "[a-zA-Z0-9 ]{0,20}",
        spaces in "[ \n\t]{0,3}",
    ) {
        prop_assume!(method != "tools/call");
        let text = format!(r#"{spaces}{{"jsonrpc":"2.0","id":{id},{spaces}"method":"{method}","params":{{"a":"{arg}"}}}}{spaces}"#);
        let body = Bytes::from(text.clone());
        if let Ok(Incoming::Single(message)) = Incoming::parse(&body) {
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
            prop_assert_eq!(message.raw.as_ref(), text.trim_matches(|c: char| c.is_ascii_whitespace()).as_bytes());
            prop_assert_eq!(message.method.as_deref(), Some(method.as_str()));
        } else {
            prop_assert!(false, "rejected a valid message: {}", text);
        }
    }

    #[test]
    fn text_serde_rejects_is_never_accepted(text in "[\\[\\]{}\":,a-z0-9 ]{0,60}") {
        if serde_json::from_str::<serde_json::Value>(&text).is_err() {
            prop_assert!(Incoming::parse(&Bytes::from(text)).is_err());
        }
    }
}

/// Any JSON value, with strings that hold every character some line reader
/// takes for a line end.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let text = "[a-z \u{85}\u{2028}\u{2029}\\n\\r\"\\\\é€😀]{0,12}";
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1.0e9f64..1.0e9).prop_map(serde_json::Value::from),
        text.prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z\u{2028}]{1,6}", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// `value` written with `breaks` (raw CR, LF, CRLF) as the white space
/// between every pair of tokens.
fn spread(value: &serde_json::Value, breaks: &str) -> String {
    let pretty = serde_json::to_string_pretty(value).expect("serializes");
    // The pretty printer puts "\n" and indentation between tokens only.
    pretty.replace('\n', breaks)
}

proptest! {
    #[test]
    fn every_accepted_message_is_written_as_one_line_with_the_same_value(
        params in json_value(),
        method in prop_oneof![Just("tools/call"), Just("ping"), Just("notifications/message")],
        id in proptest::option::of(0u64..1000),
        breaks in prop_oneof![Just("\n"), Just("\r"), Just("\r\n"), Just("\n\r "), Just(" ")],
        batch in any::<bool>(),
    ) {
        let mut message = serde_json::json!({"jsonrpc": "2.0", "method": method, "params": {"name": "t", "arguments": params}});
        if let Some(id) = id {
            message["id"] = id.into();
        }
        if batch {
            message = serde_json::Value::Array(vec![message]);
        }
        let text = spread(&message, breaks);
        let body = Bytes::from(text.clone());
        prop_assume!(Incoming::parse(&body).is_ok());
        let line = warden_protocol::line::one_line(&body).expect("an accepted message is one line");
        let line = std::str::from_utf8(&line).expect("UTF-8");
        // Whatever a reader splits on, this is one line: Python's
        // `splitlines` knows the most line ends of all.
        for end in ['\n', '\r', '\u{b}', '\u{c}', '\u{1c}', '\u{1d}', '\u{1e}', '\u{85}', '\u{2028}', '\u{2029}'] {
            prop_assert!(!line.contains(end), "{:?} in {:?}", end, line);
        }
        let read: serde_json::Value = serde_json::from_str(line).expect("the line is JSON");
        let sent: serde_json::Value = serde_json::from_str(&text).expect("the message is JSON");
        prop_assert_eq!(read, sent);
    }

    #[test]
    fn the_line_writer_never_panics_and_never_writes_a_line_end(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(line) = warden_protocol::line::one_line(&body) {
            prop_assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok());
        }
    }
}
