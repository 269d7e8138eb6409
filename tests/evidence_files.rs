//! Attempt logs read and written like spool files: a drain never sends a
//! job whose outcome its log cannot take (a FIFO, a symlink), readers
//! (`history`, `status`, `report`, `metrics`) never follow a symlink or
//! wait on a FIFO, lines are bounded, and `history` streams a log of any
//! size in bounded memory.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spec_notify::evidence::{Outcome, Record};

use crate::list::{SPEC, attempt, ops_env, write_log};
use crate::support::receiver::Receiver;
use crate::support::*;

/// How long a reader may take here; a hang is a failure, not a wait.
const READER_CEILING: Duration = Duration::from_secs(60);

/// Makes `path` the kind of file named: a FIFO, or a symlink to `target`.
fn make(kind: &str, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    match kind {
        "fifo" => mkfifo(path),
        target => std::os::unix::fs::symlink(target, path).unwrap(),
    }
}

#[test]
fn a_drain_whose_attempt_log_is_a_fifo_or_a_symlink_sends_nothing_and_keeps_the_job_pending() {
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("elsewhere.jsonl");
    std::fs::write(&elsewhere, b"").unwrap();
    for kind in ["fifo", elsewhere.to_str().unwrap()] {
        let rx = Receiver::start();
        let env = Env::new(&config_with(&subscription("hook", &rx.url("/hook"), "")))
            .env("SECRET_HOOK", "s");
        emit_plan(&env, "SPEC-LOG").expect(0);
        let log = env.evidence("SPEC-LOG").join("attempts.jsonl");
        make(kind, &log);
        let run = env.run(&["drain"]);
        assert_eq!(run.code, 1, "{kind}: exit\nstderr:\n{}", run.stderr);
        assert!(
            run.stderr
                .contains("refusing to append to the evidence log")
                && run.stderr.contains("not a regular file")
                && run.stderr.contains("stays pending"),
            "{kind}: the drain says why\n{}",
            run.stderr
        );
        assert_eq!(rx.requests().len(), 0, "{kind}: nothing was sent");
        assert_eq!(
            env.job_files("SPEC-LOG", "pending").len(),
            1,
            "{kind}: the job stays pending"
        );
        assert!(env.job_files("SPEC-LOG", "delivered").is_empty());
        assert_eq!(
            std::fs::read(&elsewhere).unwrap(),
            b"",
            "nothing written through the symlink"
        );
    }
}

#[test]
fn history_status_report_and_metrics_refuse_a_fifo_or_symlinked_log_without_hanging() {
    for (kind, is) in [
        ("fifo", "not a regular file"),
        ("/dev/zero", "symbolic link"),
    ] {
        let env = ops_env("");
        // A readable older log beside the bad current one.
        write_log(
            &env,
            SPEC,
            "attempts.jsonl.1",
            &[attempt(
                SPEC,
                "slack",
                1_000,
                Outcome::Delivered,
                Some(200),
                Some(3),
            )],
        );
        make(kind, &env.evidence(SPEC).join("attempts.jsonl"));
        let page = env.path().join("report.html");
        let page = page.to_str().unwrap();
        for args in [
            vec!["history", SPEC, "--format", "jsonl"],
            vec!["history", "--format", "jsonl"],
            vec!["status"],
            vec!["report", "--output", page],
            vec!["metrics"],
        ] {
            let mut cmd = env.cmd(&args);
            cmd.process_group(0)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            let what = format!("{kind}: {}", command_line(&cmd));
            let run = Spawned::new(cmd.spawn().unwrap()).wait_output(READER_CEILING, &what);
            assert!(
                run.stderr.contains("attempts.jsonl") && run.stderr.contains(is),
                "{what}: says which file and why\n{}",
                run.stderr
            );
            if args[0] == "history" {
                assert_eq!(run.code, 1, "{what}: a log not read is a failure");
                assert_eq!(run.lines().len(), 1, "{what}: the readable log still shows");
            } else {
                assert_eq!(run.code, 0, "{what}\n{}", run.stderr);
            }
        }
    }
}

#[test]
fn an_over_long_line_is_skipped_with_a_warning_and_the_records_around_it_show() {
    let env = ops_env("");
    let record = |ts| attempt(SPEC, "slack", ts, Outcome::Delivered, Some(200), Some(3));
    write_log(&env, SPEC, "attempts.jsonl", &[record(1_000)]);
    let log = env.evidence(SPEC).join("attempts.jsonl");
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    // A record-shaped line of 2 MiB: past the 1 MiB a line may be.
    let mut long = record(2_000);
    long.response_body = Some("x".repeat(2 * 1024 * 1024));
    file.write_all(serde_json::to_string(&long).unwrap().as_bytes())
        .unwrap();
    file.write_all(b"\n").unwrap();
    drop(file);
    write_log(&env, SPEC, "attempts.jsonl", &[record(3_000)]);
    let run = env.run(&["history", SPEC, "--format", "jsonl"]).expect(0);
    let shown: Vec<u64> = run
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<Record>(l).unwrap().ts_ms)
        .collect();
    assert_eq!(shown, [1_000, 3_000]);
    assert!(
        run.stderr
            .contains("skipped 1 line longer than 1048576 bytes (1 MiB) in the attempt log"),
        "{}",
        run.stderr
    );
}

/// What a run measured: exit code, stdout bytes and lines, stderr, and
/// the peak resident set size of that process alone (from `wait4`).
pub struct Measured {
    pub code: i32,
    pub stdout_lines: usize,
    pub stderr: String,
    pub max_rss_kib: i64,
}

/// Runs `cmd`, counting its output without keeping it, and measures its
/// peak RSS; kills it after `ceiling`. It is reaped by `wait4` (which
/// alone tells one child's peak RSS), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn measure(mut cmd: Command, ceiling: Duration) -> Measured {
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut lines = 0;
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return lines,
                Ok(n) => lines += buf[..n].iter().filter(|&&b| b == b'\n').count(),
            }
        }
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let (status, usage) = loop {
        let mut status = 0;
        // SAFETY: wait4 writes only `status` and `usage`.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if got == pid {
            break (status, usage);
        }
        if started.elapsed() > ceiling {
            let _ = rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(pid).unwrap(),
                rustix::process::Signal::KILL,
            );
            panic!("gave up after {ceiling:?} waiting for the command to exit; killed it");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Measured {
        code: if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -1
        },
        stdout_lines: lines.join().unwrap(),
        stderr: err.join().unwrap(),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// Writes `count` copies of `line` (a newline added) to `path`, fast.
fn write_lines(path: &Path, line: &str, count: usize) {
    let mut chunk = String::new();
    for _ in 0..64 {
        chunk.push_str(line);
        chunk.push('\n');
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for _ in 0..count / 64 {
        file.write_all(chunk.as_bytes()).unwrap();
    }
    file.flush().unwrap();
}

/// Under this peak RSS `history` must stay, whatever the log's size.
const RSS_BOUND_KIB: i64 = 64 * 1024;

#[test]
fn history_of_a_200_mb_log_and_its_rotated_sibling_stays_in_bounded_memory() {
    let env = ops_env("");
    let mut big = attempt(SPEC, "slack", 1_000, Outcome::Retry, Some(503), Some(40));
    big.response_body = Some("busy ".repeat(400)); // 2 KiB, as the drain keeps
    let line = serde_json::to_string(&big).unwrap();
    let per_file = 100 * 1024 * 1024 / line.len() / 64 * 64;
    let dir = env.evidence(SPEC);
    std::fs::create_dir_all(&dir).unwrap();
    write_lines(&dir.join("attempts.jsonl.1"), &line, per_file);
    write_lines(&dir.join("attempts.jsonl"), &line, per_file);
    // A second SPEC: without a SPEC, history merges the logs by time.
    write_log(
        &env,
        "SPEC-SMALL",
        "attempts.jsonl",
        &[attempt(
            "SPEC-SMALL",
            "slack",
            500,
            Outcome::Delivered,
            Some(200),
            Some(3),
        )],
    );
    for args in [
        vec!["history", SPEC, "--format", "jsonl"],
        vec!["history", "--format", "csv"],
    ] {
        let run = measure(env.cmd(&args), Duration::from_secs(300));
        assert_eq!(run.code, 0, "{args:?}\n{}", run.stderr);
        let expected = 2 * per_file + usize::from(args.len() == 3) * 2;
        assert_eq!(run.stdout_lines, expected, "{args:?}: every record");
        assert!(
            run.max_rss_kib < RSS_BOUND_KIB,
            "{args:?}: peak RSS {} KiB over {RSS_BOUND_KIB} KiB for {} MB of log",
            run.max_rss_kib,
            2 * per_file * (line.len() + 1) / 1_000_000
        );
        eprintln!(
            "{args:?}: {} records, peak RSS {} KiB",
            run.stdout_lines, run.max_rss_kib
        );
    }
}
