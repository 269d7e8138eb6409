//! `ordering = "fifo"` on the local spool (issue 21): per (SPEC,
//! subscription) line, a job is attempted only after every earlier one was
//! delivered or dead-lettered, through failures, timeouts and kill -9; a
//! dead head holds its line under `fifo_on_dead = "hold"` until replayed
//! or discarded, and goes on under `"continue"`; a FIFO line with a dead
//! endpoint delays nobody else.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::blackhole::Blackhole;
use crate::support::receiver::{Receiver, Recorded, Reply};
use crate::support::*;

const STAGE: &str = "spec-auto.stage.completed";

fn workspace(tables: &str, ids: &[&str]) -> Env {
    let mut env = Env::new(&config_with(tables));
    for id in ids {
        env = env.env(&format!("SECRET_{}", id.to_uppercase()), "fifo-secret");
    }
    env
}

/// `n` events for each SPEC, interleaved, as one `emit --input` batch.
fn emit_batch(env: &Env, specs: &[&str], n: usize) -> Vec<String> {
    let lines: String = (0..n)
        .flat_map(|_| specs.iter())
        .map(|spec| {
            format!("{{\"event\":{{\"type\":\"{STAGE}\"}},\"spec\":{{\"id\":\"{spec}\"}}}}\n")
        })
        .collect();
    env.run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0)
        .ids()
}

fn body(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).expect("a JSON body")
}

/// (SPEC, sequence) of a delivery.
fn line_and_sequence(r: &Recorded) -> (String, u64) {
    let b = body(r);
    (
        b["spec"]["id"].as_str().unwrap().to_string(),
        b["sequence"].as_u64().unwrap(),
    )
}

/// A reproducible mix of answers: about 30% failures (500, 503, a reset,
/// an answer slower than the request timeout), the rest 204.
fn flaky_script(n: usize, slow: Duration) -> Vec<Reply> {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            match state % 20 {
                0..=1 => Reply::Status(500),
                2..=3 => Reply::Status(503),
                4 => Reply::Close,
                5 => Reply::Slow(slow, 204),
                _ => Reply::Status(204),
            }
        })
        .collect()
}

/// Whether a scripted answer means the receiver took the event (a slow
/// 204 counts: the receiver acted on it though the sender gave up).
fn taken(reply: &Reply) -> bool {
    matches!(reply, Reply::Status(204) | Reply::Slow(_, 204))
}

#[test]
fn each_line_is_delivered_in_sequence_through_failures_and_kill_9() {
    let rx = Receiver::start();
    let script = flaky_script(4000, Duration::from_millis(700));
    rx.script("/f", script.clone());
    let specs = ["SPEC-1", "SPEC-2", "SPEC-3", "SPEC-4", "SPEC-5"];
    let env = workspace(
        &subscription(
            "f",
            &rx.url("/f"),
            "ordering = \"fifo\"\njitter_ms = 0\ninitial_backoff_ms = 20\nbackoff_factor = 1.0\nmax_attempts = 100\nper_request_timeout_ms = 300\ncircuit_failures = 1000",
        ),
        &["f"],
    );
    let ids: HashSet<String> = emit_batch(&env, &specs, 100).into_iter().collect();
    assert_eq!(ids.len(), 500);

    // Drains killed with -9 mid-run, each after some requests arrived.
    for round in 1..=6 {
        let before = rx.requests().len();
        let drain = Spawned::new(env.cmd(&["drain", "--max-time", "60s"]).spawn().unwrap());
        let got = rx.wait_for(before + 40, CEILING).len();
        assert!(got >= before + 40, "round {round}: the drain delivered");
        drain.signal("KILL");
        drop(drain);
    }
    // Then drains until every job is delivered.
    wait_until(RUN_CEILING, "every job to be delivered", || {
        env.run(&["drain", "--max-time", "30s"]);
        specs
            .iter()
            .all(|s| env.job_files(s, "delivered").len() == 100)
    });
    for spec in specs {
        assert!(
            env.job_files(spec, "pending").is_empty(),
            "{spec}: none left"
        );
        assert!(
            env.job_files(spec, "active").is_empty(),
            "{spec}: none stuck"
        );
        assert!(env.job_files(spec, "dead").is_empty(), "{spec}: none dead");
    }

    // Per line, what the receiver took, in arrival order: 1, 2, 3, …, a
    // repeat only of the one just taken (an answer its sender never saw).
    let requests = rx.requests_to("/f");
    let mut lines: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (i, r) in requests.iter().enumerate() {
        let reply = script.get(i).unwrap_or(&Reply::Status(204));
        if taken(reply) {
            let (spec, seq) = line_and_sequence(r);
            let line = lines.entry(spec).or_default();
            if line.last() != Some(&seq) {
                line.push(seq);
            }
        }
    }
    for spec in specs {
        let got = &lines[spec];
        let first = got[0];
        let expected: Vec<u64> = (first..first + 100).collect();
        assert_eq!(
            got, &expected,
            "{spec}: taken in sequence, each once in a row"
        );
    }
    let received: HashSet<&str> = requests
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap())
        .collect();
    assert_eq!(received.len(), 500, "nothing foreign, nothing missing");
    assert!(received.iter().all(|id| ids.contains(*id)));
}

#[test]
fn a_dead_head_holds_its_line_until_replayed_or_discarded() {
    let rx = Receiver::start();
    let env = workspace(
        &subscription(
            "f",
            &rx.url("/f"),
            "ordering = \"fifo\"\nfifo_on_dead = \"hold\"\njitter_ms = 0\nmax_attempts = 1",
        ),
        &["f"],
    );
    // The first job dies (one attempt, 500).
    rx.script("/f", [Reply::Status(500)]);
    let ids_a = emit_batch(&env, &["SPEC-A"], 3);
    let run = env.run(&["drain", "--max-time", "20s"]);
    assert_eq!(rx.requests().len(), 1, "only the head went: {}", run.stderr);
    assert!(run.stderr.contains("SPEC-A → f is held"), "{}", run.stderr);
    assert!(
        run.stderr.contains(&ids_a[0]),
        "names the dead job: {}",
        run.stderr
    );
    assert_eq!(env.job_files("SPEC-A", "pending").len(), 2);
    // list and status say why.
    let list = env.run(&["list", "SPEC-A"]);
    assert!(list.stdout.contains("held"), "{}", list.stdout);
    let status = env.run(&["status"]);
    assert!(
        status.stdout.contains("SPEC-A") && status.stdout.contains("held"),
        "{}",
        status.stdout
    );
    let page = env.path().join("report.html");
    env.run(&["report", "--output", page.to_str().unwrap()]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("Held FIFO lines") && html.contains(&ids_a[0]),
        "the report names the held line"
    );
    // Another drain: still held, nothing sent.
    env.run(&["drain", "--max-time", "20s"]);
    assert_eq!(rx.requests().len(), 1);

    // Replayed (and sent at once): it goes first, then the others, in order.
    env.run(&["replay", "SPEC-A", "--delivery-id", &ids_a[0]])
        .expect(0);
    env.run(&["drain", "--max-time", "20s"]).expect(0);
    let seqs: Vec<u64> = rx
        .requests()
        .iter()
        .map(|r| line_and_sequence(r).1)
        .collect();
    assert_eq!(seqs, [1, 1, 2, 3], "the replayed head first, at its place");

    // Discarded: the line goes on without it.
    rx.script("/f", [Reply::Status(500)]);
    let ids_b = emit_batch(&env, &["SPEC-B"], 2);
    env.run(&["drain", "--max-time", "20s"]);
    assert_eq!(env.job_files("SPEC-B", "pending").len(), 1, "held");
    env.run(&["discard", "SPEC-B", "--delivery-id", &ids_b[0]])
        .expect(0);
    env.run(&["drain", "--max-time", "20s"]).expect(0);
    assert!(env.job_files("SPEC-B", "pending").is_empty());
    let last = rx.requests().last().map(line_and_sequence).unwrap();
    assert_eq!(last, ("SPEC-B".to_string(), 2));
}

#[test]
fn under_continue_the_line_goes_on_after_a_dead_head() {
    let rx = Receiver::start();
    let env = workspace(
        &subscription(
            "f",
            &rx.url("/f"),
            "ordering = \"fifo\"\njitter_ms = 0\nmax_attempts = 1",
        ),
        &["f"],
    );
    rx.script("/f", [Reply::Status(500)]);
    emit_batch(&env, &["SPEC-C"], 3);
    let run = env.run(&["drain", "--max-time", "20s"]).expect(0);
    assert!(
        run.stderr.contains("dead-lettered SPEC-C"),
        "{}",
        run.stderr
    );
    let seqs: Vec<u64> = rx
        .requests()
        .iter()
        .map(|r| line_and_sequence(r).1)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(env.job_files("SPEC-C", "dead").len(), 1);
}

#[test]
fn a_fifo_line_to_a_dead_endpoint_delays_no_other_subscription() {
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let tables = format!(
        "{}{}",
        subscription(
            "f",
            &hole.url("/f"),
            "ordering = \"fifo\"\njitter_ms = 0\nper_request_timeout_ms = 5000\nmax_attempts = 3"
        ),
        subscription("h", &rx.url("/h"), "jitter_ms = 0"),
    );
    let env = workspace(&tables, &["f", "h"]);
    emit_batch(&env, &["SPEC-1", "SPEC-2"], 50);
    let started = Instant::now();
    let drain = Spawned::new(env.cmd(&["drain", "--max-time", "60s"]).spawn().unwrap());
    rx.wait_for(100, CEILING);
    let took = started.elapsed();
    // One request per FIFO line at a time: two lines, two requests, each
    // hanging for its 5 s timeout while the healthy endpoint gets all 100.
    assert_eq!(rx.requests().len(), 100);
    assert!(
        hole.connections() <= 2,
        "one request per line: {}",
        hole.connections()
    );
    assert!(
        took < Duration::from_secs(5),
        "the healthy endpoint waited for nobody: {took:?}"
    );
    drop(drain);
}

#[test]
fn concurrent_emits_reach_a_watching_fifo_drain_in_sequence_order() {
    let rx = Receiver::start();
    let env = workspace(
        &subscription("f", &rx.url("/f"), "ordering = \"fifo\"\njitter_ms = 0"),
        &["f"],
    );
    let drain = Spawned::new(env.cmd(&["drain", "--watch"]).spawn().unwrap());
    // Eight emitters at once, each one event at a time: sequences are
    // reserved in one order and written in whatever order the emitters
    // finish, unless emit writes under its reservation.
    let emitters: Vec<Spawned> = (0..8)
        .map(|_| {
            let mut cmd = command("bash");
            cmd.arg("-c")
                .arg(format!(
                    "for i in $(seq 25); do \"$0\" --config \"$1\" emit --spec SPEC-X --event {STAGE} >/dev/null || exit 1; done"
                ))
                .arg(BIN)
                .arg(env.config_path())
                .env("SECRET_F", "fifo-secret");
            Spawned::new(cmd.spawn().unwrap())
        })
        .collect();
    for e in emitters {
        e.wait_output(RUN_CEILING, "an emitter").expect(0);
    }
    rx.wait_for(200, RUN_CEILING);
    drop(drain);
    let seqs: Vec<u64> = rx
        .requests()
        .iter()
        .map(|r| line_and_sequence(r).1)
        .collect();
    let expected: Vec<u64> = (1..=200).collect();
    assert_eq!(seqs, expected, "one line, in sequence, each once");
}

#[test]
fn a_replayed_job_goes_first_even_when_its_line_fills_the_active_set() {
    let rx = Receiver::start();
    let config = config_with(&subscription(
        "f",
        &rx.url("/f"),
        "ordering = \"fifo\"\njitter_ms = 0\nmax_attempts = 1000\ninitial_backoff_ms = 50\nbackoff_factor = 1.0\ncircuit_failures = 1000",
    ))
    .replace("auto_drain = false", "auto_drain = false\nmax_active_jobs = 4");
    let env = Env::new(&config).env("SECRET_F", "fifo-secret");
    // The first job dies at once (400); the others are refused for now.
    rx.script("/f", [Reply::Status(400)]);
    rx.set_default(Reply::Status(503));
    let ids = emit_batch(&env, &["SPEC-R"], 12);
    let drain = Spawned::new(env.cmd(&["drain", "--watch"]).spawn().unwrap());
    wait_until(CEILING, "the first job dead, the second retrying", || {
        env.job_files("SPEC-R", "dead").len() == 1 && rx.requests().len() >= 3
    });
    // Replayed while the line's later jobs fill the active set: it is
    // read at once, room or not, and goes next (seq 2 may have been in
    // flight as the replay landed).
    env.run(&["replay", "SPEC-R", "--delivery-id", &ids[0], "--no-drain"])
        .expect(0);
    let before = rx.requests().len();
    let first_of_1 = || {
        rx.requests()[before..]
            .iter()
            .position(|r| line_and_sequence(r).1 == 1)
    };
    wait_until(CEILING, "the replayed job to be sent", || {
        first_of_1().is_some()
    });
    rx.set_default(Reply::Status(204));
    wait_until(CEILING, "every job delivered", || {
        env.job_files("SPEC-R", "delivered").len() == 12
    });
    drop(drain);
    let requests = rx.requests();
    let at = before + first_of_1().unwrap();
    assert!(
        requests[before..at]
            .iter()
            .all(|r| line_and_sequence(r).1 == 2),
        "only the request under way before it"
    );
    let mut taken: Vec<u64> = Vec::new();
    for r in &requests[at..] {
        let seq = line_and_sequence(r).1;
        if taken.last() != Some(&seq) {
            taken.push(seq);
        }
    }
    assert_eq!(taken, (1..=12).collect::<Vec<u64>>(), "then in order");
}
