//! The properties both targets assert about what `one_line` returns.

/// Raw bytes that some line reader takes as a line end: LF, CR, VT, FF, FS,
/// GS, RS (and, as UTF-8, NEL, LS, PS below).
const LINE_END_BYTES: &[u8] = b"\n\r\x0b\x0c\x1c\x1d\x1e";

/// U+0085, U+2028 and U+2029 in UTF-8.
const LINE_END_CHARS: [&[u8]; 3] = [b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9"];

/// Panics when `line` holds anything a line reader could split on.
pub fn assert_no_line_end(line: &[u8]) {
    if let Some(at) = line.iter().position(|b| LINE_END_BYTES.contains(b)) {
        panic!("line end byte {:#04x} at {at} in {line:?}", line[at]);
    }
    for char in LINE_END_CHARS {
        if let Some(at) = line.windows(char.len()).position(|w| w == char) {
            panic!("line end character {char:x?} at {at} in {line:?}");
        }
    }
}

/// Panics unless `line` is one JSON text, written as one line that
/// `one_line` keeps as is.
///
/// "One JSON text" is valid UTF-8 and one value to serde's `IgnoredAny`,
/// which does not pair `\u` surrogate escapes: a lone `\ud800` is valid
/// JSON grammar, ASCII, and no line end, so `one_line` passes it through
/// (`serde_json::Value` refuses it; docs/fuzzing.md, "Known").
pub fn assert_is_one_line(line: &[u8]) {
    assert_no_line_end(line);
    if let Err(err) = std::str::from_utf8(line) {
        panic!("output is not UTF-8 ({err}): {line:?}");
    }
    assert!(
        matches!(line.first(), Some(b'{' | b'[')),
        "not an object or array: {line:?}"
    );
    if let Err(err) = serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        panic!("output is not one JSON text ({err}): {line:?}");
    }
    match warden_protocol::line::one_line(line) {
        Ok(std::borrow::Cow::Borrowed(again)) if again == line => {}
        other => panic!("one_line is not idempotent: {line:?} -> {other:?}"),
    }
}

/// Panics unless a JSON parser reads `line` as the value it reads in
/// `message`: the same value, or an error for both (as for a lone `\ud800`
/// escape, which serde_json refuses in a string).
pub fn assert_same_value(message: &[u8], line: &[u8]) {
    let before = serde_json::from_slice::<serde_json::Value>(message.trim_ascii());
    let after = serde_json::from_slice::<serde_json::Value>(line);
    match (before, after) {
        (Ok(before), Ok(after)) => assert_eq!(before, after, "{message:?} -> {line:?}"),
        (Err(_), Err(_)) => {}
        (before, after) => panic!("{message:?} -> {line:?}: {before:?} became {after:?}"),
    }
}
