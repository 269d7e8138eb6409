//! drain: signed delivery, retry classes, Retry-After, timeouts, dead-letter,
//! dry-run, missing secrets, quarantine, concurrent drains, SIGKILL, SIGTERM,
//! and a grep for the secret everywhere.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hmac::{KeyInit, Mac};

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

const SECRET: &str = "It's a Secret to Everybody 7f3a";

fn emit_stage(env: &Env, spec: &str) -> Vec<String> {
    emit_plan(env, spec).expect(0).ids()
}

fn expected_signature(body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// A workspace with one subscription per (id, path, extra) on the receiver.
fn env_for(rx: &Receiver, subs: &[(&str, &str, &str)]) -> Env {
    let tables: String = subs
        .iter()
        .map(|(id, path, extra)| {
            subscription(
                id,
                &rx.url(path),
                &format!("jitter_ms = 0\ninitial_backoff_ms = 50\n{extra}"),
            )
        })
        .collect();
    let mut env = Env::new(&config_with(&tables));
    for (id, _, _) in subs {
        env = env.env(
            &format!("SECRET_{}", id.to_uppercase().replace('-', "_")),
            SECRET,
        );
    }
    env
}

fn attempts_log(env: &Env, spec: &str) -> Vec<serde_json::Value> {
    let text =
        std::fs::read_to_string(env.evidence(spec).join("attempts.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn retries_until_success_with_same_id_and_valid_signatures() {
    let rx = Receiver::start();
    rx.script("/flaky", [Reply::Status(500), Reply::Status(503)]);
    let env = env_for(&rx, &[("flaky", "/flaky", "")]);
    let ids = emit_stage(&env, "SPEC-1");
    let run = env.run(&["drain", "--max-time", "60s"]).expect(0);
    assert!(
        run.stderr
            .contains("delivered 1, retrying 2, dead 0, dry-run 0"),
        "{}",
        run.stderr
    );

    let got = rx.requests_to("/flaky");
    assert_eq!(got.len(), 3);
    for (n, req) in got.iter().enumerate() {
        assert_eq!(
            req.header("X-SpecKit-Id"),
            Some(ids[0].as_str()),
            "same delivery id on every attempt"
        );
        assert_eq!(
            req.header("X-SpecKit-Attempt"),
            Some((n + 1).to_string().as_str())
        );
        assert_eq!(
            req.header("X-SpecKit-Signature"),
            Some(expected_signature(&req.body).as_str())
        );
        assert_eq!(
            req.header("X-SpecKit-Event"),
            Some("spec-auto.stage.completed")
        );
        assert_eq!(req.header("Content-Type"), Some("application/json"));
        assert!(
            req.header("User-Agent")
                .unwrap()
                .starts_with("spec-notify/")
        );
        let ts: u64 = req
            .header("X-SpecKit-Request-Timestamp")
            .unwrap()
            .parse()
            .unwrap();
        assert!(ts.abs_diff(req.received_at_ms / 1000) <= 2);
    }
    assert_eq!(
        got[0].body, got[2].body,
        "the exact spooled bytes every time"
    );
    let spooled = std::fs::read(&env.job_files("SPEC-1", "delivered")[0]).unwrap();
    assert!(spooled.ends_with(&got[0].body));

    let log = attempts_log(&env, "SPEC-1");
    let outcomes: Vec<&str> = log.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retry", "retry", "delivered"]);
    assert_eq!(log[0]["status"], 500);
    let (meta, _) = &env.jobs("SPEC-1", "delivered")[0];
    assert_eq!(meta["attempts"], 3);
}

#[test]
fn retry_after_seconds_and_http_date_are_honoured() {
    let rx = Receiver::start();
    rx.script(
        "/seconds",
        [Reply::Headers(
            429,
            vec![("Retry-After".into(), "1".into())],
        )],
    );
    let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3));
    let later_ms = httpdate::parse_http_date(&later)
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    rx.script(
        "/date",
        [Reply::Headers(503, vec![("Retry-After".into(), later)])],
    );
    let env = env_for(&rx, &[("seconds", "/seconds", ""), ("date", "/date", "")]);
    emit_stage(&env, "SPEC-1");
    // The drain exits once both retries are done; --max-time only has to
    // cover the 3 s Retry-After however slowly this machine starts it.
    env.run(&["drain", "--max-time", "60s"]).expect(0);
    let got = rx.requests_to("/seconds");
    assert_eq!(got.len(), 2);
    let gap = got[1].received_at_ms - got[0].received_at_ms;
    assert!(
        gap >= 990,
        "Retry-After: 1 honoured, second attempt after {gap} ms"
    );
    let got = rx.requests_to("/date");
    assert_eq!(got.len(), 2);
    assert!(
        got[1].received_at_ms >= later_ms,
        "no sooner than the HTTP-date: {} < {later_ms}",
        got[1].received_at_ms
    );
}

#[test]
fn terminal_and_exhausted_jobs_are_dead_lettered_with_reasons() {
    let rx = Receiver::start();
    rx.script("/bad", [Reply::Status(400)]);
    rx.script("/gone", [Reply::Status(410)]);
    rx.script("/auth", [Reply::Status(401)]);
    rx.set_default(Reply::Status(204));
    rx.script(
        "/moved",
        vec![Reply::Headers(301, vec![("Location".into(), "http://127.0.0.1:1/".into())]); 3],
    );
    // Far slower than the 200 ms client timeout, so only a timeout can end
    // these attempts (dropping the receiver ends the sleeps).
    rx.script("/slow", vec![Reply::Slow(CEILING, 204); 2]);
    rx.script("/closed", [Reply::Close, Reply::Close]);
    let env = env_for(
        &rx,
        &[
            ("bad", "/bad", ""),
            ("gone", "/gone", ""),
            ("auth", "/auth", ""),
            ("moved", "/moved", "max_attempts = 3"),
            (
                "slow",
                "/slow",
                "max_attempts = 2\nper_request_timeout_ms = 200",
            ),
            ("closed", "/closed", "max_attempts = 2"),
        ],
    );
    emit_stage(&env, "SPEC-1");
    let run = env.run(&["drain", "--max-time", "60s"]).expect(0);
    assert!(run.stderr.contains("dead 5"), "{}", run.stderr);
    assert!(
        run.stderr.contains("paused 1")
            && run.stderr.contains("410 Gone: subscription paused")
            && run.stderr.contains("spec-notify resume gone"),
        "410 pauses the subscription instead of dead-lettering: {}",
        run.stderr
    );
    let pending = env.jobs("SPEC-1", "pending");
    assert_eq!(pending.len(), 1, "the 410 job waits for `resume`");
    assert_eq!(pending[0].0["subscription"], "gone");
    assert_eq!(pending[0].0["attempts"], 1);

    let dead: HashMap<String, serde_json::Value> = env
        .jobs("SPEC-1", "dead")
        .into_iter()
        .map(|(m, _)| (m["subscription"].as_str().unwrap().to_string(), m))
        .collect();
    assert_eq!(dead.len(), 5);
    for (sub, reason, attempts) in [
        ("bad", "rejected", 1),
        ("auth", "rejected", 1),
        ("moved", "exhausted", 3),
        ("slow", "exhausted", 2),
        ("closed", "exhausted", 2),
    ] {
        assert_eq!(dead[sub]["dead_reason"], reason, "{sub}");
        assert_eq!(dead[sub]["attempts"], attempts, "{sub}");
        let hint = dead[sub]["hint"].as_str().unwrap();
        assert!(
            hint.contains("spec-notify replay SPEC-1 --delivery-id"),
            "{sub}: {hint}"
        );
    }
    assert!(
        dead["auth"]["hint"]
            .as_str()
            .unwrap()
            .contains("SECRET_AUTH")
    );
    assert!(
        dead["slow"]["last_error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{}",
        dead["slow"]
    );
    assert_eq!(
        rx.requests_to("/moved").len(),
        3,
        "301 is retried, never followed"
    );
    assert!(
        rx.requests().iter().all(|r| r.path != "/"),
        "the redirect target was not requested"
    );
    assert_eq!(rx.requests_to("/bad").len(), 1, "400 is terminal");
    assert_eq!(
        rx.requests_to("/gone").len(),
        1,
        "a paused subscription is not retried"
    );
    let log = attempts_log(&env, "SPEC-1");
    assert_eq!(
        log.len(),
        1 + (1 + 1) + 1 + 3 + 2 + 2,
        "one evidence line per attempt, plus one for the pause"
    );
}

#[test]
fn dry_run_sends_nothing_and_logs_the_would_be_request() {
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription(
        "dry",
        &rx.url("/dry"),
        "dry_run = true",
    )));
    emit_stage(&env, "SPEC-1");
    let run = env.run(&["drain", "--once"]).expect(0);
    assert!(run.stderr.contains("dry-run 1"), "{}", run.stderr);
    // The drain has exited: a request it sent was recorded before it was answered.
    assert!(rx.requests().is_empty());
    let log = attempts_log(&env, "SPEC-1");
    assert_eq!(log[0]["outcome"], "dry-run");
    assert_eq!(
        log[0]["request"]["headers"]["X-SpecKit-Event"],
        "spec-auto.stage.completed"
    );
    assert!(log[0]["request"]["body_bytes"].as_u64().unwrap() > 50);
    assert_eq!(env.job_files("SPEC-1", "delivered").len(), 1);
}

#[test]
fn missing_secret_holds_only_that_subscription_and_exits_2() {
    let rx = Receiver::start();
    let tables = format!(
        "{}{}",
        subscription("ok", &rx.url("/ok"), ""),
        subscription("nokey", &rx.url("/nokey"), "")
    );
    let env = Env::new(&config_with(&tables)).env("SECRET_OK", SECRET);
    emit_stage(&env, "SPEC-1");
    let run = env.run(&["drain", "--once"]).expect(2);
    assert!(
        run.stderr.contains("SECRET_NOKEY"),
        "names the variable: {}",
        run.stderr
    );
    assert_eq!(rx.requests_to("/ok").len(), 1);
    assert!(rx.requests_to("/nokey").is_empty());
    let pending = env.jobs("SPEC-1", "pending");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].0["subscription"], "nokey");
    assert_eq!(pending[0].0["attempts"], 0, "held, not attempted");
    assert!(
        env.job_files("SPEC-1", "dead").is_empty(),
        "never dead-lettered for a missing secret"
    );
}

#[test]
fn unreadable_spool_files_are_quarantined_and_drain_carries_on() {
    let rx = Receiver::start();
    let env = env_for(&rx, &[("ok", "/ok", "")]);
    emit_stage(&env, "SPEC-1");
    let pending = env.spool_root().join("SPEC-1/pending");
    std::fs::write(
        pending.join("000000000099-00000000-0000-4000-8000-000000000000.job"),
        b"{not json",
    )
    .unwrap();
    std::fs::write(pending.join("stray.txt"), b"hello").unwrap();
    let run = env.run(&["drain", "--once"]).expect(0);
    assert!(
        run.stderr.contains("quarantined unreadable spool file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("000000000099-00000000"),
        "names the file: {}",
        run.stderr
    );
    assert_eq!(rx.requests().len(), 1);
    let quarantine = env.spool_root().join("SPEC-1/quarantine");
    assert!(quarantine.join("stray.txt").exists());
    assert!(
        quarantine
            .join("000000000099-00000000-0000-4000-8000-000000000000.job.reason")
            .exists()
    );
}

#[test]
fn two_concurrent_drains_deliver_each_of_500_jobs_exactly_once() {
    let rx = Receiver::start();
    let env = env_for(&rx, &[("a", "/a", ""), ("b", "/b", "")]);
    let lines: String = (0..250).map(|i| format!("{{\"event\":{{\"type\":\"spec-auto.stage.completed\"}},\"spec\":{{\"id\":\"SPEC-{}\"}}}}\n", i % 3)).collect();
    env.run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0);
    let drains: Vec<_> = (0..2)
        .map(|_| Spawned::new(env.cmd(&["drain", "--max-time", "60s"]).spawn().unwrap()))
        .collect();
    for d in drains {
        d.wait_output(RUN_CEILING, "a drain").expect(0);
    }
    let got = rx.requests();
    let ids: HashSet<&str> = got
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap())
        .collect();
    assert_eq!(got.len(), 500, "each job received exactly once");
    assert_eq!(ids.len(), 500);
}

#[test]
fn a_drain_killed_mid_run_loses_nothing() {
    let rx = Receiver::start();
    rx.set_default(Reply::Slow(Duration::from_millis(20), 204));
    let env = env_for(&rx, &[("a", "/a", "")]);
    let lines: String = (0..400).map(|_| "{\"event\":{\"type\":\"spec-auto.stage.completed\"},\"spec\":{\"id\":\"SPEC-K\"}}\n").collect();
    let ids: HashSet<String> = env
        .run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0)
        .ids()
        .into_iter()
        .collect();
    // Each kill lands mid-run: after this drain's tenth request arrived,
    // with requests in flight (each answer takes 20 ms) and hundreds of
    // jobs left (400 take at least 2 s at 4 in flight).
    for round in 1..=3 {
        let before = rx.requests().len();
        let drain = Spawned::new(env.cmd(&["drain", "--max-time", "60s"]).spawn().unwrap());
        let got = rx.wait_for(before + 10, CEILING).len();
        assert!(got >= before + 10, "round {round}: the drain delivered");
        drain.signal("KILL");
        drop(drain); // reaps it
    }
    rx.set_default(Reply::Status(204));
    env.run(&["drain", "--max-time", "60s"]).expect(0);
    let delivered: HashSet<String> = env
        .jobs("SPEC-K", "delivered")
        .into_iter()
        .map(|(m, _)| m["delivery_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(delivered, ids, "every job delivered");
    assert!(
        env.job_files("SPEC-K", "pending").is_empty()
            && env.job_files("SPEC-K", "active").is_empty(),
        "none stuck"
    );
    let requests = rx.requests();
    let received: HashSet<&str> = requests
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap())
        .collect();
    assert_eq!(
        received.len(),
        ids.len(),
        "duplicates only ever repeat a known X-SpecKit-Id"
    );
    assert!(received.iter().all(|id| ids.contains(*id)));
}

#[test]
fn sigterm_finishes_in_flight_and_exits_143() {
    let rx = Receiver::start();
    rx.set_default(Reply::Slow(Duration::from_millis(300), 204));
    let env = env_for(&rx, &[("a", "/a", "")]);
    // 100 jobs at 300 ms each, 4 in flight: at least 7.5 s to deliver them
    // all, so "stopped taking jobs" below holds however late SIGTERM lands.
    let lines: String = (0..100).map(|_| "{\"event\":{\"type\":\"spec-auto.stage.completed\"},\"spec\":{\"id\":\"SPEC-T\"}}\n").collect();
    env.run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0);
    let drain = Spawned::new(
        env.cmd(&["drain"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    assert!(!rx.wait_for(1, CEILING).is_empty(), "the drain started");
    drain.signal("TERM");
    let run = drain.wait_output(CEILING, "the drain after SIGTERM");
    assert_eq!(run.code, 143, "{}", run.stderr);
    let delivered = env.job_files("SPEC-T", "delivered").len();
    let pending = env.job_files("SPEC-T", "pending").len();
    assert_eq!(
        delivered + pending,
        100,
        "nothing lost, nothing left in active/"
    );
    assert_eq!(
        delivered,
        rx.requests().len(),
        "every request in flight at SIGTERM finished and was settled"
    );
    assert!(pending > 0, "stopped taking jobs");
}

#[test]
fn the_secret_never_reaches_disk_or_output() {
    // Secrets everywhere: the signing secret, userinfo and query in `url`, a
    // whole URL in `url_env`, header values from `env:` and written literally.
    // The receivers echo each request (query, Basic auth, headers) back.
    const TOKEN: &str = "Bearer gateway-token-8c41";
    const LITERAL: &str = "literal-header-value-77";
    const URL_KEY: &str = "URLKEY-SECRET-314";
    const PASSWORD: &str = "userinfo-pass-2b7";
    const QUERY_KEY: &str = "query-key-61d0";
    // A `url_env` URL whose whole path is one secret segment.
    const SEGMENT: &str = "SEGMENTSECRET42";
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("ops:{PASSWORD}"))
    };
    let rx = Receiver::start();
    rx.script("/s", [Reply::Echo(500), Reply::Echo(401), Reply::Echo(500)]);
    rx.script(
        &format!("/hooks/{URL_KEY}"),
        [Reply::Echo(200), Reply::Echo(200)],
    );
    rx.script("/u", [Reply::Echo(500), Reply::Echo(500)]);
    rx.script(
        &format!("/{SEGMENT}"),
        [Reply::Echo(200), Reply::Echo(200), Reply::Echo(200)],
    );
    // Not hex: a token like "abc" also turns up inside random delivery ids.
    let url = rx.url("/s").replace("http://", "http://user:pw@") + "?token=qTzKwv";
    let userinfo_url = rx
        .url("/u")
        .replace("http://", &format!("http://ops:{PASSWORD}@"))
        + &format!("?key={QUERY_KEY}");
    let headers =
        format!("headers = {{ Authorization = \"env:GATEWAY_TOKEN\", X-Literal = \"{LITERAL}\" }}");
    let tables = format!(
        "{}{}[[spec_ops.webhooks.subscriptions]]\nid = \"hidden\"\nurl_env = \"HIDDEN_URL\"\nsecret_env = \"SECRET_S\"\nformat = \"slack\"\n{headers}\n",
        subscription(
            "s",
            &url,
            &format!("jitter_ms = 0\ninitial_backoff_ms = 20\n{headers}")
        ),
        subscription(
            "dry",
            &rx.url("/dry"),
            &format!("dry_run = true\n{headers}")
        ),
    ) + &subscription("userinfo", &userinfo_url, "max_attempts = 1")
        + "[[spec_ops.webhooks.subscriptions]]\nid = \"segment\"\nurl_env = \"SEGMENT_URL\"\nsecret_env = \"SECRET_S\"\n";
    let env = Env::new(&config_with(&tables))
        .env("SECRET_S", SECRET)
        .env("SECRET_DRY", SECRET)
        .env("SECRET_USERINFO", SECRET)
        .env("GATEWAY_TOKEN", TOKEN)
        .env("HIDDEN_URL", &rx.url(&format!("/hooks/{URL_KEY}")))
        .env("SEGMENT_URL", &rx.url(&format!("/{SEGMENT}")));
    let mut output = String::new();
    for args in [
        &["check"][..],
        &["check", "--json"],
        &[
            "emit",
            "--spec",
            "SPEC-1",
            "--event",
            "spec-auto.stage.completed",
        ],
        &["drain", "--max-time", "60s", "--json"],
        &["-v", "drain", "--once"],
        &["test", "SPEC-1", "--subscription", "hidden", "--print"],
        &["test", "SPEC-1", "--subscription", "hidden", "--json"],
        &["test", "SPEC-1", "--subscription", "s"],
        &["test", "SPEC-1", "--subscription", "userinfo"],
        &["test", "SPEC-1", "--subscription", "segment"],
        &["test", "SPEC-1", "--subscription", "segment", "--json"],
        &["list"],
        &["list", "--json"],
        &["history", "SPEC-1"],
        &["status"],
    ] {
        let run = env.run(args);
        assert!(run.code == 0 || run.code == 1, "{args:?}: {}", run.stderr);
        output.push_str(&run.stdout);
        output.push_str(&run.stderr);
    }
    let echoed = [
        SECRET, TOKEN, LITERAL, URL_KEY, PASSWORD, QUERY_KEY, &basic, "qTzKwv", SEGMENT,
    ];
    for secret in echoed.iter().chain(&["pw@", "token=qTzKwv"]) {
        assert!(!output.contains(secret), "{secret:?} printed:\n{output}");
    }
    assert!(
        output.contains("Authorization: <redacted: env GATEWAY_TOKEN>"),
        "--print names the variable: {output}"
    );
    for (path, bytes) in env.snapshot() {
        let text = String::from_utf8_lossy(&bytes);
        for secret in echoed.iter().chain(&["token=qTzKwv"]) {
            assert!(
                !text.contains(secret),
                "{secret:?} written to {}",
                path.display()
            );
        }
    }
    assert_eq!(
        env.job_files("SPEC-1", "dead").len(),
        2,
        "the 401 and the userinfo subscription's only attempt dead-lettered"
    );
    // The values did travel, read at send time.
    let hidden = rx.requests_to(&format!("/hooks/{URL_KEY}"));
    assert_eq!(hidden.len(), 2, "the drained job and `test`");
    for request in hidden.iter().chain(&rx.requests_to("/s")) {
        assert_eq!(request.header("Authorization"), Some(TOKEN));
        assert_eq!(request.header("X-Literal"), Some(LITERAL));
    }
    assert_eq!(
        rx.requests_to(&format!("/{SEGMENT}")).len(),
        3,
        "the drained job and both `test`s"
    );
    let userinfo = rx.requests_to("/u");
    assert_eq!(userinfo.len(), 2, "the drained job and `test`");
    let sent_basic = format!("Basic {basic}");
    assert_eq!(
        userinfo[0].header("Authorization"),
        Some(sent_basic.as_str())
    );
    // The echoes were kept, with the credentials hidden.
    let log = std::fs::read_to_string(env.evidence("SPEC-1").join("attempts.jsonl")).unwrap();
    for shown in [
        "authorization: <redacted>",
        "x-literal: <redacted>",
        "/s?<redacted>",
        "/u?<redacted>",
        "/hooks/<redacted>",
        &rx.url("/<redacted>"),
    ] {
        assert!(log.contains(shown), "{shown:?} not in {log}");
    }
    assert!(rx.requests_to("/dry").is_empty());
}

#[test]
fn a_malformed_previous_secret_holds_jobs_instead_of_dead_lettering_them() {
    let rx = Receiver::start();
    let sub = subscription(
        "sw",
        &rx.url("/sw"),
        "signature = \"standard-webhooks\"\nsecret_env_previous = \"OLD_SW\"\nmax_attempts = 1",
    );
    let env = Env::new(&config_with(&sub))
        .env("SECRET_SW", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .env("OLD_SW", "not-a-whsec-secret");
    emit_stage(&env, "SPEC-1");
    let run = env.run(&["drain", "--once"]).expect(2);
    assert!(
        run.stderr.contains("OLD_SW") && run.stderr.contains("whsec_"),
        "{}",
        run.stderr
    );
    assert!(rx.requests().is_empty());
    assert!(
        env.job_files("SPEC-1", "dead").is_empty(),
        "a config mistake is not a delivery failure"
    );
    assert_eq!(env.job_files("SPEC-1", "pending").len(), 1);
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr.contains("OLD_SW"),
        "check names the previous secret: {}",
        run.stderr
    );
}

#[test]
fn transient_read_errors_leave_jobs_pending_never_quarantined() {
    let rx = Receiver::start();
    let env = env_for(&rx, &[("a", "/a", "")]);
    let lines: String = (0..40).map(|_| "{\"event\":{\"type\":\"spec-auto.stage.completed\"},\"spec\":{\"id\":\"SPEC-F\"}}\n").collect();
    env.run_with_stdin(&["emit", "--input", "-"], lines.as_bytes())
        .expect(0);
    // Too few file descriptors: reads fail with EMFILE, which says nothing
    // about the jobs. (Review finding: such jobs used to be quarantined.)
    let mut starved = command("bash");
    starved.arg("-c").arg(format!(
        "ulimit -n 7; exec {BIN} --config {} drain --once",
        env.config_path().display()
    ));
    starved
        .current_dir(env.path())
        .env("SECRET_A", SECRET)
        .env("NO_COLOR", "1");
    let run = run_command(starved, b"");
    assert_eq!(
        run.code, 1,
        "an I/O failure is a runtime error: {}",
        run.stderr
    );
    assert!(run.stderr.contains("Too many open files"), "{}", run.stderr);
    assert!(
        env.job_files("SPEC-F", "quarantine").is_empty(),
        "nothing quarantined"
    );
    let listing = std::fs::read_dir(env.spool_root().join("SPEC-F/quarantine"))
        .unwrap()
        .count();
    assert_eq!(listing, 0);
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(
        env.job_files("SPEC-F", "delivered").len(),
        40,
        "every job delivered once descriptors are back"
    );
}

#[test]
fn replay_does_not_wait_for_a_drain_that_waits_for_a_retry() {
    let rx = Receiver::start();
    rx.script("/gone", [Reply::Status(400)]);
    let tables = format!(
        "{}{}",
        subscription(
            "gone",
            &rx.url("/gone"),
            "include_events = [\"spec-auto.pipeline.completed\"]"
        ),
        subscription(
            "down",
            "http://127.0.0.1:1/",
            "include_events = [\"spec-auto.stage.completed\"]\ninitial_backoff_ms = 600000\njitter_ms = 0"
        ),
    );
    let env = Env::new(&config_with(&tables))
        .env("SECRET_GONE", SECRET)
        .env("SECRET_DOWN", SECRET);
    env.run(&[
        "emit",
        "--spec",
        "SPEC-W",
        "--event",
        "spec-auto.pipeline.completed",
    ])
    .expect(0);
    env.run(&["drain", "--once"]).expect(0);
    let dead_id = env.jobs("SPEC-W", "dead")[0].0["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    emit_stage(&env, "SPEC-W");
    // This drain serves SPEC-W, waiting on a 10-minute backoff.
    let waiting = Spawned::new(
        env.cmd(&["drain", "--watch"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(CEILING, "the drain's first attempt", || {
        // The drain may move a listed file before it is read: skip it then.
        env.job_files("SPEC-W", "pending").iter().any(|p| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(t.lines().next()?).ok())
                .is_some_and(|meta| meta["attempts"] == 1)
        })
    });
    rx.script("/gone", [Reply::Status(204)]);
    // A replay that waited for the drain would wait its whole 10 minutes;
    // the ceiling (a tenth of that) only stops such a hung replay.
    let replay = Spawned::new(
        env.cmd(&["replay", "SPEC-W", "--delivery-id", &dead_id])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let run = replay.wait_output(CEILING, "replay beside a drain that waits for a retry");
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("a running drain serves SPEC-W"),
        "{}",
        run.stderr
    );
    // The serving drain sees the requeued job on its next look at pending/.
    let got = rx.wait_for(2, CEILING);
    drop(waiting); // kills it
    assert_eq!(
        got.iter()
            .filter(|r| r.header("X-SpecKit-Id") == Some(dead_id.as_str()))
            .count(),
        2
    );
}

#[test]
fn discard_after_a_crash_mid_settle_does_not_bring_the_job_back() {
    let rx = Receiver::start();
    rx.set_default(Reply::Status(400));
    let env = env_for(&rx, &[("a", "/a", "")]);
    emit_stage(&env, "SPEC-D");
    env.run(&["drain", "--once"]).expect(0);
    let dead = env.job_files("SPEC-D", "dead");
    let name = dead[0].file_name().unwrap().to_owned();
    let id = parse_job(&dead[0]).0["delivery_id"]
        .as_str()
        .unwrap()
        .to_string();
    // The crash: settle renamed the job into dead/ but died before
    // unlinking its active/ copy.
    std::fs::copy(&dead[0], env.spool_root().join("SPEC-D/active").join(&name)).unwrap();
    env.run(&["discard", "SPEC-D", "--delivery-id", &id])
        .expect(0);
    env.run(&["drain", "--once"]).expect(0);
    assert_eq!(
        rx.requests().len(),
        1,
        "the discarded job was not delivered again"
    );
    for state in ["pending", "active", "dead", "delivered"] {
        assert!(
            env.job_files("SPEC-D", state).is_empty(),
            "{state} is empty"
        );
    }
}

#[test]
fn emit_into_a_closed_pipe_still_exits_0_and_starts_delivery() {
    let rx = Receiver::start();
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = true\n\n{}",
        subscription("a", &rx.url("/a"), "")
    );
    let env = Env::new(&config).env("SECRET_A", SECRET);
    let script = format!(
        "{BIN} --config {} emit --spec SPEC-P --event spec-auto.stage.completed | true; exit ${{PIPESTATUS[0]}}",
        env.config_path().display()
    );
    let mut bash = command("bash");
    bash.arg("-c").arg(script).envs(env.envs.clone());
    let run = run_command(bash, b"");
    assert_eq!(run.code, 0, "emit must not die of SIGPIPE: {}", run.stderr);
    assert_eq!(
        rx.wait_for(1, CEILING).len(),
        1,
        "the background drain was started"
    );
}
