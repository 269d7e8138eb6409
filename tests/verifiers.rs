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
//! tests fail and say so, unless SPEC_NOTIFY_TEST_SKIP lists
//! `python-verifiers` or `node-verifiers` (then that language's checks are
//! left out, see [`crate::support::require`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::support::receiver::Recorded;
use crate::support::{CEILING, Lines, Spawned, command, on_path, require, run_command};
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
        let mut cmd = command(program);
        cmd.arg(dir().join(script)).current_dir(dir());
        cmd
    }

    /// Whether this language's verifiers are there; panics naming the
    /// install command when they are not, unless SPEC_NOTIFY_TEST_SKIP
    /// lists them (`false`: leave this language out).
    #[track_caller]
    fn available(self) -> bool {
        static PYTHON: OnceLock<Result<(), String>> = OnceLock::new();
        static NODE: OnceLock<Result<(), String>> = OnceLock::new();
        let (name, checked) = match self {
            Lang::Python => ("python-verifiers", &PYTHON),
            Lang::Node => ("node-verifiers", &NODE),
        };
        let found = checked.get_or_init(|| self.self_check()).clone();
        require(name, found).is_some()
    }

    /// `--self-check`: the interpreter runs and loads every library.
    fn self_check(self) -> Result<(), String> {
        let mut cmd = self.command();
        cmd.arg("--self-check");
        if on_path(cmd.get_program()).is_none() {
            return Err(format!(
                "the {self:?} webhook verifiers need {}, which is not installed",
                cmd.get_program().to_string_lossy()
            ));
        }
        let run = run_command(cmd, b"");
        match run.code {
            0 => Ok(()),
            _ => Err(format!(
                "the {self:?} webhook verifier libraries are not installed (needs python3 \
                 with pip, node and npm; the self-check said: {})",
                run.stderr.trim()
            )),
        }
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
        let mut cmd = self.command();
        cmd.arg("--batch").arg(&file);
        let run = run_command(cmd, b"");
        assert_eq!(run.code, 0, "{self:?} verifier failed: {}", run.stderr);
        let lines: Vec<String> = run.stdout.lines().map(String::from).collect();
        assert_eq!(lines.len(), cases.len(), "{self:?}: {}", run.stdout);
        lines
    }
}

/// Runs the cases through both languages' libraries (those available) and
/// checks each verdict; returns the rejection reasons per language, for
/// further assertions.
#[track_caller]
fn check(cases: &[Case<'_>]) -> Vec<Vec<String>> {
    LANGS
        .iter()
        .filter(|lang| lang.available())
        .map(|&lang| {
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
    child: Spawned,
    url: String,
    _copy: Option<tempfile::TempDir>,
}

impl Example {
    /// Starts `examples/receiver.py` or `receiver.mjs` on a free port with
    /// these secrets (current, then previous).
    fn start(lang: Lang, scheme: &str, secrets: &[&str]) -> Example {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let (mut cmd, copy) = match lang {
            Lang::Python => {
                let mut cmd = command("python3");
                cmd.arg(examples.join("receiver.py"));
                (cmd, None)
            }
            Lang::Node => {
                // Run the file as is, from a folder that resolves the
                // libraries install.sh put in tests/verifiers/node_modules.
                let copy = tempfile::Builder::new()
                    .prefix("tmp-example-")
                    .tempdir_in(dir())
                    .unwrap();
                let script = copy.path().join("receiver.mjs");
                std::fs::copy(examples.join("receiver.mjs"), &script).unwrap();
                let mut cmd = command("node");
                cmd.arg(script);
                (cmd, Some(copy))
            }
        };
        cmd.arg(scheme)
            .env("PORT", "0")
            .env_remove("WEBHOOK_SECRET")
            .env_remove("WEBHOOK_SECRET_PREVIOUS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (var, secret) in ["WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS"]
            .iter()
            .zip(secrets)
        {
            cmd.env(var, secret);
        }
        let (child, url) = listening(cmd, &format!("{lang:?} example"));
        Example {
            child,
            url: format!("{url}hook"),
            _copy: copy,
        }
    }

    /// Stops the receiver; what it printed on stdout.
    fn stop(self) -> String {
        stop(self.child)
    }
}

/// Starts `cmd`, a receiver that prints a banner with its URL on stderr,
/// and waits for the banner (its stderr is read on from then on, so the
/// child never blocks on a full pipe).
#[track_caller]
fn listening(mut cmd: Command, what: &str) -> (Spawned, String) {
    let mut child = Spawned::new(cmd.spawn().unwrap());
    let mut stderr = Lines::new(child.child_mut().stderr.take().unwrap());
    let banner = stderr.wait_for("http://", CEILING);
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("{what} did not start: {banner}"))
        .to_string();
    (child, url)
}

#[test]
fn example_receivers_accept_real_deliveries_and_reject_a_wrong_secret() {
    for lang in LANGS.into_iter().filter(|lang| lang.available()) {
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
    for lang in LANGS.into_iter().filter(|lang| lang.available()) {
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
            let mut bash = command("bash");
            bash.arg(&script)
                .arg(scheme)
                .env("SPEC_NOTIFY", crate::support::BIN)
                .env("WEBHOOK_SECRET", secret)
                .env_remove("WEBHOOK_SECRET_PREVIOUS");
            let run = run_command(bash, &request);
            assert!(
                run.stdout.starts_with(expected),
                "{scheme}: {}\n{}",
                run.stdout,
                run.stderr
            );
            assert!(!run.stderr.contains(secret));
        }
    }
}

// `signature = "github"`: GitHub's own receivers take the deliveries as they are.

/// `github_receiver.mjs` (@octokit/webhooks' `createNodeMiddleware` behind a
/// Node HTTP server) running with `secret`, and where it listens.
fn github_receiver(secret: &str) -> (Spawned, String) {
    let mut cmd = command("node");
    cmd.arg(dir().join("github_receiver.mjs"))
        .current_dir(dir())
        .env("PORT", "0")
        .env("WEBHOOK_SECRET", secret)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    listening(cmd, "github_receiver.mjs")
}

/// Stops a receiver (SIGKILL); what it printed on stdout.
fn stop(receiver: Spawned) -> String {
    receiver.signal("KILL");
    receiver.wait_output(CEILING, "a killed receiver").stdout
}

#[test]
fn octokit_create_node_middleware_accepts_github_deliveries_and_rejects_a_wrong_secret() {
    if !Lang::Node.available() {
        return;
    }
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
    if !Lang::Python.available() {
        return;
    }
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
    let verdicts = Lang::Python.run(&cases);
    for (case, verdict) in cases.iter().zip(&verdicts) {
        assert_eq!(verdict == "ok", case.valid, "{}: {verdict}", case.what);
    }
    assert!(verdicts[4].contains("x-github-event"), "{}", verdicts[4]);
}

// Teams: the `adaptivecards` library parses every card the drain sends.

/// `adaptive_card.mjs`'s verdict for each body, in order.
fn parse_cards(bodies: &[Vec<u8>]) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = command("node");
    cmd.arg(dir().join("adaptive_card.mjs")).current_dir(dir());
    for (i, body) in bodies.iter().enumerate() {
        let path = tmp.path().join(format!("card-{i}.json"));
        std::fs::write(&path, body).unwrap();
        cmd.arg(path);
    }
    let run = run_command(cmd, b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<String> = run.stdout.lines().map(String::from).collect();
    assert_eq!(lines.len(), bodies.len());
    lines
}

#[test]
fn teams_cards_parse_with_the_adaptivecards_library() {
    use crate::support::chat::{ChatReceiver, Platform};
    if !Lang::Node.available() {
        return;
    }
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
