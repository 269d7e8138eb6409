//! W3C trace context from `emit` to the receiver: events emitted under
//! `TRACEPARENT`/`TRACESTATE` (or `--traceparent`) are delivered by the
//! real `drain` to a receiver instrumented with the OpenTelemetry Python
//! SDK (`tests/verifiers/otel_receiver.py`), whose
//! `TraceContextTextMapPropagator` must find the emitting trace id, and
//! whose server span must be a child of the attempt's span logged in the
//! evidence. Every attempt is a fresh span of the same trace; a malformed
//! value is ignored with a warning, never fatal; `history` carries
//! `trace_id` and `span_id` (JSON Lines, and the last CSV columns).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

/// `tests/verifiers/otel_receiver.py` listening on a free port: one JSON
/// line per delivery on its stdout.
struct OtelReceiver {
    child: Spawned,
    url: String,
    lines: Lines,
}

impl OtelReceiver {
    #[track_caller]
    fn start() -> OtelReceiver {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifiers/otel_receiver.py");
        let mut check = command("python3");
        check.arg(&script).arg("--self-check");
        let ready = run_command(check, b"");
        assert!(
            ready.code == 0,
            "the OpenTelemetry receiver cannot run: run tests/verifiers/install.sh (installs opentelemetry-api and -sdk from PyPI)\n{}",
            ready.stderr
        );
        let mut child = command("python3")
            .arg(&script)
            .env("PORT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let stdout = child.stdout.take().unwrap();
        let child = Spawned::new(child);
        let mut banner = String::new();
        stderr.read_line(&mut banner).unwrap();
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("otel_receiver.py did not start: {banner}"))
            .to_string();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        OtelReceiver {
            child,
            url: format!("{url}hook"),
            lines: Lines::new(stdout),
        }
    }

    /// The receiver's report of each of `delivery_ids`, waiting for them.
    fn reports(mut self, delivery_ids: &[String]) -> Vec<Value> {
        for id in delivery_ids {
            self.lines.wait_for(id, CEILING);
        }
        drop(self.child);
        let all = self.lines.all();
        delivery_ids
            .iter()
            .map(|id| {
                let line = all.lines().find(|l| l.contains(id.as_str())).unwrap();
                serde_json::from_str(line).unwrap()
            })
            .collect()
    }
}

/// `emit` for SPEC-TRACE with exactly these trace variables (none from the
/// test's own environment) and extra flags; returns the run.
fn emit(env: &Env, vars: &[(&str, &str)], flags: &[&str]) -> Run {
    let mut args = emit_plan_args("SPEC-TRACE");
    args.extend_from_slice(flags);
    let mut cmd = env.cmd(&args);
    cmd.env_remove("TRACEPARENT").env_remove("TRACESTATE");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_command(cmd, b"")
}

/// The attempt records of `history --format jsonl`.
fn history(env: &Env) -> Vec<Value> {
    let run = env
        .run(&["history", "SPEC-TRACE", "--format", "jsonl"])
        .expect(0);
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn an_opentelemetry_receiver_continues_the_emitting_trace() {
    let receiver = OtelReceiver::start();
    let env = Env::new(&config_with(&subscription("otel", &receiver.url, "")))
        .env("SECRET_OTEL", "s3cret");
    let traced = emit(
        &env,
        &[("TRACEPARENT", TRACEPARENT), ("TRACESTATE", TRACESTATE)],
        &[],
    )
    .expect(0);
    assert_eq!(traced.stderr, "", "a valid context warns of nothing");
    let untraced = emit(&env, &[], &[]).expect(0);
    let ids = [traced.ids()[0].clone(), untraced.ids()[0].clone()];
    let jobs = env.jobs("SPEC-TRACE", "pending");
    let envelope_of = |id: &str| &jobs.iter().find(|(m, _)| m["delivery_id"] == id).unwrap().1;
    assert_eq!(
        envelope_of(&ids[0])["trace"],
        serde_json::json!({"traceparent": TRACEPARENT, "tracestate": TRACESTATE})
    );
    assert_eq!(
        envelope_of(&ids[0])["schemaVersion"],
        "1.0",
        "an additive section"
    );
    assert!(envelope_of(&ids[1]).get("trace").is_none());
    env.run(&["drain", "--once"]).expect(0);
    let reports = receiver.reports(&ids);
    let records = history(&env);
    let record_of = |id: &str| records.iter().find(|r| r["delivery_id"] == id).unwrap();

    let got = &reports[0];
    assert_eq!(
        got["remote_trace_id"], TRACE_ID,
        "the propagator found the emitting trace: {got}"
    );
    assert_eq!(
        got["span_trace_id"], TRACE_ID,
        "the receiver's span joined it: {got}"
    );
    assert_eq!(got["span_parent_id"], got["remote_span_id"], "{got}");
    assert_ne!(
        got["remote_span_id"], PARENT_ID,
        "the attempt is a span of its own: {got}"
    );
    assert_eq!(got["tracestate"], TRACESTATE, "tracestate unchanged: {got}");
    let record = record_of(&ids[0]);
    assert_eq!(record["trace_id"], TRACE_ID, "{record}");
    assert_eq!(
        record["span_id"], got["remote_span_id"],
        "the evidence names the attempt's span: {record}"
    );

    let plain = &reports[1];
    assert!(
        plain["traceparent"].is_null() && plain["remote_trace_id"].is_null(),
        "{plain}"
    );
    assert_ne!(plain["span_trace_id"], TRACE_ID, "{plain}");
    let record = record_of(&ids[1]);
    assert!(
        record.get("trace_id").is_none() && record.get("span_id").is_none(),
        "{record}"
    );

    let csv = env
        .run(&["history", "SPEC-TRACE", "--format", "csv"])
        .expect(0);
    let header = csv.lines()[0];
    assert!(
        header.ends_with(",response_body,trace_id,span_id"),
        "{header}"
    );
    let row = csv
        .lines()
        .into_iter()
        .find(|l| l.contains(ids[0].as_str()))
        .unwrap();
    let span = got["remote_span_id"].as_str().unwrap();
    assert!(row.ends_with(&format!(",{TRACE_ID},{span}")), "{row}");
}

#[test]
fn every_attempt_is_a_fresh_span_of_the_same_trace() {
    let receiver = Receiver::start();
    receiver.script("/hook", [Reply::Status(503)]);
    let extra = "initial_backoff_ms = 1\njitter_ms = 0\nmax_attempts = 3\n";
    let env = Env::new(&config_with(&subscription(
        "hook",
        &receiver.url("/hook"),
        extra,
    )))
    .env("SECRET_HOOK", "s3cret");
    // The flag wins over the environment.
    let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    emit(
        &env,
        &[("TRACEPARENT", other)],
        &["--traceparent", TRACEPARENT],
    )
    .expect(0);
    env.run(&["drain", "--max-time", "30s"]).expect(0);
    let got = receiver.wait_for(2, CEILING);
    assert_eq!(got.len(), 2, "a 503, then a 204");
    let sent: Vec<&str> = got
        .iter()
        .map(|r| r.header("traceparent").unwrap())
        .collect();
    let spans: Vec<&str> = sent.iter().map(|t| t.split('-').nth(2).unwrap()).collect();
    for traceparent in &sent {
        assert!(
            traceparent.starts_with(&format!("00-{TRACE_ID}-")) && traceparent.ends_with("-01"),
            "{traceparent}"
        );
    }
    assert_ne!(spans[0], spans[1], "a fresh span id per attempt");
    assert!(
        got.iter().all(|r| r.header("tracestate").is_none()),
        "none was given"
    );
    let records = history(&env);
    let logged: Vec<&str> = records
        .iter()
        .filter_map(|r| r["span_id"].as_str())
        .collect();
    assert_eq!(logged, spans, "each attempt's evidence line names its span");
    assert!(
        records.iter().all(|r| r["trace_id"] == TRACE_ID),
        "{records:?}"
    );
}

#[test]
fn malformed_trace_values_are_ignored_with_a_warning_never_fatal() {
    let receiver = Receiver::start();
    let env = Env::new(&config_with(&subscription(
        "hook",
        &receiver.url("/hook"),
        "",
    )))
    .env("SECRET_HOOK", "s3cret");
    let bad = emit(
        &env,
        &[
            ("TRACEPARENT", "00-not-a-trace-01"),
            ("TRACESTATE", TRACESTATE),
        ],
        &[],
    )
    .expect(0);
    assert!(
        bad.stderr
            .contains("warning: traceparent `00-not-a-trace-01` is not a W3C traceparent"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr.contains("spooled without a trace context"),
        "{}",
        bad.stderr
    );
    let bad_state = emit(
        &env,
        &[("TRACEPARENT", TRACEPARENT), ("TRACESTATE", "Not Valid")],
        &[],
    )
    .expect(0);
    assert!(
        bad_state
            .stderr
            .contains("tracestate `Not Valid` is not a W3C tracestate"),
        "{}",
        bad_state.stderr
    );
    let envelopes: Vec<Value> = env
        .jobs("SPEC-TRACE", "pending")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(envelopes.len(), 2, "both events were spooled");
    assert!(envelopes.iter().any(|e| e.get("trace").is_none()));
    assert!(
        envelopes
            .iter()
            .any(|e| e["trace"] == serde_json::json!({"traceparent": TRACEPARENT}))
    );

    env.run(&["drain", "--once"]).expect(0);
    let got = receiver.wait_for(2, CEILING);
    let id_of = |run: &Run| run.ids()[0].clone();
    let untraced = got
        .iter()
        .find(|r| r.header("X-SpecKit-Id") == Some(&id_of(&bad)))
        .unwrap();
    assert_eq!(untraced.header("traceparent"), None);
    let traced = got
        .iter()
        .find(|r| r.header("X-SpecKit-Id") == Some(&id_of(&bad_state)))
        .unwrap();
    assert!(traced.header("traceparent").unwrap().contains(TRACE_ID));
    assert_eq!(
        traced.header("tracestate"),
        None,
        "the bad state was dropped"
    );
}
