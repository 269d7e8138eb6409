//! The drain engine: a continuous scheduler feeding a pool of workers.
//!
//! - [`scheduler`] (pure) decides which waiting job goes next: one queue
//!   across every SPEC this drain serves, round-robin across subscriptions,
//!   `max_in_flight` per subscription, rates, the circuit breaker's gate,
//!   `max_age`; and it holds a bounded active set (`max_active_jobs`).
//! - [`queue`] is the backend: the local spool ([`queue::SpoolQueue`]).
//! - `drainer` holds a run's settings and routes (which subscription, as in
//!   effect for the job's SPEC, a job goes to), its time line and its file
//!   descriptor plan; `run` what a run is given and gives back
//!   ([`Options`], [`Stop`], [`Event`], [`Summary`]).
//! - `job` is one job's whole path, top to bottom: claim, route, attempt,
//!   log, settle, breaker update; it returns what became of the job.
//!   [`attempt`] is the attempt itself: sign, send, decide, record.
//! - `pool` is the workers: a thread per worker each takes the next job
//!   from the shared scheduler the moment it is free (no batches, no
//!   barrier, no round trip through a dispatcher) and folds what became of
//!   it into the run.
//! - `coordinator` is the shell ([`Drainer::run`], [`Drainer::run_on`]): it
//!   looks at the queue every [`POLL`] (less often with a big backlog or
//!   nothing to do), or at once when the queue tells of new jobs (inotify),
//!   lets go of SPECs it has nothing of, and ends the run. Events are
//!   reported through a callback (the command layer prints).
//! - [`fds`] sizes what a run holds from its descriptor limit; [`duty`]
//!   carries the duty lock a background drain inherits from emit.
//!
//! Waits (backoff, circuit cool-downs, rate spacing) run on the drain's own
//! time line (`clock::Steady`, the monotonic clock): a wall-clock step never
//! delays a job by more than its own wait.
//!
//! Lost wake-ups. One drain at a time is on duty for the whole spool (it
//! holds `<spool_dir>/.drain.alive`): it watches the spool root and every
//! SPEC's pending/ (inotify), so it hears of every job renamed into a
//! pending/ folder (how emit, replay and requeues add jobs), and sweeps
//! every folder slowly anyway. Emit starts a drain only when none is on
//! duty, taking the duty lock itself and handing it to the drain it starts:
//! an emit that sees a drain on duty made its jobs durable before it
//! looked, and that drain is watching, or took duty after the jobs were
//! there and lists every folder when it starts. A drain on duty that lets
//! go (a one-shot run ending) looks once more after it let go: a job that
//! arrived in between is handed to a new drain (`Summary::left_due`). A
//! SPEC is served (its drain.alive held, so that only one drain claims its
//! jobs) only while it has work; a drain that lets go of a SPEC lists its
//! pending/ once more, and serves it again for a job that arrived, or
//! hands it over when the run is over. A SPEC another drain serves is
//! tried again every second while it has work.

pub mod attempt;
mod coordinator;
mod drainer;
pub mod duty;
pub mod fds;
mod job;
mod pool;
pub mod queue;
mod run;
pub mod scheduler;

pub use drainer::{Drainer, limits_for};
pub use run::{Event, Options, POLL, Signal, Stop, Summary};

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock;
    use crate::config::Config;
    use crate::evidence::Outcome;
    use crate::spool::{Job, Meta};

    /// A config with its spool and evidence under `dir` and one subscription.
    pub(super) fn config_with(dir: &std::path::Path, subscription: &str) -> Config {
        let text = format!(
            "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n[[spec_ops.webhooks.subscriptions]]\n{subscription}",
            dir.display()
        );
        crate::config::parse(&text, &dir.join("config.toml")).unwrap()
    }

    /// Subscription `dry`: logs, never sends.
    pub(super) fn config(dir: &std::path::Path) -> Config {
        config_with(
            dir,
            "id = \"dry\"\nurl = \"https://example.com/hook\"\nsecret_env = \"UNSET_FOR_DRY_RUN\"\ndry_run = true\n",
        )
    }

    pub(super) fn spool_jobs(config: &Config, n: u64) -> Vec<String> {
        let subscription = &config.subscriptions[0].id;
        let spool = crate::spool::Spool::new(&config.spool_dir).spec("S");
        let jobs: Vec<Job> = (1..=n)
            .map(|seq| Job {
                meta: Meta::new("S", subscription, "a.b.c", "k", seq, clock::now_ms()),
                body: b"{}".to_vec(),
            })
            .collect();
        spool.enqueue(&jobs).unwrap();
        jobs.into_iter().map(|j| j.meta.delivery_id).collect()
    }

    #[test]
    fn only_a_run_for_some_ids_keeps_each_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let ids = spool_jobs(&config, 3);
        let once = Options {
            once: true,
            max_time: Duration::from_secs(60),
            ..Options::default()
        };
        let summary = Drainer::new(&config, once.clone(), Stop::default())
            .run(&mut |_| {})
            .unwrap();
        assert_eq!(summary.dry_run, 3);
        assert!(summary.outcomes.is_empty(), "a plain run keeps no ids");

        let more = spool_jobs(&config, 2);
        let only = Options {
            only: Some(more.iter().cloned().collect()),
            ..once
        };
        let summary = Drainer::new(&config, only, Stop::default())
            .run(&mut |_| {})
            .unwrap();
        assert_eq!(summary.outcomes.len(), 2);
        assert!(
            more.iter()
                .all(|id| summary.outcomes[id] == Outcome::DryRun)
        );
        assert!(!summary.outcomes.contains_key(&ids[0]));
    }
}
