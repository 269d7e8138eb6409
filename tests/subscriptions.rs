//! `spec-notify subscriptions` on a real config.toml full of comments:
//! untouched lines stay byte for byte, invalid changes exit 2 and leave the
//! file byte-identical, concurrent edits never corrupt it, removing a
//! subscription with jobs says what becomes of them (and the drain does
//! it), `add --test` reaches the endpoint. And `check --probe`.

use std::process::Stdio;

use serde_json::Value;

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const COMMENTED: &str = r#"# spec-notify settings for this repo.
# Keep this file reviewed: it decides where pipeline events go.

[model]   # another tool's table
name = "keep me"

[spec_ops.webhooks]
enabled = true          # on for everyone
auto_drain = false

# --- The team channel -------------------------------------------------
[[spec_ops.webhooks.subscriptions]]
id = "chat"             # referenced by runbooks
url = 'URL_CHAT'        # single quotes on purpose
secret_env = "SECRET_CHAT"
max_attempts = 8        # the default, spelled out

# --- The audit log ----------------------------------------------------
[[spec_ops.webhooks.subscriptions]]
id = "audit"
url = "URL_AUDIT"
secret_env = "SECRET_AUDIT"

[spec_ops.telemetry]    # also another tool's
keep = true
"#;

fn commented(rx: &Receiver) -> (Env, String) {
    let text = COMMENTED
        .replace("URL_CHAT", &rx.url("/chat"))
        .replace("URL_AUDIT", &rx.url("/audit"));
    let env = Env::new(&text)
        .env("SECRET_CHAT", "chat-secret")
        .env("SECRET_AUDIT", "audit-secret")
        .env("SECRET_OPS", "ops-secret");
    (env, text)
}

fn config_text(env: &Env) -> String {
    std::fs::read_to_string(env.config_path()).unwrap()
}

#[test]
fn edits_keep_comments_and_every_untouched_line() {
    let rx = Receiver::start();
    let (env, original) = commented(&rx);
    env.run(&[
        "subscriptions",
        "add",
        "ops",
        "--url",
        &rx.url("/ops"),
        "--secret-env",
        "SECRET_OPS",
        "--event",
        "spec-auto.*",
    ])
    .expect(0);
    let added = original.replace(
        "secret_env = \"SECRET_AUDIT\"\n",
        &format!(
            "secret_env = \"SECRET_AUDIT\"\n\n[[spec_ops.webhooks.subscriptions]]\nid = \"ops\"\nurl = \"{}\"\nsecret_env = \"SECRET_OPS\"\ninclude_events = [\"spec-auto.*\"]\n",
            rx.url("/ops")
        ),
    );
    assert_eq!(config_text(&env), added);

    env.run(&[
        "subscriptions",
        "set",
        "chat",
        "max_attempts=12",
        "dry_run=true",
    ])
    .expect(0);
    let set = added.replace(
        "max_attempts = 8        # the default, spelled out\n",
        "max_attempts = 12        # the default, spelled out\ndry_run = true\n",
    );
    assert_eq!(config_text(&env), set);

    env.run(&["subscriptions", "remove", "audit"]).expect(0);
    let removed = set.replace(
        &format!(
            "\n# --- The audit log ----------------------------------------------------\n[[spec_ops.webhooks.subscriptions]]\nid = \"audit\"\nurl = \"{}\"\nsecret_env = \"SECRET_AUDIT\"\n",
            rx.url("/audit")
        ),
        "",
    );
    assert_eq!(config_text(&env), removed);

    env.run(&["subscriptions", "disable", "ops"]).expect(0);
    env.run(&["subscriptions", "enable", "ops"]).expect(0);
    assert_eq!(
        config_text(&env),
        removed.replace(
            "include_events = [\"spec-auto.*\"]\n",
            "include_events = [\"spec-auto.*\"]\nactive = true\n"
        )
    );
    // The result is what `check` accepts.
    env.run(&["check"]).expect(0);
    let listed: Value = serde_json::from_str(
        &env.run(&["subscriptions", "list", "--json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    let ids: Vec<&str> = listed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["chat", "ops"]);
}

#[test]
fn edits_of_a_crlf_file_keep_crlf_on_every_line() {
    let rx = Receiver::start();
    let (_, original) = commented(&rx);
    let crlf = original.replace('\n', "\r\n");
    let env = Env::new(&crlf)
        .env("SECRET_CHAT", "chat-secret")
        .env("SECRET_AUDIT", "audit-secret")
        .env("SECRET_OPS", "ops-secret");
    assert_eq!(config_text(&env), crlf);
    env.run(&[
        "subscriptions",
        "add",
        "ops",
        "--url",
        &rx.url("/ops"),
        "--secret-env",
        "SECRET_OPS",
    ])
    .expect(0);
    let added = crlf.replace(
        "secret_env = \"SECRET_AUDIT\"\r\n",
        &format!(
            "secret_env = \"SECRET_AUDIT\"\r\n\r\n[[spec_ops.webhooks.subscriptions]]\r\nid = \"ops\"\r\nurl = \"{}\"\r\nsecret_env = \"SECRET_OPS\"\r\n",
            rx.url("/ops")
        ),
    );
    assert_eq!(config_text(&env), added);
    env.run(&["check"]).expect(0);
}

#[test]
fn invalid_changes_exit_2_and_leave_the_file_byte_identical() {
    let rx = Receiver::start();
    let (env, original) = commented(&rx);
    let cases: &[(&[&str], &str)] = &[
        (
            &["subscriptions", "set", "chat", "max_attempts=0"],
            "0 is out of range",
        ),
        (
            &["subscriptions", "set", "chat", "url=http://example.com/h"],
            "plain http",
        ),
        (
            &["subscriptions", "set", "chat", "formt=slack"],
            "unknown key `formt`",
        ),
        (
            &["subscriptions", "set", "nobody", "dry_run=true"],
            "no subscription `nobody`",
        ),
        (
            &["subscriptions", "set", "chat", "id=other"],
            "`id` cannot be changed",
        ),
        (
            &[
                "subscriptions",
                "add",
                "chat",
                "--url",
                "https://x.example/h",
                "--secret-env",
                "X",
            ],
            "already exists",
        ),
        (
            &[
                "subscriptions",
                "add",
                "new",
                "--url",
                "https://x.example/h",
            ],
            "key `secret_env`: missing",
        ),
        (
            &[
                "subscriptions",
                "add",
                "new",
                "--url",
                "not a url",
                "--secret-env",
                "X",
            ],
            "not a valid URL",
        ),
        (
            &["subscriptions", "remove", "nobody"],
            "no subscription `nobody`",
        ),
        (
            &[
                "subscriptions",
                "set",
                "chat",
                "--spec",
                "SPEC-*",
                "rate_limit=1/s",
            ],
            "cannot differ per SPEC",
        ),
        (
            &["subscriptions", "disable", "chat", "--spec", "A*B"],
            "`*` is allowed only at the end",
        ),
        (
            &["subscriptions", "remove", "chat", "--spec", "SPEC-1"],
            "no table",
        ),
    ];
    for (args, needle) in cases {
        let run = env.run(args).expect(2);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert_eq!(config_text(&env), original, "{args:?} changed the file");
    }
    let leftovers: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn concurrent_adds_never_corrupt_the_file() {
    let rx = Receiver::start();
    let (env, original) = commented(&rx);
    let children: Vec<Spawned> = (0..8)
        .map(|i| {
            Spawned::new(
                env.cmd(&[
                    "subscriptions",
                    "add",
                    &format!("s{i}"),
                    "--url",
                    &format!("https://s{i}.example/h"),
                    "--secret-env",
                    "SECRET_OPS",
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
            )
        })
        .collect();
    for child in children {
        child.wait_output(CEILING, "a concurrent add").expect(0);
    }
    let text = config_text(&env);
    assert!(
        text.starts_with(&original[..original.find("[spec_ops.telemetry]").unwrap()]),
        "{text}"
    );
    let listed: Value = serde_json::from_str(
        &env.run(&["subscriptions", "list", "--json"])
            .expect(0)
            .stdout,
    )
    .unwrap();
    let mut ids: Vec<String> = listed["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "audit", "chat", "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"
        ],
        "{text}"
    );
    env.run(&["check"]).expect(0);
}

#[test]
fn removing_a_subscription_with_jobs_says_what_becomes_of_them() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(500));
    let (env, _) = commented(&rx);
    env.run(&["subscriptions", "set", "audit", "max_attempts=1"])
        .expect(0);
    let emit = || {
        env.run(&[
            "emit",
            "--spec",
            "SPEC-RM",
            "--event",
            "spec-auto.pipeline.completed",
        ])
        .expect(0)
    };
    emit();
    env.run(&["drain", "--once"]).expect(0); // audit's job dies (500, one attempt)
    emit(); // and one more waits
    let run = env.run(&["subscriptions", "remove", "audit"]).expect(0);
    assert!(
        run.stderr.contains("1 pending job(s) of `audit` (SPEC-RM) will be dead-lettered by the next drain as `subscription-removed`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("1 dead job(s) of `audit` (SPEC-RM) stay in dead-letter"),
        "{}",
        run.stderr
    );
    env.run(&["drain", "--once"]).expect(0);
    let dead = env.jobs("SPEC-RM", "dead");
    let removed: Vec<&Value> = dead
        .iter()
        .map(|(m, _)| m)
        .filter(|m| m["subscription"] == "audit" && m["dead_reason"] == "subscription-removed")
        .collect();
    assert_eq!(removed.len(), 1, "{dead:?}");
}

#[test]
fn add_with_test_reaches_the_new_endpoint() {
    let rx = Receiver::start();
    let (env, _) = commented(&rx);
    let run = env
        .run(&[
            "subscriptions",
            "add",
            "ops",
            "--url",
            &rx.url("/ops"),
            "--secret-env",
            "SECRET_OPS",
            "--test",
        ])
        .expect(0);
    assert!(run.stdout.contains("test delivery ok"), "{}", run.stdout);
    let got = rx.wait_for(1, CEILING);
    assert_eq!(got[0].route(), "/ops");
    assert_eq!(got[0].header("X-SpecKit-Event"), Some("spec-notify.test"));
    assert!(got[0].header("X-SpecKit-Signature").is_some());
    assert!(
        env.evidence("spec-notify-test")
            .join("attempts.jsonl")
            .exists()
    );

    // A dead endpoint: the subscription is added all the same, the test fails.
    let dead = dead_port_url();
    let run = env
        .run(&[
            "subscriptions",
            "add",
            "gone",
            "--url",
            &dead,
            "--secret-env",
            "SECRET_OPS",
            "--test",
        ])
        .expect(1);
    assert!(
        run.stdout.contains("test delivery FAILED"),
        "{}",
        run.stdout
    );
    assert!(config_text(&env).contains("id = \"gone\""));
}

/// A loopback URL nothing listens on.
fn dead_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}/gone")
}

#[test]
fn check_probe_reports_live_and_dead_endpoints() {
    let rx = Receiver::start();
    let dead = dead_port_url();
    let env = Env::new(&config_with(&format!(
        "{}{}",
        subscription("live", &rx.url("/live?token=t0ken"), ""),
        subscription("dead", &dead, ""),
    )))
    .env("SECRET_LIVE", "a")
    .env("SECRET_DEAD", "b");
    // Without --probe nothing goes out, and a dead endpoint fails nothing.
    env.run(&["check"]).expect(0);
    assert!(rx.requests().is_empty());

    let run = env.run(&["check", "--probe"]).expect(1);
    let rows: Vec<&str> = run
        .lines()
        .into_iter()
        .skip_while(|l| !l.starts_with("probes ("))
        .collect();
    let live = rows
        .iter()
        .find(|r| r.trim_start().starts_with("live "))
        .unwrap();
    let gone = rows
        .iter()
        .find(|r| r.trim_start().starts_with("dead "))
        .unwrap();
    assert!(live.contains("reachable: HTTP 204"), "{}", run.stdout);
    assert!(gone.contains("UNREACHABLE"), "{}", run.stdout);
    assert!(
        run.stderr.contains("1 endpoint(s) did not answer"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("t0ken"), "{}", run.stdout);
    let got = rx.wait_for(1, CEILING);
    assert_eq!(got[0].method, "HEAD");
    assert!(got[0].body.is_empty());
    assert!(
        got[0].header("X-SpecKit-Signature").is_none(),
        "no secret goes out"
    );

    let json: Value =
        serde_json::from_str(&env.run(&["check", "--probe", "--json"]).expect(1).stdout).unwrap();
    let results: Vec<(&str, &str)> = json["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("live", "reachable"), ("dead", "unreachable")]);
}

#[test]
fn check_probe_reports_the_status_and_a_404_or_410_is_a_problem() {
    let missing = Receiver::start();
    missing.set_default(Reply::Status(404));
    let gone = Receiver::start();
    gone.set_default(Reply::Status(410));
    let live = Receiver::start();
    live.set_default(Reply::Status(405));
    let env = Env::new(&config_with(&format!(
        "{}{}{}",
        subscription("missing", &missing.url("/hook"), ""),
        subscription("gone", &gone.url("/hook"), ""),
        subscription("live", &live.url("/hook"), ""),
    )))
    .env("SECRET_MISSING", "a")
    .env("SECRET_GONE", "b")
    .env("SECRET_LIVE", "c");
    let run = env.run(&["check", "--probe"]).expect(1);
    let row = |id: &str| {
        run.lines()
            .into_iter()
            .skip_while(|l| !l.starts_with("probes ("))
            .find(|r| r.trim_start().starts_with(&format!("{id} ")))
            .unwrap()
            .to_string()
    };
    assert!(
        row("missing").contains("NOT FOUND: HTTP 404"),
        "{}",
        run.stdout
    );
    assert!(row("gone").contains("GONE: HTTP 410"), "{}", run.stdout);
    assert!(
        row("live").contains("reachable: HTTP 405"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains("2 endpoint(s) answered 404 or 410"),
        "{}",
        run.stderr
    );
    let json: Value =
        serde_json::from_str(&env.run(&["check", "--probe", "--json"]).expect(1).stdout).unwrap();
    let results: Vec<(&str, &str, u64)> = json["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap(),
                p["result"].as_str().unwrap(),
                p["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("missing", "missing", 404),
            ("gone", "missing", 410),
            ("live", "reachable", 405)
        ]
    );
}
