//! Bounded reads: a file is opened with `O_NOFOLLOW | O_NONBLOCK` (never
//! through a symlink, never blocking on a FIFO), accepted only if `fstat`
//! says it is a regular file, and read up to a limit (never more than the
//! caller can use). Failures are sorted by what they say about the file:
//! gone, not acceptable, or a passing I/O trouble.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

/// Why a file could not be read.
#[derive(Debug)]
pub enum Unread {
    /// It vanished (another process moved it): nothing to do.
    Gone,
    /// It is not what it should be (bad content, not a regular file, a
    /// symlink, too big, unreadable by us): the spool quarantines it.
    Bad(String),
    /// It could not be read right now (EMFILE, EIO…): leave it be.
    Io(String),
}

const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK);

/// Opens `name` inside the open folder `dir` for reading, if it is a
/// regular file. `openat` resolves one path component instead of the whole
/// path per file, which is most of the kernel time when list reads 100k jobs.
pub fn open_regular_at(dir: &File, name: &str) -> Result<File, Unread> {
    let fd =
        rustix::fs::openat(dir, name, READ_FLAGS, Mode::empty()).map_err(|e| classify(e.into()))?;
    regular(fd).map(|(file, _)| file)
}

/// [`open_regular_at`] for a whole path (one open: `O_NOFOLLOW` guards the
/// last component; the folders above are the caller's own).
pub fn open_regular(path: &Path) -> Result<File, Unread> {
    open_regular_sized(path).map(|(file, _)| file)
}

/// [`open_regular`], with the file's size.
pub fn open_regular_sized(path: &Path) -> Result<(File, u64), Unread> {
    let fd = rustix::fs::open(path, READ_FLAGS, Mode::empty()).map_err(|e| classify(e.into()))?;
    regular(fd)
}

/// The open file and its size, if it is a regular file.
fn regular(fd: std::os::fd::OwnedFd) -> Result<(File, u64), Unread> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| Unread::Io(format!("cannot stat: {e}")))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok((File::from(fd), stat.st_size.max(0) as u64)),
        other => Err(Unread::Bad(format!("not a regular file ({other:?})"))),
    }
}

/// Errors that say the entry is not acceptable (the spool quarantines it)
/// versus errors that say nothing about it (leave it).
fn classify(e: io::Error) -> Unread {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Unread::Gone,
        Some(libc::ELOOP) => Unread::Bad("a symbolic link".into()),
        Some(libc::EACCES | libc::EPERM) => Unread::Bad(format!("cannot open: {e}")),
        Some(libc::EISDIR | libc::ENXIO | libc::ENODEV) => {
            Unread::Bad(format!("not a regular file: {e}"))
        }
        _ => Unread::Io(format!("cannot open: {e}")),
    }
}

/// Reads at most `limit` bytes of `file`; `size` (from fstat, if known)
/// sizes the buffer so that a whole small file is one read.
pub fn read_up_to(file: impl Read, limit: u64, size: Option<u64>) -> io::Result<Vec<u8>> {
    let capacity = size.map_or(8 * 1024, |s| s.saturating_add(1)).min(limit);
    let mut bytes = Vec::with_capacity(capacity as usize);
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Reads the whole regular file at `path`, refusing one over `max` bytes
/// (the cap holds even if the file grows while it is read).
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, Unread> {
    let (file, size) = open_regular_sized(path)?;
    let bytes = read_up_to(file, max.saturating_add(1), Some(size))
        .map_err(|e| Unread::Io(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(Unread::Bad(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::time::Duration;

    fn fifo(path: &Path) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }

    #[test]
    fn symlinks_fifos_and_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.job");
        fs::write(&real, b"x\n{}").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.job")).unwrap();
        fs::create_dir(dir.path().join("folder.job")).unwrap();
        fifo(&dir.path().join("fifo.job"));
        let d = File::open(dir.path()).unwrap();
        for name in ["link.job", "folder.job", "fifo.job"] {
            assert!(
                matches!(open_regular_at(&d, name), Err(Unread::Bad(_))),
                "{name} must be refused"
            );
            assert!(
                matches!(
                    read_bounded(&dir.path().join(name), 64),
                    Err(Unread::Bad(_))
                ),
                "{name} must be refused by path"
            );
        }
        assert!(matches!(
            open_regular(&dir.path().join("link.job")),
            Err(Unread::Bad(why)) if why.contains("symbolic link")
        ));
        assert!(open_regular_at(&d, "real.job").is_ok());
        assert!(matches!(
            open_regular_at(&d, "missing.job"),
            Err(Unread::Gone)
        ));
    }

    #[test]
    fn a_fifo_with_no_writer_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fifo(&path);
        let (tx, rx) = std::sync::mpsc::channel();
        // A blocking open would never return: no writer ever comes.
        std::thread::spawn(move || {
            let refused = matches!(read_bounded(&path, 64), Err(Unread::Bad(_)));
            let _ = tx.send(refused);
        });
        let refused = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the read blocked on the FIFO");
        assert!(refused);
    }

    #[test]
    fn reads_stop_at_their_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        fs::write(&path, vec![b'x'; 100]).unwrap();
        assert_eq!(read_bounded(&path, 100).unwrap().len(), 100);
        match read_bounded(&path, 99) {
            Err(Unread::Bad(why)) => assert!(why.contains("larger than 99 bytes"), "{why}"),
            other => panic!("{other:?}"),
        }
        // An endless file: read_up_to stops at its limit.
        let zeros = File::open("/dev/zero").unwrap();
        assert_eq!(read_up_to(zeros, 4096, None).unwrap().len(), 4096);
        assert_eq!(read_up_to(&b"abc"[..], 2, Some(3)).unwrap(), b"ab");
    }
}
