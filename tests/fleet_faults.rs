//! The fleet on a bad day, continued (issue 20's review), with a real
//! nats-server: clocks that disagree with the server's (stepped with
//! libfaketime): a job queued on a host whose clock is a day ahead is sent
//! at once by a worker with a true clock, and a worker whose clock is
//! behind the server's waits for a retry on the server's clock (before: a
//! schedule set at a time the server thought past fired at once, and the
//! worker set the job aside again, in a loop); operator reads over a large
//! evidence stream stream it (bounded memory; `list` reads none); a slow
//! settle keeps its job (progress acks); a breaker bucket that cannot be
//! read or watched is said so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spec_notify::config::Relay;
use spec_notify::nats::Nats;
use spec_notify::nats::client::Outgoing;

use crate::clock::{FakeClock, faketime};
use crate::support::nats::NatsServer;
use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const SECRET: &str = "fleet-secret-not-real";
const ACK_WAIT_MS: u64 = 30_000;

/// A host's config: the relay table for `url`, then one subscription.
fn host(url: &str, hook: &str, extra: &str) -> Env {
    host_with(url, hook, extra, ACK_WAIT_MS)
}

fn host_with(url: &str, hook: &str, extra: &str, ack_wait_ms: u64) -> Env {
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_concurrency = 3\n\n\
         [spec_ops.webhooks.relay]\nurl = \"{url}\"\nstream = \"F\"\nack_wait_ms = {ack_wait_ms}\n\n{}",
        subscription("hook", hook, &format!("jitter_ms = 0\n{extra}"))
    );
    Env::new(&config).env("SECRET_HOOK", SECRET)
}

/// A connection of the test's own, with the hosts' settings.
fn connect(url: &str) -> Nats {
    Nats::connect(&Relay {
        urls: vec![url.to_string()],
        credentials_env: None,
        stream: "F".into(),
        replicas: 1,
        ack_wait_ms: ACK_WAIT_MS,
    })
    .unwrap()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The last sequence of the jobs stream: every message ever stored there
/// (relayed jobs, schedules, jobs a schedule put back).
fn jobs_stored(url: &str) -> u64 {
    let nats = connect(url);
    let stream = nats
        .call("stream info", nats.js.get_stream("F_JOBS"))
        .unwrap()
        .unwrap();
    stream.cached_info().state.last_sequence
}

#[test]
fn a_job_queued_by_a_host_a_day_ahead_is_sent_at_once_by_the_fleet() {
    let Some(lib) = faketime() else { return };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&nats.url(), &rx.url("/hook"), "");
    // The emitting host's clock is a day ahead: emit and relay run on it.
    let ahead = FakeClock::new(lib, env.path(), "+1d");
    run_command(ahead.apply(env.cmd(&emit_plan_args("SPEC-C"))), b"").expect(0);
    run_command(ahead.apply(env.cmd(&["relay"])), b"").expect(0);
    // Before: put back on a schedule for "tomorrow"; the one-shot worker
    // sent nothing, and a watching one nothing for 23 hours.
    let run = env
        .run(&["drain", "--source", "nats", "--max-time", "20s"])
        .expect(0);
    assert!(run.stderr.contains("delivered 1,"), "{}", run.stderr);
    assert_eq!(rx.requests().len(), 1);
}

#[test]
fn a_worker_behind_the_server_waits_for_a_retry_on_the_servers_clock() {
    let Some(lib) = faketime() else { return };
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Status(503)]);
    let env = host(&nats.url(), &rx.url("/hook"), "initial_backoff_ms = 4000");
    emit_plan(&env, "SPEC-C").expect(0);
    env.run(&["relay"]).expect(0);
    let behind = FakeClock::new(lib, env.path(), "-20s");
    let worker = Spawned::new(
        behind
            .apply(env.cmd(&["drain", "--source", "nats", "--watch"]))
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let got = rx.wait_for(2, CEILING);
    let waited = got[1].received_at_ms - got[0].received_at_ms;
    // Before: the schedule (written with the worker's clock, 16 s in the
    // server's past) fired at once, and the worker set the job aside again
    // and again until its own clock said the retry was due: 150 messages
    // in 20 s, where three tell the whole story (the job relayed, its
    // retry's schedule, the job the schedule put back).
    let stored = jobs_stored(&nats.url());
    assert!(
        stored <= 4,
        "{stored} messages stored in the jobs stream for one job and one retry"
    );
    assert!(
        (3_900..10_000).contains(&waited),
        "the retry went out {waited} ms after the first attempt (due after 4,000)"
    );
    worker.signal("TERM");
    let run = worker.wait_output(CEILING, "the worker");
    assert_eq!(run.code, 143, "{}", run.stderr);
}

/// Runs `cmd` to its end, its output in files under `dir`; returns its exit
/// code, stdout, its peak resident memory (kB, `VmHWM`, read while it ran)
/// and how long it took.
fn measured(mut cmd: Command, dir: &Path, name: &str) -> (i32, String, u64, Duration) {
    let out = dir.join(format!("{name}.out"));
    let started = Instant::now();
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < CEILING, "`{name}` did not end");
        if let Some(kb) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kb = peak_kb.max(kb);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let took = started.elapsed();
    let stdout = std::fs::read_to_string(&out).unwrap();
    (status.code().unwrap_or(-1), stdout, peak_kb, took)
}

#[test]
fn operator_reads_stream_the_evidence_instead_of_holding_it() {
    const RECORDS: usize = 200_000;
    let Some(server) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&server.url(), &rx.url("/hook"), "");
    let nats = connect(&server.url());
    // 200,000 delivered attempts (about 70 MB of records), published in
    // pipelined batches.
    let subject = nats.names.evidence_of("SPEC-BIG");
    let now = now_ms();
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(5000) {
        let batch = chunk
            .iter()
            .map(|i| Outgoing {
                subject: subject.clone(),
                msg_id: None,
                headers: Vec::new(),
                payload: serde_json::to_vec(&serde_json::json!({
                    "ts": "2026-01-01T00:00:00.000Z", "ts_ms": now, "delivery_id": format!("01JBIG{i:020}"),
                    "spec": "SPEC-BIG", "subscription": "hook", "event_type": "spec-auto.stage.completed",
                    "attempt": 1, "url": "http://127.0.0.1/hook", "status": 204, "error": null,
                    "latency_ms": 3, "outcome": "delivered"
                }))
                .unwrap()
                .into(),
            })
            .collect();
        for stored in nats.publish_all(batch) {
            stored.unwrap();
        }
    }
    let (code, stdout, status_kb, status_took) = measured(
        env.cmd(&["status", "--source", "nats", "--json"]),
        env.path(),
        "status",
    );
    assert_eq!(code, 0, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        json.to_string().contains("\"delivered\":200000"),
        "every delivered attempt of the last hour counts: {json}"
    );
    let (code, stdout, list_kb, list_took) =
        measured(env.cmd(&["list", "--source", "nats"]), env.path(), "list");
    assert_eq!(code, 0, "{stdout}");
    eprintln!(
        "{RECORDS} evidence records: status {} ms, {} MB peak; list {} ms, {} MB peak",
        status_took.as_millis(),
        status_kb / 1024,
        list_took.as_millis(),
        list_kb / 1024
    );
    // Before: 254 MB (status) and 251 MB (list, which needs no record):
    // the whole stream in memory.
    assert!(
        status_kb < 120 * 1024,
        "status --source nats peaked at {} MB",
        status_kb / 1024
    );
    assert!(
        list_kb < 40 * 1024,
        "list --source nats peaked at {} MB",
        list_kb / 1024
    );
}

#[test]
fn a_worker_says_when_the_breaker_bucket_is_unreadable_or_gone() {
    let Some(server) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&server.url(), &rx.url("/hook"), "");
    let mut worker = Spawned::new(
        env.cmd(&["drain", "--source", "nats", "--watch"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = Lines::new(worker.child_mut().stderr.take().unwrap());
    emit_plan(&env, "SPEC-C").expect(0);
    env.run(&["relay"]).expect(0);
    rx.wait_for(1, CEILING);
    let nats = connect(&server.url());
    let bucket = nats.bucket().unwrap();
    // Before: read as a closed circuit, silently.
    nats.call("put", bucket.put("hook", b"not json".to_vec().into()))
        .unwrap()
        .unwrap();
    stderr.wait_for(
        "the breaker state of `hook` in bucket F_CIRCUITS is not readable",
        CEILING,
    );
    // Before: the watch was started again every 500 ms, forever, saying
    // nothing, the states kept as they were.
    nats.call("delete bucket", nats.js.delete_key_value("F_CIRCUITS"))
        .unwrap()
        .unwrap();
    stderr.wait_for("cannot watch bucket F_CIRCUITS", CEILING);
    worker.signal("TERM");
    let run = worker.wait_output(CEILING, "the worker");
    assert_eq!(run.code, 143);
}

#[test]
fn a_job_whose_settle_is_slow_stays_with_its_worker() {
    const ACK_WAIT: u64 = 3000;
    let Some(server) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host_with(&server.url(), &rx.url("/hook"), "", ACK_WAIT);
    let _worker = Spawned::new(
        env.cmd(&["drain", "--source", "nats", "--watch"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    emit_plan(&env, "SPEC-C").expect(0);
    env.run(&["relay"]).expect(0);
    rx.wait_for(1, CEILING);
    // The evidence stream takes nothing more: the next job's settle keeps
    // trying to store its record (for a minute) before it acks the job.
    let nats = connect(&server.url());
    let stream = nats
        .call("stream info", nats.js.get_stream("F_EVIDENCE"))
        .unwrap()
        .unwrap();
    let mut sealed = stream.cached_info().config.clone();
    sealed.sealed = true;
    nats.call("seal", nats.js.update_stream(sealed))
        .unwrap()
        .unwrap();
    emit_plan(&env, "SPEC-C").expect(0);
    env.run(&["relay"]).expect(0);
    rx.wait_for(2, CEILING);
    // Before: nothing kept the message alive while it was settled, so after
    // `ack_wait` the server handed it out again and it was sent twice.
    std::thread::sleep(Duration::from_millis(ACK_WAIT * 3));
    let ids: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "sent again while settling: {ids:?}");
}
