//! Deliveries made by the real `drain` to a loopback receiver, checked by the
//! third-party libraries receivers already use: gidgethub and standardwebhooks
//! (Python), @octokit/webhooks-methods and standardwebhooks (Node), through
//! `tests/verifiers/verify.py` and `verify.mjs`. A tampered body, a wrong
//! secret and a stale timestamp must be rejected by them. `signature =
//! "github"` deliveries go to @octokit/webhooks' `createNodeMiddleware` behind
//! a real Node server (`github_receiver.mjs`) and through gidgethub's
//! `Event.from_http`; Teams messages are parsed by the `adaptivecards`
//! library (`adaptive_card.mjs`). The libraries are installed by
//! `tests/verifiers/install.sh` (`.ci/run` calls it); without them these
//! tests fail and say so.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::receiver::Recorded;
use crate::verify::{PREVIOUS, SECRET, deliveries};

const SCHEMES: [&str; 3] = ["speckit", "github", "standard-webhooks"];
const OTHER_SECRET: &str = "whsec_d3JvbmctcGFzc3dvcmQtMDEyMzQ1Njc4OQ==";

#[derive(Debug, Clone, Copy)]
enum Lang {
    Python,
    Node,
}

const LANGS: [Lang; 2] = [Lang::Python, Lang::Node];

/// One check: does `mode`'s library accept `delivery` with `body` and `secret`?
struct Case<'a> {
    mode: &'a str,
    secret: &'a str,
    delivery: &'a Recorded,
    body: Vec<u8>,
    /// What the test expects, and why (for the failure message).
    valid: bool,
    what: String,
}

impl<'a> Case<'a> {
    fn new(
        mode: &'a str,
        secret: &'a str,
        delivery: &'a Recorded,
        valid: bool,
        what: &str,
    ) -> Self {
        Case {
            mode,
            secret,
            delivery,
            body: delivery.body.clone(),
            valid,
            what: what.to_string(),
        }
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifiers")
}

impl Lang {
    fn command(self) -> Command {
        let (program, script) = match self {
            Lang::Python => ("python3", "verify.py"),
            Lang::Node => ("node", "verify.mjs"),
        };
        let mut cmd = Command::new(program);
        cmd.arg(dir().join(script)).current_dir(dir());
        cmd
    }

    /// Fails the test, with the fix, when the interpreter or libraries are missing.
    #[track_caller]
    fn ensure_installed(self) {
        let output = self.command().arg("--self-check").output();
        let ok = output.as_ref().is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "the {self:?} webhook verifier libraries are not installed: run tests/verifiers/install.sh \
             (needs python3 with pip, node and npm)\n{}",
            match &output {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => e.to_string(),
            }
        );
    }

    /// Runs every case in one process; one `ok` / `rejected: …` line per case.
    fn run(self, cases: &[Case<'_>]) -> Vec<String> {
        let tmp = tempfile::tempdir().unwrap();
        let batch: Vec<serde_json::Value> = cases
            .iter()
            .enumerate()
            .map(|(i, case)| {
                let body = tmp.path().join(format!("body-{i}"));
                std::fs::write(&body, &case.body).unwrap();
                let headers: serde_json::Map<String, serde_json::Value> = case
                    .delivery
                    .headers
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone().into()))
                    .collect();
                serde_json::json!({
                    "scheme": case.mode,
                    "secret": case.secret,
                    "headers": headers,
                    "body": body,
                })
            })
            .collect();
        let file = tmp.path().join("cases.json");
        std::fs::write(&file, serde_json::to_vec(&batch).unwrap()).unwrap();
        let output = self.command().arg("--batch").arg(&file).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{self:?} verifier failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let lines: Vec<String> = stdout.lines().map(String::from).collect();
        assert_eq!(lines.len(), cases.len(), "{self:?}: {stdout}");
        lines
    }
}

/// Runs the cases through both languages' libraries and checks each verdict;
/// returns the rejection reasons per language, for further assertions.
#[track_caller]
fn check(cases: &[Case<'_>]) -> Vec<Vec<String>> {
    LANGS
        .iter()
        .map(|&lang| {
            lang.ensure_installed();
            let verdicts = lang.run(cases);
            for (case, verdict) in cases.iter().zip(&verdicts) {
                assert_eq!(
                    verdict == "ok",
                    case.valid,
                    "{lang:?}, {} ({} mode): {verdict}",
                    case.what,
                    case.mode
                );
            }
            verdicts
        })
        .collect()
}

/// The modes that apply to a delivery of `scheme`: its own, plus `speckit`
/// for the X-SpecKit-Signature every scheme sends.
fn modes(scheme: &str) -> Vec<&str> {
    if scheme == "speckit" {
        vec!["speckit"]
    } else {
        vec![scheme, "speckit"]
    }
}

/// The body with one digit near the end changed (still valid UTF-8 JSON).
fn tampered(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let i = out
        .iter()
        .rposition(u8::is_ascii_digit)
        .expect("an envelope has digits");
    out[i] = if out[i] == b'9' { b'0' } else { out[i] + 1 };
    out
}

#[test]
fn libraries_accept_real_deliveries_and_reject_tampering_and_wrong_secrets() {
    let recorded: Vec<(&str, Vec<Recorded>)> = SCHEMES
        .iter()
        .map(|&s| (s, deliveries(s, None, 2)))
        .collect();
    let mut cases = Vec::new();
    for (scheme, got) in &recorded {
        assert_ne!(got[0].header("X-SpecKit-Id"), got[1].header("X-SpecKit-Id"));
        for delivery in got {
            for mode in modes(scheme) {
                let what = |w: &str| format!("{scheme} delivery, {w}");
                cases.push(Case::new(mode, SECRET, delivery, true, &what("as sent")));
                cases.push(
                    Case::new(mode, SECRET, delivery, false, &what("tampered body"))
                        .body(tampered(&delivery.body)),
                );
                cases.push(Case::new(
                    mode,
                    OTHER_SECRET,
                    delivery,
                    false,
                    &what("wrong secret"),
                ));
            }
        }
    }
    assert_eq!(cases.len(), 2 * 3 * (1 + 2 + 2));
    check(&cases);
}

#[test]
fn libraries_reject_a_stale_standard_webhooks_timestamp() {
    // A real delivery whose webhook-timestamp is moved 10 minutes back.
    let mut moved = deliveries("standard-webhooks", None, 1).remove(0);
    for (name, value) in &mut moved.headers {
        if name.eq_ignore_ascii_case("webhook-timestamp") {
            *value = (value.parse::<u64>().unwrap() - 600).to_string();
        }
    }
    // A validly signed message from 2021: the spec's published example.
    let published = Recorded {
        method: "POST".into(),
        path: "/".into(),
        headers: vec![
            ("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
            ("webhook-timestamp".into(), "1614265330".into()),
            (
                "webhook-signature".into(),
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into(),
            ),
        ],
        body: br#"{"test": 2432232314}"#.to_vec(),
        received_at_ms: 0,
    };
    let key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let verdicts = check(&[
        Case::new(
            "standard-webhooks",
            SECRET,
            &moved,
            false,
            "timestamp 10 min old",
        ),
        Case::new("standard-webhooks", key, &published, false, "2021 example"),
    ]);
    for verdict in verdicts.iter().flatten() {
        assert!(verdict.contains("too old"), "{verdict}");
    }
}

#[test]
fn during_rotation_standard_webhooks_verify_with_either_secret_hex_with_the_new_only() {
    let standard = &deliveries("standard-webhooks", Some(PREVIOUS), 1)[0];
    let github = &deliveries("github", Some(PREVIOUS), 1)[0];
    check(&[
        Case::new("standard-webhooks", SECRET, standard, true, "new secret"),
        Case::new(
            "standard-webhooks",
            PREVIOUS,
            standard,
            true,
            "previous secret",
        ),
        Case::new("github", SECRET, github, true, "new secret"),
        Case::new(
            "github",
            PREVIOUS,
            github,
            false,
            "previous secret (new only)",
        ),
        Case::new(
            "speckit",
            PREVIOUS,
            standard,
            false,
            "previous secret (new only)",
        ),
    ]);
}

// The receivers in examples/, run as documented, fed by the real drain.

/// A running example receiver and where it listens.
struct Example {
    child: std::process::Child,
    url: String,
    _copy: Option<tempfile::TempDir>,
}

impl Example {
    /// Starts `examples/receiver.py` or `receiver.mjs` on a free port with
    /// these secrets (current, then previous).
    fn start(lang: Lang, scheme: &str, secrets: &[&str]) -> Example {
        use std::io::BufRead;
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let (mut cmd, copy) = match lang {
            Lang::Python => {
                let mut cmd = Command::new("python3");
                cmd.arg(examples.join("receiver.py"));
                (cmd, None)
            }
            Lang::Node => {
                lang.ensure_installed();
                // Run the file as is, from a folder that resolves the
                // libraries install.sh put in tests/verifiers/node_modules.
                let copy = tempfile::Builder::new()
                    .prefix("tmp-example-")
                    .tempdir_in(dir())
                    .unwrap();
                let script = copy.path().join("receiver.mjs");
                std::fs::copy(examples.join("receiver.mjs"), &script).unwrap();
                let mut cmd = Command::new("node");
                cmd.arg(script);
                (cmd, Some(copy))
            }
        };
        cmd.arg(scheme)
            .env("PORT", "0")
            .env_remove("WEBHOOK_SECRET")
            .env_remove("WEBHOOK_SECRET_PREVIOUS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (var, secret) in ["WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"]
            .iter()
            .zip(secrets)
        {
            cmd.env(var, secret);
        }
        let mut child = cmd.spawn().unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut banner = String::new();
        stderr.read_line(&mut banner).unwrap();
        let url = banner
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("{lang:?} example did not start: {banner}"))
            .to_string();
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Example {
            child,
            url: format!("{url}hook"),
            _copy: copy,
        }
    }

    /// Stops the receiver; what it printed on stdout.
    fn stop(mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            stdout.read_to_string(&mut out).unwrap();
        }
        out
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn example_receivers_accept_real_deliveries_and_reject_a_wrong_secret() {
    for lang in LANGS {
        for scheme in SCHEMES {
            let example = Example::start(lang, scheme, &[SECRET]);
            let env = crate::verify::drain_to(&example.url, scheme, None, 2);
            let delivered = env.jobs("SPEC-RECV", "delivered");
            let out = example.stop();
            assert_eq!(delivered.len(), 2, "{lang:?} {scheme}: {out}");
            for (meta, _) in &delivered {
                let id = meta["delivery_id"].as_str().unwrap();
                let line = format!("accepted {id} spec-auto.stage.completed SPEC-RECV ");
                assert!(out.contains(&line), "{lang:?} {scheme}: {out}");
            }

            let example = Example::start(lang, scheme, &[OTHER_SECRET]);
            let env = crate::verify::drain_to(&example.url, scheme, None, 1);
            let out = example.stop();
            assert!(!out.contains("accepted"), "{lang:?} {scheme}: {out}");
            let dead = env.jobs("SPEC-RECV", "dead");
            assert_eq!(dead.len(), 1, "{lang:?} {scheme}: 401 is terminal");
        }
    }
}

#[test]
fn example_receivers_accept_the_previous_secret_while_rotating() {
    for lang in LANGS {
        for scheme in ["github", "standard-webhooks"] {
            // The receiver already knows a newer secret; the sender still uses SECRET.
            let example = Example::start(lang, scheme, &[OTHER_SECRET, SECRET]);
            let env = crate::verify::drain_to(&example.url, scheme, None, 1);
            let out = example.stop();
            assert_eq!(
                env.jobs("SPEC-RECV", "delivered").len(),
                1,
                "{lang:?} {scheme}: {out}"
            );
            assert!(out.contains("accepted"), "{out}");
        }
    }
}

#[test]
fn shell_example_answers_204_for_genuine_and_401_for_tampered_requests() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/receiver.sh");
    for scheme in SCHEMES {
        let delivery = &deliveries(scheme, None, 1)[0];
        for (body, secret, expected) in [
            (delivery.body.clone(), SECRET, "HTTP/1.1 204"),
            (tampered(&delivery.body), SECRET, "HTTP/1.1 401"),
            (delivery.body.clone(), OTHER_SECRET, "HTTP/1.1 401"),
        ] {
            let mut request = format!("POST {} HTTP/1.1\r\n", delivery.path).into_bytes();
            for (name, value) in &delivery.headers {
                request.extend(format!("{name}: {value}\r\n").bytes());
            }
            request.extend(b"\r\n");
            request.extend(&body);
            let mut child = Command::new("bash")
                .arg(&script)
                .arg(scheme)
                .env("SPEC_NOTIFY", crate::support::BIN)
                .env("WEBHOOK_SECRET", secret)
                .env_remove("WEBHOOK_SECRET_PREVIOUS")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&request).unwrap();
            let output = child.wait_with_output().unwrap();
            let response = String::from_utf8_lossy(&output.stdout);
            assert!(
                response.starts_with(expected),
                "{scheme}: {response}\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            assert!(!String::from_utf8_lossy(&output.stderr).contains(secret));
        }
    }
}

// `signature = "github"`: GitHub's own receivers take the deliveries as they are.

/// `github_receiver.mjs` (@octokit/webhooks' `createNodeMiddleware` behind a
/// Node HTTP server) running with `secret`, and where it listens.
fn github_receiver(secret: &str) -> (crate::support::Spawned, String) {
    use std::io::BufRead;
    Lang::Node.ensure_installed();
    let mut child = Command::new("node")
        .arg(dir().join("github_receiver.mjs"))
        .current_dir(dir())
        .env("PORT", "0")
        .env("WEBHOOK_SECRET", secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("github_receiver.mjs did not start: {banner}"))
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (crate::support::Spawned::new(child), url)
}

/// Stops the receiver; what it printed on stdout.
fn stop(mut receiver: crate::support::Spawned) -> String {
    use std::io::Read;
    let _ = receiver.child_mut().kill();
    let _ = receiver.child_mut().wait();
    let mut out = String::new();
    if let Some(mut stdout) = receiver.child_mut().stdout.take() {
        stdout.read_to_string(&mut out).unwrap();
    }
    out
}

#[test]
fn octokit_create_node_middleware_accepts_github_deliveries_and_rejects_a_wrong_secret() {
    let (receiver, url) = github_receiver(SECRET);
    let env = crate::verify::drain_to(&url, "github", None, 2);
    let out = stop(receiver);
    let delivered = env.jobs("SPEC-RECV", "delivered");
    assert_eq!(delivered.len(), 2, "octokit answered: {out}");
    for (meta, _) in &delivered {
        let id = meta["delivery_id"].as_str().unwrap();
        let line = format!("accepted {id} spec-auto.stage.completed SPEC-RECV");
        assert!(out.contains(&line), "{out}");
    }

    let (receiver, url) = github_receiver(OTHER_SECRET);
    let env = crate::verify::drain_to(&url, "github", None, 1);
    let out = stop(receiver);
    assert!(!out.contains("accepted"), "{out}");
    let dead = env.jobs("SPEC-RECV", "dead");
    assert_eq!(
        dead.len(),
        1,
        "octokit's 400 for a bad signature is terminal"
    );
    assert_eq!(dead[0].0["last_status"], 400);
}

#[test]
fn gidgethub_event_from_http_accepts_github_deliveries() {
    let got = deliveries("github", None, 2);
    let mut without_event = got[0].clone();
    without_event
        .headers
        .retain(|(n, _)| !n.eq_ignore_ascii_case("X-GitHub-Event"));
    for delivery in &got {
        let hook = delivery.header("X-GitHub-Hook-ID").unwrap();
        assert!(
            hook.parse::<u32>().is_ok_and(|n| n > 0),
            "numeric hook id: {hook}"
        );
        assert_eq!(
            delivery.header("X-GitHub-Delivery"),
            delivery.header("X-SpecKit-Id")
        );
    }
    assert_eq!(
        got[0].header("X-GitHub-Hook-ID"),
        got[1].header("X-GitHub-Hook-ID"),
        "stable per subscription"
    );
    let mode = "github-event";
    let cases = [
        Case::new(mode, SECRET, &got[0], true, "as sent"),
        Case::new(mode, SECRET, &got[1], true, "as sent"),
        Case::new(mode, SECRET, &got[0], false, "tampered body").body(tampered(&got[0].body)),
        Case::new(mode, OTHER_SECRET, &got[0], false, "wrong secret"),
        Case::new(mode, SECRET, &without_event, false, "no X-GitHub-Event"),
    ];
    Lang::Python.ensure_installed();
    let verdicts = Lang::Python.run(&cases);
    for (case, verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(verdict == "ok", case.valid, "{}: {verdict}", case.what);
    }
    assert!(verdicts[4].contains("x-github-event"), "{}", verdicts[4]);
}

// Teams: the `adaptivecards` library parses every card the drain sends.

/// `adaptive_card.mjs`'s verdict for each body, in order.
fn parse_cards(bodies: &[Vec<u8>]) -> Vec<String> {
    Lang::Node.ensure_installed();
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(dir().join("adaptive_card.mjs")).current_dir(dir());
    for (i, body) in bodies.iter().enumerate() {
        let path = tmp.path().join(format!("card-{i}.json"));
        std::fs::write(&path, body).unwrap();
        cmd.arg(path);
    }
    let output = cmd.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), bodies.len());
    lines
}

#[test]
fn teams_cards_parse_with_the_adaptivecards_library() {
    use crate::support::chat::{ChatReceiver, Platform};
    let rx = ChatReceiver::start(Platform::Teams);
    let env = crate::formats::chat_env(rx.url(), "teams", "");
    let events = crate::formats::emit_standard_events(&env);
    crate::formats::drain(&env);
    env.run(&["test", crate::formats::SPEC, "--subscription", "chat"])
        .expect(0);
    let bodies: Vec<Vec<u8>> = rx
        .deliveries()
        .into_iter()
        .map(|d| d.request.body)
        .collect();
    assert_eq!(
        bodies.len(),
        events + 1,
        "every event and the test delivery"
    );
    for (verdict, body) in parse_cards(&bodies).iter().zip(&bodies) {
        assert_eq!(verdict, "ok", "{}", String::from_utf8_lossy(body));
    }
    // The library does reject what it cannot parse.
    let broken = String::from_utf8(bodies[0].clone())
        .unwrap()
        .replace("\"RichTextBlock\"", "\"RichTextBlob\"");
    let verdict = &parse_cards(&[broken.into_bytes()])[0];
    assert!(
        verdict.starts_with("rejected: parse: Unknown element type \"RichTextBlob\""),
        "{verdict}"
    );
}
