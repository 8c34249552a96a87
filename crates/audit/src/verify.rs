//! Verifying a trail: the hash chain, the seq order and the signed
//! checkpoints, whatever store the records come from.
//!
//! A [`ChainVerifier`] is fed one chain's lines in order, each with where it
//! came from (a [`Location`]: a file and line, or a table and row), and
//! stops at the first [`Problem`]: a sentence naming the record and what an
//! operator should make of it (a line edited, deleted or swapped, a rotated
//! file missing, a cut trail, a forged checkpoint). [`verify_files`] feeds
//! it the files of a directory; the PostgreSQL store feeds it rows.
//!
//! What it proves: every record links to the one before it, no seq is
//! missing or out of place, and every checkpoint names the record before it
//! and (with the operator's public key) was signed by that key. Whoever can
//! write the files can recompute the chain, so without a key a trail only
//! shows it is consistent; the summary says when signatures were not checked.
//! The last records are vouched for only once a checkpoint follows them:
//! Warden writes one at least every `checkpoint_every` records and when it
//! stops.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::chain::{CheckpointDetail, GENESIS, checkpoint_is_signed_by, line_hash};
use crate::file::trail_files;
use crate::log::StoreError;
use crate::record::SCHEMA_VERSION;

/// Where a record was read: a file's line, or a table's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or table) it was read from.
    pub source: Arc<str>,
    /// Where in it.
    pub at: Position,
}

/// A position inside a [`Location::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// A line of a file, from 1.
    Line(u64),
    /// A row of a table, by its id.
    Row(i64),
}

/// A record that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Problem {
    /// Where the record is.
    pub location: Location,
    /// Its seq, when it could be read.
    pub seq: Option<u64>,
    /// What is wrong.
    pub kind: ProblemKind,
}

/// What is wrong with a record; each reads as a sentence for an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemKind {
    /// Not JSON, or not an audit record.
    #[error("this line is not an audit record ({error}): the file was damaged or edited")]
    Malformed {
        /// What the parser said.
        error: String,
    },
    /// A schema version this build cannot read.
    #[error(
        "the record has schema version {v}, and this warden reads version {SCHEMA_VERSION}: verify it with the Warden release that wrote it (or a newer one)"
    )]
    UnknownVersion {
        /// The record's `v`.
        v: u64,
    },
    /// A record without a chain position.
    #[error(
        "the record has no chain position (chain, seq): it was not written by Warden's audit writer"
    )]
    NotSealed,
    /// A record of another chain among this chain's records.
    #[error(
        "the record belongs to chain {found}, not {expected}: records of two Warden instances were mixed in one file"
    )]
    OtherChain {
        /// The chain being verified.
        expected: String,
        /// The record's chain.
        found: String,
    },
    /// The chain's first record does not start from the genesis hash.
    #[error(
        "the chain's first record names a previous hash ({prev}) instead of the genesis value: records before it were removed and the rest renumbered, or the line was edited"
    )]
    FirstNotGenesis {
        /// The `prev` it names.
        prev: String,
    },
    /// The next record names another hash for this one.
    #[error(
        "the record was changed after it was written: the next record ({next}, seq {next_seq}) names a different hash for it (or that record's prev field was changed)"
    )]
    Edited {
        /// Where the next record is.
        next: Location,
        /// Its seq.
        next_seq: u64,
    },
    /// Records missing before this one.
    #[error("{}", missing_sentence(*.from, *.to, .before, *.across_files))]
    Missing {
        /// The first missing seq.
        from: u64,
        /// The last missing seq.
        to: u64,
        /// The record before the gap.
        before: Location,
        /// Whether the gap lies between two files (or tables).
        across_files: bool,
    },
    /// A record out of order with another (swapped, moved or repeated).
    #[error(
        "the record is out of order with seq {other_seq} at {other}: lines were swapped, reordered or duplicated"
    )]
    OutOfOrder {
        /// The seq of the record it is out of order with.
        other_seq: u64,
        /// Where that record is.
        other: Location,
    },
    /// A last line without its line feed.
    #[error(
        "the last line is incomplete (no line feed): the file was cut short, or its writer crashed mid-write (Warden cuts such a line off when it reopens the trail)"
    )]
    TornLine,
    /// The trail ends with records no checkpoint vouches for.
    #[error(
        "the trail ends with {count} record(s) (seq {from} to {to}) that no checkpoint vouches for: the trail was cut after its last checkpoint, or its writer crashed (or is still running) before writing one; Warden writes a closing checkpoint when it stops"
    )]
    Unvouched {
        /// The first record not vouched for.
        from: u64,
        /// The last record.
        to: u64,
        /// How many.
        count: u64,
    },
    /// A checkpoint whose detail cannot be read.
    #[error("the checkpoint's detail is not a signed head ({error}): it was forged or edited")]
    MalformedCheckpoint {
        /// What the parser said.
        error: String,
    },
    /// A checkpoint naming a head other than the record before it.
    #[error(
        "the checkpoint vouches for seq {head_seq} (hash {head_hash}) but the record before it is seq {actual_seq} (hash {actual_hash}): the checkpoint was forged or edited"
    )]
    CheckpointHead {
        /// The seq it names.
        head_seq: u64,
        /// The hash it names.
        head_hash: String,
        /// The seq before it.
        actual_seq: u64,
        /// The hash of the record before it.
        actual_hash: String,
    },
    /// A signature the supplied key does not verify, made with that key's name.
    #[error(
        "the checkpoint's signature does not verify with the supplied public key: the checkpoint, or the head it names, was forged or altered"
    )]
    BadSignature,
    /// A checkpoint signed by another key.
    #[error(
        "the checkpoint is signed by another key ({key}), not the supplied public key: it was forged, or the trail belongs to another Warden (check --public-key)"
    )]
    OtherKey {
        /// The key the checkpoint names.
        key: String,
    },
}

/// What a verified chain holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The chain's id.
    pub chain: String,
    /// Records, checkpoints not counted.
    pub records: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// The first seq given (above 1: the earlier records were not given).
    pub first_seq: u64,
    /// The last seq.
    pub last_seq: u64,
    /// The last record's hash.
    pub last_hash: String,
    /// The first record's time.
    pub first_time: String,
    /// The last record's time.
    pub last_time: String,
    /// Whether the checkpoints' signatures were checked.
    pub signatures: Signatures,
}

/// Whether checkpoint signatures were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signatures {
    /// Every checkpoint is signed by this key (base64).
    Checked {
        /// The supplied public key.
        key: String,
    },
    /// No public key was supplied: only the chain was checked. These are
    /// the keys the checkpoints name (not proof of anything).
    NotChecked {
        /// The keys named, base64.
        keys: Vec<String>,
    },
}

/// Verifies one chain, fed its lines in order (see the module docs).
#[derive(Debug)]
pub struct ChainVerifier {
    key: Option<(VerifyingKey, String)>,
    chain: String,
    last: Option<Last>,
    /// A record after a seq gap, held to tell a gap from a swap by the
    /// record that follows it.
    pending: Option<Held>,
    first_seq: u64,
    first_time: String,
    records: u64,
    checkpoints: u64,
    /// Records since the last checkpoint, and the first of them.
    unvouched: u64,
    unvouched_from: u64,
    keys_named: Vec<String>,
    failed: Option<Problem>,
}

#[derive(Debug)]
struct Last {
    seq: u64,
    hash: String,
    location: Location,
    time: String,
}

#[derive(Debug)]
struct Held {
    seq: u64,
    location: Location,
}

/// The fields of a record the verifier reads (everything else is skipped,
/// though still checked to be JSON).
#[derive(Deserialize)]
struct Envelope<'a> {
    v: u64,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    chain: Cow<'a, str>,
    #[serde(default)]
    seq: u64,
    #[serde(borrow, default)]
    prev: Cow<'a, str>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct VersionOnly {
    v: u64,
}

// === impl Location ===

impl Location {
    /// Line `line` of `file`.
    pub fn line(file: Arc<str>, line: u64) -> Location {
        Location {
            source: file,
            at: Position::Line(line),
        }
    }

    /// Row `id` of `table`.
    pub fn row(table: Arc<str>, id: i64) -> Location {
        Location {
            source: table,
            at: Position::Row(id),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.at {
            Position::Line(line) => write!(f, "{}:{line}", self.source),
            Position::Row(id) => write!(f, "{} row {id}", self.source),
        }
    }
}

// === impl Problem ===

impl Problem {
    /// A problem with the record at `location`.
    pub fn new(location: Location, seq: Option<u64>, kind: ProblemKind) -> Problem {
        Problem {
            location,
            seq,
            kind,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(seq) => write!(f, "{} (seq {seq}): {}", self.location, self.kind),
            None => write!(f, "{}: {}", self.location, self.kind),
        }
    }
}

fn missing_sentence(from: u64, to: u64, before: &Location, across_files: bool) -> String {
    let range = if from == to {
        format!("record {from} is")
    } else {
        format!("records {from} to {to} are")
    };
    if across_files {
        format!(
            "{range} missing between {before} and this record: a rotated file is missing from the middle of the trail (or lines were deleted at the end of {} or the start of this file)",
            before.source
        )
    } else {
        format!("{range} missing after {before}: lines were deleted")
    }
}

// === impl ChainVerifier ===

impl ChainVerifier {
    /// A verifier checking checkpoint signatures against `public_key` (or,
    /// without one, saying they were not checked).
    pub fn new(public_key: Option<VerifyingKey>) -> ChainVerifier {
        ChainVerifier {
            key: public_key.map(|key| (key, BASE64.encode(key.as_bytes()))),
            chain: String::new(),
            last: None,
            pending: None,
            first_seq: 0,
            first_time: String::new(),
            records: 0,
            checkpoints: 0,
            unvouched: 0,
            unvouched_from: 0,
            keys_named: Vec::new(),
            failed: None,
        }
    }

    /// The chain's id, once a record was fed.
    pub fn chain(&self) -> &str {
        &self.chain
    }

    /// Check the next record, `line` (without its line feed), read `at`.
    /// After a problem, every later call returns it again.
    pub fn feed(&mut self, at: &Location, line: &str) -> Result<(), Problem> {
        if let Some(problem) = &self.failed {
            return Err(problem.clone());
        }
        let result = self.check(at, line);
        if let Err(problem) = &result {
            self.failed = Some(problem.clone());
        }
        result
    }

    /// Report a problem found outside the records (a torn line): the chain
    /// fails with it.
    pub fn fail(&mut self, problem: Problem) -> Problem {
        self.failed.get_or_insert(problem).clone()
    }

    /// The chain ended: what it holds, or why it does not verify.
    pub fn finish(mut self) -> Result<ChainSummary, Problem> {
        if let Some(problem) = self.failed.take() {
            return Err(problem);
        }
        if let Some(held) = self.pending.take() {
            return Err(self.gap(held));
        }
        let Some(last) = self.last else {
            return Ok(ChainSummary {
                chain: self.chain,
                records: 0,
                checkpoints: 0,
                first_seq: 0,
                last_seq: 0,
                last_hash: GENESIS.to_owned(),
                first_time: String::new(),
                last_time: String::new(),
                signatures: Signatures::NotChecked { keys: Vec::new() },
            });
        };
        if self.unvouched > 0 {
            return Err(Problem::new(
                last.location,
                Some(last.seq),
                ProblemKind::Unvouched {
                    from: self.unvouched_from,
                    to: last.seq,
                    count: self.unvouched,
                },
            ));
        }
        Ok(ChainSummary {
            chain: self.chain,
            records: self.records,
            checkpoints: self.checkpoints,
            first_seq: self.first_seq,
            last_seq: last.seq,
            last_hash: last.hash,
            first_time: self.first_time,
            last_time: last.time,
            signatures: match self.key {
                Some((_, key)) => Signatures::Checked { key },
                None => Signatures::NotChecked {
                    keys: self.keys_named,
                },
            },
        })
    }

    fn check(&mut self, at: &Location, line: &str) -> Result<(), Problem> {
        let record = parse(at, line)?;
        let seq = record.seq;
        let problem = |kind| Problem::new(at.clone(), Some(seq), kind);
        if let Some(held) = self.pending.take() {
            // The record after a gap decides: the missing record showing up
            // now means the lines were swapped.
            if seq < held.seq {
                return Err(Problem::new(
                    held.location.clone(),
                    Some(held.seq),
                    ProblemKind::OutOfOrder {
                        other_seq: seq,
                        other: at.clone(),
                    },
                ));
            }
            return Err(self.gap(held));
        }
        if self.last.is_none() && self.chain.is_empty() {
            self.chain = record.chain.clone().into_owned();
            self.first_seq = seq;
            self.first_time = record.time.clone().into_owned();
        } else if record.chain != self.chain {
            return Err(problem(ProblemKind::OtherChain {
                expected: self.chain.clone(),
                found: record.chain.into_owned(),
            }));
        }
        match &self.last {
            None => {
                if seq == 1 && record.prev != GENESIS {
                    return Err(problem(ProblemKind::FirstNotGenesis {
                        prev: record.prev.into_owned(),
                    }));
                }
            }
            Some(last) if seq == last.seq + 1 => {
                if record.prev != last.hash {
                    return Err(Problem::new(
                        last.location.clone(),
                        Some(last.seq),
                        ProblemKind::Edited {
                            next: at.clone(),
                            next_seq: seq,
                        },
                    ));
                }
            }
            Some(last) if seq > last.seq + 1 => {
                self.pending = Some(Held {
                    seq,
                    location: at.clone(),
                });
                return Ok(());
            }
            Some(last) => {
                return Err(problem(ProblemKind::OutOfOrder {
                    other_seq: last.seq,
                    other: last.location.clone(),
                }));
            }
        }
        if record.kind == "checkpoint" {
            self.check_checkpoint(&record).map_err(problem)?;
            self.checkpoints += 1;
            self.unvouched = 0;
        } else {
            self.records += 1;
            if self.unvouched == 0 {
                self.unvouched_from = seq;
            }
            self.unvouched += 1;
        }
        let hash = line_hash(line);
        match &mut self.last {
            Some(last) => {
                last.seq = seq;
                last.hash = hash;
                last.location.clone_from(at);
                last.time.clear();
                last.time.push_str(&record.time);
            }
            None => {
                self.last = Some(Last {
                    seq,
                    hash,
                    location: at.clone(),
                    time: record.time.into_owned(),
                });
            }
        }
        Ok(())
    }

    fn check_checkpoint(&mut self, record: &Envelope<'_>) -> Result<(), ProblemKind> {
        let detail: CheckpointDetail = record
            .detail
            .ok_or_else(|| "no detail".to_owned())
            .and_then(|raw| serde_json::from_str(raw.get()).map_err(|e| e.to_string()))
            .map_err(|error| ProblemKind::MalformedCheckpoint { error })?;
        // Its prev is the hash of the record before it (checked above when
        // that record was given).
        let actual_seq = record.seq - 1;
        if detail.head_seq != actual_seq || detail.head_hash != record.prev {
            return Err(ProblemKind::CheckpointHead {
                head_seq: detail.head_seq,
                head_hash: detail.head_hash,
                actual_seq,
                actual_hash: record.prev.clone().into_owned(),
            });
        }
        match &self.key {
            Some((key, text)) => {
                if !checkpoint_is_signed_by(&self.chain, &detail, key) {
                    return Err(if detail.key == *text {
                        ProblemKind::BadSignature
                    } else {
                        ProblemKind::OtherKey { key: detail.key }
                    });
                }
            }
            None => {
                if !self.keys_named.contains(&detail.key) {
                    self.keys_named.push(detail.key);
                }
            }
        }
        Ok(())
    }

    fn gap(&self, held: Held) -> Problem {
        let (from, before) = match &self.last {
            Some(last) => (last.seq + 1, last.location.clone()),
            None => (1, held.location.clone()),
        };
        let across_files = before.source != held.location.source;
        Problem::new(
            held.location,
            Some(held.seq),
            ProblemKind::Missing {
                from,
                to: held.seq - 1,
                before,
                across_files,
            },
        )
    }
}

fn parse<'a>(at: &Location, line: &'a str) -> Result<Envelope<'a>, Problem> {
    let record: Envelope<'a> = match serde_json::from_str(line) {
        Ok(record) => record,
        Err(err) => {
            let kind = match serde_json::from_str::<VersionOnly>(line) {
                Ok(VersionOnly { v }) if v != u64::from(SCHEMA_VERSION) => {
                    ProblemKind::UnknownVersion { v }
                }
                _ if line.is_empty() => ProblemKind::Malformed {
                    error: "an empty line".into(),
                },
                _ => ProblemKind::Malformed {
                    error: err.to_string(),
                },
            };
            return Err(Problem::new(at.clone(), None, kind));
        }
    };
    if record.v != u64::from(SCHEMA_VERSION) {
        return Err(Problem::new(
            at.clone(),
            Some(record.seq),
            ProblemKind::UnknownVersion { v: record.v },
        ));
    }
    if record.chain.is_empty() || record.seq == 0 {
        return Err(Problem::new(at.clone(), None, ProblemKind::NotSealed));
    }
    Ok(record)
}

// === verify_files ===

/// The outcome of verifying files: one report per chain found in them.
#[derive(Debug, Clone)]
pub struct Report {
    /// The chains, by id.
    pub chains: Vec<ChainReport>,
}

/// One chain's files and what verifying them found.
#[derive(Debug, Clone)]
pub struct ChainReport {
    /// The chain's id (empty when no record of its file could be read).
    pub chain: String,
    /// Its files, in chain order.
    pub files: Vec<PathBuf>,
    /// What the chain holds, or its first problem.
    pub outcome: Result<ChainSummary, Problem>,
}

/// Why files could not be verified at all.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file or directory could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Nothing to verify.
    #[error("no audit records in {paths}")]
    Empty {
        /// The paths given.
        paths: String,
    },
}

// === impl Report ===

impl Report {
    /// Whether every chain verified.
    pub fn is_ok(&self) -> bool {
        self.chains.iter().all(|c| c.outcome.is_ok())
    }
}

impl std::fmt::Display for ChainSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "chain {}: ok, {} records and {} checkpoints, seq {} to {}, {} to {}",
            self.chain,
            self.records,
            self.checkpoints,
            self.first_seq,
            self.last_seq,
            self.first_time,
            self.last_time
        )?;
        if self.first_seq > 1 {
            write!(
                f,
                "; starts at seq {}: records 1 to {} were not given (pruned, or not passed)",
                self.first_seq,
                self.first_seq - 1
            )?;
        }
        match &self.signatures {
            Signatures::Checked { key } => write!(f, "; checkpoint signatures checked ({key})"),
            Signatures::NotChecked { keys } if keys.is_empty() => {
                write!(f, "; signatures NOT checked (no public key given)")
            }
            Signatures::NotChecked { keys } => write!(
                f,
                "; signatures NOT checked (no public key given; checkpoints name {})",
                keys.join(", ")
            ),
        }
    }
}

/// Verify the trail in `paths` (files, or directories of `*.jsonl` files):
/// files are grouped by the chain their records belong to and ordered by
/// their first seq, and each chain is verified from its first file to its
/// last.
pub fn verify_files(paths: &[PathBuf], key: Option<VerifyingKey>) -> Result<Report, VerifyError> {
    let mut groups: HashMap<String, Vec<(u64, PathBuf)>> = HashMap::new();
    for path in trail_files(paths)? {
        match first_position(&path)? {
            Some((chain, seq)) => groups.entry(chain).or_default().push((seq, path)),
            None if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) => {}
            // Nothing readable: verified on its own, to say why.
            None => groups
                .entry(format!("\0{}", path.display()))
                .or_default()
                .push((0, path)),
        }
    }
    if groups.is_empty() {
        return Err(VerifyError::Empty {
            paths: paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let mut chains = Vec::with_capacity(groups.len());
    for (chain, mut files) in groups {
        files.sort();
        let files: Vec<PathBuf> = files.into_iter().map(|(_, path)| path).collect();
        let outcome = verify_chain(&files, key)?;
        let chain = if chain.starts_with('\0') {
            String::new()
        } else {
            chain
        };
        chains.push(ChainReport {
            chain,
            files,
            outcome,
        });
    }
    chains.sort_by(|a, b| a.chain.cmp(&b.chain));
    Ok(Report { chains })
}

fn verify_chain(
    files: &[PathBuf],
    key: Option<VerifyingKey>,
) -> Result<Result<ChainSummary, Problem>, VerifyError> {
    let mut verifier = ChainVerifier::new(key);
    let mut buf = Vec::new();
    for path in files {
        let source: Arc<str> = path.display().to_string().into();
        let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
        let mut reader = std::io::BufReader::new(file);
        let mut number = 0;
        loop {
            buf.clear();
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| io_error(path, e))?;
            if n == 0 {
                break;
            }
            number += 1;
            let at = Location::line(source.clone(), number);
            if buf.pop() != Some(b'\n') {
                let problem = verifier.fail(Problem::new(at, None, ProblemKind::TornLine));
                return Ok(Err(problem));
            }
            let result = match std::str::from_utf8(&buf) {
                Ok(line) => verifier.feed(&at, line),
                Err(err) => Err(verifier.fail(Problem::new(
                    at,
                    None,
                    ProblemKind::Malformed {
                        error: format!("not UTF-8: {err}"),
                    },
                ))),
            };
            if let Err(problem) = result {
                return Ok(Err(problem));
            }
        }
    }
    Ok(verifier.finish())
}

/// The chain and seq of a file's first readable record.
fn first_position(path: &Path) -> Result<Option<(String, u64)>, VerifyError> {
    #[derive(Deserialize)]
    struct First<'a> {
        #[serde(borrow, default)]
        chain: Cow<'a, str>,
        #[serde(default)]
        seq: u64,
    }
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io_error(path, e))?
            == 0
        {
            return Ok(None);
        }
        if let Ok(first) = serde_json::from_slice::<First<'_>>(buf.trim_ascii_end())
            && !first.chain.is_empty()
        {
            return Ok(Some((first.chain.into_owned(), first.seq)));
        }
    }
}

fn io_error(path: &Path, source: std::io::Error) -> VerifyError {
    VerifyError::Store(StoreError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::record::{Kind, Record};
    use ed25519_dalek::SigningKey;

    fn lines(n: usize, key: &SigningKey) -> Vec<String> {
        let mut chain = Chain::empty("w1");
        let mut out: Vec<String> = (0..n)
            .map(|_| chain.seal(Record::new(Kind::SessionStarted, "w1")).line)
            .collect();
        out.push(chain.checkpoint(key, "w1").line);
        out
    }

    fn run(lines: &[String], key: Option<VerifyingKey>) -> Result<ChainSummary, Problem> {
        let source: Arc<str> = "t".into();
        let mut verifier = ChainVerifier::new(key);
        for (i, line) in lines.iter().enumerate() {
            verifier.feed(&Location::line(source.clone(), i as u64 + 1), line)?;
        }
        verifier.finish()
    }

    #[test]
    fn a_sealed_chain_verifies_and_says_whether_signatures_were_checked() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let chain = lines(3, &key);
        let checked = run(&chain, Some(key.verifying_key())).expect("ok");
        assert_eq!((checked.records, checked.checkpoints), (3, 1));
        assert!(matches!(checked.signatures, Signatures::Checked { .. }));
        let unchecked = run(&chain, None).expect("ok");
        assert!(
            unchecked.to_string().contains("signatures NOT checked"),
            "{unchecked}"
        );
    }

    #[test]
    fn a_gap_and_a_swap_are_told_apart_by_the_record_after() {
        let key = SigningKey::from_bytes(&[1; 32]);
        let mut chain = lines(5, &key);
        let mut deleted = chain.clone();
        deleted.remove(2);
        let problem = run(&deleted, None).expect_err("gap");
        assert!(
            matches!(problem.kind, ProblemKind::Missing { from: 3, to: 3, .. }),
            "{problem}"
        );
        chain.swap(1, 2);
        let problem = run(&chain, None).expect_err("swap");
        assert!(
            matches!(problem.kind, ProblemKind::OutOfOrder { .. }),
            "{problem}"
        );
        assert_eq!(problem.location, Location::line("t".into(), 2));
    }

    #[test]
    fn rows_are_located_by_table_and_id() {
        let at = Location::row("audit_records".into(), 42);
        assert_eq!(at.to_string(), "audit_records row 42");
        let problem = ChainVerifier::new(None)
            .feed(&at, "{not json")
            .expect_err("bad");
        assert!(
            problem
                .to_string()
                .starts_with("audit_records row 42: this line is not an audit record"),
            "{problem}"
        );
    }
}
