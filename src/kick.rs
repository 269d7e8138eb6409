//! Auto-drain: after emit has made its jobs durable, start a detached
//! `spec-notify drain --spec SPEC` unless a drain already serves that SPEC
//! (drain.alive). A serving drain looks at pending/ every few milliseconds
//! and once more after it stops serving, so skipping the start never loses a
//! wake-up (see the `drain` module doc). With a relay configured it starts
//! one background `relay` instead (unless one runs): the fleet delivers.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::Context;

use crate::config::Config;

/// drain.log (what background drains say) rotates once past this size.
const MAX_LOG_BYTES: u64 = 1024 * 1024;
use crate::spool::Spool;

/// Starts at most one background drain per SPEC. Returns a warning per
/// SPEC whose drain could not start; that never fails the caller (the jobs
/// are already durable).
#[must_use]
pub fn start_drains(config: &Config, specs: &[&str], config_flag: Option<&Path>) -> Vec<String> {
    if config.relay.is_some() {
        // The fleet delivers: the jobs only have to leave this host.
        return match start_relay(config, config_flag) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!(
                "could not start a background relay: {e:#}; run `spec-notify relay` (jobs are safe in the spool)"
            )],
        };
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for spec in specs.iter().filter(|s| seen.insert(**s)) {
        if let Err(e) = start_drain(config, spec, config_flag) {
            warnings.push(format!(
                "could not start a background drain for {spec}: {e:#}; run `spec-notify drain` (jobs are safe in the spool)"
            ));
        }
    }
    warnings
}

fn start_drain(config: &Config, spec: &str, config_flag: Option<&Path>) -> anyhow::Result<()> {
    let spool = Spool::new(&config.spool_dir).spec(spec);
    if spool.is_served()? {
        return Ok(()); // a live drain serves this SPEC and will see our jobs
    }
    let evidence = config.evidence_for(spec);
    crate::spool::files::create_private_dir(&evidence)?;
    // `--spec=ID`: an id that starts with `-` is not taken for a flag.
    let spec_flag = format!("--spec={spec}");
    spawn(
        &evidence.join("drain.log"),
        &["drain", "--background", &spec_flag],
        config_flag,
    )
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
    )
}

/// A build without the `nats` feature cannot relay: the jobs wait in the
/// spool for a build that can.
#[cfg(not(feature = "nats"))]
fn start_relay(_config: &Config, _config_flag: Option<&Path>) -> anyhow::Result<()> {
    anyhow::bail!(crate::config::WITHOUT_NATS)
}

/// Starts `spec-notify ARGS` detached, its stderr appended to `log_path`.
fn spawn(log_path: &Path, args: &[&str], config_flag: Option<&Path>) -> anyhow::Result<()> {
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
    // SAFETY: setsid and close_range are async-signal-safe system calls
    // that touch no memory of the parent. Closing every descriptor above
    // stderr keeps the drain from holding the caller's pipes open (a caller
    // waiting for EOF would wait as long as the drain lives).
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
                for fd in 3..1024 {
                    libc::close(fd);
                }
            }
            Ok(())
        });
    }
    command.spawn()?;
    Ok(())
}
