//! A hostile or broken spool, a full disk and a caller's open descriptors:
//! nothing may hang, leak, spin or be lost (issue 11). Each test failed on
//! the code before its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::support::receiver::Receiver;
use crate::support::system::Tmpfs;
use crate::support::*;

fn env_with(rx: &Receiver) -> Env {
    Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
        .env("SECRET_HOOK", "s3cret-hook")
}

fn pending(env: &Env, spec: &str) -> PathBuf {
    env.spool_root().join(spec).join("pending")
}

fn quarantine(env: &Env, spec: &str) -> Vec<String> {
    let dir = env.spool_root().join(spec).join("quarantine");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with(".reason"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A drain that must finish on its own; a hang fails the test.
fn drain_once(env: &Env) -> Run {
    Spawned::new(
        env.cmd(&["drain", "--once"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
    .wait_output(CEILING, "drain --once")
}

#[test]
fn a_job_renamed_or_with_a_foreign_sequence_is_quarantined_not_spun_on() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    emit_plan(&env, "SPEC-A").expect(0);
    emit_plan(&env, "SPEC-B").expect(0);
    let job = env.job_files("SPEC-A", "pending").remove(0);
    let renamed =
        pending(&env, "SPEC-A").join("000000000001-00000000-0000-0000-0000-000000000000.job");
    std::fs::rename(&job, &renamed).unwrap();
    let run = drain_once(&env).expect(0);
    assert!(run.stderr.contains("quarantined"), "{}", run.stderr);
    assert!(
        quarantine(&env, "SPEC-A")[0].starts_with("000000000001-00000000"),
        "{:?}",
        quarantine(&env, "SPEC-A")
    );
    assert_eq!(
        env.jobs("SPEC-B", "delivered").len(),
        1,
        "other SPECs are served"
    );
    assert!(
        rx.requests()
            .iter()
            .all(|r| r.body_text().contains("SPEC-B"))
    );
}

#[test]
fn a_delivery_id_that_is_a_path_never_touches_files_outside_the_spool() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    emit_plan(&env, "SPEC-V").expect(0);
    let outside = env.path().join("victim");
    std::fs::write(&outside, b"precious").unwrap();
    // active/x -> the victim; metadata says delivery_id "x/victim".
    let active = env.spool_root().join("SPEC-V").join("active");
    std::os::unix::fs::symlink(env.path(), active.join("x")).unwrap();
    let job = env.job_files("SPEC-V", "pending").remove(0);
    let text = std::fs::read_to_string(&job).unwrap();
    let (meta, body) = text.split_once('\n').unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(meta).unwrap();
    let id = meta["delivery_id"].as_str().unwrap().to_string();
    meta["delivery_id"] = "x/victim".into();
    std::fs::write(&job, format!("{meta}\n{body}")).unwrap();
    drain_once(&env);
    assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
    assert!(rx.requests().is_empty(), "a forged job is not sent");
    let q = quarantine(&env, "SPEC-V");
    assert!(q.iter().any(|n| n.contains(&id)), "{q:?}");
}

#[test]
fn symlinks_fifos_devices_and_folders_in_the_spool_are_quarantined_and_nothing_hangs() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    emit_plan(&env, "SPEC-L").expect(0);
    let pend = pending(&env, "SPEC-L");
    // A job-shaped file elsewhere, linked in: it must not be POSTed.
    let elsewhere = env.path().join("elsewhere.job");
    std::fs::copy(env.job_files("SPEC-L", "pending")[0].clone(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(
        &elsewhere,
        pend.join("000000000007-11111111-1111-4111-8111-111111111111.job"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/dev/zero",
        pend.join("000000000008-22222222-2222-4222-8222-222222222222.job"),
    )
    .unwrap();
    let fifo = pend.join("000000000009-33333333-3333-4333-8333-333333333333.job");
    mkfifo(&fifo);
    std::fs::create_dir(pend.join("000000000010-44444444-4444-4444-8444-444444444444.job"))
        .unwrap();
    for args in [&["list", "SPEC-L"][..], &["status", "SPEC-L"][..]] {
        Spawned::new(
            env.cmd(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
        .wait_output(CEILING, args[0]);
    }
    let run = drain_once(&env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(rx.requests().len(), 1, "only the real job went out");
    assert_eq!(env.jobs("SPEC-L", "delivered").len(), 1);
    assert_eq!(
        quarantine(&env, "SPEC-L").len(),
        4,
        "{:?}",
        quarantine(&env, "SPEC-L")
    );
    assert!(elsewhere.exists(), "the link target is left alone");
    let run = env
        .run(&["list", "SPEC-L", "--state", "quarantine"])
        .expect(0);
    assert!(run.stdout.contains("symbolic link"), "{}", run.stdout);
}

#[test]
fn a_planted_reason_symlink_is_never_written_through() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    emit_plan(&env, "SPEC-Q").expect(0);
    let pend = pending(&env, "SPEC-Q");
    std::fs::write(pend.join("junk.txt"), b"x").unwrap();
    let target = env.path().join("planted");
    let q = env.spool_root().join("SPEC-Q").join("quarantine");
    std::fs::create_dir_all(&q).unwrap();
    std::os::unix::fs::symlink(&target, q.join("junk.txt.reason")).unwrap();
    drain_once(&env);
    assert!(!target.exists(), "the dangling symlink was followed");
    assert!(
        quarantine(&env, "SPEC-Q")
            .iter()
            .any(|n| n.starts_with("junk.txt"))
    );
}

#[test]
fn spool_and_evidence_are_private_whatever_the_umask() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    for args in [
        "emit --spec SPEC-M --event spec-auto.stage.completed",
        "drain --once",
    ] {
        let mut bash = command("bash");
        bash.arg("-c")
            .arg(format!("umask 000; exec \"$0\" --config \"$1\" {args}"))
            .arg(BIN)
            .arg(env.config_path())
            .envs(env.envs.iter().map(|(k, v)| (k, v)));
        let run = run_command(bash, b"");
        assert_eq!(run.code, 0, "{args}: {}", run.stderr);
    }
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    let spec = env.spool_root().join("SPEC-M");
    assert_eq!(mode(&spec), 0o700);
    for sub in ["pending", "delivered", "dead", "quarantine", "active"] {
        assert_eq!(mode(&spec.join(sub)), 0o700, "{sub}");
    }
    for file in ["seq", "drain.lock", "drain.alive"] {
        assert_eq!(mode(&spec.join(file)), 0o600, "{file}");
    }
    let delivered = env.job_files("SPEC-M", "delivered");
    assert_eq!(mode(&delivered[0]), 0o600);
    let log = env.evidence("SPEC-M").join("attempts.jsonl");
    assert_eq!(mode(&log), 0o600);
    assert_eq!(mode(log.parent().unwrap()), 0o700);
}

#[test]
fn spec_ids_that_look_like_flags_or_hide_characters_are_refused() {
    let rx = Receiver::start();
    let env = env_with(&rx);
    for bad in ["-dash", "   ", "SPEC\u{202E}1", "a b"] {
        let spec = format!("--spec={bad}");
        let run = env
            .run(&["emit", &spec, "--event", "spec-auto.stage.completed"])
            .expect(2);
        assert!(
            run.stderr.contains("invalid SPEC id"),
            "{bad:?}: {}",
            run.stderr
        );
    }
    assert!(!env.spool_root().exists(), "nothing written");
}

#[test]
fn the_background_drain_does_not_hold_the_callers_pipes_open() {
    // A receiver that never answers keeps the kicked drain alive.
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", hole.local_addr().unwrap());
    let env = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = true\n\n{}",
        subscription("hook", &url, "per_request_timeout_ms = 60000")
    ))
    .env("SECRET_HOOK", "s3cret-hook");
    // fd 3 of emit is the pipe we read; emit's stdout and stderr go nowhere.
    let mut caller = command("bash");
    caller
        .arg("-c")
        .arg("exec \"$0\" --config \"$1\" emit --spec SPEC-FD --event spec-auto.stage.completed 3>&1 1>/dev/null 2>/dev/null")
        .arg(BIN)
        .arg(env.config_path())
        .envs(env.envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped());
    let mut caller = Spawned::new(caller.spawn().unwrap());
    let mut out = caller.child_mut().stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut sink);
        let _ = tx.send(());
    });
    caller.wait_output(CEILING, "emit").expect(0);
    let served = || {
        let spool = spec_notify::spool::Spool::new(env.spool_root()).spec("SPEC-FD");
        spool.is_served().unwrap()
    };
    wait_until(CEILING, "the background drain to start", served);
    rx.recv_timeout(CEILING)
        .expect("EOF on the caller's pipe while the drain runs");
    assert!(
        served(),
        "the drain is still running: it just does not hold our pipe"
    );
    // Stop the drain (stuck in its 60 s request): kill whoever holds drain.alive.
    let holder =
        std::fs::read_to_string(env.spool_root().join("SPEC-FD").join("drain.alive")).unwrap();
    let holder = rustix::process::Pid::from_raw(holder.trim().parse().unwrap()).unwrap();
    let _ = rustix::process::kill_process(holder, rustix::process::Signal::KILL);
    wait_until(CEILING, "the drain to stop", || !served());
}

#[test]
fn a_full_disk_stops_the_drain_before_it_sends_what_it_cannot_record() {
    let Some(fs) = require("tmpfs", Tmpfs::mount()) else {
        return;
    };
    let rx = Receiver::start();
    let env = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n\n{1}",
        fs.0.display(),
        subscription("hook", &rx.url("/hook"), "")
    ))
    .env("SECRET_HOOK", "s3cret-hook");
    for _ in 0..20 {
        emit_plan(&env, "SPEC-F").expect(0);
    }
    let filler = fs.0.join("filler");
    let mut dd = command("dd");
    dd.args(["if=/dev/zero", "bs=64k"])
        .arg(format!("of={}", filler.display()));
    run_command(dd, b""); // fails once the disk is full, as it should
    // A failed emit leaves no half-written tmp file behind.
    let run = emit_plan(&env, "SPEC-F");
    assert_ne!(run.code, 0, "emit on a full disk fails: {}", run.stderr);
    let hidden = |state: &str| {
        std::fs::read_dir(fs.0.join("spool/SPEC-F").join(state))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .count()
    };
    assert_eq!(hidden("pending"), 0, "no tmp leftovers");

    let run = drain_once(&env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("full"), "{}", run.stderr);
    assert!(
        rx.requests().is_empty(),
        "nothing sent whose outcome could not be recorded"
    );

    std::fs::remove_file(&filler).unwrap();
    drain_once(&env).expect(0);
    let got = rx.requests();
    assert_eq!(got.len(), 20, "each job sent once after space returned");
    let ids: std::collections::HashSet<_> = got
        .iter()
        .map(|r| r.header("X-SpecKit-Id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 20);
}
