//! `spec-notify demo`: the whole product on loopback in a few seconds, with
//! no set-up. Makes a temp workspace and config, starts an in-process
//! receiver (one endpoint fails its first attempts), then runs the real
//! commands as a user would: check, emit a pipeline's events, drain, list,
//! status. Removes the workspace unless `--keep`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

use crate::cli::DemoArgs;
use crate::exit::ExitCode;
use crate::http_server::{Action, Request, Server};
use crate::output::paint;
use crate::sign::{self, Scheme, Secret};

const SPEC: &str = "SPEC-KIT-065-add-webhook-notification-system-for";
const SECRET_VAR: &str = "SPECKIT_WEBHOOK_SECRET_DEMO";
/// Generated per run; lives only in this process and its children's environment.
fn demo_secret() -> String {
    format!("demo-{}", uuid::Uuid::new_v4().simple())
}
/// The tracker endpoint answers 503 this many times before it recovers.
const TRACKER_FAILURES: u32 = 2;

pub fn run(args: &DemoArgs) -> Result<ExitCode> {
    let workspace = std::env::temp_dir().join(format!(
        "spec-notify-demo-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&workspace)
        .with_context(|| format!("failed to create `{}`", workspace.display()))?;
    let result = run_in(&workspace);
    if args.keep {
        println!("\nworkspace kept: {}", workspace.display());
    } else {
        let _ = std::fs::remove_dir_all(&workspace);
    }
    result
}

fn run_in(workspace: &Path) -> Result<ExitCode> {
    let secret = demo_secret();
    let receiver = start_receiver(Secret::new(secret.clone()))?;
    let config = workspace.join("config.toml");
    std::fs::write(&config, config_text(&receiver.addr().to_string()))
        .with_context(|| format!("failed to write `{}`", config.display()))?;
    let demo = Demo { config, secret };

    section(
        "1. A config with two subscriptions on a loopback receiver (tracker fails its first 2 attempts)",
    );
    demo.run(&["check"])?;
    section("2. Guardrail scripts emit a pipeline's events (no network; a few ms each)");
    for stage in ["Plan", "Tasks", "Implement", "Validate", "Audit", "Unlock"] {
        demo.run_quiet(&[
            "emit",
            "--spec",
            SPEC,
            "--event",
            "spec-auto.stage.completed",
            "--stage",
            stage,
            "--status",
            "success",
        ])?;
    }
    demo.run_quiet(&[
        "emit",
        "--spec",
        SPEC,
        "--event",
        "spec-kit.task.completed",
        "--task-id",
        "T61",
        "--task-title",
        "Webhook notifications",
    ])?;
    demo.run(&[
        "emit",
        "--spec",
        SPEC,
        "--event",
        "spec-auto.pipeline.completed",
        "--status",
        "success",
    ])?;
    section("3. drain delivers: signed POSTs, retries with backoff, evidence for every attempt");
    demo.run(&["drain", "--max-time", "20s"])?;
    section("4. Operators see every delivery");
    demo.run(&["list", SPEC])?;
    section("5. And the health of each subscription");
    demo.run(&["status", SPEC])?;
    let log = workspace
        .join("evidence")
        .join(SPEC)
        .join("webhooks/attempts.jsonl");
    println!(
        "\nEvery attempt was logged in {} (`spec-notify demo --keep` keeps it to look at)",
        log.display()
    );
    Ok(ExitCode::Success)
}

fn config_text(addr: &str) -> String {
    format!(
        r#"[spec_ops.webhooks]
enabled = true
auto_drain = false
spool_dir = "spool"
evidence_dir = "evidence"

[[spec_ops.webhooks.subscriptions]]
id = "chatops"
url = "http://{addr}/chatops"
secret_env = "{SECRET_VAR}"
signature = "github"
include_events = ["spec-auto.*"]

[[spec_ops.webhooks.subscriptions]]
id = "tracker"
url = "http://{addr}/tracker"
secret_env = "{SECRET_VAR}"
include_events = ["spec-kit.task.completed", "spec-auto.pipeline.completed"]
initial_backoff_ms = 300
jitter_ms = 100
"#
    )
}

/// The in-process receiver: verifies each signature and prints what arrived.
fn start_receiver(secret: Secret) -> Result<Server> {
    let tracker_calls = Arc::new(AtomicU32::new(0));
    Server::start("127.0.0.1:0", move |request: &Request| {
        receive(request, &secret, &tracker_calls)
    })
    .context("failed to start the demo receiver on 127.0.0.1")
}

fn receive(request: &Request, secret: &Secret, tracker_calls: &AtomicU32) -> Action {
    let lookup = |name: &str| request.header(name).map(String::from);
    let signature = match sign::verify(Scheme::Speckit, secret, &lookup, &request.body, 0, 0) {
        Ok(()) => paint("signature ok", "32"),
        Err(e) => paint(&format!("signature BAD: {e}"), "31"),
    };
    let failing = request.path == "/tracker"
        && tracker_calls.fetch_add(1, Ordering::SeqCst) < TRACKER_FAILURES;
    let status = if failing { 503 } else { 204 };
    let event: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
    println!(
        "   receiver {:<9} {} {:<28} {:<9} attempt {}  {signature}  → {status}",
        request.path,
        request
            .header("X-SpecKit-Id")
            .map_or("?", |id| &id[..8.min(id.len())]),
        request.header("X-SpecKit-Event").unwrap_or("?"),
        event["event"]["stage"]
            .as_str()
            .or(event["task"]["id"].as_str())
            .unwrap_or("-"),
        request.header("X-SpecKit-Attempt").unwrap_or("?"),
    );
    Action::Respond(status, Vec::new(), Vec::new())
}

struct Demo {
    config: PathBuf,
    secret: String,
}

impl Demo {
    fn command(&self, args: &[&str]) -> Result<Command> {
        let mut command =
            Command::new(std::env::current_exe().context("cannot find the spec-notify binary")?);
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env(SECRET_VAR, &self.secret);
        command.env_remove("SPECKIT_WEBHOOKS_ENABLED");
        Ok(command)
    }

    /// Runs a command with its output shown, failing the demo if it fails.
    fn run(&self, args: &[&str]) -> Result<()> {
        println!(
            "{}",
            paint(&format!("$ spec-notify {}", shell_line(args)), "1")
        );
        let status = self
            .command(args)?
            .status()
            .context("failed to run spec-notify")?;
        if !status.success() {
            bail!("`spec-notify {}` failed ({status})", args.join(" "));
        }
        Ok(())
    }

    /// Runs a command showing only the command line.
    fn run_quiet(&self, args: &[&str]) -> Result<()> {
        println!(
            "{}",
            paint(&format!("$ spec-notify {}", shell_line(args)), "1")
        );
        let output = self
            .command(args)?
            .output()
            .context("failed to run spec-notify")?;
        if !output.status.success() {
            bail!(
                "`spec-notify {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

/// The arguments as a shell line a reader can paste: each quoted when it
/// needs to be (`--task-title 'Webhook notifications'`).
fn shell_line(args: &[&str]) -> String {
    shlex::try_join(args.iter().copied()).unwrap_or_else(|_| args.join(" "))
}

fn section(title: &str) {
    println!("\n{}", paint(&format!("== {title}"), "36"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_lines_quote_what_the_shell_would_split() {
        assert_eq!(
            super::shell_line(&["emit", "--task-title", "Webhook notifications"]),
            "emit --task-title 'Webhook notifications'"
        );
        assert_eq!(super::shell_line(&["list", "SPEC-1"]), "list SPEC-1");
    }
}
