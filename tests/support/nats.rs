//! A real `nats-server` with JetStream for the NATS tests: started on a free
//! 127.0.0.1 port with a temp store, stopped (or killed, or restarted on
//! the same port and store) by the test; or a 3-node JetStream cluster of
//! them ([`NatsCluster`]), routed to each other on free loopback ports.
//! The binary is the first `nats-server` on PATH (`tests/nats/install.sh`
//! puts 2.15 there), else Debian's; one older than 2.12 is refused. A
//! missing or old one fails the test, unless SPEC_NOTIFY_TEST_SKIP lists
//! `nats` ([`super::require`]).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use super::{Spawned, command, require, run_command, wait_until};

/// The oldest server the tests accept (said in [`find_binary`]'s message).
const OLDEST: (u32, u32) = (2, 12);

/// How long a server may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

pub struct NatsServer {
    pub port: u16,
    bin: PathBuf,
    store: TempDir,
    process: Option<Spawned>,
    /// More arguments (a cluster node's name and routes).
    extra: Vec<String>,
}

/// The binary, or why there is none fit for the tests; looked for once.
fn binary() -> Result<PathBuf, String> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND.get_or_init(find_binary).clone()
}

fn find_binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let bin = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
        .ok_or("nats-server is not installed (looked on PATH, in /usr/sbin and /usr/local/bin)")?;
    let mut cmd = command(&bin);
    cmd.arg("--version");
    let run = run_command(cmd, b"");
    let said = format!("{}{}", run.stdout, run.stderr);
    let version = parse_version(&said).ok_or_else(|| {
        format!(
            "`{} --version` printed no version (exit {}): {said}",
            bin.display(),
            run.code
        )
    })?;
    if version < OLDEST {
        return Err(format!(
            "{} is too old ({}); the tests need 2.12 or later",
            bin.display(),
            said.trim()
        ));
    }
    Ok(bin)
}

/// Major and minor from `nats-server: v2.15.1`.
fn parse_version(said: &str) -> Option<(u32, u32)> {
    let rest = said.trim().strip_prefix("nats-server: v")?;
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The nats-server binary, or `None` (skipped) when it is missing and
/// SPEC_NOTIFY_TEST_SKIP lists `nats`: for a test that starts servers of
/// its own making.
#[track_caller]
pub fn server_binary() -> Option<PathBuf> {
    require("nats", binary())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// A running server, or `None` (skipped) when nats-server is missing
    /// and SPEC_NOTIFY_TEST_SKIP lists `nats`.
    #[track_caller]
    pub fn start() -> Option<NatsServer> {
        let mut server = NatsServer::new(require("nats", binary())?, Vec::new());
        server.launch();
        Some(server)
    }

    fn new(bin: PathBuf, extra: Vec<String>) -> NatsServer {
        NatsServer {
            port: free_port(),
            bin,
            store: tempfile::tempdir().unwrap(),
            process: None,
            extra,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("server.log")
    }

    fn launch(&mut self) {
        self.spawn();
        self.wait_ready();
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.log_path());
        let child = command(&self.bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path().join("js"))
            .arg("-l")
            .arg(self.log_path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.process = Some(Spawned::new(child));
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn wait_ready(&self) {
        wait_until(READY, "nats-server to be ready", || {
            self.log().contains("Server is ready")
        });
    }

    /// Stops the server cleanly (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.signal("TERM");
            p.wait_output(READY, "nats-server to stop");
        }
    }

    /// Kills it (SIGKILL: no goodbye to its peers or clients) and reaps it.
    pub fn kill(&mut self) {
        if let Some(p) = self.process.take() {
            p.signal("KILL");
            p.wait_output(READY, "nats-server to die");
        }
    }

    /// Stops and starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.process.take(); // Spawned kills and reaps
    }
}

/// Three servers routed to each other on loopback, one JetStream cluster
/// (streams with `replicas = 3` live on all of them). Each node is stopped
/// when the cluster is dropped.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// A cluster with a JetStream metadata leader, or `None` (skipped) when
    /// nats-server is missing and SPEC_NOTIFY_TEST_SKIP lists `nats`.
    #[track_caller]
    pub fn start() -> Option<NatsCluster> {
        let bin = require("nats", binary())?;
        let routes: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes: Vec<NatsServer> = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let extra = [
                    "-n",
                    &format!("node{i}"),
                    "--cluster_name",
                    "specnotify",
                    "--cluster",
                    &format!("nats://127.0.0.1:{route}"),
                    "--routes",
                    &all,
                ];
                NatsServer::new(bin.clone(), extra.iter().map(|s| s.to_string()).collect())
            })
            .collect();
        for node in &mut nodes {
            node.spawn();
        }
        for node in &nodes {
            node.wait_ready();
        }
        let cluster = NatsCluster { nodes };
        wait_until(
            READY,
            "the cluster to elect a JetStream metadata leader",
            || {
                cluster
                    .nodes
                    .iter()
                    .any(|n| n.log().contains("metadata leader"))
            },
        );
        Some(cluster)
    }

    /// The node that leads `stream` (each node logs the leaderships it wins).
    pub fn stream_leader(&self, stream: &str) -> usize {
        let line = format!("new stream leader for '$G > {stream}'");
        let mut found = None;
        wait_until(READY, &format!("a leader for stream {stream}"), || {
            found = self.nodes.iter().position(|n| n.log().contains(&line));
            found.is_some()
        });
        found.unwrap()
    }

    /// Every node's URL, for `url = [...]`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(NatsServer::url).collect()
    }
}

#[test]
fn versions_are_read_from_what_nats_server_prints() {
    assert_eq!(parse_version("nats-server: v2.15.1\n"), Some((2, 15)));
    assert_eq!(parse_version("nats-server: v2.9.10"), Some((2, 9)));
    assert_eq!(parse_version("nats-server: v2.12.0-RC.1"), Some((2, 12)));
    assert_eq!(parse_version("pyenv: nats-server: command not found"), None);
    assert!(parse_version("nats-server: v2.9.10").unwrap() < OLDEST);
}
