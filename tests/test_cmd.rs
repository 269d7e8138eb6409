//! test: a signed sample event sent synchronously, exit 0 iff 2xx; --print.

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const SECRET: &str = "test-secret-value-93";

fn env_for(rx: &Receiver) -> Env {
    Env::new(&config_with(&subscription("hook", &rx.url("/hook"), ""))).env("SECRET_HOOK", SECRET)
}

#[test]
fn test_delivery_succeeds_and_is_logged() {
    let rx = Receiver::start();
    let env = env_for(&rx);
    // The PRD's flag form.
    let run = env
        .run(&["--test", "SPEC-KIT-065", "--subscription", "hook"])
        .expect(0);
    assert!(run.stdout.contains("answered HTTP 204"), "{}", run.stdout);
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("X-SpecKit-Event"), Some("spec-notify.test"));
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["event"]["test"], true);
    assert_eq!(body["spec"]["id"], "SPEC-KIT-065");
    let log = std::fs::read_to_string(env.evidence("SPEC-KIT-065").join("attempts.jsonl")).unwrap();
    assert!(
        log.contains("\"outcome\":\"test\"") && log.contains("\"status\":204"),
        "{log}"
    );
    assert!(
        env.job_files("SPEC-KIT-065", "pending").is_empty(),
        "no spool"
    );
}

#[test]
fn test_failure_exits_1_and_config_errors_exit_2() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(401));
    let env = env_for(&rx);
    let run = env
        .run(&["test", "SPEC-1", "--subscription", "hook", "--json"])
        .expect(1);
    let out: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["status"], 401);
    assert_eq!(out["ok"], false);
    let run = env
        .run(&["test", "SPEC-1", "--subscription", "nope"])
        .expect(2);
    assert!(run.stderr.contains("known: hook"), "{}", run.stderr);
    let no_secret = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")));
    let run = no_secret
        .run(&["test", "SPEC-1", "--subscription", "hook"])
        .expect(2);
    assert!(run.stderr.contains("SECRET_HOOK"), "{}", run.stderr);
}

#[test]
fn print_shows_the_exact_request_without_sending_or_the_secret() {
    let rx = Receiver::start();
    let env = env_for(&rx);
    let run = env
        .run(&["test", "SPEC-1", "--subscription", "hook", "--print"])
        .expect(0);
    assert!(
        run.stdout.starts_with("POST http://127.0.0.1:"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("X-SpecKit-Signature: sha256="));
    assert!(run.stdout.contains("\"type\":\"spec-notify.test\""));
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));
    // `test` has exited: a request it sent was recorded before it was answered.
    assert!(rx.requests().is_empty(), "--print sends nothing");
}

#[test]
fn the_only_subscription_needs_no_flag_and_several_are_named() {
    let rx = Receiver::start();
    let env = env_for(&rx);
    let run = env.run(&["test", "SPEC-KIT-065"]).expect(0);
    assert!(run.stdout.contains("answered HTTP 204"), "{}", run.stdout);
    assert_eq!(rx.requests_to("/hook").len(), 1);

    let env = Env::new(&config_with(&format!(
        "{}{}",
        subscription("hook", &rx.url("/hook"), ""),
        subscription("other", &rx.url("/other"), "")
    )))
    .env("SECRET_HOOK", SECRET)
    .env("SECRET_OTHER", SECRET);
    let run = env.run(&["test", "SPEC-KIT-065"]).expect(2);
    assert!(
        run.stderr
            .contains("has 2 subscriptions: name one with --subscription (hook, other)"),
        "{}",
        run.stderr
    );
    assert_eq!(rx.requests().len(), 1, "nothing more sent");
}
