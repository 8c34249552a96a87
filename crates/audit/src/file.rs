//! The file store: the audit trail as JSON Lines files in one directory.
//!
//! Each chain is written to files named `<chain>-<first seq, 20 digits>.jsonl`
//! (the chain id made safe for a file name), so the names sort in chain
//! order. Files are only ever appended to. Before a batch is appended, a
//! file that has reached [`FileOptions::max_file_size`] or is older than
//! [`FileOptions::max_file_age`] is left behind and a new one is started,
//! named by the batch's first record: rotation never splits a record, and
//! the chain runs on across files because every record carries `prev`.
//!
//! A batch is written with one `write_all` (its lines, each ending in a
//! line feed); [`Store::sync`] fsyncs the files written since the last sync
//! and, after a file was created, the directory. After a failed write or
//! sync (disk full), [`Store::rollback`] cuts the files back to what the
//! last sync left and removes the files created since, so the writer can
//! write the same records again and no torn batch stays behind.
//!
//! A crash can still leave a torn last line (no line feed); the store cuts
//! it off when it opens the directory, with a warning, and the chain goes
//! on from the last complete record.

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::chain::{ChainHead, Sealed, line_hash};
use crate::lock::DirLock;
use crate::log::{Store, StoreError};

/// Where and how the file store writes.
#[derive(Debug, Clone)]
pub struct FileOptions {
    /// The directory holding the trail (created when missing).
    pub dir: PathBuf,
    /// A file at least this large is left behind before the next batch.
    pub max_file_size: u64,
    /// A file whose first record is older than this is left behind before
    /// the next batch.
    pub max_file_age: Duration,
}

/// The JSON Lines store (see the module docs).
#[derive(Debug)]
pub struct FileStore {
    /// One writer per trail directory.
    _lock: DirLock,
    options: FileOptions,
    /// The directory, open for fsync after files are created or removed.
    dir: File,
    /// The chain being written, as it appears in file names (empty until
    /// [`Store::head`] or the first append names it).
    prefix: String,
    /// The file appended to.
    current: Option<Segment>,
    /// Where the last successful sync (or the open) left the trail.
    synced: Option<Mark>,
    /// Files left behind by rotation since the last sync, not yet synced.
    behind: Vec<(PathBuf, File)>,
    /// Files created since the last sync.
    created: Vec<PathBuf>,
    /// Whether the directory changed since it was last synced.
    dir_dirty: bool,
    /// The batch being written, kept to reuse its allocation.
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Segment {
    path: PathBuf,
    file: File,
    len: u64,
    /// When its first record was written (its age is counted from here).
    started: SystemTime,
}

#[derive(Debug, Clone)]
struct Mark {
    path: PathBuf,
    len: u64,
    started: SystemTime,
}

/// A batch buffer larger than this is not kept between batches.
const MAX_KEPT_BUFFER: usize = 4 << 20;
const EXTENSION: &str = ".jsonl";
const SEQ_DIGITS: usize = 20;

// === impl FileOptions ===

impl FileOptions {
    /// Files in `dir`, rotated at 64 MiB or after a day.
    pub fn new(dir: impl Into<PathBuf>) -> FileOptions {
        FileOptions {
            dir: dir.into(),
            max_file_size: 64 << 20,
            max_file_age: Duration::from_secs(24 * 3600),
        }
    }
}

// === impl FileStore ===

impl FileStore {
    /// Open (or create) the trail in `options.dir`: checks that files can be
    /// created there, and cuts off any torn last line a crash left.
    pub fn open(options: FileOptions) -> Result<FileStore, StoreError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
        let probe = dir.join(format!(".warden-probe-{}", std::process::id()));
        File::create(&probe)
            .and_then(|mut f| f.write_all(b"probe\n"))
            .map_err(|e| io_error(&probe, e))?;
        std::fs::remove_file(&probe).map_err(|e| io_error(&probe, e))?;
        let lock = DirLock::take(&dir)?;
        let handle = File::open(&dir).map_err(|e| io_error(&dir, e))?;
        let store = FileStore {
            _lock: lock,
            options,
            dir: handle,
            prefix: String::new(),
            current: None,
            synced: None,
            behind: Vec::new(),
            created: Vec::new(),
            dir_dirty: false,
            buf: Vec::new(),
        };
        store.repair_tails()?;
        Ok(store)
    }

    /// The directory the trail is in.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// The newest file of every chain: cut a torn last line, remove a file
    /// left with no complete line.
    fn repair_tails(&self) -> Result<(), StoreError> {
        let mut files = segment_files(&self.options.dir)?;
        // Newest first within each chain: walk back while files come out empty.
        files.reverse();
        let mut done: Vec<String> = Vec::new();
        for (prefix, _, path) in files {
            if done.contains(&prefix) {
                continue;
            }
            if repair_tail(&path)? {
                done.push(prefix);
            } else {
                self.sync_dir()?;
            }
        }
        Ok(())
    }

    /// Start writing `chain`: its newest file, when there is one, becomes
    /// the one appended to.
    fn select(&mut self, chain: &str) -> Result<Option<(PathBuf, Vec<u8>)>, StoreError> {
        self.prefix = file_prefix(chain);
        self.current = None;
        self.synced = None;
        self.behind.clear();
        self.created.clear();
        let newest = segment_files(&self.options.dir)?
            .into_iter()
            .rev()
            .find(|(prefix, _, _)| *prefix == self.prefix);
        let Some((_, _, path)) = newest else {
            return Ok(None);
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        let last = last_line(&mut file, len).map_err(|e| io_error(&path, e))?;
        let first = first_line(&mut file).map_err(|e| io_error(&path, e))?;
        let started = first
            .as_deref()
            .and_then(record_time)
            .unwrap_or_else(SystemTime::now);
        self.synced = Some(Mark {
            path: path.clone(),
            len,
            started,
        });
        self.current = Some(Segment {
            path: path.clone(),
            file,
            len,
            started,
        });
        Ok(last.map(|line| (path, line)))
    }

    fn rotation_due(&self) -> bool {
        match &self.current {
            None => true,
            Some(segment) => {
                segment.len >= self.options.max_file_size
                    || SystemTime::now()
                        .duration_since(segment.started)
                        .is_ok_and(|age| age >= self.options.max_file_age)
            }
        }
    }

    /// Leave the current file behind and start one named by `first_seq`.
    fn start_segment(&mut self, first_seq: u64) -> Result<(), StoreError> {
        let path = self.options.dir.join(segment_name(&self.prefix, first_seq));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        // Only an empty leftover (a rollback that could not remove it) may
        // be reused; a file with records in it is never written over.
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        if len > 0 {
            return Err(io_error(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "an audit file for this seq already holds records",
                ),
            ));
        }
        if let Some(old) = self.current.take() {
            self.behind.push((old.path, old.file));
        }
        self.created.push(path.clone());
        self.dir_dirty = true;
        self.current = Some(Segment {
            path,
            file,
            len: 0,
            started: SystemTime::now(),
        });
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), StoreError> {
        self.dir
            .sync_all()
            .map_err(|e| io_error(&self.options.dir, e))
    }
}

impl Store for FileStore {
    fn name(&self) -> &'static str {
        "file"
    }

    fn head(&mut self, chain: &str) -> Result<Option<ChainHead>, StoreError> {
        let Some((path, line)) = self.select(chain)? else {
            return Ok(None);
        };
        let invalid = |what: String| {
            io_error(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, what),
            )
        };
        let text = std::str::from_utf8(&line)
            .map_err(|_| invalid("the last record is not UTF-8".into()))?;
        let position: Position<'_> = serde_json::from_str(text)
            .map_err(|e| invalid(format!("the last record cannot be read: {e}")))?;
        if position.chain != chain {
            return Err(invalid(format!(
                "the last record belongs to chain {}, not {chain}",
                position.chain
            )));
        }
        Ok(Some(ChainHead {
            chain: chain.to_owned(),
            seq: position.seq,
            hash: line_hash(text),
        }))
    }

    fn append(&mut self, batch: &[Sealed]) -> Result<(), StoreError> {
        let Some(first) = batch.first() else {
            return Ok(());
        };
        if self.prefix.is_empty() {
            // Appended to without being asked for a head: the chain is named
            // by the records themselves.
            let position: Position<'_> = serde_json::from_str(&first.line).map_err(|e| {
                io_error(
                    &self.options.dir,
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                )
            })?;
            let chain = position.chain.into_owned();
            self.select(&chain)?;
        }
        if self.rotation_due() {
            self.start_segment(first.seq)?;
        }
        self.buf.clear();
        for sealed in batch {
            self.buf.extend_from_slice(sealed.line.as_bytes());
            self.buf.push(b'\n');
        }
        let Some(segment) = self.current.as_mut() else {
            return Err(io_error(
                &self.options.dir,
                std::io::Error::other("no audit file is open"),
            ));
        };
        let written = segment.file.write_all(&self.buf);
        let result = match written {
            Ok(()) => {
                segment.len += self.buf.len() as u64;
                Ok(())
            }
            Err(err) => {
                // Leave no part of the batch behind, even before rollback.
                let _ = segment.file.set_len(segment.len);
                Err(io_error(&segment.path, err))
            }
        };
        if self.buf.capacity() > MAX_KEPT_BUFFER {
            self.buf = Vec::new();
        }
        result
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        for (path, file) in &self.behind {
            file.sync_data().map_err(|e| io_error(path, e))?;
        }
        if let Some(segment) = &self.current {
            segment
                .file
                .sync_data()
                .map_err(|e| io_error(&segment.path, e))?;
        }
        if self.dir_dirty {
            self.sync_dir()?;
            self.dir_dirty = false;
        }
        self.behind.clear();
        self.created.clear();
        self.synced = self.current.as_ref().map(|segment| Mark {
            path: segment.path.clone(),
            len: segment.len,
            started: segment.started,
        });
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), StoreError> {
        self.behind.clear();
        self.current = None;
        let mut first_error = None;
        for path in self.created.drain(..).rev() {
            self.dir_dirty = true;
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    // An empty file may be reused by the next rotation.
                    let emptied = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(0));
                    if emptied.is_err() {
                        first_error.get_or_insert(io_error(&path, err));
                    }
                }
            }
        }
        if let Some(mark) = self.synced.clone() {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&mark.path)
                .and_then(|file| {
                    file.set_len(mark.len)?;
                    file.sync_data()?;
                    Ok(file)
                })
                .map_err(|e| io_error(&mark.path, e))?;
            self.current = Some(Segment {
                path: mark.path,
                file,
                len: mark.len,
                started: mark.started,
            });
        }
        if self.dir_dirty {
            self.sync_dir()?;
            self.dir_dirty = false;
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// The chain position of a record line (everything else is skipped).
#[derive(Deserialize)]
struct Position<'a> {
    #[serde(borrow, default)]
    chain: Cow<'a, str>,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
struct Time<'a> {
    #[serde(borrow)]
    time: Cow<'a, str>,
}

fn record_time(line: &[u8]) -> Option<SystemTime> {
    let time: Time<'_> = serde_json::from_slice(line).ok()?;
    humantime::parse_rfc3339(&time.time).ok()
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `chain` as it appears in file names: itself when it is made of letters,
/// digits, `.`, `_` and `-` (and short), else those characters kept, the
/// others replaced by `_`, and a hash of the id appended so that two ids
/// never share files.
pub fn file_prefix(chain: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if !chain.is_empty() && chain.len() <= 100 && !chain.starts_with('.') && chain.chars().all(safe)
    {
        return chain.to_owned();
    }
    let mut prefix: String = chain
        .chars()
        .take(64)
        .map(|c| if safe(c) { c } else { '_' })
        .collect();
    prefix.push('_');
    prefix.push_str(&line_hash(chain)[..12]);
    prefix
}

/// The name of the file of chain `prefix` (see [`file_prefix`]) whose first
/// record is `first_seq`.
pub fn segment_name(prefix: &str, first_seq: u64) -> String {
    format!(
        "{prefix}-{first_seq:0width$}{EXTENSION}",
        width = SEQ_DIGITS
    )
}

/// A file name as [`segment_name`] makes them: its prefix and first seq.
pub fn parse_segment_name(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_suffix(EXTENSION)?;
    let (prefix, seq) = stem.rsplit_once('-')?;
    if prefix.is_empty() || seq.len() != SEQ_DIGITS || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((prefix, seq.parse().ok()?))
}

/// The trail files in `dir`, in chain order (by prefix, then first seq).
fn segment_files(dir: &Path) -> Result<Vec<(String, u64, PathBuf)>, StoreError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))? {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let name = entry.file_name();
        let Some((prefix, seq)) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        files.push((prefix.to_owned(), seq, entry.path()));
    }
    files.sort();
    Ok(files)
}

/// The files named by `paths`: a directory stands for its `*.jsonl` files
/// (sorted by name, so chain order), a file for itself; each file once.
pub fn trail_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, StoreError> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|e| io_error(path, e))? {
                let entry = entry.map_err(|e| io_error(path, e))?;
                let is_trail = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.ends_with(EXTENSION) && !n.starts_with('.'));
                if is_trail && entry.file_type().is_ok_and(|t| t.is_file()) {
                    found.push(entry.path());
                }
            }
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    let mut seen = std::collections::HashSet::new();
    files.retain(|path| seen.insert(std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())));
    Ok(files)
}

/// Cut a torn last line off `path`. Returns whether a complete line is
/// left; a file left empty is removed.
fn repair_tail(path: &Path) -> Result<bool, StoreError> {
    let io = |e| io_error(path, e);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let keep = if len == 0 {
        0
    } else {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
        file.read_exact(&mut last).map_err(io)?;
        if last[0] == b'\n' {
            return Ok(true);
        }
        last_newline_before(&mut file, len)
            .map_err(io)?
            .map_or(0, |at| at + 1)
    };
    if keep == 0 {
        tracing::warn!(file = %path.display(), bytes = len, "Audit file holds no complete record (a crash while it was started); removed.");
        drop(file);
        std::fs::remove_file(path).map_err(io)?;
        return Ok(false);
    }
    tracing::warn!(file = %path.display(), bytes = len - keep, "Audit file ends in a torn line (a crash mid-write); the line is cut off and the chain goes on from the last complete record.");
    file.set_len(keep).map_err(io)?;
    file.sync_data().map_err(io)?;
    Ok(true)
}

/// The offset of the last `\n` before `end`.
fn last_newline_before(file: &mut File, end: u64) -> std::io::Result<Option<u64>> {
    const CHUNK: u64 = 8192;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut end = end;
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(Some(start + at as u64));
        }
        end = start;
    }
    Ok(None)
}

/// The last line of a file of `len` bytes that ends in `\n`, without it.
fn last_line(file: &mut File, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    if len == 0 {
        return Ok(None);
    }
    let start = last_newline_before(file, len - 1)?.map_or(0, |at| at + 1);
    let mut line = vec![0u8; (len - 1 - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut line)?;
    Ok(Some(line))
}

/// The first line of a file, without its `\n`.
fn first_line(file: &mut File) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::BufRead;
    file.seek(SeekFrom::Start(0))?;
    let mut line = Vec::new();
    std::io::BufReader::new(&mut *file).read_until(b'\n', &mut line)?;
    if line.pop() != Some(b'\n') {
        return Ok(None);
    }
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Chain;
    use crate::record::{Kind, Record};

    fn store(dir: &Path, size: u64) -> FileStore {
        FileStore::open(FileOptions {
            dir: dir.to_path_buf(),
            max_file_size: size,
            max_file_age: Duration::from_secs(3600),
        })
        .expect("open")
    }

    fn batch(chain: &mut Chain, n: usize) -> Vec<Sealed> {
        (0..n)
            .map(|_| chain.seal(Record::new(Kind::SessionStarted, "w1")))
            .collect()
    }

    /// The trail's files in `dir` (not its lock).
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(EXTENSION))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn file_names_sort_in_chain_order_and_unsafe_ids_are_hashed() {
        assert_eq!(
            segment_name("w1", 42),
            "w1-00000000000000000042.jsonl".to_owned()
        );
        assert_eq!(
            parse_segment_name("my-host-00000000000000000042.jsonl"),
            Some(("my-host", 42))
        );
        assert_eq!(parse_segment_name("w1-42.jsonl"), None);
        let odd = file_prefix("pod/a b");
        assert!(odd.starts_with("pod_a_b_"), "{odd}");
        assert_ne!(odd, file_prefix("pod_a_b"));
        assert_ne!(file_prefix("../x"), "../x");
        assert!(segment_name("w", 9) < segment_name("w", 10));
    }

    #[test]
    fn rollback_returns_to_the_last_sync_across_a_rotation() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = store(dir.path(), 1);
        assert_eq!(store.head("w1").expect("head"), None);
        let mut chain = Chain::empty("w1");
        store.append(&batch(&mut chain, 2)).expect("append");
        store.sync().expect("sync");
        let first = dir.path().join(segment_name("w1", 1));
        let synced_len = std::fs::metadata(&first).expect("meta").len();
        // Rotates (the file is over 1 byte), then fails to sync in spirit.
        store.append(&batch(&mut chain, 3)).expect("append");
        assert_eq!(names(dir.path()).len(), 2);
        store.rollback().expect("rollback");
        assert_eq!(names(dir.path()), vec![segment_name("w1", 1)]);
        assert_eq!(std::fs::metadata(&first).expect("meta").len(), synced_len);
        let head = store.head("w1").expect("head").expect("some");
        assert_eq!(head.seq, 2);
    }

    #[test]
    fn a_batch_is_never_split_across_files() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = store(dir.path(), 10);
        store.head("w1").expect("head");
        let mut chain = Chain::empty("w1");
        store.append(&batch(&mut chain, 5)).expect("append");
        store.append(&batch(&mut chain, 5)).expect("append");
        store.sync().expect("sync");
        assert_eq!(
            names(dir.path()),
            vec![segment_name("w1", 1), segment_name("w1", 6)]
        );
        let text = std::fs::read_to_string(dir.path().join(segment_name("w1", 6))).expect("read");
        assert_eq!(text.lines().count(), 5);
        assert!(text.ends_with('\n'));
    }
}
