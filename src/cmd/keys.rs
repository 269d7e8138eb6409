//! `spec-notify keys`: Standard Webhooks ed25519 key pairs for `v1a`
//! signatures. `generate` makes a pair from the OS random source and prints
//! it; the secret key (`whsk_…`) goes to stdout, or with `--output` into a
//! new file created 0600 (never over an existing one), and nowhere else.
//! `public` derives the public key (`whpk_…`) of a secret key held in an
//! environment variable, to hand to receivers again.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cli::{KeysAction, KeysArgs, KeysGenerateArgs, KeysPublicArgs};
use crate::config::secret_from_env;
use crate::exit::{ExitCode, user_error};
use crate::files::{Perms, TmpFile, fsync_dir};
use crate::output;
use crate::sign::SigningKey;

pub fn run(args: &KeysArgs) -> Result<ExitCode> {
    match &args.action {
        KeysAction::Generate(args) => generate(args),
        KeysAction::Public(args) => public(args),
    }
}

fn generate(args: &KeysGenerateArgs) -> Result<ExitCode> {
    let key = SigningKey::generate().map_err(anyhow::Error::msg)?;
    let public = key.public_key().text();
    if let Some(path) = &args.output {
        write_new(path, format!("{}\n", key.secret_text()).as_bytes())?;
        if args.json {
            output::print_json(&json!({"secret_key_file": path, "public_key": public}))?;
        } else {
            println!("{public}");
        }
        output::note(format_args!(
            "wrote the secret key to `{}` (mode 0600): export it where the drain runs, e.g. `export SPECKIT_WEBHOOK_SIGNING_KEY=\"$(cat {})\"`, and name that variable in `signing_key_env`; give receivers the public key above",
            path.display(),
            shell_word(path)
        ));
        return Ok(ExitCode::Success);
    }
    if args.json {
        output::print_json(&json!({"secret_key": key.secret_text(), "public_key": public}))?;
    } else {
        let mut out = std::io::stdout().lock();
        writeln!(out, "secret key: {}", key.secret_text())?;
        writeln!(out, "public key: {public}")?;
        out.flush()?;
    }
    output::note(
        "export the secret key where the drain runs (e.g. SPECKIT_WEBHOOK_SIGNING_KEY) and name that variable in `signing_key_env`; never commit it. Receivers get the public key only",
    );
    Ok(ExitCode::Success)
}

fn public(args: &KeysPublicArgs) -> Result<ExitCode> {
    let var = &args.key_env;
    let value = secret_from_env(var).ok_or_else(|| {
        user_error(format!(
            "environment variable {var} (--key-env) is unset or empty: export the whsk_… secret key in it"
        ))
    })?;
    let key = SigningKey::parse(value.as_str())
        .map_err(|e| user_error(format!("the value of {var} is not a signing key: {e}")))?;
    println!("{}", key.public_key().text());
    Ok(ExitCode::Success)
}

/// Writes `bytes` as a new file at `path`, private to this user: a temp
/// file beside it (`O_EXCL`, 0600), fsynced, then hard-linked into place,
/// which fails rather than replace an existing file, so the name holds the
/// whole key or nothing.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let refuse = || {
        user_error(format!(
            "`{}` already exists: keys generate never replaces a file (it may hold a key still in use); pick a new name or remove it first",
            path.display()
        ))
    };
    if path.symlink_metadata().is_ok() {
        return Err(refuse());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| user_error(format!("--output `{}` names no file", path.display())))?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp =
        TmpFile::create(dir, name, Perms::Private).map_err(|e| user_error(format!("{e:#}")))?;
    tmp.write_all(bytes)?;
    tmp.sync()?;
    match std::fs::hard_link(tmp.path(), path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(refuse()),
        other => other.with_context(|| format!("failed to create `{}`", path.display()))?,
    }
    drop(tmp);
    fsync_dir(dir)
}

/// A path as one shell word, for the note's example command.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    shlex::try_quote(&text).map_or(text.clone(), |q| q.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_file_is_private_and_an_existing_one_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        write_new(&path, b"whsk_first\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_new(&path, b"whsk_second\n").unwrap_err();
        assert_eq!(crate::exit::code_for(&err), ExitCode::Usage);
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"whsk_first\n");
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file is left behind");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("link")).unwrap();
        assert!(
            write_new(&dir.path().join("link"), b"x").is_err(),
            "a dangling symlink is a file"
        );
        assert!(!dir.path().join("nowhere").exists());
    }
}
