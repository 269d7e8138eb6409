//! Third-party programs the report and metrics tests drive for real
//! (Debian's chromium, promtool, prometheus-node-exporter; installed by
//! `tests/report/install.sh`). A missing one fails the test, unless
//! SPEC_NOTIFY_TEST_SKIP lists it ([`super::require`]).

use std::path::{Path, PathBuf};

use super::{CEILING, Run, Spawned, command, on_path, require};

/// The program's path; or, when it is not on PATH, a panic naming the
/// install command, or `None` (the test returns, skipped) when
/// SPEC_NOTIFY_TEST_SKIP lists it.
#[track_caller]
pub fn tool(program: &str) -> Option<PathBuf> {
    let name = match program {
        "chromium" => "chromium",
        "promtool" => "promtool",
        "prometheus-node-exporter" => "node_exporter",
        _ => panic!("tool: {program} is not a dependency support::deps knows"),
    };
    let found = on_path(program);
    require(
        name,
        found.ok_or(format!("{program} is not installed (not on PATH)")),
    )
}

/// Headless Chromium as root on a machine without network: no sandbox, no
/// GPU, no background connections, a fresh profile per run.
pub struct Chromium {
    bin: PathBuf,
    profile: tempfile::TempDir,
}

impl Chromium {
    #[track_caller]
    pub fn find() -> Option<Chromium> {
        Some(Chromium {
            bin: tool("chromium")?,
            profile: tempfile::tempdir().unwrap(),
        })
    }

    /// Runs chromium on `page` with `args` after the standard flags; its
    /// console messages go to stderr (`--enable-logging=stderr`).
    #[track_caller]
    pub fn run(&self, page: &Path, args: &[&str]) -> Run {
        let mut cmd = command(&self.bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        Spawned::new(cmd.spawn().unwrap()).wait_output(CEILING, "chromium")
    }

    /// The DOM after the page loaded, and chromium's log.
    #[track_caller]
    pub fn dump_dom(&self, page: &Path) -> Run {
        self.run(page, &["--dump-dom"]).expect(0)
    }

    /// A PNG of the page at this window size; returns chromium's log.
    #[track_caller]
    pub fn screenshot(&self, page: &Path, png: &Path, width: u32, height: u32) -> Run {
        let run = self
            .run(
                page,
                &[
                    &format!("--screenshot={}", png.display()),
                    &format!("--window-size={width},{height}"),
                    "--hide-scrollbars",
                ],
            )
            .expect(0);
        let bytes = std::fs::read(png).unwrap_or_default();
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "no screenshot at {} ({} bytes); chromium said:\n{}",
            png.display(),
            bytes.len(),
            run.stderr
        );
        run
    }
}

/// Console messages and uncaught errors chromium logged for a page.
pub fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}
