//! Test harness: a temp workspace with a config, the real binary, and helpers
//! to read the spool. Loopback receivers live in `receiver`.

#![allow(dead_code)]

pub mod blackhole;
pub mod receiver;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_spec-notify");

/// A temp workspace holding `config.toml`; spool and evidence live beside it.
pub struct Env {
    pub dir: TempDir,
    pub envs: Vec<(String, String)>,
}

/// What a run of the binary produced.
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
