//! Property tests: the SSE codec round-trips whatever the chunking, and the
//! envelope parser never panics, never accepts what `serde_json` rejects, and
//! hands back exactly the bytes it was given.

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
