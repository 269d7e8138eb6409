//! One job's whole path through a worker, top to bottom in [`handle`]:
//! claim, route, attempt ([`super::attempt`]: sign, send, decide, record),
//! log, settle, and tell the circuit breaker. It returns what became of the
//! job ([`Handled`]); the pool folds that into the run. No shared state
//! and no locks here: the queue backend and the drainer's routes only.

use crate::circuit::{self, BreakerPolicy, Circuit, Transition};
use crate::clock;
use crate::evidence::{Outcome, Record};
use crate::spool::{Meta, Quarantined, SettleError};

use super::attempt::{self, Route};
use super::drainer::{Drainer, limits_for};
use super::fds::RESERVE;
use super::queue::{Claimed, Queue};
use super::scheduler::{Kind, Pick};

/// One job handed to a worker.
pub(super) struct Work {
    pub pick: Pick,
    /// The subscription's circuit is closed with no failures: a success
    /// needs no state update.
    pub clean: bool,
    /// The circuit as this drain claimed the probe (`Kind::Probe` only).
    pub probing: Option<Circuit>,
}

/// What became of one job.
pub(super) struct Handled {
    pub pick: Pick,
    pub left: Left,
    /// The job's evidence lines, in order.
    pub records: Vec<Record>,
    /// The circuit or pause change its answer caused (logged).
    pub transition: Option<(Transition, Circuit)>,
    /// The subscription's circuit as the breaker update left it, changed by
    /// this answer or not: another drain may have opened it meanwhile, and
    /// this drain must stop sending at once, not at its next look.
    pub circuit: Option<Circuit>,
    /// What went wrong on the way, in order: reported, and the run goes on.
    pub errors: Vec<anyhow::Error>,
    /// When its next attempt is due on the run's time line, if this run
    /// decided it (a retry): measured from the decision, so a wall-clock
    /// step during the request changes nothing.
    pub due: Option<u64>,
}

/// Where a job was left.
pub(super) enum Left {
    /// Not taken: someone else took it first, or the claim failed.
    Untaken,
    /// Not claimed, not sent: an earlier job of its FIFO line is in the
    /// way (still pending, or dead and holding the line).
    Blocked(super::queue::Blocker),
    /// Not claimed, not sent: the descriptors its outcome would need were
    /// not there. Still pending; the engine offers it again shortly.
    NotSent,
    /// Not claimed, not sent: its outcome could not be logged (the attempt
    /// log is not a regular file, or cannot be opened). Still pending; the
    /// drain takes no more jobs.
    Unrecordable,
    /// The file was not a job and is in quarantine now.
    Quarantined(Quarantined),
    /// Where its metadata says: settled, or back in pending unchanged
    /// because its subscription cannot send now.
    In(Box<Meta>),
    /// Settling failed; the job is back in pending unchanged.
    Requeued,
    /// Settling or holding it failed, and so did putting it back: it stays
    /// in active/ until a drain recovers it.
    Active,
}

impl Handled {
    fn new(pick: Pick, left: Left) -> Handled {
        Handled {
            pick,
            left,
            records: Vec::new(),
            transition: None,
            circuit: None,
            errors: Vec::new(),
            due: None,
        }
    }

    fn failed(pick: Pick, left: Left, error: anyhow::Error) -> Handled {
        Handled {
            errors: vec![error],
            ..Handled::new(pick, left)
        }
    }

    /// Everything that went wrong, as one message.
    pub fn error(&self) -> Option<String> {
        let messages: Vec<String> = self.errors.iter().map(|e| format!("{e:#}")).collect();
        (!messages.is_empty()).then(|| messages.join("; "))
    }

    /// Whether something failed for a full disk (ENOSPC, EDQUOT): outcomes
    /// cannot be recorded.
    pub fn disk_full(&self) -> bool {
        self.errors
            .iter()
            .any(|e| has_errno(e, &[libc::ENOSPC, libc::EDQUOT]))
    }

    /// Whether something failed for want of file descriptors (EMFILE,
    /// ENFILE): the drain should take fewer jobs at once, not stop.
    pub fn out_of_descriptors(&self) -> bool {
        self.errors
            .iter()
            .any(|e| has_errno(e, &[libc::EMFILE, libc::ENFILE]))
    }
}

/// A worker's whole job: claim, route, attempt, log, settle, and tell the
/// breaker. Runs on a worker thread.
pub(super) fn handle<Q: Queue>(drainer: &Drainer<'_>, queue: &Q, work: Work) -> Handled {
    let Work {
        pick,
        clean,
        probing,
    } = work;
    let key = pick.job.key.clone();

    // The attempt log must take the outcome: a request whose outcome
    // cannot be recorded is never sent (it would be sent again and again).
    if let Err(e) = queue.ready_to_log(&key.spec) {
        let left = match has_errno(&e, &[libc::EMFILE, libc::ENFILE]) {
            true => Left::NotSent,
            false => Left::Unrecordable,
        };
        return Handled::failed(pick, left, e);
    }

    // The descriptors that logging and settling the outcome need, before
    // the job is claimed and sent; given back just before those steps.
    let Some(reserve) = drainer.reserves.take(RESERVE) else {
        return Handled::new(pick, Left::NotSent);
    };

    // A FIFO line: nothing goes while an earlier job of it is still there.
    let ordering = drainer.ordering_of(&pick.job.subscription);
    let blocked = match ordering {
        _ if pick.kind == Kind::Expire || !ordering.is_fifo() => Ok(None),
        _ => queue.fifo_blocker(
            &key,
            &pick.job.subscription,
            pick.job.sequence,
            ordering.holds_on_dead(),
        ),
    };

    // Claim.
    let claimed = match blocked {
        Ok(None) => match queue.claim(&key) {
            Ok(claimed) => claimed,
            Err(e) => return Handled::failed(pick, Left::Untaken, e),
        },
        Ok(Some(blocker)) => {
            if probing.is_some() {
                give_back_probe(queue, &pick.job.subscription);
            }
            return Handled::new(pick, Left::Blocked(blocker));
        }
        Err(e) => return Handled::failed(pick, Left::Untaken, e),
    };
    if !matches!(claimed, Claimed::Job(_)) && probing.is_some() {
        // The probe's job is gone: give the probe back at once instead
        // of holding it until its timeout.
        let given_back = queue.update_circuit(&pick.job.subscription, &mut |c| {
            c.probe_until_ms = None;
            None
        });
        if let Err(e) = given_back {
            return Handled::failed(pick, Left::Untaken, e);
        }
    }
    let mut job = match claimed {
        Claimed::Job(job) => *job,
        Claimed::Gone => return Handled::new(pick, Left::Untaken),
        Claimed::Quarantined(q) => return Handled::new(pick, Left::Quarantined(q)),
    };

    // Route, then attempt (or dead-letter, dry-run, hold).
    let sub_id = job.meta.subscription.clone();
    let routed = drainer.routed(&job.meta);
    let route = routed.as_deref().map(|r| &r.route);
    let url = routed
        .as_deref()
        .map(|r| r.shown_url.as_str())
        .unwrap_or_default();
    let mut records = Vec::new();
    let mut signal = None;
    let mut due = None;
    let mut probe_logged = Ok(());
    let record = match (pick.kind, route) {
        (Kind::Expire, _) => {
            let max_age = limits_for(drainer.config, route.and_then(Route::sub)).max_age_ms;
            let waited = drainer.time.now().saturating_sub(pick.job.seen_ms);
            if job.meta.attempts == 0 && job.meta.seen_at_ms.is_none() && waited < max_age {
                // Never attempted, and older than max_age only by the clock
                // of whoever queued it (a runner days behind): its age now
                // counts from when this drain first saw it, and it is sent.
                drop(reserve);
                job.meta.seen_at_ms = Some(drainer.time.to_wall(pick.job.seen_ms));
                return match queue.settle(&key, &job).map_err(SettleError::of) {
                    Ok(()) | Err(SettleError::After(_)) => {
                        Handled::new(pick, Left::In(Box::new(job.meta)))
                    }
                    Err(SettleError::Before(e)) => {
                        let left = match queue.requeue(&key) {
                            Ok(()) => Left::Requeued,
                            Err(_) => Left::Active,
                        };
                        Handled::failed(pick, left, e)
                    }
                };
            }
            attempt::give_up(&mut job, "expired", url.to_string(), max_age)
        }
        (_, None) => attempt::give_up(&mut job, "subscription-removed", url.to_string(), 0),
        (_, Some(Route::Hold)) => {
            return match queue.requeue(&key) {
                Ok(()) => Handled::new(pick, Left::In(Box::new(job.meta))),
                Err(e) => Handled::failed(pick, Left::Active, e),
            };
        }
        (_, Some(Route::DryRun { sub })) => attempt::dry_run(&mut job, sub, url),
        (_, Some(Route::Send { sub, signer })) => {
            if let Some(circuit) = &probing {
                // The probe's evidence line, before it goes out.
                let now = clock::now_ms();
                let record = transition_record(&job.meta, &Transition::Probing, circuit, now);
                probe_logged = queue.log(&job.meta.spec, std::slice::from_ref(&record));
                records.push(record);
            }
            let agent = drainer.agents.for_subscription(sub);
            let attempted = attempt::attempt(agent, &mut job, sub, url, signer.as_deref());
            signal = Some((attempted.signal, sub.breaker));
            // The wait the decision just made, on the run's time line.
            let wait = job.meta.next_attempt_at_ms.saturating_sub(clock::now_ms());
            due = Some(drainer.time.now().saturating_add(wait));
            attempted.record
        }
    };
    drop(reserve);

    // Log: evidence first, so a crash before settling repeats the attempt
    // and the log shows both.
    let logged = queue
        .log(&job.meta.spec, std::slice::from_ref(&record))
        .and(probe_logged);
    records.push(record);

    // Settle.
    let mut errors = Vec::new();
    match queue.settle(&key, &job).map_err(SettleError::of) {
        Ok(()) => {}
        // Settled, then a later step failed: reported, never requeued
        // (the job would be both settled and pending, and sent again).
        Err(after @ SettleError::After(_)) => errors.push(after.into()),
        Err(SettleError::Before(e)) => {
            // Put the job back as it was, so it is tried again (sent again
            // if this attempt got through: at-least-once); if even that
            // fails it stays in active/ until a drain recovers it.
            let left = match queue.requeue(&key) {
                Ok(()) => Left::Requeued,
                Err(_) => Left::Active,
            };
            errors.push(e);
            return Handled {
                pick,
                left,
                records,
                transition: None,
                circuit: None,
                errors,
                due: None,
            };
        }
    }

    // Tell the breaker what the answer says about the endpoint.
    let mut transition = None;
    let mut latest = None;
    if let Some((signal, policy)) = signal {
        let probe = pick.kind == Kind::Probe;
        let needed = !(clean && !probe && signal == circuit::Signal::Alive);
        if needed {
            match record_signal(queue, &job.meta, &sub_id, &signal, probe, &policy) {
                Ok((changed, circuit)) => {
                    if let Some((record, changed)) = changed {
                        records.push(record);
                        transition = Some(changed);
                    }
                    latest = Some(circuit);
                }
                Err(e) => {
                    errors.push(e);
                    return Handled {
                        pick,
                        left: Left::In(Box::new(job.meta)),
                        records,
                        transition: None,
                        circuit: None,
                        errors,
                        due,
                    };
                }
            }
        }
    }
    errors.extend(logged.err());
    Handled {
        pick,
        left: Left::In(Box::new(job.meta)),
        records,
        transition,
        circuit: latest,
        errors,
        due,
    }
}

/// A circuit or pause change, with its evidence line.
type Changed = (Record, (Transition, Circuit));

/// Records an answer's signal in the subscription's shared circuit; a
/// transition it causes is logged on the job, and returned with its line;
/// and the circuit as it is now.
fn record_signal<Q: Queue>(
    queue: &Q,
    meta: &Meta,
    subscription: &str,
    signal: &circuit::Signal,
    probe: bool,
    policy: &BreakerPolicy,
) -> anyhow::Result<(Option<Changed>, Circuit)> {
    let now = clock::now_ms();
    let (transition, circuit) =
        queue.update_circuit(subscription, &mut |c| c.record(signal, probe, policy, now))?;
    let Some(t) = transition else {
        return Ok((None, circuit));
    };
    let record = transition_record(meta, &t, &circuit, now);
    queue.log(&meta.spec, std::slice::from_ref(&record))?;
    Ok((Some((record, (t, circuit.clone()))), circuit))
}

/// The evidence line of a circuit or pause change, on the job that caused it.
/// Gives back a probe claimed for a job that did not go: the next job may
/// probe at once instead of when the claim runs out (which it does anyway
/// if this fails).
fn give_back_probe<Q: Queue>(queue: &Q, subscription: &str) {
    let _ = queue.update_circuit(subscription, &mut |c| {
        c.probe_until_ms = None;
        None
    });
}

fn transition_record(meta: &Meta, t: &Transition, circuit: &Circuit, now: u64) -> Record {
    let outcome = match t {
        Transition::Opened { .. } => Outcome::CircuitOpen,
        Transition::Probing => Outcome::CircuitProbe,
        Transition::Closed => Outcome::CircuitClosed,
        Transition::Paused { .. } => Outcome::SubscriptionPaused,
        Transition::Resumed => Outcome::SubscriptionResumed,
    };
    let mut record = Record::for_job(meta, String::new(), 0, now, outcome);
    record.error = Some(circuit.describe(clock::rfc3339));
    if let Transition::Opened {
        next_probe_at_ms, ..
    } = t
    {
        record.next_attempt_at = Some(clock::rfc3339(*next_probe_at_ms));
    }
    record
}

/// Whether an error comes from one of these `errno` values.
fn has_errno(e: &anyhow::Error, codes: &[i32]) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| codes.contains(&code))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use anyhow::Result;

    use super::*;
    use crate::circuit::Transition;
    use crate::config::Config;
    use crate::drain::queue::{Changes, SpoolQueue};
    use crate::drain::scheduler::{JobKey, Waiting};
    use crate::drain::tests::{config, config_with, spool_jobs};
    use crate::drain::{Drainer, Options, Stop};
    use crate::spool::{Job, Spool, State};

    /// The first waiting job of `queue`, handed out as a plain send.
    fn first_work<Q: Queue>(queue: &Q) -> Work {
        let (key, meta) = queue.refresh().unwrap().added.remove(0);
        Work {
            pick: Pick {
                job: Waiting {
                    key,
                    subscription: meta.subscription.clone(),
                    due_at_ms: 0,
                    sequence: meta.sequence,
                    created_at_ms: 0,
                    seen_ms: 0,
                },
                kind: Kind::Send,
            },
            clean: true,
            probing: None,
        }
    }

    #[test]
    fn a_job_that_went_its_whole_way_is_left_where_its_metadata_says() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        spool_jobs(&config, 1);
        let queue = SpoolQueue::new(&config, None);
        let drainer = Drainer::new(&config, Options::default(), Stop::default());
        let handled = handle(&drainer, &queue, first_work(&queue));
        let Left::In(meta) = &handled.left else {
            panic!("left elsewhere")
        };
        assert_eq!(meta.state, State::Delivered);
        assert_eq!(handled.records.len(), 1);
        assert_eq!(handled.records[0].outcome, Outcome::DryRun);
        assert!(handled.error().is_none() && handled.transition.is_none());
        let spool = Spool::new(&config.spool_dir).spec("S");
        assert_eq!(spool.count(State::Delivered).unwrap(), 1);
    }

    #[test]
    fn a_settle_that_fails_before_its_rename_puts_the_job_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        spool_jobs(&config, 1);
        let queue = SpoolQueue::new(&config, None);
        let work = first_work(&queue);
        // delivered/ is a file: the settled copy cannot be written.
        let spool = Spool::new(&config.spool_dir).spec("S");
        std::fs::remove_dir(spool.state_dir(State::Delivered)).unwrap();
        std::fs::write(spool.state_dir(State::Delivered), b"").unwrap();
        let drainer = Drainer::new(&config, Options::default(), Stop::default());
        let handled = handle(&drainer, &queue, work);
        assert!(matches!(handled.left, Left::Requeued));
        assert_eq!(handled.records.len(), 1, "the attempt was logged");
        let error = handled.error().unwrap();
        assert!(error.contains("delivered"), "{error}");
        assert!(!error.contains("the job is settled"), "{error}");
        assert_eq!(spool.count(State::Pending).unwrap(), 1);
        assert_eq!(spool.count(State::Active).unwrap(), 0);
    }

    #[test]
    fn a_settle_that_fails_after_its_rename_leaves_the_job_settled_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        spool_jobs(&config, 1);
        let queue = FailsAfterSettle(SpoolQueue::new(&config, None), &config, None);
        let drainer = Drainer::new(&config, Options::default(), Stop::default());
        let handled = handle(&drainer, &queue, first_work(&queue));
        let Left::In(meta) = &handled.left else {
            panic!("left elsewhere")
        };
        assert_eq!(meta.state, State::Delivered);
        let error = handled.error().unwrap();
        assert!(
            error.starts_with("the job is settled") && error.ends_with("injected: fsync failed"),
            "{error}"
        );
        assert!(!handled.disk_full());
    }

    /// The local spool, except that settles fail as if syncing the folder
    /// failed (every one, or only the first with `once`): the settled copy
    /// is in place, the active one too.
    struct FailsAfterSettle<'a>(SpoolQueue<'a>, &'a Config, Option<AtomicBool>);

    impl Queue for FailsAfterSettle<'_> {
        fn refresh(&self) -> Result<Changes> {
            self.0.refresh()
        }
        fn claim(&self, key: &JobKey) -> Result<Claimed> {
            self.0.claim(key)
        }
        fn settle(&self, key: &JobKey, job: &Job) -> Result<()> {
            self.0.settle(key, job)?;
            if self
                .2
                .as_ref()
                .is_some_and(|done| done.swap(true, Ordering::SeqCst))
            {
                return Ok(());
            }
            let spool = crate::spool::Spool::new(&self.1.spool_dir).spec(&key.spec);
            std::fs::write(spool.state_dir(State::Active).join(&key.name), job.encode())?;
            Err(SettleError::After(anyhow::anyhow!("injected: fsync failed")).into())
        }
        fn requeue(&self, key: &JobKey) -> Result<()> {
            self.0.requeue(key)
        }
        fn log(&self, spec: &str, records: &[Record]) -> Result<()> {
            self.0.log(spec, records)
        }
        fn ready_to_log(&self, spec: &str) -> Result<()> {
            self.0.ready_to_log(spec)
        }
        fn circuit(&self, subscription: &str) -> Result<Circuit> {
            self.0.circuit(subscription)
        }
        fn update_circuit(
            &self,
            subscription: &str,
            change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
        ) -> Result<(Option<Transition>, Circuit)> {
            self.0.update_circuit(subscription, change)
        }
        fn release(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>> {
            self.0.release(spec)
        }
        fn trim(&self, spec: &str) -> Result<()> {
            self.0.trim(spec)
        }
        fn served(&self) -> Vec<String> {
            self.0.served()
        }
        fn can_record(&self) -> bool {
            self.0.can_record()
        }
    }

    #[test]
    fn a_settle_that_fails_after_its_rename_is_not_put_back_in_pending() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        spool_jobs(&config, 1);
        let options = Options {
            once: true,
            max_time: Duration::from_secs(60),
            ..Options::default()
        };
        let queue = FailsAfterSettle(SpoolQueue::new(&config, None), &config, None);
        let summary = Drainer::new(&config, options.clone(), Stop::default())
            .run_on(&queue, &mut |_| {})
            .unwrap();
        assert_eq!(summary.dry_run, 1);
        assert!(
            summary.errors[0].contains("injected"),
            "{:?}",
            summary.errors
        );
        let spool = crate::spool::Spool::new(&config.spool_dir).spec("S");
        assert_eq!(spool.count(State::Pending).unwrap(), 0, "not requeued");
        assert_eq!(spool.count(State::Delivered).unwrap(), 1);
        // The next drain drops the copy left in active/ and sends nothing.
        let again = Drainer::new(&config, options, Stop::default())
            .run(&mut |_| {})
            .unwrap();
        assert_eq!(again.dry_run, 0);
        assert_eq!(spool.count(State::Active).unwrap(), 0);
        assert_eq!(spool.count(State::Delivered).unwrap(), 1);
    }

    #[test]
    fn a_retry_whose_settle_failed_after_its_rename_is_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on port 1: every attempt fails at once and is
        // retried 100 ms later. PATH stands in for a secret that is set.
        let config = config_with(
            dir.path(),
            "id = \"down\"\nurl = \"http://127.0.0.1:1/hook\"\nsecret_env = \"PATH\"\nallow_private_networks = true\ninitial_backoff_ms = 100\njitter_ms = 0\n",
        );
        spool_jobs(&config, 1);
        let options = Options {
            max_time: Duration::from_secs(2),
            ..Options::default()
        };
        let queue = FailsAfterSettle(
            SpoolQueue::new(&config, None),
            &config,
            Some(AtomicBool::new(false)),
        );
        let summary = Drainer::new(&config, options, Stop::default())
            .run_on(&queue, &mut |_| {})
            .unwrap();
        assert!(summary.retrying >= 2, "tried once only: {summary:?}");
        assert!(
            summary
                .errors
                .iter()
                .all(|e| !e.contains("failed to claim")),
            "{:?}",
            summary.errors
        );
    }
}
