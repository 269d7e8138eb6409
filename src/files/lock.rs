//! Advisory locks (`flock` through std's `File::try_lock`) on private lock
//! files, and the one retry loop with a bounded wait: no wait here is
//! unbounded, and a wait that runs out names the holder, whose pid the
//! lock file holds ([`note_holder`]).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::read::{open_regular, read_up_to};
use super::write::PRIVATE;

/// Opens (creating if missing) a private lock file, never through a
/// symlink, and only if it is this user's: another user's lock file could
/// be held by them for ever.
pub fn open_lock_file(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .with_context(|| format!("failed to open lock file `{}`", path.display()))?;
    super::owner::check_own_file(&file, path)?;
    Ok(file)
}

/// Locks an open file if nobody holds it; `path` names it in errors.
pub fn try_lock_file(file: &File, path: &Path) -> Result<bool> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("failed to lock `{}`", path.display()))
        }
    }
}

/// Takes the lock on `path` if nobody holds it.
pub fn try_lock(path: &Path) -> Result<Option<File>> {
    let file = open_lock_file(path)?;
    Ok(try_lock_file(&file, path)?.then_some(file))
}

/// Calls `attempt` until it yields something or `wait` has passed (then
/// `Ok(None)`), napping from 1 ms up to 50 ms in between.
pub fn retry_within<T>(
    wait: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let started = Instant::now();
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(got) = attempt()? {
            return Ok(Some(got));
        }
        if started.elapsed() >= wait {
            return Ok(None);
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(50));
    }
}

/// Waits up to `wait` for the lock on `path`, then fails naming the holder.
pub fn lock_within(path: &Path, wait: Duration) -> Result<File> {
    retry_within(wait, || try_lock(path))?.with_context(|| {
        format!(
            "`{}` has been held for over {} s by {}; if that process is stuck, stop it and try again",
            path.display(),
            wait.as_secs(),
            holder(path)
        )
    })
}

/// Records our pid in a lock file that holds nothing else.
pub fn note_holder(file: File) -> File {
    let pid = format!("{:<10}\n", std::process::id());
    let _ = file.write_all_at(pid.as_bytes(), 0);
    file
}

/// Who holds a lock, as far as its file says (a bounded read: a planted
/// FIFO or symlink cannot hang or mislead the caller).
pub fn holder(path: &Path) -> String {
    let pid = open_regular(path)
        .ok()
        .and_then(|file| read_up_to(file, 64, None).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.trim().parse::<u32>().ok());
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_for_a_held_lock_runs_out_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let _held = note_holder(try_lock(&path).unwrap().unwrap());
        assert!(try_lock(&path).unwrap().is_none(), "exclusive");
        let started = Instant::now();
        let err = lock_within(&path, Duration::from_millis(20)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5), "bounded");
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!(
                "held for over 0 s by process {}",
                std::process::id()
            )),
            "{text}"
        );
    }

    #[test]
    fn a_free_lock_is_taken_at_once_and_an_unnamed_holder_is_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.lock");
        let file = lock_within(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(holder(&path), "another process", "no pid written yet");
        drop(note_holder(file));
        assert_eq!(holder(&path), format!("process {}", std::process::id()));
        std::os::unix::fs::symlink(&path, dir.path().join("link.lock")).unwrap();
        assert!(
            try_lock(&dir.path().join("link.lock")).is_err(),
            "never through a symlink"
        );
        assert_eq!(holder(&dir.path().join("link.lock")), "another process");
    }

    #[test]
    fn retry_within_gives_up_after_its_wait() {
        let mut tries = 0;
        let got: Option<()> = retry_within(Duration::from_millis(10), || {
            tries += 1;
            Ok(None)
        })
        .unwrap();
        assert!(got.is_none());
        assert!(tries >= 2, "{tries}");
        let got = retry_within(Duration::ZERO, || Ok(Some(7))).unwrap();
        assert_eq!(got, Some(7));
    }
}
