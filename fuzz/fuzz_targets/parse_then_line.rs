//! Whatever the strict envelope parser accepts, `one_line` writes as one
//! line, a JSON parser reads that line as the same value, and the parser
//! reads the same messages in it (kinds, ids, methods, tool names), so what
//! Warden judged is what the far side of a line-delimited link reads.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use warden_protocol::Incoming;
use warden_protocol::line::one_line;

#[path = "checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    let body = Bytes::copy_from_slice(data);
    let Ok(incoming) = Incoming::parse(&body) else {
        return;
    };
    let line = match one_line(data) {
        Ok(line) => line,
        Err(err) => panic!("parse accepted, one_line refused ({err}): {data:?}"),
    };
    checks::assert_is_one_line(&line);
    checks::assert_same_value(data, &line);

    let again = match Incoming::parse(&Bytes::copy_from_slice(&line)) {
        Ok(again) => again,
        Err(err) => panic!("parse refused its own line ({err}): {data:?} -> {line:?}"),
    };
    let (before, after) = (incoming.messages(), again.messages());
    assert_eq!(before.len(), after.len(), "{data:?} -> {line:?}");
    for (one, two) in before.iter().zip(after) {
        assert_eq!(one.kind, two.kind, "{data:?} -> {line:?}");
        assert_eq!(one.method, two.method, "{data:?} -> {line:?}");
        assert_eq!(
            one.tool_call.as_ref().map(|call| &call.name),
            two.tool_call.as_ref().map(|call| &call.name),
            "{data:?} -> {line:?}"
        );
        let id = |raw: Option<&serde_json::value::RawValue>| {
            raw.map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()).ok())
        };
        assert_eq!(
            id(one.id.as_deref()),
            id(two.id.as_deref()),
            "{data:?} -> {line:?}"
        );
    }
});
