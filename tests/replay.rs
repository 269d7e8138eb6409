//! replay: dead jobs back to pending with the same delivery id, then delivered
//! once the endpoint is fixed; a delivered job delivered again on purpose;
//! filters; unknown ids change nothing; ids shortened like git's hashes.

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

fn env_with(rx: &Receiver) -> Env {
    let tables = format!(
        "{}{}",
        subscription("a", &rx.url("/a"), "max_attempts = 1"),
        subscription("b", &rx.url("/b"), "max_attempts = 1"),
    );
    Env::new(&config_with(&tables))
        .env("SECRET_A", "sa")
        .env("SECRET_B", "sb")
}

fn emit(env: &Env) -> Vec<String> {
    env.run(&[
        "emit",
        "--spec",
        "SPEC-R",
        "--event",
        "spec-auto.pipeline.completed",
        "--status",
        "failure",
    ])
    .expect(0)
    .ids()
    .into_iter()
    .collect()
}

#[test]
fn replay_of_a_dead_job_after_the_endpoint_is_fixed() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(500));
    let env = env_with(&rx);
    emit(&env);
    env.run(&["drain", "--once"]).expect(0);
    let dead = env.jobs("SPEC-R", "dead");
    assert_eq!(dead.len(), 2);
    let id = dead
        .iter()
        .find(|(m, _)| m["subscription"] == "a")
        .unwrap()
        .0["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();

    rx.set_default(Reply::Status(204));
    // The PRD's flag form.
    let run = env
        .run(&["--replay", "SPEC-R", "--delivery-id", &id])
        .expect(0);
    assert!(run.stderr.contains("delivered 1"), "{}", run.stderr);
    let to_a = rx.requests_to("/a");
    assert_eq!(to_a.len(), 2);
    assert_eq!(
        to_a[1].header("X-SpecKit-Id"),
        Some(id.as_str()),
        "same delivery id on replay"
    );
    assert_eq!(
        to_a[1].header("X-SpecKit-Attempt"),
        Some("1"),
        "attempts reset"
    );
    assert_eq!(
        env.jobs("SPEC-R", "dead").len(),
        1,
        "the replayed job left the dead-letter folder"
    );
    let (meta, _) = &env.jobs("SPEC-R", "delivered")[0];
    assert_eq!(meta["delivery_id"], id.as_str());
    assert_eq!(meta["replays"], 1);
    let log = std::fs::read_to_string(env.evidence("SPEC-R").join("attempts.jsonl")).unwrap();
    let outcomes: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["delivery_id"] == id.as_str())
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["dead", "requeued", "delivered"]);
    // The requeue got no answer: its row shows no status (the dead row has the 500).
    let table = env
        .run(&[
            "history",
            "SPEC-R",
            "--subscription",
            "a",
            "--format",
            "table",
        ])
        .expect(0);
    let requeued = table
        .rows()
        .into_iter()
        .find(|r| r.contains("requeued"))
        .unwrap();
    let cells: Vec<&str> = requeued.split_whitespace().collect();
    let at = cells.iter().position(|c| *c == "requeued").unwrap();
    assert_eq!(
        cells[at + 1],
        "-",
        "no HTTP status on a requeue: {}",
        table.stdout
    );
    assert!(!requeued.contains("500"), "{requeued}");
}

/// (metadata of the job with this delivery id, wherever it is, and its folder).
fn job_by_id(env: &Env, id: &str) -> (serde_json::Value, &'static str) {
    let found: Vec<_> = ["pending", "active", "delivered", "dead"]
        .into_iter()
        .flat_map(|state| {
            env.jobs("SPEC-R", state)
                .into_iter()
                .filter(|(m, _)| m["delivery_id"] == id)
                .map(move |(m, _)| (m, state))
        })
        .collect();
    assert_eq!(found.len(), 1, "exactly one job {id}: {found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn replay_of_a_delivered_job_delivers_it_again_with_the_same_id() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    emit(&env);
    env.run(&["drain", "--once"]).expect(0);
    let id = env
        .jobs("SPEC-R", "delivered")
        .into_iter()
        .find(|(m, _)| m["subscription"] == "a")
        .expect("a delivered job for subscription a")
        .0["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (meta, _) = job_by_id(&env, &id);
    assert_eq!(
        (meta["attempts"].as_u64(), meta["replays"].as_u64()),
        (Some(1), Some(0))
    );

    let run = env
        .run(&["replay", "SPEC-R", "--delivery-id", &id])
        .expect(0);
    assert!(
        run.stderr
            .contains(&format!("requeued {id} (a, was delivered)")),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("delivered 1"), "{}", run.stderr);

    let to_a = rx.requests_to("/a");
    assert_eq!(to_a.len(), 2, "delivered once more");
    for req in &to_a {
        assert_eq!(
            req.header("X-SpecKit-Id"),
            Some(id.as_str()),
            "same delivery id"
        );
        // README "Replaying failures": attempts reset, so the redelivery is attempt 1.
        assert_eq!(req.header("X-SpecKit-Attempt"), Some("1"));
    }
    assert_eq!(to_a[0].body, to_a[1].body, "the same envelope bytes");
    assert_eq!(
        rx.requests_to("/b").len(),
        1,
        "only the chosen job is replayed"
    );

    let (meta, state) = job_by_id(&env, &id);
    assert_eq!(state, "delivered", "delivered again, one copy");
    assert_eq!(meta["attempts"], 1, "counted from the reset");
    assert_eq!(meta["replays"], 1);
    assert_eq!(env.jobs("SPEC-R", "delivered").len(), 2);
    let log = std::fs::read_to_string(env.evidence("SPEC-R").join("attempts.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["delivery_id"] == id.as_str())
        .collect();
    let outcomes: Vec<&str> = records
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["delivered", "requeued", "delivered"]);
    let attempts: Vec<u64> = records
        .iter()
        .map(|r| r["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 0, 1], "the operator action is attempt 0");
    assert!(
        records[1]["error"]
            .as_str()
            .unwrap()
            .contains("requeued from delivered"),
        "{}",
        records[1]
    );
}

#[test]
fn replay_all_dead_with_subscription_filter_and_no_drain() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(503));
    let env = env_with(&rx);
    emit(&env);
    emit(&env);
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(env.jobs("SPEC-R", "dead").len(), 4);
    env.run(&[
        "replay",
        "SPEC-R",
        "--all-dead",
        "--subscription",
        "b",
        "--since",
        "1h",
        "--no-drain",
    ])
    .expect(0);
    let pending = env.jobs("SPEC-R", "pending");
    assert_eq!(pending.len(), 2);
    assert!(
        pending
            .iter()
            .all(|(m, _)| m["subscription"] == "b" && m["attempts"] == 0)
    );
    assert_eq!(env.jobs("SPEC-R", "dead").len(), 2);
    // --until in the past matches nothing.
    let run = env
        .run(&[
            "replay",
            "SPEC-R",
            "--all-dead",
            "--until",
            "2000-01-01T00:00:00Z",
        ])
        .expect(0);
    assert!(run.stderr.contains("nothing replayed"), "{}", run.stderr);
}

#[test]
fn replay_that_fails_again_exits_1_and_keeps_the_job() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(400));
    let env = env_with(&rx);
    emit(&env);
    env.run(&["drain", "--once"]).expect(0);
    let run = env
        .run(&["replay", "SPEC-R", "--all-dead", "--json"])
        .expect(1);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "dead"),
        "{rows}"
    );
    assert_eq!(env.jobs("SPEC-R", "dead").len(), 2);
}

#[test]
fn unknown_delivery_id_is_exit_2_and_changes_nothing() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    let ids = emit(&env);
    let before = env.snapshot();
    let run = env
        .run(&[
            "replay",
            "SPEC-R",
            "--delivery-id",
            "00000000-0000-4000-8000-000000000000",
        ])
        .expect(2);
    assert!(run.stderr.contains("no job has that id"), "{}", run.stderr);
    let run = env
        .run(&["replay", "SPEC-R", "--delivery-id", &ids[0]])
        .expect(2);
    assert!(run.stderr.contains("pending already"), "{}", run.stderr);
    env.run(&["replay", "NO-SUCH-SPEC", "--delivery-id", &ids[0]])
        .expect(2);
    env.run(&["replay", "../etc", "--all-dead"]).expect(2);
    assert_eq!(env.snapshot(), before);
    assert!(rx.requests().is_empty());
}

#[test]
fn replay_and_discard_take_a_unique_prefix_of_eight_hex_digits_or_more() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(500));
    let env = env_with(&rx);
    let ids = emit(&env);
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(env.jobs("SPEC-R", "dead").len(), 2);
    // Two dead jobs whose ids share their first 8 hex digits.
    let (a, b) = (
        ids[0].clone(),
        crate::list::sharing_first_group(&ids[0], &ids[1]),
    );
    crate::list::rename_job(&env, "SPEC-R", &ids[1], &b);
    let before = env.snapshot();

    for command in ["replay", "discard"] {
        let run = env
            .run(&[command, "SPEC-R", "--delivery-id", &a[..8]])
            .expect(2);
        assert!(
            run.stderr.contains("is ambiguous")
                && run.stderr.contains(&format!("{a} (dead)"))
                && run.stderr.contains(&format!("{b} (dead)")),
            "{}",
            run.stderr
        );
        let run = env
            .run(&[command, "SPEC-R", "--delivery-id", &a[..7]])
            .expect(2);
        assert!(
            run.stderr.contains("too short") && run.stderr.contains("at least 8 hex digits"),
            "{}",
            run.stderr
        );
    }
    assert_eq!(env.snapshot(), before, "refused: nothing changed");
    assert!(rx.requests().len() == 2, "nothing sent");

    // One more group names one job: replayed under its whole id.
    rx.set_default(Reply::Status(204));
    let run = env
        .run(&["replay", "SPEC-R", "--delivery-id", &a[..13].to_uppercase()])
        .expect(0);
    assert!(run.stderr.contains("delivered 1"), "{}", run.stderr);
    let last = rx.requests().pop().unwrap();
    assert_eq!(last.header("X-SpecKit-Id"), Some(a.as_str()));
    env.run(&["discard", "SPEC-R", "--delivery-id", &b[..13]])
        .expect(0);
    assert!(env.jobs("SPEC-R", "dead").is_empty());
    // Only what is pending or delivered is left to find: a prefix of the
    // delivered job is not ambiguous with the discarded one.
    let run = env
        .run(&["discard", "SPEC-R", "--delivery-id", &a[..8]])
        .expect(2);
    assert!(
        run.stderr.contains("is delivered, not dead"),
        "{}",
        run.stderr
    );
}
