//! emit: flags, stdin, JSON Lines, filters, bad input, concurrency, crashes.

use crate::support::*;

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
    )));
    let run = env
        .run(&[
            "emit",
            "--spec",
            "SPEC-1",
            "--event",
            "spec-auto.stage.completed",
            "--stage",
            "Plan",
            "--status",
            "success",
        ])
        .expect(0);
    assert_eq!(run.lines().len(), 1, "only slack matches: {}", run.stdout);
    let jobs = env.jobs("SPEC-1", "pending");
    assert_eq!(jobs.len(), 1);
    let (meta, body) = &jobs[0];
    assert_eq!(meta["subscription"], "slack");
    assert_eq!(meta["delivery_id"], run.lines()[0]);
    assert_eq!(body["event"]["stage"], "Plan");
    assert_eq!(body["sequence"], 1);
}
