//! status: counts per subscription, success rate, latency percentiles, last
//! success / failure, warning lines, and the exit code (1 while dead-letters
//! exist, 0 otherwise, 2 on config or SPEC errors).

use serde_json::Value;
use spec_notify::evidence::Outcome;

use crate::list::{SPEC, attempt, emit_tasks, move_job, ops_env, write_log};
use crate::support::*;

#[track_caller]
fn status_json(env: &Env, args: &[&str], code: i32) -> Value {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = env.run(&all).expect(code);
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{}", run.stdout))
}

fn sub<'a>(report: &'a Value, spec: &str, id: &str) -> &'a Value {
    report["specs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["spec"] == spec)
        .unwrap_or_else(|| panic!("no {spec} in {report}"))["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subscription"] == id)
        .unwrap_or_else(|| panic!("no {id} in {report}"))
}

#[test]
fn counts_rates_latency_and_exit_1_while_dead_letters_exist() {
    let env = ops_env("max_spool_jobs = 3");
    let first = emit_tasks(&env, SPEC, 1);
    emit_tasks(&env, SPEC, 1); // overflows one event-1 job to dead
    let dead = env.jobs(SPEC, "dead");
    assert_eq!(dead.len(), 1);
    let dead_sub = dead[0].0["subscription"].as_str().unwrap().to_string();
    let survivor = first
        .iter()
        .find(|id| **id != dead[0].0["delivery_id"])
        .unwrap();
    move_job(&env, SPEC, survivor, "delivered", |m| {
        m["attempts"] = 2.into();
    });
    let live_sub = if dead_sub == "slack" {
        "tracker"
    } else {
        "slack"
    };
    let t0 = spec_notify::clock::now_ms() - 600_000;
    write_log(
        &env,
        SPEC,
        "attempts.jsonl",
        &[
            attempt(SPEC, live_sub, t0, Outcome::Retry, Some(503), Some(40)),
            attempt(
                SPEC,
                live_sub,
                t0 + 1,
                Outcome::Delivered,
                Some(200),
                Some(10),
            ),
            attempt(
                SPEC,
                live_sub,
                t0 + 2,
                Outcome::Delivered,
                Some(200),
                Some(30),
            ),
            attempt(
                SPEC,
                live_sub,
                t0 + 3,
                Outcome::Delivered,
                Some(204),
                Some(20),
            ),
            // Not delivery attempts: ignored by the rate and the latency.
            attempt(SPEC, live_sub, t0 + 4, Outcome::Test, Some(500), Some(9000)),
            attempt(SPEC, live_sub, t0 + 5, Outcome::Discarded, None, None),
        ],
    );

    let report = status_json(&env, &[SPEC], 1);
    assert_eq!(report["dead_letters"], 1);
    let live = sub(&report, SPEC, live_sub);
    assert_eq!(live["pending"], 1);
    assert_eq!(live["delivered"], 1);
    assert_eq!(live["dead"], 0);
    assert_eq!(live["attempts"], 4);
    assert_eq!(live["successes"], 3);
    assert_eq!(live["success_rate"], 0.75);
    assert_eq!(live["latency_p50_ms"], 20);
    assert_eq!(live["latency_p95_ms"], 40);
    assert_eq!(
        live["last_success_at"],
        spec_notify::clock::rfc3339(t0 + 3).as_str()
    );
    assert_eq!(live["last_failure"], "HTTP 503");
    assert_eq!(live["warning"], Value::Null);
    let dead_one = sub(&report, SPEC, &dead_sub);
    assert_eq!(
        (dead_one["dead"].as_u64(), dead_one["pending"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(dead_one["success_rate"], Value::Null, "no attempts yet");
    assert!(
        dead_one["warning"]
            .as_str()
            .unwrap()
            .contains("1 dead-letter"),
        "{dead_one}"
    );

    let run = env.run(&["status", SPEC]).expect(1);
    let row = |id: &str| {
        *run.lines()
            .iter()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap_or_else(|| panic!("no row for {id}:\n{}", run.stdout))
    };
    let live_row = row(live_sub);
    for cell in ["75% (3/4)", "20ms", "40ms", "10m ago", "(HTTP 503)"] {
        assert!(live_row.contains(cell), "{cell:?} missing in {live_row:?}");
    }
    assert!(
        run.stdout
            .contains(&format!("warning: {dead_sub}: 1 dead-letter")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 dead-letter(s) need attention"));
    assert!(!run.stdout.contains("token=abc"), "secrets never shown");
}

#[test]
fn healthy_spec_exits_0_and_recent_failures_still_warn() {
    let env = ops_env("");
    emit_tasks(&env, SPEC, 1);
    let t0 = spec_notify::clock::now_ms() - 10_000;
    let mut records = vec![attempt(
        SPEC,
        "tracker",
        t0,
        Outcome::Delivered,
        Some(200),
        Some(15),
    )];
    records.extend(
        (1..=5).map(|i| attempt(SPEC, "tracker", t0 + i, Outcome::Retry, None, Some(5000))),
    );
    records.push(attempt(
        SPEC,
        "slack",
        t0 + 9,
        Outcome::Delivered,
        Some(200),
        Some(12),
    ));
    write_log(&env, SPEC, "attempts.jsonl", &records);

    let report = status_json(&env, &[SPEC], 0);
    assert_eq!(report["dead_letters"], 0);
    let tracker = sub(&report, SPEC, "tracker");
    assert_eq!(tracker["success_rate"].as_f64().unwrap(), 1.0 / 6.0);
    assert_eq!(tracker["last_failure"], "connection refused");
    assert_eq!(
        tracker["warning"],
        "tracker: the last 5 attempts all failed (latest: connection refused)"
    );
    assert_eq!(sub(&report, SPEC, "slack")["warning"], Value::Null);
    let run = env.run(&["status"]).expect(0);
    assert_eq!(
        run.lines()
            .iter()
            .filter(|l| l.starts_with("warning:") && !l.contains("secret for subscription"))
            .count(),
        1,
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("warning: tracker: the last 5 attempts all failed")
    );
}

#[test]
fn all_specs_and_evidence_only_specs_are_reported() {
    let env = ops_env("");
    emit_tasks(&env, "SPEC-A", 1);
    // A SPEC that only has attempts (e.g. from `spec-notify test`).
    write_log(
        &env,
        "SPEC-B",
        "attempts.jsonl",
        &[attempt(
            "SPEC-B",
            "slack",
            1_000,
            Outcome::Delivered,
            Some(200),
            Some(7),
        )],
    );
    let report = status_json(&env, &[], 0);
    let specs: Vec<&str> = report["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spec"].as_str().unwrap())
        .collect();
    assert_eq!(specs, ["SPEC-A", "SPEC-B"]);
    assert_eq!(sub(&report, "SPEC-A", "slack")["pending"], 1);
    assert_eq!(sub(&report, "SPEC-B", "slack")["latency_p50_ms"], 7);
    status_json(&env, &["SPEC-B"], 0);
}

#[test]
fn a_spec_without_a_spool_is_empty_and_exit_0_and_bad_config_exits_2() {
    let env = ops_env("");
    let report = status_json(&env, &["SPEC-NOPE"], 0);
    assert_eq!(report["dead_letters"], 0);
    assert_eq!(
        report["specs"],
        serde_json::json!([{"spec": "SPEC-NOPE", "quarantined": 0, "subscriptions": []}])
    );
    let run = env.run(&["status", "SPEC-NOPE"]).expect(0);
    assert!(
        run.stdout
            .contains("SPEC-NOPE\nno jobs and no attempts yet"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("SPEC `SPEC-NOPE` has no spool folder yet")
            && run.stderr.contains("no SPEC has a spool yet"),
        "{}",
        run.stderr
    );
    env.write_config("[spec_ops.webhooks]\nenabled = yes\n");
    let run = env.run(&["status"]).expect(2);
    assert!(run.stderr.contains("not valid TOML"), "{}", run.stderr);
}

#[test]
fn real_drain_against_a_loopback_receiver() {
    use crate::support::receiver::{Receiver, Reply};
    let rx = Receiver::start();
    rx.script("/bad", std::iter::repeat_n(Reply::Status(500), 100));
    // Not a breaker test: keep the circuit closed so every retry goes out.
    let retry = "jitter_ms = 0\ninitial_backoff_ms = 20\nmax_attempts = 2\ncircuit_failures = 100";
    let env = Env::new(&config_with(&format!(
        "{}{}",
        subscription("ok", &rx.url("/ok"), retry),
        subscription("bad", &rx.url("/bad"), retry),
    )))
    .env("SECRET_OK", "s3cret-ok")
    .env("SECRET_BAD", "s3cret-bad");
    emit_tasks(&env, SPEC, 3);
    env.run(&["drain", "--max-time", "20s"]).expect(0);
    assert_eq!(rx.requests_to("/ok").len(), 3);
    assert_eq!(rx.requests_to("/bad").len(), 6);

    let report = status_json(&env, &[SPEC], 1);
    let ok = sub(&report, SPEC, "ok");
    assert_eq!(
        (ok["delivered"].as_u64(), ok["pending"].as_u64()),
        (Some(3), Some(0))
    );
    assert_eq!(ok["success_rate"], 1.0);
    let (p50, p95) = (
        ok["latency_p50_ms"].as_u64().unwrap(),
        ok["latency_p95_ms"].as_u64().unwrap(),
    );
    assert!(p50 <= p95 && p95 < 20_000, "p50 {p50} p95 {p95}");
    assert!(ok["last_success_at"].is_string());
    assert_eq!(ok["warning"], Value::Null);
    let bad = sub(&report, SPEC, "bad");
    assert_eq!(
        (bad["dead"].as_u64(), bad["attempts"].as_u64()),
        (Some(3), Some(6))
    );
    assert_eq!(bad["success_rate"], 0.0);
    assert_eq!(bad["last_failure"], "HTTP 500");
    let warning = bad["warning"].as_str().unwrap();
    assert!(
        warning.contains("3 dead-letters") && warning.contains("last 5 attempts all failed"),
        "{warning}"
    );
    let dead = crate::list::list_json(&env, &[SPEC, "--state", "dead"]);
    assert_eq!(dead.len(), 3);
    assert!(
        dead.iter()
            .all(|j| j["last_status"] == 500 && j["attempts"] == 2)
    );
    let delivered = crate::list::list_json(&env, &[SPEC, "--state", "delivered"]);
    assert!(
        delivered
            .iter()
            .all(|j| j["subscription"] == "ok" && j["last_status"] == 204)
    );

    // Once the dead-letters are dealt with the banner clears (exit 0), but the
    // failing endpoint still warns.
    env.run(&["discard", SPEC, "--all-dead"]).expect(0);
    let report = status_json(&env, &[SPEC], 0);
    assert_eq!(report["dead_letters"], 0);
    assert!(
        sub(&report, SPEC, "bad")["warning"]
            .as_str()
            .unwrap()
            .starts_with("bad: the last 5 attempts all failed")
    );
    let csv = env.run(&["history", SPEC, "--format", "csv"]).expect(0);
    assert_eq!(
        csv.lines().len(),
        1 + 9 + 3,
        "header, 9 attempts, 3 discards"
    );
}
