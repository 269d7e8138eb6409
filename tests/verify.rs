//! `spec-notify verify` against deliveries made by the real `drain` to a
//! loopback receiver: valid for every scheme, tampered bodies and stale
//! timestamps rejected, rotation, usage errors. Also owns [`drain_to`], which
//! the receive and third-party verifier tests reuse.

use crate::support::receiver::{Receiver, Recorded};
use crate::support::*;

pub const SECRET: &str = "whsec_c3BlYy1ub3RpZnktdGVzdC1rZXktMDEyMzQ1Njc4OQ==";
pub const PREVIOUS: &str = "whsec_b2xkLXNwZWMtbm90aWZ5LWtleS0wMTIzNDU2Nzg5";
/// Standard Webhooks' published example: a valid signature made in 2021.
const VECTOR_KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const VECTOR_TS: &str = "1614265330";
const VECTOR_BODY: &str = r#"{"test": 2432232314}"#;
const VECTOR_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// Emits `events` stage events for SPEC-RECV and runs `spec-notify drain
/// --once` to `url`, signed with `scheme` (and a previous secret during a
/// rotation). Returns the workspace, for the caller to inspect.
pub fn drain_to(url: &str, scheme: &str, previous: Option<&str>, events: usize) -> Env {
    // One attempt, so an unexpected answer shows as a dead job; a long
    // timeout, so a machine busy with other builds does not fake one.
    let mut extra =
        format!("signature = \"{scheme}\"\nmax_attempts = 1\nper_request_timeout_ms = 30000\n");
    if previous.is_some() {
        extra.push_str("secret_env_previous = \"SECRET_HOOK_PREVIOUS\"\n");
    }
    let mut env =
        Env::new(&config_with(&subscription("hook", url, &extra))).env("SECRET_HOOK", SECRET);
    if let Some(previous) = previous {
        env = env.env("SECRET_HOOK_PREVIOUS", previous);
    }
    for stage in ["Plan", "Tasks", "Implement", "Validate", "Audit", "Unlock"]
        .iter()
        .cycle()
        .take(events)
    {
        env.run(&[
            "emit",
            "--spec",
            "SPEC-RECV",
            "--event",
            "spec-auto.stage.completed",
            "--stage",
            stage,
            "--status",
            "success",
        ])
        .expect(0);
    }
    env.run(&["drain", "--once"]).expect(0);
    env
}

/// Deliveries of `events` events made by the real drain, as recorded.
pub fn deliveries(scheme: &str, previous: Option<&str>, events: usize) -> Vec<Recorded> {
    let receiver = Receiver::start();
    let _env = drain_to(&receiver.url("/hook"), scheme, previous, events);
    let got = receiver.wait_for(events, CEILING);
    assert_eq!(got.len(), events, "drain delivered every event once");
    got
}

/// Runs `spec-notify verify` on a recorded delivery, passing every header.
fn verify(delivery: &Recorded, body: &[u8], secret: Option<&str>, extra: &[&str]) -> Run {
    let mut env = Env::new("");
    if let Some(secret) = secret {
        env = env.env("HOOK_SECRET", secret);
    }
    let mut args = vec![
        "verify".to_string(),
        "--secret-env".into(),
        "HOOK_SECRET".into(),
    ];
    for (name, value) in &delivery.headers {
        args.push("--header".into());
        args.push(format!("{name}: {value}"));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.run_with_stdin(&args, body)
}

fn scheme_flag(scheme: &str) -> [&str; 2] {
    ["--scheme", scheme]
}

#[test]
fn real_deliveries_verify_for_every_scheme_and_tampering_is_rejected() {
    for scheme in ["speckit", "github", "standard-webhooks"] {
        for delivery in deliveries(scheme, None, 2) {
            let run = verify(
                &delivery,
                &delivery.body,
                Some(SECRET),
                &scheme_flag(scheme),
            )
            .expect(0);
            assert_eq!(run.stderr.trim(), "ok", "{scheme}");

            let mut tampered = delivery.body.clone();
            let last = tampered.len() - 2;
            tampered[last] ^= 0x01;
            let run = verify(&delivery, &tampered, Some(SECRET), &scheme_flag(scheme)).expect(1);
            assert!(
                run.stderr.starts_with("invalid: "),
                "{scheme}: {}",
                run.stderr
            );
            assert!(run.stderr.contains("does not match"), "{}", run.stderr);

            let run = verify(
                &delivery,
                &delivery.body,
                Some("whsec_d3JvbmctcGFzc3dvcmQtMDEyMzQ1Njc4OQ=="),
                &scheme_flag(scheme),
            )
            .expect(1);
            assert!(run.stderr.contains("does not match"), "{}", run.stderr);
            assert!(!run.stderr.contains(SECRET) && !run.stdout.contains(SECRET));
        }
    }
}

#[test]
fn github_scheme_checks_x_hub_signature_256_only() {
    let delivery = &deliveries("github", None, 1)[0];
    assert_eq!(
        delivery.header("X-Hub-Signature-256"),
        delivery.header("X-SpecKit-Signature")
    );
    let mut without_hub = delivery.clone();
    without_hub
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("x-hub-signature-256"));
    let run = verify(
        &without_hub,
        &delivery.body,
        Some(SECRET),
        &scheme_flag("github"),
    )
    .expect(1);
    assert!(
        run.stderr.contains("missing header X-Hub-Signature-256"),
        "{}",
        run.stderr
    );
    // The same delivery still verifies under the speckit scheme.
    verify(&without_hub, &delivery.body, Some(SECRET), &[]).expect(0);
}

#[test]
fn standard_webhooks_enforces_the_timestamp_tolerance() {
    let published = Recorded {
        method: "POST".into(),
        path: "/".into(),
        headers: vec![
            ("webhook-id".into(), VECTOR_ID.into()),
            ("webhook-timestamp".into(), VECTOR_TS.into()),
            ("webhook-signature".into(), VECTOR_SIG.into()),
        ],
        body: VECTOR_BODY.into(),
        received_at_ms: 0,
    };
    let flags = scheme_flag("standard-webhooks");
    let run = verify(&published, VECTOR_BODY.as_bytes(), Some(VECTOR_KEY), &flags).expect(1);
    assert!(run.stderr.contains("stale or replayed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("tolerance 300s"),
        "default is 5 minutes: {}",
        run.stderr
    );
    // The signature itself is good: with a tolerance reaching back to 2021 it passes.
    let long_ago = [flags[0], flags[1], "--tolerance", "100years"];
    verify(
        &published,
        VECTOR_BODY.as_bytes(),
        Some(VECTOR_KEY),
        &long_ago,
    )
    .expect(0);

    // A fresh real delivery whose timestamp was moved back 10 minutes.
    let mut delivery = deliveries("standard-webhooks", None, 1).remove(0);
    for (name, value) in &mut delivery.headers {
        if name.eq_ignore_ascii_case("webhook-timestamp") {
            *value = (value.parse::<u64>().unwrap() - 600).to_string();
        }
    }
    let run = verify(&delivery, &delivery.body, Some(SECRET), &flags).expect(1);
    assert!(run.stderr.contains("stale"), "{}", run.stderr);
}

#[test]
fn rotation_old_secret_verifies_standard_webhooks_only() {
    let standard = &deliveries("standard-webhooks", Some(PREVIOUS), 1)[0];
    let signatures = standard.header("webhook-signature").unwrap();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    let flags = scheme_flag("standard-webhooks");
    verify(standard, &standard.body, Some(SECRET), &flags).expect(0);
    verify(standard, &standard.body, Some(PREVIOUS), &flags).expect(0);

    let github = &deliveries("github", Some(PREVIOUS), 1)[0];
    verify(github, &github.body, Some(SECRET), &scheme_flag("github")).expect(0);
    let run = verify(github, &github.body, Some(PREVIOUS), &scheme_flag("github")).expect(1);
    assert!(run.stderr.contains("does not match"), "{}", run.stderr);
}

#[test]
fn usage_errors_exit_2_with_the_fix() {
    let delivery = Recorded {
        method: "POST".into(),
        path: "/".into(),
        headers: vec![("X-SpecKit-Signature".into(), "sha256=00".into())],
        body: b"{}".to_vec(),
        received_at_ms: 0,
    };
    let run = verify(&delivery, b"{}", None, &[]).expect(2);
    assert!(run.stderr.contains("HOOK_SECRET"), "{}", run.stderr);
    assert!(run.stderr.contains("unset or empty"), "{}", run.stderr);

    let run = verify(&delivery, b"{}", Some(""), &[]).expect(2);
    assert!(run.stderr.contains("unset or empty"), "{}", run.stderr);

    let run = verify(
        &delivery,
        b"{}",
        Some("s3cret-value"),
        &["--header", "no colon here"],
    )
    .expect(2);
    assert!(
        run.stderr.contains("malformed --header `no colon here`"),
        "{}",
        run.stderr
    );

    let run = verify(
        &delivery,
        b"{}",
        Some("s3cret-value"),
        &scheme_flag("standard-webhooks"),
    )
    .expect(2);
    assert!(run.stderr.contains("whsec_"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("s3cret-value"),
        "the secret is never printed"
    );

    verify(
        &delivery,
        b"{}",
        Some("s3cret-value"),
        &["--tolerance", "soon"],
    )
    .expect(2);
    verify(&delivery, b"{}", Some("s3cret-value"), &["--scheme", "md5"]).expect(2);
}

#[test]
fn missing_signature_header_is_invalid_not_a_usage_error() {
    let bare = Recorded {
        method: "POST".into(),
        path: "/".into(),
        headers: Vec::new(),
        body: b"{}".to_vec(),
        received_at_ms: 0,
    };
    let run = verify(&bare, b"{}", Some("s3cret-value"), &[]).expect(1);
    assert_eq!(
        run.stderr.trim(),
        "invalid: missing header X-SpecKit-Signature"
    );
}
