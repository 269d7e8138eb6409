//! list: table and JSON fields, state and subscription filters, all-SPECs
//! mode, quarantine, read-only behaviour, unknown SPECs, the `--list` form.
//! Also holds the fixtures the operator-command tests share (status,
//! history, discard): jobs in every state without a drain, attempt records.

use std::path::PathBuf;

use serde_json::Value;
use spec_notify::evidence::{Outcome, Record};

use crate::support::*;

pub const SPEC: &str = "SPEC-KIT-065";

/// Two subscriptions (`slack` carries a token in its query string) and
/// `extra` lines in the `[spec_ops.webhooks]` table.
pub fn ops_env(extra: &str) -> Env {
    Env::new(&config_with(&format!(
        "{extra}\n{}{}",
        subscription("slack", "https://hooks.example/slack?token=abc", ""),
        subscription("tracker", "https://tracker.example/hook", ""),
    )))
}

/// Emits `n` task events for `spec` through the real binary; returns the
/// delivery ids in emit order (each event fans out to every subscription).
pub fn emit_tasks(env: &Env, spec: &str, n: usize) -> Vec<String> {
    let lines: String = (1..=n)
        .map(|i| {
            format!(
                "{{\"spec\":{{\"id\":\"{spec}\"}},\"event\":{{\"type\":\"spec-kit.task.completed\",\"status\":\"success\"}},\"task\":{{\"id\":\"T{i}\"}}}}\n"
            )
        })
        .collect();
    let run = env
        .run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0);
    run.ids()
}

/// The job file holding `id`, in whichever state folder it is.
#[track_caller]
pub fn job_path(env: &Env, spec: &str, id: &str) -> PathBuf {
    ["pending", "active", "delivered", "dead"]
        .iter()
        .flat_map(|state| env.job_files(spec, state))
        .find(|p| p.to_string_lossy().ends_with(&format!("-{id}.job")))
        .unwrap_or_else(|| panic!("no job {id} in {spec}"))
}

/// Moves a job to `state` in the documented format (metadata line, newline,
/// envelope), letting `edit` change its metadata first — what a drain
/// would leave behind.
pub fn move_job(env: &Env, spec: &str, id: &str, state: &str, edit: impl FnOnce(&mut Value)) {
    let from = job_path(env, spec, id);
    let text = std::fs::read_to_string(&from).unwrap();
    let (meta, body) = text.split_once('\n').unwrap();
    let mut meta: Value = serde_json::from_str(meta).unwrap();
    meta["state"] = Value::from(state);
    edit(&mut meta);
    let dir = env.spool_root().join(spec).join(state);
    std::fs::create_dir_all(&dir).unwrap();
    let to = dir.join(from.file_name().unwrap());
    std::fs::write(&to, format!("{meta}\n{body}")).unwrap();
    if to != from {
        std::fs::remove_file(&from).unwrap();
    }
}

/// Gives a job another delivery id (file name and metadata), in the folder
/// it is in: to make ids that start alike.
pub fn rename_job(env: &Env, spec: &str, id: &str, new_id: &str) {
    let from = job_path(env, spec, id);
    let text = std::fs::read_to_string(&from).unwrap();
    let (meta, body) = text.split_once('\n').unwrap();
    let mut meta: Value = serde_json::from_str(meta).unwrap();
    meta["delivery_id"] = Value::from(new_id);
    let name = from
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(id, new_id);
    std::fs::write(from.with_file_name(name), format!("{meta}\n{body}")).unwrap();
    std::fs::remove_file(&from).unwrap();
}

/// An id that starts with the first 8 hex digits of `id` and differs from
/// it in the next group: a prefix of 8 names both, one of 13 names one.
pub fn sharing_first_group(id: &str, other: &str) -> String {
    let group = match &id[9..13] {
        "ffff" => "0000",
        _ => "ffff",
    };
    format!("{}{group}{}", &id[..9], &other[13..])
}

/// A delivery attempt record as the drain writes it.
pub fn attempt(
    spec: &str,
    sub: &str,
    ts_ms: u64,
    outcome: Outcome,
    status: Option<u16>,
    latency_ms: Option<u64>,
) -> Record {
    Record {
        ts: spec_notify::clock::rfc3339(ts_ms),
        ts_ms,
        delivery_id: format!("00000000-0000-4000-8000-{ts_ms:012}"),
        spec: spec.into(),
        subscription: sub.into(),
        event_type: "spec-kit.task.completed".into(),
        attempt: 1,
        url: "https://tracker.example/hook".into(),
        status,
        error: status.is_none().then(|| "connection refused".to_string()),
        latency_ms,
        outcome,
        response_body: None,
        next_attempt_at: None,
        request: None,
        trace_id: None,
        span_id: None,
    }
}

/// Appends records to one attempt-log file (`attempts.jsonl`, `.1`, …).
pub fn write_log(env: &Env, spec: &str, file: &str, records: &[Record]) {
    let dir = env.evidence(spec);
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
    }
    let path = dir.join(file);
    let mut old = std::fs::read_to_string(&path).unwrap_or_default();
    old.push_str(&text);
    std::fs::write(path, old).unwrap();
}

/// `list --json` parsed.
#[track_caller]
pub fn list_json(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["list"];
    all.extend_from_slice(args);
    all.push("--json");
    let run = env.run(&all).expect(0);
    serde_json::from_str::<Vec<Value>>(&run.stdout)
        .unwrap_or_else(|e| panic!("list --json is not a JSON array ({e}):\n{}", run.stdout))
}

/// A SPEC with a job in each state, made by two emits of one event (two
/// jobs each) with room for 3 pending: the second emit overflows one
/// event-1 job to dead (which of the two shares the sequence number, so it
/// is looked up); the other event-1 job is marked delivered; plus a
/// quarantined file. Returns (dead, delivered, pending slack, pending tracker).
fn every_state(env: &Env) -> [String; 4] {
    let first = emit_tasks(env, SPEC, 1);
    let second = emit_tasks(env, SPEC, 1);
    assert_eq!((first.len(), second.len()), (2, 2));
    let dead_files = env.job_files(SPEC, "dead");
    assert_eq!(dead_files.len(), 1, "the second emit overflowed one job");
    let dead = first
        .iter()
        .find(|id| dead_files[0].to_string_lossy().contains(id.as_str()))
        .unwrap()
        .clone();
    let delivered = first.iter().find(|id| **id != dead).unwrap().clone();
    move_job(env, SPEC, &delivered, "delivered", |m| {
        m["attempts"] = 1.into();
        m["last_status"] = 200.into();
        m["finished_at_ms"] = m["created_at_ms"].clone();
    });
    let quarantine = env.spool_root().join(SPEC).join("quarantine");
    std::fs::write(quarantine.join("000000000099-feed.job"), "garbage").unwrap();
    std::fs::write(
        quarantine.join("000000000099-feed.job.reason"),
        "metadata: expected value at line 1 column 1\nfrom pending\n",
    )
    .unwrap();
    [dead, delivered, second[0].clone(), second[1].clone()]
}

#[test]
fn table_shows_every_state_with_next_attempt_or_reason() {
    let env = ops_env("max_spool_jobs = 3");
    let [dead, delivered, pending, _] = every_state(&env);
    let run = env.run(&["list", SPEC]).expect(0);
    let lines = run.rows();
    assert!(
        lines[0].starts_with("DELIVERY ID")
            && lines[0].contains("NEXT ATTEMPT / LAST ERROR / HINT"),
        "{}",
        run.stdout
    );
    assert!(!lines[0].contains("SPEC"), "one SPEC: no SPEC column");
    let row = |id: &str| lines.iter().find(|l| l.starts_with(id)).unwrap().as_str();
    assert!(row(&pending).contains("pending") && row(&pending).contains("due now"));
    assert!(row(&pending).contains("slack"));
    assert!(row(&delivered).contains("delivered (HTTP 200)"));
    assert!(row(&dead).contains("dead") && row(&dead).contains("spool-overflow"));
    // A dead job's row says what to do: its hint, with the replay command.
    assert!(
        row(&dead).contains(&format!(
            "raise it or fix delivery, then run `spec-notify replay {SPEC} --delivery-id {dead}`"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .filter(|l| l.starts_with(' '))
            .all(|l| l.chars().count() <= 100),
        "the detail wraps to the default width of 100:\n{}",
        run.stdout
    );
    let quarantined = row("000000000099-feed.job");
    assert!(quarantined.contains("quarantine"));
    assert!(quarantined.contains("metadata: expected value at line 1 column 1"));
    assert_eq!(
        lines.last().unwrap(),
        "-- 5 jobs: 2 pending, 1 delivered, 1 dead, 1 quarantined"
    );
}

#[test]
fn json_objects_carry_every_field() {
    let env = ops_env("max_spool_jobs = 3");
    let [dead, delivered, pending, _] = every_state(&env);
    let items = list_json(&env, &[SPEC]);
    assert_eq!(items.len(), 5);
    for item in &items {
        for key in [
            "delivery_id",
            "spec",
            "subscription",
            "event_type",
            "state",
            "attempts",
            "created_at",
            "next_attempt_at",
            "last_status",
            "last_error",
            "dead_reason",
            "hint",
            "sequence",
            "idempotency_key",
        ] {
            assert!(item.get(key).is_some(), "missing {key} in {item}");
        }
    }
    let by_id = |id: &str| items.iter().find(|i| i["delivery_id"] == id).unwrap();
    let p = by_id(&pending);
    assert_eq!(p["state"], "pending");
    assert_eq!(p["spec"], SPEC);
    assert_eq!(p["subscription"], "slack");
    assert_eq!(p["event_type"], "spec-kit.task.completed");
    assert_eq!(p["attempts"], 0);
    assert_eq!(p["sequence"], 2);
    for key in ["created_at", "next_attempt_at"] {
        let t = p[key].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{key} = {t}");
    }
    assert_eq!(by_id(&delivered)["last_status"], 200);
    assert_eq!(by_id(&delivered)["next_attempt_at"], Value::Null);
    let d = by_id(&dead);
    assert_eq!(d["dead_reason"], "spool-overflow");
    assert!(d["hint"].as_str().unwrap().contains("spec-notify replay"));
    let q = items.iter().find(|i| i["state"] == "quarantine").unwrap();
    assert_eq!(q["file"], "000000000099-feed.job");
    assert_eq!(q["delivery_id"], "feed");
    assert_eq!(q["reason"], "metadata: expected value at line 1 column 1");
}

#[test]
fn state_and_subscription_filters() {
    let env = ops_env("max_spool_jobs = 3");
    let [dead, _, _, tracker_pending] = every_state(&env);
    let dead_only = list_json(&env, &[SPEC, "--state", "dead"]);
    assert_eq!(dead_only.len(), 1);
    assert_eq!(dead_only[0]["delivery_id"], dead.as_str());
    let q = list_json(&env, &[SPEC, "--state", "quarantine"]);
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["state"], "quarantine");

    let tracker = list_json(&env, &[SPEC, "--subscription", "tracker"]);
    assert_eq!(tracker.len(), 2, "{tracker:?}");
    assert!(tracker.iter().all(|i| i["subscription"] == "tracker"));
    let tracker_pending_only = list_json(
        &env,
        &[SPEC, "--state", "pending", "--subscription", "tracker"],
    );
    assert_eq!(tracker_pending_only.len(), 1);
    assert_eq!(
        tracker_pending_only[0]["delivery_id"],
        tracker_pending.as_str()
    );

    let run = env.run(&["list", SPEC, "--state", "active"]).expect(0);
    assert_eq!(run.stdout, "no jobs\n");
    assert_eq!(list_json(&env, &[SPEC, "--state", "active"]).len(), 0);
}

#[test]
fn without_a_spec_every_spec_is_listed_with_a_spec_column() {
    let env = ops_env("");
    emit_tasks(&env, "SPEC-A", 1);
    emit_tasks(&env, "SPEC-B", 1);
    let items = list_json(&env, &[]);
    let mut specs: Vec<&str> = items.iter().map(|i| i["spec"].as_str().unwrap()).collect();
    specs.dedup();
    assert_eq!(specs, ["SPEC-A", "SPEC-B"]);
    let run = env.run(&["list"]).expect(0);
    assert!(run.rows()[0].starts_with("SPEC "), "{}", run.stdout);
    assert!(run.rows()[1].starts_with("SPEC-A "), "{}", run.stdout);
    assert!(run.stdout.contains("\nSPEC-B "));
}

#[test]
fn list_is_read_only_and_names_unreadable_files() {
    let env = ops_env("");
    let ids = emit_tasks(&env, SPEC, 1);
    let bad = env
        .spool_root()
        .join(SPEC)
        .join("pending")
        .join("000000000050-bad.job");
    std::fs::write(&bad, "not json\n{}").unwrap();
    let before = env.snapshot();
    let run = env.run(&["list", SPEC]).expect(0);
    assert_eq!(
        env.snapshot(),
        before,
        "list must not move or write anything"
    );
    assert!(
        run.stderr.contains(&bad.display().to_string()),
        "{}",
        run.stderr
    );
    assert!(run.stdout.contains(&ids[0]));
    assert!(!run.stdout.contains("000000000050-bad"));
    assert_eq!(list_json(&env, &[SPEC]).len(), 2);
}

#[test]
fn long_metadata_lines_and_control_characters() {
    let env = ops_env("");
    let ids = emit_tasks(&env, SPEC, 1);
    // Longer than the first read's buffer; with a terminal escape and a newline.
    let error = format!("\x1b[31mboom\nagain {}", "x".repeat(5000));
    move_job(&env, SPEC, &ids[0], "dead", |m| {
        m["last_error"] = error.clone().into();
        m["dead_reason"] = "exhausted".into();
    });
    let items = list_json(&env, &[SPEC, "--state", "dead"]);
    assert_eq!(items[0]["last_error"], error.as_str());
    let run = env.run(&["list", SPEC, "--state", "dead"]).expect(0);
    assert!(!run.stdout.contains('\x1b'), "escape reached the terminal");
    let rows = run.rows();
    let row = &rows[1];
    assert!(
        row.contains("exhausted: \\u{1b}[31mboom again xxx"),
        "shown escaped: {row}"
    );
    assert!(row.ends_with('…'), "long detail is cut: {row}");
    assert!(row.chars().count() < 1000, "cut at 600 characters");
}

#[test]
fn a_spec_without_a_spool_lists_nothing_and_exits_0_but_invalid_ids_exit_2() {
    let env = ops_env("");
    emit_tasks(&env, SPEC, 1);
    let before = env.snapshot();
    // A monitoring script may ask before the first event (or after every
    // emit was killed before writing): an empty result, not an error.
    let run = env.run(&["list", "SPEC-NOPE", "--json"]).expect(0);
    assert_eq!(run.stdout, "[]\n");
    assert!(
        run.stderr
            .contains("SPEC `SPEC-NOPE` has no spool folder yet")
            && run.stderr.contains(&format!("known SPECs: {SPEC}")),
        "the known SPECs catch a typo: {}",
        run.stderr
    );
    let run = env.run(&["list", "SPEC-NOPE"]).expect(0);
    assert_eq!(run.stdout, "no jobs\n");
    let run = env.run(&["list", "../etc", "--json"]).expect(2);
    assert!(run.stderr.contains("invalid SPEC id"), "{}", run.stderr);
    assert_eq!(env.snapshot(), before, "nothing was created");
}

#[test]
fn prd_flag_form_lists_like_the_subcommand() {
    let env = ops_env("");
    let ids = emit_tasks(&env, SPEC, 1);
    let flag = env.run(&["--list", SPEC]).expect(0);
    let sub = env.run(&["list", SPEC]).expect(0);
    assert!(flag.stdout.contains(&ids[0]));
    // Ages may tick between the runs; compare everything else.
    let strip = |s: &str| s.replace(" 1s ", " 0s ");
    assert_eq!(strip(&flag.stdout), strip(&sub.stdout));
}

#[test]
fn pending_jobs_of_a_paused_or_open_circuit_say_they_are_held_not_due() {
    let env = ops_env("");
    emit_tasks(&env, SPEC, 1);
    let run = env.run(&["list", SPEC]).expect(0);
    assert_eq!(run.stdout.matches("due now").count(), 2, "{}", run.stdout);

    env.run(&["pause", "slack", "--reason", "Slack outage INC-9"])
        .expect(0);
    // What a drain leaves when `tracker`'s breaker opened: the next probe an hour away.
    let next_probe = spec_notify::clock::now_ms() + 3_600_000;
    let circuits = env.spool_root().join(".subscriptions");
    std::fs::create_dir_all(&circuits).unwrap();
    std::fs::write(
        circuits.join("tracker.json"),
        serde_json::json!({"state": "open", "consecutive_failures": 5, "opened_at_ms": 1,
            "cooldown_ms": 3_600_000, "next_probe_at_ms": next_probe})
        .to_string(),
    )
    .unwrap();
    let run = env.run(&["list", SPEC]).expect(0);
    let rows = run.rows();
    let row = |sub: &str| rows.iter().find(|r| r.contains(sub)).unwrap().clone();
    assert!(!run.stdout.contains("due now"), "{}", run.stdout);
    assert!(
        row("slack").contains("held: paused (Slack outage INC-9;"),
        "{}",
        run.stdout
    );
    let when = spec_notify::clock::rfc3339(next_probe);
    assert!(
        row("tracker").contains(&format!("held: circuit open, next probe at {when}")),
        "{}",
        run.stdout
    );
    let json: Value =
        serde_json::from_str(&env.run(&["list", SPEC, "--json"]).expect(0).stdout).unwrap();
    let held: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["held"].as_str().unwrap())
        .collect();
    assert_eq!(held.len(), 2, "{json}");
    assert!(held.iter().all(|h| h.starts_with("held: ")), "{held:?}");
}
