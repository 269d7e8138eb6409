//! A real `nats-server` with JetStream for the NATS tests: started on a free
//! 127.0.0.1 port with a temp store, stopped (or killed, or restarted on
//! the same port and store) by the test. Without the binary the tests are
//! skipped with a note, except under `CI=true`, where they fail: CI installs
//! it (tests/nats/install.sh).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::{Spawned, wait_until};

/// How long a server may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

pub struct NatsServer {
    pub port: u16,
    bin: PathBuf,
    store: TempDir,
    process: Option<Spawned>,
}

fn find_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl NatsServer {
    /// A running server, or `None` (skip) when nats-server is not installed
    /// outside CI.
    pub fn start() -> Option<NatsServer> {
        let Some(bin) = find_binary() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "nats-server is not installed: run `bash tests/nats/install.sh` (CI must run these tests)"
            );
            eprintln!("note: nats-server is not installed; skipping (bash tests/nats/install.sh)");
            return None;
        };
        let mut server = NatsServer {
            port: free_port(),
            bin,
            store: tempfile::tempdir().unwrap(),
            process: None,
        };
        server.launch();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn log_path(&self) -> PathBuf {
        self.store.path().join("server.log")
    }

    fn launch(&mut self) {
        let _ = std::fs::remove_file(self.log_path());
        let child = Command::new(&self.bin)
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.process = Some(Spawned::new(child));
        let log = self.log_path();
        wait_until(READY, "nats-server to be ready", || {
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("Server is ready"))
        });
    }

    /// Stops the server cleanly (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(p) = self.process.take() {
            p.signal("TERM");
            p.wait_output(READY, "nats-server to stop");
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
