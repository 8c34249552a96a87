//! One message, one line: the framing of newline-delimited JSON-RPC links
//! (stdio servers Warden starts, and the client of `warden stdio`).
//!
//! A line reader splits where *it* sees a line end, and readers disagree:
//! the TypeScript SDK splits on LF, Python's text streams (the Python SDK)
//! on LF, CR and CRLF, and `str.splitlines`-style readers also on U+0085,
//! U+2028 and U+2029. A message whose bytes hold any of these could be read
//! as two messages on the far side, the second one never judged by Warden.
//! So every message Warden writes to such a link goes through
//! [`one_line`]:
//!
//! - it must be exactly one JSON text, an object or an array (a batch);
//!   anything else is refused, so two values can never share a line;
//! - raw CR and LF are removed: in valid JSON they can only be insignificant
//!   white space between tokens (they are not allowed inside strings), and no
//!   two tokens of valid JSON touch without punctuation between them, so no
//!   value changes;
//! - U+0085, U+2028 and U+2029, which valid JSON allows raw only inside
//!   strings, are written as `\u` escapes, the same characters to any JSON
//!   parser;
//! - white space around the message is trimmed.
//!
//! The other control characters some readers also treat as line ends (VT,
//! FF, FS, GS, RS) cannot appear raw in valid JSON at all, so the first rule
//! already keeps them out.
//!
//! A message that needs none of this is returned as it was, without a copy.
//! Where Warden reads lines that it passes on to such readers (what an
//! agent writes to `warden stdio`), it splits with [`is_line_end`] (CR ends
//! a line as LF does), so it judges the messages the most permissive of
//! those readers would see. What a server writes to Warden is split on LF
//! alone: nobody else reads it.

use std::borrow::Cow;

use serde::de::IgnoredAny;

/// What a line-delimited link puts after each message.
pub const LINE_END: &[u8] = b"\n";

/// Why a message cannot be written as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The message is not one JSON object or array.
    #[error("not a JSON-RPC message (one JSON object or array)")]
    NotAMessage,
    /// The message is not one well-formed JSON text.
    #[error("malformed JSON: {detail}")]
    NotJson {
        /// The parser's description, with its position (never the content).
        detail: String,
    },
}

/// `message` as one line (without its [`LINE_END`]): see the module docs.
pub fn one_line(message: &[u8]) -> Result<Cow<'_, [u8]>, LineError> {
    let message = trim_json_white_space(message);
    if !matches!(message.first(), Some(b'{' | b'[')) {
        return Err(LineError::NotAMessage);
    }
    // Skipping values does not check the UTF-8 of strings; a text-mode
    // reader on the far side would, so it is checked here.
    std::str::from_utf8(message).map_err(|err| LineError::NotJson {
        detail: format!("invalid UTF-8 at byte {}", err.valid_up_to()),
    })?;
    serde_json::from_slice::<IgnoredAny>(message).map_err(|err| LineError::NotJson {
        detail: err.to_string(),
    })?;
    Ok(escape_line_ends(message))
}

/// `message` without the white space JSON allows around a value.
fn trim_json_white_space(message: &[u8]) -> &[u8] {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = message
        .iter()
        .position(|b| !is_space(b))
        .unwrap_or(message.len());
    let end = message
        .iter()
        .rposition(|b| !is_space(b))
        .map_or(start, |end| end + 1);
    &message[start..end]
}

/// Whether `byte` ends a line for a reader on Warden's side of a link: LF,
/// or CR (alone or before LF; the empty line a CRLF leaves is skipped).
pub fn is_line_end(byte: u8) -> bool {
    byte == b'\n' || byte == b'\r'
}

/// Remove raw CR and LF, escape U+0085, U+2028 and U+2029. Only sound on
/// valid JSON, where those can only be white space and string content.
fn escape_line_ends(message: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut at = 0;
    while at < message.len() {
        let (width, replacement): (usize, &[u8]) = match message[at] {
            b'\n' | b'\r' => (1, b""),
            0xC2 if message.get(at + 1) == Some(&0x85) => (2, b"\\u0085"),
            0xE2 if message.get(at + 1) == Some(&0x80) => match message.get(at + 2) {
                Some(0xA8) => (3, b"\\u2028"),
                Some(0xA9) => (3, b"\\u2029"),
                _ => {
                    at += 1;
                    continue;
                }
            },
            _ => {
                at += 1;
                continue;
            }
        };
        let buffer = out.get_or_insert_with(|| Vec::with_capacity(message.len() + 16));
        buffer.extend_from_slice(&message[copied..at]);
        buffer.extend_from_slice(replacement);
        at += width;
        copied = at;
    }
    match out {
        None => Cow::Borrowed(message),
        Some(mut buffer) => {
            buffer.extend_from_slice(&message[copied..]);
            Cow::Owned(buffer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> String {
        let out = one_line(message.as_bytes()).expect("a message");
        String::from_utf8(out.into_owned()).expect("UTF-8")
    }

    #[test]
    fn a_plain_message_is_not_copied() {
        let message = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert!(matches!(one_line(message), Ok(Cow::Borrowed(m)) if m == message));
    }

    #[test]
    fn raw_line_breaks_between_tokens_are_removed() {
        let smuggling = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/x\",\"params\":{\"p\":\r\n{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"wipe\"}}\r}}\n";
        let out = line(smuggling);
        assert!(!out.contains(['\n', '\r']), "{out:?}");
        let before: serde_json::Value = serde_json::from_str(smuggling).expect("JSON");
        let after: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(before, after);
    }

    #[test]
    fn separators_inside_strings_are_escaped() {
        let message = "{\"text\":\"a\u{2028}b\u{2029}c\u{85}d — €\"}";
        let out = line(message);
        assert_eq!(out, r#"{"text":"a\u2028b\u2029c\u0085d — €"}"#);
        let value: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(value["text"], "a\u{2028}b\u{2029}c\u{85}d — €");
    }

    #[test]
    fn two_values_or_a_non_message_are_refused() {
        assert_eq!(
            one_line(br#"{"a":1} {"b":2}"#).map(|_| ()),
            Err(LineError::NotJson {
                detail: "trailing characters at line 1 column 9".into()
            })
        );
        assert_eq!(one_line(b"42"), Err(LineError::NotAMessage));
        assert_eq!(one_line(b"  "), Err(LineError::NotAMessage));
        assert!(matches!(
            one_line(b"{\"a\":\"\x0b\"}"),
            Err(LineError::NotJson { .. })
        ));
        assert!(matches!(
            one_line(b"{\"a\":1\x0c}"),
            Err(LineError::NotJson { .. })
        ));
    }

    #[test]
    fn invalid_utf8_and_other_white_space_are_refused() {
        for bytes in [
            &b"{\"a\":\"\xff\"}"[..],
            b"{\"a\":\"\xc0\x8a\"}",
            b"{\"a\":\"\xed\xa0\x80\"}",
        ] {
            assert!(
                matches!(one_line(bytes), Err(LineError::NotJson { .. })),
                "{bytes:?}"
            );
        }
        assert_eq!(one_line(b"\x0c{\"a\":1}"), Err(LineError::NotAMessage));
        assert!(matches!(
            one_line(b"{\"a\":1}\x0c"),
            Err(LineError::NotJson { .. })
        ));
    }

    #[test]
    fn surrounding_white_space_is_trimmed() {
        assert_eq!(line(" \r\n[{\"a\":1}]\r\n"), "[{\"a\":1}]");
    }
}
