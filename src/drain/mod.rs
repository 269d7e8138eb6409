//! The drain engine: a continuous scheduler feeding a pool of workers.
//!
//! - [`scheduler`] (pure) decides which waiting job goes next: one queue
//!   across every SPEC this drain serves, round-robin across subscriptions,
//!   `max_in_flight` per subscription, rates, the circuit breaker's gate,
//!   `max_age`.
//! - [`queue`] is the backend: the local spool ([`queue::SpoolQueue`]).
//! - [`attempt`] is one job's way: sign, send, decide, record.
//! - This file is the shell: it refreshes the queue every [`POLL`], hands
//!   each free worker the next job the moment it is free (no batches, no
//!   barrier), feeds results back, keeps the shared circuit state, and
//!   reports what happened through a callback (the command layer prints).
//!
//! Lost wake-ups: emit starts no drain while a drain serves the SPEC, and a
//! serving drain looks at pending/ every [`POLL`]. A one-shot drain stops
//! serving a SPEC only when none of its jobs waits or is in flight, and
//! after letting go it looks once more: a job that arrived in between makes
//! it serve the SPEC again (or another drain does, and will see the job).

pub mod attempt;
pub mod queue;
pub mod scheduler;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::circuit::{self, Circuit, Transition};
use crate::clock;
use crate::config::Config;
use crate::deliver;
use crate::evidence::{Outcome, Record};
use crate::spool::{Job, Meta, Quarantined, State};
use attempt::Route;
use queue::{Claimed, Queue, SpoolQueue};
use scheduler::{JobKey, Kind, Limits, Pick, Scheduler, Waiting};

/// How often the drain looks for new or newly due jobs.
pub const POLL: Duration = Duration::from_millis(20);
/// `--max-time` beyond this is taken as this (and cannot overflow a clock).
const MAX_RUN: Duration = Duration::from_secs(366 * 24 * 3600);

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only this SPEC.
    pub spec: Option<String>,
    /// One pass over due jobs; never wait.
    pub once: bool,
    /// Run until stopped.
    pub watch: bool,
    /// No attempt starts after this (not with `watch`); in-flight requests finish.
    pub max_time: Duration,
    /// Only these delivery ids (replay).
    pub only: Option<HashSet<String>>,
}

/// Why a run stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    Interrupt,
    Terminate,
}

/// Flags set by SIGINT/SIGTERM: stop taking jobs, finish what is in flight.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    interrupt: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
}

impl Stop {
    /// Installs handlers for SIGINT and SIGTERM.
    pub fn install() -> Result<Stop> {
        let stop = Stop::default();
        signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&stop.interrupt))?;
        signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop.terminate))?;
        Ok(stop)
    }

    pub fn signal(&self) -> Option<Signal> {
        if self.terminate.load(Ordering::Relaxed) {
            Some(Signal::Terminate)
        } else if self.interrupt.load(Ordering::Relaxed) {
            Some(Signal::Interrupt)
        } else {
            None
        }
    }
}

/// Something that happened during a run, for the command layer to show.
#[derive(Debug, Clone)]
pub enum Event {
    /// One attempt (or dry run, expiry) and its evidence line.
    Attempt(Record),
    /// A job was dead-lettered; what to do about it.
    Dead {
        spec: String,
        delivery_id: String,
        subscription: String,
        reason: String,
        hint: String,
    },
    /// A subscription's circuit or pause changed.
    Circuit {
        subscription: String,
        transition: Transition,
        circuit: Circuit,
    },
    Quarantined(Quarantined),
    /// An I/O failure; the run goes on and exits 1.
    Error(String),
}

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub delivered: u64,
    pub retrying: u64,
    pub dead: u64,
    pub dry_run: u64,
    /// Jobs that paused their subscription (410, `webhook-delivery: disable`).
    pub paused: u64,
    /// Jobs left pending because their subscription cannot send now.
    pub held: u64,
    pub quarantined: u64,
    pub recovered: u64,
    /// SPECs another drain was serving (it delivers their jobs).
    pub busy: Vec<String>,
    /// Delivery ids attempted, with the verdict (for replay's report).
    #[serde(skip)]
    pub outcomes: BTreeMap<String, Outcome>,
    /// Things a person must fix (missing secrets): exit 2.
    pub problems: Vec<String>,
    /// I/O failures: exit 1.
    pub errors: Vec<String>,
    pub stopped_by: Option<Signal>,
}

impl Summary {
    pub fn line(&self) -> String {
        let mut line = format!(
            "delivered {}, retrying {}, dead {}, dry-run {}",
            self.delivered, self.retrying, self.dead, self.dry_run
        );
        if self.paused > 0 {
            line.push_str(&format!(", paused {}", self.paused));
        }
        if self.held > 0 {
            line.push_str(&format!(", held {} (see above)", self.held));
        }
        if self.quarantined > 0 {
            line.push_str(&format!(", quarantined {}", self.quarantined));
        }
        line
    }

    fn count(&mut self, record: &Record) {
        match record.outcome {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Retry => self.retrying += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::DryRun => self.dry_run += 1,
            Outcome::Paused => self.paused += 1,
            _ => return,
        }
        self.outcomes
            .insert(record.delivery_id.clone(), record.outcome);
    }
}

/// A subscription's scheduling limits: `max_in_flight` defaults to one less
/// than `max_concurrency` (at least 1), so one endpoint that never answers
/// leaves a worker for everybody else.
pub fn limits_for(config: &Config, sub: Option<&crate::config::Subscription>) -> Limits {
    let fair_share = config.max_concurrency.saturating_sub(1).max(1);
    match sub {
        Some(sub) => Limits {
            max_in_flight: sub.max_in_flight.unwrap_or(fair_share).max(1),
            min_interval_ms: sub.rate_limit.map(|r| r.interval_ms()),
            max_age_ms: sub.max_age_ms,
        },
        None => Limits {
            max_in_flight: fair_share,
            ..Limits::default()
        },
    }
}

/// One job handed to a worker.
struct Work {
    pick: Pick,
    /// The subscription's circuit is closed with no failures: a success
    /// needs no state update.
    clean: bool,
    /// The circuit as this drain claimed the probe (`Kind::Probe` only).
    probing: Option<Circuit>,
}

/// A worker's report.
struct Done {
    pick: Pick,
    /// The job's new metadata (absent if it vanished or was quarantined).
    meta: Option<Meta>,
    records: Vec<Record>,
    transition: Option<(Transition, Circuit)>,
    quarantined: Option<Quarantined>,
    error: Option<String>,
    /// The error was a full disk (ENOSPC, EDQUOT): outcomes cannot be recorded.
    disk_full: bool,
}

/// Whether an error comes from a full disk or an exhausted quota.
fn is_disk_full(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|code| code == libc::ENOSPC || code == libc::EDQUOT)
    })
}

pub struct Drainer<'a> {
    config: &'a Config,
    options: Options,
    stop: Stop,
    agent: ureq::Agent,
    routes: HashMap<&'a str, Route<'a>>,
    problems: Vec<String>,
}

impl<'a> Drainer<'a> {
    pub fn new(config: &'a Config, options: Options, stop: Stop) -> Drainer<'a> {
        let (routes, problems) = attempt::routes(config);
        Drainer {
            config,
            options,
            stop,
            agent: deliver::agent(config.max_concurrency),
            routes,
            problems,
        }
    }

    /// Runs on the local spool until done (see [`Options`]) or stopped;
    /// `report` sees each event as it happens.
    pub fn run(self, report: &mut dyn FnMut(&Event)) -> Result<Summary> {
        let queue = SpoolQueue::new(self.config, self.options.spec.clone());
        self.run_on(&queue, report)
    }

    /// Runs on any queue backend.
    pub fn run_on<Q: Queue>(&self, queue: &Q, report: &mut dyn FnMut(&Event)) -> Result<Summary> {
        let workers = self.config.max_concurrency.max(1);
        let (work_tx, work_rx) = mpsc::channel::<Work>();
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let mut summary = Summary {
            problems: self.problems.clone(),
            ..Summary::default()
        };
        let result = std::thread::scope(|scope| {
            for _ in 0..workers {
                let done_tx = done_tx.clone();
                let work_rx = &work_rx;
                scope.spawn(move || {
                    loop {
                        let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok(work) = next else { break };
                        if done_tx.send(self.work(queue, work)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(done_tx);
            let mut shell = Shell {
                drainer: self,
                queue,
                sched: Scheduler::new(),
                circuits: HashMap::new(),
                in_flight: 0,
                workers,
                held: HashSet::new(),
                disk_full: false,
                summary: &mut summary,
                report,
            };
            let result = shell.dispatch(&work_tx, &done_rx);
            drop(work_tx);
            result
        });
        for spec in queue.served() {
            if let Err(e) = queue.release(&spec) {
                summary.errors.push(format!("{e:#}"));
                report(&Event::Error(format!("{e:#}")));
            }
        }
        result?;
        summary.stopped_by = self.stop.signal();
        Ok(summary)
    }

    /// Whether this run delivers the job at all (replay picks ids).
    fn wanted(&self, meta: &Meta) -> bool {
        self.options
            .only
            .as_ref()
            .is_none_or(|only| only.contains(&meta.delivery_id))
    }

    fn subscription(&self, id: &str) -> Option<&'a crate::config::Subscription> {
        self.config.subscriptions.iter().find(|s| s.id == id)
    }

    /// A worker's whole job: claim, route, attempt, log, settle, and tell
    /// the breaker. Runs on a worker thread.
    fn work<Q: Queue>(&self, queue: &Q, work: Work) -> Done {
        let mut done = Done {
            pick: work.pick,
            meta: None,
            records: Vec::new(),
            transition: None,
            quarantined: None,
            error: None,
            disk_full: false,
        };
        if let Err(e) = self.work_on(queue, work.clean, work.probing.as_ref(), &mut done) {
            done.disk_full = is_disk_full(&e);
            done.error = Some(format!("{e:#}"));
        }
        done
    }

    fn work_on<Q: Queue>(
        &self,
        queue: &Q,
        clean: bool,
        probing: Option<&Circuit>,
        done: &mut Done,
    ) -> Result<()> {
        let key = done.pick.job.key.clone();
        let mut job: Job = match queue.claim(&key)? {
            Claimed::Job(job) => *job,
            Claimed::Gone => return Ok(()),
            Claimed::Quarantined(q) => {
                done.quarantined = Some(q);
                return Ok(());
            }
        };
        let sub_id = job.meta.subscription.clone();
        let url = self
            .subscription(&sub_id)
            .map(crate::config::Subscription::shown_url)
            .unwrap_or_default();
        let mut signal = None;
        let mut probe_logged = Ok(());
        let record = match (done.pick.kind, self.routes.get(sub_id.as_str())) {
            (Kind::Expire, _) => {
                let max_age = limits_for(self.config, self.subscription(&sub_id)).max_age_ms;
                attempt::give_up(&mut job, "expired", url, max_age)
            }
            (_, None) => attempt::give_up(&mut job, "subscription-removed", url, 0),
            (_, Some(Route::Hold)) => {
                queue.requeue(&key)?;
                done.meta = Some(job.meta);
                return Ok(());
            }
            (_, Some(Route::DryRun { sub })) => attempt::dry_run(&mut job, sub),
            (
                _,
                Some(Route::Send {
                    sub,
                    secret,
                    previous,
                }),
            ) => {
                if let Some(circuit) = probing {
                    // The probe's evidence line, before it goes out.
                    let now = clock::now_ms();
                    let record = transition_record(&job.meta, &Transition::Probing, circuit, now);
                    probe_logged = queue.log(&job.meta.spec, std::slice::from_ref(&record));
                    done.records.push(record);
                }
                let attempted =
                    attempt::attempt(&self.agent, &mut job, sub, secret, previous.as_ref());
                signal = Some((attempted.signal, sub.breaker));
                attempted.record
            }
        };
        // Evidence first: a crash before settling repeats the attempt, and
        // the log shows both.
        let logged = queue
            .log(&job.meta.spec, std::slice::from_ref(&record))
            .and(probe_logged);
        done.records.push(record);
        // On failure the job stays in active/: the next drain to serve the
        // SPEC returns it to pending (and sends it again: at-least-once).
        queue.settle(&key, &job)?;
        done.meta = Some(job.meta.clone());
        if let Some((signal, policy)) = signal {
            let probe = done.pick.kind == Kind::Probe;
            let needed = !(clean && !probe && signal == circuit::Signal::Alive);
            if needed {
                let now = clock::now_ms();
                let (transition, circuit) = queue
                    .update_circuit(&sub_id, &mut |c| c.record(&signal, probe, &policy, now))?;
                if let Some(t) = transition {
                    let record = transition_record(&job.meta, &t, &circuit, now);
                    queue.log(&job.meta.spec, std::slice::from_ref(&record))?;
                    done.records.push(record);
                    done.transition = Some((t, circuit));
                }
            }
        }
        logged
    }
}

/// The evidence line of a circuit or pause change, on the job that caused it.
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

/// The dispatching side of a run: owns the scheduler and the cached
/// circuit states; only this thread reports events.
struct Shell<'r, 'a, Q: Queue> {
    drainer: &'r Drainer<'a>,
    queue: &'r Q,
    sched: Scheduler,
    circuits: HashMap<String, Circuit>,
    in_flight: usize,
    workers: usize,
    /// Delivery ids left pending because their subscription cannot send.
    held: HashSet<String>,
    /// The disk is full: take no more jobs (their outcomes could not be recorded).
    disk_full: bool,
    summary: &'r mut Summary,
    report: &'r mut dyn FnMut(&Event),
}

impl<Q: Queue> Shell<'_, '_, Q> {
    fn dispatch(
        &mut self,
        work_tx: &mpsc::Sender<Work>,
        done_rx: &mpsc::Receiver<Done>,
    ) -> Result<()> {
        let options = &self.drainer.options;
        let max_time = options.max_time.min(MAX_RUN);
        let deadline = Instant::now()
            .checked_add(max_time)
            .unwrap_or_else(Instant::now);
        for sub in &self.drainer.config.subscriptions {
            self.sched
                .configure(&sub.id, limits_for(self.drainer.config, Some(sub)));
        }
        let mut last_refresh: Option<Instant> = None;
        let mut once_done = false;
        loop {
            let stopping = self.drainer.stop.signal().is_some();
            let late = !options.watch && Instant::now() >= deadline;
            if last_refresh.is_none_or(|t| t.elapsed() >= POLL) {
                self.refresh()?;
                last_refresh = Some(Instant::now());
                if !self.disk_full && !self.queue.can_record() {
                    self.stop_for_full_disk();
                }
            }
            let accepting = !stopping && !late && !once_done && !self.disk_full;
            let now = clock::now_ms();
            self.set_gates(now);
            if accepting {
                while self.in_flight < self.workers {
                    let Some(pick) = self.sched.next(now) else {
                        break;
                    };
                    if let Some(work) = self.prepare(pick, now)? {
                        work_tx.send(work).expect("workers outlive the dispatcher");
                        self.in_flight += 1;
                    }
                }
            }
            if options.once && self.in_flight == 0 {
                once_done = true;
            }
            if !options.watch && self.release_idle()? {
                last_refresh = None; // jobs arrived as we let go: look again
                continue;
            }
            if self.in_flight == 0 {
                let idle = self.sched.waiting_len() == 0;
                let beyond = self.sched.wake_at().is_none_or(|at| {
                    at.saturating_sub(clock::now_ms())
                        > deadline
                            .saturating_duration_since(Instant::now())
                            .as_millis() as u64
                });
                if !accepting || (!options.watch && (idle || beyond)) {
                    return Ok(());
                }
            }
            let now = clock::now_ms();
            let nap = self
                .sched
                .wake_at()
                .map_or(POLL, |at| {
                    Duration::from_millis(at.saturating_sub(now)).min(POLL)
                })
                .max(Duration::from_millis(1));
            match done_rx.recv_timeout(if self.in_flight > 0 || accepting {
                nap
            } else {
                POLL
            }) {
                Ok(done) => {
                    self.finish(done);
                    while let Ok(done) = done_rx.try_recv() {
                        self.finish(done);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    /// Reads new and vanished jobs and the shared circuit states.
    fn refresh(&mut self) -> Result<()> {
        let changes = self.queue.refresh()?;
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
        for (key, meta) in changes.added {
            self.offer(key, &meta);
        }
        for sub in &self.drainer.config.subscriptions {
            match self.queue.circuit(&sub.id) {
                Ok(c) => {
                    self.circuits.insert(sub.id.clone(), c);
                }
                Err(e) => self.error(format!("{e:#}")),
            }
        }
        Ok(())
    }

    /// Adds a pending job to the scheduler if this run delivers it.
    fn offer(&mut self, key: JobKey, meta: &Meta) {
        if !self.drainer.wanted(meta) {
            return;
        }
        if let Some(Route::Hold) = self.drainer.routes.get(meta.subscription.as_str()) {
            if self.held.insert(meta.delivery_id.clone()) {
                self.summary.held = self.held.len() as u64;
            }
            return;
        }
        if !self.drainer.routes.contains_key(meta.subscription.as_str()) {
            let limits = limits_for(self.drainer.config, None);
            self.sched.configure(&meta.subscription, limits);
        }
        self.sched.add(Waiting {
            key,
            subscription: meta.subscription.clone(),
            due_at_ms: meta.next_attempt_at_ms,
            sequence: meta.sequence,
            created_at_ms: meta.created_at_ms,
        });
    }

    fn set_gates(&mut self, now: u64) {
        for (sub, circuit) in &self.circuits {
            self.sched.set_gate(sub, circuit.allows(now));
        }
    }

    /// Turns a pick into work; a probe must first be claimed in the shared
    /// state (another drain may be probing).
    fn prepare(&mut self, pick: Pick, now: u64) -> Result<Option<Work>> {
        let sub = pick.job.subscription.clone();
        let clean = self
            .circuits
            .get(&sub)
            .is_none_or(|c| *c == Circuit::default());
        if pick.kind != Kind::Probe {
            return Ok(Some(Work {
                pick,
                clean,
                probing: None,
            }));
        }
        let timeout = self
            .drainer
            .subscription(&sub)
            .map_or(5000, |s| s.retry.per_request_timeout_ms);
        let (transition, circuit) = self.queue.update_circuit(&sub, &mut |c| {
            c.start_probe(now, timeout.saturating_add(1000))
        })?;
        self.circuits.insert(sub.clone(), circuit.clone());
        match transition {
            Some(t) => {
                (self.report)(&Event::Circuit {
                    subscription: sub,
                    transition: t,
                    circuit: circuit.clone(),
                });
                Ok(Some(Work {
                    pick,
                    clean: false,
                    probing: Some(circuit),
                }))
            }
            None => {
                self.sched.done(&pick.job.key, pick.kind);
                self.sched.add(pick.job);
                self.sched.set_gate(&sub, circuit.allows(now));
                Ok(None)
            }
        }
    }

    fn finish(&mut self, done: Done) {
        self.in_flight -= 1;
        self.sched.done(&done.pick.job.key, done.pick.kind);
        if let Some(q) = done.quarantined {
            self.summary.quarantined += 1;
            (self.report)(&Event::Quarantined(q));
        }
        if let Some(error) = done.error {
            self.error(error);
        }
        if done.disk_full && !self.disk_full {
            self.stop_for_full_disk();
        }
        for record in &done.records {
            self.summary.count(record);
            (self.report)(&Event::Attempt(record.clone()));
        }
        if let Some((transition, circuit)) = done.transition {
            let sub = done.pick.job.subscription.clone();
            self.circuits.insert(sub.clone(), circuit.clone());
            (self.report)(&Event::Circuit {
                subscription: sub,
                transition,
                circuit,
            });
        }
        let Some(meta) = done.meta else { return };
        match meta.state {
            State::Pending => {
                let key = done.pick.job.key;
                self.offer(key, &meta);
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

    /// Stops serving SPECs with nothing waiting or in flight. True if a job
    /// arrived as we let go.
    fn release_idle(&mut self) -> Result<bool> {
        let mut arrived = false;
        for spec in self.queue.served() {
            if !self.sched.has_spec(&spec) {
                match self.queue.release(&spec) {
                    Ok(more) => arrived |= more && self.drainer.stop.signal().is_none(),
                    Err(e) => self.error(format!("{e:#}")),
                }
            }
        }
        Ok(arrived && self.has_wanted_pending())
    }

    /// After letting go of SPECs: is anything there that this run would send?
    fn has_wanted_pending(&self) -> bool {
        // Held jobs (secret unset, inactive) and other ids under replay
        // stay pending forever; only a job this run delivers counts.
        let spool = crate::spool::Spool::new(&self.drainer.config.spool_dir);
        let specs = match &self.drainer.options.spec {
            Some(spec) => vec![spec.clone()],
            None => spool.specs().unwrap_or_default(),
        };
        let now = clock::now_ms();
        specs.iter().any(|spec| {
            spool.spec(spec).scan(State::Pending).is_ok_and(|scan| {
                scan.entries.iter().any(|e| {
                    self.drainer.wanted(&e.meta)
                        && !matches!(
                            self.drainer.routes.get(e.meta.subscription.as_str()),
                            Some(Route::Hold)
                        )
                        && e.meta.next_attempt_at_ms <= now
                })
            })
        })
    }

    fn stop_for_full_disk(&mut self) {
        self.disk_full = true;
        self.error(
            "the disk holding the spool or the evidence is full (or under 1 MiB free): stopped taking jobs, so no request goes out whose outcome cannot be recorded; free space, then run `spec-notify drain` (jobs left in active/ go back to pending)"
                .into(),
        );
    }

    fn error(&mut self, message: String) {
        (self.report)(&Event::Error(message.clone()));
        self.summary.errors.push(message);
    }
}
