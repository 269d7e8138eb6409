//! The fleet on a bad day (issue 20), with real nats-servers: one-shot
//! workers started together keep going until nothing is due; a blackholed
//! endpoint on a 3-node cluster holds back no healthy one, gets a bounded
//! number of requests before its circuit opens and then one probe per
//! cool-down fleet-wide; 20,000 retries waiting on schedules hold no place
//! a healthy endpoint needs; `pause`/`resume --source nats` stop and start
//! every worker; `status --source nats` says when jobs stall; emitting
//! hosts need subscriptions but no secrets; a jobs stream of the first
//! layout moves to lanes with nothing lost.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::support::blackhole::Blackhole;
use crate::support::nats::{NatsCluster, NatsServer};
use crate::support::receiver::{Receiver, Recorded, Reply};
use crate::support::*;

const STAGE: &str = "spec-auto.stage.completed";
const PIPELINE: &str = "spec-auto.pipeline.completed";
const SECRET: &str = "fleet-secret-not-real";

/// A host's config: the relay table for `urls`, then the tables given.
fn host(urls: &[String], global: &str, tables: &str) -> Env {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_concurrency = 3\n{global}\n\n\
         [spec_ops.webhooks.relay]\nurl = [{}]\nstream = \"F\"\n\n{tables}",
        urls.join(", ")
    );
    Env::new(&config)
        .env("SECRET_HOOK", SECRET)
        .env("SECRET_DEAD", SECRET)
        .env("SECRET_LIVE", SECRET)
}

fn sub(id: &str, url: &str, extra: &str) -> String {
    subscription(id, url, &format!("jitter_ms = 0\n{extra}"))
}

fn emit_many(env: &Env, spec: &str, event: &str, n: usize) -> Vec<String> {
    let line = format!("{{\"event\":{{\"type\":\"{event}\"}},\"spec\":{{\"id\":\"{spec}\"}}}}\n");
    env.run_with_stdin(&["emit", "--input", "-"], line.repeat(n).as_bytes())
        .expect(0)
        .ids()
}

fn spawn(env: &Env, args: &[&str]) -> Spawned {
    Spawned::new(env.cmd(args).spawn().unwrap())
}

fn id_of(r: &Recorded) -> String {
    r.header("X-SpecKit-Id").unwrap_or_default().to_string()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `status --source nats --json` (any exit code).
fn status(env: &Env, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["status", "--source", "nats", "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", run.stdout, run.stderr));
    (run.code, json)
}

/// The fleet's circuit of one subscription, as `status` shows it.
fn circuit(env: &Env, id: &str) -> Value {
    let (_, json) = status(env, &[]);
    json["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subscription"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The evidence records of one SPEC, from the evidence stream.
fn history(env: &Env, spec: &str) -> Vec<Value> {
    let run = env
        .run(&["history", spec, "--source", "nats", "--format", "jsonl"])
        .expect(0);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn one_shot_workers_started_together_keep_going_until_nothing_is_due() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&[nats.url()], "", &sub("hook", &rx.url("/hook"), ""));
    // On a fresh prefix, with nothing to do: both set up the streams at
    // once, and both exit 0.
    let first = [
        spawn(&env, &["drain", "--source", "nats", "--max-time", "20s"]),
        spawn(&env, &["drain", "--source", "nats", "--max-time", "20s"]),
    ];
    for w in first {
        let run = w.wait_output(CEILING, "an idle one-shot worker");
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let mut emitted: BTreeSet<String> = emit_many(&env, "SPEC-A", STAGE, 200).into_iter().collect();
    emitted.extend(emit_many(&env, "SPEC-B", STAGE, 200));
    env.run(&["relay"]).expect(0);
    let workers = [
        spawn(&env, &["drain", "--source", "nats", "--max-time", "20s"]),
        spawn(&env, &["drain", "--source", "nats", "--max-time", "20s"]),
    ];
    for w in workers {
        let run = w.wait_output(CEILING, "a one-shot worker");
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let got: Vec<String> = rx.requests().iter().map(id_of).collect();
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(
        unique, emitted,
        "every relayed job delivered by one-shot runs"
    );
    assert_eq!(got.len(), 400, "and each once");
}

#[test]
fn a_blackholed_endpoint_never_holds_back_a_healthy_one_across_a_cluster() {
    const BACKLOG: usize = 500;
    const HEALTHY: usize = 20;
    const FAILURES: usize = 3;
    const WORKERS: usize = 2;
    // max_concurrency 3: a subscription's share is 2 requests per worker.
    const MAX_IN_FLIGHT: usize = 2;
    let Some(cluster) = NatsCluster::start() else {
        return;
    };
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let tables = format!(
        "{}{}",
        sub(
            "dead",
            &hole.url("/hook"),
            &format!(
                "include_events = [\"{STAGE}\"]\nper_request_timeout_ms = 1000\ncircuit_failures = {FAILURES}\ncircuit_cooldown = \"2s\""
            )
        ),
        sub(
            "live",
            &rx.url("/hook"),
            &format!("include_events = [\"{PIPELINE}\"]")
        ),
    );
    let env = host(&cluster.urls(), "", &tables.replace("\n\n", "\n"));
    env.write_config(
        &std::fs::read_to_string(env.config_path())
            .unwrap()
            .replace("stream = \"F\"", "stream = \"F\"\nreplicas = 3"),
    );
    let _relay = spawn(&env, &["relay", "--watch"]);
    let _workers: Vec<Spawned> = (0..WORKERS)
        .map(|_| spawn(&env, &["drain", "--source", "nats", "--watch"]))
        .collect();

    // Once relay and workers run (their start is not what is measured),
    // the healthy endpoint alone: its latency is the baseline.
    emit_many(&env, "SPEC-B", PIPELINE, 1);
    rx.wait_for(1, CEILING);
    let alone = healthy_latencies(&env, &rx, HEALTHY, 1);

    // 500 jobs for the blackhole, queued ahead of the healthy ones.
    emit_many(&env, "SPEC-A", STAGE, BACKLOG);
    let beside = healthy_latencies(&env, &rx, HEALTHY, 1 + HEALTHY);
    assert!(
        beside.iter().all(|&ms| ms < 1000),
        "healthy latencies beside the blackhole {beside:?} ms (alone: {alone:?})"
    );
    eprintln!(
        "fleet isolation: healthy p95 {} ms alone, {} ms beside a blackhole with {BACKLOG} jobs",
        p95(&alone),
        p95(&beside)
    );
    // At most half as long again as alone (bench/nats.sh measures the bare
    // ratio on a quiet machine); 25 ms more for the scheduling noise of the
    // other tests sharing these two cores.
    assert!(
        p95(&beside) <= p95(&alone) * 3 / 2 + 25,
        "healthy p95 {} ms beside the blackhole, {} ms alone: {beside:?} / {alone:?}",
        p95(&beside),
        p95(&alone)
    );

    // The breaker: a bounded number of requests before it opens...
    wait_until(CEILING, "the fleet's circuit to open", || {
        circuit(&env, "dead")["circuit"] == "open"
    });
    let opened = history(&env, "SPEC-A")
        .into_iter()
        .filter(|r| r["outcome"] == "circuit-open")
        .map(|r| r["ts_ms"].as_u64().unwrap())
        .min()
        .expect("a circuit-open record");
    let before_open = hole
        .accepted_at_ms()
        .iter()
        .filter(|&&t| t <= opened)
        .count();
    let bound = FAILURES + WORKERS * MAX_IN_FLIGHT;
    assert!(
        (FAILURES..=bound).contains(&before_open),
        "{before_open} requests to the blackhole before its circuit opened (bound {bound})"
    );
    // ...then one probe at a time, fleet-wide, a cool-down apart (2 s,
    // doubling; each probe times out after 1 s).
    let window = Duration::from_secs(8);
    std::thread::sleep(window);
    let accepted = hole.accepted_at_ms();
    let after: Vec<u64> = accepted
        .iter()
        .copied()
        .filter(|&t| t > opened + 1100)
        .collect();
    assert!(
        !after.is_empty() && after.len() <= 3,
        "probes after the circuit opened: {after:?} (opened at {opened})"
    );
    for pair in after.windows(2) {
        assert!(
            pair[1] - pair[0] >= 1500,
            "two probes {} ms apart: {after:?}",
            pair[1] - pair[0]
        );
    }
    let (code, _) = status(&env, &[]);
    assert_eq!(code, 1, "status exits 1 while a fleet circuit is open");
}

/// Emits healthy events one at a time; each one's latency from the end of
/// its emit to its arrival.
fn healthy_latencies(env: &Env, rx: &Receiver, n: usize, before: usize) -> Vec<u64> {
    let mut out = Vec::new();
    for i in 1..=n {
        let id = emit_many(env, "SPEC-B", PIPELINE, 1).remove(0);
        let emitted = now_ms();
        let got = rx.wait_for(before + i, CEILING);
        let arrival = got
            .iter()
            .find(|r| id_of(r) == id)
            .unwrap_or_else(|| panic!("healthy event {i} not delivered"))
            .received_at_ms;
        out.push(arrival.saturating_sub(emitted));
    }
    out
}

fn p95(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[(sorted.len() * 95).div_ceil(100).saturating_sub(1)]
}

#[test]
fn twenty_thousand_waiting_retries_do_not_delay_a_healthy_endpoint() {
    const RETRIES: usize = 20_000;
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let flaky = Receiver::start();
    let rx = Receiver::start();
    // 503 but for one answer in 500: the breaker (1,000 failures) never
    // opens, and each failed job waits ten minutes for its retry.
    let replies = (0..RETRIES).map(|i| match i % 500 {
        499 => Reply::Status(204),
        _ => Reply::Status(503),
    });
    flaky.script("/hook", replies);
    let tables = format!(
        "{}{}",
        sub(
            "dead",
            &flaky.url("/hook"),
            &format!(
                "include_events = [\"{STAGE}\"]\ncircuit_failures = 1000\ninitial_backoff_ms = 600000\nmax_attempts = 5"
            )
        ),
        sub(
            "live",
            &rx.url("/hook"),
            &format!("include_events = [\"{PIPELINE}\"]")
        ),
    );
    let env = host(&[nats.url()], "max_spool_jobs = 100000", &tables);
    emit_many(&env, "SPEC-A", STAGE, RETRIES);
    env.run(&["relay"]).expect(0);
    let _workers = [
        spawn(&env, &["drain", "--source", "nats", "--watch"]),
        spawn(&env, &["drain", "--source", "nats", "--watch"]),
    ];
    flaky.wait_for(RETRIES, Duration::from_secs(300));
    // Every failed job waits on a schedule, in no consumer's un-acked window.
    let started = Instant::now();
    wait_until(CEILING, "the retries to be scheduled", || {
        let (_, json) = status(&env, &[]);
        json["specs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["spec"] == "SPEC-A")
            .flat_map(|s| s["subscriptions"].as_array().unwrap().clone())
            .any(|s| s["subscription"] == "dead" && s["pending"] == RETRIES - RETRIES / 500)
    });
    eprintln!(
        "status over {} waiting retries answered within {:?}",
        RETRIES - RETRIES / 500,
        started.elapsed()
    );
    let _relay = spawn(&env, &["relay", "--watch"]);
    // Once the relay runs (its start is not what is measured), each
    // healthy event arrives within a second.
    emit_many(&env, "SPEC-B", PIPELINE, 1);
    rx.wait_for(1, CEILING);
    for i in 2..=11 {
        let id = emit_many(&env, "SPEC-B", PIPELINE, 1).remove(0);
        let emitted = now_ms();
        let got = rx.wait_for(i, CEILING);
        let r = got.iter().find(|r| id_of(r) == id).expect("delivered");
        assert!(
            r.received_at_ms.saturating_sub(emitted) < 1000,
            "healthy event {i} took {} ms beside {RETRIES} waiting retries",
            r.received_at_ms.saturating_sub(emitted)
        );
    }
}

#[test]
fn pause_and_resume_source_nats_stop_and_start_every_worker() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(
        &[nats.url()],
        "",
        &sub(
            "hook",
            &rx.url("/hook"),
            "circuit_failures = 2\ncircuit_cooldown = \"10m\"\ninitial_backoff_ms = 100",
        ),
    );
    let _relay = spawn(&env, &["relay", "--watch"]);
    let _workers = [
        spawn(&env, &["drain", "--source", "nats", "--watch"]),
        spawn(&env, &["drain", "--source", "nats", "--watch"]),
    ];
    emit_many(&env, "SPEC-A", STAGE, 3);
    rx.wait_for(3, CEILING);

    let run = env
        .run(&[
            "pause",
            "hook",
            "--source",
            "nats",
            "--reason",
            "maintenance",
        ])
        .expect(0);
    assert!(run.stderr.contains("paused hook"), "{}", run.stderr);
    // Every worker stops within a second.
    std::thread::sleep(Duration::from_secs(1));
    let held = emit_many(&env, "SPEC-A", STAGE, 5);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rx.requests().len(), 3, "nothing sent while paused");
    let (code, json) = status(&env, &[]);
    assert_eq!(code, 1, "{json}");
    let gate = circuit(&env, "hook");
    assert_eq!(gate["circuit"], "paused", "{gate}");
    assert_eq!(gate["paused_reason"], "maintenance");

    env.run(&["resume", "hook", "--source", "nats"]).expect(0);
    let got = rx.wait_for(8, CEILING);
    let ids: BTreeSet<String> = got.iter().skip(3).map(id_of).collect();
    assert_eq!(ids, held.into_iter().collect(), "the held jobs go out");

    // An open circuit: `resume --source nats` closes it.
    rx.script("/hook", vec![Reply::Status(503); 2]);
    let more = emit_many(&env, "SPEC-A", STAGE, 2);
    wait_until(CEILING, "the circuit to open", || {
        circuit(&env, "hook")["circuit"] == "open"
    });
    let run = env.run(&["resume", "hook", "--source", "nats"]).expect(0);
    assert!(run.stderr.contains("resumed hook"), "{}", run.stderr);
    wait_until(CEILING, "the waiting jobs to go out", || {
        let got: BTreeSet<String> = rx
            .requests()
            .iter()
            .filter(|r| r.received_at_ms > 0)
            .map(id_of)
            .collect();
        more.iter().all(|id| got.contains(id))
    });
    assert_eq!(circuit(&env, "hook")["circuit"], "closed");
}

#[test]
fn status_source_nats_says_when_jobs_wait_and_nothing_delivers_them() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&[nats.url()], "", &sub("hook", &rx.url("/hook"), ""));
    emit_many(&env, "SPEC-A", STAGE, 2);
    env.run(&["relay"]).expect(0);
    // No worker runs.
    let (code, _) = status(&env, &["--stalled-after", "10m"]);
    assert_eq!(code, 0, "due for less than 10 minutes: not stalled yet");
    std::thread::sleep(Duration::from_millis(1100));
    let run = env.run(&["status", "--source", "nats", "--stalled-after", "1s"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout.contains("stalled: 2 job(s) of hook wait")
            && run.stdout.contains("drain --source nats --watch"),
        "{}",
        run.stdout
    );
    let (_, json) = status(&env, &["--stalled-after", "1s"]);
    let gate = &json["subscriptions"][0];
    assert!(gate["stalled"].is_string(), "{json}");
    // A worker delivers them (and settles them before it exits): not
    // stalled any more.
    let run = spawn(&env, &["drain", "--source", "nats", "--max-time", "20s"])
        .wait_output(CEILING, "a one-shot worker");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(rx.requests().len(), 2);
    let (code, json) = status(&env, &["--stalled-after", "1s"]);
    assert_eq!(code, 0, "{json}");
}

#[test]
fn emitting_hosts_need_subscriptions_but_no_secrets() {
    let nats_url = "nats://127.0.0.1:4222".to_string();
    // A relay table and no subscription: nothing to fan out to, said.
    let bare = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\n\n[spec_ops.webhooks.relay]\nurl = \"{nats_url}\"\n"
    ));
    let run = bare
        .run(&["emit", "--spec", "S", "--event", STAGE])
        .expect(0);
    assert!(
        run.stderr.contains("has no subscriptions")
            && run
                .stderr
                .contains("copy the [[spec_ops.webhooks.subscriptions]] tables"),
        "{}",
        run.stderr
    );
    assert!(bare.job_files("S", "pending").is_empty());
    let run = bare.run(&["check"]).expect(0);
    assert!(
        run.stderr.contains("[spec_ops.webhooks.relay] is set but"),
        "{}",
        run.stderr
    );

    // With subscriptions and no secrets: fine for a host that relays.
    let relaying = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\n\n[spec_ops.webhooks.relay]\nurl = \"{nats_url}\"\n\n{}",
        sub("hook", "https://hooks.example.com/h", "")
    ));
    let run = relaying.run(&["check"]).expect(0);
    assert!(
        run.stderr.contains("SECRET_HOOK") && run.stderr.contains("not needed here"),
        "{}",
        run.stderr
    );
    let run = relaying.run(&["check", "--source", "nats"]).expect(2);
    assert!(run.stderr.contains("SECRET_HOOK"), "{}", run.stderr);
    let run = relaying
        .run(&["emit", "--spec", "S", "--event", STAGE])
        .expect(0);
    assert!(!run.stderr.contains("will wait for"), "{}", run.stderr);
    assert_eq!(relaying.job_files("S", "pending").len(), 1);
    // Without a relay, an event nothing matches is said too (no `-v`).
    let local = Env::new(&config_with(&sub(
        "hook",
        "https://hooks.example.com/h",
        &format!("include_events = [\"{PIPELINE}\"]"),
    )));
    let run = local
        .run(&["emit", "--spec", "S", "--event", STAGE])
        .expect(0);
    assert!(
        run.stderr.contains("no subscription matches"),
        "{}",
        run.stderr
    );
}

#[test]
fn jobs_of_the_first_layout_move_to_lanes_and_are_delivered() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&[nats.url()], "", &sub("hook", &rx.url("/hook"), ""));
    // The first layout: one subject, one shared consumer.
    let ids = first_layout(&nats.url(), 3);
    let run = spawn(&env, &["drain", "--source", "nats", "--max-time", "20s"])
        .wait_output(CEILING, "a worker on the old layout");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got: BTreeSet<String> = rx.requests().iter().map(id_of).collect();
    assert_eq!(got, ids.into_iter().collect(), "every old job delivered");
    let subjects = stream_subjects(&nats.url(), "F_JOBS");
    assert!(
        !subjects.contains(&"F.jobs".to_string()),
        "the old subject is gone: {subjects:?}"
    );
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Makes stream F_JOBS as the first layout did (subject `F.jobs`, consumer
/// `F_workers`) with `n` jobs for subscription `hook`; their delivery ids.
fn first_layout(url: &str, n: usize) -> Vec<String> {
    use async_nats::jetstream::{self, consumer, stream};
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = jetstream::new(client);
        let s = js
            .create_stream(stream::Config {
                name: "F_JOBS".into(),
                subjects: vec!["F.jobs".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                duplicate_window: Duration::from_secs(3600),
                ..Default::default()
            })
            .await
            .unwrap();
        s.create_consumer(consumer::pull::Config {
            durable_name: Some("F_workers".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
        let mut ids = Vec::new();
        for seq in 1..=n as u64 {
            let meta = spec_notify::spool::Meta::new("SPEC-OLD", "hook", STAGE, "k", seq, now_ms());
            ids.push(meta.delivery_id.clone());
            let job = spec_notify::spool::Job {
                meta,
                body: br#"{"old":true}"#.to_vec(),
            };
            js.publish("F.jobs", job.encode().into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        ids
    })
}

fn stream_subjects(url: &str, name: &str) -> Vec<String> {
    runtime().block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let mut s = js.get_stream(name).await.unwrap();
        s.info().await.unwrap().config.subjects.clone()
    })
}

/// The blocks of docs/scale-out.md marked `<!-- file: NAME -->` or
/// `<!-- run: NAME -->`: (kind, name, text).
fn guide_blocks() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/scale-out.md"),
    )
    .unwrap();
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(marker) = line
            .strip_prefix("<!-- ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        let Some((kind, name)) = marker.split_once(": ") else {
            continue;
        };
        assert!(
            lines.next().is_some_and(|l| l.starts_with("```")),
            "{marker}: a fenced block follows"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push((kind.to_string(), name.to_string(), body.join("\n") + "\n"));
    }
    out
}

#[test]
fn the_scale_out_guide_works_as_written() {
    let Some(nats_server) = crate::support::nats::server_binary() else {
        return;
    };
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    // The guide's ports and folders, moved to free ports and a temp folder;
    // its example receiver, to a real one. Nothing else changes.
    let mut swaps: Vec<(String, String)> = [4222, 4223, 4224, 6222, 6223, 6224, 8222, 8223, 8224]
        .into_iter()
        .map(|p| {
            (
                format!(":{p}"),
                format!(":{}", crate::support::nats::free_port()),
            )
        })
        .collect();
    swaps.push((
        "/var/lib/nats/".into(),
        format!("{}/nats/", dir.path().display()),
    ));
    swaps.push((
        "https://tracker.example.com/hooks/spec-kit".into(),
        rx.url("/hook"),
    ));
    let swap = |text: &str| {
        swaps
            .iter()
            .fold(text.to_string(), |t, (from, to)| t.replace(from, to))
    };
    let blocks = guide_blocks();
    let files: Vec<&String> = blocks
        .iter()
        .filter(|(kind, ..)| kind == "file")
        .map(|(_, name, _)| name)
        .collect();
    assert_eq!(
        files,
        [
            "n1.conf",
            "n2.conf",
            "n3.conf",
            "emitter.toml",
            "worker.toml"
        ],
        "the guide's files"
    );
    for (kind, name, text) in &blocks {
        if kind == "file" {
            std::fs::write(dir.path().join(name), swap(text)).unwrap();
        }
    }
    // Each line of the run blocks, as a shell would: `export` sets the
    // environment, `&` starts a process that runs on, the rest must succeed.
    let mut envs: Vec<(String, String)> = vec![("HOME".into(), dir.path().display().to_string())];
    let mut running: Vec<Spawned> = Vec::new();
    let mut outputs = Vec::new();
    for (_, _, text) in blocks.iter().filter(|(kind, ..)| kind == "run") {
        for line in text.lines() {
            let line = swap(line.split(" # ").next().unwrap().trim());
            if let Some(assign) = line.strip_prefix("export ") {
                let (var, value) = assign.split_once('=').unwrap();
                let value = match value.trim_matches('\'') {
                    "…" => SECRET.to_string(),
                    v => v.to_string(),
                };
                envs.push((var.to_string(), value));
                continue;
            }
            let background = line.ends_with('&');
            let words = shlex::split(line.trim_end_matches('&')).unwrap();
            let program = match words[0].as_str() {
                "spec-notify" => BIN.to_string(),
                "nats-server" => nats_server.display().to_string(),
                other => other.to_string(),
            };
            let mut cmd = command(&program);
            cmd.args(&words[1..]).current_dir(dir.path());
            for (k, v) in &envs {
                cmd.env(k, v);
            }
            if background {
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                running.push(Spawned::new(cmd.spawn().unwrap()));
            } else if program == "curl" {
                // The health check: asked again until JetStream is ready.
                let args: Vec<String> = words[1..].to_vec();
                wait_until(CEILING, "the cluster's health check", || {
                    let mut cmd = command("curl");
                    cmd.args(&args);
                    run_command(cmd, b"").stdout.contains("\"ok\"")
                });
            } else {
                let run = run_command(cmd, b"");
                assert_eq!(run.code, 0, "`{line}`:\n{}\n{}", run.stdout, run.stderr);
                outputs.push((line.clone(), run));
            }
        }
    }
    let check = &outputs[0];
    assert!(
        check.0.contains("emitter.toml check") && check.1.stderr.contains("not needed here"),
        "{}",
        check.1.stderr
    );
    let got = rx.wait_for(1, CEILING);
    assert_eq!(got.len(), 1, "the guide's event reached the receiver");
    assert!(got[0].header("X-SpecKit-Signature").is_some());
    // The last command, the fleet's status, shows the delivery once its
    // evidence is stored (it ran as the event was on its way).
    let last = &outputs.last().unwrap().0;
    assert!(last.contains("worker.toml status --source nats"), "{last}");
    let words = shlex::split(last).unwrap();
    wait_until(CEILING, "status to show the delivery", || {
        let mut cmd = command(BIN);
        cmd.args(&words[1..]).current_dir(dir.path());
        for (k, v) in &envs {
            cmd.env(k, v);
        }
        let run = run_command(cmd, b"");
        run.code == 0 && run.stdout.contains("SPEC-KIT-065") && run.stdout.contains("task-tracker")
    });
    drop(running);
}

#[test]
fn streams_found_with_other_settings_are_corrected_or_refused_with_the_fix() {
    use async_nats::jetstream::{self, stream};
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let env = host(&[nats.url()], "", &sub("hook", &rx.url("/hook"), ""));
    let url = nats.url();
    let make = |config: stream::Config| {
        runtime().block_on(async {
            let js = jetstream::new(async_nats::connect(&url).await.unwrap());
            let _ = js.delete_stream(&config.name).await;
            js.create_stream(config).await.unwrap();
        })
    };
    // Made by hand with a 5 s de-duplication window: a relay retried after
    // 5 s would store a job twice. Brought to an hour at connect.
    make(stream::Config {
        name: "F_JOBS".into(),
        subjects: vec!["F.jobs.>".into(), "F.retry.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        duplicate_window: Duration::from_secs(5),
        allow_message_schedules: true,
        ..Default::default()
    });
    env.run(&["status", "--source", "nats"]).expect(0);
    let window = runtime().block_on(async {
        let js = jetstream::new(async_nats::connect(&url).await.unwrap());
        let mut s = js.get_stream("F_JOBS").await.unwrap();
        s.info().await.unwrap().config.duplicate_window
    });
    assert_eq!(window, Duration::from_secs(3600));
    // A dead stream that something else made as a work queue: refused,
    // with what to do, and nothing changed.
    make(stream::Config {
        name: "F_DEAD".into(),
        subjects: vec!["F.dead.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    });
    let run = env.run(&["status", "--source", "nats"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("stream F_DEAD exists with WorkQueue retention")
            && run.stderr.contains("pick another `stream` prefix"),
        "{}",
        run.stderr
    );
}
