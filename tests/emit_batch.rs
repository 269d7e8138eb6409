//! `emit --input` batches bounded in memory and in jobs: a batch that
//! would take a SPEC past `max_spool_jobs` is refused with nothing written
//! unless `--shed-oldest` asks for the oldest to be dead-lettered, the
//! input is streamed (validated in one pass, written from its copy in
//! chunks), and spool-overflow dead-letters are pruned under
//! `max_evidence_bytes` like delivered jobs.

use std::time::Duration;

use crate::evidence_files::measure;
use crate::support::receiver::Receiver;
use crate::support::*;

const STAGE_DONE: &str = "spec-auto.stage.completed";

/// `n` events for `spec`, as JSON Lines.
fn events(spec: &str, n: usize) -> String {
    (0..n)
        .map(|_| {
            format!("{{\"event\":{{\"type\":\"{STAGE_DONE}\"}},\"spec\":{{\"id\":\"{spec}\"}}}}\n")
        })
        .collect()
}

fn bounded_env(extra: &str) -> Env {
    Env::new(
        &config_with(&subscription("a", "https://a.example/h", "")).replace(
            "auto_drain = false",
            &format!("auto_drain = false\n{extra}"),
        ),
    )
}

#[test]
fn a_batch_that_would_overflow_max_spool_jobs_is_refused_with_nothing_written() {
    let env = bounded_env("max_spool_jobs = 5");
    env.run_with_stdin(&["emit", "--input", "-"], events("S", 3).as_bytes())
        .expect(0);
    env.run_with_stdin(&["emit", "--input", "-"], events("T", 2).as_bytes())
        .expect(0);
    let before = env.snapshot();
    let batch = format!("{}{}", events("S", 3), events("T", 1));
    let run = env
        .run_with_stdin(&["emit", "--input", "-"], batch.as_bytes())
        .expect(2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for part in [
        "past max_spool_jobs = 5",
        "S: 3 pending + 3 new jobs = 6",
        "--shed-oldest",
        "nothing was spooled",
    ] {
        assert!(run.stderr.contains(part), "{part}:\n{}", run.stderr);
    }
    assert!(!run.stderr.contains("T:"), "T fits: {}", run.stderr);
    assert!(env.snapshot() == before, "nothing written");

    // Asked for: the oldest pending job is shed, as a single emit does.
    let run = env
        .run_with_stdin(&["emit", "--input", "-", "--shed-oldest"], batch.as_bytes())
        .expect(0);
    assert_eq!(run.lines().len(), 4);
    assert!(
        run.stderr
            .contains("S has more pending jobs than max_spool_jobs = 5: moved the 1 oldest"),
        "{}",
        run.stderr
    );
    let sequences = |state| -> Vec<u64> {
        env.jobs("S", state)
            .iter()
            .map(|(m, _)| m["sequence"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(sequences("dead"), [1]);
    assert_eq!(sequences("pending"), [2, 3, 4, 5, 6]);
    assert_eq!(env.jobs("S", "dead")[0].0["dead_reason"], "spool-overflow");

    // --shed-oldest means nothing without --input.
    let mut args = emit_plan_args("S");
    args.push("--shed-oldest");
    env.run(&args).expect(2);
}

#[test]
fn a_refused_batch_is_validated_streaming_in_bounded_memory() {
    // ~20 MB of tiny events: main held every one (about 1 GB).
    let env = bounded_env("");
    let input = env.path().join("events.jsonl");
    let count = 20_000_000 / events("S", 1).len();
    std::fs::write(&input, events("S", count)).unwrap();
    let run = measure(
        env.cmd(&["emit", "--input", input.to_str().unwrap()]),
        Duration::from_secs(300),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "S: 0 pending + {count} new jobs = {count} (max_spool_jobs = 10000)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.max_rss_kib < 64 * 1024,
        "peak RSS {} KiB for {count} events",
        run.max_rss_kib
    );
    eprintln!("{count} events validated, peak RSS {} KiB", run.max_rss_kib);
    assert!(env.job_files("S", "pending").is_empty());
}

#[test]
fn spool_overflow_dead_letters_are_pruned_under_max_evidence_bytes_oldest_first() {
    const CAP: u64 = 64 * 1024;
    let rx = Receiver::start();
    let env = Env::new(&config_with(&subscription("a", &rx.url("/a"), "")).replace(
        "auto_drain = false",
        &format!("auto_drain = false\nmax_spool_jobs = 5\nmax_evidence_bytes = {CAP}"),
    ))
    .env("SECRET_A", "s");
    env.run_with_stdin(
        &["emit", "--input", "-", "--shed-oldest"],
        events("S", 300).as_bytes(),
    )
    .expect(0);
    let dead_files = env.job_files("S", "dead");
    let bytes = |files: &[std::path::PathBuf]| -> u64 {
        files
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    assert_eq!(dead_files.len(), 295);
    assert!(
        bytes(&dead_files) > CAP,
        "set-up: the dead-letters pass the cap"
    );
    env.run(&["drain"]).expect(0);
    assert_eq!(rx.requests().len(), 5, "the pending jobs went out");
    let dead: Vec<u64> = env
        .jobs("S", "dead")
        .iter()
        .map(|(m, _)| m["sequence"].as_u64().unwrap())
        .collect();
    assert!(!dead.is_empty() && dead.len() < 295, "{} left", dead.len());
    let newest: Vec<u64> = (296 - dead.len() as u64..=295).collect();
    assert_eq!(dead, newest, "the oldest went first");
    let mut footprint = env.job_files("S", "dead");
    footprint.extend(env.job_files("S", "delivered"));
    let logs: Vec<std::path::PathBuf> = std::fs::read_dir(env.evidence("S"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("attempts.jsonl"))
        .collect();
    footprint.extend(logs);
    assert!(bytes(&footprint) <= CAP, "{} bytes", bytes(&footprint));
}
