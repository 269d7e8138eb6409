//! The drain engine: a continuous scheduler feeding a pool of workers.
//!
//! - [`scheduler`] (pure) decides which waiting job goes next: one queue
//!   across every SPEC this drain serves, round-robin across subscriptions,
//!   `max_in_flight` per subscription, rates, the circuit breaker's gate,
//!   `max_age`.
//! - [`queue`] is the backend: the local spool ([`queue::SpoolQueue`]).
//! - [`attempt`] is one job's way: sign, send, decide, record.
//! - This file is the shell. A coordinator thread looks at the queue every
//!   [`POLL`] (less often with a big backlog), or at once when the queue
//!   tells of new jobs (inotify on each served pending/), and ends the run;
//!   `max_concurrency` workers each take the next job from the shared
//!   scheduler the moment they are free (no batches, no barrier, no
//!   round trip through a dispatcher). Events are reported through a
//!   callback (the command layer prints).
//!
//! Lost wake-ups: emit starts no drain while a drain serves the SPEC, and a
//! serving drain looks at a pending/ folder when inotify tells of a rename
//! into it (how emit, replay and requeues add jobs), and lists it at least
//! every second anyway (every [`POLL`] where no watch could be set). A one-shot
//! drain stops serving a SPEC only when none of its jobs waits or is in
//! flight, and after letting go it looks once more: a job that arrived in
//! between makes it serve the SPEC again, or, when the run is over, is
//! handed to a new drain (`Summary::left_due`).

pub mod attempt;
pub mod queue;
pub mod scheduler;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::circuit::{self, Circuit, Transition};
use crate::clock;
use crate::config::Config;
use crate::deliver;
use crate::evidence::{Outcome, Record};
use crate::spool::{Job, Meta, Quarantined, SettleError, State, Target};
use attempt::{Route, Routed};
use queue::{Changes, Claimed, Queue, SpoolQueue};
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
    /// Delivery ids attempted, with the verdict: for replay's report, so
    /// kept only by a run limited to some ids (`Options::only`); a
    /// `drain --watch` would otherwise hold every id it ever sent.
    #[serde(skip)]
    pub outcomes: BTreeMap<String, Outcome>,
    /// Things a person must fix (missing secrets): exit 2.
    pub problems: Vec<String>,
    /// I/O failures: exit 1.
    pub errors: Vec<String>,
    /// SPECs this run let go of with jobs due that no drain serves (they
    /// arrived as it ended, or it stopped at `--max-time`): the command
    /// starts a background drain for them when `auto_drain` is on.
    pub left_due: Vec<String>,
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

    fn count(&mut self, record: &Record, keep_outcome: bool) {
        match record.outcome {
            Outcome::Delivered => self.delivered += 1,
            Outcome::Retry => self.retrying += 1,
            Outcome::Dead => self.dead += 1,
            Outcome::DryRun => self.dry_run += 1,
            Outcome::Paused => self.paused += 1,
            _ => return,
        }
        if keep_outcome {
            self.outcomes
                .insert(record.delivery_id.clone(), record.outcome);
        }
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
    /// Settling failed and the job went back to pending unchanged.
    requeued: bool,
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
    agents: deliver::Agents,
    /// Every configured subscription's route, by scope (see [`attempt::Routes`]).
    routes: attempt::Routes,
    /// Routes of per-call targets (`emit --url`), made as their jobs turn up.
    per_call: Mutex<HashMap<Target, Arc<Routed>>>,
    problems: Vec<String>,
}

impl<'a> Drainer<'a> {
    pub fn new(config: &'a Config, options: Options, stop: Stop) -> Drainer<'a> {
        let (routes, problems) = attempt::routes(config);
        Drainer {
            config,
            options,
            stop,
            agents: deliver::Agents::new(config.max_concurrency),
            routes,
            per_call: Mutex::new(HashMap::new()),
            problems,
        }
    }

    /// The route of a job: its per-call target's, or its subscription's as
    /// in effect for its SPEC. `None`: the subscription is not in the config.
    fn routed(&self, meta: &Meta) -> Option<Arc<Routed>> {
        if let Some(target) = &meta.target {
            let mut cache = self.per_call.lock().unwrap_or_else(|e| e.into_inner());
            let routed = cache
                .entry(target.clone())
                .or_insert_with(|| Arc::new(self.per_call_route(target, &meta.subscription)));
            return Some(Arc::clone(routed));
        }
        let scope = self
            .config
            .scope_for(&meta.spec)
            .map_or("", |s| s.pattern.as_str());
        self.routes
            .get(scope)?
            .get(meta.subscription.as_str())
            .cloned()
    }

    /// A per-call target checked as emit checked it; one that no longer
    /// passes (a hand-edited job) is held, with the reason.
    fn per_call_route(&self, target: &Target, subscription: &str) -> Routed {
        let unusable = |why: String| Routed {
            route: Route::Hold,
            problem: Some(format!(
                "the per-call target of subscription `{subscription}` is not usable ({why}); its jobs stay pending: discard them with `spec-notify discard`"
            )),
            shown_url: String::new(),
        };
        match self.config.per_call(target) {
            Ok(sub) if sub.id == subscription => attempt::route(&sub),
            Ok(sub) => unusable(format!("its URL belongs to `{}`", sub.id)),
            Err(problems) => unusable(problems.join("; ")),
        }
    }

    /// Every subscription id a lane may serve: configured ones (global and
    /// SPEC-only) and the per-call targets seen so far.
    fn lane_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        let configured = self.config.every_subscription().map(|(_, s)| s.id.clone());
        let per_call: Vec<String> = self
            .per_call
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter_map(|r| r.route.sub().map(|s| s.id.clone()))
            .collect();
        for id in configured.chain(per_call) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// The request timeout of a lane's subscription (for a probe's claim).
    fn timeout_of(&self, id: &str) -> u64 {
        let configured = self
            .config
            .every_subscription()
            .map(|(_, s)| s)
            .find(|s| s.id == id);
        let per_call = || {
            self.per_call
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .find_map(|r| {
                    r.route
                        .sub()
                        .filter(|s| s.id == id)
                        .map(|s| s.retry.per_request_timeout_ms)
                })
        };
        configured
            .map(|s| s.retry.per_request_timeout_ms)
            .or_else(per_call)
            .unwrap_or(5000)
    }

    /// Runs on the local spool until done (see [`Options`]) or stopped;
    /// `report` sees each event as it happens.
    pub fn run(self, report: &mut (dyn FnMut(&Event) + Send)) -> Result<Summary> {
        let queue = SpoolQueue::new(self.config, self.options.spec.clone());
        self.run_on(&queue, report)
    }

    /// Runs on any queue backend: the calling thread refreshes the queue
    /// and decides when the run ends; `max_concurrency` workers each take
    /// the next job from the shared scheduler the moment they are free.
    pub fn run_on<Q: Queue>(
        &self,
        queue: &Q,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Summary> {
        let workers = self.config.max_concurrency.max(1);
        let max_time = self.options.max_time.min(MAX_RUN);
        let mut sched = Scheduler::new();
        for sub in &self.config.subscriptions {
            sched.configure(&sub.id, limits_for(self.config, Some(sub)));
        }
        // Subscriptions only some SPECs have: their first definition's limits.
        let only_some: Vec<&crate::config::Subscription> = self
            .config
            .every_subscription()
            .map(|(_, s)| s)
            .filter(|s| self.config.subscription(&s.id).is_none())
            .collect();
        for sub in only_some.into_iter().rev() {
            sched.configure(&sub.id, limits_for(self.config, Some(sub)));
        }
        let shared = Shared {
            core: Mutex::new(Core {
                sched,
                circuits: HashMap::new(),
                circuit_errors: HashSet::new(),
                in_flight: 0,
                sleeping: 0,
                held: HashSet::new(),
                accepting: true,
                exiting: false,
                cannot_record: false,
                summary: Summary {
                    problems: self.problems.clone(),
                    ..Summary::default()
                },
                report,
            }),
            work: Condvar::new(),
            idle: Condvar::new(),
            poked: AtomicBool::new(false),
        };
        let deadline = Instant::now()
            .checked_add(max_time)
            .unwrap_or_else(Instant::now);
        let result = std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| self.worker(queue, &shared));
            }
            if queue.watches() {
                scope.spawn(|| {
                    while !shared.lock().exiting {
                        if queue.wait_for_news(WATCH_TICK) {
                            shared.poked.store(true, Ordering::Relaxed);
                            shared.idle.notify_one();
                        }
                    }
                });
            }
            let result = self.coordinate(queue, &shared, deadline);
            let mut core = shared.lock();
            core.exiting = true;
            drop(core);
            shared.work.notify_all();
            queue.stop_waiting();
            result
        });
        let mut core = shared.core.into_inner().unwrap_or_else(|e| e.into_inner());
        // Let go of every SPEC still served; jobs that arrived meanwhile (no
        // drain was started for them) or that were due when the run ended
        // are handed over (`left_due`) so the command can start a drain.
        let cut_short = self.stop.signal().is_none()
            && !self.options.watch
            && Instant::now() >= deadline
            && !core.cannot_record;
        let now = clock::now_ms();
        for spec in queue.served() {
            // Jobs this run could have sent now, had --max-time not ended it.
            let sendable_now = cut_short && core.sched.has_due_in(&spec, now);
            match queue.release(&spec) {
                Ok(arrived) => {
                    let due = arrived.iter().any(|(_, m)| self.sendable(m));
                    if (due || sendable_now) && !core.summary.left_due.contains(&spec) {
                        core.summary.left_due.push(spec);
                    }
                }
                Err(e) => core.error(format!("{e:#}")),
            }
        }
        result?;
        core.summary.stopped_by = self.stop.signal();
        core.summary.held = core.held.len() as u64;
        Ok(core.summary)
    }

    /// The coordinating thread: refreshes the queue every [`POLL`], lets go
    /// of idle SPECs, trims evidence, and ends the run.
    fn coordinate<Q: Queue>(
        &self,
        queue: &Q,
        shared: &Shared<'_>,
        deadline: Instant,
    ) -> Result<()> {
        let options = &self.options;
        let mut last_trim = Instant::now();
        let mut last_look: Option<Instant> = None;
        let mut look_every = POLL;
        loop {
            // Look at the queue every POLL, or at once when told of new jobs
            // (not more often than a twentieth of that: a burst of emits
            // must not cost a look each). A request finishing wakes this
            // thread too (to end the run) but costs no look.
            let since = last_look.map(|t| t.elapsed());
            let poked = shared.poked.load(Ordering::Relaxed);
            let min_gap = (look_every / 20).max(Duration::from_millis(1));
            let look = since.is_none_or(|s| s >= look_every || (poked && s >= min_gap));
            if look {
                shared.poked.store(false, Ordering::Relaxed);
            }
            let seen = if look {
                last_look = Some(Instant::now());
                let changes = queue.refresh()?;
                let circuits: Vec<(String, Result<Circuit>)> = self
                    .lane_ids()
                    .into_iter()
                    .map(|id| {
                        let circuit = queue.circuit(&id);
                        (id, circuit)
                    })
                    .collect();
                Some((changes, circuits, queue.can_record()))
            } else {
                None
            };
            let mut core = shared.lock();
            // Listing pending/ costs in proportion to its size: with a big
            // backlog, look less often (a new job would queue behind it
            // anyway; a new subscription's first job still goes out within
            // a quarter of a second).
            look_every =
                (POLL * (core.sched.waiting_len() / 1000).max(1) as u32).min(MAX_LOOK_EVERY);
            let mut found = false;
            if let Some((changes, circuits, can_record)) = seen {
                found = core.apply(self, changes, circuits);
                if !can_record && !core.cannot_record {
                    core.stop_for_full_disk();
                }
            }
            let now = clock::now_ms();
            core.set_gates(now);
            let stopping = self.stop.signal().is_some();
            let late = !options.watch && Instant::now() >= deadline;
            if stopping || late || core.cannot_record {
                core.accepting = false;
            }
            if options.once && core.in_flight == 0 && !core.sched.has_due(now) {
                core.accepting = false;
            }
            let idle_specs: Vec<String> = if options.watch {
                Vec::new()
            } else {
                queue
                    .served()
                    .into_iter()
                    .filter(|s| !core.sched.has_spec(s))
                    .collect()
            };
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as u64;
            let nothing_before_deadline = core
                .sched
                .wake_at()
                .is_none_or(|at| at.saturating_sub(now) > left);
            let done = core.in_flight == 0
                && (!core.accepting
                    || (!options.watch
                        && (core.sched.waiting_len() == 0 || nothing_before_deadline)));
            // Workers wake on their own when a waiting job falls due; they
            // need telling only of what a look found, or that taking stops.
            let tell_workers = found || !core.accepting || done;
            drop(core);
            if tell_workers {
                shared.work.notify_all();
            }
            // Idle SPECs are let go of now, so emit can start drains for
            // them; a job that arrived meanwhile is served again at once.
            let mut arrived_due = false;
            for spec in idle_specs {
                match queue.release(&spec) {
                    Ok(arrived) => {
                        let mut core = shared.lock();
                        for (key, meta) in arrived {
                            if self.sendable(&meta) {
                                if core.accepting && self.options.only.is_none() {
                                    arrived_due = true;
                                } else if !core.summary.left_due.contains(&key.spec) {
                                    core.summary.left_due.push(key.spec.clone());
                                }
                            }
                        }
                    }
                    Err(e) => shared.lock().error(format!("{e:#}")),
                }
            }
            if arrived_due {
                last_look = None;
                continue;
            }
            if done {
                return Ok(());
            }
            if options.watch && last_trim.elapsed() >= TRIM_EVERY {
                last_trim = Instant::now();
                for spec in queue.served() {
                    if let Err(e) = queue.trim(&spec) {
                        shared.lock().error(format!("{e:#}"));
                    }
                }
            }
            // Until the next look, or until the last request in flight ends.
            let since = last_look.map_or(look_every, |t| t.elapsed());
            let until_look = if shared.poked.load(Ordering::Relaxed) {
                ((look_every / 20).max(Duration::from_millis(1))).saturating_sub(since)
            } else {
                look_every.saturating_sub(since)
            };
            let core = shared.lock();
            drop(
                shared
                    .idle
                    .wait_timeout(core, until_look.max(Duration::from_millis(1))),
            );
        }
    }

    /// One worker: take the next job, do it, report, repeat.
    fn worker<Q: Queue>(&self, queue: &Q, shared: &Shared<'_>) {
        let mut finished: Option<Done> = None;
        loop {
            let mut core = shared.lock();
            let mut just_finished = finished.is_some();
            if let Some(done) = finished.take() {
                core.finish(self, done);
            }
            let work = loop {
                if core.exiting {
                    return;
                }
                if core.accepting
                    && let Some(work) = core.take(self, queue)
                {
                    break work;
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
                let nap = core.nap(clock::now_ms());
                core = shared
                    .work
                    .wait_timeout(core, nap)
                    .map_or_else(|e| e.into_inner().0, |(c, _)| c);
                core.sleeping -= 1;
            };
            // Another job may be waiting for a sleeping worker.
            let more = core.sleeping > 0 && core.sched.ready(clock::now_ms());
            drop(core);
            if more {
                shared.work.notify_one();
            }
            finished = Some(self.work(queue, work));
        }
    }

    /// Whether a normal drain would send this pending job now (for handing
    /// over jobs that arrived as this run let go of their SPEC).
    fn sendable(&self, meta: &Meta) -> bool {
        self.routed(meta)
            .is_none_or(|r| !matches!(r.route, Route::Hold))
            && meta.next_attempt_at_ms <= clock::now_ms()
    }

    /// Whether this run delivers the job at all (replay picks ids).
    fn wanted(&self, meta: &Meta) -> bool {
        self.options
            .only
            .as_ref()
            .is_none_or(|only| only.contains(&meta.delivery_id))
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
            requeued: false,
        };
        if let Err(e) = self.work_on(queue, work.clean, work.probing.as_ref(), &mut done) {
            // An error recorded on the way (a settle that failed after its
            // rename) is kept beside this one.
            done.disk_full |= is_disk_full(&e);
            done.error = Some(match done.error.take() {
                Some(earlier) => format!("{earlier}; {e:#}"),
                None => format!("{e:#}"),
            });
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
        let claimed = queue.claim(&key)?;
        if !matches!(claimed, Claimed::Job(_)) && probing.is_some() {
            // The probe's job is gone: give the probe back at once instead
            // of holding it until its timeout.
            queue.update_circuit(&done.pick.job.subscription, &mut |c| {
                c.probe_until_ms = None;
                None
            })?;
        }
        let mut job: Job = match claimed {
            Claimed::Job(job) => *job,
            Claimed::Gone => return Ok(()),
            Claimed::Quarantined(q) => {
                done.quarantined = Some(q);
                return Ok(());
            }
        };
        let sub_id = job.meta.subscription.clone();
        let routed = self.routed(&job.meta);
        let route = routed.as_deref().map(|r| &r.route);
        let url = routed
            .as_deref()
            .map(|r| r.shown_url.as_str())
            .unwrap_or_default();
        let mut signal = None;
        let mut probe_logged = Ok(());
        let record = match (done.pick.kind, route) {
            (Kind::Expire, _) => {
                let max_age = limits_for(self.config, route.and_then(Route::sub)).max_age_ms;
                attempt::give_up(&mut job, "expired", url.to_string(), max_age)
            }
            (_, None) => attempt::give_up(&mut job, "subscription-removed", url.to_string(), 0),
            (_, Some(Route::Hold)) => {
                queue.requeue(&key)?;
                done.meta = Some(job.meta);
                return Ok(());
            }
            (_, Some(Route::DryRun { sub })) => attempt::dry_run(&mut job, sub, url),
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
                let agent = self.agents.for_subscription(sub);
                let attempted = attempt::attempt(
                    agent,
                    &mut job,
                    sub,
                    url,
                    secret.as_ref(),
                    previous.as_ref(),
                );
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
        match queue.settle(&key, &job).map_err(SettleError::of) {
            Ok(()) => {}
            // Settled, then a later step failed: reported, never requeued
            // (the job would be both settled and pending, and sent again).
            Err(after @ SettleError::After(_)) => {
                let e = anyhow::Error::from(after);
                done.disk_full = is_disk_full(&e);
                done.error = Some(format!("{e:#}"));
            }
            Err(SettleError::Before(e)) => {
                // Put the job back as it was, so it is tried again (sent
                // again if this attempt got through: at-least-once); if
                // even that fails it stays in active/ until a drain
                // recovers it.
                if queue.requeue(&key).is_ok() {
                    done.requeued = true;
                }
                return Err(e);
            }
        }
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

/// How long the watcher waits for news before it checks whether the run ended.
const WATCH_TICK: Duration = Duration::from_millis(100);

/// The longest interval between two looks at pending/ (with a big backlog).
const MAX_LOOK_EVERY: Duration = Duration::from_millis(250);

/// How often `drain --watch` holds its SPECs' evidence under the cap (a
/// one-shot drain does it as it lets go of each SPEC).
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// What the coordinator and the workers share.
struct Shared<'r> {
    core: Mutex<Core<'r>>,
    /// The queue told of new jobs: look now, not at the next poll.
    poked: std::sync::atomic::AtomicBool,
    /// Wakes sleeping workers: new jobs, a freed share, the end of the run.
    work: Condvar,
    /// Wakes the coordinator: the last request in flight finished.
    idle: Condvar,
}

impl<'r> Shared<'r> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Core<'r>> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The scheduler and the run's bookkeeping, behind one mutex. Only the
/// holder reports events, so they are never interleaved.
struct Core<'r> {
    sched: Scheduler,
    circuits: HashMap<String, Circuit>,
    /// Circuit read errors already reported (each once).
    circuit_errors: HashSet<String>,
    in_flight: usize,
    /// Workers waiting for a job.
    sleeping: usize,
    /// Delivery ids left pending because their subscription cannot send.
    held: HashSet<String>,
    /// New jobs may be handed out.
    accepting: bool,
    /// Workers stop.
    exiting: bool,
    /// Outcomes cannot be recorded (a full disk, a broken spool): take no
    /// more jobs.
    cannot_record: bool,
    summary: Summary,
    report: &'r mut (dyn FnMut(&Event) + Send),
}

impl Core<'_> {
    /// Takes in what a refresh of the queue found. Returns whether workers
    /// may now have something to do (jobs came or went, a circuit changed).
    fn apply(
        &mut self,
        drainer: &Drainer<'_>,
        changes: Changes,
        circuits: Vec<(String, Result<Circuit>)>,
    ) -> bool {
        let mut changed = !changes.added.is_empty() || !changes.removed.is_empty();
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
            self.offer(drainer, key, &meta);
        }
        for (sub, circuit) in circuits {
            match circuit {
                Ok(c) => {
                    let before = self.circuits.insert(sub, c.clone());
                    changed |= before.is_none_or(|b| b != c);
                }
                Err(e) => {
                    let message = format!("{e:#}");
                    if self.circuit_errors.insert(message.clone()) {
                        self.error(message);
                    }
                }
            }
        }
        changed
    }

    /// Adds a pending job to the scheduler if this run delivers it.
    fn offer(&mut self, drainer: &Drainer<'_>, key: JobKey, meta: &Meta) {
        if !drainer.wanted(meta) {
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
        self.sched.add(Waiting {
            key,
            subscription: meta.subscription.clone(),
            due_at_ms: meta.next_attempt_at_ms,
            sequence: meta.sequence,
            created_at_ms: meta.queued_at(),
        });
    }

    fn set_gates(&mut self, now: u64) {
        for (sub, circuit) in &self.circuits {
            self.sched.set_gate(sub, circuit.allows(now));
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
    /// shared state (another drain may be probing).
    fn take<Q: Queue>(&mut self, drainer: &Drainer<'_>, queue: &Q) -> Option<Work> {
        loop {
            let now = clock::now_ms();
            self.set_gates(now);
            let pick = self.sched.next(now)?;
            let sub = pick.job.subscription.clone();
            let clean = self
                .circuits
                .get(&sub)
                .is_none_or(|c| *c == Circuit::default());
            if pick.kind != Kind::Probe {
                self.in_flight += 1;
                return Some(Work {
                    pick,
                    clean,
                    probing: None,
                });
            }
            let timeout = drainer.timeout_of(&sub);
            let claimed = queue.update_circuit(&sub, &mut |c| {
                c.start_probe(now, timeout.saturating_add(1000))
            });
            match claimed {
                Ok((Some(t), circuit)) => {
                    self.circuits.insert(sub.clone(), circuit.clone());
                    (self.report)(&Event::Circuit {
                        subscription: sub,
                        transition: t,
                        circuit: circuit.clone(),
                    });
                    self.in_flight += 1;
                    return Some(Work {
                        pick,
                        clean: false,
                        probing: Some(circuit),
                    });
                }
                Ok((None, circuit)) => {
                    // Another drain probes: wait for its answer.
                    self.sched.done(&pick.job.key, pick.kind);
                    self.sched.add(pick.job);
                    self.sched.set_gate(&sub, circuit.allows(now));
                    self.circuits.insert(sub, circuit);
                }
                Err(e) => {
                    self.sched.done(&pick.job.key, pick.kind);
                    self.sched.add(pick.job);
                    self.sched.set_gate(
                        &sub,
                        crate::circuit::Allow::Wait(Some(now + POLL.as_millis() as u64)),
                    );
                    let message = format!("{e:#}");
                    if self.circuit_errors.insert(message.clone()) {
                        self.error(message);
                    }
                }
            }
        }
    }

    fn finish(&mut self, drainer: &Drainer<'_>, done: Done) {
        self.in_flight -= 1;
        self.sched.done(&done.pick.job.key, done.pick.kind);
        if let Some(q) = done.quarantined {
            self.summary.quarantined += 1;
            (self.report)(&Event::Quarantined(q));
        }
        if let Some(error) = done.error {
            self.error(error);
        }
        if done.disk_full && !self.cannot_record {
            self.stop_for_full_disk();
        } else if done.requeued && !self.cannot_record {
            // An outcome could not be recorded (the job is back in pending):
            // sending more would only send them again and again.
            self.cannot_record = true;
            self.accepting = false;
            self.error(format!(
                "could not record the outcome of {} in the spool: stopped taking jobs; fix the spool, then run `spec-notify drain` (the job is back in pending)",
                done.pick.job.key.name
            ));
        }
        for record in done.records {
            self.summary.count(&record, drainer.options.only.is_some());
            (self.report)(&Event::Attempt(record));
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
        if done.requeued {
            // Back in pending with its old metadata: the next refresh
            // offers it again.
            return;
        }
        let Some(meta) = done.meta else { return };
        match meta.state {
            State::Pending => {
                let key = done.pick.job.key;
                self.offer(drainer, key, &meta);
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

    fn stop_for_full_disk(&mut self) {
        self.cannot_record = true;
        self.accepting = false;
        self.error(
            "the disk holding the spool or the evidence is full (or under 1 MiB free): stopped taking jobs, so no request goes out whose outcome cannot be recorded; free space, then run `spec-notify drain` (jobs left in active/ go back to pending)"
                .into(),
        );
    }

    /// Reports an error each time; the summary keeps each message once (a
    /// `drain --watch` meeting the same error every look must not grow).
    fn error(&mut self, message: String) {
        (self.report)(&Event::Error(message.clone()));
        if !self.summary.errors.contains(&message) {
            self.summary.errors.push(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config with its spool and evidence under `dir` and one subscription.
    fn config_with(dir: &std::path::Path, subscription: &str) -> Config {
        let text = format!(
            "[spec_ops.webhooks]\nenabled = true\nauto_drain = false\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n[[spec_ops.webhooks.subscriptions]]\n{subscription}",
            dir.display()
        );
        crate::config::parse(&text, &dir.join("config.toml")).unwrap()
    }

    /// Subscription `dry`: logs, never sends.
    fn config(dir: &std::path::Path) -> Config {
        config_with(
            dir,
            "id = \"dry\"\nurl = \"https://example.com/hook\"\nsecret_env = \"UNSET_FOR_DRY_RUN\"\ndry_run = true\n",
        )
    }

    fn spool_jobs(config: &Config, n: u64) -> Vec<String> {
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
