//! `one_line` on arbitrary bytes: it never panics, and whatever it returns
//! is one JSON object or array on one line (no LF, CR, VT, FF, FS, GS, RS,
//! U+0085, U+2028, U+2029), read by a JSON parser as the input's value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_protocol::line::one_line;

#[path = "checks.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = one_line(data) {
        checks::assert_is_one_line(&line);
        checks::assert_same_value(data, &line);
    }
});
