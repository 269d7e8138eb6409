//! What the spool trusts (issue 24, the spool holes): a job's SPEC is the
//! folder it was read from, never its `spec` field; a job the disk has no
//! room to settle is not sent; spool folders and lock files another user
//! owns, or symlinks where folders belong, are refused at once; a file
//! that cannot be quarantined is reported and the rest is delivered. Each
//! test failed on the code before its fix.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::receiver::Receiver;
use crate::support::system::{LocalUser, Tmpfs, as_user, hand_to, non_root_owner, run_as};
use crate::support::*;

const SECRET: &str = "s3cret-hook";

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

/// Rewrites the `spec` field of a job file's metadata line.
fn set_spec(job: &Path, spec: &str) {
    let text = std::fs::read_to_string(job).unwrap();
    let (meta, body) = text.split_once('\n').unwrap();
    let mut meta: serde_json::Value = serde_json::from_str(meta).unwrap();
    meta["spec"] = spec.into();
    std::fs::write(job, format!("{meta}\n{body}")).unwrap();
}

/// Names in a folder (none when it is missing), sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_spec_field_that_names_a_path_or_another_spec_picks_neither_the_job_is_quarantined() {
    let rx = Receiver::start();
    let config = format!(
        "{}\n[spec_ops.webhooks.specs.\"SPEC-B\".hook]\nurl = \"{}\"\n",
        config_with(&subscription("hook", &rx.url("/a"), "")),
        rx.url("/b")
    );
    let env = Env::new(&config).env("SECRET_HOOK", SECRET);
    for _ in 0..3 {
        emit_plan(&env, "SPEC-A").expect(0);
    }
    emit_plan(&env, "SPEC-B").expect(0);
    let elsewhere = env.path().join("srv/elsewhere");
    let jobs = env.job_files("SPEC-A", "pending");
    set_spec(&jobs[0], elsewhere.to_str().unwrap());
    set_spec(&jobs[1], "SPEC-B");

    let run = drain_once(&env).expect(0);
    assert!(
        !env.path().join("srv").exists(),
        "no folder made from the field: {}",
        run.stderr
    );
    let to_b = rx.requests_to("/b");
    assert_eq!(to_b.len(), 1, "SPEC-B's own job only");
    assert!(
        to_b.iter().all(|r| !r.body_text().contains("SPEC-A")),
        "no job of SPEC-A went out with SPEC-B's URL and secret"
    );
    assert_eq!(rx.requests_to("/a").len(), 1, "SPEC-A's untouched job");
    let quarantine = env.spool_root().join("SPEC-A/quarantine");
    let held = names_in(&quarantine);
    assert_eq!(held.len(), 4, "two files, a reason each: {held:?}");
    let reason = std::fs::read_to_string(quarantine.join(format!(
        "{}.reason",
        jobs[0].file_name().unwrap().to_string_lossy()
    )))
    .unwrap();
    assert!(
        reason.contains("spool folder of \"SPEC-A\""),
        "the reason says why: {reason}"
    );
    assert!(run.stderr.contains("quarantined"), "{}", run.stderr);
    // Nothing was written under the path the field named, then or since.
    let listed = env.run(&["list", "SPEC-A", "--state", "all"]).expect(0);
    assert!(!env.path().join("srv").exists(), "{}", listed.stdout);
}

#[test]
fn a_job_the_disk_has_no_room_to_settle_is_not_sent_and_stays_pending() {
    let Some(fs) = require("tmpfs", Tmpfs::mount()) else {
        return;
    };
    let rx = Receiver::start();
    let env = Env::new(&format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_event_bytes = 2000000\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n\n{1}",
        fs.0.display(),
        subscription("hook", &rx.url("/hook"), "")
    ))
    .env("SECRET_HOOK", SECRET);
    let big = json!({
        "event": {"type": "spec-auto.stage.completed", "stage": "Plan", "status": "success"},
        "anomalies": [{"kind": "big", "value": "x".repeat(1_500_000)}],
    });
    let input = env.path().join("big.json");
    std::fs::write(&input, big.to_string()).unwrap();
    env.run(&[
        "emit",
        "--spec",
        "SPEC-F",
        "--input",
        input.to_str().unwrap(),
    ])
    .expect(0);
    let spec = fs.0.join("spool/SPEC-F");
    let job = spec
        .join("pending")
        .join(names_in(&spec.join("pending")).remove(0));
    let size = std::fs::metadata(&job).unwrap().len();
    assert!(size > 1_500_000, "{size}");
    // Leave 1.2 MiB free: over the 1 MiB every drain keeps, under the job.
    let free = || {
        let stat = rustix::fs::statvfs(&fs.0).unwrap();
        stat.f_bavail * stat.f_frsize
    };
    let leave = 1_200 * 1024;
    std::fs::write(fs.0.join("filler"), vec![0u8; (free() - leave) as usize]).unwrap();
    let left = free();
    assert!(
        (1024 * 1024..size).contains(&left),
        "{left} bytes free for a {size}-byte job"
    );

    for _ in 0..2 {
        let run = drain_once(&env);
        assert_eq!(run.code, 1, "{}", run.stderr);
        assert!(
            run.stderr.contains("not sent") && run.stderr.contains("stays pending"),
            "{}",
            run.stderr
        );
        assert!(
            rx.requests().is_empty(),
            "a job it cannot settle is not sent"
        );
        let (meta, _) = parse_job(&job);
        assert_eq!(meta["attempts"], 0, "still pending, never attempted");
    }

    std::fs::remove_file(fs.0.join("filler")).unwrap();
    drain_once(&env).expect(0);
    assert_eq!(rx.requests().len(), 1, "sent once there was room");
    assert_eq!(names_in(&spec.join("delivered")).len(), 1);
}

/// Opens the spool root to every local user, as a shared `spool_dir` is
/// (sticky, like /tmp), and the folders above it to be walked through.
fn share_spool_root(env: &Env) -> PathBuf {
    let root = env.spool_root();
    std::fs::create_dir_all(&root).unwrap();
    for dir in root.ancestors().take_while(|d| d.starts_with(env.path())) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o1777)).unwrap();
    root
}

#[test]
fn a_spec_folder_another_user_made_first_is_refused_at_once_and_emit_says_nothing_was_spooled() {
    let needs = "creating a second local user";
    let Some(()) = require("root", deps::root(needs)) else {
        return;
    };
    let neighbour = LocalUser::create();
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
        .env("SECRET_HOOK", SECRET);
    emit_plan(&env, "SPEC-O").expect(0);
    let root = share_spool_root(&env);
    // The neighbour makes SPEC-N first: `pending` points at a folder of
    // theirs, and they hold `seq` for ten minutes.
    let script = "set -e; cd \"$1\"; mkdir -m 700 SPEC-N; cd SPEC-N; \
                  mkdir active delivered dead quarantine theirs; ln -s theirs pending; \
                  : > seq; exec flock seq sleep 600";
    let _holder = Spawned::new(
        as_user(command("sh"), Some(neighbour.user))
            .args(["-c", script, "sh", root.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let seq = root.join("SPEC-N/seq");
    wait_until(CEILING, "the neighbour to hold seq", || {
        std::fs::File::open(&seq).is_ok_and(|f| f.try_lock().is_err())
    });

    let started = Instant::now();
    let run = env.run(&emit_plan_args("SPEC-N"));
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        took < Duration::from_secs(30),
        "no wait for the neighbour's lock: {took:?}"
    );
    for needle in [
        "not spooled",
        &root.join("SPEC-N").display().to_string(),
        &neighbour.name,
        "rm -r",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    assert!(!run.stderr.contains("held for over"), "{}", run.stderr);
    assert!(names_in(&root.join("SPEC-N/theirs")).is_empty());

    // The drain delivers what is ours, refuses theirs by name, exits 1.
    let run = drain_once(&env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("SPEC-N") && run.stderr.contains(&neighbour.name),
        "{}",
        run.stderr
    );
    assert_eq!(rx.requests().len(), 1);
    assert_eq!(env.jobs("SPEC-O", "delivered").len(), 1);
}

#[test]
fn symlinks_in_place_of_spool_folders_are_never_followed() {
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
        .env("SECRET_HOOK", SECRET);
    emit_plan(&env, "SPEC-L").expect(0);
    let spec = env.spool_root().join("SPEC-L");
    std::fs::write(spec.join("pending/notes.txt"), b"not a job").unwrap();
    let mut outside = Vec::new();
    for state in ["quarantine", "delivered"] {
        let elsewhere = env.path().join(format!("outside-{state}"));
        std::fs::create_dir(&elsewhere).unwrap();
        std::fs::remove_dir(spec.join(state)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, spec.join(state)).unwrap();
        outside.push(elsewhere);
    }

    let run = drain_once(&env);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("symbolic link") && run.stderr.contains("rm "),
        "{}",
        run.stderr
    );
    assert!(rx.requests().is_empty(), "nothing sent it could not settle");
    for dir in &outside {
        assert!(names_in(dir).is_empty(), "{} written", dir.display());
    }
    assert_eq!(env.job_files("SPEC-L", "pending").len(), 1);
    let emit = emit_plan(&env, "SPEC-L");
    assert_eq!(emit.code, 1, "{}", emit.stderr);
    assert!(emit.stderr.contains("not spooled"), "{}", emit.stderr);
    assert!(names_in(&outside[0]).is_empty() && names_in(&outside[1]).is_empty());
}

#[test]
fn a_file_that_cannot_be_quarantined_is_reported_and_the_other_jobs_go_out() {
    let created = non_root_owner();
    let owner = created.as_ref().map(|u| u.user);
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
        .env("SECRET_HOOK", SECRET);
    hand_to(&env, owner);
    run_as(&env, owner, &emit_plan_args("SPEC-Q")).expect(0);
    run_as(&env, owner, &emit_plan_args("SPEC-Q")).expect(0);
    let spec = env.spool_root().join("SPEC-Q");
    let stray = spec.join("pending/notes.txt");
    let garbage = spec.join("pending/000000000099-bad.job");
    for (path, bytes) in [(&stray, &b"notes"[..]), (&garbage, &b"garbage"[..])] {
        std::fs::write(path, bytes).unwrap();
        if let Some(user) = owner {
            std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).unwrap();
        }
    }
    // Its owner may not write quarantine/ (as after a botched restore).
    let quarantine = spec.join("quarantine");
    std::fs::set_permissions(&quarantine, std::fs::Permissions::from_mode(0o500)).unwrap();

    let run = run_as(&env, owner, &["drain", "--once"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for file in [&stray, &garbage] {
        let shown = format!("`{}` is not a job", file.display());
        assert!(run.stderr.contains(&shown), "{shown}: {}", run.stderr);
    }
    assert!(
        run.stderr.contains("could not be quarantined"),
        "{}",
        run.stderr
    );
    assert_eq!(rx.requests().len(), 2, "the jobs beside them went out");
    assert!(stray.exists() && garbage.exists(), "left where they were");

    std::fs::set_permissions(&quarantine, std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = run_as(&env, owner, &["drain", "--once"]).expect(0);
    assert!(run.stderr.contains("quarantined"), "{}", run.stderr);
    assert_eq!(names_in(&quarantine).len(), 4, "two files, a reason each");
    drop(created);
}
