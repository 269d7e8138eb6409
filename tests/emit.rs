//! emit: flags, stdin, JSON Lines, filters, bad input, concurrency, crashes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

const STAGE_DONE: &str = "spec-auto.stage.completed";

/// Webhooks on, one unfiltered dry-run subscription `all`.
fn one_subscription() -> Env {
    Env::new(&config_with(&subscription(
        "all",
        "https://hooks.example/all",
        "dry_run = true",
    )))
}

/// Every job of a SPEC in pending/, keyed by delivery id.
fn pending_by_id(env: &Env, spec: &str) -> BTreeMap<String, (Value, Value)> {
    env.jobs(spec, "pending")
        .into_iter()
        .map(|(meta, body)| {
            (
                meta["delivery_id"].as_str().unwrap().to_string(),
                (meta, body),
            )
        })
        .collect()
}

#[test]
fn flags_only_event_is_spooled_for_each_matching_subscription() {
    let env = Env::new(&config_with(&format!(
        "{}{}",
        subscription(
            "slack",
            "https://hooks.example/a",
            "include_stages = [\"Plan\"]"
        ),
        subscription(
            "tracker",
            "https://tracker.example/b",
            "include_events = [\"spec-kit.*\"]"
        ),
    )))
    .env("SECRET_SLACK", "s")
    .env("SECRET_TRACKER", "t");
    let run = env
        .run(&[
            "emit", "--spec", "SPEC-1", "--event", STAGE_DONE, "--stage", "Plan", "--status",
            "success",
        ])
        .expect(0);
    assert_eq!(run.lines().len(), 1, "only slack matches: {}", run.stdout);
    assert_eq!(run.stderr, "", "no warning when secrets are set");
    let jobs = env.jobs("SPEC-1", "pending");
    assert_eq!(jobs.len(), 1);
    let (meta, body) = &jobs[0];
    assert_eq!(meta["subscription"], "slack");
    assert_eq!(meta["delivery_id"], run.ids()[0].as_str());
    assert_eq!(
        run.stdout,
        format!("{} slack\n", run.ids()[0]),
        "id, then subscription"
    );
    assert_eq!(meta["state"], "pending");
    assert_eq!(meta["attempts"], 0);
    assert_eq!(body["schemaVersion"], "1.0");
    assert_eq!(
        body["event"],
        json!({"type": STAGE_DONE, "status": "success", "stage": "Plan",
               "idempotency_key": "SPEC-1:spec-auto.stage.completed:plan:success:attempt-1"})
    );
    assert_eq!(body["spec"], json!({"id": "SPEC-1"}));
    assert_eq!(body["sequence"], 1);
    assert!(body["emittedAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(meta["idempotency_key"], body["event"]["idempotency_key"]);
}

#[test]
fn stdin_object_carries_every_prd_section() {
    let env = one_subscription();
    let input = json!({
        "schemaVersion": "1.0",
        "event": {"type": STAGE_DONE, "status": "success", "stage": "Plan",
                  "idempotency_key": "SPEC-KIT-065:plan:attempt-1"},
        "spec": {"id": "SPEC-KIT-065", "branch": "feat/spec-auto-telemetry"},
        "pipeline": {"attempt": 1, "maxAttempts": 3, "startedAt": "2025-10-14T10:00:00Z"},
        "telemetry": {"command": "spec-plan", "specId": "SPEC-KIT-065",
                      "artifacts": [{"path": "plan.log"}]},
        "consensus": {"status": "ok", "agents": [{"agent": "gemini", "model": "gemini-2.5-pro"}]},
        "task": {"id": "T61", "title": "Webhooks", "status": "Done"},
        "evidence": {"paths": ["explicit.log"]},
        "anomalies": [{"kind": "cost", "value": 12.5}]
    });
    let run = env
        .run_with_stdin(&["emit", "--input", "-"], input.to_string().as_bytes())
        .expect(0);
    let jobs = pending_by_id(&env, "SPEC-KIT-065");
    let (_, body) = &jobs[run.ids()[0].as_str()];
    let mut expected = input.clone();
    expected["sequence"] = json!(1);
    expected["emittedAt"] = body["emittedAt"].clone();
    assert_eq!(body, &expected, "explicit evidence paths are kept");
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "schemaVersion",
            "event",
            "spec",
            "pipeline",
            "telemetry",
            "consensus",
            "task",
            "evidence",
            "anomalies",
            "sequence",
            "emittedAt"
        ],
        "PRD order"
    );
}

#[test]
fn flags_win_over_stdin() {
    let env = one_subscription();
    let input = json!({
        "event": {"type": "spec-kit.task.completed", "stage": "Tasks", "status": "failure",
                  "idempotency_key": "from-stdin"},
        "spec": {"id": "FROM-STDIN", "branch": "b"},
        "task": {"id": "T0", "title": "kept"}
    });
    env.run_with_stdin(
        &[
            "emit",
            "--input",
            "-",
            "--spec",
            "FROM-FLAG",
            "--event",
            STAGE_DONE,
            "--stage",
            "plan",
            "--task-id",
            "T1",
            "--idempotency-key",
            "from-flag",
        ],
        input.to_string().as_bytes(),
    )
    .expect(0);
    assert!(env.jobs("FROM-STDIN", "pending").is_empty());
    let jobs = env.jobs("FROM-FLAG", "pending");
    assert_eq!(jobs.len(), 1);
    let (meta, body) = &jobs[0];
    assert_eq!(
        body["event"],
        json!({"type": STAGE_DONE, "status": "failure", "stage": "Plan", "idempotency_key": "from-flag"})
    );
    assert_eq!(body["spec"], json!({"id": "FROM-FLAG", "branch": "b"}));
    assert_eq!(body["task"], json!({"id": "T1", "title": "kept"}));
    assert_eq!(meta["event_type"], STAGE_DONE);
    assert_eq!(meta["idempotency_key"], "from-flag");
}

#[test]
fn json_lines_batch_emits_many_events_in_one_call() {
    let env = Env::new(&config_with(&format!(
        "{}{}",
        subscription("all", "https://a.example/h", "dry_run = true"),
        subscription(
            "plan",
            "https://b.example/h",
            "dry_run = true\ninclude_stages = [\"Plan\"]"
        ),
    )));
    let stages = ["Plan", "Tasks", "Implement", "Plan", "Audit"];
    let mut input = String::new();
    for (i, stage) in stages.iter().enumerate() {
        let line = json!({"event": {"type": STAGE_DONE, "stage": stage, "status": "success"},
                          "pipeline": {"attempt": i + 1}});
        input.push_str(&format!("{line}\n"));
        if i == 2 {
            input.push('\n'); // blank lines are fine
        }
    }
    let run = env
        .run_with_stdin(&["emit", "--spec", "S", "--input", "-"], input.as_bytes())
        .expect(0);
    let ids = run.ids();
    assert_eq!(ids.len(), stages.len() + 2, "5 for `all`, 2 for `plan`");
    let jobs = pending_by_id(&env, "S");
    assert_eq!(jobs.len(), ids.len());
    let mut sequences: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for id in &ids {
        let (meta, body) = &jobs[id.as_str()];
        assert_eq!(meta["sequence"], body["sequence"]);
        sequences
            .entry(meta["sequence"].as_u64().unwrap())
            .or_default()
            .push(meta["subscription"].as_str().unwrap().into());
    }
    assert_eq!(
        sequences.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(sequences[&1], ["all", "plan"]);
    assert_eq!(sequences[&2], ["all"]);
    assert_eq!(sequences[&4], ["all", "plan"]);
    let (_, body) = jobs.values().find(|(m, _)| m["sequence"] == 4).unwrap();
    assert_eq!(
        body["event"]["idempotency_key"],
        "S:spec-auto.stage.completed:plan:success:attempt-4"
    );

    let run = env
        .run_with_stdin(
            &["emit", "--spec", "S", "--input", "-", "--json"],
            input.as_bytes(),
        )
        .expect(0);
    let spooled: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(spooled.len(), 7);
    let jobs = pending_by_id(&env, "S");
    for job in &spooled {
        let (meta, _) = &jobs[job["delivery_id"].as_str().unwrap()];
        assert!(meta["sequence"].as_u64().unwrap() > 5);
        // --json objects say which job each id is.
        assert_eq!(job["subscription"], meta["subscription"]);
        assert_eq!(job["spec"], "S");
        assert_eq!(job["event_type"], meta["event_type"]);
        assert_eq!(job["state"], "pending");
    }
}

#[test]
fn filters_match_events_globs_stages_and_statuses() {
    let env = Env::new(&config_with(
        &[
            ("exact", format!("include_events = [\"{STAGE_DONE}\"]")),
            ("glob", "include_events = [\"spec-kit.*\"]".to_string()),
            ("plan-only", "include_stages = [\"Plan\"]".to_string()),
            (
                "failures",
                "include_status = [\"failure\", \"halt\"]".to_string(),
            ),
            ("off", "active = false".to_string()),
            ("everything", String::new()),
        ]
        .iter()
        .map(|(id, extra)| {
            subscription(
                id,
                "https://a.example/h",
                &format!("dry_run = true\n{extra}"),
            )
        })
        .collect::<String>(),
    ));
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "--event", STAGE_DONE, "--stage", "Plan", "--status", "success",
            ],
            &["everything", "exact", "plan-only"],
        ),
        (
            &[
                "--event", STAGE_DONE, "--stage", "Tasks", "--status", "failure",
            ],
            &["everything", "exact", "failures"],
        ),
        (
            // A pipeline-level event has no stage: the stage filter lets it through.
            &[
                "--event",
                "spec-auto.pipeline.completed",
                "--status",
                "halt",
            ],
            &["everything", "failures", "plan-only"],
        ),
        (
            &["--event", "spec-kit.task.completed", "--task-id", "T1"],
            &["everything", "failures", "glob", "plan-only"],
        ),
        (
            // `spec-kit.*` is a prefix up to the dot, not any `spec-kit…`.
            &["--event", "spec-kitx.task.completed", "--stage", "Audit"],
            &["everything", "failures"],
        ),
    ];
    for (args, expected) in cases {
        let mut full = vec!["emit", "--spec", "S", "--json"];
        full.extend_from_slice(args);
        let run = env.run(&full).expect(0);
        let spooled: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
        let jobs = pending_by_id(&env, "S");
        let got: BTreeSet<&str> = spooled
            .iter()
            .map(|job| {
                jobs[job["delivery_id"].as_str().unwrap()].0["subscription"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        let expected: BTreeSet<&str> = expected.iter().copied().collect();
        assert_eq!(got, expected, "{args:?}");
    }
    let all = env.jobs("S", "pending");
    assert!(all.iter().all(|(meta, _)| meta["subscription"] != "off"));
    assert_eq!(all.len(), 3 + 3 + 3 + 4 + 2);
}

#[test]
fn event_matching_no_subscription_writes_nothing() {
    let env = Env::new(&config_with(&subscription(
        "tasks",
        "https://a.example/h",
        "dry_run = true\ninclude_events = [\"spec-kit.task.completed\"]",
    )));
    let run = env
        .run(&["-v", "emit", "--spec", "S", "--event", STAGE_DONE])
        .expect(0);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("no subscription matches"),
        "{}",
        run.stderr
    );
    assert!(env.snapshot().is_empty(), "{:?}", env.snapshot());
}

#[test]
fn disabled_webhooks_write_nothing_and_say_why() {
    let config = config_with(&subscription(
        "all",
        "https://a.example/h",
        "dry_run = true",
    ));
    let args = ["-v", "emit", "--spec", "S", "--event", STAGE_DONE];

    let env = Env::new(&config.replace("enabled = true", "enabled = false"));
    let run = env.run(&args).expect(0);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .contains("webhooks are disabled (enabled = false"),
        "{}",
        run.stderr
    );
    assert!(env.snapshot().is_empty());

    let env = Env::new(&config).env("SPECKIT_WEBHOOKS_ENABLED", "0");
    let run = env.run(&args).expect(0);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("disabled (SPECKIT_WEBHOOKS_ENABLED=0)"),
        "{}",
        run.stderr
    );
    assert!(env.snapshot().is_empty());

    let env = Env::new(&config.replace("enabled = true", "enabled = false"))
        .env("SPECKIT_WEBHOOKS_ENABLED", "true");
    env.run(&args).expect(0);
    assert_eq!(
        env.jobs("S", "pending").len(),
        1,
        "the environment turns it on"
    );
}

/// A repository (a `.git` folder bounds the search for a config) with
/// `config` at its root, if any, and an empty `docs/` folder.
fn repository(config: Option<&str>) -> Env {
    let env = Env::new("");
    std::fs::remove_file(env.config_path()).unwrap();
    std::fs::create_dir_all(env.path().join(".git")).unwrap();
    std::fs::create_dir_all(env.path().join("docs")).unwrap();
    if let Some(config) = config {
        env.write_config(config);
    }
    env
}

/// `emit` run from `docs/` without --config, with `args` after the event.
fn emit_in_docs(env: &Env, args: &[&str]) -> Run {
    let mut all = vec!["emit", "--spec", "S", "--event", STAGE_DONE];
    all.extend_from_slice(args);
    let mut cmd = env.bare(&all);
    cmd.current_dir(env.path().join("docs"));
    run_command(cmd, b"")
}

#[test]
fn emit_from_a_subfolder_spools_into_the_repository_s_spool() {
    let env = repository(Some(&config_with(&subscription(
        "all",
        "https://hooks.example/all",
        "dry_run = true",
    ))));
    let run = emit_in_docs(&env, &[]).expect(0);
    assert_eq!(run.lines().len(), 1, "{}", run.stderr);
    // Relative paths resolve against the config found, not the cwd.
    assert_eq!(env.jobs("S", "pending").len(), 1);
    assert!(
        !env.path().join("docs/docs").exists(),
        "spooled under the cwd"
    );

    // Another program's config.toml on the way is passed over.
    std::fs::write(
        env.path().join("docs/config.toml"),
        "[model]\nname = \"x\"\n",
    )
    .unwrap();
    emit_in_docs(&env, &[]).expect(0);
    assert_eq!(env.jobs("S", "pending").len(), 2);
}

#[test]
fn no_config_anywhere_spools_nothing_and_says_where_it_looked_once() {
    let env = repository(None);
    std::fs::write(env.path().join("docs/config.toml"), "x = 1\n").unwrap();
    let run = emit_in_docs(&env, &[]).expect(0);
    assert_eq!(run.stdout, "");
    let root = env.path().canonicalize().unwrap();
    assert_eq!(run.stderr.lines().count(), 1, "said once: {}", run.stderr);
    for part in [
        "nothing spooled: no config.toml with a [spec_ops.webhooks] table in".to_string(),
        format!("`{}`", root.join("docs").display()),
        format!("`{}` (the repository root)", root.display()),
        format!("`{}` has none", root.join("docs/config.toml").display()),
        "--config PATH".into(),
        "SPEC_NOTIFY_CONFIG".into(),
        "--quiet".into(),
    ] {
        assert!(run.stderr.contains(&part), "no {part:?} in: {}", run.stderr);
    }
    // --quiet: nothing at all.
    let run = emit_in_docs(&env, &["--quiet"]).expect(0);
    assert_eq!((run.stdout.as_str(), run.stderr.as_str()), ("", ""));
    // Bad input is refused all the same: the guardrail hears of it now.
    let run = emit_in_docs(&env, &["--stage", "Deploy", "--quiet"]).expect(2);
    assert!(run.stderr.contains("Deploy"), "{}", run.stderr);
    let run = emit_in_docs(&env, &["--url", "ftp://x.example/h", "--quiet"]).expect(2);
    assert!(run.stderr.contains("invalid --url"), "{}", run.stderr);
    let nothing_written = env
        .snapshot()
        .into_iter()
        .all(|(p, _)| p.ends_with("docs/config.toml"));
    assert!(nothing_written, "{:?}", env.snapshot());
}

#[test]
fn telemetry_file_is_embedded_as_is_and_fills_evidence_paths() {
    let env = one_subscription();
    let telemetry = json!({
        "schemaVersion": 1,
        "command": "spec-plan",
        "specId": "SPEC-KIT-065",
        "sessionId": "abcd-1234",
        "timestamp": "2025-10-14T10:05:06Z",
        "baseline": {"mode": "full", "artifact": "baseline.md", "status": "passed"},
        "hooks": {"session": {"start": "passed"}},
        "artifacts": [{"path": "evidence/plan.log"}, {"path": "evidence/plan.json"}, {"other": 1}]
    });
    let file = env.path().join("telemetry.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&telemetry).unwrap()).unwrap();
    let run = env
        .run(&[
            "emit",
            "--event",
            STAGE_DONE,
            "--stage",
            "Plan",
            "--telemetry",
            file.to_str().unwrap(),
        ])
        .expect(0);
    let jobs = pending_by_id(&env, "SPEC-KIT-065");
    let (_, body) = &jobs[run.ids()[0].as_str()];
    assert_eq!(body["telemetry"], telemetry);
    assert_eq!(
        body["evidence"],
        json!({"paths": ["evidence/plan.log", "evidence/plan.json"]})
    );
    assert_eq!(body["spec"]["id"], "SPEC-KIT-065", "spec id from specId");
}

/// Every bad input: exit 2, a message saying what and where, nothing written.
#[test]
fn bad_input_exits_2_and_leaves_the_workspace_unchanged() {
    let env = one_subscription();
    env.run(&[
        "emit", "--spec", "S", "--event", STAGE_DONE, "--stage", "Deploy",
    ])
    .expect(2);
    assert!(env.snapshot().is_empty(), "not even the spool folders");
    env.run(&["emit", "--spec", "S", "--event", STAGE_DONE])
        .expect(0);
    std::fs::write(env.path().join("broken.json"), "{\"specId\": ").unwrap();
    std::fs::write(env.path().join("list.json"), "[{\"specId\": \"S\"}]").unwrap();
    let before = env.snapshot();

    let good = format!(
        "{}\n",
        json!({"event": {"type": STAGE_DONE}, "spec": {"id": "S"}})
    );
    let third_line_bad = format!("{good}{good}{{\"event\": oops}}\n");
    let second_line_bad_stage = format!(
        "{good}{}\n",
        json!({"event": {"type": STAGE_DONE, "stage": "Deploy"}})
    );
    let nul_spec = json!({"event": {"type": STAGE_DONE}, "spec": {"id": "a\u{0}b"}}).to_string();
    let base = ["emit", "--spec", "S", "--event", STAGE_DONE];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(extra).copied().collect()
    };
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            with(&["--input", "-"]),
            "{\"event\": ",
            "stdin line 1: invalid JSON",
        ),
        (
            with(&["--input", "-"]),
            "[1, 2]",
            "stdin line 1: expected a JSON object",
        ),
        (
            with(&["--input", "-"]),
            "\n\n\"text\"",
            "stdin line 3: expected a JSON object",
        ),
        (
            with(&["--input", "-"]),
            &third_line_bad,
            "stdin line 3: invalid JSON",
        ),
        (
            with(&["--input", "-"]),
            &second_line_bad_stage,
            "stdin line 2: unknown stage `Deploy`",
        ),
        (with(&["--input", "-"]), "", "stdin holds no event"),
        (
            with(&["--input", "-"]),
            "{\"evnt\": {}}",
            "stdin line 1: unknown section `evnt`",
        ),
        (
            with(&["--input", "-"]),
            "{\"pipeline\": [1]}",
            "stdin line 1: `pipeline` must be a JSON object",
        ),
        (
            with(&["--input", "-"]),
            "{\"pipeline\": {\"attempt\": -1}}",
            "stdin line 1: `pipeline.attempt` must be a whole number",
        ),
        (
            vec!["emit", "--event", STAGE_DONE, "--input", "-"],
            &nul_spec,
            "invalid SPEC id `a\\0b`",
        ),
        (
            with(&["--telemetry", "missing.json"]),
            "",
            "cannot read --telemetry file `missing.json`",
        ),
        (
            with(&["--telemetry", "broken.json"]),
            "",
            "--telemetry file `broken.json` is not valid JSON",
        ),
        (
            with(&["--telemetry", "list.json"]),
            "",
            "--telemetry file `list.json` must hold a JSON object",
        ),
        (
            with(&["--stage", "Deploy"]),
            "",
            "unknown stage `Deploy`: use one of Plan, Tasks",
        ),
        (
            with(&["--status", "ok"]),
            "",
            "unknown status `ok`: use one of success, failure, halt",
        ),
        (
            vec!["emit", "--spec", "S", "--event", "Spec.Stage.Done"],
            "",
            "must look like namespace.noun.verb",
        ),
        (
            vec!["emit", "--spec", "S", "--event", "spec.stage"],
            "",
            "must look like namespace.noun.verb",
        ),
        (vec!["emit", "--spec", "S"], "", "missing event type"),
        (vec!["emit", "--event", STAGE_DONE], "", "missing SPEC id"),
        (
            vec!["emit", "--spec", "../etc", "--event", STAGE_DONE],
            "",
            "invalid SPEC id `../etc`",
        ),
        (
            vec!["emit", "--spec", "a/b", "--event", STAGE_DONE],
            "",
            "invalid SPEC id `a/b`",
        ),
        (
            vec!["emit", "--spec", "..", "--event", STAGE_DONE],
            "",
            "invalid SPEC id `..`",
        ),
        (
            vec!["emit", "--spec", "", "--event", STAGE_DONE],
            "",
            "invalid SPEC id ``",
        ),
    ];
    for (args, stdin, needle) in cases {
        let run = env.run_with_stdin(&args, stdin.as_bytes());
        assert_eq!(run.code, 2, "{args:?} {stdin:?}\n{}", run.stderr);
        assert!(
            run.stderr.contains(needle),
            "{args:?} {stdin:?}: {needle:?} not in:\n{}",
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert_eq!(run.stdout, "", "{args:?}");
        assert!(
            env.snapshot() == before,
            "{args:?} {stdin:?} changed the workspace"
        );
    }
}

#[test]
fn missing_secret_only_warns_and_the_job_is_spooled() {
    let env = Env::new(&config_with(&subscription(
        "slack",
        "https://a.example/h",
        "",
    )));
    let run = env
        .run(&["emit", "--spec", "S", "--event", STAGE_DONE])
        .expect(0);
    assert!(
        run.stderr.contains("warning")
            && run.stderr.contains("SECRET_SLACK")
            && run.stderr.contains("spooled"),
        "{}",
        run.stderr
    );
    assert_eq!(env.jobs("S", "pending").len(), 1);
}

#[test]
fn secret_values_never_reach_the_spool_or_output() {
    let secret = "pa55-word-that-must-not-leak";
    let env = Env::new(&config_with(&subscription(
        "slack",
        "https://a.example/h",
        "",
    )))
    .env("SECRET_SLACK", secret);
    let run = env
        .run(&["-v", "emit", "--spec", "S", "--event", STAGE_DONE])
        .expect(0);
    assert!(!run.stdout.contains(secret) && !run.stderr.contains(secret));
    let files = env.snapshot();
    assert!(!files.is_empty());
    for (path, bytes) in files {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            path.display()
        );
    }
}

#[test]
fn spool_overflow_moves_the_oldest_pending_jobs_to_dead_letter() {
    let env = Env::new(
        &config_with(&subscription(
            "all",
            "https://a.example/h",
            "dry_run = true",
        ))
        .replace("enabled = true", "enabled = true\nmax_spool_jobs = 3"),
    );
    let mut ids = Vec::new();
    let mut warnings = Vec::new();
    for _ in 0..5 {
        let run = env
            .run(&["emit", "--spec", "S", "--event", STAGE_DONE])
            .expect(0);
        ids.push(run.ids()[0].clone());
        warnings.push(run.stderr);
    }
    assert!(warnings[..3].iter().all(String::is_empty), "{warnings:?}");
    for w in &warnings[3..] {
        assert!(
            w.contains("max_spool_jobs = 3") && w.contains("spool-overflow"),
            "{w}"
        );
    }
    let pending = env.jobs("S", "pending");
    let seqs = |jobs: &[(Value, Value)]| -> Vec<u64> {
        jobs.iter()
            .map(|(m, _)| m["sequence"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&pending), [3, 4, 5]);
    let dead = env.jobs("S", "dead");
    assert_eq!(
        seqs(&dead),
        [1, 2],
        "the oldest went to dead-letter, none deleted"
    );
    for ((meta, body), id) in dead.iter().zip(&ids) {
        assert_eq!(&meta["delivery_id"], id, "delivery id kept");
        assert_eq!(meta["state"], "dead");
        assert_eq!(meta["dead_reason"], "spool-overflow");
        assert!(meta["finished_at_ms"].as_u64().is_some());
        assert!(meta["hint"].as_str().unwrap().contains("replay"), "{meta}");
        assert_eq!(body["sequence"], meta["sequence"], "envelope untouched");
    }
}

/// Eight processes emitting one event per call, all on one SPEC: every
/// sequence number is used exactly once and every job file is complete.
#[test]
fn concurrent_emitters_share_one_gapless_sequence() {
    const PROCESSES: usize = 8;
    const EVENTS: usize = 200;
    let env = one_subscription();
    std::thread::scope(|scope| {
        for worker in 0..PROCESSES {
            let env = &env;
            scope.spawn(move || {
                for i in 0..EVENTS {
                    let task = format!("T{worker}-{i}");
                    env.run(&[
                        "emit",
                        "--spec",
                        "S",
                        "--event",
                        "spec-kit.task.completed",
                        "--task-id",
                        &task,
                    ])
                    .expect(0);
                }
            });
        }
    });
    let files = env.job_files("S", "pending");
    assert_eq!(files.len(), PROCESSES * EVENTS);
    let mut sequences = BTreeSet::new();
    let mut tasks = BTreeSet::new();
    for path in &files {
        let (meta, body) = parse_job(path);
        let sequence = meta["sequence"].as_u64().unwrap();
        assert_eq!(body["sequence"], sequence);
        assert!(sequences.insert(sequence), "sequence {sequence} used twice");
        assert!(tasks.insert(body["task"]["id"].as_str().unwrap().to_string()));
        assert_name_matches(path, &meta);
    }
    assert_eq!(sequences, (1..=(PROCESSES * EVENTS) as u64).collect());
    let seq_file = std::fs::read_to_string(env.spool_root().join("S/seq")).unwrap();
    assert_eq!(
        seq_file.trim().parse::<u64>().unwrap(),
        (PROCESSES * EVENTS) as u64
    );
}

#[track_caller]
fn assert_name_matches(path: &Path, meta: &Value) {
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        name,
        format!(
            "{:012}-{}.job",
            meta["sequence"].as_u64().unwrap(),
            meta["delivery_id"].as_str().unwrap()
        )
    );
}

/// A small xorshift: random kill timing without a dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Rng(u64::from(nanos) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// kill -9 at random instants, mostly mid-batch: whatever is in pending/ is a
/// complete job, and emit still works afterwards.
#[test]
fn emit_killed_at_random_moments_leaves_only_complete_jobs() {
    use std::io::Write;
    use std::process::Stdio;

    let env = Env::new(&config_with(&format!(
        "{}{}",
        subscription("a", "https://a.example/h", "dry_run = true"),
        subscription("b", "https://b.example/h", "dry_run = true"),
    )));
    let mut rng = Rng::seeded();
    let seed = rng.0;
    let line = format!(
        "{}\n",
        json!({"event": {"type": STAGE_DONE, "stage": "Plan"}})
    );
    let start = |batch: Option<usize>| {
        let mut cmd = env.cmd(&["emit", "--spec", "S", "--event", STAGE_DONE]);
        if batch.is_some() {
            cmd.args(["--input", "-"]);
        }
        let mut child = Spawned::new(
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut stdin = child.child_mut().stdin.take().unwrap();
        let _ = stdin.write_all(line.repeat(batch.unwrap_or(0)).as_bytes());
        drop(stdin);
        child
    };
    // How long a whole call takes here, so kills spread over all of it.
    let timed = |batch| {
        let t = std::time::Instant::now();
        start(batch).wait_output(RUN_CEILING, "emit").expect(0);
        t.elapsed().as_micros() as u64
    };
    let (single_us, batch_us) = (timed(None), timed(Some(100)));
    for round in 0..60 {
        let batch = (round % 3 != 0).then(|| 20 + rng.below(160) as usize);
        let span = match batch {
            Some(n) => batch_us * n as u64 / 100,
            None => single_us,
        };
        let child = start(batch);
        std::thread::sleep(std::time::Duration::from_micros(
            rng.below(span * 5 / 4 + 1),
        ));
        drop(child); // SIGKILL, then reaped
    }

    let pending_dir = env.spool_root().join("S/pending");
    let mut seen = BTreeSet::new();
    for entry in std::fs::read_dir(&pending_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            continue; // a write cut short: hidden, never read as a job, swept by drain
        }
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("job"),
            "stray file {} (seed {seed})",
            path.display()
        );
        let (meta, body) = parse_job(&path);
        assert_eq!(meta["state"], "pending");
        assert_eq!(body["sequence"], meta["sequence"]);
        assert_name_matches(&path, &meta);
        let key = (
            meta["sequence"].as_u64().unwrap(),
            meta["subscription"].to_string(),
        );
        assert!(seen.insert(key), "duplicate job (seed {seed})");
    }
    let run = env
        .run(&["emit", "--spec", "S", "--event", STAGE_DONE])
        .expect(0);
    assert_eq!(run.lines().len(), 2, "emit works after the crashes");
    assert_eq!(env.job_files("S", "pending").len(), seen.len() + 2);
}

#[test]
fn a_batch_larger_than_max_spool_jobs_with_shed_oldest_keeps_only_its_newest_jobs_pending() {
    let env = Env::new(
        &config_with(&subscription("a", "https://a.example/h", "")).replace(
            "auto_drain = false",
            "auto_drain = false\nmax_spool_jobs = 5",
        ),
    );
    let lines: String = (0..12)
        .map(|_| {
            format!(
                "{}\n",
                json!({"event": {"type": STAGE_DONE}, "spec": {"id": "S"}})
            )
        })
        .collect();
    let run = env
        .run_with_stdin(&["emit", "--input", "-", "--shed-oldest"], lines.as_bytes())
        .expect(0);
    assert_eq!(run.lines().len(), 12, "every event gets a delivery id");
    assert!(
        run.stderr.contains("moved the 7 oldest to dead-letter"),
        "{}",
        run.stderr
    );
    let pending: Vec<u64> = env
        .jobs("S", "pending")
        .iter()
        .map(|(m, _)| m["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(pending, [8, 9, 10, 11, 12]);
    let dead = env.jobs("S", "dead");
    assert_eq!(dead.len(), 7);
    assert!(
        dead.iter()
            .all(|(m, _)| m["dead_reason"] == "spool-overflow" && m["state"] == "dead")
    );
}
