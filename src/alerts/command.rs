//! Running a rule's `command`: the program with its arguments (no shell),
//! the alert envelope on stdin, the alert's id and status in the
//! environment (`SPEC_NOTIFY_ALERT_ID`, `SPEC_NOTIFY_ALERT_STATUS`), in a
//! process group of its own that is killed (SIGKILL) when it outlives its
//! timeout. What it printed is kept (2 KiB, credentials a receiver could
//! echo hidden) for the outcome.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How much of what the command printed is kept.
const OUTPUT_MAX: usize = 2048;

/// What a run came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit code, when it exited.
    pub code: Option<i32>,
    pub timed_out: bool,
    pub took_ms: u64,
    /// Why it did not start, or how it ended when not by an exit code.
    pub error: Option<String>,
    /// The start of what it printed (stderr, then stdout).
    pub output: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// `exit 0`, `exit 3`, `timed out after 30s (killed)`, `cannot start …`.
    pub fn describe(&self) -> String {
        match (&self.error, self.code) {
            (Some(e), _) => e.clone(),
            (None, Some(code)) => format!("exit {code}"),
            (None, None) => "ended without an exit code".into(),
        }
    }
}

/// Runs `argv` with `stdin`, waiting at most `timeout`.
pub fn run(argv: &[String], stdin: &[u8], env: &[(&str, &str)], timeout: Duration) -> Ran {
    let started = Instant::now();
    let took = || started.elapsed().as_millis() as u64;
    let failed = |error: String| Ran {
        code: None,
        timed_out: false,
        took_ms: took(),
        error: Some(error),
        output: String::new(),
    };
    let Some((program, args)) = argv.split_first() else {
        return failed("no program to run".into());
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start `{program}`: {e}")),
    };
    // From threads: a command that reads nothing, or prints a lot, must
    // not block us (or itself).
    if let Some(mut input) = child.stdin.take() {
        let bytes = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
    }
    let read = |stream: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(mut stream) = stream {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if kept.len() < OUTPUT_MAX {
                        kept.extend_from_slice(&buf[..n.min(OUTPUT_MAX - kept.len())]);
                    }
                }
                let _ = tx.send(kept);
            });
        }
        rx
    };
    let stderr = read(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stdout = read(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let pid = rustix::process::Pid::from_child(&child);
    let deadline = started + timeout;
    let (status, timed_out) = loop {
        match child.try_wait() {
            Ok(Some(status)) => break (Some(status), false),
            Ok(None) if Instant::now() >= deadline => {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                break (child.wait().ok(), true);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return failed(format!("cannot wait for `{program}`: {e}")),
        }
    };
    // Whatever it started and left behind holds the pipes open: it goes too.
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    let wait = Duration::from_secs(1);
    let mut output = stderr.recv_timeout(wait).unwrap_or_default();
    output.extend(stdout.recv_timeout(wait).unwrap_or_default());
    output.truncate(OUTPUT_MAX);
    let output = crate::redact::hide_str(&String::from_utf8_lossy(&output)).into_owned();
    let error = match (timed_out, status.and_then(|s| s.code())) {
        (true, _) => Some(format!(
            "timed out after {} (killed)",
            humantime::format_duration(timeout)
        )),
        (false, Some(_)) => None,
        (false, None) => Some("killed by a signal".into()),
    };
    Ran {
        code: status.and_then(|s| s.code()).filter(|_| !timed_out),
        timed_out,
        took_ms: took(),
        error,
        output: output.trim().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn the_command_reads_stdin_and_its_exit_code_is_kept() {
        let ran = run(
            &sh("cat; echo \" $SPEC_NOTIFY_ALERT_STATUS\" >&2; exit 3"),
            b"{\"alert\":1}",
            &[("SPEC_NOTIFY_ALERT_STATUS", "firing")],
            Duration::from_secs(30),
        );
        assert_eq!(ran.code, Some(3));
        assert!(!ran.ok());
        assert_eq!(ran.describe(), "exit 3");
        assert!(ran.output.contains("firing"), "{ran:?}");
        assert!(ran.output.contains("{\"alert\":1}"), "{ran:?}");
    }

    #[test]
    fn a_command_past_its_timeout_is_killed_with_its_children() {
        let started = Instant::now();
        let ran = run(
            &sh("sleep 60 & sleep 60"),
            b"",
            &[],
            Duration::from_millis(200),
        );
        assert!(ran.timed_out, "{ran:?}");
        assert!(
            ran.describe().starts_with("timed out after 200ms"),
            "{ran:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not wait for the children"
        );
    }

    #[test]
    fn a_missing_program_is_an_outcome_not_a_panic() {
        let ran = run(&["/no/such/pager".into()], b"", &[], Duration::from_secs(1));
        assert!(
            ran.describe().starts_with("cannot start `/no/such/pager`"),
            "{ran:?}"
        );
        assert!(!ran.ok());
    }
}
