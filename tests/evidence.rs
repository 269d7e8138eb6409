//! The evidence footprint cap (`max_evidence_bytes`) as real drains apply
//! it: the oldest delivered jobs go first, then the oldest rotated logs,
//! whole and in order; pending and dead jobs are never pruned.

use std::path::PathBuf;

use crate::support::receiver::{Receiver, Reply};
use crate::support::*;

/// The smallest cap the config accepts; a log rotates at a quarter of it.
const CAP: u64 = 64 * 1024;
const SPEC: &str = "SPEC-CAP";
const EVENTS: u64 = 10;
/// Logs start to go after about 7 rounds of 10 events; rounds stop one
/// round after that, or here.
const MAX_ROUNDS: u64 = 30;

/// The attempt logs, oldest first: `attempts.jsonl.N` … `.1`, then the current one.
fn log_files(env: &Env) -> Vec<PathBuf> {
    let dir = env.evidence(SPEC);
    let mut rotated: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?.strip_prefix("attempts.jsonl.")?;
            Some((n.parse().ok()?, p))
        })
        .collect();
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().rev().map(|(_, p)| p).collect();
    files.push(dir.join("attempts.jsonl"));
    files
}

fn log_lines(env: &Env) -> Vec<String> {
    log_files(env)
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

fn bytes(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// The sequence numbers of a state's jobs, oldest first.
fn sequences(env: &Env, state: &str) -> Vec<u64> {
    env.jobs(SPEC, state)
        .iter()
        .map(|(meta, _)| meta["sequence"].as_u64().unwrap())
        .collect()
}

#[test]
fn the_cap_prunes_old_delivered_jobs_then_old_logs_never_pending_or_dead() {
    let rx = Receiver::start();
    rx.script(
        "/bad",
        vec![Reply::Status(400); (MAX_ROUNDS * EVENTS) as usize],
    );
    let tables = [
        subscription("ok", &rx.url("/ok"), ""),
        subscription("bad", &rx.url("/bad"), ""),
        // Refused, then a 10-minute backoff: its jobs stay pending.
        subscription("down", "http://127.0.0.1:1/", "initial_backoff_ms = 600000"),
    ]
    .concat();
    let config = format!(
        "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nmax_evidence_bytes = {CAP}\n\n{tables}"
    );
    let env = Env::new(&config)
        .env("SECRET_OK", "s")
        .env("SECRET_BAD", "s")
        .env("SECRET_DOWN", "s");
    let batch = format!(
        "{{\"event\":{{\"type\":\"spec-auto.stage.completed\"}},\"spec\":{{\"id\":\"{SPEC}\"}}}}\n"
    )
    .repeat(EVENTS as usize);

    let mut lines_before: Vec<String> = Vec::new();
    let (mut delivered_pruned, mut logs_pruned_in) = (false, None);
    for round in 1..=MAX_ROUNDS {
        if logs_pruned_in.is_some_and(|r| r < round - 1) {
            break;
        }
        env.run_with_stdin(&["emit", "--input", "-"], batch.as_bytes())
            .expect(0);
        env.run(&["drain", "--once"]).expect(0);
        let emitted = round * EVENTS; // every event has one job per subscription
        let all: Vec<u64> = (1..=emitted).collect();
        assert_eq!(
            sequences(&env, "dead"),
            all,
            "round {round}: dead jobs kept"
        );
        assert_eq!(
            sequences(&env, "pending"),
            all,
            "round {round}: pending jobs kept"
        );

        let delivered = sequences(&env, "delivered");
        let newest: Vec<u64> = (emitted - delivered.len() as u64 + 1..=emitted).collect();
        assert_eq!(
            delivered, newest,
            "round {round}: the oldest delivered jobs went first"
        );
        delivered_pruned |= (delivered.len() as u64) < emitted;

        let footprint = bytes(&log_files(&env)) + bytes(&env.job_files(SPEC, "delivered"));
        assert!(
            footprint <= CAP,
            "round {round}: footprint {footprint} over the cap"
        );

        // The logs lose whole lines from the front only: what is left of
        // the last round's lines comes first, in order, then the new ones.
        let lines = log_lines(&env);
        let cut = lines_before
            .iter()
            .position(|l| *l == lines[0])
            .unwrap_or(lines_before.len());
        let kept = &lines_before[cut..];
        assert!(
            lines.starts_with(kept),
            "round {round}: only the oldest records went"
        );
        if cut > 0 {
            logs_pruned_in.get_or_insert(round);
            assert!(
                delivered.is_empty(),
                "round {round}: a log went while delivered jobs {delivered:?} stayed"
            );
        }
        lines_before = lines;
    }
    assert!(
        delivered_pruned && logs_pruned_in.is_some(),
        "the rounds must reach both kinds of pruning for this test to mean anything"
    );
}
