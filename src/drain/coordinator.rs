//! Running a [`Drainer`]: [`Drainer::run`] and [`Drainer::run_on`] start
//! the worker pool (and a watcher thread when the queue can tell of new
//! jobs), then the calling thread coordinates: it refreshes the queue every
//! [`POLL`] (less often with a big backlog, and only every
//! [`IDLE_LOOK_EVERY`] with nothing to do when the queue tells of new
//! jobs) or at once when told of new jobs, offering it the room left in the
//! active set; lets go of SPECs with nothing in the engine (and sets aside
//! ones whose jobs cannot go soon when others wait for a place); trims
//! evidence; and ends the run, handing jobs due that no drain serves over
//! to the command (`Summary::left_due`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::circuit::Circuit;
use crate::config::Subscription;

use super::drainer::{Drainer, limits_for};
use super::pool::{self, Core, Shared};
use super::queue::{Queue, SpoolQueue};
use super::run::{Event, MAX_LOOK_EVERY, POLL, Summary};
use super::scheduler::{HORIZON_MS, Scheduler};

/// With nothing to do and a queue that tells of new jobs, how often the
/// coordinator looks anyway (gates, the slow sweep of idle folders).
pub const IDLE_LOOK_EVERY: Duration = Duration::from_secs(1);

/// `--max-time` beyond this is taken as this (and cannot overflow a clock).
const MAX_RUN: Duration = Duration::from_secs(366 * 24 * 3600);
/// How long the watcher waits for news before it checks whether the run ended.
const WATCH_TICK: Duration = Duration::from_millis(100);

/// How often `drain --watch` holds its SPECs' evidence under the cap (a
/// one-shot drain does it as it lets go of each SPEC).
const TRIM_EVERY: Duration = Duration::from_secs(10);

impl Drainer<'_> {
    /// Runs on the local spool until done (see [`super::Options`]) or stopped;
    /// `report` sees each event as it happens.
    pub fn run(self, report: &mut (dyn FnMut(&Event) + Send)) -> Result<Summary> {
        let queue = SpoolQueue::for_run(
            self.config,
            self.options.spec.clone(),
            self.time.clone(),
            self.plan,
        );
        self.run_on(&queue, report)
    }

    /// Runs on any queue backend: the calling thread refreshes the queue
    /// and decides when the run ends; the plan's workers each take
    /// the next job from the shared scheduler the moment they are free.
    pub fn run_on<Q: Queue>(
        &self,
        queue: &Q,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Summary> {
        let workers = self.plan.workers.max(1);
        let max_time = self.options.max_time.min(MAX_RUN);
        let mut sched = Scheduler::new();
        for sub in &self.config.subscriptions {
            sched.configure(&sub.id, limits_for(self.config, Some(sub)));
        }
        // Subscriptions only some SPECs have: their first definition's limits.
        let only_some: Vec<&Subscription> = self
            .config
            .every_subscription()
            .map(|(_, s)| s)
            .filter(|s| self.config.subscription(&s.id).is_none())
            .collect();
        for sub in only_some.into_iter().rev() {
            sched.configure(&sub.id, limits_for(self.config, Some(sub)));
        }
        let shared = Shared::new(Core::new(sched, self, report));
        let deadline = Instant::now()
            .checked_add(max_time)
            .unwrap_or_else(Instant::now);
        let result = std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| pool::worker(self, queue, &shared));
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
        let now = self.time.now();
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
        // Off duty: jobs that arrived in SPECs nobody serves since the last
        // look had no drain started for them.
        for (key, meta) in queue.let_go() {
            if self.sendable(&meta) && !core.summary.left_due.contains(&key.spec) {
                core.summary.left_due.push(key.spec);
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
                let room = {
                    let core = shared.lock();
                    core.sched.room(core.capacity)
                };
                let changes = queue.refresh_up_to(room)?;
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
            let more_to_come = queue.more_to_come();
            let starved = queue.starved();
            look_every = if core.sched.is_empty() && queue.watches() && !more_to_come {
                // Nothing to do: the queue tells of new jobs.
                IDLE_LOOK_EVERY
            } else {
                (POLL * (core.sched.waiting_len() / 1000).max(1) as u32).min(MAX_LOOK_EVERY)
            };
            let mut found = false;
            if let Some((changes, circuits, can_record)) = seen {
                found = core.apply(self, queue, changes, circuits);
                if !can_record && !core.cannot_record {
                    core.stop_for_full_disk();
                }
            }
            let now = self.time.now();
            core.set_gates(self, now);
            let stopping = self.stop.signal().is_some();
            let late = !options.watch && Instant::now() >= deadline;
            if stopping || late || core.cannot_record {
                core.accepting = false;
            }
            if options.once && core.in_flight == 0 && !core.sched.has_due(now) && !more_to_come {
                core.accepting = false;
            }
            // SPECs the engine holds nothing of are let go of (their
            // drain.alive and log closed); with SPECs waiting for a place,
            // so are those whose jobs cannot go soon (`--once`: now).
            let served = queue.served();
            let idle_specs: Vec<String> = served
                .iter()
                .filter(|s| !core.sched.has_spec(s))
                .cloned()
                .collect();
            let soon = if options.once {
                now
            } else {
                now.saturating_add(HORIZON_MS)
            };
            let set_aside: Vec<(String, u64)> = served
                .iter()
                .filter(|s| core.sched.has_spec(s) && !core.sched.busy_by(s, soon))
                .take(starved)
                .cloned()
                .collect::<Vec<_>>()
                .into_iter()
                .map(|s| {
                    let until = core.sched.remove_spec(&s).unwrap_or(u64::MAX);
                    (s, until)
                })
                .collect();
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
                        && (core.sched.waiting_len() == 0 || nothing_before_deadline)
                        && !more_to_come));
            // Workers wake on their own when a waiting job falls due; they
            // need telling only of what a look found, or that taking stops.
            let tell_workers = found || !core.accepting || done;
            drop(core);
            if tell_workers {
                shared.work.notify_all();
            }
            for (spec, until) in set_aside {
                if let Err(e) = queue.set_aside(&spec, until) {
                    shared.lock().error(format!("{e:#}"));
                }
            }
            // Idle SPECs are let go of now; a job that arrived meanwhile is
            // served again at once.
            let mut arrived_due = false;
            for spec in idle_specs {
                match queue.idle(&spec) {
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
}
