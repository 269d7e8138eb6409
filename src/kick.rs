//! Auto-drain: after emit has made its jobs durable, start one detached
//! `spec-notify drain --background` for the whole spool, unless a drain is
//! on duty (the spool's `.drain.alive`, see `crate::spool`): that drain
//! watches every SPEC folder (inotify) and serves every SPEC with due
//! work, so it will see the new jobs. Emit takes the duty lock itself and
//! hands the locked descriptor to the drain it starts: from that instant a
//! drain is on duty, so no other emit (of this batch or a concurrent one)
//! starts a second. A drain on duty that lets go looks once more, so
//! skipping the start never loses a wake-up (see the `drain` module doc).
//! With a relay configured it starts one background `relay` instead
//! (unless one runs): the fleet delivers.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::config::Config;
use crate::spool::Spool;

/// drain.log (what background drains say) rotates once past this size.
const MAX_LOG_BYTES: u64 = 1024 * 1024;
/// Where background drains write what needs attention, in the spool root
/// (a dot name: no SPEC folder can have it).
pub const DRAIN_LOG: &str = ".drain.log";
/// The descriptor the started drain finds its duty lock as.
const DUTY_FD: RawFd = 3;

/// Starts at most one background drain for the spool when `specs` (the
/// SPECs that got jobs) is not empty. Returns a warning if it could not
/// start; that never fails the caller (the jobs are already durable).
#[must_use]
pub fn start_drains(config: &Config, specs: &[&str], config_flag: Option<&Path>) -> Vec<String> {
    if specs.is_empty() {
        return Vec::new();
    }
    if config.relay.is_some() {
        // The fleet delivers: the jobs only have to leave this host.
        return match start_relay(config, config_flag) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!(
                "could not start a background relay: {e:#}; run `spec-notify relay` (jobs are safe in the spool)"
            )],
        };
    }
    match start_drain(config, config_flag) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!(
            "could not start a background drain: {e:#}; run `spec-notify drain` (jobs are safe in the spool)"
        )],
    }
}

fn start_drain(config: &Config, config_flag: Option<&Path>) -> anyhow::Result<()> {
    let spool = Spool::new(&config.spool_dir);
    let Some(duty) = spool.try_take_duty()? else {
        return Ok(()); // a drain on duty watches every SPEC and will see our jobs
    };
    let duty_flag = format!("--duty-fd={DUTY_FD}");
    spawn(
        &spool.root().join(DRAIN_LOG),
        &["drain", "--background", &duty_flag],
        config_flag,
        Some(duty.as_fd().as_raw_fd()),
    )
    // Our copy of the lock closes here; the drain's keeps it.
}

/// Starts a background `relay` unless one runs (relay.alive): a running
/// relay looks once more after it lets go, so skipping loses no job.
#[cfg(feature = "nats")]
fn start_relay(config: &Config, config_flag: Option<&Path>) -> anyhow::Result<()> {
    if crate::nats::relay::try_serve(config)?.is_none() {
        return Ok(());
    }
    spawn(
        &config.spool_dir.join("relay.log"),
        &["relay", "--background"],
        config_flag,
        None,
    )
}

/// A build without the `nats` feature cannot relay: the jobs wait in the
/// spool for a build that can.
#[cfg(not(feature = "nats"))]
fn start_relay(_config: &Config, _config_flag: Option<&Path>) -> anyhow::Result<()> {
    anyhow::bail!(crate::config::WITHOUT_NATS)
}

/// Starts `spec-notify ARGS` detached, its stderr appended to `log_path`;
/// `pass` (a held lock) is open in it as [`DUTY_FD`].
fn spawn(
    log_path: &Path,
    args: &[&str],
    config_flag: Option<&Path>,
    pass: Option<RawFd>,
) -> anyhow::Result<()> {
    if std::fs::metadata(log_path).is_ok_and(|m| m.len() > MAX_LOG_BYTES) {
        let _ = std::fs::rename(log_path, log_path.with_extension("log.1"));
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(log_path)
        .with_context(|| format!("failed to open `{}`", log_path.display()))?;
    let mut command = Command::new(std::env::current_exe()?);
    if let Some(path) = config_flag {
        command.arg("--config").arg(std::path::absolute(path)?);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: setsid, dup2, fcntl and close_range are async-signal-safe
    // system calls that touch no memory of the parent. Closing every
    // descriptor above the passed lock keeps the drain from holding the
    // caller's pipes open (a caller waiting for EOF would wait as long as
    // the drain lives).
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            let mut first_closed = 3;
            if let Some(fd) = pass {
                if fd == DUTY_FD {
                    // Already there: only clear close-on-exec.
                    libc::fcntl(fd, libc::F_SETFD, 0);
                } else if libc::dup2(fd, DUTY_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                first_closed = DUTY_FD as u32 + 1;
            }
            if libc::syscall(libc::SYS_close_range, first_closed, u32::MAX, 0u32) != 0 {
                for fd in first_closed as i32..1024 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    command.spawn()?;
    Ok(())
}
