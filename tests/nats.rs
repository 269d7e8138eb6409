//! Scale-out on NATS JetStream with a real `nats-server` (support::nats):
//! two spools ("hosts") emit, `relay` moves their jobs, two
//! `drain --source nats` workers deliver each event once; a worker killed
//! mid-request, a relay that died between publishing and deleting, and a
//! server restart lose nothing; `replay`, `discard` and `history` act on
//! the streams from any host; `report` (opened in Chromium) and `metrics`
//! (checked by promtool) read them, and a worker keeps a metrics file.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::nats::{NatsCluster, NatsServer};
use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const EVENT: &str = "spec-auto.stage.completed";

fn host(nats: &NatsServer, rx: &Receiver, extra: &str) -> Env {
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_concurrency = 3\n\n\
         [spec_ops.webhooks.relay]\nurl = \"{}\"\nstream = \"T\"\n\
         # A killed worker's jobs come back after 3 s, not 30.\nack_wait_ms = 3000\n\n{}",
        nats.url(),
        subscription("hook", &rx.url("/hook"), &format!("jitter_ms = 0\n{extra}"))
    );
    Env::new(&config).env("SECRET_HOOK", "s3cret")
}

fn emit(env: &Env, spec: &str, n: usize) -> Vec<String> {
    let line = format!("{{\"event\":{{\"type\":\"{EVENT}\"}},\"spec\":{{\"id\":\"{spec}\"}}}}\n");
    let lines = line.repeat(n);
    let run = env.run_with_stdin(&["emit", "--input", "-"], lines.as_bytes());
    run.expect(0).ids()
}

fn worker(env: &Env) -> Spawned {
    Spawned::new(
        env.cmd(&["drain", "--source", "nats", "--watch"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// The jobs in the streams, by state, from `list --source nats --json`.
fn listed(env: &Env) -> BTreeMap<String, usize> {
    let run = env.run(&["list", "--source", "nats", "--json"]).expect(0);
    let items: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let mut counts = BTreeMap::new();
    for item in items {
        *counts
            .entry(item["state"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

fn ids_received(rx: &Receiver) -> Vec<String> {
    rx.requests()
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap().to_string())
        .collect()
}

#[test]
fn two_hosts_relay_and_two_workers_deliver_every_event_exactly_once() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let (a, b) = (host(&nats, &rx, ""), host(&nats, &rx, ""));
    let mut emitted: BTreeSet<String> = emit(&a, "SPEC-A", 25).into_iter().collect();
    emitted.extend(emit(&b, "SPEC-B", 25));
    assert_eq!(emitted.len(), 50);
    a.run(&["relay"]).expect(0);
    b.run(&["relay"]).expect(0);
    assert!(a.job_files("SPEC-A", "pending").is_empty());
    assert!(b.job_files("SPEC-B", "pending").is_empty());
    assert!(a.job_files("SPEC-A", "active").is_empty());
    // One view across both hosts, from either.
    assert_eq!(listed(&a).get("pending"), Some(&50));
    // The same table and JSON as the local status, from the streams.
    let status = b.run(&["status", "--source", "nats"]).expect(0);
    assert!(status.stdout.contains("SUBSCRIPTION"), "{}", status.stdout);
    let json = b.run(&["status", "--source", "nats", "--json"]).expect(0);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["source"], "nats");
    for (i, spec) in ["SPEC-A", "SPEC-B"].into_iter().enumerate() {
        assert_eq!(json["specs"][i]["spec"], spec, "{json}");
        assert_eq!(json["specs"][i]["subscriptions"][0]["subscription"], "hook");
        assert_eq!(json["specs"][i]["subscriptions"][0]["pending"], 25);
    }

    let workers = [worker(&a), worker(&b)];
    rx.wait_for(50, CEILING);
    wait_until(CEILING, "the jobs stream to empty", || {
        listed(&a).is_empty()
    });
    drop(workers);
    let got = ids_received(&rx);
    let unique: BTreeSet<String> = got.iter().cloned().collect();
    assert_eq!(unique, emitted, "every event delivered");
    assert_eq!(got.len(), 50, "and each exactly once: {got:?}");
}

#[test]
fn retries_and_dead_letters_go_through_the_streams() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    // The first attempt fails (retry), the second is refused for good
    // (dead): both settle through JetStream, not the spool.
    rx.script("/hook", [Reply::Status(503), Reply::Status(400)]);
    let a = host(&nats, &rx, "max_attempts = 3\ninitial_backoff_ms = 200");
    let ids = emit(&a, "SPEC-A", 1);
    a.run(&["relay"]).expect(0);
    let w = worker(&a);
    rx.wait_for(2, CEILING);
    wait_until(CEILING, "the job to be dead", || {
        listed(&a) == BTreeMap::from([("dead".to_string(), 1)])
    });
    drop(w);
    let got = ids_received(&rx);
    assert_eq!(got, vec![ids[0].clone(), ids[0].clone()]);
    let status = a.run(&["status", "--source", "nats"]).expect(1);
    assert!(
        status.stdout.contains("1 dead-letter(s) need attention"),
        "{}",
        status.stdout
    );
    let json = a.run(&["status", "--source", "nats", "--json"]).expect(1);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["dead_letters"], 1, "{json}");
    assert_eq!(json["specs"][0]["subscriptions"][0]["dead"], 1, "{json}");
}

#[test]
fn a_killed_worker_a_crashed_relay_and_a_server_restart_lose_nothing() {
    let Some(mut nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    // The first request hangs: the worker is killed while it waits.
    rx.script("/hook", [Reply::Slow(Duration::from_secs(20), 204)]);
    let a = host(&nats, &rx, "per_request_timeout_ms = 30000");
    let first = emit(&a, "SPEC-A", 1);

    // A relay that died after the server stored the job but before it
    // deleted its local copy leaves the job in active/: copy it there.
    let pending = a.job_files("SPEC-A", "pending");
    let saved = std::fs::read(&pending[0]).unwrap();
    a.run(&["relay"]).expect(0);
    let active = a.spool_root().join("SPEC-A/active");
    std::fs::write(active.join(pending[0].file_name().unwrap()), &saved).unwrap();
    // The next relay publishes it again: the server stores it once.
    a.run(&["relay"]).expect(0);
    assert!(a.job_files("SPEC-A", "active").is_empty());
    assert_eq!(listed(&a).get("pending"), Some(&1));

    let w1 = worker(&a);
    rx.wait_for(1, CEILING);
    w1.signal("KILL");
    drop(w1);

    // The server restarts while more jobs wait.
    let more = emit(&a, "SPEC-A", 5);
    a.run(&["relay"]).expect(0);
    nats.restart();
    let w2 = worker(&a);
    // The killed worker's job comes back after the ack wait.
    wait_until(CEILING, "every job to be delivered", || {
        let got: BTreeSet<String> = ids_received(&rx).into_iter().collect();
        first.iter().chain(&more).all(|id| got.contains(id))
    });
    wait_until(CEILING, "the jobs stream to empty", || {
        listed(&a).is_empty()
    });
    drop(w2);
    let got = ids_received(&rx);
    // Only the interrupted delivery was sent twice (same X-SpecKit-Id).
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(got.iter().filter(|id| **id == first[0]).count(), 2);
}

/// `history --source nats`: (delivery id, outcome) of every record of SPEC-A.
fn history(env: &Env) -> Vec<(String, String)> {
    let run = env
        .run(&["history", "SPEC-A", "--source", "nats", "--format", "jsonl"])
        .expect(0);
    run.stdout
        .lines()
        .map(|line| {
            let record: Value = serde_json::from_str(line).unwrap();
            (
                record["delivery_id"].as_str().unwrap().to_string(),
                record["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn replay_and_discard_act_on_the_dead_stream_and_history_reads_the_evidence_stream() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    // Both jobs are refused for good (dead); anything later is accepted.
    rx.script("/hook", [Reply::Status(400), Reply::Status(400)]);
    let a = host(&nats, &rx, "");
    let ids = emit(&a, "SPEC-A", 2);
    a.run(&["relay"]).expect(0);
    let w = worker(&a);
    wait_until(CEILING, "both jobs to be dead", || {
        listed(&a) == BTreeMap::from([("dead".to_string(), 2)])
    });

    // Nothing changes for an id that is not dead.
    let unknown = "00000000-0000-4000-8000-000000000000";
    for command in ["replay", "discard"] {
        let run = a
            .run(&[
                command,
                "SPEC-A",
                "--source",
                "nats",
                "--delivery-id",
                unknown,
            ])
            .expect(2);
        assert!(run.stderr.contains("nothing was changed"), "{}", run.stderr);
    }
    assert_eq!(listed(&a), BTreeMap::from([("dead".to_string(), 2)]));

    // Another host's operator replays one and discards the other.
    let b = host(&nats, &rx, "");
    let replay = b
        .run(&[
            "replay",
            "SPEC-A",
            "--source",
            "nats",
            "--delivery-id",
            &ids[0],
            "--json",
        ])
        .expect(0);
    assert!(replay.stdout.contains(&ids[0]), "{}", replay.stdout);
    b.run(&[
        "discard",
        "SPEC-A",
        "--source",
        "nats",
        "--delivery-id",
        &ids[1],
    ])
    .expect(0);
    // The worker delivers the replayed job under its delivery id.
    rx.wait_for(3, CEILING);
    wait_until(CEILING, "the streams to empty", || listed(&a).is_empty());
    drop(w);
    let got = ids_received(&rx);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(got[2], ids[0], "the replayed job, same id: {got:?}");

    // Every act is in the evidence stream, readable from any host.
    let seen = history(&b);
    let of = |id: &str| -> Vec<String> {
        seen.iter()
            .filter(|(d, _)| d == id)
            .map(|(_, o)| o.clone())
            .collect()
    };
    assert_eq!(of(&ids[0]), ["dead", "requeued", "delivered"], "{seen:?}");
    assert_eq!(of(&ids[1]), ["dead", "discarded"], "{seen:?}");
    // Nothing left to replay: a note, exit 0.
    b.run(&["replay", "SPEC-A", "--source", "nats", "--all-dead"])
        .expect(0);
}

#[test]
fn replay_and_discard_on_nats_take_a_unique_prefix_and_list_an_ambiguous_one() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Status(400), Reply::Status(400)]);
    let a = host(&nats, &rx, "");
    let ids = emit(&a, "SPEC-A", 2);
    // Two jobs whose ids share their first 8 hex digits, before they leave.
    let (first, second) = (
        ids[0].clone(),
        crate::list::sharing_first_group(&ids[0], &ids[1]),
    );
    crate::list::rename_job(&a, "SPEC-A", &ids[1], &second);
    a.run(&["relay"]).expect(0);
    let w = worker(&a);
    wait_until(CEILING, "both jobs to be dead", || {
        listed(&a) == BTreeMap::from([("dead".to_string(), 2)])
    });
    drop(w);

    let nats_flags = ["--source", "nats", "--delivery-id"];
    for command in ["replay", "discard"] {
        let mut args = vec![command, "SPEC-A"];
        args.extend(nats_flags);
        let run = a.run(&[&args[..], &[&first[..8]]].concat()).expect(2);
        assert!(
            run.stderr.contains("is ambiguous")
                && run.stderr.contains(&format!("{first} (dead)"))
                && run.stderr.contains(&format!("{second} (dead)"))
                && run.stderr.contains("nothing was changed"),
            "{}",
            run.stderr
        );
        let run = a.run(&[&args[..], &[&first[..7]]].concat()).expect(2);
        assert!(run.stderr.contains("too short"), "{}", run.stderr);
    }
    assert_eq!(listed(&a), BTreeMap::from([("dead".to_string(), 2)]));

    let replay = a
        .run(&[
            "replay",
            "SPEC-A",
            "--source",
            "nats",
            "--delivery-id",
            &first[..13],
            "--json",
        ])
        .expect(0);
    assert!(replay.stdout.contains(&first), "{}", replay.stdout);
    a.run(&[
        "discard",
        "SPEC-A",
        "--source",
        "nats",
        "--delivery-id",
        &second[..13],
    ])
    .expect(0);
    let seen = history(&a);
    assert!(
        seen.contains(&(first.clone(), "requeued".to_string()))
            && seen.contains(&(second.clone(), "discarded".to_string())),
        "{seen:?}"
    );
    // The replayed job waits for a worker: a prefix of it is not dead.
    let run = a
        .run(&[
            "discard",
            "SPEC-A",
            "--source",
            "nats",
            "--delivery-id",
            &first[..8],
        ])
        .expect(2);
    assert!(run.stderr.contains("waits in stream"), "{}", run.stderr);
}

#[test]
fn a_three_node_cluster_loses_a_node_during_delivery_and_every_event_is_delivered() {
    let Some(mut cluster) = NatsCluster::start() else {
        return;
    };
    let rx = Receiver::start();
    // Each answer takes a moment, so the node dies with deliveries under
    // way (a stream kept on one node would stop with it: replicas 3 carry on).
    rx.set_default(Reply::Slow(Duration::from_millis(100), 204));
    let urls = cluster
        .urls()
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_concurrency = 3\n\n\
         [spec_ops.webhooks.relay]\nurl = [{urls}]\nstream = \"C\"\nreplicas = 3\nack_wait_ms = 3000\n\n{}",
        subscription("hook", &rx.url("/hook"), "jitter_ms = 0")
    );
    let a = Env::new(&config).env("SECRET_HOOK", "s3cret");
    let emitted: BTreeSet<String> = emit(&a, "SPEC-A", 60).into_iter().collect();
    a.run(&["relay"]).expect(0);
    assert_eq!(listed(&a).get("pending"), Some(&60));

    let workers = [worker(&a), worker(&a)];
    rx.wait_for(10, CEILING);
    // The node leading the jobs stream: the harshest one to lose.
    let leader = cluster.stream_leader("C_JOBS");
    cluster.nodes[leader].kill();
    wait_until(CEILING, "every event to be delivered", || {
        let got: BTreeSet<String> = ids_received(&rx).into_iter().collect();
        got.is_superset(&emitted)
    });
    // A command may fail while the cluster elects new leaders (it says
    // so and exits 1): ask again until the streams answer empty.
    wait_until(CEILING, "the jobs stream to empty", || {
        let run = a.run(&["list", "--source", "nats", "--json"]);
        run.code == 0 && run.stdout.trim() == "[]"
    });
    drop(workers);
    let got = ids_received(&rx);
    // Nothing foreign; a repeat only under the same X-SpecKit-Id (a job
    // whose ack died with the node).
    assert!(got.iter().all(|id| emitted.contains(id)), "{got:?}");
}

#[test]
fn check_shows_the_relay_without_credentials() {
    let rx = Receiver::start();
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\n\n[spec_ops.webhooks.relay]\n\
         url = [\"nats://alice:pw-in-url@10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\n\
         credentials_env = \"NATS_TOKEN\"\nstream = \"FLEET\"\nreplicas = 3\n\n{}",
        subscription("hook", &rx.url("/"), "")
    );
    let env = Env::new(&config).env("SECRET_HOOK", "s3cret");
    // The credentials are a secret like the others: check needs them set.
    let run = env.run(&["check"]).expect(2);
    assert!(run.stderr.contains("NATS_TOKEN is unset"), "{}", run.stderr);
    let env = env.env("NATS_TOKEN", "tok-secret-value");
    let run = env.run(&["check"]).expect(0);
    assert!(
        run.stdout.contains(
            "relay:    NATS JetStream nats://10.0.0.1:4222, nats://10.0.0.2:4222; streams FLEET_*; replicas 3; credentials NATS_TOKEN (set)"
        ),
        "{}",
        run.stdout
    );
    let json = env.run(&["check", "--json"]).expect(0);
    let value: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["relay"]["replicas"], 3);
    assert_eq!(value["relay"]["credentials_set"], true);
    for out in [&run.stdout, &run.stderr, &json.stdout, &json.stderr] {
        assert!(
            !out.contains("pw-in-url") && !out.contains("tok-secret"),
            "{out}"
        );
    }
}

#[test]
fn the_nats_commands_need_a_relay_table() {
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/"), "")));
    for args in [
        &["relay"][..],
        &["drain", "--source", "nats"],
        &["list", "--source", "nats"],
        &["status", "--source", "nats"],
        &["history", "SPEC-A", "--source", "nats"],
        &["replay", "SPEC-A", "--source", "nats", "--all-dead"],
        &["discard", "SPEC-A", "--source", "nats", "--all-dead"],
        &["report", "--source", "nats"],
        &["metrics", "--source", "nats"],
    ] {
        let run = env.run(args).expect(2);
        assert!(
            run.stderr.contains("[spec_ops.webhooks.relay]"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

#[test]
fn report_and_metrics_read_the_streams_of_every_host_and_a_worker_keeps_a_metrics_file() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    // The first job is refused for good (dead); the others are accepted.
    rx.script("/hook", [Reply::Status(400)]);
    let (a, b) = (host(&nats, &rx, ""), host(&nats, &rx, ""));
    let dead_id = emit(&a, "SPEC-A", 1).remove(0);
    a.run(&["relay"]).expect(0);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("fleet.prom");
    let w = Spawned::new(
        a.cmd(&[
            "drain",
            "--source",
            "nats",
            "--watch",
            "--metrics",
            prom.to_str().unwrap(),
            "--metrics-interval",
            "100ms",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    wait_until(CEILING, "the first job to be dead", || {
        listed(&a) == BTreeMap::from([("dead".to_string(), 1)])
    });
    emit(&a, "SPEC-A", 2);
    emit(&b, "SPEC-B", 2);
    a.run(&["relay"]).expect(0);
    b.run(&["relay"]).expect(0);
    rx.wait_for(5, CEILING);
    // The worker's file follows the streams, not its host's spool.
    let read = || std::fs::read_to_string(&prom).unwrap_or_default();
    let attempts = |outcome: &str, n: usize| {
        format!(r#"spec_notify_attempts_total{{subscription="hook",outcome="{outcome}"}} {n}"#)
    };
    wait_until(
        CEILING,
        "the metrics file to show 4 delivered, 1 dead",
        || {
            let text = read();
            text.lines().any(|l| l == attempts("delivered", 4))
                && text.lines().any(|l| l == attempts("dead", 1))
        },
    );
    w.signal("TERM");
    let run = w.wait_output(CEILING, "drain --source nats --watch");
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert!(read().contains("spec_notify_dead_letters 1"), "{}", read());
    // One more job waits (no worker runs now).
    emit(&b, "SPEC-B", 1);
    b.run(&["relay"]).expect(0);
    assert_eq!(
        listed(&a),
        BTreeMap::from([("dead".to_string(), 1), ("pending".to_string(), 1)])
    );

    // metrics --source nats, from the host that emitted only SPEC-A.
    let text = a.run(&["metrics", "--source", "nats"]).expect(0).stdout;
    for line in [
        attempts("delivered", 4),
        attempts("dead", 1),
        attempts("retry", 0),
        r#"spec_notify_jobs{subscription="hook",state="pending"} 1"#.into(),
        r#"spec_notify_jobs{subscription="hook",state="dead"} 1"#.into(),
        r#"spec_notify_jobs{subscription="hook",state="delivered"} 4"#.into(),
        r#"spec_notify_attempt_duration_seconds_count{subscription="hook"} 5"#.into(),
        r#"spec_notify_health{subscription="hook",health="degraded"} 1"#.into(),
        "spec_notify_delivered_total 4".into(),
        "spec_notify_dead_letters 1".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in:\n{text}");
    }
    if let Some(promtool) = crate::support::tools::tool("promtool") {
        let checked = crate::metrics::promtool_check(&promtool, &text);
        assert_eq!(
            (
                checked.code,
                checked.stdout.as_str(),
                checked.stderr.as_str()
            ),
            (0, "", ""),
            "promtool check metrics:\n{text}"
        );
    }

    // report --source nats, from the other host, opened in Chromium.
    let Some(chromium) = crate::support::tools::Chromium::find() else {
        return;
    };
    let page = b.path().join("fleet.html");
    b.run(&[
        "report",
        "--source",
        "nats",
        "--output",
        page.to_str().unwrap(),
    ])
    .expect(0);
    let opened = chromium.dump_dom(&page);
    let dom = &opened.stdout;
    assert!(
        crate::support::tools::console_lines(&opened.stderr).is_empty(),
        "console errors:\n{}",
        opened.stderr
    );
    let section = crate::report::section;
    assert!(section(dom, "class=\"meta\"", "</p>").contains("NATS JetStream"));
    let tile = |name: &str| section(dom, &format!("data-tile=\"{name}\""), "</li>").to_string();
    for (name, want) in [
        ("Delivered", ">4<"),
        ("Pending", ">1<"),
        ("Dead-letters", ">1<"),
        ("Success rate", ">80.0%<"),
    ] {
        assert!(tile(name).contains(want), "{name}: {}", tile(name));
    }
    let row = section(dom, "data-subscription=\"hook\"", "</tr>");
    assert!(row.contains("data-health=\"degraded\""), "{row}");
    for (field, want) in [("attempts", "5"), ("pending", "1"), ("dead", "1")] {
        assert!(
            row.contains(&format!("data-field=\"{field}\">{want}</td>")),
            "{field} should be {want}: {row}"
        );
    }
    // Per SPEC: pending, delivered, dead.
    let spec_row =
        |spec: &str| section(dom, &format!("<code>{spec}</code></th>"), "</tr>").to_string();
    let counts = |p: u32, d: u32, x: u32| {
        format!(r#"<td class="num">{p}</td><td class="num">{d}</td><td class="num">{x}</td>"#)
    };
    assert!(
        spec_row("SPEC-A").contains(&counts(0, 2, 1)),
        "{}",
        spec_row("SPEC-A")
    );
    assert!(
        spec_row("SPEC-B").contains(&counts(1, 2, 0)),
        "{}",
        spec_row("SPEC-B")
    );
    let dead = section(dom, "id=\"dead\"", "</table>");
    assert!(
        dead.contains(&format!(
            "spec-notify replay SPEC-A --delivery-id {dead_id} --source nats"
        )),
        "{dead}"
    );
}

/// Publishes `payload` on `subject` the plainest way, in the NATS client
/// protocol over TCP (a stream that covers the subject stores it), as a
/// program other than spec-notify could.
fn publish_raw(nats: &NatsServer, subject: &str, payload: &[u8]) {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", nats.port)).unwrap();
    stream.set_read_timeout(Some(CEILING)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("INFO"), "{line}");
    let mut out = stream;
    write!(
        out,
        "CONNECT {{\"verbose\":false}}\r\nPUB {subject} {}\r\n",
        payload.len()
    )
    .unwrap();
    out.write_all(payload).unwrap();
    out.write_all(b"\r\nPING\r\n").unwrap();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(!line.starts_with("-ERR"), "{line}");
        if line.starts_with("PONG") {
            return;
        }
    }
}

#[test]
fn a_message_on_one_specs_lane_cannot_pick_another_specs_overrides_or_a_path() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let rx = Receiver::start();
    let a = host(
        &nats,
        &rx,
        &format!(
            "\n[spec_ops.webhooks.specs.\"SPEC-B\".hook]\nurl = \"{}\"\n",
            rx.url("/b")
        ),
    );
    emit(&a, "SPEC-A", 1);
    let job = std::fs::read_to_string(&a.job_files("SPEC-A", "pending")[0]).unwrap();
    a.run(&["relay"]).expect(0);
    // Two forged copies: on SPEC-A's lane saying SPEC-B (SPEC-B's URL and
    // secret), and on the lane of a SPEC id that is a path.
    let (meta, body) = job.split_once('\n').unwrap();
    let forged = |spec: &str, id: &str| {
        let mut meta: Value = serde_json::from_str(meta).unwrap();
        meta["spec"] = spec.into();
        meta["delivery_id"] = id.into();
        format!("{meta}\n{body}")
    };
    publish_raw(
        &nats,
        "T.jobs.hook.SPEC-A",
        forged("SPEC-B", "00000000-0000-4000-8000-00000000000b").as_bytes(),
    );
    let path = a.path().join("srv/elsewhere");
    let path = path.to_str().unwrap();
    let token: String = path.bytes().map(|b| format!("{b:02x}")).collect();
    publish_raw(
        &nats,
        &format!("T.jobs.hook.~{token}"),
        forged(path, "00000000-0000-4000-8000-00000000000c").as_bytes(),
    );

    let w = worker(&a);
    rx.wait_for(1, CEILING);
    wait_until(
        CEILING,
        "the forged messages to be in the dead stream",
        || listed(&a) == BTreeMap::from([("dead".to_string(), 2)]),
    );
    drop(w);
    assert!(rx.requests_to("/b").is_empty(), "SPEC-B's URL was not used");
    assert_eq!(rx.requests().len(), 1, "only the relayed job went out");
    assert!(!a.path().join("srv").exists());
}
