//! What happens at the edges of a drain's life: jobs that arrive as it lets
//! go of a SPEC, replaying what expired, a spool that cannot record an
//! outcome, one broken SPEC among good ones, rates under `--once`, and
//! `drain --watch` keeping its evidence under the cap. Each test failed on
//! the engine before its fix.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::blackhole::Blackhole;
use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

fn emit(env: &Env, spec: &str, event: &str) -> Run {
    env.run(&["emit", "--spec", spec, "--event", event])
}

fn sub_for(id: &str, url: &str, event: &str, extra: &str) -> String {
    subscription(
        id,
        url,
        &format!("include_events = [\"{event}\"]\njitter_ms = 0\n{extra}"),
    )
}

#[test]
fn a_job_emitted_while_a_drain_finishes_is_handed_to_a_new_drain() {
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let tables = format!(
        "{}{}",
        sub_for(
            "hole",
            &hole.url("/"),
            "spec-auto.stage.completed",
            "per_request_timeout_ms = 3000"
        ),
        sub_for("ok", &rx.url("/ok"), "spec-auto.pipeline.completed", ""),
    );
    let config = |auto: bool| {
        format!("[spec_ops.webhooks]\nenabled = true\nauto_drain = {auto}\n\n{tables}")
    };
    let env = Env::new(&config(false))
        .env("SECRET_HOLE", "s3cret")
        .env("SECRET_OK", "s3cret");
    emit(&env, "SPEC-H", "spec-auto.stage.completed").expect(0);
    // From here on emits start drains; the one below is started by hand.
    env.write_config(&config(true));
    let started = Instant::now();
    let drain = Spawned::new(
        env.cmd(&["drain", "--max-time", "1s"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    hole.wait_for(1, CEILING, "the drain's request to the blackhole");
    // Past --max-time the drain takes no new job, but it serves the SPEC
    // until its request times out: an emit now starts no drain of its own.
    while started.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    emit(&env, "SPEC-H", "spec-auto.pipeline.completed").expect(0);
    drain.wait_output(CEILING, "the drain");
    let got = rx.wait_for(1, CEILING);
    assert_eq!(got.len(), 1, "the late job was handed over and delivered");
    // The new drain goes on retrying the blackhole: stop it.
    let alive = env.spool_root().join("SPEC-H").join("drain.alive");
    let pid = std::fs::read_to_string(alive).unwrap();
    if let Some(pid) = rustix::process::Pid::from_raw(pid.trim().parse().unwrap()) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

#[test]
fn a_replayed_job_is_not_expired_again() {
    let rx = Receiver::start();
    rx.script("/a", [Reply::Status(400)]);
    let env = Env::new(&config_with(&subscription(
        "a",
        &rx.url("/a"),
        "max_age = \"1s\"",
    )))
    .env("SECRET_A", "s3cret");
    emit(&env, "SPEC-X", "spec-auto.stage.completed").expect(0);
    env.run(&["drain", "--once"]).expect(0);
    let id = env.jobs("SPEC-X", "dead")[0].0["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Older than max_age by now (a lower bound: a slow machine only waits longer).
    std::thread::sleep(Duration::from_millis(1200));
    let run = env
        .run(&["replay", "SPEC-X", "--delivery-id", &id])
        .expect(0);
    assert!(run.stderr.contains("delivered 1"), "{}", run.stderr);
    assert_eq!(rx.requests_to("/a").len(), 2);
}

#[test]
fn an_outcome_that_cannot_be_recorded_stops_the_drain_and_keeps_the_job_pending() {
    let rx = Receiver::start();
    let env =
        Env::new(&config_with(&subscription("a", &rx.url("/a"), ""))).env("SECRET_A", "s3cret");
    for _ in 0..5 {
        emit(&env, "SPEC-R", "spec-auto.stage.completed").expect(0);
    }
    // A folder in delivered/ under each job's name: every settle's rename
    // there fails. (delivered/ itself must stay a folder of the drain's
    // user, or the drain refuses the SPEC before sending anything.)
    let delivered = env.spool_root().join("SPEC-R").join("delivered");
    let names: Vec<std::ffi::OsString> = env
        .job_files("SPEC-R", "pending")
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    for name in &names {
        std::fs::create_dir_all(delivered.join(name).join("in-the-way")).unwrap();
    }
    let run = env.run(&["drain", "--once"]).expect(1);
    assert!(run.stderr.contains("could not record"), "{}", run.stderr);
    let sent = rx.requests().len();
    assert!(
        (1..=4).contains(&sent),
        "it stopped taking jobs after the first failure ({sent} sent)"
    );
    assert!(
        env.job_files("SPEC-R", "active").is_empty(),
        "nothing stuck in active/"
    );
    assert_eq!(env.job_files("SPEC-R", "pending").len(), 5);
    for name in &names {
        std::fs::remove_dir_all(delivered.join(name)).unwrap();
    }
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(env.job_files("SPEC-R", "delivered").len(), 5);
}

#[test]
fn one_broken_spec_does_not_stop_the_others() {
    let rx = Receiver::start();
    let env =
        Env::new(&config_with(&subscription("a", &rx.url("/a"), ""))).env("SECRET_A", "s3cret");
    emit(&env, "SPEC-GOOD", "spec-auto.stage.completed").expect(0);
    let bad = env.spool_root().join("SPEC-0BAD");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("seq"), b"00000000000000000001\n").unwrap();
    std::fs::write(bad.join("pending"), b"a file, not a folder").unwrap();
    let run = env.run(&["drain", "--once"]).expect(1);
    assert!(run.stderr.contains("SPEC-0BAD"), "{}", run.stderr);
    assert_eq!(env.jobs("SPEC-GOOD", "delivered").len(), 1);
}

#[test]
fn once_and_replay_wait_for_rate_limited_jobs() {
    let rx = Receiver::start();
    rx.script("/r", vec![Reply::Status(400); 3]);
    let env = Env::new(&config_with(&subscription(
        "r",
        &rx.url("/r"),
        "rate_limit = \"10/s\"",
    )))
    .env("SECRET_R", "s3cret");
    for _ in 0..3 {
        emit(&env, "SPEC-T", "spec-auto.stage.completed").expect(0);
    }
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(env.jobs("SPEC-T", "dead").len(), 3, "--once sent all three");
    let run = env.run(&["replay", "SPEC-T", "--all-dead"]).expect(0);
    assert!(run.stderr.contains("delivered 3"), "{}", run.stderr);
}

#[test]
fn jobs_a_drain_will_not_send_do_not_make_it_spin() {
    let rx = Receiver::start();
    rx.script("/a", [Reply::Status(503)]);
    let tables = format!(
        "{}{}",
        sub_for(
            "a",
            &rx.url("/a"),
            "spec-auto.pipeline.completed",
            "initial_backoff_ms = 2000"
        ),
        sub_for("held", &rx.url("/held"), "spec-auto.stage.completed", ""),
    );
    // SECRET_HELD is unset: those jobs wait in pending.
    let env = Env::new(&config_with(&tables)).env("SECRET_A", "s3cret");
    emit(&env, "SPEC-W", "spec-auto.pipeline.completed").expect(0);
    let mut held = Vec::new();
    for _ in 0..3000 {
        held.push(
            r#"{"spec":{"id":"SPEC-HELD"},"event":{"type":"spec-auto.stage.completed"}}"#
                .to_string(),
        );
    }
    env.run_with_stdin(&["emit", "--input", "-"], held.join("\n").as_bytes())
        .expect(0);
    let mut child = Spawned::new(
        env.cmd(&["drain", "--max-time", "10s"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // CPU time from /proc while it runs (the last reading is taken at most
    // one nap before it exits).
    let stat = format!("/proc/{}/stat", child.id());
    let mut ticks = 0u64;
    let deadline = Instant::now() + CEILING;
    while child.child_mut().try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the drain did not finish");
        if let Ok(text) = std::fs::read_to_string(&stat) {
            // Fields after the command's closing parenthesis: utime is the
            // 12th, stime the 13th.
            let rest = &text[text.rfind(')').unwrap() + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            ticks = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The retry 2 s later went out, and the drain mostly slept meanwhile.
    assert_eq!(rx.requests_to("/a").len(), 2);
    let cpu = ticks as f64 / 100.0;
    // Reading 3,000 held jobs costs well under 0.1 s; workers and the
    // coordinator waking each other in a loop cost 0.6 s here (CPU time,
    // so a busy machine barely moves it).
    assert!(
        cpu < 0.4,
        "the drain used {cpu:.2} s of CPU over a 2 s wait"
    );
}

#[test]
fn drain_watch_holds_evidence_under_the_cap_while_it_runs() {
    let rx = Receiver::start();
    let env = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_evidence_bytes = 65536\n\n{}",
        subscription("a", &rx.url("/a"), "")
    ))
    .env("SECRET_A", "s3cret");
    let watch = Spawned::new(
        env.cmd(&["drain", "--watch"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let events: Vec<String> = (0..150)
        .map(|i| {
            format!(
                "{{\"spec\":{{\"id\":\"SPEC-C\"}},\"event\":{{\"type\":\"spec-kit.task.completed\"}},\"task\":{{\"id\":\"T{i}\",\"title\":\"{}\"}}}}",
                "x".repeat(300)
            )
        })
        .collect();
    env.run_with_stdin(&["emit", "--input", "-"], events.join("\n").as_bytes())
        .expect(0);
    rx.wait_for(150, CEILING);
    let footprint = || {
        let logs: u64 = std::fs::read_dir(env.evidence("SPEC-C"))
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("attempts.jsonl")
            })
            .map(|e| e.metadata().map_or(0, |m| m.len()))
            .sum();
        let jobs: u64 = env
            .job_files("SPEC-C", "delivered")
            .iter()
            // The drain may remove a file between listing and reading it.
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        logs + jobs
    };
    wait_until(CEILING, "the running drain to trim its evidence", || {
        footprint() <= 65536
    });
    assert!(
        !env.job_files("SPEC-C", "delivered").is_empty(),
        "the newest stay"
    );
    drop(watch);
}
