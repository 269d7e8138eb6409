//! `spec-notify top` in a real terminal: tmux (Debian's `tmux`,
//! `tests/tui/install.sh`) runs a shell in a detached session of a fixed
//! size, the test types `spec-notify top` into it, presses keys with
//! `send-keys` and reads the screen with `capture-pane`, waiting for what
//! it expects to appear. Each test has a tmux server of its own (its own
//! socket), killed when the test ends; the shell in it dies by itself
//! after five minutes whatever happens to the test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::support::nats::NatsServer;
use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

/// Numbers the sessions: each test's is named apart.
static SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A shell in a detached tmux session, on a server of its own.
struct Tmux {
    /// Holds the server's socket.
    dir: TempDir,
    session: String,
    /// The environment every tmux command (so the server, the shell and
    /// `spec-notify top`) gets.
    envs: Vec<(String, String)>,
}

/// Whether tmux is there, or why not.
fn tmux_found() -> Result<(), String> {
    let run = run_command(
        {
            let mut cmd = command("tmux");
            cmd.arg("-V");
            cmd
        },
        b"",
    );
    match run.code {
        0 => Ok(()),
        _ => Err(format!("`tmux -V` failed: {}", run.stderr.trim())),
    }
}

impl Tmux {
    /// A `width` × `height` shell in `env`'s workspace, with its
    /// variables, `spec-notify` first on PATH and `NO_COLOR` when asked.
    /// `None` when tmux is missing and SPEC_NOTIFY_TEST_SKIP lists it.
    fn start(env: &Env, width: u16, height: u16, no_color: bool) -> Option<Tmux> {
        if on_path("tmux").is_none() {
            require("tmux", Err::<(), _>("tmux is not on PATH".to_string()))?;
        }
        require("tmux", tmux_found())?;
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut envs: Vec<(String, String)> = env.envs.clone();
        envs.push(("PATH".into(), path));
        if no_color {
            envs.push(("NO_COLOR".into(), "1".into()));
        }
        let tmux = Tmux {
            dir: tempfile::tempdir().unwrap(),
            session: format!(
                "top-{}-{}",
                std::process::id(),
                SESSIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            ),
            envs,
        };
        let (w, h) = (width.to_string(), height.to_string());
        let workspace = env.path().to_str().unwrap().to_string();
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            &tmux.session,
            "-x",
            &w,
            "-y",
            &h,
            "-c",
            &workspace,
            // The shell ends itself if the test never gets to kill it.
            "timeout 300 env PS1='top$ ' bash --norc --noprofile -i",
        ]);
        tmux.wait_for("top$");
        Some(tmux)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("tmux.sock")
    }

    /// Runs `tmux ARGS` against this server; panics unless it succeeds.
    #[track_caller]
    fn run(&self, args: &[&str]) -> String {
        let mut cmd = command("tmux");
        cmd.arg("-S").arg(self.socket()).args(["-f", "/dev/null"]);
        cmd.args(args);
        cmd.env_remove("TMUX")
            .env_remove("SPEC_NOTIFY_CONFIG")
            .env_remove("SPECKIT_WEBHOOKS_ENABLED")
            .env_remove("NO_COLOR");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let run = run_command(cmd, b"").expect(0);
        run.stdout
    }

    /// Types `text` and Enter into the shell.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", &self.session, "-l", text]);
        self.keys(&["Enter"]);
    }

    /// Presses keys (tmux names: `Enter`, `Tab`, `Escape`, `q`, …).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", &self.session];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// The screen as text.
    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", &self.session])
    }

    /// The screen with its attributes, as SGR escape sequences.
    fn screen_with_attributes(&self) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", &self.session])
    }

    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", &self.session, format])
            .trim()
            .to_string()
    }

    /// Waits until `done` holds for the screen; the screen.
    #[track_caller]
    fn wait_screen(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_until(CEILING, what, || {
                last = self.screen();
                done(&last)
            })
        }));
        if let Err(panic) = waited {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("{message}; the screen:\n{last}");
        }
        last
    }

    #[track_caller]
    fn wait_for(&self, text: &str) -> String {
        self.wait_screen(&format!("{text:?} on the screen"), |s| s.contains(text))
    }

    #[track_caller]
    fn wait_gone(&self, text: &str) -> String {
        self.wait_screen(&format!("{text:?} to leave the screen"), |s| {
            !s.contains(text)
        })
    }

    /// Starts `spec-notify top ARGS` in the shell and waits for its first
    /// read of the store.
    fn top(&self, args: &str) {
        self.type_line(&format!("spec-notify top {args}; echo EXIT=$?"));
        self.wait_for(" row(s) | ");
        assert_eq!(
            self.format("#{alternate_on}"),
            "1",
            "in the alternate screen"
        );
    }

    /// The pid of the `spec-notify` the shell runs.
    fn top_pid(&self) -> u32 {
        let mut pids = vec![self.format("#{pane_pid}").parse::<u32>().unwrap()];
        while let Some(pid) = pids.pop() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if comm.trim() == "spec-notify" {
                return pid;
            }
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default();
            pids.extend(
                children
                    .split_whitespace()
                    .map(|c| c.parse::<u32>().unwrap()),
            );
        }
        panic!("no spec-notify under the shell:\n{}", self.screen());
    }

    /// `top` has exited with `code`, the terminal is as it was: the main
    /// screen, a visible cursor, and a shell that echoes what it is typed
    /// and runs it.
    #[track_caller]
    fn assert_back_at_the_shell(&self, code: i32) {
        self.wait_for(&format!("EXIT={code}"));
        assert_eq!(self.format("#{alternate_on}"), "0", "alternate screen left");
        assert_eq!(self.format("#{cursor_flag}"), "1", "cursor shown");
        self.type_line("echo back-$((40+2))");
        self.wait_for("back-42");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let mut cmd = command("tmux");
        cmd.arg("-S").arg(self.socket()).arg("kill-server");
        let _ = run_command(cmd, b"");
    }
}

/// SGR parameters that set a colour (foreground or background).
fn colour_codes(screen: &str) -> Vec<String> {
    let mut found = Vec::new();
    for sequence in screen.split("\x1b[").skip(1) {
        let Some(end) = sequence.find('m') else {
            continue;
        };
        let params: Vec<&str> = sequence[..end].split(';').collect();
        let colour = params.iter().any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=37 | 40..=47 | 90..=97 | 100..=107 | 38 | 48)
            )
        });
        if colour {
            found.push(sequence[..end].to_string());
        }
    }
    found
}

fn workspace(rx: &Receiver, extra: &str) -> Env {
    Env::new(&config_with(&subscription(
        "hook",
        &rx.url("/hook"),
        &format!("jitter_ms = 0\ninitial_backoff_ms = 100\n{extra}"),
    )))
    .env("SECRET_HOOK", "top-secret-not-real")
}

fn status_json(env: &Env, code: i32) -> Value {
    let run = env.run(&["status", "--json"]).expect(code);
    serde_json::from_str(&run.stdout).unwrap()
}

#[test]
fn a_failing_endpoint_shows_at_once_and_its_banner_lasts_while_the_circuit_is_open() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(500));
    let env = workspace(&rx, "circuit_failures = 2\ncircuit_cooldown = \"1s\"");
    let Some(tmux) = Tmux::start(&env, 80, 24, false) else {
        return;
    };
    let drain = Spawned::new(
        env.cmd(&["drain", "--watch"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    tmux.top("");
    tmux.wait_for("no jobs and no attempts yet");
    emit_plan(&env, "SPEC-T").expect(0);
    rx.wait_for(2, CEILING);
    let failed = Instant::now();
    tmux.wait_for("! circuit open: hook");
    let shown_after = failed.elapsed();
    let screen = tmux.wait_for("! circuit open: hook, 1 job(s) wait");
    eprintln!("with its job back in pending after {:?}", failed.elapsed());
    eprintln!("the open circuit showed {shown_after:?} after its second failure");
    assert!(
        shown_after < Duration::from_secs(10),
        "no key was pressed: the view refreshes by itself ({shown_after:?})"
    );
    assert!(screen.contains("> SPEC-T"), "{screen}");
    assert!(
        screen.contains("HTTP 500"),
        "the attempts' answers: {screen}"
    );
    // The colours are there without NO_COLOR.
    let codes = colour_codes(&tmux.screen_with_attributes());
    assert!(!codes.is_empty(), "{}", tmux.screen_with_attributes());

    // The endpoint comes back: the next probe closes the circuit and the
    // banner goes.
    rx.set_default(Reply::Status(204));
    let screen = tmux.wait_gone("circuit open");
    assert!(
        !screen.contains("! "),
        "nothing else needs attention: {screen}"
    );
    tmux.wait_for("delivered");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell(0);
    drop(drain);
}

#[test]
fn p_pauses_the_subscription_and_p_again_resumes_it_without_colour() {
    let rx = Receiver::start();
    let env = workspace(&rx, "");
    emit_plan(&env, "SPEC-P").expect(0);
    env.run(&["drain", "--once"]).expect(0);
    let Some(tmux) = Tmux::start(&env, 120, 40, true) else {
        return;
    };
    tmux.top("");
    tmux.wait_for("> SPEC-P");

    tmux.keys(&["p"]);
    let screen = tmux.wait_for("! paused: hook, 0 job(s) wait: p resumes");
    assert!(screen.contains("paused hook (every SPEC)"), "{screen}");
    assert!(
        screen.contains("> SPEC-P") && screen.contains(" paused "),
        "{screen}"
    );
    let gate = &status_json(&env, 1)["subscriptions"][0];
    assert_eq!(gate["circuit"], "paused", "{gate}");
    assert_eq!(
        gate["paused_reason"], "paused by an operator",
        "as `pause` says"
    );
    let attributes = tmux.screen_with_attributes();
    assert_eq!(
        colour_codes(&attributes),
        Vec::<String>::new(),
        "NO_COLOR: {attributes:?}"
    );

    // Held while paused: a new event waits.
    emit_plan(&env, "SPEC-P").expect(0);
    tmux.wait_for("! paused: hook, 1 job(s) wait");
    tmux.keys(&["p"]);
    tmux.wait_for("resumed hook: 1 waiting jobs go out");
    tmux.wait_gone("! paused");
    assert_eq!(
        status_json(&env, 0)["subscriptions"][0]["circuit"],
        "closed"
    );
    // The same evidence as `pause` and `resume`.
    let history = env
        .run(&["history", "SPEC-P", "--format", "jsonl"])
        .expect(0);
    let outcomes: Vec<String> = history
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["outcome"].to_string())
        .collect();
    for outcome in ["\"subscription-paused\"", "\"subscription-resumed\""] {
        assert!(
            outcomes.iter().any(|o| o == outcome),
            "{outcome}: {outcomes:?}"
        );
    }
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell(0);
}

#[test]
fn a_dead_job_is_replayed_with_r_and_the_receiver_gets_it() {
    let rx = Receiver::start();
    // Refused for good twice: two dead jobs.
    rx.script("/hook", [Reply::Status(400), Reply::Status(400)]);
    let env = workspace(&rx, "");
    let first = emit_plan(&env, "SPEC-R").expect(0).ids();
    let second = emit_plan(&env, "SPEC-R").expect(0).ids();
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(env.jobs("SPEC-R", "dead").len(), 2);
    let Some(tmux) = Tmux::start(&env, 80, 24, true) else {
        return;
    };
    tmux.top("");
    tmux.wait_for("! dead: 2 job(s) of SPEC-R x hook (rejected)");

    // One job, chosen in the row's dead jobs: replayed at once.
    tmux.keys(&["Tab"]);
    let screen = tmux.wait_screen("a dead job selected", |s| {
        s.lines()
            .any(|l| l.starts_with("> ") && l.contains(" ago  "))
    });
    let line = screen
        .lines()
        .find(|l| l.starts_with("> ") && l.contains(" ago  "))
        .unwrap();
    let chosen = [&first[0], &second[0]]
        .into_iter()
        .find(|id| line.contains(id.as_str()))
        .unwrap_or_else(|| panic!("no emitted id in {line:?}"))
        .clone();
    tmux.keys(&["r"]);
    tmux.wait_for("replayed 1: 1 delivered");
    let got = rx.wait_for(3, CEILING);
    assert_eq!(got[2].header("X-SpecKit-Id"), Some(chosen.as_str()));

    // The rest of the row: r asks first, y replays.
    tmux.wait_for("! dead: 1 job(s) of SPEC-R x hook");
    tmux.keys(&["Escape"]);
    tmux.wait_for("tab/enter jobs");
    tmux.keys(&["r"]);
    tmux.wait_for("Replay all 1 dead job(s) of SPEC-R x hook? (y/n)");
    tmux.keys(&["y"]);
    tmux.wait_for("replayed 1: 1 delivered");
    let got = rx.wait_for(4, CEILING);
    let mut ids: Vec<&str> = got[2..]
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap())
        .collect();
    ids.sort();
    let mut want = [first[0].as_str(), second[0].as_str()];
    want.sort();
    assert_eq!(ids, want, "each dead job delivered once, same id");
    tmux.wait_gone("! dead");
    assert!(env.jobs("SPEC-R", "dead").is_empty());
    let history = env
        .run(&["history", "SPEC-R", "--format", "jsonl"])
        .expect(0);
    assert_eq!(
        history.stdout.matches("\"requeued\"").count(),
        2,
        "logged as `replay` logs"
    );
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell(0);
}

#[test]
fn q_and_sigterm_each_leave_the_terminal_as_it_was() {
    let rx = Receiver::start();
    let env = workspace(&rx, "");
    let Some(tmux) = Tmux::start(&env, 80, 24, true) else {
        return;
    };
    // The quotes keep the typed line from showing what the command prints.
    tmux.type_line("stty -g > before.txt; echo sa''ved");
    tmux.wait_for("saved");
    tmux.top("");
    tmux.keys(&["?"]);
    tmux.wait_for("+ keys ---");
    tmux.keys(&["Escape"]);
    tmux.wait_gone("+ keys ---");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell(0);

    tmux.top("");
    let pid = tmux.top_pid();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    tmux.assert_back_at_the_shell(143);
    tmux.type_line("stty -g > after.txt; echo compa''red");
    tmux.wait_for("compared");
    let read = |name: &str| std::fs::read_to_string(env.path().join(name)).unwrap();
    assert_eq!(
        read("before.txt"),
        read("after.txt"),
        "terminal modes restored"
    );
}

#[test]
fn without_a_terminal_top_says_to_use_status() {
    let env = Env::new(&config_with(""));
    let run = env.run(&["top"]).expect(2);
    assert!(run.stderr.contains("needs a terminal"), "{}", run.stderr);
    assert!(run.stderr.contains("spec-notify status"), "{}", run.stderr);
}

#[test]
fn the_fleet_on_nats_shows_every_hosts_rows() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let host = |spec: &str| {
        let config = format!(
            "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\n\n\
             [spec_ops.webhooks.relay]\nurl = \"{}\"\nstream = \"T\"\n\n{}",
            nats.url(),
            subscription("hook", &rx.url("/hook"), "jitter_ms = 0")
        );
        let env = Env::new(&config).env("SECRET_HOOK", "s3cret");
        emit_plan(&env, spec).expect(0);
        emit_plan(&env, spec).expect(0);
        env.run(&["relay"]).expect(0);
        env
    };
    let (a, _b) = (host("SPEC-A"), host("SPEC-B"));
    let Some(tmux) = Tmux::start(&a, 100, 30, true) else {
        return;
    };
    tmux.top("--source nats");
    let screen = tmux.wait_for("SPEC-B");
    assert!(screen.contains("| nats |"), "{screen}");
    for spec in ["SPEC-A", "SPEC-B"] {
        let row = screen
            .lines()
            .find(|l| l.contains(spec) && l.contains("hook"))
            .unwrap_or_else(|| panic!("no row of {spec}:\n{screen}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[cells.len() - 7], "2", "2 pending: {row}");
    }
    // Acting on the fleet: the pause is in the breaker bucket every worker reads.
    tmux.keys(&["p"]);
    tmux.wait_for("paused hook (every SPEC)");
    let run = a.run(&["status", "--source", "nats", "--json"]).expect(1);
    let json: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["subscriptions"][0]["circuit"], "paused", "{json}");
    tmux.keys(&["q"]);
    tmux.assert_back_at_the_shell(0);
}
