//! Located YAML: parse into raw serde structs whose fields remember where they
//! came from, then validate, reporting *every* problem with its line and column.
//!
//! Syntax errors and structural errors (an unknown key, a wrong type) stop the
//! parse, so only the first of those is reported; every semantic error found
//! during validation is reported together.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
pub use serde_saphyr::Spanned;

/// One problem in a file, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line (0 when unknown).
    pub line: u64,
    /// 1-based column (0 when unknown).
    pub column: u64,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

impl Diagnostic {
    /// A problem at a located value.
    pub fn at<T>(value: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: value.referenced.line(),
            column: value.referenced.column(),
            message: message.into(),
        }
    }

    /// A problem with no better position than the start of the file.
    pub fn file(message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            line: 1,
            column: 1,
            message: message.into(),
        }
    }
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics {
    /// Where the text came from (a path, or a name like `embedded demo policy`).
    pub origin: String,
    /// The problems, in file order.
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.origin, item.line, item.column, item.message
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Collects diagnostics during validation.
#[derive(Debug, Default)]
pub struct Collector {
    items: Vec<Diagnostic>,
}

impl Collector {
    /// Record a problem.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    /// `Ok(value)` if nothing was recorded, else every problem in file order.
    pub fn finish<T>(mut self, origin: &str, value: T) -> Result<T, Diagnostics> {
        if self.items.is_empty() {
            return Ok(value);
        }
        self.items.sort_by_key(|d| (d.line, d.column));
        Err(Diagnostics {
            origin: origin.to_owned(),
            items: self.items,
        })
    }
}

/// Parse YAML text into a raw struct, mapping a parse failure to a located diagnostic.
pub fn parse<T: DeserializeOwned>(text: &str, origin: &str) -> Result<T, Diagnostics> {
    serde_saphyr::from_str(text).map_err(|err| {
        let (line, column) = err
            .location()
            .map_or((0, 0), |location| (location.line(), location.column()));
        let message = err.without_snippet().to_string();
        // The bare message still ends with its own position; ours comes first.
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_owned(),
            None => message,
        };
        let message = plain_words(&message);
        Diagnostics {
            origin: origin.to_owned(),
            items: vec![Diagnostic {
                line,
                column,
                message,
            }],
        }
    })
}

/// The parser's wording, said for an operator rather than a programmer.
fn plain_words(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest).trim();
        return format!(
            "\"{key}\" appears twice here; each key may appear once (merge the two entries)"
        );
    }
    if message.contains("expected mapping start") {
        return "expected a mapping here (indented \"key: value\" lines), not a single value or a list".to_owned();
    }
    message.to_owned()
}

/// Parse a duration written like `30s`, `500ms` or `5m`.
pub fn duration(value: &Spanned<String>, errors: &mut Collector) -> Option<Duration> {
    match humantime::parse_duration(value.value.trim()) {
        Ok(duration) => Some(duration),
        Err(err) => {
            errors.push(Diagnostic::at(
                value,
                format!(
                    "invalid duration \"{}\": {err} (write e.g. \"30s\", \"500ms\", \"5m\")",
                    value.value
                ),
            ));
            None
        }
    }
}

/// Parse a byte size written like `4MiB`, `512KiB` or `1048576`.
pub fn byte_size(value: &Spanned<String>, errors: &mut Collector) -> Option<usize> {
    let text = value.value.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: Option<usize> = match unit.trim() {
        "" | "B" => Some(1),
        "KiB" => Some(1 << 10),
        "MiB" => Some(1 << 20),
        "GiB" => Some(1 << 30),
        _ => None,
    };
    match (digits.parse::<usize>(), multiplier) {
        (Ok(n), Some(m)) if n > 0 => n.checked_mul(m).or_else(|| {
            errors.push(Diagnostic::at(
                value,
                format!("size \"{text}\" is too large"),
            ));
            None
        }),
        _ => {
            errors.push(Diagnostic::at(
                value,
                format!(
                    "invalid size \"{text}\" (write e.g. \"4MiB\", \"512KiB\" or a number of bytes)"
                ),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Raw {
        timeout: Spanned<String>,
        size: Spanned<String>,
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let err =
            parse::<Raw>("timeout: 1s\nsize: 1MiB\nbogus: 1\n", "f.yaml").expect_err("unknown key");
        assert_eq!(err.items.len(), 1);
        assert_eq!(err.items[0].line, 3, "{err}");
        assert!(err.items[0].message.contains("bogus"), "{err}");
        assert!(err.to_string().starts_with("f.yaml:3:"), "{err}");
    }

    #[test]
    fn durations_and_sizes_report_every_error_in_order() {
        let raw: Raw = parse("size: 12 parsecs\ntimeout: soon\n", "f.yaml").expect("parses");
        let mut errors = Collector::default();
        assert_eq!(duration(&raw.timeout, &mut errors), None);
        assert_eq!(byte_size(&raw.size, &mut errors), None);
        let err = errors.finish("f.yaml", ()).expect_err("two errors");
        assert_eq!(err.items.len(), 2);
        assert_eq!((err.items[0].line, err.items[0].column), (1, 7));
        assert!(err.items[0].message.contains("invalid size"));
        assert_eq!(err.items[1].line, 2);
        assert!(err.items[1].message.contains("invalid duration"));
    }

    #[test]
    fn sizes_and_durations_parse() {
        let raw: Raw = parse("timeout: 1m 30s\nsize: 4MiB\n", "f.yaml").expect("parses");
        let mut errors = Collector::default();
        assert_eq!(
            duration(&raw.timeout, &mut errors),
            Some(Duration::from_secs(90))
        );
        assert_eq!(byte_size(&raw.size, &mut errors), Some(4 << 20));
        assert!(errors.finish("f", ()).is_ok());
    }
}
