//! The worker pool: the plan's workers (`max_concurrency`, fewer under a low
//! descriptor limit) are threads, each taking the next job
//! from the shared scheduler the moment it is free (no batches, no
//! barrier, no round trip through a dispatcher), handing it to
//! [`super::job::handle`], and folding what became of it into the run.
//! [`Shared`] is what the workers and the coordinator share: [`Core`] (the
//! scheduler and the run's bookkeeping, behind one mutex) and the condition
//! variables that wake either side.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::Result;

use crate::circuit::{Allow, Circuit};
use crate::clock;
use crate::spool::{Meta, State};

use super::scheduler::Admit;

use super::attempt::{Route, Routed};
use super::drainer::{Drainer, limits_for};
use super::job::{self, Handled, Left, Work};
use super::queue::{Changes, Queue};
use super::run::{Event, MAX_LOOK_EVERY, POLL, Summary};
use super::scheduler::{JobKey, Kind, Scheduler, Waiting};

/// One worker: take the next job, do it, report, repeat.
pub(super) fn worker<Q: Queue>(drainer: &Drainer<'_>, queue: &Q, shared: &Shared<'_>) {
    let mut finished: Option<Handled> = None;
    loop {
        let mut core = shared.lock();
        let mut just_finished = finished.is_some();
        if let Some(handled) = finished.take() {
            core.finish(drainer, queue, handled);
        }
        let work = loop {
            if core.exiting {
                return;
            }
            if core.accepting {
                let (back, taken) = Core::take(core, shared, drainer, queue);
                core = back;
                if let Some(work) = taken {
                    break work;
                }
            }
            if just_finished && core.in_flight == 0 {
                // The last request ended and nothing is to be taken:
                // the run may end. (Only then: a worker waking to find
                // nothing must not wake the coordinator, which would
                // wake the workers again.)
                shared.idle.notify_one();
            }
            just_finished = false;
            core.sleeping += 1;
            let nap = core.nap(drainer.time.now());
            core = shared
                .work
                .wait_timeout(core, nap)
                .map_or_else(|e| e.into_inner().0, |(c, _)| c);
            core.sleeping -= 1;
        };
        // Another job may be waiting for a sleeping worker.
        let more = core.sleeping > 0
            && core.in_flight < core.max_in_flight
            && core.sched.ready(drainer.time.now());
        drop(core);
        if more {
            shared.work.notify_one();
        }
        finished = Some(job::handle(drainer, queue, work));
    }
}

/// How soon a job that could not be sent for want of descriptors is tried
/// again (by then a request in flight has usually given its back).
const NOT_SENT_AGAIN: u64 = 200;
/// How soon a FIFO line that found an earlier job on disk looks again (the
/// job is read meanwhile, and its arrival ends the wait at once).
const FIFO_RECHECK: u64 = 1_000;
/// How often a FIFO line held by a dead job looks whether it is still there
/// (a replay ends the hold at once; a discard is seen this way).
const HOLD_RECHECK: u64 = 5_000;

/// What the coordinator and the workers share.
pub(super) struct Shared<'r> {
    pub core: Mutex<Core<'r>>,
    /// The queue told of new jobs: look now, not at the next poll.
    pub poked: AtomicBool,
    /// Wakes sleeping workers: new jobs, a freed share, the end of the run.
    pub work: Condvar,
    /// Wakes the coordinator: the last request in flight finished.
    pub idle: Condvar,
}

impl<'r> Shared<'r> {
    pub fn new(core: Core<'r>) -> Shared<'r> {
        Shared {
            core: Mutex::new(core),
            poked: AtomicBool::new(false),
            work: Condvar::new(),
            idle: Condvar::new(),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Core<'r>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scheduler and the run's bookkeeping, behind one mutex. Only the
/// holder reports events, so they are never interleaved.
pub(super) struct Core<'r> {
    pub sched: Scheduler,
    circuits: HashMap<String, Circuit>,
    /// Circuit read errors already reported (each once).
    circuit_errors: HashSet<String>,
    pub in_flight: usize,
    /// Workers waiting for a job.
    sleeping: usize,
    /// Delivery ids left pending because their subscription cannot send.
    pub held: HashSet<String>,
    /// FIFO lines found held by a dead job (each reported once): (SPEC,
    /// subscription).
    held_lines: HashSet<(String, String)>,
    /// New jobs may be handed out.
    pub accepting: bool,
    /// Workers stop.
    pub exiting: bool,
    /// Outcomes cannot be recorded (a full disk, a broken spool): take no
    /// more jobs.
    pub cannot_record: bool,
    /// Requests at once: the plan's workers, fewer after a worker found no
    /// descriptors to spare (the drain slows down rather than fail).
    pub max_in_flight: usize,
    /// The active set's size (`max_active_jobs`).
    pub capacity: usize,
    /// Per subscription, the end of the gate's current wait as written
    /// (wall clock) and when this run first saw it (its time line).
    gate_seen: HashMap<String, (u64, u64)>,
    /// Per subscription, the wall-clock time at which its circuit allows
    /// the probe the scheduler now lets out.
    probe_at: HashMap<String, u64>,
    pub summary: Summary,
    report: &'r mut (dyn FnMut(&Event) + Send),
}

impl<'r> Core<'r> {
    pub fn new(
        sched: Scheduler,
        drainer: &Drainer<'_>,
        report: &'r mut (dyn FnMut(&Event) + Send),
    ) -> Core<'r> {
        Core {
            sched,
            circuits: HashMap::new(),
            circuit_errors: HashSet::new(),
            in_flight: 0,
            sleeping: 0,
            held: HashSet::new(),
            held_lines: HashSet::new(),
            accepting: true,
            exiting: false,
            cannot_record: false,
            max_in_flight: drainer.plan.workers,
            capacity: drainer.config.max_active_jobs,
            gate_seen: HashMap::new(),
            probe_at: HashMap::new(),
            summary: Summary {
                problems: drainer.problems.clone(),
                ..Summary::default()
            },
            report,
        }
    }

    /// Takes in what a refresh of the queue found. Returns whether workers
    /// may now have something to do (jobs came or went, a circuit changed).
    pub fn apply<Q: Queue>(
        &mut self,
        drainer: &Drainer<'_>,
        queue: &Q,
        changes: Changes,
        circuits: Vec<(String, Result<Circuit>)>,
    ) -> bool {
        let changed = !changes.added.is_empty() || !changes.removed.is_empty();
        self.summary.recovered += changes.recovered as u64;
        for spec in changes.busy {
            if !self.summary.busy.contains(&spec) {
                self.summary.busy.push(spec);
            }
        }
        for q in changes.quarantined {
            self.summary.quarantined += 1;
            (self.report)(&Event::Quarantined(q));
        }
        for error in changes.unquarantined {
            if !self.summary.errors.contains(&error) {
                (self.report)(&Event::Error(error.clone()));
                self.summary.errors.push(error);
            }
        }
        for error in changes.io_errors {
            if !self.summary.errors.contains(&error) {
                (self.report)(&Event::Error(format!(
                    "cannot read {error}; left in place, tried again next time"
                )));
                self.summary.errors.push(error);
            }
        }
        for key in &changes.removed {
            self.sched.remove(key);
        }
        // Gates first: whether a job offered now can go out soon depends
        // on them.
        let mut circuits_changed = false;
        for (sub, circuit) in circuits {
            match circuit {
                Ok(c) => {
                    let before = self.circuits.insert(sub, c.clone());
                    circuits_changed |= before.is_none_or(|b| b != c);
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    if self.circuit_errors.insert(message.clone()) {
                        self.error(message);
                    }
                }
            }
        }
        let now = drainer.time.now();
        self.set_gates(drainer, now);
        for (key, meta) in changes.added {
            self.offer(drainer, Some(queue as &dyn Queue), key, &meta, None);
        }
        changed || circuits_changed
    }

    /// Adds a pending job to the scheduler if this run delivers it and, for
    /// a job read from disk (`queue` given, `known` not), if it takes a
    /// place in the active set; else the queue leaves it on disk until it
    /// could go out. `known`: the job as the scheduler held it before its
    /// attempt (its age and when it was first seen carry over).
    fn offer(
        &mut self,
        drainer: &Drainer<'_>,
        queue: Option<&dyn Queue>,
        key: JobKey,
        meta: &Meta,
        known: Option<&Waiting>,
    ) {
        let put_off = |key: &JobKey, until: u64| queue.is_some_and(|q| q.put_off(key, until));
        if !drainer.wanted(meta) {
            put_off(&key, u64::MAX);
            return;
        }
        let routed = drainer.routed(meta);
        match routed.as_deref() {
            Some(Routed {
                route: Route::Hold,
                problem,
                ..
            }) => {
                self.held.insert(meta.delivery_id.clone());
                // A per-call target's problem shows up only with its jobs.
                if let Some(problem) = problem
                    && !self.summary.problems.contains(problem)
                {
                    self.summary.problems.push(problem.clone());
                }
                put_off(&key, u64::MAX);
                return;
            }
            // Removed from the config: dead-lettered when its turn comes.
            None => self
                .sched
                .configure(&meta.subscription, limits_for(drainer.config, None)),
            Some(routed) if meta.target.is_some() => self.sched.configure(
                &meta.subscription,
                limits_for(drainer.config, routed.route.sub()),
            ),
            Some(_) => {}
        }
        let now = drainer.time.now();
        let seen = known.map_or(now, |k| k.seen_ms);
        let job = Waiting {
            key,
            subscription: meta.subscription.clone(),
            due_at_ms: known.map_or_else(|| drainer.due_of(meta, now), |k| k.due_at_ms),
            sequence: meta.sequence,
            // A job's age only grows: a stamp of when it was first seen
            // (`Meta::seen_at_ms`) may make it younger, a clock step not.
            created_at_ms: known.map_or_else(
                || drainer.age_from(meta, seen),
                |k| k.created_at_ms.max(drainer.age_from(meta, seen)),
            ),
            seen_ms: seen,
        };
        if known.is_none()
            && let Admit::Later(until) = self.sched.admits(&job, now, self.capacity)
            && put_off(&job.key, until)
        {
            return;
        }
        self.sched.add(job);
    }

    /// Tells the scheduler what each subscription's circuit allows now, on
    /// the run's time line: a wait written with the wall clock ends no later
    /// than its own length after this run first saw it.
    pub fn set_gates(&mut self, drainer: &Drainer<'_>, now: u64) {
        let wall = clock::now_ms();
        for (sub, circuit) in &self.circuits {
            let window = drainer.timeout_of(sub).saturating_add(1000);
            let mut at_wall = wall;
            // Each wait that has ended on this time line gives way to what
            // follows it (a probe in flight, then the probe time).
            let allow = loop {
                match circuit.allows(at_wall) {
                    Allow::Wait(Some(until)) if until > at_wall => {
                        let seen = self.gate_seen.entry(sub.clone()).or_insert((until, now));
                        if seen.0 != until {
                            *seen = (until, now);
                        }
                        let ends =
                            drainer
                                .time
                                .from_wall(until, seen.1, circuit.own_wait(until, window));
                        if ends > now {
                            break Allow::Wait(Some(ends));
                        }
                        at_wall = until;
                    }
                    other => break other,
                }
            };
            if allow == Allow::Probe {
                self.probe_at.insert(sub.clone(), at_wall);
            }
            self.sched.set_gate(sub, allow);
        }
    }

    /// How long a sleeper may sleep: until the scheduler can hand out a job
    /// on its own, at most [`MAX_LOOK_EVERY`] (the coordinator wakes the
    /// workers when a look finds something, the worker that frees a share
    /// wakes another, so the bound only caps a missed wake-up).
    fn nap(&self, now: u64) -> Duration {
        self.sched
            .wake_at()
            .map_or(MAX_LOOK_EVERY, |at| {
                Duration::from_millis(at.saturating_sub(now)).min(MAX_LOOK_EVERY)
            })
            .max(Duration::from_millis(1))
    }

    /// The next job for a free worker. A probe is first claimed in the
    /// shared state (another drain may be probing), with the core unlocked:
    /// a slow claim (NATS electing a leader) holds up no other worker and
    /// not the coordinator. Takes and gives back the lock.
    fn take<'g, Q: Queue>(
        mut core: std::sync::MutexGuard<'g, Core<'r>>,
        shared: &'g Shared<'r>,
        drainer: &Drainer<'_>,
        queue: &Q,
    ) -> (std::sync::MutexGuard<'g, Core<'r>>, Option<Work>) {
        loop {
            let this = &mut *core;
            if this.in_flight >= this.max_in_flight {
                return (core, None);
            }
            let now = drainer.time.now();
            this.set_gates(drainer, now);
            this.sched.end_holds(now);
            let Some(pick) = this.sched.next(now) else {
                return (core, None);
            };
            let sub = pick.job.subscription.clone();
            let clean = this
                .circuits
                .get(&sub)
                .is_none_or(|c| *c == Circuit::default());
            if pick.kind != Kind::Probe {
                this.in_flight += 1;
                return (
                    core,
                    Some(Work {
                        pick,
                        clean,
                        probing: None,
                    }),
                );
            }
            let timeout = drainer.timeout_of(&sub);
            // The circuit's own clock is the wall clock: claim the probe as
            // of the wall-clock time at which it allows it (later than now
            // if the clock stepped back since the circuit opened).
            let at = this
                .probe_at
                .get(&sub)
                .copied()
                .unwrap_or(0)
                .max(clock::now_ms());
            // The probe counts as in flight (in the scheduler too: its lane
            // lets out no second one) while the core is unlocked.
            this.in_flight += 1;
            drop(core);
            let claimed = queue.claim_probe(&sub, &mut |c| {
                c.start_probe(at, timeout.saturating_add(1000))
            });
            core = shared.lock();
            let this = &mut *core;
            this.in_flight -= 1;
            let now = drainer.time.now();
            match claimed {
                Ok((Some(t), circuit)) => {
                    this.circuits.insert(sub.clone(), circuit.clone());
                    (this.report)(&Event::Circuit {
                        subscription: sub,
                        transition: t,
                        circuit: circuit.clone(),
                    });
                    this.in_flight += 1;
                    return (
                        core,
                        Some(Work {
                            pick,
                            clean: false,
                            probing: Some(circuit),
                        }),
                    );
                }
                Ok((None, circuit)) => {
                    // Another drain probes: wait for its answer.
                    this.sched.done(&pick.job.key, pick.kind, now);
                    this.sched.add(pick.job);
                    this.circuits.insert(sub, circuit);
                    this.set_gates(drainer, now);
                }
                Err(e) => {
                    this.sched.done(&pick.job.key, pick.kind, now);
                    this.sched.add(pick.job);
                    this.sched
                        .set_gate(&sub, Allow::Wait(Some(now + POLL.as_millis() as u64)));
                    let message = format!("{e:#}");
                    if this.circuit_errors.insert(message.clone()) {
                        this.error(message);
                    }
                }
            }
            if this.exiting || !this.accepting {
                return (core, None);
            }
        }
    }

    /// Folds what became of a job into the run: reports, counts, the
    /// circuit it changed, and the job itself if it waits again.
    fn finish(&mut self, drainer: &Drainer<'_>, queue: &dyn Queue, handled: Handled) {
        self.in_flight -= 1;
        let now = drainer.time.now();
        self.sched
            .done(&handled.pick.job.key, handled.pick.kind, now);
        if let Left::Blocked(blocker) = &handled.left {
            self.blocked(drainer, queue, handled.pick.job.clone(), blocker, now);
            return;
        }
        if matches!(handled.left, Left::NotSent) {
            // No descriptors to spare: not claimed, not sent. Fewer requests
            // at once from now on, and the job waits a moment.
            self.max_in_flight = self.in_flight.max(1).min(self.max_in_flight);
            let mut job = handled.pick.job;
            job.due_at_ms = drainer.time.now() + NOT_SENT_AGAIN;
            self.sched.add(job);
            return;
        }
        if matches!(handled.left, Left::Unrecordable) {
            // Not claimed, not sent; it stays pending on disk. Every other
            // job would meet the same log (or a run would send jobs whose
            // outcomes it then loses): take no more.
            let why = handled.error().unwrap_or_default();
            self.cannot_record = true;
            self.accepting = false;
            self.error(format!(
                "{why}; stopped taking jobs: {} was not sent and stays pending",
                handled.pick.job.key.name
            ));
            return;
        }
        let error = handled.error();
        let disk_full = handled.disk_full();
        let out_of_descriptors = handled.out_of_descriptors();
        let Handled {
            pick,
            left,
            records,
            transition,
            circuit,
            due,
            ..
        } = handled;
        if let Some(circuit) = circuit {
            // What the breaker says now, whoever changed it last.
            self.circuits.insert(pick.job.subscription.clone(), circuit);
        }
        let requeued = matches!(left, Left::Requeued);
        let settled = match left {
            Left::In(meta) => Some(*meta),
            Left::Quarantined(q) => {
                self.summary.quarantined += 1;
                (self.report)(&Event::Quarantined(q));
                None
            }
            Left::Untaken
            | Left::Requeued
            | Left::Active
            | Left::NotSent
            | Left::Blocked(_)
            | Left::Unrecordable => None,
        };
        if let Some(error) = error {
            self.error(error);
        }
        if disk_full && !self.cannot_record {
            self.stop_for_full_disk();
        } else if requeued && out_of_descriptors {
            // Something beyond the plan took the descriptors (the job is
            // back in pending): fewer requests at once, not a stop that a
            // restart would turn into sending the same jobs again.
            self.max_in_flight = self.in_flight.max(1).min(self.max_in_flight);
        } else if requeued && !self.cannot_record {
            // An outcome could not be recorded (the job is back in pending):
            // sending more would only send them again and again.
            self.cannot_record = true;
            self.accepting = false;
            self.error(format!(
                "could not record the outcome of {} in the spool: stopped taking jobs; fix the spool, then run `spec-notify drain` (the job is back in pending)",
                pick.job.key.name
            ));
        }
        for record in records {
            self.summary.count(&record, drainer.options.only.is_some());
            (self.report)(&Event::Attempt(record));
        }
        if let Some((transition, circuit)) = transition {
            let sub = pick.job.subscription.clone();
            self.circuits.insert(sub.clone(), circuit.clone());
            (self.report)(&Event::Circuit {
                subscription: sub,
                transition,
                circuit,
            });
        }
        // A requeued job is back in pending with its old metadata: the
        // next refresh offers it again.
        let Some(meta) = settled else { return };
        match meta.state {
            State::Pending => {
                let mut known = pick.job.clone();
                known.due_at_ms = due.unwrap_or_else(|| drainer.due_of(&meta, known.seen_ms));
                self.offer(drainer, None, pick.job.key, &meta, Some(&known));
            }
            State::Delivered => {
                // The line moves again: a later hold is news.
                self.held_lines
                    .remove(&(meta.spec.clone(), meta.subscription.clone()));
            }
            State::Dead => (self.report)(&Event::Dead {
                spec: meta.spec.clone(),
                delivery_id: meta.delivery_id.clone(),
                subscription: meta.subscription.clone(),
                reason: meta.dead_reason.clone().unwrap_or_default(),
                hint: meta.hint.clone().unwrap_or_default(),
            }),
            _ => {}
        }
    }

    /// A FIFO job found an earlier job of its line in the way: it waits
    /// again, its line held until that job arrives here or a while passes
    /// ([`FIFO_RECHECK`]; a dead one that holds the line, [`HOLD_RECHECK`]
    /// under `--watch`: an operator's discard shows no other way; a run
    /// that ends leaves it held). An earlier job still pending is read at
    /// once, room or not; a dead one is reported once.
    fn blocked(
        &mut self,
        drainer: &Drainer<'_>,
        queue: &dyn Queue,
        job: Waiting,
        blocker: &super::queue::Blocker,
        now: u64,
    ) {
        let (sub, spec) = (job.subscription.clone(), job.key.spec.clone());
        self.sched.add(job);
        let until = match (blocker.dead, drainer.options.watch) {
            (false, _) => now + FIFO_RECHECK,
            (true, true) => now + HOLD_RECHECK,
            // A run that ends does not wait for an operator.
            (true, false) => u64::MAX,
        };
        self.sched.hold(&sub, &spec, until, blocker.sequence);
        if !blocker.dead {
            // Read now, whatever the room: it goes first (its arrival ends
            // the hold). Not pending (in flight, unreadable): the hold ends
            // on its own and the line looks again.
            let key = JobKey {
                spec: spec.clone(),
                name: blocker.name.clone(),
            };
            match queue.fetch(&key) {
                Ok(Some(meta)) => self.offer(drainer, None, key, &meta, None),
                Ok(None) => {}
                Err(e) => self.error(format!("{e:#}")),
            }
        } else if self.held_lines.insert((spec.clone(), sub.clone())) {
            self.summary.held += 1;
            (self.report)(&Event::LineHeld {
                spec,
                subscription: sub,
                delivery_id: blocker.delivery_id.clone(),
            });
        }
    }

    pub fn stop_for_full_disk(&mut self) {
        self.cannot_record = true;
        self.accepting = false;
        self.error(
            "the disk holding the spool or the evidence is full (under 1 MiB free, or too little for the next job's new copy): stopped taking jobs, so no request goes out whose outcome cannot be recorded; free space, then run `spec-notify drain` (jobs left in active/ go back to pending)"
                .into(),
        );
    }

    /// Reports an error each time; the summary keeps each message once (a
    /// `drain --watch` meeting the same error every look must not grow).
    pub fn error(&mut self, message: String) {
        (self.report)(&Event::Error(message.clone()));
        if !self.summary.errors.contains(&message) {
            self.summary.errors.push(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use anyhow::Result;

    use crate::circuit::{Circuit, CircuitState, Transition};
    use crate::clock;
    use crate::config::Config;
    use crate::drain::queue::{Changes, Claimed, Queue, SpoolQueue};
    use crate::drain::scheduler::JobKey;
    use crate::drain::tests::config_with;
    use crate::drain::{Drainer, Options, Stop};
    use crate::evidence::Record;
    use crate::spool::{Job, Meta, Spool};

    /// The spool, but the circuit of `down` answers as a server without a
    /// leader would: slowly. Its write waits until a job of `up` was
    /// attempted (or 30 s), and says when.
    struct SlowBreaker<'a> {
        spool: SpoolQueue<'a>,
        config: &'a Config,
        /// (a job of `up` was logged, the slow write ended) at these times.
        seen: Mutex<(Option<Instant>, Option<Instant>)>,
        logged: Condvar,
    }

    impl Queue for SlowBreaker<'_> {
        fn refresh(&self) -> Result<Changes> {
            self.spool.refresh()
        }
        fn claim(&self, key: &JobKey) -> Result<Claimed> {
            self.spool.claim(key)
        }
        fn settle(&self, key: &JobKey, job: &Job) -> Result<()> {
            self.spool.settle(key, job)
        }
        fn requeue(&self, key: &JobKey) -> Result<()> {
            self.spool.requeue(key)
        }
        fn log(&self, spec: &str, records: &[Record]) -> Result<()> {
            if records.iter().any(|r| r.subscription == "up") {
                let mut seen = self.seen.lock().unwrap();
                seen.0.get_or_insert_with(Instant::now);
                self.logged.notify_all();
            }
            self.spool.log(spec, records)
        }
        fn circuit(&self, subscription: &str) -> Result<Circuit> {
            self.spool.circuit(subscription)
        }
        fn update_circuit(
            &self,
            subscription: &str,
            change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
        ) -> Result<(Option<Transition>, Circuit)> {
            if subscription == "down" && self.seen.lock().unwrap().1.is_none() {
                // The job of `up` arrives while this write hangs.
                spool_one(self.config, "up", 2);
                let seen = self.seen.lock().unwrap();
                let (mut seen, _) = self
                    .logged
                    .wait_timeout_while(seen, Duration::from_secs(30), |s| s.0.is_none())
                    .unwrap();
                seen.1 = Some(Instant::now());
            }
            self.spool.update_circuit(subscription, change)
        }
        fn release(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>> {
            self.spool.release(spec)
        }
        fn trim(&self, spec: &str) -> Result<()> {
            self.spool.trim(spec)
        }
        fn served(&self) -> Vec<String> {
            self.spool.served()
        }
        fn can_record(&self) -> bool {
            self.spool.can_record()
        }
    }

    fn spool_one(config: &Config, subscription: &str, seq: u64) {
        let job = Job {
            meta: Meta::new("S", subscription, "a.b.c", "k", seq, clock::now_ms()),
            body: b"{}".to_vec(),
        };
        Spool::new(&config.spool_dir)
            .spec("S")
            .enqueue(&[job])
            .unwrap();
    }

    #[test]
    fn a_slow_probe_claim_holds_back_no_other_subscription() {
        let dir = tempfile::tempdir().unwrap();
        let dry = |id: &str| {
            format!(
                "id = \"{id}\"\nurl = \"https://example.com/{id}\"\nsecret_env = \"UNSET_FOR_DRY_RUN\"\ndry_run = true\n"
            )
        };
        let config = config_with(
            dir.path(),
            &format!(
                "{}\n[[spec_ops.webhooks.subscriptions]]\n{}",
                dry("down"),
                dry("up")
            ),
        );
        let spool = Spool::new(&config.spool_dir);
        let now = clock::now_ms();
        spool
            .update_circuit("down", |c| {
                *c = Circuit {
                    state: CircuitState::Open,
                    opened_at_ms: Some(now - 60_000),
                    cooldown_ms: 30_000,
                    next_probe_at_ms: Some(now - 30_000),
                    ..Circuit::default()
                };
            })
            .unwrap();
        spool_one(&config, "down", 1);
        let queue = SlowBreaker {
            spool: SpoolQueue::new(&config, None),
            config: &config,
            seen: Mutex::new((None, None)),
            logged: Condvar::new(),
        };
        let options = Options {
            max_time: Duration::from_secs(60),
            once: true,
            ..Options::default()
        };
        let summary = Drainer::new(&config, options, Stop::default())
            .run_on(&queue, &mut |_| {})
            .unwrap();
        assert_eq!(summary.dry_run, 2, "{summary:?}");
        let (up, claimed) = *queue.seen.lock().unwrap();
        // Before: the claim held the engine's lock, so no worker could
        // take the job of `up` until it ended (30 s later).
        assert!(
            up.unwrap() < claimed.unwrap(),
            "the job of `up` waited for the probe's claim"
        );
    }
}
