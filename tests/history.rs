//! history: JSON Lines and CSV exports of the attempt log across rotated
//! files, oldest first; `--since` and `--subscription`; unparseable lines.

use serde_json::Value;
use spec_notify::evidence::{Outcome, Record};

use crate::list::{SPEC, attempt, emit_tasks, ops_env, write_log};
use crate::support::*;

/// Parses RFC 4180 CSV (quoted fields may hold commas, quotes, newlines).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted, "unterminated quoted field");
    assert!(
        field.is_empty() && row.is_empty(),
        "last record lacks a newline"
    );
    rows
}

/// Three log files: `.2` (oldest), `.1`, then the current one.
fn rotated_log(env: &Env) -> Vec<Record> {
    let mut tricky = attempt(SPEC, "tracker", 3_000, Outcome::Retry, None, Some(5000));
    tricky.error = Some("refused, said \"no\"\nthen hung up".into());
    tricky.next_attempt_at = Some(spec_notify::clock::rfc3339(4_000));
    let records = vec![
        attempt(SPEC, "slack", 1_000, Outcome::Retry, Some(503), Some(40)),
        attempt(
            SPEC,
            "slack",
            2_000,
            Outcome::Delivered,
            Some(200),
            Some(12),
        ),
        tricky,
        attempt(SPEC, "slack", 5_000, Outcome::Discarded, None, None),
    ];
    write_log(env, SPEC, "attempts.jsonl.2", &records[..1]);
    write_log(env, SPEC, "attempts.jsonl.1", &records[1..3]);
    write_log(env, SPEC, "attempts.jsonl", &records[3..]);
    records
}

#[test]
fn jsonl_is_every_record_as_written_oldest_first() {
    let env = ops_env("");
    let records = rotated_log(&env);
    let run = env.run(&["history", SPEC]).expect(0);
    let lines = run.lines();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for (line, record) in lines.iter().zip(&records) {
        assert_eq!(*line, serde_json::to_string(record).unwrap());
    }
    assert_eq!(run.stderr, "");
}

#[test]
fn csv_has_a_header_and_parses_back_with_commas_quotes_and_newlines() {
    let env = ops_env("");
    let records = rotated_log(&env);
    let run = env.run(&["history", SPEC, "--format", "csv"]).expect(0);
    let rows = parse_csv(&run.stdout);
    assert_eq!(
        rows[0],
        [
            "ts",
            "delivery_id",
            "spec",
            "subscription",
            "event_type",
            "attempt",
            "url",
            "status",
            "outcome",
            "latency_ms",
            "error",
            "next_attempt_at",
            "response_body",
            "trace_id",
            "span_id"
        ]
    );
    assert_eq!(rows.len(), 1 + records.len());
    let tricky = &rows[3];
    assert_eq!(tricky.len(), 15);
    assert_eq!(tricky[13..], ["", ""], "no trace context");
    assert_eq!(tricky[0], records[2].ts);
    assert_eq!(tricky[1], records[2].delivery_id);
    assert_eq!(tricky[3], "tracker");
    assert_eq!(tricky[7], "", "no status");
    assert_eq!(tricky[8], "retry");
    assert_eq!(tricky[9], "5000");
    assert_eq!(tricky[10], "refused, said \"no\"\nthen hung up");
    assert_eq!(tricky[11], "1970-01-01T00:00:04.000Z");
    assert_eq!(rows[1][7], "503");
    assert_eq!(rows[4][8], "discarded");
}

#[test]
fn since_and_subscription_narrow_the_export() {
    let env = ops_env("");
    rotated_log(&env);
    let ids = |args: &[&str]| -> Vec<u64> {
        let mut all = vec!["history", SPEC];
        all.extend_from_slice(args);
        let run = env.run(&all).expect(0);
        run.lines()
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["ts_ms"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(
        ids(&["--since", "1970-01-01T00:00:02Z"]),
        [2_000, 3_000, 5_000]
    );
    // The same instant written with an offset (once rejected: UTC only).
    assert_eq!(
        ids(&["--since", "1970-01-01T02:00:02+02:00"]),
        [2_000, 3_000, 5_000]
    );
    assert_eq!(ids(&["--since", "1970-01-01T00:00:02.5Z"]), [3_000, 5_000]);
    assert_eq!(ids(&["--subscription", "slack"]), [1_000, 2_000, 5_000]);
    assert_eq!(
        ids(&["--subscription", "slack", "--since", "1970-01-01T00:00:02Z"]),
        [2_000, 5_000]
    );
    // A duration means "that long ago": these 1970 records are all older.
    assert_eq!(ids(&["--since", "1h"]), Vec::<u64>::new());
    let run = env
        .run(&[
            "history",
            SPEC,
            "--format",
            "csv",
            "--subscription",
            "nobody",
        ])
        .expect(0);
    assert_eq!(parse_csv(&run.stdout).len(), 1, "header only");
}

#[test]
fn unparseable_lines_are_skipped_with_a_warning() {
    let env = ops_env("");
    write_log(
        &env,
        SPEC,
        "attempts.jsonl",
        &[attempt(
            SPEC,
            "slack",
            1_000,
            Outcome::Delivered,
            Some(200),
            Some(3),
        )],
    );
    let log = env.evidence(SPEC).join("attempts.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"torn\": \n");
    std::fs::write(&log, text).unwrap();
    let run = env.run(&["history", SPEC]).expect(0);
    assert_eq!(run.lines().len(), 1);
    assert!(
        run.stderr.contains("skipped 1 unparseable line in"),
        "{}",
        run.stderr
    );
}

#[test]
fn spec_with_a_spool_but_no_log_exports_nothing_and_unknown_spec_exits_0_like_list() {
    let env = ops_env("");
    emit_tasks(&env, SPEC, 1);
    let run = env.run(&["history", SPEC, "--format", "csv"]).expect(0);
    assert_eq!(run.lines().len(), 1, "header only: {}", run.stdout);
    write_log(
        &env,
        SPEC,
        "attempts.jsonl",
        &[attempt(
            SPEC,
            "slack",
            1_000,
            Outcome::Delivered,
            Some(200),
            Some(9),
        )],
    );
    let run = env
        .run(&["history", "SPEC-NOPE", "--format", "csv"])
        .expect(0);
    assert_eq!(run.lines().len(), 1, "header only: {}", run.stdout);
    assert!(
        run.stderr.contains("SPEC `SPEC-NOPE`") && run.stderr.contains(SPEC),
        "names the known SPECs: {}",
        run.stderr
    );
    let list = env.run(&["list", "SPEC-NOPE"]).expect(0);
    assert_eq!(list.stderr, run.stderr, "the same note as list");
}

#[test]
fn without_a_spec_every_specs_records_show_with_a_spec_column() {
    let env = ops_env("");
    write_log(
        &env,
        SPEC,
        "attempts.jsonl",
        &[
            attempt(SPEC, "slack", 1_000, Outcome::Retry, Some(503), Some(40)),
            attempt(
                SPEC,
                "slack",
                3_000,
                Outcome::Delivered,
                Some(200),
                Some(12),
            ),
        ],
    );
    write_log(
        &env,
        "SPEC-OTHER",
        "attempts.jsonl",
        &[attempt(
            "SPEC-OTHER",
            "tracker",
            2_000,
            Outcome::Delivered,
            Some(204),
            Some(7),
        )],
    );
    let run = env.run(&["history", "--format", "table"]).expect(0);
    let lines = run.rows();
    assert!(
        lines[0].starts_with("TIME (UTC)           SPEC"),
        "{}",
        run.stdout
    );
    let specs: Vec<&str> = lines[1..4]
        .iter()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(
        specs,
        [SPEC, "SPEC-OTHER", SPEC],
        "merged by time: {}",
        run.stdout
    );
    let jsonl = env.run(&["history", "--format", "jsonl"]).expect(0);
    assert_eq!(jsonl.lines().len(), 3, "{}", jsonl.stdout);
}

#[test]
fn the_table_shows_errors_and_the_receivers_answer_and_csv_keeps_it_guarded() {
    let env = ops_env("");
    let mut rejected = attempt(SPEC, "slack", 1_000, Outcome::Dead, Some(401), Some(7));
    rejected.response_body = Some("=HYPERLINK(\"http://evil\") bad signature\n".into());
    let mut refused = attempt(SPEC, "tracker", 2_000, Outcome::Retry, None, None);
    refused.next_attempt_at = Some(spec_notify::clock::rfc3339(3_000));
    write_log(&env, SPEC, "attempts.jsonl", &[rejected.clone(), refused]);

    // Not a terminal: JSON Lines unless asked, so pipes keep working.
    let run = env.run(&["history", SPEC]).expect(0);
    assert!(run.stdout.starts_with('{'), "{}", run.stdout);

    let run = env.run(&["history", SPEC, "--format", "table"]).expect(0);
    let rows = run.rows();
    assert!(rows[0].starts_with("TIME (UTC)"), "{}", run.stdout);
    let dead = &rows[1];
    assert!(dead.starts_with("1970-01-01 00:00:01  slack"), "{dead}");
    assert!(
        dead.contains("dead")
            && dead.contains("401")
            && dead.contains("7ms")
            && dead.contains("answer: =HYPERLINK(\"http://evil\") bad signature"),
        "{}",
        run.stdout
    );
    assert!(
        rows[2].contains("connection refused; next attempt 1970-01-01 00:00:03.000Z"),
        "{}",
        run.stdout
    );
    assert_eq!(rows.last().unwrap(), "-- 2 record(s)");

    let run = env.run(&["history", SPEC, "--format", "csv"]).expect(0);
    let csv = parse_csv(&run.stdout);
    assert_eq!(csv[0][12], "response_body");
    assert_eq!(
        csv[1][12], "'=HYPERLINK(\"http://evil\") bad signature\n",
        "a spreadsheet shows it as text, never runs it"
    );
}
