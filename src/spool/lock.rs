//! The spool's locks: `seq` (the sequence counter, locked while it is
//! read and rewritten), `drain.alive` (held by the one drain serving a SPEC),
//! `drain.lock` (held while replay, discard, recovery or pruning move
//! files) and the spool's own `.drain.alive` ([`DUTY_LOCK`]: held by the
//! one drain on duty for the whole spool, which emit relies on). A lock holder writes its pid into drain.alive/drain.lock so that
//! a wait that runs out can say who holds it. The lock files, the bounded
//! wait and the naming of the holder are [`crate::files::lock`]'s.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::files::lock::{lock_within, note_holder, try_lock};

/// The spool root's duty lock: held by the drain on duty for the whole
/// spool (it watches every SPEC folder and serves every SPEC with due
/// work), so that emit starts a drain only when none is on duty. A dot
/// name: no SPEC id starts with a dot.
pub const DUTY_LOCK: &str = ".drain.alive";

/// Longest wait for drain.lock: it is held only while files move, so a
/// longer wait means a stuck or hostile holder.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Proof that this process holds a SPEC's drain.lock; released when the
/// descriptor closes on drop.
#[derive(Debug)]
pub struct DrainLock {
    _file: File,
}

/// Proof that this process is the drain serving a SPEC (drain.alive), or
/// the relay (relay.alive); released on drop.
#[derive(Debug)]
pub struct AliveLock {
    _file: File,
    /// The folder holding the lock file: the SPEC's, for drain.alive.
    dir: std::path::PathBuf,
}

impl DrainLock {
    pub fn try_take(path: &Path) -> Result<Option<DrainLock>> {
        Ok(try_lock(path)?.map(|file| DrainLock {
            _file: note_holder(file),
        }))
    }

    pub fn take(path: &Path) -> Result<DrainLock> {
        Ok(DrainLock {
            _file: note_holder(lock_within(path, LOCK_WAIT)?),
        })
    }
}

impl AliveLock {
    pub fn try_take(path: &Path) -> Result<Option<AliveLock>> {
        Ok(try_lock(path)?.map(|file| AliveLock {
            _file: note_holder(file),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        }))
    }

    /// Whether this is the drain.alive of the SPEC folder `dir`.
    pub fn serves(&self, dir: &Path) -> bool {
        self.dir == dir
    }

    /// Takes over a lock on `path` that this process inherited, locked, as
    /// descriptor `fd` (emit takes the spool's duty lock, then hands it to
    /// the drain it starts, so that no second emit starts another). `None`,
    /// and the descriptor left alone, unless `fd` is open on that very file.
    pub fn adopt(fd: RawFd, path: &Path) -> Option<AliveLock> {
        // SAFETY: fcntl and fstat only read the descriptor table and the
        // inode; an fd that is not open fails with EBADF.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if fd < 0 || unsafe { libc::fstat(fd, &mut stat) } != 0 {
            return None;
        }
        let on_disk = std::fs::symlink_metadata(path).ok()?;
        if on_disk.dev() != stat.st_dev || on_disk.ino() != stat.st_ino {
            return None;
        }
        // SAFETY: the descriptor is open and nothing in this process owns
        // it (it came from the parent, not from a File of ours). Marked
        // close-on-exec: processes this one starts must not keep the lock.
        let file = unsafe { File::from_raw_fd(fd) };
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        Some(AliveLock {
            _file: note_holder(file),
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }
}

impl AsFd for AliveLock {
    /// The locked file (to hand the lock to a child process).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self._file.as_fd()
    }
}

/// Reserves `count` numbers from the counter file at `path`: the first,
/// with the file still locked ([`Reserved`]). Safe across processes; the
/// wait is bounded (emit must never hang a pipeline).
pub fn reserve_sequence(path: &Path, count: u64) -> Result<Reserved> {
    let file = lock_within(path, LOCK_WAIT)?;
    let mut text = String::new();
    (&file)
        .read_to_string(&mut text)
        .with_context(|| format!("failed to read `{}`", path.display()))?;
    let last: u64 = match text.trim() {
        "" => 0,
        t => t.parse().with_context(|| {
            format!(
                "sequence file `{}` is corrupt ({t:?}); write the highest sequence used into it",
                path.display()
            )
        })?,
    };
    let next = last
        .checked_add(count)
        .with_context(|| format!("sequence file `{}` is exhausted", path.display()))?;
    // Fixed width, so an in-place overwrite never leaves stale digits.
    file.write_all_at(format!("{next:020}\n").as_bytes(), 0)
        .and_then(|()| file.sync_data())
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    Ok(Reserved {
        first: last + 1,
        _held: file,
    })
}

/// Sequence numbers reserved, and the counter's lock: held until the jobs
/// that use them are written, so that a SPEC's jobs appear in pending/ in
/// sequence order (a FIFO line never sees a later job before an earlier
/// one that is still being written).
#[derive(Debug)]
pub struct Reserved {
    pub first: u64,
    _held: std::fs::File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_not_waited_for_forever_and_the_error_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drain.lock");
        let _held = DrainLock::try_take(&path).unwrap().unwrap();
        assert!(DrainLock::try_take(&path).unwrap().is_none(), "exclusive");
        let err = lock_within(&path, Duration::from_millis(20)).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
    }

    #[test]
    fn an_inherited_lock_is_adopted_only_on_its_own_file() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DUTY_LOCK);
        let held = AliveLock::try_take(&path).unwrap().unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"").unwrap();
        let fd = held.as_fd().as_raw_fd();
        assert!(AliveLock::adopt(fd, &other).is_none(), "another file");
        assert!(AliveLock::adopt(-1, &path).is_none());
        assert!(AliveLock::adopt(9999, &path).is_none(), "not open");
        // A second descriptor of the same open file, as a child inherits it.
        let dup = unsafe { libc::dup(fd) };
        drop(held);
        let adopted = AliveLock::adopt(dup, &path).expect("its own file");
        assert!(AliveLock::try_take(&path).unwrap().is_none(), "still held");
        drop(adopted);
        assert!(AliveLock::try_take(&path).unwrap().is_some(), "let go");
    }

    #[test]
    fn lock_files_are_private() {
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seq");
        reserve_sequence(&path, 1).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
