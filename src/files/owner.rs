//! Whose files these are: a folder or lock file that already exists is
//! used only if the user running the command owns it, and a folder only if
//! it is a real folder (never a symbolic link) that no other user may write.
//! In a shared parent folder another local user could otherwise make it
//! first, then hold its locks or point its subfolders at their own. Every
//! refusal names the path, the owner found and the fix.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Mode bits that let other users write into a folder.
const OTHERS_WRITE: u32 = 0o022;

/// Checks the folder at `path` if it exists: `Ok(false)` when it does not,
/// `Ok(true)` when it is a folder of this user that nobody else may write,
/// else an error saying what is wrong and what to do.
pub fn check_own_dir(path: &Path) -> Result<bool> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(e).with_context(|| format!("failed to inspect `{}`", path.display()));
        }
    };
    if meta.file_type().is_symlink() {
        bail!(
            "`{}` is a symbolic link where spec-notify keeps a folder of its own; it is never followed (it could point at another user's folder): remove the link (`rm {}`) and run the command again",
            path.display(),
            path.display()
        );
    }
    if !meta.is_dir() {
        bail!(
            "`{}` is not a folder; spec-notify keeps a folder of its own there: move it aside and run the command again",
            path.display()
        );
    }
    check_owner(path, &meta)?;
    let mode = meta.mode() & 0o777;
    if mode & OTHERS_WRITE != 0 {
        bail!(
            "`{}` can be written by other users (mode {mode:o}), who could replace what it holds: run `chmod go-w {}`",
            path.display(),
            path.display()
        );
    }
    Ok(true)
}

/// Checks that an open file (a lock file) belongs to this user.
pub fn check_own_file(file: &File, path: &Path) -> Result<()> {
    let meta = file
        .metadata()
        .with_context(|| format!("failed to inspect `{}`", path.display()))?;
    check_owner(path, &meta)
}

/// `path` (whose metadata is `meta`) must belong to the user running this.
fn check_owner(path: &Path, meta: &Metadata) -> Result<()> {
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() == me {
        return Ok(());
    }
    let owner = user_name(meta.uid());
    bail!(
        "`{}` belongs to {owner}, not to {} who runs this command: another user made it, so it is not used (in a shared spool_dir they could hold its locks or redirect its folders); run spec-notify as {owner}, or, if that user has no business there, remove it (as root: `rm -r {}`) and run the command again",
        path.display(),
        user_name(me),
        path.display()
    )
}

/// `user NAME (uid N)`, or `uid N` for a uid with no name.
pub fn user_name(uid: u32) -> String {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0u8; 4096];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is to a live local of the size given; on
    // success `found` points at `pwd`, whose strings live in `buf`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || pwd.pw_name.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    format!("user `{}` (uid {uid})", name.to_string_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_folder_of_ours_passes_and_a_missing_one_is_said_so() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("own");
        assert!(!check_own_dir(&own).unwrap());
        fs::create_dir(&own).unwrap();
        fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(check_own_dir(&own).unwrap());
    }

    #[test]
    fn a_symlink_a_file_or_a_folder_others_may_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        fs::create_dir(&target).unwrap();
        let link = dir.path().join("pending");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = format!("{:#}", check_own_dir(&link).unwrap_err());
        assert!(
            err.contains("symbolic link") && err.contains("rm "),
            "{err}"
        );
        let file = dir.path().join("file");
        fs::write(&file, b"").unwrap();
        assert!(check_own_dir(&file).is_err());
        fs::set_permissions(&target, fs::Permissions::from_mode(0o777)).unwrap();
        let err = format!("{:#}", check_own_dir(&target).unwrap_err());
        assert!(err.contains("chmod go-w"), "{err}");
    }

    #[test]
    fn users_are_named_with_their_uid() {
        assert_eq!(user_name(0), "user `root` (uid 0)");
        assert_eq!(user_name(4_000_000_000), "uid 4000000000");
    }
}
