//! `spec-notify receive` as a running process: it verifies real drain
//! deliveries for each scheme, rejects bad or missing signatures with 401,
//! rehearses failures (`--status`, `--fail-rate`), prints JSON lines, exits
//! after `--count`, refuses bad flags with exit 2 and never prints the secret.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;
use crate::verify::{SECRET, drain_to};

/// A `spec-notify receive` child listening on a free loopback port.
struct Receive {
    child: Spawned,
    addr: SocketAddr,
    banner: String,
}

impl Receive {
    /// Starts `receive --listen 127.0.0.1:0 ARGS`, verifying with `secret`
    /// (in `HOOK_SECRET`) when given.
    fn start(secret: Option<&str>, args: &[&str]) -> Receive {
        let mut cmd = command(BIN);
        cmd.args(["receive", "--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("HOOK_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(secret) = secret {
            cmd.env("HOOK_SECRET", secret)
                .args(["--secret-env", "HOOK_SECRET"]);
        }
        let mut child = Spawned::new(cmd.spawn().unwrap());
        // Read on after the banner, so the child never blocks on a full pipe.
        let mut stderr = Lines::new(child.child_mut().stderr.take().unwrap());
        let banner = stderr.wait_for("http://", CEILING);
        let addr = banner
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no listening address in {banner:?}"));
        Receive {
            child,
            addr,
            banner,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Waits for the child to exit by itself (after `--count`); its exit code and stdout.
    #[track_caller]
    fn finish(self) -> (i32, String) {
        let run = self
            .child
            .wait_output(CEILING, "receive to exit after --count requests");
        (run.code, run.stdout)
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// POSTs `body` with `headers`; the status and response body.
fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send(body).unwrap();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (response.status().as_u16(), text)
}

#[test]
fn real_drain_deliveries_verify_ok_for_every_scheme() {
    for scheme in ["speckit", "github", "standard-webhooks"] {
        let receive = Receive::start(Some(SECRET), &["--scheme", scheme, "--count", "2"]);
        assert!(
            receive
                .banner
                .contains(&format!("verifying {scheme} signatures")),
            "{}",
            receive.banner
        );
        let env = drain_to(&receive.url(), scheme, None, 2);
        let ids: Vec<String> = env
            .jobs("SPEC-RECV", "delivered")
            .iter()
            .map(|(meta, _)| meta["delivery_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            ids.len(),
            2,
            "{scheme}: both answered 204 and delivered; dead: {:?}",
            env.jobs("SPEC-RECV", "dead")
        );
        assert!(!receive.banner.contains(SECRET));
        let (code, stdout) = receive.finish();
        assert_eq!(code, 0);
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{stdout}");
        for line in &lines {
            assert!(line.contains(" 204 POST /hook "), "{line}");
            assert!(line.ends_with("signature=ok"), "{scheme}: {line}");
            assert!(
                line.contains("event=spec-auto.stage.completed spec=SPEC-RECV"),
                "{line}"
            );
            assert!(line.contains("status=success attempt=1"), "{line}");
            assert!(
                ids.iter().any(|id| line.contains(&format!("id={id} "))),
                "{line}"
            );
        }
        assert!(lines[0].contains("stage=Plan") || lines[1].contains("stage=Plan"));
        assert!(lines[0].contains("stage=Tasks") || lines[1].contains("stage=Tasks"));
        assert!(!stdout.contains(SECRET));
    }
}

#[test]
fn bad_and_missing_signatures_get_401_with_the_reason() {
    let receive = Receive::start(Some("s3cret-value"), &["--count", "3", "--json"]);
    let body = r#"{"event":{"type":"spec-auto.stage.completed","stage":"Plan","status":"failure"},"spec":{"id":"SPEC-9"}}"#;
    let good = format!(
        "sha256={}",
        hex(&spec_notify::sign::hmac_sha256(
            b"s3cret-value",
            &[body.as_bytes()]
        ))
    );
    let (status, text) = post(
        &receive.url(),
        &[("X-SpecKit-Signature", "sha256=00")],
        body,
    );
    assert_eq!(status, 401);
    assert!(text.contains("does not match"), "{text}");
    let (status, text) = post(&receive.url(), &[], body);
    assert_eq!(status, 401);
    assert!(
        text.contains("missing header X-SpecKit-Signature"),
        "{text}"
    );
    let (status, _) = post(
        &receive.url(),
        &[("x-speckit-signature", &good), ("X-SpecKit-Id", "d-7")],
        body,
    );
    assert_eq!(status, 204);

    let (code, stdout) = receive.finish();
    assert_eq!(code, 0);
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3, "{stdout}");
    assert_eq!(events[0]["signature"], "bad");
    assert_eq!(events[0]["response_status"], 401);
    assert!(
        events[1]["reason"]
            .as_str()
            .unwrap()
            .contains("missing header")
    );
    assert_eq!(events[2]["signature"], "ok");
    assert_eq!(events[2]["reason"], Value::Null);
    assert_eq!(events[2]["delivery_id"], "d-7");
    assert_eq!(events[2]["spec"], "SPEC-9");
    assert_eq!(events[2]["stage"], "Plan");
    assert_eq!(events[2]["status"], "failure");
    assert_eq!(events[2]["event_type"], "spec-auto.stage.completed");
    assert_eq!(events[2]["response_status"], 204);
    assert!(!stdout.contains("s3cret-value"));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn without_a_secret_nothing_is_checked_and_status_is_answered() {
    let receive = Receive::start(None, &["--status", "500", "--count", "1"]);
    assert!(
        receive.banner.contains("not verifying signatures"),
        "{}",
        receive.banner
    );
    let (status, _) = post(&receive.url(), &[("X-SpecKit-Event", "x.y.z")], "not json");
    assert_eq!(status, 500);
    let (code, stdout) = receive.finish();
    assert_eq!(code, 0);
    assert!(
        stdout.contains(" 500 POST /hook id=- event=x.y.z spec=- "),
        "{stdout}"
    );
    assert!(
        stdout.trim_end().ends_with("signature=unchecked"),
        "{stdout}"
    );
}

#[test]
fn fail_rate_one_answers_503_and_nothing_is_delivered() {
    let receive = Receive::start(None, &["--fail-rate", "1", "--count", "1"]);
    let env = drain_to(&receive.url(), "speckit", None, 1);
    let (code, stdout) = receive.finish();
    assert_eq!(code, 0);
    assert!(stdout.contains(" 503 POST /hook "), "{stdout}");
    assert!(
        env.jobs("SPEC-RECV", "delivered").is_empty(),
        "a 503 is not a delivery"
    );
    let dead = env.jobs("SPEC-RECV", "dead");
    assert_eq!(dead.len(), 1, "max_attempts = 1: the 503 exhausts it");
}

#[test]
fn bad_flags_exit_2_before_listening() {
    let env = Env::new("")
        .env("EMPTY_SECRET", "")
        .env("PLAIN", "plain-secret");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--listen", "localhost-ish"],
            "invalid value 'localhost-ish' for '--listen <ADDR>'",
        ),
        (&["--listen", "127.0.0.1:99999"], "expected IP:PORT"),
        (
            &["--secret-env", "UNSET_VAR_FOR_TEST"],
            "UNSET_VAR_FOR_TEST (--secret-env) is unset or empty",
        ),
        (
            &["--secret-env", "EMPTY_SECRET"],
            "EMPTY_SECRET (--secret-env) is unset or empty",
        ),
        (
            &["--fail-rate", "1.5"],
            "invalid value '1.5' for '--fail-rate <RATE>': outside 0.0–1.0",
        ),
        (&["--fail-rate=-0.1"], "outside 0.0–1.0"),
        (&["--fail-rate", "NaN"], "outside 0.0–1.0"),
        (
            &["--status", "99"],
            "invalid value '99' for '--status <CODE>'",
        ),
        (
            &["--count", "0"],
            "for '--count <N>': must be a whole number, at least 1",
        ),
        (
            &["--secret-env", "PLAIN", "--scheme", "standard-webhooks"],
            "whsec_",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["receive"];
        if !args.contains(&"--listen") {
            all.extend(["--listen", "127.0.0.1:0"]);
        }
        all.extend_from_slice(args);
        let run = env.run(&all).expect(2);
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
        assert!(
            !run.stderr.contains("listening"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("plain-secret"));
    }
}

#[test]
fn concurrent_keep_alive_clients_are_answered_at_once_and_count_is_exact() {
    let receive = Receive::start(None, &["--count", "12", "--json"]);
    let url = receive.url();
    let started = Instant::now();
    // Eight clients each keep their connection open after a first request
    // (like two drains with 4 connections), then ask again: nobody may wait
    // behind an idle keep-alive connection.
    let barrier = std::sync::Barrier::new(8);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (url, barrier) = (&url, &barrier);
                scope.spawn(move || {
                    let agent = agent();
                    let first = agent.post(url).send(format!("{i}-a")).unwrap();
                    barrier.wait();
                    let mut out = vec![first.status().as_u16()];
                    if i < 4 {
                        let second = agent.post(url).send(format!("{i}-b")).unwrap();
                        out.push(second.status().as_u16());
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(statuses, vec![204; 12]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let (code, stdout) = receive.finish();
    assert_eq!(code, 0);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12, "one whole line per request: {stdout}");
    assert!(
        lines
            .iter()
            .all(|l| l["response_status"] == 204 && l["body_bytes"] == 3)
    );
}

/// Everything `receive` sends on `stream` until it closes the connection;
/// fails if that takes more than 30 s.
#[track_caller]
fn read_until_closed(stream: &mut std::net::TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut out = Vec::new();
    let read = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        read.is_ok(),
        "not closed within 30 s: {read:?}; got {text:?}"
    );
    text
}

#[test]
fn a_200_mb_post_is_answered_413_without_waiting_for_its_body() {
    let receive = Receive::start(None, &["--count", "2", "--json"]);
    let mut stream = std::net::TcpStream::connect(receive.addr).unwrap();
    // The head only: an answer proves the server did not wait for the body
    // (before, it read the whole body first, growing to its size).
    stream
        .write_all(
            b"POST /hook HTTP/1.1\r\nHost: t\r\nX-SpecKit-Id: big-1\r\nContent-Length: 200000000\r\n\r\n",
        )
        .unwrap();
    let answer = read_until_closed(&mut stream);
    assert!(
        answer.starts_with("HTTP/1.1 413 Content Too Large\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("body of 200000000 bytes is over the 16777216-byte limit\n"),
        "{answer}"
    );
    // Still serving, and the refusal was printed and counted.
    assert_eq!(post(&receive.url(), &[], "{}").0, 204);
    let (code, stdout) = receive.finish();
    assert_eq!(code, 0);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0]["response_status"], 413);
    assert_eq!(lines[0]["delivery_id"], "big-1");
    assert_eq!(lines[0]["signature"], "bad");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("over the 16777216-byte limit"),
        "{stdout}"
    );
    assert_eq!(lines[1]["response_status"], 204);
}

#[test]
fn stalled_and_idle_connections_neither_block_others_nor_the_exit() {
    let receive = Receive::start(None, &["--count", "1"]);
    // One client sends half a head and stops; another connects and says nothing.
    let stalled = std::net::TcpStream::connect(receive.addr).unwrap();
    (&stalled)
        .write_all(b"POST /hook HTTP/1.1\r\nHost: t\r\nContent-Le")
        .unwrap();
    let idle = std::net::TcpStream::connect(receive.addr).unwrap();
    let (status, _) = post(&receive.url(), &[("X-SpecKit-Id", "d-1")], "{}");
    assert_eq!(status, 204);
    // --count 1 reached: receive exits while both are still open.
    let (code, stdout) = receive.finish();
    assert_eq!(code, 0);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains(" 204 POST /hook id=d-1 "), "{stdout}");
    drop((stalled, idle));
}
