//! Many SPECs on one host (issue 23): a drain's file descriptors are
//! bounded whatever the number of SPEC folders, one emit batch naming many
//! SPECs starts one drain, an idle `drain --watch` costs next to nothing
//! however many folders it watches, and the active set is bounded without
//! starving anybody. Each test failed on the engine before its fix.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

/// Generous for thousands of SPECs on a busy 2-core machine (debug build).
const LONG: Duration = Duration::from_secs(600);

fn env_for(rx: &Receiver, auto_drain: bool, extra: &str) -> Env {
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = {auto_drain}\n{extra}\n{}",
        subscription("hook", &rx.url("/hook"), "")
    );
    Env::new(&config).env("SECRET_HOOK", "s3cret")
}

/// One JSON line per SPEC: `SPEC-0000` … in one `emit --input` batch.
fn emit_one_each(env: &Env, specs: usize) -> Vec<String> {
    let lines: Vec<String> = (0..specs)
        .map(|n| {
            format!(
                r#"{{"spec":{{"id":"SPEC-{n:04}"}},"event":{{"type":"spec-auto.stage.completed","stage":"Plan","status":"success"}}}}"#
            )
        })
        .collect();
    let mut cmd = env.cmd(&["emit", "--input", "-"]);
    cmd.stdin(Stdio::piped());
    let run = run_command(cmd, lines.join("\n").as_bytes()).expect(0);
    let ids = run.ids();
    assert_eq!(ids.len(), specs, "{}", run.stderr);
    ids
}

/// `spec-notify ARGS` with its descriptor limit (soft and hard) set to `n`,
/// as `ulimit -n n` in the shell that starts it.
fn with_fd_limit(env: &Env, n: u64, args: &[&str]) -> Command {
    let mut cmd = env.cmd(args);
    // SAFETY: setrlimit is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// How many times the receiver got each delivery id.
fn counts(rx: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in rx.requests() {
        let id = r.header("X-SpecKit-Id").unwrap_or_default().to_string();
        *seen.entry(id).or_default() += 1;
    }
    seen
}

#[track_caller]
fn assert_each_once(rx: &Receiver, ids: &[String]) {
    let seen = counts(rx);
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let missing = ids.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(missing, 0, "{missing} of {} never sent", ids.len());
    assert_eq!(seen.len(), ids.len());
}

/// Descriptors a process has open now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// CPU time (user + system) a process used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Live `spec-notify … drain` processes started for this workspace.
fn drains_alive(env: &Env) -> usize {
    let marker = env.config_path().to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&marker) && c.contains(" drain "))
        .count()
}

#[test]
fn two_thousand_specs_under_ulimit_128_are_each_delivered_once_by_one_drain() {
    let rx = Receiver::start();
    let env = env_for(&rx, false, "");
    let ids = emit_one_each(&env, 2000);
    // Before: "Too many open files" after a few hundred SPECs, exit 1.
    let drain = Spawned::new(
        with_fd_limit(&env, 128, &["drain", "--max-time", "600s"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let run = drain.wait_output(LONG, "the drain of 2,000 SPECs");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("delivered 2000,"), "{}", run.stderr);
    assert_each_once(&rx, &ids);
    assert_eq!(env.job_files("SPEC-1999", "delivered").len(), 1);
}

#[test]
fn a_watch_under_ulimit_128_delivers_two_thousand_specs_and_keeps_running() {
    let rx = Receiver::start();
    let env = env_for(&rx, false, "");
    let ids = emit_one_each(&env, 2000);
    let mut watch = Spawned::new(
        with_fd_limit(&env, 128, &["drain", "--watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = watch.id();
    let most_fds = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most_fds, done) = (Arc::clone(&most_fds), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most_fds.fetch_max(open_fds(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    wait_until(LONG, "2,000 deliveries", || {
        assert!(
            watch.child_mut().try_wait().unwrap().is_none(),
            "the watch exited"
        );
        counts(&rx).len() >= ids.len()
    });
    // Still serving: a new SPEC's event goes out too.
    let late = env
        .run(&emit_plan_args("SPEC-LATE"))
        .expect(0)
        .ids()
        .remove(0);
    wait_until(CEILING, "the late event", || {
        counts(&rx).contains_key(&late)
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert!(watch.child_mut().try_wait().unwrap().is_none(), "running");
    let mut all = ids.clone();
    all.push(late);
    assert_each_once(&rx, &all);
    let most = most_fds.load(Ordering::SeqCst);
    assert!(most < 128, "{most} descriptors open at once");
    // Every SPEC is done: none holds a lock or a log open any more.
    wait_until(CEILING, "the watch to let go of its SPECs", || {
        open_fds(pid) <= 24
    });
    watch.signal("TERM");
    let run = watch.wait_output(CEILING, "the watch");
    assert_eq!(run.code, 143, "{}", run.stderr);
}

#[test]
fn one_drain_at_a_time_under_ulimit_64_never_sends_a_job_twice() {
    // Before: each drain ran out of descriptors settling what it had sent,
    // put the jobs back, and the next one sent them again (10 POSTs of the
    // same 3 ids in five runs, and no progress).
    let rx = Receiver::start();
    let env = env_for(&rx, false, "");
    let ids = emit_one_each(&env, 300);
    for _ in 0..5 {
        let run = Spawned::new(
            with_fd_limit(&env, 64, &["drain", "--max-time", "600s"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
        .wait_output(LONG, "a drain under ulimit -n 64");
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    assert_each_once(&rx, &ids);
}

#[test]
fn an_emit_batch_naming_a_thousand_specs_starts_one_drain() {
    // Before: one background drain per SPEC (200 SPECs: 200 processes,
    // 1.7 GB; 600 SPECs: emit itself took 36.7 s).
    let rx = Receiver::start();
    let env = Arc::new(env_for(&rx, true, ""));
    let done = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (env, done, most) = (Arc::clone(&env), Arc::clone(&done), Arc::clone(&most));
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                most.fetch_max(drains_alive(&env), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let ids = emit_one_each(&env, 1000);
    wait_until(LONG, "1,000 deliveries", || counts(&rx).len() >= ids.len());
    wait_until(CEILING, "the background drain to finish", || {
        drains_alive(&env) == 0
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    assert_each_once(&rx, &ids);
    assert_eq!(most.load(Ordering::SeqCst), 1, "drains running at once");
    // It wrote what needed attention (nothing here) to the spool's log.
    assert!(env.spool_root().join(".drain.log").is_file());
}

#[test]
fn an_idle_watch_over_a_thousand_spec_folders_uses_next_to_no_cpu() {
    // Before: the whole spool was listed and statted 50 times a second:
    // 1,000 folders with nothing pending took 95% of a core.
    let rx = Receiver::start();
    let env = env_for(&rx, false, "");
    let ids = emit_one_each(&env, 1000);
    env.run(&["drain", "--max-time", "600s"]).expect(0);
    assert_eq!(counts(&rx).len(), ids.len());
    let watch = Spawned::new(
        env.cmd(&["drain", "--watch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Once it delivers a new SPEC's event it has looked at every folder
    // and is watching.
    let first = env
        .run(&emit_plan_args("SPEC-NEW"))
        .expect(0)
        .ids()
        .remove(0);
    wait_until(CEILING, "the new event", || {
        counts(&rx).contains_key(&first)
    });
    let before = cpu_ticks(watch.id());
    let started = Instant::now();
    // A measurement window, not a wait for an event: CPU time is work
    // done, which a busy machine does not make larger.
    std::thread::sleep(Duration::from_secs(5));
    let used = (cpu_ticks(watch.id()) - before) as f64 / 100.0;
    let share = used / started.elapsed().as_secs_f64();
    assert!(
        share < 0.05,
        "idle over 1,000 folders: {:.1}% of a core",
        share * 100.0
    );
    // Idle, it still hears of new work at once.
    let second = env
        .run(&emit_plan_args("SPEC-0500"))
        .expect(0)
        .ids()
        .remove(0);
    wait_until(CEILING, "an event to an idle SPEC", || {
        counts(&rx).contains_key(&second)
    });
}

#[test]
fn a_small_active_set_delivers_everything_and_held_jobs_starve_nobody() {
    // 40 jobs of a paused subscription sit in front of 20 for a healthy
    // one in every SPEC; the active set holds 10 jobs: the healthy jobs
    // still go out (held ones take at most half of it), each once.
    let rx = Receiver::start();
    rx.set_default(Reply::Status(204));
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_active_jobs = 10\n{}{}",
        subscription(
            "held",
            &rx.url("/held"),
            "include_events = [\"spec-auto.task.completed\"]"
        ),
        subscription(
            "ok",
            &rx.url("/ok"),
            "include_events = [\"spec-auto.stage.completed\"]"
        ),
    );
    let env = Env::new(&config)
        .env("SECRET_HELD", "s3cret")
        .env("SECRET_OK", "s3cret");
    env.run(&["pause", "held", "--reason", "maintenance"])
        .expect(0);
    let mut lines = Vec::new();
    for spec in 0..5 {
        for _ in 0..8 {
            lines.push(format!(
                r#"{{"spec":{{"id":"SPEC-{spec}"}},"event":{{"type":"spec-auto.task.completed"}}}}"#
            ));
        }
        for _ in 0..4 {
            lines.push(format!(
                r#"{{"spec":{{"id":"SPEC-{spec}"}},"event":{{"type":"spec-auto.stage.completed","stage":"Plan","status":"success"}}}}"#
            ));
        }
    }
    env.run_with_stdin(&["emit", "--input", "-"], lines.join("\n").as_bytes())
        .expect(0);
    let run = env.run(&["drain", "--once"]);
    assert!(run.stderr.contains("delivered 20,"), "{}", run.stderr);
    assert_eq!(rx.requests_to("/ok").len(), 20);
    assert!(rx.requests_to("/held").is_empty());
    env.run(&["resume", "held"]).expect(0);
    let run = env.run(&["drain", "--once"]);
    assert!(run.stderr.contains("delivered 40,"), "{}", run.stderr);
    let ids: Vec<String> = counts(&rx).into_keys().collect();
    assert_eq!(ids.len(), 60);
    assert_each_once(&rx, &ids);
}
