//! The drain's scheduler, as a value: which waiting job goes out next.
//! No files, no clock, no threads: time is a parameter and the shell in
//! `drain/mod.rs` does the I/O (the way Postfix's qmgr keeps one in-memory
//! queue per destination).
//!
//! - One queue across every SPEC a drain serves, ordered per subscription by
//!   due time, then sequence.
//! - Subscriptions with due jobs are served round-robin, each with at most
//!   `max_in_flight` requests at once, so one slow endpoint never takes every
//!   worker.
//! - A subscription may have a rate (`1/s`): its jobs wait for their turn.
//! - Its gate (circuit breaker, pause) may hold its jobs, or let exactly one
//!   probe out.
//! - A job that has waited longer than its subscription's `max_age` is
//!   handed out to be expired, whatever the gates say.
//! - It holds a bounded active set (Postfix's `qmgr_message_active_limit`):
//!   the shell offers it at most the room left ([`Scheduler::room`]) and
//!   asks [`Scheduler::admits`] whether a job that cannot go out soon may
//!   take a place, so that jobs waiting for a distant retry or a held
//!   subscription never fill more than half of it; the others stay on disk
//!   until they could go.
//!
//! - A FIFO subscription (`ordering = "fifo"`) keeps a line per SPEC
//!   ([`Line`]): only its lowest sequence waits in the lane, one request in
//!   flight at a time; its successors wait behind it without ageing, and
//!   take at most the parked half of the active set. A line may be held (a
//!   dead head under `fifo_on_dead = "hold"`, or an earlier job found on
//!   disk): it sends nothing until the hold ends or an earlier job arrives.
//!
//! Times are on the drain's own time line (`clock::Steady`): a step of the
//! wall clock changes no wait here.

use std::collections::{BTreeSet, HashMap};

use crate::circuit::Allow;

/// Identifies a job across SPECs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub spec: String,
    pub name: String,
}

/// A job waiting for its (next) attempt, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub key: JobKey,
    pub subscription: String,
    pub due_at_ms: u64,
    pub sequence: u64,
    /// When it entered the queue (emit or replay): its age for `max_age`.
    pub created_at_ms: u64,
    /// When this drain first saw it waiting.
    pub seen_ms: u64,
}

/// How far ahead a job counts as going out soon: one due later, or held by
/// its subscription's gate for longer, is parked (see [`Scheduler::admits`]).
pub const HORIZON_MS: u64 = 60_000;

/// What [`Scheduler::admits`] says of a job offered from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Leave it on disk; it could go out at this time at the earliest
    /// (`u64::MAX`: when its subscription's gate opens).
    Later(u64),
}

/// Per-subscription limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_in_flight: usize,
    /// Strict order per SPEC (`ordering = "fifo"`).
    pub fifo: bool,
    /// At most one request per this many ms (a rate of `n/window`).
    pub min_interval_ms: Option<u64>,
    pub max_age_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_in_flight: 1,
            fifo: false,
            min_interval_ms: None,
            max_age_ms: u64::MAX,
        }
    }
}

/// What to do with the job handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Send it.
    Send,
    /// Send it as the circuit's one probe.
    Probe,
    /// It waited longer than `max_age`: dead-letter it as `expired`.
    Expire,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub job: Waiting,
    pub kind: Kind,
}

/// One SPEC's jobs of a FIFO subscription.
#[derive(Debug, Default)]
struct Line {
    /// Every waiting job, by sequence.
    waiting: BTreeSet<(u64, JobKey)>,
    /// The head when it may go: it is in the lane's queues, with the age
    /// it is kept under there.
    promoted: Option<(JobKey, u64)>,
    /// A job of the line is in flight.
    busy: bool,
    /// Nothing goes before `until` unless a job of sequence `seq` or lower
    /// arrives: (until, seq).
    held: Option<(u64, u64)>,
    /// When the head last became the head: successors do not age.
    head_since: u64,
}

impl Line {
    /// Waiting jobs that cannot go until those ahead of them have.
    fn behind(&self) -> usize {
        self.waiting.len() - usize::from(self.promoted.is_some())
    }
}

#[derive(Debug, Default)]
struct Lane {
    limits: Limits,
    /// FIFO lines by SPEC (FIFO subscriptions only).
    lines: HashMap<String, Line>,
    gate: Option<Allow>,
    by_due: BTreeSet<(u64, u64, JobKey)>,
    by_age: BTreeSet<(u64, JobKey)>,
    in_flight: usize,
    next_send_at_ms: u64,
}

impl Lane {
    fn gate(&self) -> Allow {
        self.gate.unwrap_or(Allow::Send)
    }

    fn expired_head(&self, now_ms: u64) -> Option<&JobKey> {
        let (created, key) = self.by_age.first()?;
        (created.saturating_add(self.limits.max_age_ms) <= now_ms).then_some(key)
    }

    /// The head job if this lane may send it now.
    fn sendable(&self, now_ms: u64) -> Option<(&JobKey, Kind)> {
        let (due, _, key) = self.by_due.first()?;
        if *due > now_ms || now_ms < self.next_send_at_ms {
            return None;
        }
        match self.gate() {
            Allow::Send if self.in_flight < self.limits.max_in_flight.max(1) => {
                Some((key, Kind::Send))
            }
            Allow::Probe if self.in_flight == 0 => Some((key, Kind::Probe)),
            _ => None,
        }
    }

    /// Whether the head job is due and the gate would let it out (caps
    /// and rates aside: those only make it wait its turn).
    /// When a job due at `due` could go out as far as the gate says.
    fn opens_at(&self, due: u64) -> u64 {
        match self.gate() {
            Allow::Send | Allow::Probe => due,
            Allow::Wait(Some(at)) => due.max(at),
            Allow::Wait(None) => u64::MAX,
        }
    }

    /// When a FIFO line's next job could go: its first's time if it may go
    /// (now if one is in flight: it goes when that is done), the hold's end.
    fn line_opens(&self, line: &Line, jobs: &HashMap<JobKey, Waiting>, now_ms: u64) -> u64 {
        if let Some((until, _)) = line.held {
            return until;
        }
        if line.busy {
            return now_ms;
        }
        line.waiting
            .first()
            .and_then(|(_, key)| jobs.get(key))
            .map_or(now_ms, |head| self.opens_at(head.due_at_ms))
    }

    /// FIFO jobs behind their line's first in lines that could not go on
    /// by `at`.
    fn lines_parked_by(&self, jobs: &HashMap<JobKey, Waiting>, now_ms: u64, at: u64) -> usize {
        self.lines
            .values()
            .filter(|line| self.line_opens(line, jobs, now_ms) > at)
            .map(Line::behind)
            .sum()
    }

    /// Waiting jobs that could not go out by `at`.
    fn parked_by(&self, at: u64) -> usize {
        match self.gate() {
            Allow::Wait(None) => self.by_due.len(),
            Allow::Wait(Some(open)) if open > at => self.by_due.len(),
            _ => self
                .by_due
                .iter()
                .rev()
                .take_while(|(due, _, _)| *due > at)
                .count(),
        }
    }

    fn has_due(&self, now_ms: u64) -> bool {
        self.by_due
            .first()
            .is_some_and(|(due, _, _)| *due <= now_ms)
            && matches!(self.gate(), Allow::Send | Allow::Probe)
    }

    /// When this lane could next hand out a job on its own. A lane at its
    /// share has no such time: a request finishing frees it, and the shell
    /// hears of that.
    fn wake_at(&self) -> Option<u64> {
        let expiry = self
            .by_age
            .first()
            .map(|(created, _)| created.saturating_add(self.limits.max_age_ms));
        let full = match self.gate() {
            Allow::Probe => self.in_flight > 0,
            _ => self.in_flight >= self.limits.max_in_flight.max(1),
        };
        let send = match (self.by_due.first(), self.gate()) {
            (None, _) | (_, Allow::Wait(None)) => None,
            _ if full => None,
            (Some((due, _, _)), Allow::Wait(Some(at))) => Some(at.max(*due)),
            (Some((due, _, _)), Allow::Send | Allow::Probe) => Some(*due),
        }
        .map(|at| at.max(self.next_send_at_ms));
        [expiry, send].into_iter().flatten().min()
    }
}

#[derive(Debug, Default)]
pub struct Scheduler {
    lanes: HashMap<String, Lane>,
    /// Subscriptions in round-robin order; `turn` is the next one to look at.
    order: Vec<String>,
    turn: usize,
    jobs: HashMap<JobKey, Waiting>,
    in_flight: HashMap<JobKey, String>,
    /// Jobs seen waiting again while their attempt was still in flight (a
    /// replay the moment it settled): they wait once that attempt is done.
    again: HashMap<JobKey, Waiting>,
    /// Waiting plus in-flight jobs per SPEC.
    per_spec: HashMap<String, usize>,
    /// Held FIFO lines by when the hold ends: (until, subscription, SPEC).
    holds: BTreeSet<(u64, String, String)>,
}

impl Scheduler {
    pub fn new() -> Scheduler {
        Scheduler::default()
    }

    fn lane(&mut self, subscription: &str) -> &mut Lane {
        if !self.lanes.contains_key(subscription) {
            self.order.push(subscription.to_string());
            self.lanes.insert(subscription.to_string(), Lane::default());
        }
        self.lanes.get_mut(subscription).expect("inserted above")
    }

    pub fn configure(&mut self, subscription: &str, limits: Limits) {
        self.lane(subscription).limits = limits;
    }

    /// Sets what the subscription's circuit allows (the shell reads it from
    /// the shared state).
    pub fn set_gate(&mut self, subscription: &str, allow: Allow) {
        self.lane(subscription).gate = Some(allow);
    }

    /// Adds a waiting job, or updates it (a new due time after a retry). A
    /// job whose attempt is in flight waits once it is done.
    pub fn add(&mut self, job: Waiting) {
        if self.in_flight.contains_key(&job.key) {
            self.again.insert(job.key.clone(), job);
            return;
        }
        self.remove(&job.key);
        *self.per_spec.entry(job.key.spec.clone()).or_default() += 1;
        let lane = self.lane(&job.subscription);
        if lane.limits.fifo {
            let (sub, spec, seq) = (job.subscription.clone(), job.key.spec.clone(), job.sequence);
            let line = lane.lines.entry(spec.clone()).or_default();
            line.waiting.insert((seq, job.key.clone()));
            // An earlier job arrived (a replay, or the one the hold waited
            // for): the hold has done its work.
            if let Some((until, held_seq)) = line.held
                && seq <= held_seq
            {
                line.held = None;
                self.holds.remove(&(until, sub.clone(), spec.clone()));
            }
            self.jobs.insert(job.key.clone(), job);
            self.promote(&sub, &spec);
            return;
        }
        lane.by_due
            .insert((job.due_at_ms, job.sequence, job.key.clone()));
        lane.by_age.insert((job.created_at_ms, job.key.clone()));
        self.jobs.insert(job.key.clone(), job);
    }

    /// Puts a FIFO line's lowest job in its lane's queues if it may go
    /// (nothing of the line in flight, not held), and only it; forgets an
    /// empty line.
    fn promote(&mut self, sub: &str, spec: &str) {
        let Some(lane) = self.lanes.get_mut(sub) else {
            return;
        };
        let Some(line) = lane.lines.get_mut(spec) else {
            return;
        };
        if let Some((key, age)) = line.promoted.take()
            && let Some(job) = self.jobs.get(&key)
        {
            lane.by_due
                .remove(&(job.due_at_ms, job.sequence, key.clone()));
            lane.by_age.remove(&(age, key));
        }
        if !line.busy
            && line.held.is_none()
            && let Some((_, key)) = line.waiting.first()
            && let Some(job) = self.jobs.get(key)
        {
            // Its age counts from when it became the head at the earliest.
            let age = job.created_at_ms.max(line.head_since);
            lane.by_due
                .insert((job.due_at_ms, job.sequence, key.clone()));
            lane.by_age.insert((age, key.clone()));
            line.promoted = Some((key.clone(), age));
        }
        if line.waiting.is_empty() && !line.busy && line.held.is_none() {
            lane.lines.remove(spec);
        }
    }

    /// Holds a FIFO line: nothing of it goes before `until` (`u64::MAX`:
    /// never, on its own), or until a job of sequence `seq` or lower
    /// arrives (see [`Scheduler::add`]).
    pub fn hold(&mut self, subscription: &str, spec: &str, until: u64, seq: u64) {
        let lane = self.lane(subscription);
        if !lane.limits.fifo {
            return;
        }
        let line = lane.lines.entry(spec.to_string()).or_default();
        if let Some((before, _)) = line.held.replace((until, seq)) {
            self.holds
                .remove(&(before, subscription.to_string(), spec.to_string()));
        }
        self.holds
            .insert((until, subscription.to_string(), spec.to_string()));
        self.promote(subscription, spec);
    }

    /// Ends the holds whose time has come.
    pub fn end_holds(&mut self, now_ms: u64) {
        while let Some((until, sub, spec)) = self.holds.first().cloned() {
            if until > now_ms {
                break;
            }
            self.holds.pop_first();
            if let Some(line) = self
                .lanes
                .get_mut(&sub)
                .and_then(|lane| lane.lines.get_mut(&spec))
            {
                line.held = None;
            }
            self.promote(&sub, &spec);
        }
    }

    /// Forgets a waiting job (it vanished: replayed, discarded, shed).
    pub fn remove(&mut self, key: &JobKey) -> Option<Waiting> {
        self.again.remove(key);
        let job = self.jobs.get(key)?.clone();
        self.forget_spec(&key.spec);
        if let Some(lane) = self.lanes.get_mut(&job.subscription) {
            if let Some(line) = lane.lines.get_mut(&key.spec) {
                if line.promoted.as_ref().is_some_and(|(k, _)| k == key) {
                    // Out of the lane's queues first: promote() looks it up.
                    let (_, age) = line.promoted.take().expect("just seen");
                    lane.by_due
                        .remove(&(job.due_at_ms, job.sequence, key.clone()));
                    lane.by_age.remove(&(age, key.clone()));
                }
                line.waiting.remove(&(job.sequence, key.clone()));
                self.jobs.remove(key);
                self.promote(&job.subscription, &key.spec);
                return Some(job);
            }
            lane.by_due
                .remove(&(job.due_at_ms, job.sequence, key.clone()));
            lane.by_age.remove(&(job.created_at_ms, key.clone()));
        }
        self.jobs.remove(key);
        Some(job)
    }

    fn forget_spec(&mut self, spec: &str) {
        if let Some(n) = self.per_spec.get_mut(spec) {
            *n -= 1;
            if *n == 0 {
                self.per_spec.remove(spec);
            }
        }
    }

    /// Whether any job of `spec` is waiting or in flight.
    pub fn has_spec(&self, spec: &str) -> bool {
        self.per_spec.contains_key(spec)
    }

    pub fn contains(&self, key: &JobKey) -> bool {
        self.jobs.contains_key(key) || self.in_flight.contains_key(key)
    }

    pub fn waiting(&self) -> impl Iterator<Item = &Waiting> {
        self.jobs.values()
    }

    pub fn waiting_len(&self) -> usize {
        self.jobs.len()
    }

    pub fn in_flight_len(&self) -> usize {
        self.in_flight.len()
    }

    /// The next job to hand a free worker, or `None` if nothing may go now.
    pub fn next(&mut self, now_ms: u64) -> Option<Pick> {
        let count = self.order.len();
        for step in 0..count {
            let i = (self.turn + step) % count;
            let sub = &self.order[i];
            let lane = &self.lanes[sub];
            let found = match lane.expired_head(now_ms) {
                Some(key) => Some((key.clone(), Kind::Expire)),
                None => lane.sendable(now_ms).map(|(k, kind)| (k.clone(), kind)),
            };
            if let Some((key, kind)) = found {
                let sub = sub.clone();
                self.turn = (i + 1) % count;
                let job = self.take(&key, &sub, kind, now_ms);
                return Some(Pick { job, kind });
            }
        }
        None
    }

    fn take(&mut self, key: &JobKey, sub: &str, kind: Kind, now_ms: u64) -> Waiting {
        if let Some(line) = self
            .lanes
            .get_mut(sub)
            .and_then(|lane| lane.lines.get_mut(&key.spec))
        {
            // Its line sends nothing else until it is done.
            line.busy = true;
        }
        let job = self.remove(key).expect("picked from the waiting jobs");
        *self.per_spec.entry(key.spec.clone()).or_default() += 1;
        self.in_flight.insert(key.clone(), sub.to_string());
        let lane = self.lane(sub);
        if kind == Kind::Expire {
            return job;
        }
        lane.in_flight += 1;
        if let Some(interval) = lane.limits.min_interval_ms {
            lane.next_send_at_ms = now_ms.max(lane.next_send_at_ms).saturating_add(interval);
        }
        if kind == Kind::Probe {
            // One probe: nothing else until the shell says what the circuit allows.
            lane.gate = Some(Allow::Wait(None));
        }
        job
    }

    /// A handed-out job is finished with (settled, requeued or gone). If it
    /// is waiting again, the shell adds it back, or it was seen waiting
    /// again meanwhile (see [`Scheduler::add`]) and waits now.
    pub fn done(&mut self, key: &JobKey, kind: Kind, now_ms: u64) {
        let Some(sub) = self.in_flight.remove(key) else {
            return;
        };
        self.forget_spec(&key.spec);
        if let Some(lane) = self.lanes.get_mut(&sub) {
            if kind != Kind::Expire {
                lane.in_flight = lane.in_flight.saturating_sub(1);
            }
            if let Some(line) = lane.lines.get_mut(&key.spec) {
                // The next in line is the head from now: it ages from now.
                line.busy = false;
                line.head_since = now_ms;
            }
            self.promote(&sub, &key.spec);
        }
        if let Some(job) = self.again.remove(key) {
            self.add(job);
        }
    }

    /// Whether any waiting job is due and not held by its gate (it may still
    /// wait for its subscription's share or rate).
    pub fn has_due(&self, now_ms: u64) -> bool {
        self.lanes.values().any(|lane| lane.has_due(now_ms))
    }

    /// Whether [`Scheduler::next`] would hand out a job now.
    pub fn ready(&self, now_ms: u64) -> bool {
        self.lanes
            .values()
            .any(|lane| lane.expired_head(now_ms).is_some() || lane.sendable(now_ms).is_some())
    }

    /// [`Scheduler::has_due`] for one SPEC's jobs.
    pub fn has_due_in(&self, spec: &str, now_ms: u64) -> bool {
        self.jobs.values().any(|job| {
            job.key.spec == spec
                && job.due_at_ms <= now_ms
                && self.opens_of(job) <= now_ms
                && self
                    .lanes
                    .get(&job.subscription)
                    .is_some_and(|lane| matches!(lane.gate(), Allow::Send | Allow::Probe))
        })
    }

    /// The earliest time a waiting job may go out (not counting requests
    /// finishing, which free a worker or a subscription's share).
    pub fn wake_at(&self) -> Option<u64> {
        let hold = self.holds.first().map(|(until, _, _)| *until);
        self.lanes
            .values()
            .filter_map(Lane::wake_at)
            .chain(hold)
            .min()
    }

    /// When a waiting job could go out as far as its gate, and for a FIFO
    /// job its line, say (`u64::MAX`: not on its own).
    fn opens_of(&self, job: &Waiting) -> u64 {
        let Some(lane) = self.lanes.get(&job.subscription) else {
            return job.due_at_ms;
        };
        match lane.lines.get(&job.key.spec) {
            Some(line) if line.promoted.as_ref().is_none_or(|(k, _)| *k != job.key) => {
                match line.held {
                    // Held: the earliest it could go is when the hold ends.
                    Some((until, _)) => until,
                    None => u64::MAX,
                }
            }
            _ => lane.opens_at(job.due_at_ms),
        }
    }

    /// Jobs held: waiting plus in flight.
    pub fn len(&self) -> usize {
        self.jobs.len() + self.in_flight.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Places left in an active set of `capacity` jobs.
    pub fn room(&self, capacity: usize) -> usize {
        capacity.saturating_sub(self.len())
    }

    /// Whether a job offered from disk takes a place in an active set of
    /// `capacity` now: one that could go out within [`HORIZON_MS`] does
    /// (the shell offers no more than the room); one that could not does
    /// only while such parked jobs hold under half the set.
    pub fn admits(&self, job: &Waiting, now_ms: u64, capacity: usize) -> Admit {
        let opens = self
            .lanes
            .get(&job.subscription)
            .map_or(job.due_at_ms, |lane| {
                let own = lane.opens_at(job.due_at_ms);
                match lane.lines.get(&job.key.spec) {
                    // A FIFO job goes no sooner than its line does.
                    Some(line) => own.max(lane.line_opens(line, &self.jobs, now_ms)),
                    None => own,
                }
            });
        let horizon = now_ms.saturating_add(HORIZON_MS);
        if opens <= horizon || self.len() < capacity / 2 {
            return Admit::Yes;
        }
        let parked: usize = self
            .lanes
            .values()
            .map(|l| l.parked_by(horizon) + l.lines_parked_by(&self.jobs, now_ms, horizon))
            .sum();
        if parked < capacity / 2 {
            Admit::Yes
        } else {
            Admit::Later(opens)
        }
    }

    /// Forgets every waiting job of `spec` (they stay on disk) and returns
    /// when the first of them could go out (`u64::MAX`: when a gate opens).
    /// Jobs in flight stay.
    pub fn remove_spec(&mut self, spec: &str) -> Option<u64> {
        let keys: Vec<JobKey> = self
            .jobs
            .keys()
            .filter(|k| k.spec == spec)
            .cloned()
            .collect();
        // Measured before any goes: forgetting a line's first promotes the next.
        let first = keys
            .iter()
            .filter_map(|key| self.jobs.get(key))
            .map(|job| self.opens_of(job))
            .min();
        for key in keys {
            self.remove(&key);
        }
        first
    }

    /// Whether a job of `spec` is in flight, or could go out by `at`.
    pub fn busy_by(&self, spec: &str, at: u64) -> bool {
        self.in_flight.keys().any(|k| k.spec == spec)
            || self
                .jobs
                .values()
                .any(|job| job.key.spec == spec && self.opens_of(job) <= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: &str, seq: u64, sub: &str, due: u64) -> Waiting {
        Waiting {
            key: JobKey {
                spec: spec.into(),
                name: format!("{seq:012}-{sub}"),
            },
            subscription: sub.into(),
            due_at_ms: due,
            sequence: seq,
            created_at_ms: 0,
            seen_ms: 0,
        }
    }

    fn limits(max_in_flight: usize) -> Limits {
        Limits {
            max_in_flight,
            ..Limits::default()
        }
    }

    fn drain(s: &mut Scheduler, now: u64) -> Vec<Pick> {
        std::iter::from_fn(|| s.next(now)).collect()
    }

    fn fifo(max_in_flight: usize) -> Limits {
        Limits {
            max_in_flight,
            fifo: true,
            ..Limits::default()
        }
    }

    fn names(picks: &[Pick]) -> Vec<String> {
        picks.iter().map(|p| p.job.key.name.clone()).collect()
    }

    #[test]
    fn a_fifo_line_sends_its_lowest_sequence_one_at_a_time() {
        let mut s = Scheduler::new();
        s.configure("f", fifo(8));
        // Out of order, and the later ones due first.
        s.add(job("S", 3, "f", 0));
        s.add(job("S", 1, "f", 50));
        s.add(job("S", 2, "f", 0));
        s.add(job("T", 7, "f", 0));
        assert!(drain(&mut s, 10).iter().all(|p| p.job.key.spec == "T"));
        let first = drain(&mut s, 100);
        assert_eq!(names(&first), ["000000000001-f"], "one of S at a time");
        // A retry: the head waits again, later, and still goes first.
        s.done(&first[0].job.key, Kind::Send, 100);
        s.add(job("S", 1, "f", 500));
        assert!(drain(&mut s, 400).is_empty(), "its successors wait for it");
        let again = drain(&mut s, 500);
        assert_eq!(names(&again), ["000000000001-f"]);
        s.done(&again[0].job.key, Kind::Send, 500);
        let next = drain(&mut s, 500);
        assert_eq!(names(&next), ["000000000002-f"]);
        s.done(&next[0].job.key, Kind::Send, 501);
        assert_eq!(names(&drain(&mut s, 501)), ["000000000003-f"]);
    }

    #[test]
    fn successors_do_not_age_while_they_wait_for_their_head() {
        let mut s = Scheduler::new();
        s.configure(
            "f",
            Limits {
                max_age_ms: 1000,
                ..fifo(4)
            },
        );
        s.add(job("S", 1, "f", 0));
        s.add(job("S", 2, "f", 0));
        let head = s.next(0).unwrap();
        // The head retries for longer than max_age: it expires, its
        // successor, as old, does not.
        s.done(&head.job.key, Kind::Send, 10);
        s.add(job("S", 1, "f", 5000));
        let expired = s.next(1500).unwrap();
        assert_eq!((expired.kind, expired.job.sequence), (Kind::Expire, 1));
        s.done(&expired.job.key, Kind::Expire, 1500);
        let next = s.next(1500).unwrap();
        assert_eq!((next.kind, next.job.sequence), (Kind::Send, 2));
    }

    #[test]
    fn a_held_line_waits_until_an_earlier_job_arrives_or_its_time_comes() {
        let mut s = Scheduler::new();
        s.configure("f", fifo(4));
        s.configure("other", limits(4));
        s.add(job("S", 5, "f", 0));
        s.add(job("S", 6, "other", 0));
        s.hold("f", "S", 1000, 3);
        assert_eq!(
            names(&drain(&mut s, 0)),
            ["000000000006-other"],
            "other lines go on"
        );
        assert!(
            !s.has_due(0),
            "a held line is nothing a one-shot drain waits for"
        );
        assert_eq!(s.wake_at(), Some(1000));
        s.end_holds(999);
        assert!(s.next(999).is_none());
        // The job it waited for arrives: the hold ends, and it goes first.
        s.add(job("S", 3, "f", 0));
        assert_eq!(names(&drain(&mut s, 999)), ["000000000003-f"]);
        // Or the time comes.
        let mut s = Scheduler::new();
        s.configure("f", fifo(4));
        s.add(job("S", 5, "f", 0));
        s.hold("f", "S", 1000, 3);
        s.end_holds(1000);
        assert_eq!(names(&drain(&mut s, 1000)), ["000000000005-f"]);
    }

    #[test]
    fn fifo_successors_take_only_the_parked_half_of_the_active_set() {
        let mut s = Scheduler::new();
        s.configure("f", fifo(4));
        s.configure("other", limits(4));
        // S's first retries in an hour: the four behind it are parked.
        s.add(job("S", 0, "f", 3_600_000));
        for seq in 1..5 {
            s.add(job("S", seq, "f", 0));
        }
        let late = job("S", 9, "f", 0);
        assert_eq!(s.admits(&late, 0, 8), Admit::Later(3_600_000));
        assert_eq!(s.admits(&job("T", 1, "f", 0), 0, 8), Admit::Yes);
        assert_eq!(s.admits(&job("S", 1, "other", 0), 0, 8), Admit::Yes);
        // A line whose first goes now: the ones behind it go soon too.
        s.add(job("U", 1, "f", 0));
        assert_eq!(s.admits(&job("U", 2, "f", 0), 0, 8), Admit::Yes);
        // Forgetting the SPEC: its first could go in an hour.
        assert_eq!(s.remove_spec("S"), Some(3_600_000));
    }

    #[test]
    fn parked_jobs_take_at_most_half_the_active_set() {
        let mut s = Scheduler::new();
        s.configure("a", limits(10));
        s.configure("held", limits(10));
        s.set_gate("held", Allow::Wait(None));
        for seq in 0..5 {
            s.add(job("S", seq, "a", 1_000_000));
        }
        assert_eq!(s.room(10), 5);
        let soon = job("S", 50, "a", 0);
        let late = job("S", 51, "a", 1_000_000);
        let held = job("S", 52, "held", 0);
        assert_eq!(s.admits(&soon, 0, 10), Admit::Yes, "due now: always");
        assert_eq!(s.admits(&late, 0, 10), Admit::Later(1_000_000));
        assert_eq!(s.admits(&held, 0, 10), Admit::Later(u64::MAX));
        assert_eq!(s.admits(&late, 0, 100), Admit::Yes, "room for the parked");
        assert_eq!(s.admits(&late, 1_000_000, 10), Admit::Yes, "due by then");
        // A spec's waiting jobs leave all at once, saying when they could go.
        assert_eq!(s.remove_spec("S"), Some(1_000_000));
        assert_eq!(s.len(), 0);
        assert!(!s.has_spec("S"));
    }

    #[test]
    fn due_order_then_sequence_across_specs() {
        let mut s = Scheduler::new();
        s.configure("a", limits(10));
        s.add(job("S2", 1, "a", 50));
        s.add(job("S1", 9, "a", 10));
        s.add(job("S1", 3, "a", 50));
        s.add(job("S1", 4, "a", 500));
        let picks: Vec<_> = drain(&mut s, 100)
            .into_iter()
            .map(|p| (p.job.key.spec, p.job.key.name))
            .collect();
        assert_eq!(
            picks,
            [
                ("S1".into(), "000000000009-a".into()),
                ("S2".into(), "000000000001-a".to_string()),
                ("S1".into(), "000000000003-a".into())
            ]
        );
        assert_eq!(s.wake_at(), Some(500));
    }

    #[test]
    fn a_job_seen_waiting_while_in_flight_waits_once_its_attempt_is_done() {
        // Settled to dead/ and replayed before the worker reported: the
        // listing saw it pending while its attempt was still in flight.
        let mut s = Scheduler::new();
        s.configure("a", limits(1));
        s.add(job("S", 1, "a", 10));
        let first = s.next(100).expect("handed out");
        s.add(job("S", 1, "a", 20));
        assert!(s.next(100).is_none(), "not twice at once");
        s.done(&first.job.key, first.kind, 0);
        let again = s.next(100).expect("waits again after the attempt");
        assert_eq!(again.job.key, first.job.key);
        assert_eq!(again.job.due_at_ms, 20);
    }

    #[test]
    fn a_job_seen_again_then_gone_does_not_come_back_after_done() {
        let mut s = Scheduler::new();
        s.configure("a", limits(1));
        s.add(job("S", 1, "a", 10));
        let first = s.next(100).unwrap();
        s.add(job("S", 1, "a", 20));
        s.remove(&first.job.key);
        s.done(&first.job.key, first.kind, 0);
        assert_eq!(s.waiting_len(), 0);
        assert!(!s.has_spec("S"));
    }

    #[test]
    fn one_subscription_never_takes_more_than_its_share() {
        let mut s = Scheduler::new();
        s.configure("dead", limits(3));
        s.configure("ok", limits(3));
        for seq in 0..30 {
            s.add(job("S", seq, "dead", 0));
        }
        let dead: Vec<_> = drain(&mut s, 0);
        assert_eq!(dead.len(), 3, "capped at max_in_flight");
        // A healthy job arriving later goes out at once.
        s.add(job("S", 100, "ok", 0));
        let next = s.next(0).unwrap();
        assert_eq!(next.job.subscription, "ok");
        s.done(&dead[0].job.key, Kind::Send, 0);
        assert_eq!(s.next(0).unwrap().job.subscription, "dead");
    }

    #[test]
    fn subscriptions_take_turns() {
        let mut s = Scheduler::new();
        for sub in ["a", "b", "c"] {
            s.configure(sub, limits(100));
            for seq in 0..3 {
                s.add(job("S", seq, sub, 0));
            }
        }
        let subs: Vec<_> = drain(&mut s, 0)
            .into_iter()
            .map(|p| p.job.subscription)
            .collect();
        assert_eq!(subs, ["a", "b", "c", "a", "b", "c", "a", "b", "c"]);
    }

    #[test]
    fn a_rate_spaces_requests_and_jobs_wait_not_fail() {
        let mut s = Scheduler::new();
        s.configure(
            "chat",
            Limits {
                max_in_flight: 4,
                fifo: false,
                min_interval_ms: Some(1000),
                max_age_ms: u64::MAX,
            },
        );
        for seq in 0..3 {
            s.add(job("S", seq, "chat", 0));
        }
        assert_eq!(drain(&mut s, 0).len(), 1);
        assert_eq!(s.wake_at(), Some(1000));
        assert_eq!(drain(&mut s, 999).len(), 0);
        assert_eq!(drain(&mut s, 1000).len(), 1);
        assert_eq!(s.waiting_len(), 1);
    }

    #[test]
    fn an_open_circuit_holds_jobs_then_lets_one_probe_out() {
        let mut s = Scheduler::new();
        s.configure("x", limits(4));
        for seq in 0..5 {
            s.add(job("S", seq, "x", 0));
        }
        s.set_gate("x", Allow::Wait(Some(30_000)));
        assert!(s.next(10_000).is_none());
        assert_eq!(s.wake_at(), Some(30_000));
        s.set_gate("x", Allow::Probe);
        let probe = s.next(30_000).unwrap();
        assert_eq!(probe.kind, Kind::Probe);
        assert!(s.next(30_000).is_none(), "exactly one probe");
        s.done(&probe.job.key, Kind::Probe, 0);
        s.set_gate("x", Allow::Send);
        assert_eq!(drain(&mut s, 30_001).len(), 4, "the backlog is released");
    }

    #[test]
    fn a_probe_waits_for_requests_already_in_flight() {
        let mut s = Scheduler::new();
        s.configure("x", limits(4));
        s.add(job("S", 1, "x", 0));
        s.add(job("S", 2, "x", 0));
        let first = s.next(0).unwrap();
        s.set_gate("x", Allow::Probe);
        assert!(s.next(0).is_none());
        s.done(&first.job.key, Kind::Send, 0);
        assert_eq!(s.next(0).unwrap().kind, Kind::Probe);
    }

    #[test]
    fn paused_subscriptions_send_nothing_but_old_jobs_expire() {
        let mut s = Scheduler::new();
        s.configure(
            "p",
            Limits {
                max_in_flight: 1,
                fifo: false,
                min_interval_ms: None,
                max_age_ms: 1000,
            },
        );
        s.set_gate("p", Allow::Wait(None));
        let mut old = job("S", 1, "p", 0);
        old.created_at_ms = 0;
        let mut young = job("S", 2, "p", 0);
        young.created_at_ms = 900;
        s.add(old);
        s.add(young);
        assert!(s.next(999).is_none());
        assert_eq!(s.wake_at(), Some(1000));
        let pick = s.next(1000).unwrap();
        assert_eq!(
            (pick.kind, pick.job.key.name.as_str()),
            (Kind::Expire, "000000000001-p")
        );
        assert!(s.next(1000).is_none());
        assert_eq!(s.wake_at(), Some(1900));
    }

    #[test]
    fn re_adding_updates_the_due_time_and_in_flight_jobs_are_not_added_twice() {
        let mut s = Scheduler::new();
        s.configure("a", limits(2));
        s.add(job("S", 1, "a", 0));
        let p = s.next(0).unwrap();
        s.add(job("S", 1, "a", 0));
        assert_eq!(s.waiting_len(), 0, "in flight, not waiting");
        assert!(s.has_spec("S"), "in flight counts");
        s.done(&p.job.key, Kind::Send, 0);
        assert_eq!(s.waiting_len(), 1, "seen again while in flight: waits now");
        s.add(job("S", 1, "a", 5000));
        assert!(s.next(0).is_none());
        assert_eq!(s.wake_at(), Some(5000));
        assert!(s.remove(&p.job.key).is_some());
        assert_eq!(s.wake_at(), None);
        assert!(!s.has_spec("S"));
    }
}
