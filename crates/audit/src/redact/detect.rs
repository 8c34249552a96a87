//! The built-in detectors: hand-written scanners for secrets inside a
//! string. Each is linear in the string's length and allocates nothing
//! unless it finds something.

use std::cmp::Reverse;

use warden_policy::Detector;

/// `text` with every secret the detectors find replaced, and which fired;
/// `None` (without allocating) when there is nothing to redact.
pub(super) fn detect(detectors: &[Detector], text: &str) -> Option<(String, Vec<Detector>)> {
    let bytes = text.as_bytes();
    let mut spans: Vec<(usize, usize, Detector)> = Vec::new();
    for &detector in detectors {
        let mut found = |start: usize, end: usize| spans.push((start, end, detector));
        match detector {
            Detector::Email => emails(bytes, &mut found),
            Detector::Card => cards(bytes, &mut found),
            Detector::Bearer => bearers(bytes, &mut found),
            Detector::Jwt => jwts(bytes, &mut found),
            Detector::ApiKey => api_keys(bytes, &mut found),
        }
    }
    if spans.is_empty() {
        return None;
    }
    // Earliest first, the longest of those that start together; a span
    // overlapping one already taken is part of it.
    spans.sort_by_key(|&(start, end, _)| (start, Reverse(end)));
    let mut out = String::with_capacity(text.len());
    let mut fired = Vec::new();
    let mut cursor = 0;
    for (start, end, detector) in spans {
        if start < cursor {
            continue;
        }
        // Spans start and end at ASCII bytes, so these are char boundaries.
        out.push_str(text.get(cursor..start).unwrap_or_default());
        out.push_str("[redacted:");
        out.push_str(detector.as_str());
        out.push(']');
        cursor = end;
        if !fired.contains(&detector) {
            fired.push(detector);
        }
    }
    out.push_str(text.get(cursor..).unwrap_or_default());
    fired.sort();
    Some((out, fired))
}

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_domain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-')
}

/// `local@domain.tld`: a local part of letters, digits and `._%+-`; a
/// domain of at least two dot-separated labels of letters, digits and
/// inner hyphens, the last of at least two letters.
fn emails(s: &[u8], found: &mut impl FnMut(usize, usize)) {
    let mut from = 0;
    while let Some(offset) = s
        .get(from..)
        .and_then(|rest| rest.iter().position(|&b| b == b'@'))
    {
        let at = from + offset;
        from = at + 1;
        let mut start = at;
        while start > 0 && is_local(s[start - 1]) {
            start -= 1;
        }
        while start < at && s[start] == b'.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < s.len() && is_domain(s[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(s[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start < at && valid_domain(&s[at + 1..end]) {
            found(start, end);
        }
    }
}

fn valid_domain(domain: &[u8]) -> bool {
    let mut labels = 0;
    let mut last: &[u8] = &[];
    for label in domain.split(|&b| b == b'.') {
        if label.is_empty() || label[0] == b'-' || label[label.len() - 1] == b'-' {
            return false;
        }
        labels += 1;
        last = label;
    }
    labels >= 2 && last.len() >= 2 && last.iter().all(u8::is_ascii_alphabetic)
}

/// 13 to 19 digits, single spaces or dashes between them allowed, not part
/// of a longer word or number, passing the Luhn check.
fn cards(s: &[u8], found: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !(s[i - 1].is_ascii_alphanumeric() || s[i - 1] == b'.');
        if !s[i].is_ascii_digit() || !boundary {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = [0u8; 19];
        let mut count = 0usize;
        let mut j = i;
        let mut end = i;
        loop {
            match s.get(j) {
                Some(b) if b.is_ascii_digit() => {
                    if let Some(slot) = digits.get_mut(count) {
                        *slot = b - b'0';
                    }
                    count += 1;
                    j += 1;
                    end = j;
                }
                Some(b' ' | b'-') if s.get(j + 1).is_some_and(u8::is_ascii_digit) => j += 1,
                _ => break,
            }
        }
        let after_ok = match s.get(end) {
            None => true,
            Some(b'.') => !s.get(end + 1).is_some_and(u8::is_ascii_digit),
            Some(b) => !b.is_ascii_alphanumeric(),
        };
        if (13..=19).contains(&count) && after_ok && luhn(&digits[..count]) {
            found(start, end);
        }
        i = end.max(i + 1);
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, &d) in digits.iter().rev().enumerate() {
        let d = u32::from(d);
        sum += if i % 2 == 1 {
            let doubled = d * 2;
            if doubled > 9 { doubled - 9 } else { doubled }
        } else {
            d
        };
    }
    sum.is_multiple_of(10)
}

fn is_b64token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
}

/// `Bearer` (any case), spaces, and an RFC 6750 token that is not a plain
/// word: at least 8 characters with a digit or a symbol, or at least 20.
fn bearers(s: &[u8], found: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    while i + 7 <= s.len() {
        let candidate = s[i..i + 6].eq_ignore_ascii_case(b"bearer")
            && s[i + 6] == b' '
            && (i == 0 || !s[i - 1].is_ascii_alphanumeric());
        if !candidate {
            i += 1;
            continue;
        }
        let mut t = i + 7;
        while t < s.len() && s[t] == b' ' {
            t += 1;
        }
        let token_start = t;
        while t < s.len() && is_b64token(s[t]) {
            t += 1;
        }
        while t < s.len() && s[t] == b'=' {
            t += 1;
        }
        let token = &s[token_start..t];
        let symbolic = token.iter().any(|b| !b.is_ascii_alphabetic());
        if token.len() >= 20 || (token.len() >= 8 && symbolic) {
            found(i, t);
            i = t;
        } else {
            i += 1;
        }
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

/// Three (or more) dot-separated base64url segments, none of the first
/// three empty, the first starting `eyJ` (`{"` encoded).
fn jwts(s: &[u8], found: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    while i + 3 <= s.len() {
        let candidate =
            &s[i..i + 3] == b"eyJ" && (i == 0 || !(is_b64url(s[i - 1]) || s[i - 1] == b'.'));
        if !candidate {
            i += 1;
            continue;
        }
        let mut t = i;
        let mut segments = 0;
        let mut first_three_full = true;
        loop {
            let segment_start = t;
            while t < s.len() && is_b64url(s[t]) {
                t += 1;
            }
            if segments < 3 && t == segment_start {
                first_three_full = false;
            }
            segments += 1;
            if t < s.len() && s[t] == b'.' {
                t += 1;
            } else {
                break;
            }
        }
        let mut end = t;
        while end > i && s[end - 1] == b'.' {
            end -= 1;
        }
        if segments >= 3 && first_three_full {
            found(i, end);
        }
        // No `eyJ` inside the run scanned can start a token of its own.
        i = t.max(i + 1);
    }
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-')
}

/// Well-known API key shapes, each a prefix and a body (see `api_key_at`).
fn api_keys(s: &[u8], found: &mut impl FnMut(usize, usize)) {
    let mut i = 0;
    while i < s.len() {
        if i > 0 && is_key_char(s[i - 1]) {
            i += 1;
            continue;
        }
        match api_key_at(s, i) {
            Some(end) => {
                found(i, end);
                i = end;
            }
            None => i += 1,
        }
    }
}

/// The end of the API key starting at `i`, if one does.
fn api_key_at(s: &[u8], i: usize) -> Option<usize> {
    let rest = &s[i..];
    let run = |from: usize, allowed: fn(u8) -> bool| {
        from + rest
            .get(from..)
            .map_or(0, |tail| tail.iter().take_while(|&&b| allowed(b)).count())
    };
    let has_digit = |from: usize, to: usize| rest[from..to].iter().any(u8::is_ascii_digit);
    let upper_alnum = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let alnum_underscore = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let alnum_dash = |b: u8| b.is_ascii_alphanumeric() || b == b'-';
    // AWS access key ids: exactly 16 upper-case letters or digits.
    if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") {
        let end = run(4, upper_alnum);
        return (end == 20 && !rest.get(end).is_some_and(|&b| is_key_char(b))).then_some(i + end);
    }
    // Google API keys: exactly 35 characters.
    if rest.starts_with(b"AIza") {
        let end = run(4, is_key_char);
        return (end == 39).then_some(i + end);
    }
    // Stripe, OpenAI: at least 16 characters with a digit.
    for prefix in [
        &b"sk_live_"[..],
        b"sk_test_",
        b"rk_live_",
        b"rk_test_",
        b"sk-",
    ] {
        if rest.starts_with(prefix) {
            let end = run(prefix.len(), is_key_char);
            let long = end - prefix.len() >= 16 && has_digit(prefix.len(), end);
            return long.then_some(i + end);
        }
    }
    // GitHub: fine-grained and classic tokens.
    if rest.starts_with(b"github_pat_") {
        let end = run(11, alnum_underscore);
        return (end - 11 >= 22).then_some(i + end);
    }
    for prefix in [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"] {
        if rest.starts_with(prefix) {
            let end = run(4, alnum);
            return (end - 4 >= 30).then_some(i + end);
        }
    }
    // Slack: xoxa-, xoxb-, xoxp-, xoxr-, xoxs-.
    if rest.len() >= 5
        && rest.starts_with(b"xox")
        && matches!(rest[3], b'a' | b'b' | b'p' | b'r' | b's')
        && rest[4] == b'-'
    {
        let end = run(5, alnum_dash);
        return (end - 5 >= 10 && has_digit(5, end)).then_some(i + end);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect_only(detector: Detector, text: &str) -> String {
        detect(&[detector], text).map_or_else(|| text.to_owned(), |(clean, _)| clean)
    }

    #[test]
    fn emails_are_found_inside_text() {
        assert_eq!(
            detect_only(Detector::Email, "write to ann.lee+x@mail.example.com."),
            "write to [redacted:email]."
        );
        assert_eq!(
            detect_only(Detector::Email, "a@b.io and c_d@e-f.org"),
            "[redacted:email] and [redacted:email]"
        );
        for near in [
            "user@localhost",
            "a@b.c",
            "@example.com",
            "x@-bad.com",
            "x@a..com",
            "x@1.23",
            "no at sign",
        ] {
            assert_eq!(detect_only(Detector::Email, near), near);
        }
    }

    #[test]
    fn cards_must_pass_luhn() {
        assert_eq!(
            detect_only(Detector::Card, "card 4111 1111 1111 1111 exp 12/29"),
            "card [redacted:card] exp 12/29"
        );
        assert_eq!(
            detect_only(Detector::Card, "4111-1111-1111-1111"),
            "[redacted:card]"
        );
        assert_eq!(
            detect_only(Detector::Card, "amex 378282246310005."),
            "amex [redacted:card]."
        );
        for near in [
            "4111 1111 1111 1112",
            "41111111111111111111",
            "411111111111",
            "id4111111111111111",
            "4111111111111111x",
            "3.4111111111111111",
            "4111  1111 1111 1111",
        ] {
            assert_eq!(detect_only(Detector::Card, near), near);
        }
    }

    #[test]
    fn bearer_tokens_but_not_the_word() {
        assert_eq!(
            detect_only(Detector::Bearer, "Authorization: Bearer abc.DEF-123_x=="),
            "Authorization: [redacted:bearer]"
        );
        assert_eq!(
            detect_only(Detector::Bearer, "bearer abcdefghijklmnopqrstuvwxyz, ok"),
            "[redacted:bearer], ok"
        );
        for near in [
            "Bearer of bad news",
            "the bearer tokens",
            "Bearer authentication",
            "xBearer abc.DEF-123_x",
        ] {
            assert_eq!(detect_only(Detector::Bearer, near), near);
        }
    }

    #[test]
    fn jwts_have_three_segments_and_a_json_header() {
        let jwt =
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            detect_only(Detector::Jwt, &format!("token={jwt}.")),
            "token=[redacted:jwt]."
        );
        for near in [
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
            "eyJhbGciOiJIUzI1NiJ9..sig",
            "xeyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "abc.def.ghi",
        ] {
            assert_eq!(detect_only(Detector::Jwt, near), near);
        }
    }

    #[test]
    fn api_keys_of_each_shape() {
        for key in [
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAIOSFODNN7EXAMPLE",
            "sk-proj-abc123DEF456ghi789",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "ghp_1234567890abcdefghijABCDEFGHIJ123456",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnop",
            "xoxb-1234567890-abcdefghij",
            "AIzaSyA1234567890abcdefghijklmnopqrstuv",
        ] {
            assert_eq!(
                detect_only(Detector::ApiKey, &format!("key: {key} end")),
                "key: [redacted:api-key] end",
                "{key}"
            );
        }
        for near in [
            "AKIAIOSFODNN7EXAMPL",
            "AKIAIOSFODNN7EXAMPLE1",
            "AKIAiosfodnn7example",
            "sk-learn-is-a-library",
            "task-1234567890abcdefgh",
            "ghp_short",
            "xoxq-1234567890-abcdefghij",
            "AIzaSyA1234567890",
        ] {
            assert_eq!(detect_only(Detector::ApiKey, near), near, "{near}");
        }
    }

    #[test]
    fn strings_with_nothing_to_redact_are_left_alone() {
        assert_eq!(
            detect(&Detector::ALL, "plain text, 12 digits 123456789012"),
            None
        );
        assert_eq!(detect(&Detector::ALL, ""), None);
    }

    #[test]
    fn scanners_are_linear_on_hostile_input() {
        // Shapes that would make a naive scanner quadratic.
        let hostile = [
            "a@".repeat(50_000),
            "a.".repeat(50_000) + "@",
            "Bearer ".repeat(30_000),
            "eyJ.".repeat(30_000),
            "1 ".repeat(50_000),
            "sk-".repeat(30_000),
            " AKIA".repeat(30_000),
        ];
        let start = std::time::Instant::now();
        for text in &hostile {
            let _ = detect(&Detector::ALL, text);
        }
        // Generous: a quadratic scan of these takes minutes.
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
    }
}
