//! discard: dead jobs are deleted on purpose and logged; anything else (an
//! unknown id, a pending job, an id fragment) exits 2 with nothing changed;
//! `--all-dead` with a subscription filter; waiting for a running drain.

use serde_json::Value;
use spec_notify::spool::Spool;

use crate::list::{SPEC, emit_tasks, list_json, move_job, ops_env};
use crate::support::*;

/// The attempt-log records of a SPEC.
fn log(env: &Env) -> Vec<Value> {
    let path = env.evidence(SPEC).join("attempts.jsonl");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Two events for both subscriptions; all four jobs made dead (exhausted).
fn four_dead(env: &Env) -> Vec<String> {
    let ids = emit_tasks(env, SPEC, 2);
    for id in &ids {
        move_job(env, SPEC, id, "dead", |m| {
            m["dead_reason"] = "exhausted".into();
            m["attempts"] = 3.into();
        });
    }
    ids
}

#[test]
fn a_dead_job_is_removed_and_logged() {
    let env = ops_env("");
    let ids = four_dead(&env);
    let slack_id = &ids[0];
    let run = env
        .run(&["discard", SPEC, "--delivery-id", slack_id])
        .expect(0);
    assert!(
        run.stdout.contains(&format!("discarded {slack_id}")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("1 dead job discarded"));
    let left = list_json(&env, &[SPEC, "--state", "dead"]);
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|j| j["delivery_id"] != slack_id.as_str()));
    let records = log(&env);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["delivery_id"], slack_id.as_str());
    assert_eq!(r["outcome"], "discarded");
    assert_eq!(r["attempt"], 0);
    assert_eq!(r["subscription"], "slack");
    assert_eq!(r["event_type"], "spec-kit.task.completed");
    assert_eq!(
        r["url"], "https://hooks.example/slack?<redacted>",
        "the token never reaches the evidence"
    );
    let history = env.run(&["history", SPEC]).expect(0);
    assert!(history.stdout.contains("\"outcome\":\"discarded\""));
}

#[test]
fn unknown_pending_or_partial_ids_exit_2_and_change_nothing() {
    let env = ops_env("");
    let ids = emit_tasks(&env, SPEC, 1);
    move_job(&env, SPEC, &ids[1], "dead", |m| {
        m["dead_reason"] = "rejected".into();
    });
    let before = env.snapshot();

    let run = env
        .run(&[
            "discard",
            SPEC,
            "--delivery-id",
            "00000000-0000-4000-8000-000000000000",
        ])
        .expect(2);
    assert!(
        run.stderr.contains("no job with delivery id"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("nothing was changed"));

    let run = env
        .run(&["discard", SPEC, "--delivery-id", &ids[0]])
        .expect(2);
    assert!(
        run.stderr.contains("is pending, not dead"),
        "{}",
        run.stderr
    );

    // The tail of a real id (after a `-`) must not select that job.
    let tail = ids[1].rsplit('-').next().unwrap();
    let run = env.run(&["discard", SPEC, "--delivery-id", tail]).expect(2);
    assert!(
        run.stderr.contains("no job with delivery id"),
        "{}",
        run.stderr
    );

    let run = env
        .run(&["discard", "SPEC-NOPE", "--delivery-id", &ids[1]])
        .expect(2);
    assert!(run.stderr.contains("unknown SPEC"), "{}", run.stderr);
    assert_eq!(env.snapshot(), before, "a refused discard changes nothing");
}

#[test]
fn all_dead_honours_the_subscription_filter() {
    let env = ops_env("");
    four_dead(&env);
    let pending = emit_tasks(&env, SPEC, 1);
    let run = env
        .run(&["discard", SPEC, "--all-dead", "--subscription", "tracker"])
        .expect(0);
    assert!(
        run.stdout.contains("2 dead jobs discarded"),
        "{}",
        run.stdout
    );
    let dead = list_json(&env, &[SPEC, "--state", "dead"]);
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|j| j["subscription"] == "slack"));
    assert!(log(&env).iter().all(|r| r["subscription"] == "tracker"));
    assert_eq!(log(&env).len(), 2);

    env.run(&["discard", SPEC, "--all-dead"]).expect(0);
    assert!(env.job_files(SPEC, "dead").is_empty());
    assert_eq!(log(&env).len(), 4);
    let left = list_json(&env, &[SPEC, "--state", "pending"]);
    assert_eq!(left.len(), 2, "pending jobs are never discarded");
    assert!(left.iter().any(|j| j["delivery_id"] == pending[0].as_str()));

    let run = env.run(&["discard", SPEC, "--all-dead"]).expect(0);
    assert!(
        run.stdout.contains("no dead jobs to discard"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_job_the_drain_is_still_settling_is_left_and_discard_exits_1() {
    let env = ops_env("");
    let ids = four_dead(&env);
    let spool = Spool::new(env.spool_root()).spec(SPEC);
    // A drain serves the SPEC and has just renamed its settled copy into
    // dead/; its active copy is not unlinked yet.
    let alive = spool.try_serve().unwrap().expect("no drain running");
    let dead = env.job_files(SPEC, "dead");
    let settling = dead
        .iter()
        .find(|p| p.to_string_lossy().contains(&ids[1]))
        .unwrap();
    let active = env
        .spool_root()
        .join(SPEC)
        .join("active")
        .join(settling.file_name().unwrap());
    std::fs::copy(settling, &active).unwrap();
    let run = env.run(&["discard", SPEC, "--all-dead"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("still being settled"), "{}", run.stderr);
    assert!(
        run.stdout.contains("3 dead jobs discarded"),
        "{}",
        run.stdout
    );
    assert_eq!(
        env.job_files(SPEC, "dead"),
        std::slice::from_ref(settling),
        "left, not removed"
    );
    // The settle finishes: the next discard takes it.
    std::fs::remove_file(&active).unwrap();
    drop(alive);
    env.run(&["discard", SPEC, "--all-dead"]).expect(0);
    assert!(env.job_files(SPEC, "dead").is_empty());
}

#[test]
fn discard_waits_for_a_running_drain() {
    let env = ops_env("");
    let ids = four_dead(&env);
    let spool = Spool::new(env.spool_root()).spec(SPEC);
    let lock = spool.try_lock_drain().unwrap().expect("no drain running");
    let mut child = env
        .cmd(&["discard", SPEC, "--delivery-id", &ids[2]])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = Lines::new(child.stderr.take().unwrap());
    let child = Spawned::new(child);
    // Discard says it waits just before it blocks on the lock we hold.
    stderr.wait_for("waiting for the drain", CEILING);
    assert_eq!(
        env.job_files(SPEC, "dead").len(),
        4,
        "discard ran under a drain"
    );
    drop(lock);
    let run = child.wait_output(CEILING, "discard once the drain lock is free");
    assert_eq!(run.code, 0, "{}", stderr.all());
    assert_eq!(env.job_files(SPEC, "dead").len(), 3);
}
