//! config and `check`: the PRD example, validation reported all at once,
//! unknown keys, relative paths, where the config is found, the enable switch.

use serde_json::Value;

use crate::support::*;

/// The PRD's Configuration section, verbatim.
const PRD_EXAMPLE: &str = include_str!("fixtures/prd-config.toml");

const SLACK_SECRET: &str = "slack-s3cret-never-shown";
const TRACKER_SECRET: &str = "tracker-s3cret-never-shown";

#[track_caller]
fn assert_no_secret(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "secret value leaked:\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
}

fn check_json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("check --json printed no JSON ({e}):\n{}", run.stdout))
}

#[test]
fn prd_example_is_valid_when_its_secrets_are_set() {
    let env = Env::new(PRD_EXAMPLE)
        .env("SPECKIT_WEBHOOK_SECRET_SLACK", SLACK_SECRET)
        .env("SPECKIT_WEBHOOK_SECRET_TRACKER", TRACKER_SECRET);
    let run = env.run(&["check"]).expect(0);
    assert!(run.stdout.contains("chatops-slack"), "{}", run.stdout);
    assert!(run.stdout.contains("task-tracker"), "{}", run.stdout);
    assert!(
        run.stdout.contains("SPECKIT_WEBHOOK_SECRET_SLACK (set)"),
        "{}",
        run.stdout
    );
    assert_no_secret(&run, SLACK_SECRET);
    assert_no_secret(&run, TRACKER_SECRET);

    let run = env.run(&["check", "--json"]).expect(0);
    assert_no_secret(&run, SLACK_SECRET);
    let summary = check_json(&run);
    assert_eq!(summary["enabled"], true);
    let subs = summary["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["id"], "chatops-slack");
    assert_eq!(subs[0]["max_attempts"], 10);
    assert_eq!(subs[0]["include_stages"].as_array().unwrap().len(), 6);
    assert_eq!(subs[1]["dry_run"], true);
    assert_eq!(subs[1]["per_request_timeout_ms"], 3000);
}

#[test]
fn unset_secret_fails_check_naming_the_variable_and_no_value() {
    // Only the slack secret is required: the tracker is dry-run.
    let env = Env::new(PRD_EXAMPLE).env("SPECKIT_WEBHOOK_SECRET_TRACKER", TRACKER_SECRET);
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr
            .contains("subscription `chatops-slack`: key `secret_env`")
            && run
                .stderr
                .contains("SPECKIT_WEBHOOK_SECRET_SLACK is unset or empty"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(1 problem)"), "{}", run.stderr);
    assert!(!run.stderr.contains("task-tracker"), "{}", run.stderr);
    assert_no_secret(&run, TRACKER_SECRET);

    let env = env.env("SPECKIT_WEBHOOK_SECRET_SLACK", "");
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr
            .contains("SPECKIT_WEBHOOK_SECRET_SLACK is unset or empty"),
        "an empty secret is no secret: {}",
        run.stderr
    );
}

#[test]
fn every_validation_problem_is_reported_in_one_run() {
    let env = Env::new(&config_with(
        r#"
[[spec_ops.webhooks.subscriptions]]
id = "dup"
url = "https://a.example/hook"
secret_env = "SECRET_DUP_A"

[[spec_ops.webhooks.subscriptions]]
id = "dup"
url = "https://b.example/hook"
secret_env = "SECRET_DUP_B"

[[spec_ops.webhooks.subscriptions]]
id = "bad-url"
url = "not a url"
secret_env = "SECRET_BAD_URL"

[[spec_ops.webhooks.subscriptions]]
id = "plain-http"
url = "http://example.com/hook"
secret_env = "SECRET_PLAIN"

[[spec_ops.webhooks.subscriptions]]
id = "no-secret"
url = "https://c.example/hook"
secret_env = "SECRET_NEVER_SET"

[[spec_ops.webhooks.subscriptions]]
id = "filters"
url = "https://d.example/hook"
secret_env = "SECRET_FILTERS"
include_stages = ["Plann"]
include_status = ["ok"]

[[spec_ops.webhooks.subscriptions]]
id = "retry"
url = "https://e.example/hook"
secret_env = "SECRET_RETRY"
max_attempts = 0
backoff_factor = 0.5
per_request_timeout_ms = 0
"#,
    ))
    .env("SECRET_DUP_A", "x")
    .env("SECRET_DUP_B", "x")
    .env("SECRET_BAD_URL", "x")
    .env("SECRET_PLAIN", "x")
    .env("SECRET_FILTERS", "x")
    .env("SECRET_RETRY", "x");
    let run = env.run(&["check"]).expect(2);
    let expected = [
        "subscription `dup`: duplicate `id`",
        "subscription `bad-url`: key `url`: `not a url` is not a valid URL",
        "subscription `plain-http`: key `url`: `http://example.com/hook` uses plain http: use https",
        "subscription `no-secret`: key `secret_env`: the environment variable SECRET_NEVER_SET is unset or empty",
        "subscription `filters`: key `include_stages`: unknown value `Plann`: use one of Plan, Tasks",
        "subscription `filters`: key `include_status`: unknown value `ok`: use one of success, failure, halt",
        "subscription `retry`: key `max_attempts`: 0 is out of range",
        "subscription `retry`: key `backoff_factor`: 0.5 is out of range",
        "subscription `retry`: key `per_request_timeout_ms`: 0 is out of range",
    ];
    for needle in expected {
        assert!(
            run.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr
            .contains(&format!("({} problems)", expected.len())),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout, "", "no summary for an invalid config");
}

#[test]
fn plain_http_is_accepted_for_loopback_hosts_only() {
    let subs: String = [
        "http://127.0.0.1:8080/h",
        "http://127.9.9.9/h",
        "http://localhost/h",
        "http://[::1]:9/h",
    ]
    .iter()
    .enumerate()
    .map(|(i, url)| subscription(&format!("s{i}"), url, "dry_run = true"))
    .collect();
    Env::new(&config_with(&subs)).run(&["check"]).expect(0);

    for url in ["http://10.0.0.1/h", "http://localhost.example.com/h"] {
        let env = Env::new(&config_with(&subscription("s", url, "dry_run = true")));
        let run = env.run(&["check"]).expect(2);
        assert!(
            run.stderr.contains("uses plain http"),
            "{url}: {}",
            run.stderr
        );
    }
}

#[test]
fn check_never_shows_values_that_may_be_credentials() {
    let table = |body: &str| {
        format!("[[spec_ops.webhooks.subscriptions]]\nid = \"s\"\ndry_run = true\n{body}\n")
    };
    let cases = [
        table("url = \"https://a.example/h\"\nheaders = { Authorization = [\"Bearer TOKLIT1\"] }"),
        table("url = \"https://a.example/h\"\nheaders = \"Bearer TOKLIT1\""),
        table("url = [\"https://u:PASSLIT3@x/a?t=QLIT4\"]"),
        table(
            "url = \"https://a.example/h\"\nurl_env = { v = \"https://u:PASSLIT3@x/a?t=QLIT4\" }",
        ),
        table("url = \"https://a.example/h\"\nsecret_env = [\"TOKLIT1\"]"),
        table("url = \"https://hooks.slack.com/services/T0/B0/SLACKLIT10 x\"\nformat = \"slack\""),
        table("url = \"https://a.example/h\"")
            + "[spec_ops.webhooks.specs.\"SPEC-*\"]\ns = \"https://u:PASSLIT3@x/a?t=QLIT4\"\n",
        "[spec_ops.webhooks.relay]\nurl = { server = \"nats://u:PASSLIT3@x:4222\" }\n".to_string(),
    ];
    for case in cases {
        let env = Env::new(&config_with(&case));
        for args in [&["check"][..], &["check", "--json"]] {
            let run = env.run(args).expect(2);
            assert!(
                run.stderr.contains("problem"),
                "{args:?} {case}: {}",
                run.stderr
            );
            for secret in ["TOKLIT1", "PASSLIT3", "QLIT4", "SLACKLIT10"] {
                assert_no_secret(&run, secret);
            }
        }
    }
}

#[test]
fn unknown_keys_are_named_and_foreign_tables_ignored() {
    let env = Env::new(&format!(
        "[model]\nname = \"gpt\"\n[spec_ops.telemetry]\nkeep = 3\n{}",
        config_with(&subscription(
            "typo",
            "https://a.example/h",
            "dry_run = true\nmax_atempts = 3"
        ))
        .replace("enabled = true", "enabled = true\nspool_dri = \"x\"")
    ));
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr.contains(
            "subscription `typo`: unknown key `max_atempts` (did you mean `max_attempts`?)"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("[spec_ops.webhooks]: unknown key `spool_dri` (did you mean `spool_dir`?)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("(2 problems)"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("model"),
        "foreign tables are not ours: {}",
        run.stderr
    );
}

#[test]
fn relative_spool_dir_resolves_against_the_config_folder() {
    let env = Env::new("");
    let conf_dir = env.path().join("conf");
    let elsewhere = env.path().join("elsewhere");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(
        conf_dir.join("config.toml"),
        config_with(&subscription("s", "https://a.example/h", "dry_run = true"))
            .replace("enabled = true", "enabled = true\nspool_dir = \"spool\""),
    )
    .unwrap();
    let mut cmd = env.bare(&[
        "--config",
        "../conf/config.toml",
        "emit",
        "--spec",
        "S-1",
        "--event",
        "spec-auto.pipeline.completed",
    ]);
    cmd.current_dir(&elsewhere);
    let run = run_command(cmd, b"").expect(0);
    assert_eq!(run.lines().len(), 1, "{}", run.stdout);
    let pending = conf_dir.join("spool/S-1/pending");
    let jobs: Vec<_> = std::fs::read_dir(&pending)
        .unwrap_or_else(|e| panic!("no job under {}: {e}", pending.display()))
        .collect();
    assert_eq!(jobs.len(), 1);
    assert!(!elsewhere.join("spool").exists(), "spool went to the cwd");
}

#[test]
fn config_flag_beats_env_beats_cwd_default() {
    let env = Env::new(&config_with(&subscription(
        "from-cwd",
        "https://a.example/h",
        "dry_run = true",
    )));
    for name in ["from-env", "from-flag"] {
        std::fs::write(
            env.path().join(format!("{name}.toml")),
            config_with(&subscription(name, "https://a.example/h", "dry_run = true")),
        )
        .unwrap();
    }
    let chosen = |cmd| {
        let run = run_command(cmd, b"").expect(0);
        check_json(&run)["subscriptions"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    assert_eq!(chosen(env.bare(&["check", "--json"])), "from-cwd");
    let mut cmd = env.bare(&["check", "--json"]);
    cmd.env("SPEC_NOTIFY_CONFIG", "from-env.toml");
    assert_eq!(chosen(cmd), "from-env");
    let mut cmd = env.bare(&["--config", "from-flag.toml", "check", "--json"]);
    cmd.env("SPEC_NOTIFY_CONFIG", "from-env.toml");
    assert_eq!(chosen(cmd), "from-flag");

    // A config named explicitly must exist.
    let mut cmd = env.bare(&["check"]);
    cmd.env("SPEC_NOTIFY_CONFIG", "missing.toml");
    let run = run_command(cmd, b"").expect(2);
    assert!(
        run.stderr.contains("cannot read config `missing.toml`"),
        "{}",
        run.stderr
    );
}

#[test]
fn check_without_any_config_says_where_it_looked() {
    let env = Env::new("");
    std::fs::remove_file(env.config_path()).unwrap();
    std::fs::create_dir_all(env.path().join(".git")).unwrap();
    std::fs::create_dir_all(env.path().join("docs")).unwrap();
    let root = env.path().canonicalize().unwrap();
    for command in [
        &["check"][..],
        &["list"],
        &["drain", "--once"],
        &["subscriptions", "add", "x", "--url", "https://a.example/h"],
    ] {
        let mut cmd = env.bare(command);
        cmd.current_dir(env.path().join("docs"));
        let run = run_command(cmd, b"").expect(2);
        assert!(
            run.stderr
                .contains("no config.toml with a [spec_ops.webhooks] table in")
                && run
                    .stderr
                    .contains(&format!("`{}` (the repository root)", root.display()))
                && run.stderr.contains("--config PATH, set SPEC_NOTIFY_CONFIG"),
            "{command:?}: {}",
            run.stderr
        );
    }
    assert!(env.snapshot().is_empty(), "{:?}", env.snapshot());
}

#[test]
fn subscription_ids_are_1_to_64_characters_and_never_dot_or_dot_dot() {
    let long = "a".repeat(300);
    for id in [long.as_str(), "..", "."] {
        let env = Env::new(&config_with(&subscription(
            id,
            "https://a.example/h",
            "dry_run = true",
        )));
        let run = env.run(&["check"]).expect(2);
        assert!(
            run.stderr
                .contains("use 1 to 64 letters, digits, `-`, `_` and `.`, not `.` or `..`"),
            "{id}: {}",
            run.stderr
        );
    }
}

#[test]
fn shorthand_ipv4_literals_are_checked_as_the_addresses_they_are() {
    for (url, what) in [
        ("https://2852039166/h", "link-local"),
        ("https://0xa9fea9fe/h", "link-local"),
        ("https://0251.0376.0251.0376/h", "link-local"),
        ("https://169.254.43518/h", "link-local"),
        ("https://127.1/h", "loopback"),
    ] {
        let env = Env::new(&config_with(&subscription(
            "s",
            url,
            "allow_private_networks = false",
        )))
        .env("SECRET_S", "x");
        let run = env.run(&["check"]).expect(2);
        assert!(
            run.stderr.contains(&format!("points at a {what} address"))
                && run.stderr.contains("allow_private_networks"),
            "{url}: {}",
            run.stderr
        );
    }
    let env =
        Env::new(&config_with(&subscription("s", "https://1.2.3.256/h", ""))).env("SECRET_S", "x");
    let run = env.run(&["check"]).expect(2);
    assert!(run.stderr.contains("not an IPv4 address"), "{}", run.stderr);
    // A per-call target: refused before anything is spooled.
    let env = Env::new(&config_with(""));
    for url in ["https://2852039166/h", "https://0xa9fea9fe/h"] {
        let run = env
            .run(&[
                "emit",
                "--spec",
                "S",
                "--event",
                "spec-auto.pipeline.completed",
                "--url",
                url,
            ])
            .expect(2);
        assert!(
            run.stderr.contains("points at a link-local address"),
            "{url}: {}",
            run.stderr
        );
    }
    assert!(env.job_files("S", "pending").is_empty());
}

#[test]
fn enabled_switch_in_the_environment_overrides_the_file() {
    let env = Env::new(
        &config_with(&subscription("s", "https://a.example/h", "dry_run = true"))
            .replace("enabled = true", "enabled = false"),
    );
    let enabled = |value: Option<&str>| {
        let mut cmd = env.cmd(&["check", "--json"]);
        if let Some(v) = value {
            cmd.env("SPECKIT_WEBHOOKS_ENABLED", v);
        }
        check_json(&run_command(cmd, b"").expect(0))["enabled"].clone()
    };
    assert_eq!(enabled(None), false);
    assert_eq!(enabled(Some("1")), true);
    assert_eq!(enabled(Some("true")), true);

    env.write_config(&config_with(&subscription(
        "s",
        "https://a.example/h",
        "dry_run = true",
    )));
    assert_eq!(enabled(None), true);
    assert_eq!(enabled(Some("0")), false);
    assert_eq!(enabled(Some("false")), false);

    let mut cmd = env.cmd(&["check"]);
    cmd.env("SPECKIT_WEBHOOKS_ENABLED", "maybe");
    let run = run_command(cmd, b"").expect(2);
    assert!(
        run.stderr
            .contains("SPECKIT_WEBHOOKS_ENABLED: `maybe` is not a switch: use 1, 0, true or false"),
        "{}",
        run.stderr
    );
}
