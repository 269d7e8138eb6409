//! Files written for other programs and people to read (the HTML report,
//! the metrics file for node_exporter): replaced atomically, so a reader
//! sees the old file or the new one and never a half-written one. The
//! temporary file is hidden, has a random name, is created with `O_EXCL`
//! and `O_NOFOLLOW` (a name a neighbour took or planted is skipped, never
//! opened) and does not end in the target's extension (node_exporter
//! reads only `*.prom`). Unlike spool files these are
//! readable by others (mode 0644 less the umask): node_exporter usually runs
//! as its own user. They hold no secrets: URLs are never written. A target
//! that is a device or a pipe (`--output /dev/stdout`, a FIFO) is written
//! into, never renamed over: a rename would put a regular file in place of
//! `/dev/null` for every process on the machine. A folder is refused.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::files::{Perms, write_atomic};

/// Writes `bytes` to `path` atomically: a hidden temporary file in the same
/// folder, fsync, rename over `path`, fsync of the folder (see
/// [`crate::files::write`]). The folder must exist. Returns the path written.
pub fn write(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("`{}` does not name a file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "cannot write `{}`: folder `{}` does not exist (create it first)",
            path.display(),
            dir.display()
        );
    }
    if let Ok(found) = std::fs::metadata(path) {
        let kind = found.file_type();
        if kind.is_dir() {
            anyhow::bail!(
                "cannot write `{}`: it is a folder; name a file in it",
                path.display()
            );
        }
        if kind.is_char_device() || kind.is_fifo() {
            return write_into(path, bytes);
        }
    }
    write_atomic(&dir, name, bytes, Perms::Readable)?;
    Ok(path.to_path_buf())
}

/// Writes into a device or a pipe as it is (no temporary, no rename).
fn write_into(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    use std::io::Write;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open `{}` to write", path.display()))?;
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    #[test]
    fn replaces_the_file_whole_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spec_notify.prom");
        write(&path, b"old 1\n").unwrap();
        write(&path, b"new 2\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new 2\n");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["spec_notify.prom"]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644 & !umask(), "node_exporter's user may read it");
    }

    /// The process umask, from /proc (reading it with umask(2) would change it).
    fn umask() -> u32 {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
        u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
    }

    #[test]
    fn a_device_or_a_pipe_is_written_into_never_renamed_over() {
        // A rename over a FIFO (or, as root, over /dev/null) would put a
        // regular file in its place.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.prom");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write(&fifo, b"metrics 1\n").unwrap();
        assert_eq!(reader.join().unwrap(), b"metrics 1\n");
        assert!(
            fs::metadata(&fifo).unwrap().file_type().is_fifo(),
            "still a FIFO"
        );
        write(Path::new("/dev/null"), b"metrics 1\n").unwrap();
        assert!(
            fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
        let err = write(dir.path(), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("it is a folder"), "{err:#}");
    }

    #[test]
    fn the_temporary_name_is_unpredictable_and_never_opened_if_taken() {
        // What the name once was (`.<name>.<pid>.tmp`, opened without
        // O_EXCL): a neighbour's symlink there would have been written through.
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep me").unwrap();
        let old_name = format!(".report.html.{}.tmp", std::process::id());
        std::os::unix::fs::symlink(&victim, dir.path().join(&old_name)).unwrap();
        let path = dir.path().join("report.html");
        write(&path, b"<html>").unwrap();
        write(&path, b"<html>2").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"<html>2");
        assert_eq!(fs::read(&victim).unwrap(), b"keep me", "never followed");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, [old_name.as_str(), "report.html", "victim"]);
        // O_EXCL and a random part: see crate::files::write's tests.
    }

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("nope/x.prom"), b"").unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
    }
}
