//! Querying a trail: which records match a [`Filter`], and how they print.
//!
//! The filter is plain data so that every store can apply it its own way:
//! [`query_files`] reads JSON Lines files and applies [`Filter::matches`];
//! the PostgreSQL store turns the same fields into a `WHERE` clause. Times
//! compare as text: records' `time` is fixed-width RFC 3339 in UTC, so a
//! bound like `2026-05-01` or `2026-05-01T12:00` works as a prefix.

use std::borrow::Cow;
use std::io::BufRead;
use std::path::PathBuf;

use crate::file::trail_files;
use crate::log::StoreError;
use crate::record::{Kind, Record, timestamp};

/// Which records to show; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// At or after this time (see [`time_bound`]).
    pub since: Option<String>,
    /// Before this time (see [`time_bound`]).
    pub until: Option<String>,
    /// Warden's MCP session or the agent session.
    pub session: Option<String>,
    /// The calling agent, or the user it acts for.
    pub principal: Option<String>,
    /// The tool.
    pub tool: Option<String>,
    /// The decision (`allow`, `deny`, ...).
    pub decision: Option<String>,
    /// The kind of record.
    pub kind: Option<Kind>,
}

/// Why a query could not be run, or a record not read.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// A file or directory could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A line that is not a record.
    #[error("{file}:{line}: not an audit record ({error})")]
    Malformed {
        /// The file.
        file: String,
        /// The line, from 1.
        line: u64,
        /// What the parser said.
        error: String,
    },
    /// A time bound that is not a time.
    #[error(
        "{text:?} is not a time: give RFC 3339 (2026-05-01T12:00:00Z, or with an offset) or a prefix of it in UTC (2026-05-01, 2026-05-01T12)"
    )]
    BadTime {
        /// What was given.
        text: String,
    },
    /// A kind that does not exist.
    #[error("{text:?} is not a kind of record (tool_call, refusal, checkpoint, ...)")]
    UnknownKind {
        /// What was given.
        text: String,
    },
}

// === impl Filter ===

impl Filter {
    /// Whether `record` is one to show.
    pub fn matches(&self, record: &Record) -> bool {
        let is = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.since.as_ref().is_none_or(|s| record.time >= *s)
            && self.until.as_ref().is_none_or(|u| record.time < *u)
            && self.kind.is_none_or(|k| record.kind == k)
            && is(&self.tool, record.tool.as_deref())
            && is(&self.decision, record.decision.as_deref())
            && self.session.as_ref().is_none_or(|s| {
                record.mcp_session.as_deref() == Some(s.as_str())
                    || record.agent_session.as_deref() == Some(s.as_str())
            })
            && self.principal.as_ref().is_none_or(|p| {
                record
                    .principal
                    .as_ref()
                    .is_some_and(|who| who.agent == *p || who.user.as_ref() == Some(p))
            })
    }
}

/// A time bound as records write times: RFC 3339 (any offset) becomes UTC
/// with microseconds; a prefix in that form (`2026-05-01`, `2026-05-01T12`)
/// is kept as it is.
pub fn time_bound(text: &str) -> Result<String, QueryError> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(timestamp(time));
    }
    if let Some(time) = with_offset(text) {
        return Ok(timestamp(time));
    }
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let bytes = text.as_bytes();
    let prefix = bytes.len() >= 4
        && bytes.len() <= SHAPE.len()
        && bytes.iter().zip(SHAPE).all(|(&b, &s)| match s {
            b'd' => b.is_ascii_digit(),
            other => b == other,
        });
    if prefix {
        Ok(text.to_owned())
    } else {
        Err(QueryError::BadTime {
            text: text.to_owned(),
        })
    }
}

/// RFC 3339 with a numeric offset (`+02:00`), which humantime leaves out.
fn with_offset(text: &str) -> Option<std::time::SystemTime> {
    let split = text.len().checked_sub(6)?;
    let (local, offset) = text.split_at_checked(split)?;
    let sign = match offset.as_bytes().first()? {
        b'+' => 1i64,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let seconds = sign * (hours.parse::<i64>().ok()? * 3600 + minutes.parse::<i64>().ok()? * 60);
    let local = humantime::parse_rfc3339_weak(local).ok()?;
    let shift = std::time::Duration::from_secs(seconds.unsigned_abs());
    if seconds >= 0 {
        local.checked_sub(shift)
    } else {
        local.checked_add(shift)
    }
}

/// `text` as a record kind (`tool_call`, `checkpoint`, ...).
pub fn parse_kind(text: &str) -> Result<Kind, QueryError> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).map_err(|_| {
        QueryError::UnknownKind {
            text: text.to_owned(),
        }
    })
}

/// A kind as records write it.
pub fn kind_name(kind: Kind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{kind:?}"),
    }
}

/// The records in `paths` (files, or directories of `*.jsonl` files, read
/// in name order) that `filter` matches. A line that is not a record is
/// reported as an error and the reading goes on.
pub fn query_files(
    paths: &[PathBuf],
    filter: &Filter,
) -> impl Iterator<Item = Result<Record, QueryError>> + use<> {
    let filter = filter.clone();
    let (files, listing) = match trail_files(paths) {
        Ok(files) => (files, None),
        Err(err) => (Vec::new(), Some(Err(QueryError::from(err)))),
    };
    listing.into_iter().chain(
        files
            .into_iter()
            .flat_map(FileRecords::open)
            .filter(move |item| item.as_ref().map_or(true, |r| filter.matches(r))),
    )
}

/// The records of one file, line by line.
struct FileRecords {
    file: String,
    reader: Option<std::io::BufReader<std::fs::File>>,
    line: u64,
    buf: Vec<u8>,
    error: Option<QueryError>,
}

impl FileRecords {
    fn open(path: PathBuf) -> FileRecords {
        let file = path.display().to_string();
        match std::fs::File::open(&path) {
            Ok(handle) => FileRecords {
                file,
                reader: Some(std::io::BufReader::new(handle)),
                line: 0,
                buf: Vec::new(),
                error: None,
            },
            Err(source) => FileRecords {
                file: file.clone(),
                reader: None,
                line: 0,
                buf: Vec::new(),
                error: Some(QueryError::Store(StoreError::Io { path: file, source })),
            },
        }
    }
}

impl Iterator for FileRecords {
    type Item = Result<Record, QueryError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(err) = self.error.take() {
            return Some(Err(err));
        }
        let reader = self.reader.as_mut()?;
        self.buf.clear();
        match reader.read_until(b'\n', &mut self.buf) {
            Ok(0) => {
                self.reader = None;
                return None;
            }
            Ok(_) => {}
            Err(source) => {
                self.reader = None;
                return Some(Err(QueryError::Store(StoreError::Io {
                    path: self.file.clone(),
                    source,
                })));
            }
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        }
        Some(
            serde_json::from_slice(&self.buf).map_err(|err| QueryError::Malformed {
                file: self.file.clone(),
                line: self.line,
                error: err.to_string(),
            }),
        )
    }
}

// === formatting ===

/// Column widths of [`table_row`] (the last column is not padded).
const WIDTHS: [usize; 10] = [27, 17, 12, 18, 18, 22, 8, 20, 5, 9];
const HEADERS: [&str; 10] = [
    "TIME",
    "KIND",
    "ROUTE",
    "SESSION",
    "PRINCIPAL",
    "TOOL",
    "DECISION",
    "REASON",
    "ERROR",
    "LATENCY",
];

/// The header line of the table format.
pub fn table_header() -> String {
    join_row(HEADERS.iter().map(|h| Cow::Borrowed(*h)))
}

/// `record` as one line of the table format: time, kind, route, session,
/// principal, tool, decision, reason, is_error, latency; `-` for what the
/// record does not say. Control characters are shown as `?`, so a tool name
/// cannot drive the terminal.
pub fn table_row(record: &Record) -> String {
    let text = |value: Option<&str>| value.map_or(Cow::Borrowed("-"), |v| Cow::Owned(v.to_owned()));
    let principal = record.principal.as_ref().map(|p| match &p.user {
        Some(user) => format!("{}/{user}", p.agent),
        None => p.agent.clone(),
    });
    let cells = [
        Cow::Borrowed(record.time.as_str()),
        Cow::Owned(kind_name(record.kind)),
        text(record.route.as_deref()),
        text(
            record
                .agent_session
                .as_deref()
                .or(record.mcp_session.as_deref()),
        ),
        text(principal.as_deref()),
        text(record.tool.as_deref()),
        text(record.decision.as_deref()),
        text(record.reason.as_deref()),
        Cow::Borrowed(match record.is_error {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        }),
        record
            .latency_us
            .map_or(Cow::Borrowed("-"), |us| Cow::Owned(latency(us))),
    ];
    join_row(cells.into_iter())
}

/// `record` as one line of the `jsonl` format (as the store wrote it).
pub fn jsonl_line(record: &Record) -> String {
    serde_json::to_string(record).unwrap_or_default()
}

fn join_row<'a>(cells: impl Iterator<Item = Cow<'a, str>>) -> String {
    let mut row = String::with_capacity(180);
    for (i, cell) in cells.enumerate() {
        let width = WIDTHS[i];
        let last = i == WIDTHS.len() - 1;
        let cut = !last && cell.chars().nth(width).is_some();
        let mut shown = 0;
        for c in cell.chars() {
            if cut && shown + 1 == width {
                row.push('…');
                shown += 1;
                break;
            }
            row.push(if c.is_control() { '?' } else { c });
            shown += 1;
            if shown == width && !last {
                break;
            }
        }
        if !last {
            row.extend(std::iter::repeat_n(' ', width.saturating_sub(shown) + 1));
        }
    }
    row
}

fn latency(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1_000.0)
    } else {
        format!("{:.2}s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::PrincipalField;

    fn call() -> Record {
        let mut record = Record::new(Kind::ToolCall, "w1");
        record.time = "2026-05-01T12:00:00.000000Z".into();
        record.tool = Some("search".into());
        record.decision = Some("allow".into());
        record.agent_session = Some("s-1".into());
        record.principal = Some(PrincipalField {
            agent: "bot".into(),
            user: Some("ada".into()),
        });
        record.latency_us = Some(1_500);
        record
    }

    #[test]
    fn every_field_given_must_match() {
        let record = call();
        let mut filter = Filter {
            since: Some(time_bound("2026-05-01").expect("time")),
            until: Some(time_bound("2026-05-02").expect("time")),
            session: Some("s-1".into()),
            principal: Some("ada".into()),
            tool: Some("search".into()),
            decision: Some("allow".into()),
            kind: Some(parse_kind("tool_call").expect("kind")),
        };
        assert!(filter.matches(&record));
        filter.until = Some(time_bound("2026-05-01T12:00:00Z").expect("time"));
        assert!(!filter.matches(&record), "until is exclusive");
        filter.until = None;
        filter.principal = Some("bot".into());
        assert!(filter.matches(&record));
        filter.tool = Some("delete".into());
        assert!(!filter.matches(&record));
    }

    #[test]
    fn time_bounds_are_normalized_to_utc_or_kept_as_prefixes() {
        assert_eq!(
            time_bound("2026-05-01T14:00:00+02:00").expect("time"),
            "2026-05-01T12:00:00.000000Z"
        );
        assert_eq!(time_bound("2026-05-01T12").expect("time"), "2026-05-01T12");
        assert!(matches!(
            time_bound("yesterday"),
            Err(QueryError::BadTime { .. })
        ));
        assert!(matches!(
            parse_kind("tool-call"),
            Err(QueryError::UnknownKind { .. })
        ));
    }

    #[test]
    fn a_row_shows_every_column_and_no_control_characters() {
        let mut record = call();
        record.tool = Some("evil\u{1b}[2Jtool".into());
        let row = table_row(&record);
        assert!(
            row.starts_with("2026-05-01T12:00:00.000000Z tool_call"),
            "{row}"
        );
        assert!(row.contains("bot/ada"), "{row}");
        assert!(row.contains("evil?[2Jtool"), "{row}");
        assert!(row.ends_with("1.5ms"), "{row}");
        assert!(!row.contains('\u{1b}'));
        assert_eq!(
            table_header().find("KIND"),
            row.find("tool_call"),
            "columns line up"
        );
    }
}
