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
    let got = rx.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1, "the background drain delivered it");
    assert_eq!(got[0].header("X-SpecKit-Id"), Some(ids.lines()[0]));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The kicked drain finishes and leaves the job delivered.
    let deadline = Instant::now() + Duration::from_secs(5);
    while env.job_files("SPEC-A", "delivered").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(env.job_files("SPEC-A", "delivered").len(), 1);
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
    let got = rx.wait_for(200, Duration::from_secs(20));
    // Let the last drains see an empty spool and exit.
    let deadline = Instant::now() + Duration::from_secs(10);
    while drains_alive(&env) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
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
    assert!(
        most >= 1,
        "the sampler must see the background drains for this check to mean anything"
    );
    assert!(
        most <= 4,
        "at most a handful of drains alive at once, saw {most}"
    );
}

#[test]
fn watch_delivers_new_events_and_exits_143_on_sigterm() {
    let rx = Receiver::start();
    let env =
        Env::new(&config_with(&subscription("hook", &rx.url("/hook"), ""))).env("SECRET_HOOK", "s");
    let mut watch = env
        .cmd(&["drain", "--watch"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut latencies = Vec::new();
    for _ in 0..10 {
        let emitted = Instant::now();
        let before = rx.requests().len();
        env.run(&[
            "emit",
            "--spec",
            "SPEC-W",
            "--event",
            "spec-auto.stage.completed",
        ])
        .expect(0);
        let got = rx.wait_for(before + 1, Duration::from_secs(5));
        assert_eq!(got.len(), before + 1);
        latencies.push(emitted.elapsed());
    }
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(watch.id().to_string())
        .status()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "watch did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(143));
    assert_eq!(
        env.job_files("SPEC-W", "delivered").len(),
        10,
        "nothing lost"
    );
    assert!(
        env.job_files("SPEC-W", "pending").is_empty()
            && env.job_files("SPEC-W", "active").is_empty()
    );
    latencies.sort();
    assert!(
        latencies[9] < Duration::from_secs(2),
        "watch picks jobs up promptly: {latencies:?}"
    );
}
