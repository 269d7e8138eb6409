//! Quarantine: files in a spool folder that are not jobs are moved aside
//! (never deleted, never overwritten) with a `.reason` file beside each, so
//! that one bad file never stops a drain and an operator can look at it.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::files::FILE_MODE;
use super::{SpecSpool, State, Unreadable};
use crate::files::owner::check_own_dir;
use crate::files::{create_private_dir, fsync_dir, open_regular, read_up_to};

/// A file moved to quarantine: where from, where to, why.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub from: PathBuf,
    pub to: PathBuf,
    pub reason: String,
}

impl SpecSpool {
    /// Quarantines an unreadable file, writing the reason beside it.
    pub fn quarantine(&self, bad: &Unreadable) -> Result<Quarantined> {
        let name = bad
            .path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("unnamed");
        let dir = self.state_dir(State::Quarantine);
        // Never into a symlink or another user's folder.
        if !check_own_dir(&dir)? {
            create_private_dir(&dir)?;
        }
        let taken = |candidate: &str| {
            fs::symlink_metadata(dir.join(candidate)).is_ok()
                || fs::symlink_metadata(dir.join(format!("{candidate}.reason"))).is_ok()
        };
        let mut chosen = name.to_string();
        let mut n = 0;
        while taken(&chosen) {
            n += 1;
            chosen = format!("{name}.{n}");
        }
        let to = dir.join(&chosen);
        fs::rename(&bad.path, &to).with_context(|| {
            format!(
                "`{}` is not a job ({}) and could not be quarantined to `{}`; it stays where it is and is never sent: make `{}` writable by its owner, or move the file away yourself",
                bad.path.display(),
                bad.reason,
                to.display(),
                dir.display()
            )
        })?;
        // create_new: a planted `.reason` symlink is never followed.
        let reason_path = dir.join(format!("{chosen}.reason"));
        let reason = format!("{}\nfrom {}\n", bad.reason, bad.path.display());
        let _ = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&reason_path)
            .and_then(|mut f| f.write_all(reason.as_bytes()));
        fsync_dir(&dir)?;
        Ok(Quarantined {
            from: bad.path.clone(),
            to,
            reason: bad.reason.clone(),
        })
    }

    /// Quarantined files, by name, with the first line of the `.reason` beside each.
    pub fn quarantined(&self) -> Result<Vec<(String, String)>> {
        let dir = self.state_dir(State::Quarantine);
        if !check_own_dir(&dir)? {
            return Ok(Vec::new());
        }
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read `{}`", dir.display()));
            }
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".reason") && !name.starts_with('.') {
                files.push(name);
            }
        }
        files.sort();
        Ok(files
            .into_iter()
            .map(|file| {
                let reason = open_regular(&dir.join(format!("{file}.reason")))
                    .ok()
                    .and_then(|f| String::from_utf8(read_up_to(f, 4096, None).ok()?).ok())
                    .map(|text| text.lines().next().unwrap_or("").trim().to_string())
                    .unwrap_or_else(|| "(no .reason file beside it)".to_string());
                (file, reason)
            })
            .collect())
    }
}
