//! Clocks that jump (issue 23): a running drain's waits are measured on
//! the monotonic clock, so a wall-clock step neither stretches a retry nor
//! a circuit's cool-down; a job queued by a machine whose clock was off is
//! sent, not expired and not held for a day; `status` never shows a time
//! already past as the next probe. The wall clock is stepped with
//! libfaketime (Debian's `faketime`, installed by tests/clock/install.sh):
//! through a file it re-reads at every call (`FAKETIME_NO_CACHE`), so a
//! running process steps when the test rewrites the file. Each test failed
//! before its fix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

/// libfaketime, or `None` (after saying so) when this test is skipped with
/// `SPEC_NOTIFY_TEST_SKIP=faketime`. Missing otherwise: the test fails with
/// the command that installs it.
pub(crate) fn faketime() -> Option<PathBuf> {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file());
    crate::support::deps::require(
        "faketime",
        found.ok_or_else(|| "libfaketime is not installed".to_string()),
    )
}

/// A wall clock shared with the processes started through it: an offset
/// (libfaketime's `+1h`, `-4d`, …) in a file they re-read at every call.
pub(crate) struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
}

impl FakeClock {
    pub(crate) fn new(lib: PathBuf, dir: &Path, offset: &str) -> FakeClock {
        let clock = FakeClock {
            lib,
            file: dir.join("faketime.offset"),
        };
        clock.set(offset);
        clock
    }

    /// Steps every process on this clock, at once.
    fn set(&self, offset: &str) {
        // Written whole then renamed: a reader never sees half a line.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }

    /// `cmd` on this clock. The monotonic clock stays true (a real step of
    /// the wall clock leaves it alone).
    ///
    /// libfaketime keeps a shared-memory segment per process tree and
    /// removes it when the process exits normally: stop a long-running one
    /// with [`stop`], not by killing it.
    pub(crate) fn apply(&self, mut cmd: Command) -> Command {
        cmd.env("LD_PRELOAD", &self.lib)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        cmd
    }
}

/// Stops a `drain --watch` with SIGTERM and waits for it (exit 143).
fn stop(watch: Spawned) {
    watch.signal("TERM");
    let run = watch.wait_output(CEILING, "the watch");
    assert_eq!(run.code, 143, "{}", run.stderr);
}

fn env_for(rx: &Receiver, extra: &str) -> Env {
    Env::new(&config_with(&subscription(
        "hook",
        &rx.url("/hook"),
        &format!("jitter_ms = 0\n{extra}"),
    )))
    .env("SECRET_HOOK", "s3cret")
}

#[test]
fn a_retry_due_in_4s_is_sent_on_time_after_the_clock_steps_back_an_hour() {
    let Some(lib) = faketime() else { return };
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Status(503)]);
    let env = env_for(&rx, "initial_backoff_ms = 4000");
    let clock = FakeClock::new(lib, env.path(), "+0");
    let watch = Spawned::new(
        clock
            .apply(env.cmd(&["drain", "--watch"]))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    emit_plan(&env, "SPEC-C").expect(0);
    let first = rx.wait_for(1, CEILING)[0].received_at_ms;
    // The retry is due 4 s after the first attempt; the clock steps back
    // an hour now. Before: the retry waited for the hour to come round
    // again (none within 26 s).
    clock.set("-1h");
    let got = rx.wait_for(2, CEILING);
    let waited = got[1].received_at_ms - first;
    assert!(
        (3_900..9_000).contains(&waited),
        "the retry went out {waited} ms after the first attempt (due after 4,000)"
    );
    stop(watch);
}

#[test]
fn a_circuit_cooldown_ends_on_time_after_the_clock_steps_back_an_hour() {
    let Some(lib) = faketime() else { return };
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Status(503)]);
    let env = env_for(
        &rx,
        "circuit_failures = 1\ncircuit_cooldown = \"4s\"\ninitial_backoff_ms = 100",
    );
    let clock = FakeClock::new(lib, env.path(), "+0");
    let watch = Spawned::new(
        clock
            .apply(env.cmd(&["drain", "--watch"]))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    emit_plan(&env, "SPEC-C").expect(0);
    let first = rx.wait_for(1, CEILING)[0].received_at_ms;
    clock.set("-1h");
    // Before: no probe within 20 s (the cool-down ran on the wall clock).
    let got = rx.wait_for(2, CEILING);
    let waited = got[1].received_at_ms - first;
    assert!(
        (3_900..9_000).contains(&waited),
        "the probe went out {waited} ms after the circuit opened (cool-down 4,000)"
    );
    stop(watch);
}

#[test]
fn status_never_shows_a_probe_time_already_past_as_the_next_one() {
    let Some(lib) = faketime() else { return };
    let rx = Receiver::start();
    rx.set_default(Reply::Status(503));
    let env = env_for(&rx, "circuit_failures = 1\ncircuit_cooldown = \"60s\"");
    emit_plan(&env, "SPEC-C").expect(0);
    env.run(&["drain", "--once"]).expect(0);
    let now = env.run(&["status"]);
    assert!(now.stdout.contains("next probe at"), "{}", now.stdout);
    // An hour later, with no drain running meanwhile.
    let clock = FakeClock::new(lib, env.path(), "+1h");
    let later = run_command(clock.apply(env.cmd(&["status"])), b"");
    assert!(!later.stdout.contains("next probe at"), "{}", later.stdout);
    assert!(
        later.stdout.contains("probe overdue since"),
        "{}",
        later.stdout
    );
}

#[test]
fn a_job_emitted_with_the_clock_four_days_behind_is_attempted_not_expired() {
    let Some(lib) = faketime() else { return };
    let rx = Receiver::start();
    let env = env_for(&rx, "");
    // A runner before its NTP sync (max_age is 72 h).
    let clock = FakeClock::new(lib, env.path(), "-4d");
    let ids = run_command(clock.apply(env.cmd(&emit_plan_args("SPEC-C"))), b"")
        .expect(0)
        .ids();
    // Before: dead-lettered as `expired` with zero attempts, and a hint
    // that blamed the endpoint.
    let run = env.run(&["drain", "--once"]).expect(0);
    assert!(run.stderr.contains("delivered 1,"), "{}", run.stderr);
    assert_eq!(
        rx.requests()[0].header("X-SpecKit-Id"),
        Some(ids[0].as_str())
    );
    assert!(env.job_files("SPEC-C", "dead").is_empty());
}

#[test]
fn a_job_emitted_with_the_clock_a_day_ahead_is_sent_now() {
    let Some(lib) = faketime() else { return };
    let rx = Receiver::start();
    let env = env_for(&rx, "");
    let clock = FakeClock::new(lib, env.path(), "+1d");
    run_command(clock.apply(env.cmd(&emit_plan_args("SPEC-C"))), b"").expect(0);
    // Before: due "tomorrow", so `--once` sent nothing and a drain waited 23 h.
    let run = env.run(&["drain", "--once"]).expect(0);
    assert!(run.stderr.contains("delivered 1,"), "{}", run.stderr);
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn list_shows_a_retry_time_already_past_as_overdue() {
    let Some(lib) = faketime() else { return };
    let rx = Receiver::start();
    rx.set_default(Reply::Status(503));
    let env = env_for(&rx, "initial_backoff_ms = 60000");
    emit_plan(&env, "SPEC-C").expect(0);
    env.run(&["drain", "--once"]).expect(0);
    assert!(env.run(&["list", "SPEC-C"]).stdout.contains("next in"));
    let clock = FakeClock::new(lib, env.path(), "+2h");
    let later = run_command(clock.apply(env.cmd(&["list", "SPEC-C"])), b"");
    let rows = later.rows().join("\n");
    assert!(!rows.contains("next in"), "{rows}");
    assert!(rows.contains("overdue"), "{rows}");
}
