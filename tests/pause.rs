//! `pause`, `resume`, a 410 or `webhook-delivery: disable` pausing a
//! subscription, and what `status` and `emit` say while it lasts.

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

fn env_with(rx: &Receiver) -> Env {
    let retry = "jitter_ms = 0\ninitial_backoff_ms = 50";
    Env::new(&config_with(&format!(
        "{}{}",
        subscription("hook", &rx.url("/hook"), retry),
        subscription("other", &rx.url("/other"), retry),
    )))
    .env("SECRET_HOOK", "s3cret-hook")
    .env("SECRET_OTHER", "s3cret-other")
}

fn status(env: &Env, code: i32) -> serde_json::Value {
    let run = env.run(&["status", "--json"]).expect(code);
    serde_json::from_str(&run.stdout).unwrap()
}

fn gate<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["subscription"] == id)
        .unwrap()
}

#[test]
fn a_paused_subscription_spools_but_sends_nothing_until_resumed() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    env.run(&["pause", "hook", "--reason", "maintenance INC-7"])
        .expect(0);
    let run = emit_plan(&env, "SPEC-P").expect(0);
    assert!(
        run.stderr
            .contains("subscription hook is paused: maintenance INC-7"),
        "emit warns and still spools: {}",
        run.stderr
    );
    assert_eq!(run.lines().len(), 2, "both jobs spooled: {}", run.stdout);
    env.run(&["drain", "--once"]).expect(0);
    assert!(rx.requests_to("/hook").is_empty(), "paused: nothing sent");
    assert_eq!(
        rx.requests_to("/other").len(),
        1,
        "the others are not held back"
    );
    let pending = env.jobs("SPEC-P", "pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0["attempts"], 0, "waiting uses no attempts");

    let report = status(&env, 1);
    let hook = gate(&report, "hook");
    assert_eq!(hook["circuit"], "paused");
    assert_eq!(hook["paused_reason"], "maintenance INC-7");
    assert_eq!(hook["waiting"], 1);
    assert_eq!(gate(&report, "other")["circuit"], "closed");
    let text = env.run(&["status"]).expect(1);
    assert!(
        text.stdout.contains("spec-notify resume hook"),
        "{}",
        text.stdout
    );

    let run = env.run(&["resume", "hook"]).expect(0);
    assert!(
        run.stderr.contains("resumed hook: 1 waiting"),
        "{}",
        run.stderr
    );
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(rx.requests_to("/hook").len(), 1, "released on resume");
    status(&env, 0);
    let run = env.run(&["resume", "hook"]).expect(0);
    assert!(run.stderr.contains("nothing to do"), "{}", run.stderr);

    // Every SPEC's history shows when its notifications were held back.
    env.run(&["pause", "hook"]).expect(0);
    let history = env.run(&["history", "SPEC-P"]).expect(0).stdout;
    assert!(history.contains("\"subscription-resumed\""), "{history}");
    assert!(history.contains("\"subscription-paused\""), "{history}");
}

#[test]
fn gone_and_disable_answers_pause_the_subscription_and_keep_the_job() {
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Status(410)]);
    rx.script(
        "/other",
        [Reply::Headers(
            200,
            vec![("webhook-delivery".into(), "disable".into())],
        )],
    );
    let env = env_with(&rx);
    emit_plan(&env, "SPEC-G").expect(0);
    let run = env.run(&["drain", "--once"]).expect(0);
    assert!(
        run.stderr
            .contains("endpoint answered 410 Gone: subscription paused")
            && run.stderr.contains("`webhook-delivery: disable`"),
        "{}",
        run.stderr
    );
    assert_eq!(env.jobs("SPEC-G", "pending").len(), 2, "not dead-lettered");
    assert!(env.jobs("SPEC-G", "dead").is_empty());
    let report = status(&env, 1);
    for id in ["hook", "other"] {
        assert_eq!(gate(&report, id)["circuit"], "paused", "{id}");
        assert_eq!(gate(&report, id)["paused_by"], "endpoint", "{id}");
    }
    // A second drain sends nothing more to them.
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(rx.requests().len(), 2);

    env.run(&["resume", "hook"]).expect(0);
    env.run(&["resume", "other"]).expect(0);
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(
        env.jobs("SPEC-G", "delivered").len(),
        2,
        "delivered after resume"
    );
    status(&env, 0);
}

#[test]
fn unknown_subscriptions_are_refused_naming_the_known_ones() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    let run = env.run(&["pause", "hoook"]).expect(2);
    assert!(run.stderr.contains("known: hook, other"), "{}", run.stderr);
    env.run(&["resume", "nope"]).expect(2);
    env.run(&["pause", "../x"]).expect(2);
}

#[test]
fn status_warns_when_jobs_wait_for_an_unset_secret() {
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")));
    emit_plan(&env, "SPEC-S").expect(0);
    let report = status(&env, 0);
    let hook = gate(&report, "hook");
    assert!(
        hook["secret_unset"]
            .as_str()
            .unwrap()
            .contains("SECRET_HOOK"),
        "{hook}"
    );
    assert_eq!(hook["waiting"], 1);
    let text = env.run(&["status"]).expect(0).stdout;
    assert!(
        text.contains("SECRET_HOOK") && text.contains("wait in pending"),
        "{text}"
    );
}
