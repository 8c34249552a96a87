//! The JSON tree redaction walks: parsed once from a `RawValue`, borrowing
//! its text, so what no rule touched is written back as the bytes that
//! came in; and the canonical text `hash` reads.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{MASK, MAX_DEPTH};

/// A parsed JSON value that remembers its text, so what nothing touched is
/// written back as it came.
#[derive(Debug)]
pub(super) struct Node<'a> {
    pub(super) raw: &'a str,
    pub(super) kind: Kind<'a>,
    pub(super) dirty: bool,
}

#[derive(Debug)]
pub(super) enum Kind<'a> {
    Object(Vec<Member<'a>>),
    Array(Vec<Node<'a>>),
    /// A string; `raw` is its JSON text, quotes included.
    Str,
    /// A number, `true`, `false` or `null`, as written.
    Scalar,
    /// New JSON text (a mask, a hash, a string with secrets replaced).
    Replaced(String),
}

#[derive(Debug)]
pub(super) struct Member<'a> {
    pub(super) raw_key: &'a str,
    pub(super) key: Cow<'a, str>,
    pub(super) value: Node<'a>,
}

/// Text that is not JSON, or JSON nested deeper than [`MAX_DEPTH`](super::MAX_DEPTH).
#[derive(Debug)]
pub(super) struct Unreadable;

/// A string's value from its JSON text (borrowed unless it has escapes).
pub(super) fn decode(raw: &str) -> Cow<'_, str> {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    match serde_json::from_str::<String>(raw) {
        Ok(value) => Cow::Owned(value),
        Err(_) => Cow::Borrowed(inner),
    }
}

/// `text` as a JSON string.
pub(super) fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| format!("\"{MASK}\""))
}

/// The canonical JSON text of a value, as `hash` reads it: no white space,
/// object members sorted by name (byte order, duplicates kept in order),
/// strings with their escapes normalized (as `serde_json` writes them),
/// numbers as written (`1.0` and `1` are different values).
pub fn canonical_json(value: &RawValue) -> Option<String> {
    let node = parse(value.get()).ok()?;
    let mut out = String::with_capacity(value.get().len());
    canonical(&node, &mut out);
    Some(out)
}

pub(super) fn canonical(node: &Node<'_>, out: &mut String) {
    match &node.kind {
        Kind::Object(members) => {
            let mut sorted: Vec<&Member<'_>> = members.iter().collect();
            sorted.sort_by(|a, b| a.key.cmp(&b.key));
            out.push('{');
            for (i, member) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&quote(&member.key));
                out.push(':');
                canonical(&member.value, out);
            }
            out.push('}');
        }
        Kind::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        Kind::Str => out.push_str(&quote(&decode(node.raw))),
        Kind::Scalar => out.push_str(node.raw),
        Kind::Replaced(text) => out.push_str(text),
    }
}

// === impl Node ===

impl<'a> Node<'a> {
    pub(super) fn replace(&mut self, text: String) {
        self.kind = Kind::Replaced(text);
        self.dirty = true;
    }

    /// Write the node's JSON text: as it came when nothing below changed.
    pub(super) fn write(&self, out: &mut String) {
        if !self.dirty {
            out.push_str(self.raw);
            return;
        }
        match &self.kind {
            Kind::Object(members) => {
                out.push('{');
                for (i, member) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(member.raw_key);
                    out.push(':');
                    member.value.write(out);
                }
                out.push('}');
            }
            Kind::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Kind::Str | Kind::Scalar => out.push_str(self.raw),
            Kind::Replaced(text) => out.push_str(text),
        }
    }
}

// === the parser ===

/// Parse JSON text (already known to be valid: it is a `RawValue`) into
/// nodes borrowing it.
pub(super) fn parse(text: &str) -> Result<Node<'_>, Unreadable> {
    let mut parser = Parser { text, pos: 0 };
    let node = parser.value(0)?;
    parser.skip_ws();
    if parser.pos == text.len() {
        Ok(node)
    } else {
        Err(Unreadable)
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), Unreadable> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Unreadable)
        }
    }

    fn slice(&self, start: usize) -> Result<&'a str, Unreadable> {
        self.text.get(start..self.pos).ok_or(Unreadable)
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, Unreadable> {
        self.skip_ws();
        let start = self.pos;
        let kind = match self.peek().ok_or(Unreadable)? {
            b'{' => {
                if depth >= MAX_DEPTH {
                    return Err(Unreadable);
                }
                self.pos += 1;
                let mut members = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                } else {
                    loop {
                        self.skip_ws();
                        let key_start = self.pos;
                        self.string()?;
                        let raw_key = self.slice(key_start)?;
                        self.expect(b':')?;
                        let value = self.value(depth + 1)?;
                        members.push(Member {
                            raw_key,
                            key: decode(raw_key),
                            value,
                        });
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b'}') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(Unreadable),
                        }
                    }
                }
                Kind::Object(members)
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return Err(Unreadable);
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.skip_ws();
                if self.peek() == Some(b']') {
                    self.pos += 1;
                } else {
                    loop {
                        items.push(self.value(depth + 1)?);
                        self.skip_ws();
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b']') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err(Unreadable),
                        }
                    }
                }
                Kind::Array(items)
            }
            b'"' => {
                self.string()?;
                Kind::Str
            }
            _ => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(Unreadable);
                }
                Kind::Scalar
            }
        };
        Ok(Node {
            raw: self.slice(start)?,
            kind,
            dirty: false,
        })
    }

    /// Skip a string (the cursor on its opening quote).
    fn string(&mut self) -> Result<(), Unreadable> {
        if self.peek() != Some(b'"') {
            return Err(Unreadable);
        }
        self.pos += 1;
        loop {
            match self.peek().ok_or(Unreadable)? {
                b'"' => {
                    self.pos += 1;
                    return Ok(());
                }
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
    }
}
