//! Test harness: a temp workspace with a config, the real binary, helpers to
//! read the spool, and event waits with a ceiling (tests wait for what they
//! expect, never for wall-clock time). Loopback receivers live in `receiver`.

#![allow(dead_code)]

pub mod blackhole;
pub mod chat;
pub mod nats;
pub mod receiver;
pub mod tools;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_spec-notify");

/// How long a test waits for an event before it calls the event lost. It
/// only exists to stop a hung test: on a healthy machine every wait ends in
/// milliseconds, and a busy 2-core machine must never reach it.
pub const CEILING: Duration = Duration::from_secs(60);

/// Polls `done` until it holds; panics naming `what` once `ceiling` passed.
#[track_caller]
pub fn wait_until(ceiling: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + ceiling;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "gave up after {ceiling:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A spawned process that is killed and reaped when dropped, so a failing
/// test leaves nothing running (a `drain --watch` would run forever).
pub struct Spawned(Option<Child>);

impl Spawned {
    pub fn new(child: Child) -> Spawned {
        Spawned(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.child().id()
    }

    pub fn child(&self) -> &Child {
        self.0.as_ref().expect("present until waited for")
    }

    pub fn child_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("present until waited for")
    }

    /// Sends a signal (`"TERM"`, `"KILL"`, …) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.id());
    }

    /// Waits for the process to exit and returns what it printed; kills it
    /// and panics naming `what` if it is still running after `ceiling`.
    #[track_caller]
    pub fn wait_output(mut self, ceiling: Duration, what: &str) -> Run {
        let child = self.0.take().expect("present until waited for");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(ceiling) {
            Ok(output) => output.unwrap().into(),
            Err(_) => {
                // Not reaped yet (the waiting thread still owns it), so the pid is ours.
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                panic!("gave up after {ceiling:?} waiting for {what} to exit");
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A child's stderr (or any stream) read line by line on a thread, so a test
/// can wait for the line that says the child reached some point.
pub struct Lines {
    incoming: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    pub fn new(stream: impl Read + Send + 'static) -> Lines {
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            incoming,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; panics with everything read so
    /// far if the stream ends or `ceiling` passes first.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, ceiling: Duration) {
        let deadline = Instant::now() + ceiling;
        loop {
            if self.seen.iter().any(|l| l.contains(needle)) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(e) => panic!(
                    "no line containing {needle:?} ({e}); got:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Every line, after the stream has ended (call once the child exited).
    pub fn all(mut self) -> String {
        self.seen.extend(self.incoming.iter());
        self.seen.join("\n")
    }
}

/// A temp workspace holding `config.toml`; spool and evidence live beside it.
pub struct Env {
    pub dir: TempDir,
    pub envs: Vec<(String, String)>,
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn expect(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// A table's rows with wrapped cells joined back: a line that starts
    /// with a space continues the row above it.
    pub fn rows(&self) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for line in self.stdout.lines() {
            match rows.last_mut() {
                Some(row) if line.starts_with(' ') => {
                    row.push(' ');
                    row.push_str(line.trim_start());
                }
                _ => rows.push(line.to_string()),
            }
        }
        rows
    }

    /// The delivery ids `emit` printed: the first word of each
    /// `<delivery-id> <subscription>` line.
    pub fn ids(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.split(' ').next().unwrap_or_default().to_string())
            .collect()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    pub fn new(config: &str) -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
            envs: Vec::new(),
        };
        env.write_config(config);
        env
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config_path(), config).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.toml")
    }

    /// Sets an environment variable for every later run.
    pub fn env(mut self, key: &str, value: &str) -> Env {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// The binary with `--config`, a clean environment and the workspace as cwd.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare(&[]);
        cmd.arg("--config").arg(self.config_path()).args(args);
        cmd
    }

    /// The binary without `--config` (it finds its config itself), with a
    /// clean environment plus [`Env::env`] settings and the workspace as cwd.
    pub fn bare(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).current_dir(self.path());
        cmd.env_remove("SPEC_NOTIFY_CONFIG")
            .env_remove("SPECKIT_WEBHOOKS_ENABLED")
            .env("NO_COLOR", "1");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, b"")
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        run_command(self.cmd(args), stdin)
    }

    pub fn spool_root(&self) -> PathBuf {
        self.path()
            .join("docs/SPEC-OPS-004-integrated-coder-hooks/evidence/webhooks")
    }

    pub fn evidence(&self, spec: &str) -> PathBuf {
        self.path()
            .join("docs/SPEC-OPS-004-integrated-coder-hooks/evidence/commands")
            .join(spec)
            .join("webhooks")
    }

    /// Job files of a SPEC in one state folder (`pending`, `dead`, …), sorted.
    pub fn job_files(&self, spec: &str, state: &str) -> Vec<PathBuf> {
        let dir = self.spool_root().join(spec).join(state);
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "job"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort();
        files
    }

    /// Parsed jobs of a SPEC in one state: (metadata, envelope).
    pub fn jobs(&self, spec: &str, state: &str) -> Vec<(Value, Value)> {
        self.job_files(spec, state)
            .iter()
            .map(|p| parse_job(p))
            .collect()
    }

    /// Every file under the workspace, for "nothing changed" checks.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        walk(self.path(), &mut out);
        out.sort();
        out
    }
}

/// Runs a prepared command with `stdin`, capturing its output.
pub fn run_command(mut cmd: Command, stdin: &[u8]) -> Run {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap().into()
}

/// Parses a job file: line 1 metadata, line 2 the envelope.
#[track_caller]
pub fn parse_job(path: &Path) -> (Value, Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let (meta, body) = text
        .split_once('\n')
        .unwrap_or_else(|| panic!("{} has no metadata line", path.display()));
    (
        serde_json::from_str(meta).unwrap(),
        serde_json::from_str(body).unwrap(),
    )
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in rd {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, out);
        } else if path.file_name().is_some_and(|n| n != "config.toml") {
            // A lock file holds only the pid of its last holder: not state.
            let is_lock = path
                .file_name()
                .is_some_and(|n| n == "drain.lock" || n == "drain.alive");
            let bytes = match is_lock {
                true => Vec::new(),
                false => std::fs::read(&path).unwrap_or_default(),
            };
            out.push((path, bytes));
        }
    }
}

/// Emits one `spec-auto.stage.completed` event (Plan, success) for `spec`.
pub fn emit_plan(env: &Env, spec: &str) -> Run {
    env.run(&emit_plan_args(spec))
}

/// The arguments of [`emit_plan`], to add flags to.
pub fn emit_plan_args(spec: &str) -> Vec<&str> {
    vec![
        "emit",
        "--spec",
        spec,
        "--event",
        "spec-auto.stage.completed",
        "--stage",
        "Plan",
        "--status",
        "success",
    ]
}

/// A config with webhooks on, auto-drain off, and the given subscriptions.
pub fn config_with(subscriptions: &str) -> String {
    format!("[spec_ops.webhooks]\nenabled = true\nauto_drain = false\n\n{subscriptions}")
}

/// One subscription table.
pub fn subscription(id: &str, url: &str, extra: &str) -> String {
    format!(
        "[[spec_ops.webhooks.subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\nsecret_env = \"SECRET_{}\"\n{extra}\n",
        id.to_uppercase().replace('-', "_")
    )
}
