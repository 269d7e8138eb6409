//! Per-SPEC overrides end to end: which endpoints an event really reaches
//! (global, SPEC glob, exact SPEC, per-call `--url`; most specific wins,
//! and an override can turn a subscription off for one SPEC), what `check`
//! says about them, and jobs held when their SPEC turns one off.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::receiver::Receiver;
use crate::support::*;

fn layered(rx: &Receiver) -> Env {
    let config = format!(
        r#"[spec_ops.webhooks]
enabled = true
auto_drain = false

[[spec_ops.webhooks.subscriptions]]
id = "chat"
url = "{global}"
secret_env = "S"

[[spec_ops.webhooks.subscriptions]]
id = "audit"
url = "{audit}"
secret_env = "S"

# Every SPEC-KIT SPEC posts to its own channel…
[spec_ops.webhooks.specs."SPEC-KIT-*".chat]
url = "{glob}"

# …but SPEC-KIT-065 to another, without the audit log, and to its team.
[spec_ops.webhooks.specs."SPEC-KIT-065".chat]
url = "{exact}"
[spec_ops.webhooks.specs."SPEC-KIT-065".audit]
active = false
[spec_ops.webhooks.specs."SPEC-KIT-065".team]
url = "{team}"
secret_env = "T"
"#,
        global = rx.url("/global"),
        audit = rx.url("/audit"),
        glob = rx.url("/glob"),
        exact = rx.url("/exact"),
        team = rx.url("/team"),
    );
    Env::new(&config).env("S", "s-secret").env("T", "t-secret")
}

/// The routes that received this SPEC's events.
fn routes_of(rx: &Receiver, spec: &str) -> BTreeSet<String> {
    rx.requests()
        .into_iter()
        .filter(|r| serde_json::from_slice::<Value>(&r.body).is_ok_and(|b| b["spec"]["id"] == spec))
        .map(|r| r.route().to_string())
        .collect()
}

#[test]
fn the_most_specific_target_wins() {
    let rx = Receiver::start();
    let env = layered(&rx);
    let percall = rx.url("/percall");
    let cases: &[(&str, &[&str], &[&str])] = &[
        ("OTHER-1", &[], &["/audit", "/global"]),
        ("SPEC-KIT-1", &[], &["/audit", "/glob"]),
        ("SPEC-KIT-065", &[], &["/exact", "/team"]),
        ("SPEC-KIT-0650", &[], &["/audit", "/glob"]),
        ("SPEC-KIT-065-b", &[], &["/audit", "/glob"]),
        (
            "SPEC-KIT-2",
            &["--url", &percall, "--allow-private-networks"],
            &["/percall"],
        ),
        (
            "SPEC-KIT-3",
            &[
                "--url",
                &percall,
                "--allow-private-networks",
                "--also-configured",
            ],
            &["/audit", "/glob", "/percall"],
        ),
    ];
    for (spec, extra, want) in cases {
        let mut args = vec![
            "emit",
            "--spec",
            spec,
            "--event",
            "spec-auto.pipeline.completed",
            "--status",
            "success",
        ];
        args.extend_from_slice(extra);
        env.run(&args).expect(0);
        env.run(&["drain", "--once", "--spec", spec]).expect(0);
        let got = routes_of(&rx, spec);
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{spec} {extra:?}");
    }
    // The override signs with its own secret.
    let team = rx.requests_to("/team");
    assert_eq!(team.len(), 1);
    assert!(team[0].header("X-SpecKit-Signature").is_some());
}

#[test]
fn check_shows_a_specs_subscriptions_and_where_they_come_from() {
    let rx = Receiver::start();
    let env = layered(&rx);
    let run = env.run(&["check", "--spec", "SPEC-KIT-065"]).expect(0);
    let rows = run.lines();
    let row = |id: &str| {
        rows.iter()
            .find(|r| r.trim_start().starts_with(&format!("{id} ")))
            .map(|r| r.to_string())
            .unwrap_or_else(|| panic!("no {id} in:\n{}", run.stdout))
    };
    assert!(row("chat").contains(&rx.url("/exact")), "{}", run.stdout);
    assert!(
        row("chat").contains("global < SPEC-KIT-* < SPEC-KIT-065"),
        "{}",
        run.stdout
    );
    assert!(row("audit").contains("inactive"), "{}", run.stdout);
    assert!(row("team").contains("SPEC-KIT-065 only"), "{}", run.stdout);
    let json: Value = serde_json::from_str(
        &env.run(&["check", "--spec", "SPEC-KIT-1", "--json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(json["pattern"], "SPEC-KIT-*");
    let subs = json["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["url"], rx.url("/glob"));
    let other = env.run(&["check", "--spec", "OTHER-9"]).expect(0);
    assert!(
        other.stdout.contains("no override matches"),
        "{}",
        other.stdout
    );
    let summary = env.run(&["check"]).expect(0);
    assert!(
        summary.stdout.contains(
            "SPEC-KIT-065: chat (changed by SPEC-KIT-* < SPEC-KIT-065), audit (off), team (added)"
        ),
        "{}",
        summary.stdout
    );
}

#[test]
fn check_names_every_bad_override_by_its_table() {
    let env = Env::new(
        r#"[spec_ops.webhooks]
enabled = true
[[spec_ops.webhooks.subscriptions]]
id = "chat"
url = "https://chat.example/h"
secret_env = "S"
[spec_ops.webhooks.specs."SPEC-KIT-*".chat]
url = "http://plain.example/h"
max_in_flight = 2
[spec_ops.webhooks.specs."SPEC-KIT-065".newcomer]
format = "slack"
[spec_ops.webhooks.specs."SPEC-*-x".chat]
active = false
"#,
    )
    .env("S", "s");
    let run = env.run(&["check"]).expect(2);
    for needle in [
        r#"[spec_ops.webhooks.specs."SPEC-KIT-*".chat]: key `url`: `http://plain.example/h` uses plain http"#,
        r#"[spec_ops.webhooks.specs."SPEC-KIT-*".chat]: key `max_in_flight`: cannot differ per SPEC"#,
        r#"[spec_ops.webhooks.specs."SPEC-KIT-065".newcomer]: key `url`: missing"#,
        r#"[spec_ops.webhooks.specs."SPEC-*-x"]: `SPEC-*-x`: `*` is allowed only at the end"#,
    ] {
        assert!(
            run.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            run.stderr
        );
    }
    // The same config refuses to emit: nothing is spooled on a broken config.
    env.run(&[
        "emit",
        "--spec",
        "SPEC-KIT-1",
        "--event",
        "spec-auto.pipeline.completed",
    ])
    .expect(2);
}

#[test]
fn turning_a_subscription_off_for_a_spec_holds_its_pending_jobs() {
    let rx = Receiver::start();
    let env = layered(&rx);
    env.run(&[
        "emit",
        "--spec",
        "SPEC-KIT-065",
        "--event",
        "spec-auto.pipeline.completed",
    ])
    .expect(0);
    let before = env.jobs("SPEC-KIT-065", "pending").len();
    assert_eq!(before, 2, "chat and team");
    env.run(&["subscriptions", "disable", "team", "--spec", "SPEC-KIT-065"])
        .expect(0);
    let drain = env
        .run(&["drain", "--once", "--spec", "SPEC-KIT-065"])
        .expect(0);
    assert!(drain.stderr.contains("held 1"), "{}", drain.stderr);
    assert_eq!(rx.requests_to("/team").len(), 0);
    assert_eq!(rx.requests_to("/exact").len(), 1);
    assert_eq!(env.jobs("SPEC-KIT-065", "pending").len(), 1, "team waits");
}
