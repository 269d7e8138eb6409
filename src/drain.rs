//! The drain engine: becomes the one drain serving each SPEC (drain.alive),
//! recovers what a dead drain left behind, delivers due jobs on up to
//! `max_concurrency` threads sharing one HTTP agent, settles each job
//! (delivered, retry, dead), logs every attempt as evidence, and waits for
//! retries falling due. It takes drain.lock only while it moves jobs, so
//! replay and discard never wait for a backoff.
//!
//! Lost wake-ups: emit starts no drain while a drain serves the SPEC, and a
//! serving drain looks at pending/ every [`POLL`]. It stops serving a SPEC
//! only when nothing routable is pending (or the run ends), and after letting
//! go it looks once more: a job that arrived in between is due, and the drain
//! serves the SPEC again (or another drain does, and will see the job).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;
use serde_json::json;

use crate::clock;
use crate::config::{Config, Subscription};
use crate::deliver::{self, Answer, AttemptId};
use crate::evidence::{Evidence, Outcome, Record, excerpt};
use crate::retry::{self, Verdict};
use crate::sign::Secret;
use crate::spool::{AliveLock, DrainLock, Job, Meta, SpecSpool, Spool, State};
use crate::url::redact_url;

/// How often a waiting drain looks for new or newly due jobs.
const POLL: Duration = Duration::from_millis(20);
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
    /// Longest wait for retries falling due (not with `watch`).
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

/// What a run did.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub delivered: u64,
    pub retrying: u64,
    pub dead: u64,
    pub dry_run: u64,
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
        if self.held > 0 {
            line.push_str(&format!(", held {} (see above)", self.held));
        }
        if self.quarantined > 0 {
            line.push_str(&format!(", quarantined {}", self.quarantined));
        }
        line
    }
}

/// What this run can do with a subscription's jobs.
enum Route<'a> {
    Send {
        sub: &'a Subscription,
        secret: Secret,
        previous: Option<Secret>,
    },
    DryRun {
        sub: &'a Subscription,
    },
    /// Leave pending (missing secret, inactive): the reason is reported once.
    Hold,
}

fn routes(config: &Config) -> (HashMap<&str, Route<'_>>, Vec<String>) {
    let mut routes = HashMap::new();
    let mut problems = Vec::new();
    for sub in &config.subscriptions {
        let route = match (sub.active, sub.dry_run) {
            (false, _) => Route::Hold,
            (true, true) => Route::DryRun { sub },
            (true, false) => match sub.signing_secrets() {
                Ok((secret, previous)) => Route::Send {
                    sub,
                    secret,
                    previous,
                },
                Err(problem) => {
                    problems.push(format!("{problem}; its jobs stay pending"));
                    Route::Hold
                }
            },
        };
        routes.insert(sub.id.as_str(), route);
    }
    (routes, problems)
}

/// A SPEC this drain serves, with its pending jobs' metadata.
struct Held {
    spool: SpecSpool,
    evidence: Evidence,
    _alive: AliveLock,
    pending: HashMap<String, Meta>,
}

pub struct Drainer<'a> {
    config: &'a Config,
    options: Options,
    stop: Stop,
    agent: ureq::Agent,
    routes: HashMap<&'a str, Route<'a>>,
    held: BTreeMap<String, Held>,
    summary: Mutex<Summary>,
    held_jobs: Mutex<HashSet<String>>,
    /// SPECs whose stale tmp files this run already removed.
    swept: HashSet<String>,
}

/// What one pass found.
#[derive(Default)]
struct Pass {
    /// Earliest next attempt among held SPECs' routable pending jobs.
    waiting: Option<u64>,
    /// A job became due after a lock was released: pass again.
    dirty: bool,
}

impl<'a> Drainer<'a> {
    pub fn new(config: &'a Config, options: Options, stop: Stop) -> Drainer<'a> {
        let (routes, problems) = routes(config);
        let summary = Summary {
            problems,
            ..Summary::default()
        };
        Drainer {
            config,
            options,
            stop,
            agent: deliver::agent(config.max_concurrency),
            routes,
            held: BTreeMap::new(),
            summary: Mutex::new(summary),
            held_jobs: Mutex::new(HashSet::new()),
            swept: HashSet::new(),
        }
    }

    /// Runs until done (see [`Options`]) or stopped, and reports.
    pub fn run(mut self) -> Result<Summary> {
        let max_time = self.options.max_time.min(MAX_RUN);
        let deadline = Instant::now()
            .checked_add(max_time)
            .unwrap_or_else(Instant::now);
        loop {
            let stopping = self.stop.signal().is_some();
            let timed_out = !self.options.watch && Instant::now() >= deadline;
            let exiting = stopping || self.options.once || timed_out;
            let pass = self.pass(exiting)?;
            // A job that arrived while we served its SPEC started no drain:
            // deliver it before leaving, however often that happens.
            if pass.dirty && !stopping {
                continue;
            }
            if exiting || (!self.options.watch && pass.waiting.is_none()) {
                break;
            }
            let now = clock::now_ms();
            let nap = pass.waiting.map_or(POLL, |at| {
                Duration::from_millis(at.saturating_sub(now)).min(POLL)
            });
            std::thread::sleep(nap.max(Duration::from_millis(1)));
        }
        self.release_all();
        let mut summary = self.summary.into_inner().unwrap_or_else(|e| e.into_inner());
        summary.held = self.held_jobs.into_inner().map_or(0, |h| h.len() as u64);
        summary.stopped_by = self.stop.signal();
        Ok(summary)
    }

    fn specs(&self) -> Result<Vec<String>> {
        match &self.options.spec {
            Some(spec) => Ok(vec![spec.clone()]),
            None => Spool::new(&self.config.spool_dir).specs(),
        }
    }

    /// Delivers every due job of every SPEC; releases locks where nothing
    /// routable is left (or all of them when `exiting`).
    fn pass(&mut self, exiting: bool) -> Result<Pass> {
        let mut pass = Pass::default();
        for spec in self.specs()? {
            if self.stop.signal().is_some() {
                break;
            }
            if !self.hold(&spec)? {
                continue;
            }
            self.deliver_due(&spec)?;
            let waiting = self.next_wait(&spec);
            if exiting || waiting.is_none() {
                pass.dirty |= self.release(&spec)?;
            } else {
                pass.waiting = match (pass.waiting, waiting) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(pass)
    }

    /// Serves the SPEC if no other drain does. False if another drain serves
    /// it or there is nothing pending to serve it for.
    fn hold(&mut self, spec: &str) -> Result<bool> {
        if let Some(held) = self.held.get_mut(spec) {
            refresh(held, &self.summary)?;
            return Ok(true);
        }
        let spool = Spool::new(&self.config.spool_dir).spec(spec);
        if spool.count(State::Pending)? == 0 && spool.count(State::Active)? == 0 {
            return Ok(false);
        }
        let Some(alive) = spool.try_serve()? else {
            self.summary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .busy
                .push(spec.to_string());
            return Ok(false);
        };
        {
            let lock = spool.lock_drain()?;
            let recovered = spool.recover(&lock)?;
            if self.swept.insert(spec.to_string()) {
                spool.sweep_tmp(&lock, clock::now_ms());
            }
            self.summary
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recovered += recovered as u64;
        }
        let evidence = Evidence::new(
            self.config.evidence_for(spec),
            self.config.max_evidence_bytes,
        );
        let mut held = Held {
            spool,
            evidence,
            _alive: alive,
            pending: HashMap::new(),
        };
        refresh(&mut held, &self.summary)?;
        self.held.insert(spec.to_string(), held);
        Ok(true)
    }

    /// Stops serving a SPEC after trimming its footprint; true if a job is
    /// due right after (it arrived while we served the SPEC).
    fn release(&mut self, spec: &str) -> Result<bool> {
        let Some(held) = self.held.remove(spec) else {
            return Ok(false);
        };
        let trimmed = held
            .spool
            .lock_drain()
            .and_then(|lock| held.evidence.enforce_cap(&held.spool, &lock));
        if let Err(e) = trimmed {
            self.error(format!("{e:#}"));
        }
        let spool = held.spool.clone();
        drop(held);
        let (names, _) = spool.names(State::Pending)?;
        let scan = spool.scan_names(State::Pending, names);
        let now = clock::now_ms();
        Ok(scan
            .entries
            .iter()
            .any(|e| self.wanted(&e.meta) && e.meta.next_attempt_at_ms <= now))
    }

    fn release_all(&mut self) {
        let specs: Vec<String> = self.held.keys().cloned().collect();
        for spec in specs {
            if let Err(e) = self.release(&spec) {
                self.error(format!("{e:#}"));
            }
        }
    }

    /// Whether this run should deliver a job now or later (routable and, for
    /// replay, one of the chosen ids). Held jobs are counted once.
    fn wanted(&self, meta: &Meta) -> bool {
        if self
            .options
            .only
            .as_ref()
            .is_some_and(|only| !only.contains(&meta.delivery_id))
        {
            return false;
        }
        match self.routes.get(meta.subscription.as_str()) {
            Some(Route::Hold) => {
                self.held_jobs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(meta.delivery_id.clone());
                false
            }
            _ => true,
        }
    }

    fn next_wait(&self, spec: &str) -> Option<u64> {
        let held = self.held.get(spec)?;
        held.pending
            .values()
            .filter(|m| self.wanted(m))
            .map(|m| m.next_attempt_at_ms)
            .min()
    }

    /// Delivers due jobs until none is due (new ones may arrive meanwhile).
    fn deliver_due(&mut self, spec: &str) -> Result<()> {
        loop {
            let Some(held) = self.held.get(spec) else {
                return Ok(());
            };
            let now = clock::now_ms();
            let mut due: Vec<&Meta> = held
                .pending
                .values()
                .filter(|m| m.next_attempt_at_ms <= now && self.wanted(m))
                .collect();
            if due.is_empty() || self.stop.signal().is_some() {
                return Ok(());
            }
            due.sort_by_key(|m| (m.sequence, m.subscription.clone()));
            let names: Vec<String> = due.iter().map(|m| m.file_name()).collect();
            let lock = held.spool.lock_drain()?;
            let settled = self.deliver_batch(held, &lock, names);
            drop(lock);
            let held = self.held.get_mut(spec).expect("held above");
            for (name, meta) in settled {
                match meta {
                    Some(meta) if meta.state == State::Pending => held.pending.insert(name, meta),
                    _ => held.pending.remove(&name),
                };
            }
            refresh(held, &self.summary)?;
        }
    }

    /// Sends jobs on up to `max_concurrency` threads. Returns each job's new
    /// metadata (`None` if it vanished or failed to settle).
    fn deliver_batch(
        &self,
        held: &Held,
        lock: &DrainLock,
        names: Vec<String>,
    ) -> Vec<(String, Option<Meta>)> {
        let workers = self.config.max_concurrency.min(names.len()).max(1);
        let queue = Mutex::new(names.into_iter());
        let results = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    loop {
                        if self.stop.signal().is_some() {
                            break;
                        }
                        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                        let Some(name) = next else { break };
                        let result = self.process(held, lock, &name).unwrap_or_else(|e| {
                            self.error(format!("{e:#}"));
                            None
                        });
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((name, result));
                    }
                });
            }
        });
        results.into_inner().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims, sends and settles one job.
    fn process(&self, held: &Held, lock: &DrainLock, name: &str) -> Result<Option<Meta>> {
        let Some(mut job) = held.spool.claim(lock, name)? else {
            return Ok(None);
        };
        let record = match self.routes.get(job.meta.subscription.as_str()) {
            Some(Route::Send {
                sub,
                secret,
                previous,
            }) => self.attempt(&mut job, sub, secret, previous.as_ref()),
            Some(Route::DryRun { sub }) => dry_run(&mut job, sub),
            Some(Route::Hold) => {
                held.spool.unclaim(lock, name)?;
                return Ok(Some(job.meta));
            }
            None => removed_subscription(&mut job),
        };
        // Evidence first: a crash before settling repeats the attempt, and
        // the log shows both.
        if let Err(e) = held.evidence.append(std::slice::from_ref(&record)) {
            self.error(format!("{e:#}"));
        }
        held.spool.settle(lock, &job)?;
        self.count(&record);
        Ok(Some(job.meta))
    }

    fn attempt(
        &self,
        job: &mut Job,
        sub: &Subscription,
        secret: &Secret,
        previous: Option<&Secret>,
    ) -> Record {
        let attempt = job.meta.attempts + 1;
        let started = clock::now_ms();
        let id = attempt_id(&job.meta, attempt, started);
        let timeout = Duration::from_millis(sub.retry.per_request_timeout_ms);
        let (answer, latency) = match deliver::headers(sub, Some((secret, previous)), id, &job.body)
        {
            Ok(headers) => deliver::send(&self.agent, &sub.url, &headers, &job.body, timeout),
            Err(e) => (Answer::Failed { error: e }, Duration::ZERO),
        };
        let now = clock::now_ms();
        let verdict = retry::decide(&sub.retry, attempt, &answer, now, fastrand::f64());
        apply(job, &answer, &verdict, attempt, started, now, sub);
        let mut record = record_for(job, sub, attempt, started);
        record.status = answer.status();
        record.error = answer.error().map(String::from);
        record.latency_ms = Some(latency.as_millis() as u64);
        record.response_body = Some(excerpt(answer.body())).filter(|b| !b.is_empty());
        record.outcome = match verdict {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Retry { at_ms } => {
                record.next_attempt_at = Some(clock::rfc3339(at_ms));
                Outcome::Retry
            }
            Verdict::Dead { .. } => Outcome::Dead,
        };
        record
    }

    fn count(&self, record: &Record) {
        let mut s = self.summary.lock().unwrap_or_else(|e| e.into_inner());
        match record.outcome {
            Outcome::Delivered => s.delivered += 1,
            Outcome::Retry => s.retrying += 1,
            Outcome::Dead => s.dead += 1,
            Outcome::DryRun => s.dry_run += 1,
            _ => {}
        }
        s.outcomes
            .insert(record.delivery_id.clone(), record.outcome);
    }

    fn error(&self, message: String) {
        eprintln!("spec-notify: error: {message}");
        self.summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .errors
            .push(message);
    }
}

/// Brings a held SPEC's view of pending/ up to date: reads metadata of new
/// files, forgets vanished ones, quarantines unreadable ones.
fn refresh(held: &mut Held, summary: &Mutex<Summary>) -> Result<()> {
    let (names, strays) = held.spool.names(State::Pending)?;
    let present: HashSet<&String> = names.iter().collect();
    held.pending.retain(|name, _| present.contains(name));
    let new: Vec<String> = names
        .iter()
        .filter(|n| !held.pending.contains_key(*n))
        .cloned()
        .collect();
    let mut scan = held.spool.scan_names(State::Pending, new);
    for entry in scan.entries {
        held.pending.insert(entry.name, entry.meta);
    }
    scan.unreadable
        .extend(
            strays
                .into_iter()
                .filter(|p| !p.is_dir())
                .map(|path| crate::spool::Unreadable {
                    path,
                    reason: "not a job file name".into(),
                }),
        );
    for error in scan.io_errors {
        let mut summary = summary.lock().unwrap_or_else(|e| e.into_inner());
        if !summary.errors.contains(&error) {
            eprintln!(
                "spec-notify: error: cannot read {error}; left in place, tried again next time"
            );
            summary.errors.push(error);
        }
    }
    let _lock = if scan.unreadable.is_empty() {
        None
    } else {
        Some(held.spool.lock_drain()?)
    };
    for bad in &scan.unreadable {
        let moved = held.spool.quarantine(bad)?;
        eprintln!(
            "spec-notify: warning: quarantined unreadable spool file `{}` ({}); it is now `{}`",
            bad.path.display(),
            bad.reason,
            moved.display()
        );
        summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .quarantined += 1;
    }
    Ok(())
}

/// Records the attempt's result in the job's metadata.
fn apply(
    job: &mut Job,
    answer: &Answer,
    verdict: &Verdict,
    attempt: u32,
    started: u64,
    now: u64,
    sub: &Subscription,
) {
    let m = &mut job.meta;
    m.attempts = attempt;
    m.last_attempt_at_ms = Some(started);
    m.last_status = answer.status();
    match verdict {
        Verdict::Delivered => {
            m.state = State::Delivered;
            m.last_error = None;
            m.finished_at_ms = Some(now);
        }
        Verdict::Retry { at_ms } => {
            m.state = State::Pending;
            m.last_error = Some(answer.describe());
            m.next_attempt_at_ms = *at_ms;
        }
        Verdict::Dead { reason } => {
            m.state = State::Dead;
            m.last_error = Some(answer.describe());
            m.dead_reason = Some((*reason).into());
            m.finished_at_ms = Some(now);
            m.hint = Some(retry::dead_hint(
                answer,
                attempt,
                sub,
                &m.spec,
                &m.delivery_id,
            ));
        }
    }
}

fn attempt_id(meta: &Meta, attempt: u32, at_ms: u64) -> AttemptId<'_> {
    AttemptId {
        delivery_id: &meta.delivery_id,
        event_type: &meta.event_type,
        idempotency_key: &meta.idempotency_key,
        attempt,
        timestamp: at_ms / 1000,
    }
}

fn record_for(job: &Job, sub: &Subscription, attempt: u32, at_ms: u64) -> Record {
    Record::for_job(
        &job.meta,
        redact_url(&sub.url),
        attempt,
        at_ms,
        Outcome::DryRun,
    )
}

/// A dry run: logs the would-be request (unsigned) and counts the job done.
fn dry_run(job: &mut Job, sub: &Subscription) -> Record {
    let now = clock::now_ms();
    let attempt = job.meta.attempts + 1;
    let id = attempt_id(&job.meta, attempt, now);
    let headers = deliver::headers(sub, None, id, &job.body).unwrap_or_default();
    let mut record = record_for(job, sub, attempt, now);
    record.request = Some(json!({
        "method": "POST",
        "url": redact_url(&sub.url),
        "headers": headers.into_iter().collect::<BTreeMap<_, _>>(),
        "body_bytes": job.body.len(),
        "note": "dry-run: not sent, not signed",
    }));
    job.meta.attempts = attempt;
    job.meta.last_attempt_at_ms = Some(now);
    job.meta.state = State::Delivered;
    job.meta.finished_at_ms = Some(now);
    job.meta.hint = Some("dry-run: logged, not sent".into());
    record
}

/// The job's subscription is no longer in the config: dead-letter it so an
/// operator can decide (re-add the subscription and replay, or discard).
fn removed_subscription(job: &mut Job) -> Record {
    let now = clock::now_ms();
    let m = &mut job.meta;
    m.state = State::Dead;
    m.dead_reason = Some("subscription-removed".into());
    m.last_error = Some(format!(
        "subscription `{}` is not in the config",
        m.subscription
    ));
    m.finished_at_ms = Some(now);
    m.hint = Some(format!(
        "add subscription `{}` back to the config and run `spec-notify replay {} --delivery-id {}`, or discard it",
        m.subscription, m.spec, m.delivery_id
    ));
    let mut record = Record::for_job(m, String::new(), m.attempts, now, Outcome::Dead);
    record.error = m.last_error.clone();
    record
}
