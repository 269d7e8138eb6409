//! Atomic writes: a file is written under a hidden temp name in the folder
//! it is meant for (`.<name>.<pid>.<random>.tmp`, created with `O_EXCL` and
//! `O_NOFOLLOW`, so never an existing file and never through a symlink),
//! fsynced, renamed over its target, and the folder fsynced. A reader sees
//! the old file or the new one, never half of one; a failed write leaves no
//! temp file behind. Also folder fsyncs, filesystem syncs (counted per
//! thread, so tests can check what a write costs), private folders and the
//! sweep of temp files a dead writer left.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Files private to this user (spool, state and lock files), whatever the umask.
pub const PRIVATE: u32 = 0o600;
/// Temp files older than this (ten minutes) belong to a dead writer.
const STALE_TMP_MS: u64 = 10 * 60 * 1000;
/// Random temp names tried before giving up (one is taken only by a dead
/// writer's leftover or a planted file: a second try all but always wins).
const TMP_NAME_TRIES: usize = 16;

/// Who may read a file written here.
#[derive(Debug, Clone, Copy)]
pub enum Perms<'a> {
    /// 0600: this user's alone.
    Private,
    /// 0644 less the umask: other users' programs read it (node_exporter).
    Readable,
    /// The mode, and the owner where allowed, of the file being replaced.
    Like(&'a fs::Metadata),
}

impl Perms<'_> {
    fn create_mode(self) -> u32 {
        match self {
            Perms::Readable => 0o644,
            Perms::Private | Perms::Like(_) => PRIVATE,
        }
    }
}

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

/// This process's id, asked of the kernel once (every temp name has it).
fn pid() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// A new hidden file beside its target. Removed when dropped, unless it
/// was renamed into place or [`TmpFile::keep`] handed it to the caller.
#[derive(Debug)]
pub struct TmpFile {
    file: File,
    path: PathBuf,
    kept: bool,
}

impl TmpFile {
    /// Creates `.<name>.<pid>.<random>.tmp` in `dir`.
    pub fn create(dir: &Path, name: &str, perms: Perms<'_>) -> Result<TmpFile> {
        let names =
            std::iter::repeat_with(|| format!(".{name}.{}.{:x}.tmp", pid(), fastrand::u64(..)));
        TmpFile::create_named(dir, names.take(TMP_NAME_TRIES), perms)
    }

    /// Creates the first of `names` in `dir` that does not exist yet.
    fn create_named(
        dir: &Path,
        names: impl IntoIterator<Item = String>,
        perms: Perms<'_>,
    ) -> Result<TmpFile> {
        let mut last = None;
        for name in names {
            let path = dir.join(name);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(perms.create_mode())
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            match opened {
                Ok(file) => {
                    let tmp = TmpFile {
                        file,
                        path,
                        kept: false,
                    };
                    if let Perms::Like(old) = perms {
                        tmp.take_after(old)?;
                    }
                    return Ok(tmp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((e, path)),
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("failed to create `{}`", path.display()));
                }
            }
        }
        let (e, path) = last.unwrap_or_else(|| {
            let e = io::Error::from(io::ErrorKind::AlreadyExists);
            (e, dir.to_path_buf())
        });
        Err(e).with_context(|| format!("failed to create `{}`", path.display()))
    }

    /// Gives the file the mode, and the owner where allowed, of `old`.
    fn take_after(&self, old: &fs::Metadata) -> Result<()> {
        self.file
            .set_permissions(fs::Permissions::from_mode(old.mode() & 0o7777))
            .with_context(|| format!("failed to set the mode of `{}`", self.path.display()))?;
        let _ = std::os::unix::fs::fchown(&self.file, Some(old.uid()), Some(old.gid()));
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .with_context(|| format!("failed to write `{}`", self.path.display()))
    }

    pub fn sync(&self) -> Result<()> {
        count_sync(|s| s.files += 1);
        self.file
            .sync_all()
            .with_context(|| format!("failed to fsync `{}`", self.path.display()))
    }

    /// Closes the file and leaves it for the caller to rename (or remove).
    pub fn keep(mut self) -> PathBuf {
        self.kept = true;
        std::mem::take(&mut self.path)
    }

    /// Renames the file over `to` (in the same folder); on failure it is removed.
    pub fn rename(mut self, to: &Path) -> Result<()> {
        fs::rename(&self.path, to).with_context(|| {
            format!(
                "failed to move `{}` to `{}`",
                self.path.display(),
                to.display()
            )
        })?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for TmpFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes `bytes` to a new private temp file in `dir` (fsynced if `sync`)
/// and returns its path; the caller renames it into place in the same
/// folder. On failure the partial file is removed, so a full disk leaves
/// nothing.
pub fn write_tmp(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<PathBuf> {
    let mut tmp = TmpFile::create(dir, name, Perms::Private)?;
    tmp.write_all(bytes)?;
    if sync {
        tmp.sync()?;
    }
    Ok(tmp.keep())
}

/// Writes `bytes` as `dir/name` atomically: temp file, fsync, rename,
/// fsync of `dir`. Returns the path written.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8], perms: Perms<'_>) -> Result<PathBuf> {
    let mut tmp = TmpFile::create(dir, name, perms)?;
    tmp.write_all(bytes)?;
    tmp.sync()?;
    let to = dir.join(name);
    tmp.rename(&to)?;
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

/// Bytes free for this user on the filesystem holding `path` (`None` if
/// it cannot be told).
pub fn free_bytes(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
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

/// Removes hidden temp files older than ten minutes: their writer died.
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
            continue; // one stat per temp file, none per job
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn tmp_files_are_written_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_tmp(dir.path(), "a.job", b"abc", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abc");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            PRIVATE
        );
        let name = path.file_name().unwrap().to_str().unwrap();
        let prefix = format!(".a.job.{}.", std::process::id());
        assert!(
            name.starts_with(&prefix) && name.ends_with(".tmp"),
            "{name}"
        );
    }

    #[test]
    fn tmp_names_are_random() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_tmp(dir.path(), "x", b"", false).unwrap();
        let b = write_tmp(dir.path(), "x", b"", false).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn a_taken_tmp_name_is_never_opened_and_the_next_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        fs::write(&target, b"keep me").unwrap();
        // A leftover file and a planted symlink under names a writer picks.
        fs::write(dir.path().join(".a.1.tmp"), b"leftover").unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(".a.2.tmp")).unwrap();
        let names = [".a.1.tmp", ".a.2.tmp", ".a.3.tmp"].map(String::from);
        let mut tmp = TmpFile::create_named(dir.path(), names, Perms::Private).unwrap();
        assert_eq!(tmp.path(), dir.path().join(".a.3.tmp"));
        tmp.write_all(b"new").unwrap();
        drop(tmp);
        assert_eq!(fs::read(&target).unwrap(), b"keep me", "never followed");
        assert_eq!(fs::read(dir.path().join(".a.1.tmp")).unwrap(), b"leftover");
        assert!(
            !dir.path().join(".a.3.tmp").exists(),
            "dropped unkept: removed"
        );
        let all_taken = [".a.1.tmp", ".a.2.tmp"].map(String::from);
        let err = TmpFile::create_named(dir.path(), all_taken, Perms::Private).unwrap_err();
        assert!(format!("{err:#}").contains(".a.2.tmp"), "{err:#}");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        write_atomic(dir.path(), "state.json", b"old", Perms::Private).unwrap();
        let before = syncs();
        let to = write_atomic(dir.path(), "state.json", b"new", Perms::Private).unwrap();
        assert_eq!(fs::read(&to).unwrap(), b"new");
        assert_eq!(names_in(dir.path()), ["state.json"]);
        let cost = syncs() - before;
        assert_eq!(
            (cost.files, cost.folders),
            (1, 1),
            "file and folder fsynced"
        );
    }

    #[test]
    fn a_replacement_keeps_the_mode_of_the_file_it_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs::write(&path, b"a").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let old = fs::metadata(&path).unwrap();
        write_atomic(dir.path(), "config.toml", b"b", Perms::Like(&old)).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn a_failed_rename_removes_the_tmp() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("taken")).unwrap();
        fs::write(dir.path().join("taken/inside"), b"x").unwrap();
        // A folder that is not empty cannot be replaced by a file.
        let err = write_atomic(dir.path(), "taken", b"x", Perms::Private).unwrap_err();
        assert!(format!("{err:#}").contains("taken"), "{err:#}");
        assert_eq!(names_in(dir.path()), ["taken"]);
    }
}
