//! `emit --url`: one-off targets spooled, signed (or not), retried,
//! evidenced and replayable like any job, listed under `adhoc-<hash>`, their
//! URL never shown; bad URLs refused before anything is written; private
//! addresses refused unless allowed, also when a name resolves to one.

use serde_json::Value;

use crate::support::receiver::{Receiver, Recorded, Reply};
use crate::support::*;

const SECRET: &str = "per-call-s3cret";

/// A config with webhooks on and no subscription at all.
fn bare_env() -> Env {
    Env::new("[spec_ops.webhooks]\nenabled = true\nauto_drain = false\n").env("CB_SECRET", SECRET)
}

fn emit_to(env: &Env, spec: &str, extra: &[&str]) -> Run {
    let mut args = emit_plan_args(spec);
    args.extend_from_slice(extra);
    env.run(&args)
}

fn verify(delivery: &Recorded, secret: &str) -> Run {
    let env = Env::new("").env("HOOK_SECRET", secret);
    let mut args = vec![
        "verify".to_string(),
        "--secret-env".into(),
        "HOOK_SECRET".into(),
    ];
    for (name, value) in &delivery.headers {
        args.push("--header".into());
        args.push(format!("{name}: {value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_with_stdin(&args, &delivery.body)
}

/// Every file under the workspace but the spool's job files (which hold
/// the per-call URL on purpose, 0600) and the config.
fn readable_outside_jobs(env: &Env) -> String {
    env.snapshot()
        .into_iter()
        .filter(|(p, _)| p.extension().is_none_or(|e| e != "job"))
        .map(|(p, bytes)| format!("{}\n{}", p.display(), String::from_utf8_lossy(&bytes)))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_per_call_url_is_delivered_signed_retried_and_replayable() {
    let rx = Receiver::start();
    rx.script("/cb/secret-token-123", [Reply::Status(503)]);
    let url = rx.url("/cb/secret-token-123");
    let env = bare_env();
    let emitted = emit_to(
        &env,
        "SPEC-CB",
        &[
            "--url",
            &url,
            "--secret-env",
            "CB_SECRET",
            "--allow-private-networks",
            "--correlation-id",
            "req-8812",
        ],
    )
    .expect(0);
    let line = emitted.stdout.trim().to_string();
    let (id, sub) = line.split_once(' ').unwrap();
    assert!(
        sub.starts_with("adhoc-") && sub.len() == "adhoc-".len() + 10,
        "{line}"
    );
    // The same URL always gets the same id.
    let again = emit_to(
        &env,
        "SPEC-OTHER",
        &["--url", &url, "--allow-private-networks"],
    )
    .expect(0);
    assert!(again.stdout.trim().ends_with(sub), "{}", again.stdout);

    let (meta, body) = &env.jobs("SPEC-CB", "pending")[0];
    assert_eq!(meta["subscription"], sub);
    assert_eq!(meta["target"]["url"], url.as_str(), "the drain needs it");
    assert_eq!(meta["target"]["secret_env"], "CB_SECRET");
    assert_eq!(meta["correlation_id"], "req-8812");
    assert_eq!(body["event"]["correlation_id"], "req-8812");
    let job = &env.job_files("SPEC-CB", "pending")[0];
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(job).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !std::fs::read_to_string(job).unwrap().contains(SECRET),
        "never the secret's value"
    );

    // 503, then the retry a second later is delivered.
    let drain = env
        .run(&["drain", "--spec", "SPEC-CB", "--max-time", "60s"])
        .expect(0);
    let got = rx.requests_to("/cb/secret-token-123");
    assert_eq!(got.len(), 2, "{}", drain.stderr);
    assert_eq!(got[0].header("X-SpecKit-Attempt"), Some("1"));
    assert_eq!(got[1].header("X-SpecKit-Attempt"), Some("2"));
    assert_eq!(got[1].header("X-SpecKit-Id"), Some(id));
    assert_eq!(verify(&got[1], SECRET).expect(0).stderr.trim(), "ok");
    assert_eq!(env.jobs("SPEC-CB", "delivered").len(), 1);

    // Replayed on purpose: the same delivery id once more.
    env.run(&["replay", "SPEC-CB", "--delivery-id", id])
        .expect(0);
    let got = rx.requests_to("/cb/secret-token-123");
    assert_eq!(got.len(), 3);
    assert_eq!(got[2].header("X-SpecKit-Id"), Some(id));

    // Found by correlation id, URL redacted, signed.
    let listed = env
        .run(&["list", "--correlation-id", "req-8812", "--json"])
        .expect(0);
    let items: Vec<Value> = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(items.len(), 1, "{}", listed.stdout);
    assert_eq!(items[0]["delivery_id"], id);
    assert_eq!(items[0]["target"]["signed"], true);
    assert_eq!(
        items[0]["target"]["url"],
        format!("http://{}/<redacted>", rx.addr())
    );
    let table = env.run(&["list", "SPEC-CB"]).expect(0);
    let history = env
        .run(&["history", "SPEC-CB", "--format", "jsonl"])
        .expect(0);
    // The replay's own evidence line names the target (redacted), too.
    let requeued = history
        .stdout
        .lines()
        .find(|l| l.contains("\"requeued\""))
        .expect("a requeued line");
    assert!(
        requeued.contains(&format!("\"url\":\"http://{}/<redacted>\"", rx.addr())),
        "{requeued}"
    );
    for text in [
        &emitted.stdout,
        &emitted.stderr,
        &drain.stdout,
        &drain.stderr,
        &listed.stdout,
        &table.stdout,
        &history.stdout,
        &readable_outside_jobs(&env),
    ] {
        assert!(
            !text.contains("secret-token-123"),
            "the URL path leaked:\n{text}"
        );
        assert!(!text.contains(SECRET), "the secret leaked:\n{text}");
    }
}

#[test]
fn without_a_secret_a_per_call_url_goes_unsigned_and_list_says_so() {
    let rx = Receiver::start();
    let env = bare_env();
    let run = emit_to(
        &env,
        "SPEC-U",
        &["--url", &rx.url("/u"), "--allow-private-networks", "-v"],
    )
    .expect(0);
    assert!(
        run.stderr.contains("its deliveries go unsigned"),
        "{}",
        run.stderr
    );
    let table = env.run(&["list", "SPEC-U"]).expect(0);
    assert!(table.stdout.contains("(unsigned)"), "{}", table.stdout);
    let json: Vec<Value> =
        serde_json::from_str(&env.run(&["list", "--json"]).expect(0).stdout).unwrap();
    assert_eq!(json[0]["target"]["signed"], false);
    env.run(&["drain", "--once"]).expect(0);
    let got = rx.wait_for(1, CEILING);
    assert!(
        got[0].header("X-SpecKit-Signature").is_none(),
        "{:?}",
        got[0].headers
    );
    assert!(got[0].header("X-SpecKit-Id").is_some());
}

#[test]
fn a_per_call_format_renders_the_body() {
    let rx = Receiver::start();
    let env = bare_env();
    emit_to(
        &env,
        "SPEC-F",
        &[
            "--url",
            &rx.url("/chat"),
            "--allow-private-networks",
            "--format",
            "slack",
        ],
    )
    .expect(0);
    env.run(&["drain", "--once"]).expect(0);
    let got = rx.wait_for(1, CEILING);
    let body: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert!(
        body["text"].as_str().is_some_and(|t| t.contains("SPEC-F")),
        "{body}"
    );
}

#[test]
fn bad_per_call_urls_exit_2_and_write_nothing() {
    let env = bare_env();
    let before = env.snapshot();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--url", "http://example.com/secret-token-9"],
            "plain http",
        ),
        (&["--url", "garbage"], "https://"),
        (&["--url", "ftp://example.com/secret-token-9"], "https://"),
        (
            &["--url", "https://169.254.169.254/latest/meta-data"],
            "link-local",
        ),
        (
            &["--url", "https://10.0.0.1/secret-token-9"],
            "allow_private_networks",
        ),
        (
            &["--url", "https://[::ffff:127.0.0.1]/h"],
            "allow_private_networks",
        ),
        (
            &[
                "--url",
                "https://example.com/h",
                "--secret-env",
                "CB_SECRET",
                "--signature",
                "nope",
            ],
            "unknown scheme `nope`",
        ),
        (
            &["--url", "https://example.com/h", "--format", "slak"],
            "unknown format `slak`",
        ),
    ];
    for (args, needle) in cases {
        let run = emit_to(&env, "SPEC-BAD", args).expect(2);
        assert!(
            run.stderr.contains("invalid --url"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("secret-token-9"), "{}", run.stderr);
        assert_eq!(env.snapshot(), before, "{args:?} wrote something");
    }
    // A bad one among good ones spools none of them.
    let rx = Receiver::start();
    emit_to(
        &env,
        "SPEC-BAD",
        &[
            "--url",
            &rx.url("/ok"),
            "--allow-private-networks",
            "--url",
            "http://example.com/x",
        ],
    )
    .expect(2);
    assert_eq!(env.snapshot(), before);
    // --signature means nothing without a secret: clap says so.
    let run = emit_to(
        &env,
        "SPEC-BAD",
        &["--url", "https://example.com/h", "--signature", "github"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(env.snapshot(), before);
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_at_connect_time() {
    let rx = Receiver::start();
    let env = bare_env();
    let url = format!("http://localhost:{}/h", rx.addr().port());
    // A name passes the text check: it is checked once resolved.
    emit_to(&env, "SPEC-SSRF", &["--url", &url]).expect(0);
    env.run(&["drain", "--once"]).expect(0);
    assert!(
        rx.requests().is_empty(),
        "nothing may reach a private address"
    );
    let listed: Vec<Value> =
        serde_json::from_str(&env.run(&["list", "SPEC-SSRF", "--json"]).expect(0).stdout).unwrap();
    let error = listed[0]["last_error"].as_str().unwrap();
    assert!(
        error.contains("refused to connect: localhost resolved to"),
        "{error}"
    );
    assert!(error.contains("allow_private_networks = true"), "{error}");
    assert!(error.contains("--allow-private-networks"), "{error}");
    assert_eq!(
        listed[0]["state"], "pending",
        "retried, in case DNS changes"
    );
    // With the switch the same target is delivered.
    emit_to(
        &env,
        "SPEC-SSRF2",
        &["--url", &url, "--allow-private-networks"],
    )
    .expect(0);
    env.run(&["drain", "--once", "--spec", "SPEC-SSRF2"])
        .expect(0);
    rx.wait_for(1, CEILING);
}

#[test]
fn a_config_subscription_that_forbids_private_networks_is_refused_too() {
    let rx = Receiver::start();
    let url = format!("http://localhost:{}/h", rx.addr().port());
    let env = Env::new(&config_with(&subscription(
        "hook",
        &url,
        "allow_private_networks = false\nmax_attempts = 1",
    )))
    .env("SECRET_HOOK", "s");
    emit_to(&env, "SPEC-P", &[]).expect(0);
    env.run(&["drain", "--once"]).expect(0);
    assert!(rx.requests().is_empty());
    let (meta, _) = &env.jobs("SPEC-P", "dead")[0];
    assert!(
        meta["last_error"]
            .as_str()
            .unwrap()
            .contains("refused to connect"),
        "{meta}"
    );
    // A literal private address is refused by `check` already.
    let literal = Env::new(&config_with(&subscription(
        "hook",
        &rx.url("/h"),
        "allow_private_networks = false",
    )))
    .env("SECRET_HOOK", "s");
    let run = literal.run(&["check"]).expect(2);
    assert!(
        run.stderr.contains(
            "points at a loopback address (127.0.0.0/8) and `allow_private_networks` is off"
        ),
        "{}",
        run.stderr
    );
}

#[test]
fn per_call_targets_need_webhooks_enabled() {
    let env = Env::new("[spec_ops.webhooks]\nenabled = false\n");
    let run = emit_to(&env, "SPEC-OFF", &["--url", "https://example.com/h", "-v"]).expect(0);
    assert!(run.stderr.contains("nothing spooled"), "{}", run.stderr);
    assert!(env.job_files("SPEC-OFF", "pending").is_empty());
}
