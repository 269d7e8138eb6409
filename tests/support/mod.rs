//! Test harness: a temp workspace with a config, the real binary, helpers to
//! read the spool, and event waits with a ceiling (tests wait for what they
//! expect, never for wall-clock time). Loopback receivers live in `receiver`.
//!
//! Every process a test starts leads a process group of its own
//! ([`command`]); a run has a ceiling ([`run_command`], [`Env::run`]) and a
//! [`Spawned`] kills its whole group when dropped, so neither a hang nor a
//! failing test leaves anything running.
//!
//! Real dependencies: a test that needs one that is missing fails, naming
//! the command that provides it ([`require`]). A developer who accepts
//! leaving such tests out lists them, comma-separated, in
//! `SPEC_NOTIFY_TEST_SKIP` (`all` for every one): those tests then return
//! early and say so on stderr. The names: `nats` (nats-server 2.12+),
//! `chromium`, `promtool`, `node_exporter`, `python-verifiers`,
//! `node-verifiers` (`tests/verifiers/install.sh`), `tmux`
//! (`tests/tui/install.sh`), `tmpfs` (mounting one)
//! and `root` (creating local users). `bash tests/install.sh` installs
//! every program; `tmpfs` and `root` need the tests to run as root.

#![allow(dead_code)]

pub mod blackhole;
pub mod chat;
pub mod deps;
pub mod nats;
pub mod receiver;
pub mod system;
pub mod tools;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde_json::Value;
use tempfile::TempDir;

pub use deps::require;

pub const BIN: &str = env!("CARGO_BIN_EXE_spec-notify");

/// How long a test waits for an event before it calls the event lost. It
/// only exists to stop a hung test: on a healthy machine every wait ends in
/// milliseconds, and a busy 2-core machine must never reach it.
pub const CEILING: Duration = Duration::from_secs(60);

/// How long one run of a command may take before the harness kills it:
/// longer than any `--max-time` a test passes (60 s), so that a command's
/// own limit always speaks first.
pub const RUN_CEILING: Duration = Duration::from_secs(120);

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

/// `program` as a command that leads a process group of its own (so that
/// [`Spawned`] and [`run_command`] can kill it with everything it started),
/// dies with the thread that starts it, and has stdin closed unless the
/// test pipes it. Tests start every process from here.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.process_group(0).stdin(Stdio::null());
    die_with_the_test(&mut cmd);
    cmd
}

/// Has the kernel kill (SIGKILL) the child when the thread that started it
/// ends: its test, or the whole test binary when no `Drop` runs (Ctrl-C, a
/// CI timeout). In a group of its own, a child no longer gets the
/// terminal's Ctrl-C. So a test never starts a process on a thread that
/// ends before the process should.
fn die_with_the_test(cmd: &mut Command) {
    use rustix::process::{getpid, getppid, set_parent_process_death_signal};
    let test = getpid();
    // SAFETY: the closure runs in the child between fork and exec; it only
    // makes system calls (prctl, getppid) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            // The test may have ended before the prctl: nobody would kill us.
            match getppid() == Some(test) {
                true => Ok(()),
                false => Err(rustix::io::Errno::SRCH.into()),
            }
        });
    }
}

/// Where `program` is on PATH, if it is.
pub fn on_path(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(program.as_ref()))
        .find(|p| p.is_file())
}

/// The program and its arguments, for messages.
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            let plain = !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            match plain {
                true => word.into_owned(),
                false => format!("{word:?}"),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends `signal` to every process in the group `leader` leads.
fn kill_group(leader: Pid, signal: Signal) {
    let _ = rustix::process::kill_process_group(leader, signal);
}

/// A spawned process, leader of its own process group (see [`command`]):
/// the group is killed (SIGKILL) and the process reaped when dropped, so a
/// failing test leaves nothing running (a `drain --watch` would run
/// forever, and so would whatever a shell started).
pub struct Spawned(Option<Child>);

impl Spawned {
    /// Takes charge of `child`, which must lead its own process group.
    #[track_caller]
    pub fn new(mut child: Child) -> Spawned {
        let pid = Pid::from_child(&child);
        if rustix::process::getpgid(Some(pid)) != Ok(pid) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "a spawned process must lead its own process group: start it with support::command"
            );
        }
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

    /// Sends a signal (`"TERM"`, `"KILL"`, …) to the process alone.
    #[track_caller]
    pub fn signal(&self, name: &str) {
        let signal = match name {
            "TERM" => Signal::TERM,
            "KILL" => Signal::KILL,
            "INT" => Signal::INT,
            "HUP" => Signal::HUP,
            _ => panic!("no signal {name} in Spawned::signal"),
        };
        let pid = Pid::from_child(self.child());
        rustix::process::kill_process(pid, signal)
            .unwrap_or_else(|e| panic!("kill -{name} {}: {e}", pid.as_raw_nonzero()));
    }

    /// Waits for the process to exit and returns what it printed; kills
    /// its group and panics naming `what` if it is still running after
    /// `ceiling`. Whatever it left behind in its group is killed too.
    #[track_caller]
    pub fn wait_output(mut self, ceiling: Duration, what: &str) -> Run {
        let mut child = self.0.take().expect("present until waited for");
        let pid = Pid::from_child(&child);
        drop(child.stdin.take());
        let stdout = child.stdout.take().map(read_to_end);
        let stderr = child.stderr.take().map(read_to_end);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            exited(pid);
            kill_group(pid, Signal::KILL); // what it left behind
            let status = child.wait();
            let _ = tx.send(status);
        });
        let run = |status: std::process::ExitStatus| {
            let text = |read: Option<mpsc::Receiver<Vec<u8>>>| {
                let bytes = read.map_or(Ok(Vec::new()), |r| r.recv_timeout(CEILING));
                let bytes = bytes.unwrap_or_else(|_| {
                    panic!("{what} exited, but something it started keeps its output open")
                });
                String::from_utf8_lossy(&bytes).into_owned()
            };
            Run {
                code: status.code().unwrap_or(-1),
                stdout: text(stdout),
                stderr: text(stderr),
            }
        };
        match rx.recv_timeout(ceiling) {
            Ok(status) => run(status.unwrap()),
            Err(_) => {
                // Running, so not reaped: the group is still ours.
                kill_group(pid, Signal::KILL);
                let printed = match rx.recv_timeout(CEILING) {
                    Ok(Ok(status)) => {
                        let run = run(status);
                        format!("\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr)
                    }
                    _ => String::new(),
                };
                panic!("gave up after {ceiling:?} waiting for {what} to exit; killed it{printed}");
            }
        }
    }
}

/// Reads `stream` to its end on a thread; the bytes come on the channel.
fn read_to_end(mut stream: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        let _ = tx.send(bytes);
    });
    rx
}

/// Waits until the child `pid` has exited, without reaping it: until it is
/// reaped, its pid (and so its process group id) cannot be anybody else's.
fn exited(pid: Pid) {
    use rustix::process::{WaitId, WaitIdOptions, waitid};
    let options = WaitIdOptions::EXITED | WaitIdOptions::NOWAIT;
    while matches!(
        waitid(WaitId::Pid(pid), options),
        Err(rustix::io::Errno::INTR)
    ) {}
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        use rustix::process::{WaitId, WaitIdOptions, waitid};
        let pid = Pid::from_child(&child);
        // Only while it is not reaped (a `try_wait` may have) is the group
        // id surely still ours.
        let options = WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT;
        if waitid(WaitId::Pid(pid), options).is_ok() {
            kill_group(pid, Signal::KILL);
        }
        let _ = child.wait();
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
            // Read to the end even once nobody listens, so that the child
            // never blocks on (or dies of) a pipe nobody reads.
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        Lines {
            incoming,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle` and returns it; panics with
    /// everything read so far if the stream ends or `ceiling` passes first.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, ceiling: Duration) -> String {
        let deadline = Instant::now() + ceiling;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
                return line.clone();
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
        let mut cmd = command(BIN);
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

/// Runs a prepared command with `stdin` in a process group of its own,
/// capturing its output; kills the group and panics naming the command
/// line if it runs longer than [`RUN_CEILING`].
#[track_caller]
pub fn run_command(mut cmd: Command, stdin: &[u8]) -> Run {
    let what = command_line(&cmd);
    cmd.process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let mut child = Spawned::new(child);
    let mut input = child.child_mut().stdin.take().unwrap();
    let stdin = stdin.to_vec();
    // From a thread: a child that reads none of it must not block the test.
    std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    child.wait_output(RUN_CEILING, &format!("`{what}`"))
}

/// Makes a FIFO at `path`.
#[track_caller]
pub fn mkfifo(path: &Path) {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0)
        .unwrap_or_else(|e| panic!("cannot make a FIFO at {}: {e}", path.display()));
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

/// Starts `bash -c SCRIPT` with a background `sleep` (its pid in a file)
/// and waits until the pid is written; the child and that pid.
fn shell_with_a_background_sleep(script: &str) -> (Spawned, u32) {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut cmd = command("bash");
    cmd.arg("-c")
        .arg(format!(
            "sleep 600 & echo $! > \"$0.tmp\"; mv \"$0.tmp\" \"$0\"; {script}"
        ))
        .arg(&pid_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = Spawned::new(cmd.spawn().unwrap());
    wait_until(CEILING, "the shell to start its sleep", || {
        pid_file.exists()
    });
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    (child, pid.trim().parse().unwrap())
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn a_command_past_its_ceiling_is_killed_with_what_it_started() {
    let (child, sleep) = shell_with_a_background_sleep("exec sleep 600");
    let ceiling = Duration::from_millis(200);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child.wait_output(ceiling, "the shell")
    }));
    let message = *outcome.unwrap_err().downcast::<String>().unwrap();
    assert!(
        message.starts_with("gave up after 200ms waiting for the shell to exit; killed it"),
        "{message}"
    );
    wait_until(CEILING, "the background sleep to die", || is_dead(sleep));
}

#[test]
fn a_dropped_process_takes_its_group_along() {
    let (child, sleep) = shell_with_a_background_sleep("exec sleep 600");
    let shell = child.id();
    drop(child);
    assert!(is_dead(shell), "reaped on drop");
    wait_until(CEILING, "the background sleep to die", || is_dead(sleep));
}

#[test]
fn command_lines_in_messages_quote_what_needs_it() {
    let mut cmd = command("spec-notify");
    cmd.args(["emit", "--spec", "SPEC-1", "a b", ""]);
    assert_eq!(
        command_line(&cmd),
        r#"spec-notify emit --spec SPEC-1 "a b" """#
    );
}
