//! One writer per directory: an exclusive `flock` on `<dir>/.lock`, held
//! while a store or spool is open.
//!
//! Two Warden processes writing the same trail (or spool) folder would
//! interleave two chains' records in one file, or deliver one spool twice.
//! The second one to open fails at start, naming the folder and the
//! process that holds it. The lock is the kernel's: it goes with the
//! process, so a crashed Warden never leaves a stale lock behind (the file
//! stays; only the lock on it matters).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::log::StoreError;

/// The lock file's name in a locked directory.
pub const LOCK_FILE: &str = ".lock";

/// A directory held by this process (released when dropped).
#[derive(Debug)]
pub struct DirLock {
    _held: Flock<File>,
}

impl DirLock {
    /// Hold `dir` (which must exist), or fail with
    /// [`StoreError::InUse`] when another open store or process holds it.
    pub fn take(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| StoreError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut held = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => held,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(StoreError::InUse {
                    dir: dir.display().to_string(),
                    holder: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
        };
        // Who holds it, for the error another process will show.
        held.set_len(0)
            .and_then(|()| held.seek(SeekFrom::Start(0)).map(drop))
            .and_then(|()| writeln!(held, "{}", std::process::id()))
            .map_err(io)?;
        Ok(DirLock { _held: held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("dir");
        let first = DirLock::take(dir.path()).expect("first");
        let err = DirLock::take(dir.path()).expect_err("second");
        match &err {
            StoreError::InUse { dir: named, holder } => {
                assert_eq!(named, &dir.path().display().to_string());
                assert_eq!(*holder, Some(std::process::id()));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            err.to_string().contains("in use by another Warden"),
            "{err}"
        );
        drop(first);
        DirLock::take(dir.path()).expect("free again");
    }
}
