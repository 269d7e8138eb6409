//! Standard Webhooks `v1a` (ed25519) end to end: keys made by `spec-notify
//! keys generate`, deliveries made by the real `drain` to a loopback
//! receiver, and checked, with the `whpk_` public key only, by two
//! implementations of the spec independent of spec-notify: Python's
//! `cryptography` (`tests/verifiers/ed25519_verify.py`) and Node's
//! `crypto.verify` (`ed25519_verify.mjs`), plus `spec-notify verify
//! --public-key`. A tampered body or another key fails; during a rotation
//! either key verifies; HMAC and ed25519 together still satisfy the
//! `standardwebhooks` libraries (which check `v1` only). Also `keys
//! generate --output`, and `check` refusing a bad key by its variable's
//! name without ever printing the key.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::receiver::{Receiver, Recorded};
use crate::support::*;

/// A key pair from the real `keys generate --json`.
struct Pair {
    secret: String,
    public: String,
}

fn generate() -> Pair {
    let run = Env::new("").run(&["keys", "generate", "--json"]).expect(0);
    let keys: Value = serde_json::from_str(&run.stdout).unwrap();
    Pair {
        secret: keys["secret_key"].as_str().unwrap().into(),
        public: keys["public_key"].as_str().unwrap().into(),
    }
}

/// A Standard Webhooks subscription `hook` signing with the key in
/// `KEY_HOOK` (and `KEY_HOOK_OLD` during a rotation, `SECRET_HOOK` for HMAC
/// beside it).
fn config(url: &str, previous: bool, hmac: bool) -> String {
    let mut table = format!(
        "[[spec_ops.webhooks.subscriptions]]\nid = \"hook\"\nurl = \"{url}\"\nsignature = \"standard-webhooks\"\nsigning_key_env = \"KEY_HOOK\"\nmax_attempts = 1\nper_request_timeout_ms = 30000\n"
    );
    if previous {
        table.push_str("signing_key_env_previous = \"KEY_HOOK_OLD\"\n");
    }
    if hmac {
        table.push_str("secret_env = \"SECRET_HOOK\"\n");
    }
    config_with(&table)
}

/// Emits `events` events for SPEC-SIGN and drains them to a loopback
/// receiver; returns the workspace and the recorded deliveries.
fn deliver(env: Env, receiver: &Receiver, events: usize) -> (Env, Vec<Recorded>) {
    for stage in ["Plan", "Tasks", "Implement"].iter().cycle().take(events) {
        let mut args = emit_plan_args("SPEC-SIGN");
        args[6] = stage;
        env.run(&args).expect(0);
    }
    env.run(&["drain", "--once"]).expect(0);
    let got = receiver.wait_for(events, CEILING);
    assert_eq!(got.len(), events, "every event delivered once");
    (env, got)
}

/// One check by an independent verifier: is `delivery` (with `body`)
/// signed by the key whose public half is `public`?
struct Case<'a> {
    public: &'a str,
    delivery: &'a Recorded,
    body: Vec<u8>,
    valid: bool,
    what: &'static str,
}

fn verifiers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/verifiers")
}

/// Runs the cases through the Python and the Node verifier and checks
/// every verdict; fails with the install command when one is missing.
#[track_caller]
fn check_independently(cases: &[Case<'_>]) {
    let tmp = tempfile::tempdir().unwrap();
    let batch: Vec<Value> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let body = tmp.path().join(format!("body-{i}"));
            std::fs::write(&body, &case.body).unwrap();
            json!({"public_key": case.public, "headers": headers_json(case.delivery), "body": body})
        })
        .collect();
    let file = tmp.path().join("cases.json");
    std::fs::write(&file, serde_json::to_vec(&batch).unwrap()).unwrap();
    for (program, script) in [
        ("python3", "ed25519_verify.py"),
        ("node", "ed25519_verify.mjs"),
    ] {
        let verdicts = run_script(program, script, &file);
        assert_eq!(verdicts.len(), cases.len(), "{script}: {verdicts:?}");
        for (case, verdict) in cases.iter().zip(&verdicts) {
            assert_eq!(
                verdict == "ok",
                case.valid,
                "{script}, {}: {verdict}",
                case.what
            );
        }
    }
}

fn headers_json(delivery: &Recorded) -> Value {
    delivery
        .headers
        .iter()
        .map(|(n, v)| (n.clone(), Value::from(v.clone())))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `program script --batch file`: its stdout lines, after a self-check
/// that fails the test with the fix when the verifier cannot run.
#[track_caller]
fn run_script(program: &str, script: &str, file: &Path) -> Vec<String> {
    let dir = verifiers_dir();
    let mut check = command(program);
    check.arg(dir.join(script)).arg("--self-check");
    let ready = run_command(check, b"");
    assert!(
        ready.code == 0,
        "{script} cannot run: run tests/verifiers/install.sh (needs python3 with pip, node and npm)\n{}",
        ready.stderr
    );
    let mut batch = command(program);
    batch.arg(dir.join(script)).arg("--batch").arg(file);
    let output = run_command(batch, b"");
    assert!(output.code == 0, "{script}: {}", output.stderr);
    output.stdout.lines().map(String::from).collect()
}

/// The body with one digit near the end changed (still valid JSON).
fn tampered(body: &[u8]) -> Vec<u8> {
    let mut out = body.to_vec();
    let i = out.iter().rposition(u8::is_ascii_digit).unwrap();
    out[i] = if out[i] == b'9' { b'0' } else { out[i] + 1 };
    out
}

/// `spec-notify verify --public-key KEY…` on a recorded delivery.
fn verify_cli(delivery: &Recorded, body: &[u8], keys: &[&str]) -> Run {
    let mut args = vec!["verify".to_string()];
    for key in keys {
        args.extend(["--public-key".to_string(), key.to_string()]);
    }
    for (name, value) in &delivery.headers {
        args.extend(["--header".to_string(), format!("{name}: {value}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Env::new("").run_with_stdin(&args, body)
}

#[test]
fn v1a_deliveries_verify_with_the_public_key_alone_and_tampering_fails() {
    let (pair, other) = (generate(), generate());
    let receiver = Receiver::start();
    let env = Env::new(&config(&receiver.url("/hook"), false, false)).env("KEY_HOOK", &pair.secret);
    let (env, got) = deliver(env, &receiver, 2);
    let mut cases = Vec::new();
    for delivery in &got {
        let signature = delivery.header("webhook-signature").unwrap();
        assert!(
            signature.starts_with("v1a,") && !signature.contains(' '),
            "{signature}"
        );
        assert_eq!(
            delivery.header("X-SpecKit-Signature"),
            None,
            "no HMAC secret, no HMAC"
        );
        assert_eq!(
            delivery.header("webhook-id"),
            delivery.header("X-SpecKit-Id")
        );
        cases.push(Case {
            public: &pair.public,
            delivery,
            body: delivery.body.clone(),
            valid: true,
            what: "as sent",
        });
        cases.push(Case {
            public: &pair.public,
            delivery,
            body: tampered(&delivery.body),
            valid: false,
            what: "tampered body",
        });
        cases.push(Case {
            public: &other.public,
            delivery,
            body: delivery.body.clone(),
            valid: false,
            what: "another key",
        });

        let run = verify_cli(delivery, &delivery.body, &[&pair.public]).expect(0);
        assert_eq!(run.stderr.trim(), "ok");
        let run = verify_cli(delivery, &tampered(&delivery.body), &[&pair.public]).expect(1);
        assert!(run.stderr.contains("does not match"), "{}", run.stderr);
        verify_cli(delivery, &delivery.body, &[&other.public]).expect(1);
    }
    check_independently(&cases);

    // The secret key is on no file of the workspace (jobs, evidence, logs).
    let encoded = &pair.secret["whsk_".len()..];
    for (path, bytes) in env.snapshot() {
        assert!(
            !String::from_utf8_lossy(&bytes).contains(encoded),
            "the secret key is in {}",
            path.display()
        );
    }
}

#[test]
fn during_a_key_rotation_either_public_key_verifies() {
    let (new, old, stranger) = (generate(), generate(), generate());
    let receiver = Receiver::start();
    let env = Env::new(&config(&receiver.url("/hook"), true, false))
        .env("KEY_HOOK", &new.secret)
        .env("KEY_HOOK_OLD", &old.secret);
    let check = env.run(&["check"]).expect(0);
    assert!(
        check.stderr.contains("rotating signing keys (KEY_HOOK_OLD"),
        "{}",
        check.stderr
    );
    assert!(
        check.stdout.contains(&new.public),
        "check shows the public key:\n{}",
        check.stdout
    );
    let (_env, got) = deliver(env, &receiver, 1);
    let delivery = &got[0];
    let listed = delivery.header("webhook-signature").unwrap();
    assert_eq!(listed.matches("v1a,").count(), 2, "{listed}");
    let case = |public, valid, what| Case {
        public,
        delivery,
        body: delivery.body.clone(),
        valid,
        what,
    };
    check_independently(&[
        case(&new.public, true, "new key"),
        case(&old.public, true, "previous key"),
        case(&stranger.public, false, "a key that did not sign"),
    ]);
    verify_cli(delivery, &delivery.body, &[&old.public]).expect(0);
    verify_cli(delivery, &delivery.body, &[&stranger.public, &new.public]).expect(0);
}

#[test]
fn hmac_beside_v1a_still_satisfies_the_standardwebhooks_libraries() {
    const SECRET: &str = "whsec_c3BlYy1ub3RpZnktdGVzdC1rZXktMDEyMzQ1Njc4OQ==";
    let pair = generate();
    let receiver = Receiver::start();
    let env = Env::new(&config(&receiver.url("/hook"), false, true))
        .env("KEY_HOOK", &pair.secret)
        .env("SECRET_HOOK", SECRET);
    let (_env, got) = deliver(env, &receiver, 1);
    let delivery = &got[0];
    let listed = delivery.header("webhook-signature").unwrap();
    assert!(
        listed.starts_with("v1,") && listed.contains(" v1a,"),
        "{listed}"
    );
    check_independently(&[Case {
        public: &pair.public,
        delivery,
        body: delivery.body.clone(),
        valid: true,
        what: "v1a beside v1",
    }]);
    // The real `standardwebhooks` libraries (Python and Node) verify the v1
    // entry and skip the v1a one; so do gidgethub and @octokit for the
    // X-SpecKit-Signature HMAC.
    let tmp = tempfile::tempdir().unwrap();
    let body = tmp.path().join("body");
    std::fs::write(&body, &delivery.body).unwrap();
    let batch = json!([
        {"scheme": "standard-webhooks", "secret": SECRET, "headers": headers_json(delivery), "body": body},
        {"scheme": "speckit", "secret": SECRET, "headers": headers_json(delivery), "body": body},
    ]);
    let file = tmp.path().join("cases.json");
    std::fs::write(&file, batch.to_string()).unwrap();
    for (program, script) in [("python3", "verify.py"), ("node", "verify.mjs")] {
        assert_eq!(run_script(program, script, &file), ["ok", "ok"], "{script}");
    }
}

#[test]
fn keys_generate_prints_a_valid_pair_and_output_writes_a_new_private_file_only() {
    let env = Env::new("");
    let run = env.run(&["keys", "generate"]).expect(0);
    let lines = run.lines();
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    let secret = lines[0].strip_prefix("secret key: ").unwrap();
    let public = lines[1].strip_prefix("public key: ").unwrap();
    assert!(secret.starts_with("whsk_") && public.starts_with("whpk_"));
    // The pair belongs together: the public key derived from the secret one.
    let env = env.env("KEY", secret);
    let derived = env.run(&["keys", "public", "--key-env", "KEY"]).expect(0);
    assert_eq!(derived.stdout.trim(), public);
    assert!(!derived.stdout.contains(secret) && !derived.stderr.contains(secret));
    assert!(
        env.snapshot().is_empty(),
        "nothing written without --output"
    );

    let run = env
        .run(&["keys", "generate", "--output", "signing.key"])
        .expect(0);
    let path = env.path().join("signing.key");
    let written = std::fs::read_to_string(&path).unwrap();
    let key = written.strip_suffix('\n').unwrap();
    assert!(key.starts_with("whsk_"), "{written}");
    assert!(!run.stdout.contains(&key[5..]) && !run.stderr.contains(&key[5..]));
    assert!(run.stdout.trim().starts_with("whpk_"), "{}", run.stdout);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let env = env.env("FROM_FILE", key);
    let derived = env
        .run(&["keys", "public", "--key-env", "FROM_FILE"])
        .expect(0);
    assert_eq!(
        derived.stdout, run.stdout,
        "the printed public key is the file's"
    );

    let again = env
        .run(&["keys", "generate", "--output", "signing.key"])
        .expect(2);
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    assert!(again.stdout.is_empty());
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        written,
        "never replaced"
    );
    let names: Vec<_> = std::fs::read_dir(env.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "config.toml and the key, no temp file: {names:?}"
    );
}

#[test]
fn check_and_drain_refuse_a_malformed_key_by_its_variable_never_showing_it() {
    let receiver = Receiver::start();
    let text = config(&receiver.url("/hook"), false, false);
    // 25 bytes, not 32: looks like a key, is not one.
    let short = "whsk_TUFMRk9STUVELUtFWS1ET05PVC1QUklOVA==";
    let public = generate().public;
    let env = Env::new(&text).env("KEY_HOOK", short);
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr.contains("signing key in KEY_HOOK"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("25 bytes; an ed25519 key is 32"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("TUFMRk9STUVE") && !run.stdout.contains("TUFMRk9STUVE"));

    emit_plan(&env, "SPEC-SIGN").expect(0);
    let drain = env.run(&["drain", "--once"]).expect(2);
    assert!(drain.stderr.contains("KEY_HOOK"), "{}", drain.stderr);
    assert!(!drain.stderr.contains("TUFMRk9STUVE"));
    assert_eq!(
        env.jobs("SPEC-SIGN", "pending").len(),
        1,
        "the job waits for a usable key"
    );
    assert!(receiver.requests().is_empty());

    let env = Env::new(&text).env("KEY_HOOK", &public);
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr.contains("KEY_HOOK: this is a public key"),
        "{}",
        run.stderr
    );

    let env = Env::new(&text);
    let run = env.run(&["check"]).expect(2);
    assert!(
        run.stderr
            .contains("key `signing_key_env`: the environment variable KEY_HOOK is unset"),
        "{}",
        run.stderr
    );
}

/// `examples/receiver.mjs v1a` on a free port with `WEBHOOK_PUBLIC_KEY`,
/// run from a folder that resolves the libraries install.sh put in
/// tests/verifiers/node_modules; its URL and the child.
fn node_example(public: &str) -> (Spawned, String, tempfile::TempDir, Lines) {
    use std::io::BufRead;
    let copy = tempfile::Builder::new()
        .prefix("tmp-example-")
        .tempdir_in(verifiers_dir())
        .unwrap();
    let script = copy.path().join("receiver.mjs");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    std::fs::copy(examples.join("receiver.mjs"), &script).unwrap();
    let mut child = command("node")
        .arg(&script)
        .arg("v1a")
        .env("PORT", "0")
        .env("WEBHOOK_PUBLIC_KEY", public)
        .env_remove("WEBHOOK_PUBLIC_KEY_PREVIOUS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let stdout = Lines::new(child.stdout.take().unwrap());
    let child = Spawned::new(child);
    let mut banner = String::new();
    stderr.read_line(&mut banner).unwrap();
    let url = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| {
            panic!("examples/receiver.mjs did not start (run tests/verifiers/install.sh): {banner}")
        })
        .to_string();
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    (child, format!("{url}hook"), copy, stdout)
}

#[test]
fn the_node_and_shell_examples_take_v1a_with_the_public_key_only() {
    let (pair, other) = (generate(), generate());
    for (public, delivered) in [(&pair.public, true), (&other.public, false)] {
        let (child, url, _copy, stdout) = node_example(public);
        let env = Env::new(&config(&url, false, false)).env("KEY_HOOK", &pair.secret);
        emit_plan(&env, "SPEC-SIGN").expect(0);
        env.run(&["drain", "--once"]).expect(0);
        drop(child);
        let out = stdout.all();
        let state = if delivered { "delivered" } else { "dead" };
        assert_eq!(env.jobs("SPEC-SIGN", state).len(), 1, "{public}: {out}");
        assert_eq!(out.contains("accepted"), delivered, "{out}");
    }

    let receiver = Receiver::start();
    let env = Env::new(&config(&receiver.url("/hook"), false, false)).env("KEY_HOOK", &pair.secret);
    let (_env, got) = deliver(env, &receiver, 1);
    let delivery = &got[0];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/receiver.sh");
    for (body, public, expected) in [
        (delivery.body.clone(), &pair.public, "HTTP/1.1 204"),
        (tampered(&delivery.body), &pair.public, "HTTP/1.1 401"),
        (delivery.body.clone(), &other.public, "HTTP/1.1 401"),
    ] {
        let mut request = format!("POST {} HTTP/1.1\r\n", delivery.path).into_bytes();
        for (name, value) in &delivery.headers {
            request.extend(format!("{name}: {value}\r\n").bytes());
        }
        request.extend(b"\r\n");
        request.extend(&body);
        let mut cmd = command("bash");
        cmd.arg(&script)
            .arg("v1a")
            .env("SPEC_NOTIFY", BIN)
            .env("WEBHOOK_PUBLIC_KEY", public)
            .env_remove("WEBHOOK_PUBLIC_KEY_PREVIOUS")
            .env_remove("WEBHOOK_SECRET");
        let run = run_command(cmd, &request);
        assert!(
            run.stdout.starts_with(expected),
            "{}\n{}",
            run.stdout,
            run.stderr
        );
    }
}
