//! Drain engine v2 (issue 10): a dead endpoint never delays the others.
//! A blackhole (accepts, never answers) beside a healthy receiver under a
//! cron drain, `drain --watch` and auto-drain; the circuit breaker (opens
//! after N failures, waits without using attempts, survives kill -9, one
//! probe releases the backlog); `replay`/`discard` while a request is in
//! flight; the `--max-time` bound; `max_age`; `rate_limit`.

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::blackhole::Blackhole;
use crate::support::receiver::{Receiver, Recorded, Reply};
use crate::support::*;

const SECRET: &str = "isolation-secret-not-real";
const STAGE: &str = "spec-auto.stage.completed";
const PIPELINE: &str = "spec-auto.pipeline.completed";
/// How long any awaited event may take on a busy machine.
const CEILING: Duration = Duration::from_secs(30);

/// A subscription with a secret, no jitter and a short first backoff.
fn sub(id: &str, url: &str, extra: &str) -> String {
    subscription(
        id,
        url,
        &format!("jitter_ms = 0\ninitial_backoff_ms = 50\n{extra}"),
    )
}

/// A workspace with these subscription tables (secrets set for `ids`).
fn workspace(auto_drain: bool, tables: &str, ids: &[&str]) -> Env {
    let config =
        config_with(tables).replace("auto_drain = false", &format!("auto_drain = {auto_drain}"));
    let mut env = Env::new(&config);
    for id in ids {
        env = env.env(
            &format!("SECRET_{}", id.to_uppercase().replace('-', "_")),
            SECRET,
        );
    }
    env
}

/// Emits `n` events of one type for a SPEC in one call; their delivery ids.
fn emit_many(env: &Env, spec: &str, event: &str, n: usize) -> Vec<String> {
    let lines: String = (0..n)
        .map(|_| format!("{{\"event\":{{\"type\":\"{event}\"}},\"spec\":{{\"id\":\"{spec}\"}}}}\n"))
        .collect();
    env.run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0)
        .ids()
}

fn emit_one(env: &Env, spec: &str, event: &str) -> String {
    let ids = emit_many(env, spec, event, 1);
    assert_eq!(ids.len(), 1, "one job per event: {ids:?}");
    ids[0].clone()
}

/// The evidence lines of a SPEC.
fn evidence(env: &Env, spec: &str) -> Vec<Value> {
    std::fs::read_to_string(env.evidence(spec).join("attempts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn outcomes(lines: &[Value], outcome: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["outcome"] == outcome)
        .cloned()
        .collect()
}

/// Polls `cond` until it holds; fails naming `what` after [`CEILING`].
#[track_caller]
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + CEILING;
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within {CEILING:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Receiver arrival minus the envelope's `emittedAt`: first-attempt latency.
fn latency_ms(request: &Recorded) -> i64 {
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let emitted = spec_notify::clock::parse_rfc3339(body["emittedAt"].as_str().unwrap()).unwrap();
    request.received_at_ms as i64 - emitted as i64
}

/// The delivery id a request carries.
fn id_of(request: &Recorded) -> String {
    request.header("X-SpecKit-Id").unwrap().to_string()
}

/// A drain started by the test, killed (SIGKILL) and reaped when dropped.
struct Bg(Spawned);

impl Bg {
    fn spawn(env: &Env, args: &[&str]) -> Bg {
        let child = env
            .cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Bg(Spawned::new(child))
    }

    /// Kills it and returns what it printed on stderr.
    fn kill(self) -> String {
        self.0.signal("KILL");
        self.0.wait_output(CEILING, "a killed drain").stderr
    }

    /// Waits for it to exit on its own; its exit code and stderr.
    fn wait(self) -> (Option<i32>, String) {
        let run = self.0.wait_output(RUN_CEILING, "the drain");
        (Some(run.code).filter(|&c| c >= 0), run.stderr)
    }
}

/// Background drains that emit started for this workspace (auto_drain),
/// by pid; killed when dropped so none outlives its temp folder.
struct Kicked<'a>(&'a Env);

impl Kicked<'_> {
    fn pids(&self) -> Vec<u32> {
        let marker = self.0.config_path().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                (cmdline.contains(&marker) && cmdline.contains(" drain ")).then_some(pid)
            })
            .collect()
    }
}

impl Drop for Kicked<'_> {
    fn drop(&mut self) {
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Runner {
    /// `drain --max-time 60s`, as cron starts it.
    Cron,
    /// `drain --watch`, a long-running worker.
    Watch,
    /// No drain started by hand: emit kicks one (auto_drain = true).
    Auto,
}

/// 32 jobs for a blackhole (5 s timeout), and healthy events emitted one at
/// a time while the blackhole holds its share of workers: each reaches the
/// healthy receiver within 1 s of `emittedAt`.
fn healthy_latency_beside_a_blackhole(runner: Runner, same_spec: bool) {
    const BACKLOG: usize = 32;
    const HEALTHY: usize = 10;
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let tables = format!(
        "{}{}",
        sub(
            "dead",
            &hole.url("/hook"),
            &format!("include_events = [\"{STAGE}\"]\nper_request_timeout_ms = 5000")
        ),
        sub(
            "live",
            &rx.url("/hook"),
            &format!("include_events = [\"{PIPELINE}\"]")
        ),
    );
    let env = workspace(runner == Runner::Auto, &tables, &["dead", "live"]);
    let _kicked = Kicked(&env);
    let healthy_spec = if same_spec { "SPEC-A" } else { "SPEC-B" };

    emit_many(&env, "SPEC-A", STAGE, BACKLOG);
    let _drain = match runner {
        Runner::Cron => Some(Bg::spawn(&env, &["drain", "--max-time", "60s"])),
        Runner::Watch => Some(Bg::spawn(&env, &["drain", "--watch"])),
        Runner::Auto => None,
    };
    // The dead endpoint holds max_in_flight (default 3 of 4) workers.
    hole.wait_for(3, CEILING, "the blackhole gets its share of requests");

    let mut ids = Vec::new();
    for n in 1..=HEALTHY {
        ids.push(emit_one(&env, healthy_spec, PIPELINE));
        let got = rx.wait_for(n, CEILING);
        assert_eq!(got.len(), n, "healthy event {n} delivered");
    }
    let got = rx.requests();
    assert_eq!(
        got.iter().map(id_of).collect::<Vec<_>>(),
        ids,
        "each healthy job delivered once, in order"
    );
    let pending_dead = env
        .jobs("SPEC-A", "pending")
        .iter()
        .chain(env.jobs("SPEC-A", "active").iter())
        .filter(|(m, _)| m["subscription"] == "dead")
        .count();
    assert!(
        pending_dead + hole.connections() >= BACKLOG,
        "the dead endpoint's backlog was still waiting: {pending_dead} jobs"
    );
    let latencies: Vec<i64> = got.iter().map(latency_ms).collect();
    assert!(
        latencies.iter().all(|&ms| ms < 1000),
        "{runner:?} (same SPEC: {same_spec}): first-attempt latencies {latencies:?} ms \
         beside a blackhole with {BACKLOG} jobs"
    );
}

#[test]
fn a_blackhole_in_the_same_spec_does_not_delay_a_cron_drain() {
    healthy_latency_beside_a_blackhole(Runner::Cron, true);
}

#[test]
fn a_blackhole_in_another_spec_does_not_delay_drain_watch() {
    healthy_latency_beside_a_blackhole(Runner::Watch, false);
}

#[test]
fn a_blackhole_in_the_same_spec_does_not_delay_drain_watch() {
    healthy_latency_beside_a_blackhole(Runner::Watch, true);
}

#[test]
fn a_blackhole_in_the_same_spec_does_not_delay_auto_drain() {
    healthy_latency_beside_a_blackhole(Runner::Auto, true);
}

/// The shared breaker state of a subscription, if saved.
fn circuit_file(env: &Env, id: &str) -> Option<Value> {
    let path = env
        .spool_root()
        .join(".subscriptions")
        .join(format!("{id}.json"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

#[test]
fn the_breaker_opens_after_n_failures_and_survives_kill_9() {
    const JOBS: usize = 30;
    let hole = Blackhole::start();
    let env = workspace(
        false,
        &sub(
            "dead",
            &hole.url("/hook"),
            "per_request_timeout_ms = 1000\ncircuit_failures = 5\ncircuit_cooldown = \"60s\"",
        ),
        &["dead"],
    );
    emit_many(&env, "SPEC-C", STAGE, JOBS);
    let drain = Bg::spawn(&env, &["drain", "--max-time", "60s"]);
    wait_until("the circuit opens", || {
        !outcomes(&evidence(&env, "SPEC-C"), "circuit-open").is_empty()
    });
    wait_until("requests in flight when it opened end", || {
        env.job_files("SPEC-C", "active").is_empty()
    });
    let at_open = hole.connections();
    // A window of three request timeouts: a drain that kept sending one
    // request per job would make 9 more connections in it.
    std::thread::sleep(Duration::from_secs(3));
    let after_window = hole.connections();
    let stderr = drain.kill(); // SIGKILL
    assert!(
        (5..=8).contains(&at_open),
        "5 failures open the circuit, plus at most the 3 requests in flight: {at_open} connections"
    );
    assert_eq!(
        after_window, at_open,
        "nothing sent while the circuit is open"
    );
    assert_eq!(
        stderr.matches("circuit-open").count(),
        1,
        "one warning line per transition: {stderr}"
    );

    let jobs = env.jobs("SPEC-C", "pending");
    assert_eq!(jobs.len(), JOBS, "every job waits in pending");
    let attempts: Vec<u64> = jobs
        .iter()
        .map(|(m, _)| m["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts.iter().filter(|&&a| a == 1).count(),
        at_open,
        "one attempt per connection: {attempts:?}"
    );
    assert_eq!(
        attempts.iter().filter(|&&a| a == 0).count(),
        JOBS - at_open,
        "jobs that waited used no attempt: {attempts:?}"
    );
    let log = evidence(&env, "SPEC-C");
    assert_eq!(outcomes(&log, "retry").len(), at_open, "{log:?}");
    let opened = &outcomes(&log, "circuit-open")[0];
    assert!(opened["next_attempt_at"].is_string(), "{opened}");

    let state = circuit_file(&env, "dead").expect("the state file survives the kill");
    assert_eq!(state["state"], "open", "{state}");
    assert!(state["consecutive_failures"].as_u64().unwrap() >= 5);

    // A new drain reads the shared state: it does not hammer the endpoint
    // again before the cool-down.
    let run = env.run(&["drain", "--max-time", "3s"]).expect(0);
    assert_eq!(
        hole.connections(),
        at_open,
        "the restarted drain sent nothing: {}",
        run.stderr
    );
    let again: Vec<u64> = env
        .jobs("SPEC-C", "pending")
        .iter()
        .map(|(m, _)| m["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(again, attempts, "attempt counts unchanged");
    assert_eq!(circuit_file(&env, "dead").unwrap()["state"], "open");
}

#[test]
fn one_probe_after_the_cooldown_releases_the_backlog_in_order() {
    const JOBS: usize = 12;
    const FAILURES: usize = 5;
    let rx = Receiver::start();
    rx.script("/hook", vec![Reply::Status(503); FAILURES]);
    let env = workspace(
        false,
        &sub(
            "flaky",
            &rx.url("/hook"),
            "max_in_flight = 1\ncircuit_failures = 5\ncircuit_cooldown = \"2s\"",
        ),
        &["flaky"],
    );
    let ids = emit_many(&env, "SPEC-P", STAGE, JOBS);
    let run = env.run(&["drain", "--max-time", "30s"]).expect(0);
    assert!(
        run.stderr
            .contains(&format!("delivered {JOBS}, retrying {FAILURES}")),
        "{}",
        run.stderr
    );

    let got = rx.requests();
    // Jobs 1-5 fail and open the circuit; job 6 is the probe; then the
    // backlog by due time: 7-12 (due since emit), 1-5 (due after backoff).
    let expected: Vec<&String> = ids[..FAILURES]
        .iter()
        .chain(&ids[FAILURES..])
        .chain(&ids[..FAILURES])
        .collect();
    let sent: Vec<String> = got.iter().map(id_of).collect();
    assert_eq!(
        sent.iter().collect::<Vec<_>>(),
        expected,
        "failures, one probe, then the backlog in order"
    );
    let log = evidence(&env, "SPEC-P");
    let opened = outcomes(&log, "circuit-open");
    let probe = outcomes(&log, "circuit-probe");
    let closed = outcomes(&log, "circuit-closed");
    assert_eq!(
        (opened.len(), probe.len(), closed.len()),
        (1, 1, 1),
        "one evidence line per transition: {log:#?}"
    );
    assert_eq!(opened[0]["delivery_id"], ids[FAILURES - 1].as_str());
    assert_eq!(probe[0]["delivery_id"], ids[FAILURES].as_str());
    assert_eq!(closed[0]["delivery_id"], ids[FAILURES].as_str());
    let open_ms = opened[0]["ts_ms"].as_u64().unwrap();
    let probe_at = got[FAILURES].received_at_ms;
    assert!(
        probe_at >= open_ms + 2000,
        "the probe waited out the 2 s cool-down: {} ms",
        probe_at - open_ms
    );
    let closed_ms = closed[0]["ts_ms"].as_u64().unwrap();
    assert!(
        got[FAILURES + 1..]
            .iter()
            .all(|r| r.received_at_ms >= closed_ms),
        "the backlog went after the probe's answer closed the circuit"
    );
    for name in ["circuit-open", "circuit-probe", "circuit-closed"] {
        assert_eq!(
            run.stderr.matches(name).count(),
            1,
            "one warning line for {name}: {}",
            run.stderr
        );
    }
    // Jobs that waited used no attempt while the circuit was open.
    let attempts: HashMap<String, u64> = env
        .jobs("SPEC-P", "delivered")
        .into_iter()
        .map(|(m, _)| {
            (
                m["delivery_id"].as_str().unwrap().to_string(),
                m["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let want = if n < FAILURES { 2 } else { 1 };
        assert_eq!(attempts[id], want, "job {}", n + 1);
    }
    assert_eq!(circuit_file(&env, "flaky").unwrap()["state"], "closed");
}

#[test]
fn replay_and_discard_return_at_once_while_a_request_is_in_flight() {
    let rx = Receiver::start();
    rx.script("/bad", [Reply::Status(400), Reply::Status(400)]);
    let tables = format!(
        "{}{}",
        sub(
            "bad",
            &rx.url("/bad"),
            &format!("include_events = [\"{PIPELINE}\"]")
        ),
        sub(
            "slow",
            &rx.url("/slow"),
            &format!("include_events = [\"{STAGE}\"]\nper_request_timeout_ms = 20000")
        ),
    );
    let env = workspace(false, &tables, &["bad", "slow"]);
    let dead = emit_many(&env, "SPEC-L", PIPELINE, 2);
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(env.job_files("SPEC-L", "dead").len(), 2);

    rx.script("/slow", [Reply::Slow(Duration::from_secs(5), 204)]);
    let slow = emit_one(&env, "SPEC-L", STAGE);
    let drain = Bg::spawn(&env, &["drain", "--max-time", "30s"]);
    wait_until("the slow request arrives", || {
        !rx.requests_to("/slow").is_empty()
    });

    let started = Instant::now();
    let replay = env.run(&["replay", "SPEC-L", "--delivery-id", &dead[0]]);
    let replay_took = started.elapsed();
    let started = Instant::now();
    let discard = env.run(&["discard", "SPEC-L", "--delivery-id", &dead[1]]);
    let discard_took = started.elapsed();
    let slow_delivered = env
        .jobs("SPEC-L", "delivered")
        .iter()
        .any(|(m, _)| m["delivery_id"] == slow.as_str());
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    assert_eq!(discard.code, 0, "{}", discard.stderr);
    assert!(
        !slow_delivered,
        "replay and discard ran while the 5 s request was in flight"
    );
    assert!(
        replay_took < Duration::from_secs(1),
        "replay took {replay_took:?}"
    );
    assert!(
        discard_took < Duration::from_secs(1),
        "discard took {discard_took:?}"
    );

    let (code, stderr) = drain.wait();
    assert_eq!(code, Some(0), "{stderr}");
    let delivered: HashSet<String> = env
        .jobs("SPEC-L", "delivered")
        .into_iter()
        .map(|(m, _)| m["delivery_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        delivered,
        HashSet::from([dead[0].clone(), slow.clone()]),
        "the replayed and the slow job delivered"
    );
    assert!(env.job_files("SPEC-L", "dead").is_empty(), "discarded");
    assert_eq!(
        rx.requests_to("/bad")
            .iter()
            .filter(|r| id_of(r) == dead[1])
            .count(),
        1,
        "the discarded job was not sent again"
    );
}

#[test]
fn deliveries_go_on_while_another_process_holds_drain_lock() {
    // replay and discard hold drain.lock while they move files; a drain's
    // own claims and settles need only drain.alive, so they never wait.
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Slow(Duration::from_millis(300), 204)]);
    let env = workspace(false, &sub("live", &rx.url("/hook"), ""), &["live"]);
    let ids = emit_many(&env, "SPEC-K", STAGE, 4);
    let drain = Bg::spawn(&env, &["drain", "--max-time", "30s"]);
    wait_until("the first request arrives", || {
        !rx.requests_to("/hook").is_empty()
    });
    let spool = spec_notify::spool::Spool::new(env.spool_root()).spec("SPEC-K");
    let lock = spool.lock_drain().unwrap();
    wait_until("every job delivered while drain.lock is held", || {
        env.job_files("SPEC-K", "delivered").len() == ids.len()
    });
    drop(lock);
    let (code, stderr) = drain.wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(env.job_files("SPEC-K", "active").is_empty());
    assert_eq!(rx.requests_to("/hook").len(), ids.len(), "each sent once");
}

#[test]
fn max_time_bounds_the_run_and_no_attempt_starts_after_it() {
    let hole = Blackhole::start();
    let rx = Receiver::start();
    // Each healthy request takes 200 ms: far more work than 3 s allows.
    rx.set_default(Reply::Slow(Duration::from_millis(200), 204));
    let tables = format!(
        "{}{}",
        sub(
            "dead",
            &hole.url("/hook"),
            &format!("include_events = [\"{STAGE}\"]\nper_request_timeout_ms = 5000")
        ),
        sub(
            "live",
            &rx.url("/hook"),
            &format!("include_events = [\"{PIPELINE}\"]")
        ),
    );
    let env = workspace(false, &tables, &["dead", "live"]);
    emit_many(&env, "SPEC-M", STAGE, 40);
    emit_many(&env, "SPEC-M", PIPELINE, 40);

    let started_ms = now_ms();
    let started = Instant::now();
    let run = env.run(&["drain", "--max-time", "3s"]);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        took < Duration::from_secs(3 + 5 + 5),
        "the limit plus one request timeout, with slack: took {took:?}"
    );
    let log = evidence(&env, "SPEC-M");
    let attempts: Vec<&Value> = log
        .iter()
        .filter(|l| l["outcome"] == "retry" || l["outcome"] == "delivered")
        .collect();
    let last_start = attempts
        .iter()
        .map(|l| l["ts_ms"].as_u64().unwrap())
        .max()
        .unwrap();
    // The limit counts from the drain's start, a little after ours.
    assert!(
        last_start <= started_ms + 3000 + 1000,
        "an attempt started {} ms after the drain did",
        last_start - started_ms
    );
    assert!(
        last_start >= started_ms + 2000,
        "healthy requests kept going until near the limit: the last at {} ms",
        last_start - started_ms
    );
    let delivered = env.job_files("SPEC-M", "delivered").len();
    let pending = env.job_files("SPEC-M", "pending").len();
    assert!(delivered < 40, "the limit stopped the run: {delivered}");
    assert_eq!(delivered + pending, 80, "nothing lost, nothing left active");
    assert_eq!(delivered, rx.requests().len());
}

#[test]
fn a_job_older_than_max_age_is_dead_lettered_as_expired_without_a_request() {
    let hole = Blackhole::start();
    let env = workspace(
        false,
        &sub(
            "dead",
            &hole.url("/hook"),
            "max_in_flight = 1\nper_request_timeout_ms = 3000\nmax_age = \"2s\"",
        ),
        &["dead"],
    );
    let ids = emit_many(&env, "SPEC-E", STAGE, 2);
    let run = env.run(&["drain", "--max-time", "30s"]).expect(0);
    assert_eq!(
        hole.connections(),
        1,
        "only the first job was sent; the second waited behind it"
    );
    let dead: HashMap<String, Value> = env
        .jobs("SPEC-E", "dead")
        .into_iter()
        .map(|(m, _)| (m["delivery_id"].as_str().unwrap().to_string(), m))
        .collect();
    assert_eq!(dead.len(), 2, "both expired: {}", run.stderr);
    for (id, attempts) in [(&ids[0], 1), (&ids[1], 0)] {
        assert_eq!(dead[id]["dead_reason"], "expired", "{}", dead[id]);
        assert_eq!(dead[id]["attempts"], attempts, "{}", dead[id]);
        assert!(
            dead[id]["last_error"]
                .as_str()
                .unwrap()
                .contains("max_age (2s)"),
            "says which max_age: {}",
            dead[id]
        );
    }
    assert_eq!(
        run.stderr.matches("dead-lettered SPEC-E").count(),
        2,
        "one line per dead-lettered job: {}",
        run.stderr
    );
    assert!(run.stderr.contains("expired"), "{}", run.stderr);
    let log = evidence(&env, "SPEC-E");
    let expired: Vec<&Value> = log
        .iter()
        .filter(|l| l["delivery_id"] == ids[1].as_str())
        .collect();
    assert_eq!(expired.len(), 1, "{log:#?}");
    assert_eq!(expired[0]["outcome"], "dead");
    assert!(expired[0]["status"].is_null(), "no request: {}", expired[0]);
}

#[test]
fn a_rate_limit_spaces_requests_out() {
    let rx = Receiver::start();
    let env = workspace(
        false,
        &sub("paced", &rx.url("/hook"), "rate_limit = \"2/s\""),
        &["paced"],
    );
    emit_many(&env, "SPEC-R", STAGE, 6);
    let started_ms = now_ms();
    env.run(&["drain", "--max-time", "30s"]).expect(0);
    let got = rx.requests();
    assert_eq!(got.len(), 6, "all delivered: jobs wait, they do not fail");
    // Lower bounds only. Request k cannot start before the drain did plus
    // k turns of 500 ms, however late any of them was sent.
    for (k, request) in got.iter().enumerate() {
        let after = request.received_at_ms - started_ms;
        assert!(
            after >= 500 * k as u64,
            "request {} at {after} ms: 2/s allows it no sooner than {} ms",
            k + 1,
            500 * k
        );
    }
    // (No bound on the gap between two arrivals: a request that left late
    // on a busy machine arrives closer to the next one; the bounds above
    // are what the rate promises.)
    assert_eq!(
        outcomes(&evidence(&env, "SPEC-R"), "retry").len(),
        0,
        "no job failed for the rate"
    );
}
