//! Real-time delivery without cron: emit kicks a background drain
//! (auto_drain), bursts start no stampede and lose no wake-up, and
//! `drain --watch` serves as a long-running worker.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::support::receiver::Receiver;
use crate::support::*;

fn auto_drain_env(rx: &Receiver) -> Env {
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = true\n\n{}",
        subscription("hook", &rx.url("/hook"), "")
    );
    Env::new(&config).env("SECRET_HOOK", "s")
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
fn an_emitted_event_reaches_the_receiver_with_no_drain_running() {
    let rx = Receiver::start();
    let env = auto_drain_env(&rx);
    let started = Instant::now();
    let ids = env
        .run(&[
            "emit",
            "--spec",
            "SPEC-A",
            "--event",
            "spec-auto.stage.completed",
        ])
        .expect(0);
    // Nothing else drains here: only the drain emit started can deliver it.
    let got = rx.wait_for(1, CEILING);
    let took = started.elapsed();
    assert_eq!(got.len(), 1, "the background drain delivered it");
    assert_eq!(got[0].header("X-SpecKit-Id"), Some(ids.ids()[0].as_str()));
    // The point of auto_drain is real time (milliseconds, README
    // "Performance"). The bound is generous so a busy machine never fails
    // it, yet far below the minute that the cron drain it replaces takes.
    assert!(
        took < Duration::from_secs(20),
        "auto_drain took {took:?}: no better than cron"
    );
    wait_until(CEILING, "the kicked drain to settle the job", || {
        env.job_files("SPEC-A", "delivered").len() == 1
    });
}

#[test]
fn a_burst_of_200_emits_is_delivered_once_without_a_stampede() {
    let rx = Receiver::start();
    let env = Arc::new(auto_drain_env(&rx));
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
    let emitters: Vec<_> = (0..4)
        .map(|_| {
            let env = Arc::clone(&env);
            std::thread::spawn(move || {
                for _ in 0..50 {
                    env.run(&[
                        "emit",
                        "--spec",
                        "SPEC-B",
                        "--event",
                        "spec-auto.stage.completed",
                    ])
                    .expect(0);
                }
            })
        })
        .collect();
    for e in emitters {
        e.join().unwrap();
    }
    let got = rx.wait_for(200, CEILING);
    // Let the last drains see an empty spool and exit.
    wait_until(CEILING, "the background drains to exit", || {
        drains_alive(&env) == 0
    });
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let ids: HashSet<&str> = got
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap())
        .collect();
    assert_eq!(got.len(), 200, "all delivered, none twice");
    assert_eq!(ids.len(), 200);
    assert!(
        env.job_files("SPEC-B", "pending").is_empty(),
        "no lost wake-up left a job behind"
    );
    let most = most.load(Ordering::SeqCst);
    // The sampler may miss drains that live only milliseconds (a fast
    // machine). What matters is that there is no stampede: 200 emits start
    // nowhere near 200 drains. On a loaded machine a drain that found the
    // SPEC served lives longer before it exits, so the bound has room.
    assert!(
        most <= 16,
        "at most a handful of drains alive at once, saw {most}"
    );
}

#[test]
fn watch_delivers_new_events_and_exits_143_on_sigterm() {
    let rx = Receiver::start();
    let env =
        Env::new(&config_with(&subscription("hook", &rx.url("/hook"), ""))).env("SECRET_HOOK", "s");
    let emit = || {
        env.run(&[
            "emit",
            "--spec",
            "SPEC-W",
            "--event",
            "spec-auto.stage.completed",
        ])
        .expect(0);
    };
    let watch = Spawned::new(
        env.cmd(&["drain", "--watch"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // auto_drain is off, so only the watch delivers; its first delivery
    // says it is up, and the timed events below measure pick-up, not start-up.
    emit();
    assert_eq!(rx.wait_for(1, CEILING).len(), 1, "the watch delivered");
    let mut latencies = Vec::new();
    for n in 2..=11 {
        let emitted = Instant::now();
        emit();
        assert_eq!(rx.wait_for(n, CEILING).len(), n, "the watch delivered");
        latencies.push(emitted.elapsed());
    }
    watch.signal("TERM");
    let run = watch.wait_output(CEILING, "drain --watch after SIGTERM");
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert_eq!(
        env.job_files("SPEC-W", "delivered").len(),
        11,
        "nothing lost"
    );
    assert!(
        env.job_files("SPEC-W", "pending").is_empty()
            && env.job_files("SPEC-W", "active").is_empty()
    );
    // The watch looks at the spool every ~20 ms. A generous bound on the
    // median (so a busy machine's stalls do not count) still fails a watch
    // that only notices jobs on some slow fallback.
    latencies.sort();
    assert!(
        latencies[5] < Duration::from_secs(5),
        "watch picks jobs up promptly: {latencies:?}"
    );
}
