//! Issue 11, the rest: other local users (the permission tests run as
//! non-root users, created here when the tests run as root), unreadable
//! jobs, terminal escapes from receivers and spool names, credentials a
//! receiver echoes back, ports no connection can use, and bounded event
//! input. Each test failed on the code before its fix.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use crate::support::receiver::{Receiver, Reply};
use crate::support::system::{LocalUser, as_user, hand_to, non_root_owner, run_as};
use crate::support::*;

const SECRET: &str = "hardening-secret-4f1e";

/// The first character in `text` that could drive a terminal: a control
/// character other than a line break or tab (C1 included), or a
/// bidirectional override.
fn terminal_control(text: &str) -> Option<char> {
    text.chars().find(|&c| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

#[track_caller]
fn assert_printable(what: &str, text: &str) {
    if let Some(c) = terminal_control(text) {
        panic!("{what} printed {c:?}:\n{text}");
    }
}

// ---------------------------------------------------------------- item 10

#[test]
fn escapes_from_receivers_spool_names_and_input_never_reach_the_terminal() {
    const HOSTILE: &str = "\u{1b}]0;owned\u{7}\u{1b}[2J\u{9b}31m\u{7f}\u{202e}";
    let rx = Receiver::start();
    // A receiver whose answer sets the window title and clears the screen,
    rx.set_default(Reply::Body(400, format!("no{HOSTILE}")));
    // and one whose error code (JSON-escaped) ends up in a dead-letter hint.
    let answer = serde_json::json!({"error": {"code": format!("bad{HOSTILE}")}});
    rx.script("/hook", [Reply::Body(400, answer.to_string())]);
    let tables = subscription("hook", &rx.url("/hook"), "max_attempts = 1")
        + &subscription("raw", &rx.url("/raw"), "");
    let env = Env::new(&config_with(&tables))
        .env("SECRET_HOOK", SECRET)
        .env("SECRET_RAW", SECRET);
    let mut runs = Vec::new();
    runs.push((
        "test",
        env.run(&["test", "SPEC-E", "--subscription", "raw"])
            .expect(1),
    ));
    env.run(&emit_plan_args("SPEC-E")).expect(0);
    runs.push(("drain", env.run(&["drain", "--once"])));
    assert_eq!(env.jobs("SPEC-E", "dead").len(), 2, "{}", runs[1].1.stderr);
    // A file in the spool named with escapes, and input whose key has them.
    let pending = env.spool_root().join("SPEC-E").join("pending");
    std::fs::write(pending.join(format!("evil{HOSTILE}.job")), b"x").unwrap();
    runs.push(("list", env.run(&["list"])));
    runs.push((
        "history",
        env.run(&["history", "SPEC-E", "--format", "table"]),
    ));
    runs.push(("status", env.run(&["status"])));
    let input = format!("{{\"{}\": 1}}", "\\u001b]0;owned\\u0007");
    runs.push((
        "emit --input",
        env.run_with_stdin(
            &[
                "emit", "--spec", "SPEC-E", "--event", "a.b.c", "--input", "-",
            ],
            input.as_bytes(),
        )
        .expect(2),
    ));
    // CSV goes to terminals too: the receiver's body is shown, escaped.
    let csv = env.run(&["history", "SPEC-E", "--format", "csv"]).expect(0);
    assert!(
        csv.stdout.contains("no\\u{1b}]0;owned\\u{7}"),
        "{}",
        csv.stdout
    );
    runs.push(("history --format csv", csv));
    for (what, run) in &runs {
        assert_printable(&format!("{what} (stdout)"), &run.stdout);
        assert_printable(&format!("{what} (stderr)"), &run.stderr);
    }
    // Shown, escaped: an operator still sees what the receiver said.
    let test = &runs[0].1;
    assert!(
        test.stdout.contains("\\u{1b}]0;owned\\u{7}"),
        "{}",
        test.stdout
    );
    assert!(
        runs[1].1.stderr.contains("bad\\u{1b}"),
        "{}",
        runs[1].1.stderr
    );
    assert!(
        runs[2].1.stderr.contains("evil\\u{1b}"),
        "{}",
        runs[2].1.stderr
    );
    assert!(
        runs[5].1.stderr.contains("unknown section `\\u{1b}"),
        "{}",
        runs[5].1.stderr
    );
}

// ---------------------------------------------------------------- item 12

#[test]
fn check_refuses_ports_no_connection_can_use_and_says_why() {
    for (url, want, hidden) in [
        (
            "https://user:p/w@host/h",
            "has a port that is not a number from 1 to 65535",
            "p/w",
        ),
        (
            "http://127.0.0.1:99999/",
            "has port 99999: a port is a number from 1 to 65535",
            "",
        ),
    ] {
        let env = Env::new(&config_with(&subscription("hook", url, ""))).env("SECRET_HOOK", SECRET);
        let run = env.run(&["check"]).expect(2);
        assert!(run.stderr.contains(want), "{url}: {}", run.stderr);
        if !hidden.is_empty() {
            assert!(!run.stderr.contains(hidden), "{url}: {}", run.stderr);
        }
    }
}

#[test]
fn credentials_a_receiver_echoes_back_are_redacted_from_the_evidence_and_test_output() {
    const PASSWORD: &str = "PASSWORD-9f2";
    const QUERY_TOKEN: &str = "QTOKEN-77";
    const API_KEY: &str = "API-KEY-0c5a";
    let rx = Receiver::start();
    rx.set_default(Reply::Echo(500));
    // A receiver that names the secret it expected.
    rx.script(
        "/tells",
        [Reply::Body(
            401,
            format!("expected a signature made with {SECRET}"),
        )],
    );
    rx.script(
        "/tells",
        [Reply::Body(
            401,
            format!("expected a signature made with {SECRET}"),
        )],
    );
    let userinfo_url = rx
        .url("/echo")
        .replace("http://", &format!("http://user:{PASSWORD}@"))
        + &format!("?token={QUERY_TOKEN}&v=1");
    let basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("user:{PASSWORD}"))
    };
    let tables = [
        subscription("basic", &userinfo_url, "max_attempts = 1"),
        subscription(
            "keyed",
            &rx.url("/keyed"),
            "max_attempts = 1\nheaders = { X-Api-Key = \"env:API_KEY\" }",
        ),
        subscription("tells", &rx.url("/tells"), "max_attempts = 1"),
    ]
    .concat();
    let env = Env::new(&config_with(&tables))
        .env("SECRET_BASIC", SECRET)
        .env("SECRET_KEYED", SECRET)
        .env("SECRET_TELLS", SECRET)
        .env("API_KEY", API_KEY);
    let mut output = String::new();
    for args in [
        &["test", "SPEC-R", "--subscription", "basic"][..],
        &["test", "SPEC-R", "--subscription", "keyed", "--json"],
        &["test", "SPEC-R", "--subscription", "tells"],
        &emit_plan_args("SPEC-R"),
        &["-v", "drain", "--once"],
        &["history", "SPEC-R", "--format", "table"],
        &["history", "SPEC-R", "--format", "csv"],
        &["list", "--json"],
        &["status"],
    ] {
        let run = env.run(args);
        output.push_str(&run.stdout);
        output.push_str(&run.stderr);
    }
    let secrets = [PASSWORD, QUERY_TOKEN, API_KEY, SECRET, basic.as_str()];
    for secret in secrets {
        assert!(!output.contains(secret), "{secret:?} printed:\n{output}");
    }
    for (path, bytes) in env.snapshot() {
        let text = String::from_utf8_lossy(&bytes);
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "{secret:?} written to {}",
                path.display()
            );
        }
    }
    // The credentials did travel, and the echoes were kept, redacted.
    assert_eq!(
        rx.requests_to("/echo")[0].header("Authorization"),
        Some(format!("Basic {basic}").as_str())
    );
    assert_eq!(
        rx.requests_to("/keyed")[0].header("X-Api-Key"),
        Some(API_KEY)
    );
    let log = std::fs::read_to_string(env.evidence("SPEC-R").join("attempts.jsonl")).unwrap();
    assert!(log.contains("authorization: <redacted>"), "{log}");
    assert!(log.contains("POST /echo?<redacted>"), "{log}");
    assert!(log.contains("x-api-key: <redacted>"), "{log}");
    assert!(
        log.contains("user-agent: spec-notify/"),
        "the user name alone stays: {log}"
    );
    assert!(log.contains("made with <redacted>"), "{log}");
    assert_eq!(
        env.jobs("SPEC-R", "dead").len(),
        3,
        "every answer was a failure"
    );
}

// ---------------------------------------------------------------- item 14

/// Spawns emit with `--input -` and feeds it `bytes` from a thread (a
/// refused write is fine: emit may stop reading early).
fn emit_from_stdin(env: &Env, extra: &[&str], bytes: Vec<u8>) -> Run {
    let mut args = vec![
        "emit", "--spec", "SPEC-I", "--event", "a.b.c", "--input", "-",
    ];
    args.extend_from_slice(extra);
    let mut child = Spawned::new(
        env.cmd(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.child_mut().stdin.take().unwrap();
    std::thread::spawn(move || {
        let _ = stdin.write_all(&bytes);
    });
    child.wait_output(CEILING, "emit --input -")
}

fn input_env() -> Env {
    Env::new(&config_with(&subscription(
        "hook",
        "https://example.com/h",
        "",
    )))
    .env("SECRET_HOOK", SECRET)
}

#[test]
fn a_100_mb_event_on_stdin_is_refused_naming_the_cap_and_nothing_is_written() {
    let env = input_env();
    let mut event = b"{\"task\":{\"title\":\"".to_vec();
    event.resize(100 * 1024 * 1024, b'x');
    event.extend_from_slice(b"\"}}\n");
    let run = emit_from_stdin(&env, &[], event);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "stdin line 1: the event is larger than max_event_bytes = 1048576 bytes (1 MiB)"
        ),
        "{}",
        run.stderr
    );
    assert!(!env.spool_root().exists(), "nothing written");
}

#[test]
fn max_event_bytes_is_a_config_key_and_bounds_the_envelope_as_spooled() {
    let env = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_event_bytes = 2048\n\n{}",
        subscription("hook", "https://example.com/h", "")
    ))
    .env("SECRET_HOOK", SECRET);
    env.run(&["check"]).expect(0);
    // Small input, but a --telemetry file makes the envelope too big.
    let telemetry = env.path().join("telemetry.json");
    std::fs::write(&telemetry, format!("{{\"note\":\"{}\"}}", "t".repeat(1500))).unwrap();
    let line = "{\"task\":{\"title\":\"".to_string() + &"x".repeat(800) + "\"}}\n";
    let run = emit_from_stdin(
        &env,
        &["--telemetry", telemetry.to_str().unwrap()],
        line.repeat(2).into_bytes(),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("stdin line 1: the event is")
            && run
                .stderr
                .contains("over max_event_bytes = 2048 bytes (2 KiB)"),
        "{}",
        run.stderr
    );
    assert!(!env.spool_root().exists(), "nothing written");
    let run = emit_from_stdin(&env, &[], line.repeat(2).into_bytes());
    assert_eq!(run.code, 0, "two events that fit: {}", run.stderr);
    assert_eq!(env.job_files("SPEC-I", "pending").len(), 2);

    env.write_config(&format!(
        "[spec_ops.webhooks]\nenabled = true\nmax_event_bytes = 10\n\n{}",
        subscription("hook", "https://example.com/h", "")
    ));
    let run = env.run(&["check"]).expect(2);
    assert!(run.stderr.contains("max_event_bytes"), "{}", run.stderr);
}

#[test]
fn telemetry_that_is_not_a_regular_file_is_refused_without_blocking() {
    let env = input_env();
    let fifo = env.path().join("telemetry.fifo");
    mkfifo(&fifo);
    for (path, want) in [
        (fifo.to_str().unwrap(), "is a FIFO"),
        ("/dev/zero", "is a device"),
        (env.path().to_str().unwrap(), "is a folder"),
    ] {
        let mut args = emit_plan_args("SPEC-T");
        args.extend(["--telemetry", path]);
        let run = Spawned::new(
            env.cmd(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
        .wait_output(CEILING, "emit --telemetry");
        assert_eq!(run.code, 2, "{path}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{path}: {}", run.stderr);
    }
    assert!(!env.spool_root().exists(), "nothing written");
}

#[test]
fn emit_never_waits_for_a_stdin_it_was_not_asked_to_read() {
    let env = input_env();
    // stdin is a pipe whose writer (this test) never closes it.
    let mut child = Spawned::new(
        env.cmd(&emit_plan_args("SPEC-S"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let held_open = child.child_mut().stdin.take().unwrap();
    let run = child.wait_output(CEILING, "emit with an open stdin");
    drop(held_open);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(env.job_files("SPEC-S", "pending").len(), 1);
}

// ------------------------------------------------------- items 3 and 8

#[test]
fn an_unreadable_job_is_counted_then_quarantined_and_listed_when_the_drain_is_not_root() {
    let created = non_root_owner();
    let owner = created.as_ref().map(|u| u.user);
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
        .env("SECRET_HOOK", SECRET);
    hand_to(&env, owner);
    run_as(&env, owner, &emit_plan_args("SPEC-U")).expect(0);
    run_as(&env, owner, &emit_plan_args("SPEC-U")).expect(0);
    let locked = env.job_files("SPEC-U", "pending").remove(0);
    let name = locked.file_name().unwrap().to_string_lossy().into_owned();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();

    // Before any drain: counted, named, and status does not say all is well.
    let status = run_as(&env, owner, &["status"]);
    assert_eq!(status.code, 1, "{}\n{}", status.stdout, status.stderr);
    assert!(
        status
            .stdout
            .contains("1 spool file(s) cannot be read as jobs"),
        "{}",
        status.stdout
    );
    assert!(status.stderr.contains(&name), "{}", status.stderr);
    let json = run_as(&env, owner, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["unreadable"], 1);
    let list = run_as(&env, owner, &["list"]).expect(0);
    assert!(list.stderr.contains(&name), "{}", list.stderr);

    let drain = run_as(&env, owner, &["drain", "--once"]);
    assert_eq!(drain.code, 0, "{}", drain.stderr);
    assert!(drain.stderr.contains("quarantined"), "{}", drain.stderr);
    assert_eq!(rx.requests().len(), 1, "the readable job went out");
    let quarantine = env.spool_root().join("SPEC-U").join("quarantine");
    let held: Vec<String> = std::fs::read_dir(&quarantine)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        held.iter()
            .any(|n| n.starts_with(&name) && !n.ends_with(".reason")),
        "{name} is in quarantine: {held:?}"
    );

    let list = run_as(&env, owner, &["list"]).expect(0);
    let row = list.rows().into_iter().find(|r| r.contains("quarantine"));
    assert!(
        row.as_ref().is_some_and(|r| r.contains(&name[..20])),
        "{}",
        list.stdout
    );
    let status = run_as(&env, owner, &["status"]);
    assert_eq!(status.code, 1, "{}", status.stdout);
    assert!(
        status.stdout.contains("1 file(s) in quarantine"),
        "{}",
        status.stdout
    );
    let json = run_as(&env, owner, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["specs"][0]["quarantined"], 1);
}

#[test]
fn another_local_user_can_neither_read_the_spool_nor_block_emit_drain_or_replay() {
    let needs = "creating a second local user";
    let Some(()) = require("root", deps::root(needs)) else {
        return;
    };
    let (created_owner, created_other) = (LocalUser::create(), LocalUser::create());
    let (owner, other) = (Some(created_owner.user), Some(created_other.user));
    let rx = Receiver::start();
    rx.script("/hook", [Reply::Status(500)]);
    let env = Env::new(&config_with(&subscription(
        "hook",
        &rx.url("/hook"),
        "max_attempts = 1",
    )))
    .env("SECRET_HOOK", SECRET);
    hand_to(&env, owner);
    run_as(&env, owner, &emit_plan_args("SPEC-P")).expect(0);
    run_as(&env, owner, &["drain", "--once"]);
    assert_eq!(env.jobs("SPEC-P", "dead").len(), 1, "the 500 dead-lettered");
    run_as(&env, owner, &emit_plan_args("SPEC-P")).expect(0);
    // An operator may have made the folders above the spool and the
    // evidence: open them up, so only the tools' own modes keep others out.
    let spool = env.spool_root();
    let evidence = env.evidence("SPEC-P");
    let spec_evidence = evidence.parent().unwrap().to_path_buf();
    for top in [&spool, spec_evidence.parent().unwrap()] {
        for dir in top.ancestors().take_while(|d| d.starts_with(env.path())) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    // Every file and folder the tools wrote, as the other user sees them.
    let mut files = Vec::new();
    collect(&spool.join("SPEC-P"), &mut files);
    collect(&spec_evidence, &mut files);
    let job = env.job_files("SPEC-P", "pending").remove(0);
    assert!(files.contains(&job) && files.contains(&evidence.join("attempts.jsonl")));
    let mut attempts = Vec::new();
    for path in &files {
        let path = path.to_str().unwrap();
        // Read it; or, for a lock file, hold it as `flock` would (it opens
        // read-only, creating if missing) for ten minutes.
        let script = "cat -- \"$1\" >/dev/null || exit 1; exec flock --nonblock \"$1\" sleep 600";
        let run = Spawned::new(
            as_user(command("sh"), other)
                .args(["-c", script, "sh", path])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
        .wait_output(CEILING, "the other user's attempt");
        assert_ne!(run.code, 0, "the other user could read {path}");
        assert!(
            run.stderr.contains("Permission denied"),
            "{path}: {}",
            run.stderr
        );
        attempts.push(path.to_string());
    }
    assert!(
        attempts.iter().any(|p| p.ends_with("/seq"))
            && attempts.iter().any(|p| p.ends_with("/drain.lock"))
            && attempts.iter().any(|p| p.ends_with("/drain.alive")),
        "{attempts:?}"
    );
    // Nor can they plant a lock file or a job of their own.
    let planted = spool.join("SPEC-P").join("pending").join("x.job");
    let run = Spawned::new(
        as_user(command("sh"), other)
            .args(["-c", "echo x > \"$1\"", "sh", planted.to_str().unwrap()])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
    .wait_output(CEILING, "the other user's write");
    assert_ne!(run.code, 0);
    // The owner's commands go on unhindered.
    run_as(&env, owner, &emit_plan_args("SPEC-P")).expect(0);
    run_as(&env, owner, &["replay", "SPEC-P", "--all-dead"]).expect(0);
    run_as(&env, owner, &["drain", "--once"]).expect(0);
    assert_eq!(env.jobs("SPEC-P", "delivered").len(), 3);
}

/// Every path under `dir` (folders too), or nothing when it is missing.
fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    out.push(dir.to_path_buf());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}
