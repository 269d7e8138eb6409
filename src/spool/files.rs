//! The spool's file layer: atomic writes (hidden tmp file, fsync, rename),
//! folder fsyncs, and careful reads that accept only regular files (never
//! through a symlink, never blocking on a FIFO) and never read more than a
//! job can be. Every error names the path it is about.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use rustix::fs::{FileType, Mode, OFlags};

use super::job::{Job, MAX_META_BYTES, Meta, decode_meta};

/// Spool files are private to the drain's user, whatever the umask.
pub const FILE_MODE: u32 = 0o600;
/// No job is larger than this (an event body is capped far below it); a
/// bigger file is not ours and is quarantined instead of read.
pub const MAX_JOB_BYTES: u64 = 64 * 1024 * 1024;
/// Tmp files older than this belong to a dead writer.
const STALE_TMP_MS: u64 = 10 * 60 * 1000;

/// How many syncs this thread asked for, by kind (tests count them: the
/// cost of emit is mostly its syncs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Syncs {
    pub files: u64,
    pub folders: u64,
    pub filesystems: u64,
}

impl std::ops::Sub for Syncs {
    type Output = Syncs;
    fn sub(self, o: Syncs) -> Syncs {
        Syncs {
            files: self.files - o.files,
            folders: self.folders - o.folders,
            filesystems: self.filesystems - o.filesystems,
        }
    }
}

thread_local! {
    static SYNCS: std::cell::Cell<Syncs> = const { std::cell::Cell::new(Syncs { files: 0, folders: 0, filesystems: 0 }) };
}

fn count_sync(f: impl FnOnce(&mut Syncs)) {
    SYNCS.with(|c| {
        let mut s = c.get();
        f(&mut s);
        c.set(s);
    });
}

/// The syncs this thread has made so far.
pub fn syncs() -> Syncs {
    SYNCS.with(|c| c.get())
}

/// Why a spool file could not be read.
#[derive(Debug)]
pub enum Unread {
    /// It vanished (another process moved it): nothing to do.
    Gone,
    /// It is not a job (bad content, not a regular file, a symlink, too
    /// big, unreadable by us): quarantine it.
    Bad(String),
    /// It could not be read right now (EMFILE, EIO…): leave it be.
    Io(String),
}

/// Writes `bytes` to a new hidden file in `dir` (fsynced if `sync`) and
/// returns its path; the caller renames it into place in the same folder.
/// On failure the partial file is removed, so a full disk leaves nothing.
pub fn write_tmp(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".{name}.{}.{unique}.tmp", pid()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .with_context(|| format!("failed to create `{}`", path.display()))?;
    let written = file
        .write_all(bytes)
        .with_context(|| format!("failed to write `{}`", path.display()))
        .and_then(|()| match sync {
            true => {
                count_sync(|s| s.files += 1);
                file.sync_all()
                    .with_context(|| format!("failed to fsync `{}`", path.display()))
            }
            false => Ok(()),
        });
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// This process's id, asked of the kernel once (every tmp name has it).
pub fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Writes `bytes` as `dir/name` atomically: tmp + fsync + rename + fsync of `dir`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = write_tmp(dir, name, bytes, true)?;
    let to = dir.join(name);
    if let Err(e) = fs::rename(&tmp, &to) {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("failed to write `{}`", to.display()));
    }
    fsync_dir(dir)?;
    Ok(to)
}

/// fsync a directory so that renames into it survive a power cut.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    count_sync(|s| s.folders += 1);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to fsync folder `{}`", dir.display()))
}

/// Flushes the whole filesystem holding `dir`: one call instead of an fsync per file.
pub fn syncfs(dir: &Path) -> Result<()> {
    let file = File::open(dir).with_context(|| format!("failed to open `{}`", dir.display()))?;
    count_sync(|s| s.filesystems += 1);
    rustix::fs::syncfs(&file)
        .map_err(io::Error::from)
        .with_context(|| format!("failed to sync the filesystem of `{}`", dir.display()))
}

/// Creates a folder (and its parents) private to this user.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("failed to create folder `{}`", dir.display()))
}

/// Removes hidden tmp files older than [`STALE_TMP_MS`]: their writer died.
pub fn remove_stale_tmp(dir: &Path, now_ms: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_tmp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        if !is_tmp {
            continue; // one stat per tmp file, none per job
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(crate::clock::to_millis);
        if modified.is_ok_and(|m| now_ms.saturating_sub(m) > STALE_TMP_MS) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Opens `name` inside the open folder `dir` for reading, if it is a
/// regular file: never through a symlink, never blocking (a FIFO).
/// `openat` resolves one path component instead of the whole spool path
/// per file, which is most of the kernel time when list reads 100k jobs.
pub fn open_regular_at(dir: &File, name: &str) -> Result<File, Unread> {
    let fd =
        rustix::fs::openat(dir, name, READ_FLAGS, Mode::empty()).map_err(|e| classify(e.into()))?;
    regular(fd).map(|(file, _)| file)
}

/// [`open_regular_at`] for a whole path (one open: `O_NOFOLLOW` guards the
/// last component, the folders above are the spool's own).
pub fn open_regular(path: &Path) -> Result<File, Unread> {
    open_regular_sized(path).map(|(file, _)| file)
}

/// [`open_regular`], with the file's size.
fn open_regular_sized(path: &Path) -> Result<(File, u64), Unread> {
    let fd = rustix::fs::open(path, READ_FLAGS, Mode::empty()).map_err(|e| classify(e.into()))?;
    regular(fd)
}

const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK);

/// The open file and its size, if it is a regular file.
fn regular(fd: std::os::fd::OwnedFd) -> Result<(File, u64), Unread> {
    let stat = rustix::fs::fstat(&fd).map_err(|e| Unread::Io(format!("cannot stat: {e}")))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok((File::from(fd), stat.st_size.max(0) as u64)),
        other => Err(Unread::Bad(format!("not a regular file ({other:?})"))),
    }
}

/// Errors that say the entry is not a usable job (quarantine) versus
/// errors that say nothing about it (leave it).
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

/// The first line of an open job file, parsed: one read loop, at most
/// [`MAX_META_BYTES`]. A read error is never taken for bad content.
pub fn read_meta_from(mut file: impl Read) -> Result<Meta, Unread> {
    let mut buf = vec![0u8; 2048];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_META_BYTES {
                return Err(Unread::Bad(format!(
                    "no metadata line in the first {MAX_META_BYTES} bytes"
                )));
            }
            buf.resize((buf.len() * 2).min(MAX_META_BYTES), 0);
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => return Err(Unread::Bad("no metadata line".into())),
            Ok(n) => {
                if let Some(nl) = buf[filled..filled + n].iter().position(|&b| b == b'\n') {
                    return decode_meta(&buf[..filled + nl]).map_err(Unread::Bad);
                }
                filled += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Unread::Io(format!("cannot read: {e}"))),
        }
    }
}

/// Reads the metadata line of `name` inside the open folder `dir`.
pub fn read_meta_at(dir: &File, name: &str) -> Result<Meta, Unread> {
    read_meta_from(open_regular_at(dir, name)?)
}

/// Reads the metadata line of the job at `path`.
pub fn read_meta(path: &Path) -> Result<Meta, Unread> {
    read_meta_from(open_regular(path)?)
}

/// Reads a whole job file, refusing what cannot be a job.
pub fn read_job_checked(path: &Path) -> Result<Job, Unread> {
    let (file, len) = open_regular_sized(path)?;
    // Sized from fstat, so a whole job is one read (plus the one that sees
    // the end); the cap still holds if the file grew meanwhile.
    let mut bytes = Vec::with_capacity(len.min(MAX_JOB_BYTES) as usize + 1);
    let read = file.take(MAX_JOB_BYTES + 1).read_to_end(&mut bytes);
    if let Err(e) = read {
        return Err(Unread::Io(format!("cannot read: {e}")));
    }
    if bytes.len() as u64 > MAX_JOB_BYTES {
        return Err(Unread::Bad(format!("larger than {MAX_JOB_BYTES} bytes")));
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Job::decode_named(name, &bytes).map_err(Unread::Bad)
}

/// Reads a whole job; any problem is an error naming the file.
pub fn read_job(path: &Path) -> Result<Job> {
    read_job_checked(path).map_err(|e| match e {
        Unread::Gone => anyhow::anyhow!("job `{}` is gone", path.display()),
        Unread::Bad(why) => anyhow::anyhow!("job `{}` is corrupt: {why}", path.display()),
        Unread::Io(why) => anyhow::anyhow!("failed to read job `{}`: {why}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data` in small pieces, then fails with EIO.
    struct FailingReader {
        data: Vec<u8>,
        at: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = out.len().min(500).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn an_io_error_after_a_long_metadata_prefix_is_io_not_corruption() {
        // Over 2 KiB of a metadata line, then EIO: the old second read loop
        // called this a bad file and quarantined a good job.
        for len in [100, 3000, 10_000] {
            let reader = FailingReader {
                data: vec![b'x'; len],
                at: 0,
            };
            match read_meta_from(reader) {
                Err(Unread::Io(e)) => assert!(e.contains("cannot read"), "{e}"),
                other => panic!("{len} bytes then EIO gave {other:?}"),
            }
        }
    }

    #[test]
    fn an_endless_first_line_stops_at_the_cap() {
        let endless = io::repeat(b'a');
        match read_meta_from(endless) {
            Err(Unread::Bad(e)) => assert!(e.contains("first"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn symlinks_fifos_and_folders_are_not_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.job");
        fs::write(&real, b"x\n{}").unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link.job")).unwrap();
        fs::create_dir(dir.path().join("folder.job")).unwrap();
        let fifo = dir.path().join("fifo.job");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let d = File::open(dir.path()).unwrap();
        for name in ["link.job", "folder.job", "fifo.job"] {
            assert!(
                matches!(open_regular_at(&d, name), Err(Unread::Bad(_))),
                "{name} must be refused"
            );
        }
        assert!(open_regular_at(&d, "real.job").is_ok());
        assert!(matches!(
            open_regular_at(&d, "missing.job"),
            Err(Unread::Gone)
        ));
    }

    #[test]
    fn tmp_files_are_written_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_tmp(dir.path(), "a.job", b"abc", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            FILE_MODE
        );
    }
}
