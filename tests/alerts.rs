//! Alert rules end to end (issue 22): a blackholed endpoint whose circuit
//! opens sends exactly one `firing` alert to a real loopback receiver and
//! to a Slack-format route (validated as Slack validates bodies), however
//! many drains evaluate and whatever is killed -9 in between, then exactly
//! one `resolved` when the endpoint is back; `repeat_interval` spaces the
//! reminders; a `command` route reads the alert on stdin; an alert route
//! that is itself down never alerts about itself; `alerts --json` lists
//! what fires; `alerts test RULE` sends a sample; `check` refuses bad rules;
//! and on NATS, a fleet circuit that opens fires one alert.

use std::time::Duration;

use serde_json::Value;

use crate::support::blackhole::Blackhole;
use crate::support::chat::{ChatReceiver, Platform};
use crate::support::nats::NatsServer;
use crate::support::receiver::{Receiver, Recorded};
use crate::support::*;

const SECRET: &str = "alert-secret-not-real-1234";
const SPEC: &str = "SPEC-ALERT";
const ALERTS_SPEC: &str = "spec-notify.alerts";
const FIRING: &str = "spec-notify.alert.firing";
const RESOLVED: &str = "spec-notify.alert.resolved";

/// The endpoint that fails: a short timeout, two failures open the
/// circuit, and a cool-down long enough that no probe closes it by itself.
fn hook(url: &str) -> String {
    subscription(
        "hook",
        url,
        "per_request_timeout_ms = 300\ncircuit_failures = 2\ncircuit_cooldown = \"10m\"\ninitial_backoff_ms = 50\njitter_ms = 0\nmax_attempts = 1000",
    )
}

/// A workspace with `tables` (subscriptions, then rules); every secret set.
fn workspace(tables: &str) -> Env {
    Env::new(&config_with(tables))
        .env("SECRET_HOOK", SECRET)
        .env("SECRET_ALERTS", SECRET)
        .env("SECRET_SLACK", SECRET)
        .env("SECRET_PAGER", SECRET)
}

fn emit(env: &Env, n: usize) {
    for _ in 0..n {
        emit_plan(env, SPEC).expect(0);
    }
}

fn spawn(env: &Env, args: &[&str]) -> Spawned {
    Spawned::new(env.cmd(args).spawn().unwrap())
}

/// `drain --watch` evaluating the rules every 100 ms.
fn watch(env: &Env) -> Spawned {
    spawn(env, &["drain", "--watch", "--alerts-interval", "100ms"])
}

fn body(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

/// The alert envelopes among `requests`, by event type.
fn alerts_of(requests: &[Recorded], event_type: &str) -> Vec<Value> {
    requests
        .iter()
        .map(body)
        .filter(|b| b["event"]["type"] == event_type)
        .collect()
}

/// `alerts --json` (any exit code) and its exit code.
fn alerts_json(env: &Env, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["alerts", "--json"];
    args.extend_from_slice(extra);
    let run = env.run(&args);
    let json = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("alerts --json: {e}\n{}\n{}", run.stdout, run.stderr));
    (run.code, json)
}

/// Waits until the rules were evaluated `n` more times (by whatever runs),
/// as the state's `evaluated_at` tells.
fn wait_for_evaluations(env: &Env, extra: &[&str], n: usize) {
    let mut seen: Vec<Value> = Vec::new();
    wait_until(CEILING, "more evaluations of the rules", || {
        let at = alerts_json(env, extra).1["evaluated_at"].clone();
        if !at.is_null() && seen.last() != Some(&at) {
            seen.push(at);
        }
        seen.len() > n
    });
}

#[test]
fn a_blackholed_endpoint_fires_one_alert_and_resolves_once_across_drains_and_kill_9() {
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let slack = ChatReceiver::start(Platform::Slack);
    let env = workspace(&format!(
        "{}{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\non = [\"circuit-open\"]\nto = \"alerts\"\n\n\
         [[spec_ops.webhooks.alerts]]\nid = \"chat\"\non = [\"circuit-open\"]\nto = \"slack\"\nsubscriptions = [\"ho*\"]\n",
        hook(&hole.url("/hook")),
        subscription(
            "alerts",
            &rx.url("/alerts"),
            "include_events = [\"spec-notify.alert.*\"]"
        ),
        subscription(
            "slack",
            slack.url(),
            "format = \"slack\"\nrate_limit = \"100/s\"\ninclude_events = [\"spec-notify.alert.*\"]"
        ),
    ));
    env.run(&["check"]).expect(0);
    emit(&env, 3);
    // Two drains evaluate at once from the start.
    let first = watch(&env);
    let second = watch(&env);
    wait_until(CEILING, "the firing alert at the receiver", || {
        !alerts_of(&rx.requests(), FIRING).is_empty()
    });
    wait_until(CEILING, "the firing alert on Slack", || {
        !slack.deliveries().is_empty()
    });
    let (code, listed) = alerts_json(&env, &[]);
    assert_eq!(code, 1, "exit 1 while an alert fires");
    let firing = listed["firing"].as_array().unwrap();
    assert_eq!(firing.len(), 2, "one per rule: {listed}");
    assert!(firing.iter().all(|f| f["subscription"] == "hook"
        && f["condition"] == "circuit-open"
        && f["command"] == "spec-notify resume hook"));

    // Many more evaluations, a kill -9 and a new drain: nothing again.
    wait_for_evaluations(&env, &[], 3);
    first.signal("KILL");
    drop(first);
    let third = watch(&env);
    wait_for_evaluations(&env, &[], 3);
    drop(second);
    drop(third);
    let fired = alerts_of(&rx.requests(), FIRING);
    assert_eq!(fired.len(), 1, "exactly one firing: {fired:?}");
    let alert = &fired[0]["alert"];
    assert_eq!(alert["rule"], "oncall");
    assert_eq!(alert["condition"], "circuit-open");
    assert_eq!(alert["subscription"], "hook");
    assert_eq!(alert["count"], 3, "three jobs wait");
    assert_eq!(alert["specs"][0]["spec"], SPEC);
    assert_eq!(alert["command"], "spec-notify resume hook");
    assert!(alert["hint"].as_str().unwrap().contains("probe"), "{alert}");
    let first_request = &alerts_of_requests(&rx.requests(), FIRING)[0];
    assert_eq!(
        first_request.header("X-SpecKit-Signature").unwrap(),
        spec_notify::sign::speckit_signature(
            &spec_notify::sign::Secret::new(SECRET.into()),
            &first_request.body
        ),
        "signed like any delivery"
    );
    let chat = slack.deliveries();
    assert_eq!(chat.len(), 1, "one firing on Slack");
    assert!(chat[0].problems.is_empty(), "{:?}", chat[0].problems);
    let text = chat[0].request.body_text();
    assert!(
        text.contains("FIRING: circuit-open on hook (rule chat)"),
        "{text}"
    );
    assert!(text.contains("spec-notify resume hook"), "{text}");

    // The endpoint comes back: it points at the receiver, an operator
    // resumes it, a one-shot drain delivers the backlog and resolves.
    env.write_config(&config_with(&format!(
        "{}{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\non = [\"circuit-open\"]\nto = \"alerts\"\n\n\
         [[spec_ops.webhooks.alerts]]\nid = \"chat\"\non = [\"circuit-open\"]\nto = \"slack\"\nsubscriptions = [\"ho*\"]\n",
        hook(&rx.url("/hook")),
        subscription("alerts", &rx.url("/alerts"), "include_events = [\"spec-notify.alert.*\"]"),
        subscription("slack", slack.url(), "format = \"slack\"\nrate_limit = \"100/s\"\ninclude_events = [\"spec-notify.alert.*\"]"),
    )));
    env.run(&["resume", "hook"]).expect(0);
    let run = env.run(&["drain", "--max-time", "30s"]).expect(0);
    assert!(
        run.stderr.contains("alert resolved: rule oncall"),
        "{}",
        run.stderr
    );
    wait_until(CEILING, "the resolved alert on Slack", || {
        slack.deliveries().len() == 2
    });
    assert_eq!(rx.requests_to("/hook").len(), 3, "the backlog went out");
    let resolved = alerts_of(&rx.requests(), RESOLVED);
    assert_eq!(resolved.len(), 1, "one resolved");
    assert_eq!(resolved[0]["alert"]["since"], alert["since"]);
    let chat = slack.deliveries();
    assert!(chat[1].problems.is_empty(), "{:?}", chat[1].problems);
    assert!(
        chat[1]
            .request
            .body_text()
            .contains("RESOLVED: circuit-open on hook")
    );
    env.run(&["drain", "--max-time", "10s"]).expect(0);
    assert_eq!(
        alerts_of(&rx.requests(), RESOLVED).len(),
        1,
        "resolved once"
    );
    assert_eq!(alerts_of(&rx.requests(), FIRING).len(), 1);
    let (code, listed) = alerts_json(&env, &[]);
    assert_eq!((code, listed["firing"].as_array().unwrap().len()), (0, 0));
}

fn alerts_of_requests(requests: &[Recorded], event_type: &str) -> Vec<Recorded> {
    requests
        .iter()
        .filter(|r| body(r)["event"]["type"] == event_type)
        .cloned()
        .collect()
}

#[test]
fn a_drain_killed_while_handing_an_alert_over_leaves_it_to_the_next_one_sent_once() {
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let (ran, pid) = (dir.path().join("ran-once"), dir.path().join("pid"));
    // The first run hangs (the drain is killed meanwhile); the next exits.
    let script = format!(
        "cat > /dev/null; if [ -e {0} ]; then exit 0; fi; touch {0}; echo $$ > {1}.tmp; mv {1}.tmp {1}; exec sleep 60",
        ran.display(),
        pid.display()
    );
    let env = workspace(&format!(
        "{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\non = [\"circuit-open\"]\nto = \"alerts\"\n\
         command = [\"/bin/sh\", \"-c\", {script:?}]\ncommand_timeout = \"2m\"\n",
        hook(&hole.url("/hook")),
        subscription("alerts", &rx.url("/alerts"), ""),
    ));
    emit(&env, 2);
    let first = watch(&env);
    wait_until(CEILING, "the command to start", || pid.exists());
    // The job is spooled before the command runs; the outbox still holds
    // the notice, claimed by the drain that dies now.
    first.signal("KILL");
    drop(first);
    let (_, state) = alerts_json(&env, &[]);
    assert_eq!(state["unsent"], 1, "{state}");
    let second = watch(&env);
    wait_until(CEILING, "the next drain to hand the notice over", || {
        alerts_json(&env, &[]).1["unsent"] == 0
    });
    wait_until(CEILING, "the firing alert at the receiver", || {
        !alerts_of(&rx.requests(), FIRING).is_empty()
    });
    wait_for_evaluations(&env, &[], 3);
    drop(second);
    let hung: i32 = std::fs::read_to_string(&pid)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(hung).unwrap(),
        rustix::process::Signal::KILL,
    );
    assert_eq!(alerts_of(&rx.requests(), FIRING).len(), 1, "sent once");
    assert_eq!(env.jobs(ALERTS_SPEC, "delivered").len(), 1, "spooled once");
    let history = env
        .run(&["history", ALERTS_SPEC, "--format", "jsonl"])
        .expect(0);
    let commands: Vec<Value> = history
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["outcome"] == "alert-command")
        .collect();
    assert_eq!(commands.len(), 1, "the second run is logged: {commands:?}");
    assert_eq!(commands[0]["subscription"], "command:oncall");
    assert_eq!(commands[0]["error"], Value::Null, "exit 0");
}

#[test]
fn repeat_interval_spaces_the_reminders() {
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let env = workspace(&format!(
        "{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\non = [\"circuit-open\"]\nto = \"alerts\"\nrepeat_interval = \"2s\"\n",
        hook(&hole.url("/hook")),
        subscription("alerts", &rx.url("/alerts"), ""),
    ));
    emit(&env, 1);
    let drain = watch(&env);
    wait_until(CEILING, "three notifications of the alert", || {
        alerts_of(&rx.requests(), FIRING).len() >= 3
    });
    drop(drain);
    let fired = alerts_of(&rx.requests(), FIRING);
    let repeats: Vec<u64> = fired
        .iter()
        .map(|b| b["alert"]["repeat"].as_u64().unwrap())
        .collect();
    assert_eq!(&repeats[..3], [0, 1, 2], "{fired:?}");
    let at: Vec<u64> = fired
        .iter()
        .map(|b| spec_notify::clock::parse_rfc3339(b["alert"]["at"].as_str().unwrap()).unwrap())
        .collect();
    for pair in at.windows(2) {
        assert!(pair[1] - pair[0] >= 2000, "reminders too close: {at:?}");
    }
    let since: Vec<&Value> = fired.iter().map(|b| &b["alert"]["since"]).collect();
    assert!(since.iter().all(|s| *s == since[0]), "one alert: {since:?}");
    assert_eq!(
        rx.requests()
            .iter()
            .map(|r| r.header("X-SpecKit-Id"))
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        rx.requests().len(),
        "each reminder is a delivery of its own"
    );
}

#[test]
fn a_command_route_reads_the_alert_on_stdin_and_its_outcome_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let script = format!(
        "cat > {}/$SPEC_NOTIFY_ALERT_STATUS.json; echo paged >&2",
        out.display()
    );
    let env = workspace(&format!(
        "{}\
         [[spec_ops.webhooks.alerts]]\nid = \"pager\"\non = [\"paused\"]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n",
        subscription("hook", "http://127.0.0.1:9/never", "dry_run = true"),
    ));
    emit(&env, 2);
    env.run(&["pause", "hook", "--reason", "maintenance INC-7"])
        .expect(0);
    let run = env.run(&["drain", "--max-time", "10s"]).expect(0);
    assert!(run.stderr.contains("command exit 0"), "{}", run.stderr);
    let firing: Value =
        serde_json::from_slice(&std::fs::read(out.join("firing.json")).unwrap()).unwrap();
    assert_eq!(firing["event"]["type"], FIRING);
    assert_eq!(firing["spec"]["id"], ALERTS_SPEC);
    let alert = &firing["alert"];
    assert_eq!(alert["condition"], "paused");
    assert_eq!(alert["subscription"], "hook");
    assert_eq!(alert["count"], 2);
    assert!(
        alert["summary"]
            .as_str()
            .unwrap()
            .contains("maintenance INC-7")
    );
    assert_eq!(alert["command"], "spec-notify resume hook");
    assert!(spec_notify::spool::is_delivery_id(
        alert["id"].as_str().unwrap()
    ));
    // `status` sees it firing (and exits 1), and sends nothing twice.
    let status = env.run(&["status", "--json"]).expect(1);
    let json: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(json["alerts"][0]["condition"], "paused", "{json}");
    env.run(&["resume", "hook"]).expect(0);
    // `status` evaluates too: the alert resolves there.
    env.run(&["status"]);
    let resolved: Value =
        serde_json::from_slice(&std::fs::read(out.join("resolved.json")).unwrap()).unwrap();
    assert_eq!(resolved["event"]["type"], RESOLVED);
    assert_eq!(resolved["alert"]["id"].as_str().unwrap().len(), 36);
    let history = env
        .run(&["history", ALERTS_SPEC, "--format", "jsonl"])
        .expect(0);
    let logged: Vec<Value> = history
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(logged.len(), 2, "{}", history.stdout);
    assert!(logged.iter().all(|r| r["outcome"] == "alert-command"
        && r["response_body"] == "paged"
        && r["error"].is_null()));
}

#[test]
fn an_alert_route_that_is_itself_down_never_alerts_about_itself() {
    let hole = Blackhole::start();
    let pager_hole = Blackhole::start();
    let env = workspace(&format!(
        "{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\nto = \"pager\"\n",
        hook(&hole.url("/hook")),
        subscription(
            "pager",
            &pager_hole.url("/pager"),
            "per_request_timeout_ms = 300\ncircuit_failures = 2\ncircuit_cooldown = \"10m\"\ninitial_backoff_ms = 50\njitter_ms = 0",
        ),
    ));
    emit(&env, 1);
    let drain = watch(&env);
    // The alert about hook goes to pager, which never answers.
    pager_hole.wait_for(2, CEILING, "the alert's delivery attempts");
    wait_until(CEILING, "pager's circuit to open", || {
        let status = env.run(&["status", "--json"]);
        let json: Value = serde_json::from_str(&status.stdout).unwrap_or(Value::Null);
        json["subscriptions"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["subscription"] == "pager" && s["circuit"] == "open")
        })
    });
    wait_for_evaluations(&env, &[], 5);
    drop(drain);
    let (code, listed) = alerts_json(&env, &[]);
    assert_eq!(code, 1);
    let about: Vec<(&str, &str)> = listed["firing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["subscription"].as_str().unwrap(),
                f["condition"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(about, [("hook", "circuit-open")], "never about pager");
    let jobs = env.run(&["list", ALERTS_SPEC, "--json"]).expect(0);
    let jobs: Value = serde_json::from_str(&jobs.stdout).unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 1, "no loop: {jobs}");
    // Its own trouble shows in status.
    let status = env.run(&["status"]).expect(1);
    assert!(
        status.stdout.contains("pager: circuit open"),
        "{}",
        status.stdout
    );
}

#[test]
fn alerts_test_sends_a_sample_through_the_routes() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let script = format!("cat > {}/sample.json", dir.path().display());
    let env = workspace(&format!(
        "{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\non = [\"dead\"]\nto = \"alerts\"\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n",
        subscription("hook", "http://127.0.0.1:9/never", "dry_run = true"),
        subscription("alerts", &rx.url("/alerts"), ""),
    ));
    let run = env.run(&["alerts", "test", "oncall"]).expect(0);
    assert!(run.stderr.contains("delivered to alerts"), "{}", run.stderr);
    let got = alerts_of(&rx.requests(), FIRING);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["alert"]["test"], true);
    assert_eq!(got[0]["event"]["test"], true);
    assert_eq!(got[0]["alert"]["subscription"], "hook");
    let sample: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sample.json")).unwrap()).unwrap();
    assert_eq!(sample["alert"]["id"], got[0]["alert"]["id"]);
    // Nothing fires for a test.
    let (code, listed) = alerts_json(&env, &[]);
    assert_eq!((code, listed["firing"].as_array().unwrap().len()), (0, 0));

    let unknown = env.run(&["alerts", "test", "nope"]).expect(2);
    assert!(
        unknown.stderr.contains("no alert rule `nope`"),
        "{}",
        unknown.stderr
    );
    assert!(
        unknown.stderr.contains("rules: oncall"),
        "{}",
        unknown.stderr
    );
    rx.set_default(crate::support::receiver::Reply::Status(500));
    let failed = env.run(&["alerts", "test", "oncall"]).expect(1);
    assert!(
        failed.stderr.contains("not delivered to alerts"),
        "{}",
        failed.stderr
    );
}

#[test]
fn check_refuses_bad_rules_naming_the_rule_and_the_key() {
    let env = workspace(&format!(
        "{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"typo\"\non = [\"circuit-opened\"]\nto = \"alerts\"\n\n\
         [[spec_ops.webhooks.alerts]]\nid = \"ghost\"\nto = \"nobody\"\n\n\
         [[spec_ops.webhooks.alerts]]\nid = \"filtered\"\nto = \"tracker\"\n",
        subscription("alerts", "http://127.0.0.1:9/a", "dry_run = true"),
        subscription(
            "tracker",
            "http://127.0.0.1:9/t",
            "dry_run = true\ninclude_events = [\"spec-kit.*\"]"
        ),
    ));
    let run = env.run(&["check"]).expect(2);
    for needle in [
        "alert rule `typo`: key `on`: unknown condition `circuit-opened` (did you mean `circuit-open`?)",
        "alert rule `ghost`: key `to`: no subscription `nobody`; subscriptions alerts can use: alerts, tracker",
        "alert rule `filtered`: key `to`: subscription `tracker` would never get spec-notify.alert.firing",
    ] {
        assert!(run.stderr.contains(needle), "{needle}\n{}", run.stderr);
    }
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn a_fleet_circuit_opening_fires_one_alert() {
    let Some(nats) = NatsServer::start() else {
        return;
    };
    let hole = Blackhole::start();
    let rx = Receiver::start();
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\n\n\
         [spec_ops.webhooks.relay]\nurl = \"{}\"\nstream = \"AL\"\n\n{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"fleet\"\non = [\"circuit-open\"]\nto = \"alerts\"\n",
        nats.url(),
        hook(&hole.url("/hook")),
        subscription("alerts", &rx.url("/alerts"), ""),
    );
    let env = Env::new(&config)
        .env("SECRET_HOOK", SECRET)
        .env("SECRET_ALERTS", SECRET);
    emit(&env, 3);
    env.run(&["relay"]).expect(0);
    let nats_watch = [
        "drain",
        "--source",
        "nats",
        "--watch",
        "--alerts-interval",
        "100ms",
    ];
    let workers = [spawn(&env, &nats_watch), spawn(&env, &nats_watch)];
    wait_until(CEILING, "the fleet's firing alert at the receiver", || {
        !alerts_of(&rx.requests(), FIRING).is_empty()
    });
    wait_for_evaluations(&env, &["--source", "nats"], 5);
    drop(workers);
    let fired = alerts_of(&rx.requests(), FIRING);
    assert_eq!(fired.len(), 1, "one alert for the fleet: {fired:?}");
    assert_eq!(fired[0]["alert"]["subscription"], "hook");
    assert_eq!(
        fired[0]["alert"]["command"],
        "spec-notify resume hook --source nats"
    );
    let (code, listed) = alerts_json(&env, &["--source", "nats"]);
    assert_eq!(code, 1);
    assert_eq!(listed["source"], "nats");
    assert_eq!(listed["firing"][0]["condition"], "circuit-open");
    // The local spool knows nothing of it: the fleet's state is in NATS.
    assert_eq!(
        alerts_json(&env, &[]).1["firing"].as_array().unwrap().len(),
        0
    );
}

#[test]
fn no_rules_no_alerts_and_alerts_says_so() {
    let env = workspace(&subscription(
        "hook",
        "http://127.0.0.1:9/x",
        "dry_run = true",
    ));
    let run = env.run(&["alerts"]).expect(0);
    assert!(
        run.stderr
            .contains("has no [[spec_ops.webhooks.alerts]] rules"),
        "{}",
        run.stderr
    );
    emit(&env, 1);
    env.run(&["drain", "--max-time", "10s"]).expect(0);
    assert!(
        !env.spool_root().join(".alerts").exists(),
        "nothing evaluated without rules"
    );
}

#[test]
fn a_probe_that_succeeds_resolves_the_alert_without_an_operator() {
    use crate::support::receiver::Reply;
    let rx = Receiver::start();
    // Two requests that outlast the timeout open the circuit; the probe
    // after the 1 s cool-down gets an answer and closes it.
    rx.script(
        "/hook",
        [
            Reply::Slow(Duration::from_secs(2), 204),
            Reply::Slow(Duration::from_secs(2), 204),
        ],
    );
    let env = workspace(&format!(
        "{}{}\
         [[spec_ops.webhooks.alerts]]\nid = \"oncall\"\non = [\"circuit-open\"]\nto = \"alerts\"\n",
        subscription(
            "hook",
            &rx.url("/hook"),
            "per_request_timeout_ms = 300\ncircuit_failures = 2\ncircuit_cooldown = \"1s\"\ninitial_backoff_ms = 50\njitter_ms = 0",
        ),
        subscription(
            "alerts",
            &rx.url("/alerts"),
            "include_events = [\"spec-notify.alert.*\"]"
        ),
    ));
    emit(&env, 1);
    let drain = watch(&env);
    wait_until(CEILING, "the alert to fire and resolve", || {
        !alerts_of(&rx.requests(), RESOLVED).is_empty()
    });
    wait_for_evaluations(&env, &[], 3);
    drop(drain);
    assert_eq!(alerts_of(&rx.requests(), FIRING).len(), 1);
    assert_eq!(alerts_of(&rx.requests(), RESOLVED).len(), 1);
    assert_eq!(
        env.jobs(SPEC, "delivered").len(),
        1,
        "the probe delivered the job"
    );
}

#[test]
fn an_unset_secret_fires_from_the_drain_and_status_neither_starts_nor_clears_it() {
    let rx = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let script = format!(
        "cat > {}/$SPEC_NOTIFY_ALERT_STATUS.json",
        dir.path().display()
    );
    let env = Env::new(&config_with(&format!(
        "{}\
         [[spec_ops.webhooks.alerts]]\nid = \"keys\"\non = [\"secret-unset\"]\ncommand = [\"/bin/sh\", \"-c\", {script:?}]\n",
        subscription("hook", &rx.url("/hook"), ""),
    )));
    emit(&env, 1);
    // `status` runs in another environment than the drain's: it does not look.
    env.run(&["status"]);
    assert!(!dir.path().join("firing.json").exists());
    // The drain cannot sign (exit 2) and says so through the alert.
    env.run(&["drain", "--max-time", "10s"]).expect(2);
    let firing: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("firing.json")).unwrap()).unwrap();
    let alert = &firing["alert"];
    assert_eq!(alert["condition"], "secret-unset");
    assert!(
        alert["summary"].as_str().unwrap().contains("SECRET_HOOK"),
        "{alert}"
    );
    assert_eq!(alert["count"], 1, "one job waits for it");
    assert_eq!(alert["command"], "spec-notify check");
    env.run(&["status"]);
    assert!(
        !dir.path().join("resolved.json").exists(),
        "status is blind to secrets"
    );
    assert_eq!(
        alerts_json(&env, &[]).1["firing"][0]["condition"],
        "secret-unset"
    );
    // The secret is set where the drain runs: it resolves there.
    let env = env.env("SECRET_HOOK", SECRET);
    env.run(&["drain", "--max-time", "10s"]).expect(0);
    assert!(dir.path().join("resolved.json").exists());
    assert_eq!(rx.requests_to("/hook").len(), 1, "and the job went out");
}
