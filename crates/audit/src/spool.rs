//! A bounded first-in first-out queue of lines on local disk, for a sink
//! whose far end is away (PostgreSQL during an outage, an OTLP collector).
//!
//! Lines are appended to segment files (`<number>.seg`, one line each, a
//! line feed after every line) in the spool's folder; [`Spool::push`]
//! writes them and [`Spool::sync`] makes them durable (`fdatasync`, and the
//! folder when a segment was made). Only synced lines are handed out again:
//! [`Spool::peek`] reads the oldest ones without removing them, and
//! [`Spool::ack`] removes them once the far end holds them. The read
//! position is kept in the file `cursor` (renamed into place, not synced:
//! after a machine crash a few lines may be handed out twice, never lost,
//! so the far end must take a line twice without harm).
//!
//! After a restart the spool is found as it was left; a line cut short by a
//! crash (never synced, so never acknowledged to anyone) is cut off. The
//! spool holds at most `max_bytes` of lines not yet acknowledged: a push
//! beyond is refused whole with [`StoreError::SpoolFull`]. One spool folder
//! belongs to one writer.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::lock::DirLock;
use crate::log::StoreError;

/// Where a segment ends or a read stands: segment number, byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    segment: u64,
    offset: u64,
}

/// A segment file and how long it is.
#[derive(Debug, Clone, Copy)]
struct Segment {
    number: u64,
    len: u64,
}

/// A spool folder, open.
#[derive(Debug)]
pub struct Spool {
    /// One spool per directory.
    _lock: DirLock,
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Segments still holding lines not acknowledged, oldest first.
    segments: VecDeque<Segment>,
    /// The oldest line not acknowledged.
    read: Position,
    /// The end of what was synced: lines before it may be handed out.
    synced: Position,
    /// The segment being written, open.
    writing: Option<File>,
    /// Written since the last sync.
    dirty: bool,
    /// A segment was made since the last sync (the folder needs a sync).
    made_segment: bool,
    /// Bytes of lines not acknowledged (synced or not).
    bytes: u64,
    /// Where each line handed out by the last `peek` ends.
    peeked: VecDeque<Position>,
}

const CURSOR: &str = "cursor";
const SEGMENT_SUFFIX: &str = ".seg";
/// A segment is closed once it holds this much (the spool's bound / 8,
/// within these limits), so acknowledged lines are freed a file at a time.
const MIN_SEGMENT: u64 = 64 << 10;
const MAX_SEGMENT: u64 = 16 << 20;

// === impl Spool ===

impl Spool {
    /// Open (or make) the spool in `dir`, holding at most `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, StoreError> {
        let io = |source| StoreError::Io {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let lock = DirLock::take(dir)?;
        let mut numbers = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(number) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|n| n.parse::<u64>().ok())
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        let mut read = read_cursor(dir).unwrap_or(Position {
            segment: numbers.first().copied().unwrap_or(0),
            offset: 0,
        });
        let mut spool = Spool {
            _lock: lock,
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT, MAX_SEGMENT),
            segments: VecDeque::new(),
            read,
            synced: read,
            writing: None,
            dirty: false,
            made_segment: false,
            bytes: 0,
            peeked: VecDeque::new(),
        };
        for number in numbers {
            let path = spool.segment_path(number);
            if number < read.segment {
                // Fully acknowledged before the last stop.
                fs::remove_file(&path).map_err(|source| spool.io_error(&path, source))?;
                continue;
            }
            let len = fs::metadata(&path)
                .map_err(|source| spool.io_error(&path, source))?
                .len();
            spool.segments.push_back(Segment { number, len });
        }
        // A read position in a segment that is gone: start at the next one.
        match spool.segments.front() {
            Some(first) if first.number > read.segment => {
                read = Position {
                    segment: first.number,
                    offset: 0,
                };
            }
            Some(first) => read.offset = read.offset.min(first.len),
            None => read.offset = 0,
        }
        spool.read = read;
        spool.cut_torn_tail()?;
        spool.synced = spool.end();
        spool.bytes = spool.segments.iter().map(|s| s.len).sum::<u64>() - spool.read.offset;
        if spool.bytes == 0 {
            spool.clear()?;
        }
        Ok(spool)
    }

    /// The spool's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether every line pushed was acknowledged.
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Bytes of lines not yet acknowledged (each with its line feed).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The spool's bound in bytes.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Append `lines` (none may hold a line feed), after every line pushed
    /// before; durable at the next [`Spool::sync`]. All or none: when they
    /// would take the spool past its bound, nothing is written and
    /// [`StoreError::SpoolFull`] is returned.
    pub fn push(&mut self, lines: &[String]) -> Result<(), StoreError> {
        let size: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
        if size == 0 {
            return Ok(());
        }
        if self.bytes + size > self.max_bytes {
            return Err(StoreError::SpoolFull {
                limit: self.max_bytes,
            });
        }
        if lines.iter().any(|l| l.contains('\n')) {
            return Err(self.io_error(
                &self.dir,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a spooled line holds a line feed",
                ),
            ));
        }
        let mut buffer = Vec::with_capacity(size as usize);
        for line in lines {
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        let full = self
            .segments
            .back()
            .is_none_or(|last| last.len >= self.segment_bytes);
        if full || self.writing.is_none() {
            self.open_for_writing(full)?;
        }
        let Some((file, last)) = self.writing.as_mut().zip(self.segments.back_mut()) else {
            return Ok(());
        };
        if let Err(source) = file.write_all(&buffer) {
            let path = self.dir.join(segment_name(last.number));
            // Whatever part was written is cut off by `rollback`.
            self.dirty = true;
            return Err(StoreError::Io {
                path: path.display().to_string(),
                source,
            });
        }
        last.len += size;
        self.bytes += size;
        self.dirty = true;
        Ok(())
    }

    /// Make every line pushed so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if !self.dirty {
            return Ok(());
        }
        if let (Some(file), Some(last)) = (&self.writing, self.segments.back()) {
            file.sync_data()
                .map_err(|source| self.io_error(&self.segment_path(last.number), source))?;
        }
        if self.made_segment {
            sync_dir(&self.dir).map_err(|source| self.io_error(&self.dir, source))?;
            self.made_segment = false;
        }
        self.dirty = false;
        self.synced = self.end();
        Ok(())
    }

    /// Forget every line pushed since the last [`Spool::sync`] (after a
    /// failed push or sync, so the file ends where it was last durable).
    pub fn rollback(&mut self) -> Result<(), StoreError> {
        if !self.dirty && self.end() == self.synced {
            return Ok(());
        }
        self.writing = None;
        while let Some(last) = self.segments.back().copied() {
            if last.number <= self.synced.segment {
                break;
            }
            let path = self.segment_path(last.number);
            fs::remove_file(&path).map_err(|source| self.io_error(&path, source))?;
            self.segments.pop_back();
        }
        if let Some(last) = self.segments.back_mut()
            && last.number == self.synced.segment
            && last.len > self.synced.offset
        {
            let path = self.dir.join(segment_name(last.number));
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_len(self.synced.offset).map(|()| f));
            file.map_err(|source| StoreError::Io {
                path: path.display().to_string(),
                source,
            })?;
            last.len = self.synced.offset;
        }
        self.dirty = false;
        self.bytes = self.segments.iter().map(|s| s.len).sum::<u64>() - self.read.offset;
        Ok(())
    }

    /// The oldest synced lines not yet acknowledged, at most `max_lines`
    /// and (past the first) about `max_bytes`, oldest first. Each call
    /// starts again from the oldest line.
    pub fn peek(&mut self, max_lines: usize, max_bytes: u64) -> Result<Vec<String>, StoreError> {
        self.peeked.clear();
        let mut lines = Vec::new();
        let mut taken = 0u64;
        let mut at = self.read;
        'segments: for segment in self.segments.clone() {
            if segment.number < at.segment {
                continue;
            }
            if segment.number > at.segment {
                at = Position {
                    segment: segment.number,
                    offset: 0,
                };
            }
            let end = if segment.number == self.synced.segment {
                self.synced.offset.min(segment.len)
            } else if segment.number < self.synced.segment {
                segment.len
            } else {
                break;
            };
            if at.offset >= end {
                continue;
            }
            let path = self.segment_path(segment.number);
            let io = |source| StoreError::Io {
                path: path.display().to_string(),
                source,
            };
            let mut file = File::open(&path).map_err(io)?;
            file.seek(SeekFrom::Start(at.offset)).map_err(io)?;
            let mut reader = BufReader::new(file.take(end - at.offset));
            let mut line = Vec::new();
            loop {
                if lines.len() >= max_lines || (taken >= max_bytes && !lines.is_empty()) {
                    break 'segments;
                }
                line.clear();
                let n = reader.read_until(b'\n', &mut line).map_err(io)?;
                if n == 0 || line.last() != Some(&b'\n') {
                    break;
                }
                line.pop();
                let text = String::from_utf8(std::mem::take(&mut line)).map_err(|_| {
                    io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a spooled line is not UTF-8",
                    ))
                })?;
                at.offset += n as u64;
                taken += n as u64;
                lines.push(text);
                self.peeked.push_back(at);
            }
            if segment.number == self.synced.segment {
                break;
            }
        }
        Ok(lines)
    }

    /// Remove the first `count` lines the last [`Spool::peek`] handed out.
    pub fn ack(&mut self, count: usize) -> Result<(), StoreError> {
        if count == 0 {
            return Ok(());
        }
        let Some(&to) = self.peeked.get(count - 1) else {
            return Ok(());
        };
        self.peeked.drain(..count);
        // Bytes from the read position to `to`, across segments.
        let mut freed = 0;
        for segment in &self.segments {
            if segment.number < self.read.segment || segment.number > to.segment {
                continue;
            }
            let from = if segment.number == self.read.segment {
                self.read.offset
            } else {
                0
            };
            let until = if segment.number == to.segment {
                to.offset
            } else {
                segment.len
            };
            freed += until.saturating_sub(from);
        }
        self.bytes = self.bytes.saturating_sub(freed);
        self.read = to;
        if self.bytes == 0 {
            return self.clear();
        }
        write_cursor(&self.dir, self.read).map_err(|source| self.io_error(&self.dir, source))?;
        // Segments wholly read (never the one being written) are freed.
        while self.segments.len() > 1 {
            let Some(first) = self.segments.front().copied() else {
                break;
            };
            if first.number > self.read.segment
                || (first.number == self.read.segment && self.read.offset < first.len)
            {
                break;
            }
            let path = self.segment_path(first.number);
            fs::remove_file(&path).map_err(|source| self.io_error(&path, source))?;
            self.segments.pop_front();
            if let Some(next) = self.segments.front()
                && self.read.segment <= first.number
            {
                self.read = Position {
                    segment: next.number,
                    offset: 0,
                };
            }
        }
        Ok(())
    }

    /// The newest line not yet acknowledged (synced or not).
    pub fn last_line(&self) -> Result<Option<String>, StoreError> {
        if self.bytes == 0 {
            return Ok(None);
        }
        let Some(last) = self.segments.iter().rev().find(|s| {
            s.len
                > if s.number == self.read.segment {
                    self.read.offset
                } else {
                    0
                }
        }) else {
            return Ok(None);
        };
        let from = if last.number == self.read.segment {
            self.read.offset
        } else {
            0
        };
        let path = self.segment_path(last.number);
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        // Read backwards in growing windows until a whole line shows.
        let mut window = 4096u64;
        loop {
            let start = last.len.saturating_sub(window).max(from);
            file.seek(SeekFrom::Start(start)).map_err(io)?;
            let mut tail = Vec::new();
            (&mut file)
                .take(last.len - start)
                .read_to_end(&mut tail)
                .map_err(io)?;
            tail.pop(); // the last line feed
            let line_start = tail.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
            if line_start.is_some() || start == from {
                let line = tail.split_off(line_start.unwrap_or(0));
                return String::from_utf8(line).map(Some).map_err(|_| {
                    io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a spooled line is not UTF-8",
                    ))
                });
            }
            window *= 4;
        }
    }

    fn end(&self) -> Position {
        match self.segments.back() {
            Some(last) => Position {
                segment: last.number,
                offset: last.len,
            },
            None => self.read,
        }
    }

    /// Everything was acknowledged: remove the segments, start afresh.
    fn clear(&mut self) -> Result<(), StoreError> {
        self.writing = None;
        let next = self
            .segments
            .back()
            .map_or(self.read.segment, |s| s.number + 1);
        for segment in std::mem::take(&mut self.segments) {
            let path = self.segment_path(segment.number);
            fs::remove_file(&path).map_err(|source| self.io_error(&path, source))?;
        }
        self.read = Position {
            segment: next,
            offset: 0,
        };
        self.synced = self.read;
        self.bytes = 0;
        self.dirty = false;
        self.peeked.clear();
        write_cursor(&self.dir, self.read).map_err(|source| self.io_error(&self.dir, source))
    }

    /// Open the last segment for appending, or a new one after it.
    fn open_for_writing(&mut self, new: bool) -> Result<(), StoreError> {
        let number = match (new, self.segments.back()) {
            (false, Some(last)) => last.number,
            (true, Some(last)) => last.number + 1,
            (_, None) => self.read.segment,
        };
        let path = self.segment_path(number);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| self.io_error(&path, source))?;
        if new || self.segments.is_empty() {
            self.segments.push_back(Segment { number, len: 0 });
            self.made_segment = true;
        }
        self.writing = Some(file);
        Ok(())
    }

    /// Cut a line the last run did not finish writing.
    fn cut_torn_tail(&mut self) -> Result<(), StoreError> {
        let Some(last) = self.segments.back_mut() else {
            return Ok(());
        };
        if last.len == 0 {
            return Ok(());
        }
        let path = self.dir.join(segment_name(last.number));
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let mut keep = last.len;
        let mut byte = [0u8; 1];
        while keep > 0 {
            file.seek(SeekFrom::Start(keep - 1)).map_err(io)?;
            file.read_exact(&mut byte).map_err(io)?;
            if byte[0] == b'\n' {
                break;
            }
            keep -= 1;
        }
        if keep < last.len {
            tracing::warn!(spool = %path.display(), bytes = last.len - keep, "Cut a spooled line the last run did not finish.");
            file.set_len(keep).map_err(io)?;
            file.sync_data().map_err(io)?;
            last.len = keep;
        }
        Ok(())
    }

    fn segment_path(&self, number: u64) -> PathBuf {
        self.dir.join(segment_name(number))
    }

    fn io_error(&self, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

fn segment_name(number: u64) -> String {
    format!("{number:020}{SEGMENT_SUFFIX}")
}

fn read_cursor(dir: &Path) -> Option<Position> {
    let text = fs::read_to_string(dir.join(CURSOR)).ok()?;
    let (segment, offset) = text.trim().split_once(' ')?;
    Some(Position {
        segment: segment.parse().ok()?,
        offset: offset.parse().ok()?,
    })
}

fn write_cursor(dir: &Path, at: Position) -> std::io::Result<()> {
    let temporary = dir.join("cursor.new");
    fs::write(&temporary, format!("{} {}\n", at.segment, at.offset))?;
    fs::rename(&temporary, dir.join(CURSOR))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|i| format!("{{\"n\":{i}}}")).collect()
    }

    #[test]
    fn lines_come_out_in_order_once_synced_and_go_once_acknowledged() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("open");
        assert!(spool.is_empty());
        spool.push(&lines(0..3)).expect("push");
        assert!(
            spool.peek(10, 1 << 20).expect("peek").is_empty(),
            "not synced yet"
        );
        spool.sync().expect("sync");
        spool.push(&lines(3..5)).expect("push");
        assert_eq!(spool.peek(10, 1 << 20).expect("peek"), lines(0..3));
        spool.sync().expect("sync");
        assert_eq!(spool.peek(2, 1 << 20).expect("peek"), lines(0..2));
        spool.ack(2).expect("ack");
        assert_eq!(spool.peek(10, 1 << 20).expect("peek"), lines(2..5));
        assert_eq!(
            spool.last_line().expect("last"),
            Some(lines(4..5).remove(0))
        );
        spool.ack(3).expect("ack");
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(spool.last_line().expect("last"), None);
    }

    #[test]
    fn a_second_spool_on_the_same_folder_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().expect("dir");
        let spool = Spool::open(dir.path(), 1 << 20).expect("open");
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(StoreError::InUse { .. })
        ));
        drop(spool);
        Spool::open(dir.path(), 1 << 20).expect("free again");
    }

    #[test]
    fn the_spool_survives_a_restart_and_cuts_a_torn_line() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let mut spool = Spool::open(dir.path(), 1 << 20).expect("open");
            spool.push(&lines(0..4)).expect("push");
            spool.sync().expect("sync");
            spool.peek(1, 1 << 20).expect("peek");
            spool.ack(1).expect("ack");
        }
        // A crash in the middle of a write.
        let segment = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(SEGMENT_SUFFIX))
            .expect("segment");
        let mut file = OpenOptions::new()
            .append(true)
            .open(segment.path())
            .expect("open");
        file.write_all(b"{\"n\":9").expect("write");
        let mut spool = Spool::open(dir.path(), 1 << 20).expect("reopen");
        assert_eq!(spool.peek(10, 1 << 20).expect("peek"), lines(1..4));
        assert_eq!(
            spool.last_line().expect("last"),
            Some(lines(3..4).remove(0))
        );
        spool.push(&lines(4..5)).expect("push");
        spool.sync().expect("sync");
        assert_eq!(spool.peek(10, 1 << 20).expect("peek"), lines(1..5));
    }

    #[test]
    fn a_push_past_the_bound_is_refused_whole_and_rollback_forgets_unsynced_lines() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 30).expect("open");
        spool.push(&lines(0..3)).expect("push"); // 3 x 8 bytes
        spool.sync().expect("sync");
        assert!(matches!(
            spool.push(&lines(3..4)),
            Err(StoreError::SpoolFull { limit: 30 })
        ));
        assert_eq!(spool.bytes(), 24);
        spool.peek(1, 1).expect("peek");
        spool.ack(1).expect("ack");
        spool.push(&lines(3..4)).expect("push");
        spool.rollback().expect("rollback");
        assert_eq!(spool.peek(10, 1 << 20).expect("peek"), lines(1..3));
        assert_eq!(spool.bytes(), 16);
        drop(spool);
        let reopened = Spool::open(dir.path(), 30).expect("reopen");
        assert_eq!(reopened.bytes(), 16);
    }

    #[test]
    fn segments_roll_over_and_are_freed_as_they_are_read() {
        let dir = tempfile::tempdir().expect("dir");
        let mut spool = Spool::open(dir.path(), 512 << 10).expect("open");
        let big: Vec<String> = (0..40)
            .map(|i| format!("{i:04}{}", "x".repeat(4096)))
            .collect();
        for chunk in big.chunks(4) {
            spool.push(chunk).expect("push");
            spool.sync().expect("sync");
        }
        let segments = |dir: &Path| {
            fs::read_dir(dir)
                .expect("list")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(SEGMENT_SUFFIX))
                .count()
        };
        assert!(segments(dir.path()) > 1, "{}", segments(dir.path()));
        let mut seen = Vec::new();
        while !spool.is_empty() {
            let batch = spool.peek(7, 1 << 20).expect("peek");
            assert!(!batch.is_empty());
            spool.ack(batch.len()).expect("ack");
            seen.extend(batch);
            if seen.len() == 21 {
                // One spool per folder: let go of it to look from outside.
                drop(spool);
                let mut reopened = Spool::open(dir.path(), 512 << 10).expect("reopen");
                assert_eq!(reopened.peek(1, 1).expect("peek"), vec![big[21].clone()]);
                drop(reopened);
                spool = Spool::open(dir.path(), 512 << 10).expect("open again");
            }
        }
        assert_eq!(seen, big);
        assert_eq!(segments(dir.path()), 0);
        spool.push(&lines(0..1)).expect("push after drain");
        spool.sync().expect("sync");
        assert_eq!(spool.peek(10, 1 << 20).expect("peek"), lines(0..1));
    }
}
