//! The fleet on a bad day, continued (issue 20's review): clocks that
//! disagree with the server's. A job queued on a host whose clock is a day
//! ahead is sent at once by a worker with a true clock, and a worker whose
//! clock is behind the server's waits for a retry on the server's clock
//! (before: a schedule set at a time the server thought past fired at
//! once, and the worker set the job aside again, in a loop). Real
//! nats-server, clocks stepped with libfaketime.

use std::process::Stdio;

use spec_notify::config::Relay;
use spec_notify::nats::Nats;

use crate::clock::{FakeClock, faketime};
use crate::support::nats::NatsServer;
use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const SECRET: &str = "fleet-secret-not-real";
const ACK_WAIT_MS: u64 = 30_000;

/// A host's config: the relay table for `url`, then one subscription.
fn host(url: &str, hook: &str, extra: &str) -> Env {
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_concurrency = 3\n\n\
         [spec_ops.webhooks.relay]\nurl = \"{url}\"\nstream = \"F\"\nack_wait_ms = {ACK_WAIT_MS}\n\n{}",
        subscription("hook", hook, &format!("jitter_ms = 0\n{extra}"))
    );
    Env::new(&config).env("SECRET_HOOK", SECRET)
}

/// The last sequence of the jobs stream: every message ever stored there
/// (relayed jobs, schedules, jobs a schedule put back).
fn jobs_stored(url: &str) -> u64 {
    let nats = Nats::connect(&Relay {
        urls: vec![url.to_string()],
        credentials_env: None,
        stream: "F".into(),
        replicas: 1,
        ack_wait_ms: ACK_WAIT_MS,
    })
    .unwrap();
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
