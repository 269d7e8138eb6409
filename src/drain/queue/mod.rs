//! The engine's view of a queue backend ([`Queue`]): which jobs wait,
//! claim one, settle it, requeue it, log an attempt, and the shared
//! per-subscription state. [`SpoolQueue`] is the local spool's
//! implementation (`spool`: serving, claiming, settling, logging; `folders`:
//! which SPEC folders exist, which have work, reading their jobs). A second
//! backend implements [`Queue`] and reuses the scheduler and the engine
//! unchanged.

mod fifo;
mod folders;
mod spool;

use anyhow::Result;

use super::scheduler::JobKey;
use crate::circuit::Circuit;
use crate::evidence::Record;
use crate::spool::{Job, Meta, Quarantined};

pub use spool::SpoolQueue;

#[cfg(test)]
mod tests;

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Jobs newly waiting (or waiting again), with their metadata.
    pub added: Vec<(JobKey, Meta)>,
    /// Jobs no longer waiting (claimed, replayed, discarded, shed).
    pub removed: Vec<JobKey>,
    pub quarantined: Vec<Quarantined>,
    /// Files that are not jobs and could not be quarantined (why, for
    /// each): left in place, never sent.
    pub unquarantined: Vec<String>,
    /// Files that could not be read now; left in place.
    pub io_errors: Vec<String>,
    pub recovered: usize,
    /// SPECs with work that another drain serves.
    pub busy: Vec<String>,
}

/// An earlier job of a FIFO line, still in the way of a later one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    pub delivery_id: String,
    /// Its file name in the SPEC's folder.
    pub name: String,
    pub sequence: u64,
    /// Dead-lettered, holding its line (`fifo_on_dead = "hold"`) until an
    /// operator replays or discards it.
    pub dead: bool,
}

/// What claiming found.
pub enum Claimed {
    Job(Box<Job>),
    Gone,
    Quarantined(Quarantined),
}

pub trait Queue: Sync {
    /// Brings the view of waiting jobs up to date.
    fn refresh(&self) -> Result<Changes>;
    fn claim(&self, key: &JobKey) -> Result<Claimed>;
    /// For a job of a FIFO subscription about to be claimed: the earliest
    /// job of its (SPEC, subscription) line still before it (pending, in
    /// flight, or dead when `dead_holds`), which must go first. The
    /// default sees none: for a backend whose lines are ordered before the
    /// engine sees them (NATS hands a worker one line's head at a time).
    fn fifo_blocker(
        &self,
        key: &JobKey,
        subscription: &str,
        sequence: u64,
        dead_holds: bool,
    ) -> Result<Option<Blocker>> {
        let _ = (key, subscription, sequence, dead_holds);
        Ok(None)
    }
    /// Stores the job in the state its metadata names.
    fn settle(&self, key: &JobKey, job: &Job) -> Result<()>;
    /// Puts a claimed job back unchanged.
    fn requeue(&self, key: &JobKey) -> Result<()>;
    fn log(&self, spec: &str, records: &[Record]) -> Result<()>;
    /// Makes sure the outcome of a job of `spec` can be logged, before it
    /// is claimed and sent (the spool's attempt log must be a regular file
    /// it can open). A backend that logs elsewhere has nothing to check.
    fn ready_to_log(&self, _spec: &str) -> Result<()> {
        Ok(())
    }
    fn circuit(&self, subscription: &str) -> Result<Circuit>;
    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<crate::circuit::Transition>,
    ) -> Result<(Option<crate::circuit::Transition>, Circuit)>;
    /// [`Queue::update_circuit`] for a probe's claim, which the engine
    /// makes with its core unlocked but a worker waiting: a backend whose
    /// writes can be slow (NATS while a cluster elects a leader) gives up
    /// soon, and the probe is tried again later.
    fn claim_probe(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<crate::circuit::Transition>,
    ) -> Result<(Option<crate::circuit::Transition>, Circuit)> {
        self.update_circuit(subscription, change)
    }
    /// Stops serving a SPEC (after trimming its evidence). Returns the jobs
    /// that arrived since the last refresh: no drain was started for them
    /// while this one served the SPEC, so the caller must see them sent.
    fn release(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>>;
    /// Holds a served SPEC's evidence under its footprint cap.
    fn trim(&self, spec: &str) -> Result<()>;
    fn served(&self) -> Vec<String>;
    /// Whether outcomes can be recorded now (false on a full disk): the
    /// engine sends nothing it could not settle.
    fn can_record(&self) -> bool;
    /// Whether [`Queue::wait_for_news`] can tell of new jobs (else the
    /// engine only looks every poll).
    fn watches(&self) -> bool {
        false
    }
    /// Waits up to `timeout` for a sign that jobs arrived; true if one came.
    fn wait_for_news(&self, timeout: std::time::Duration) -> bool {
        std::thread::sleep(timeout);
        false
    }
    /// Ends every [`Queue::wait_for_news`], now and later: the run is over.
    fn stop_waiting(&self) {}

    // What follows lets a backend bound what a run holds (the active set,
    // SPECs served at once); the defaults hold everything, as a backend
    // that hands out what it holds anyway (NATS) wants.

    /// [`Queue::refresh`], reading at most `room` new jobs: the places left
    /// in the engine's active set.
    fn refresh_up_to(&self, room: usize) -> Result<Changes> {
        let _ = room;
        self.refresh()
    }
    /// The engine does not keep a job it was told of (parked jobs fill
    /// their share of the active set, or this run does not send it):
    /// report it again once it could go out, at `until` on the run's time
    /// line (`u64::MAX`: when a subscription's gate changes). False if the
    /// backend cannot, and the engine keeps it.
    fn put_off(&self, key: &JobKey, until: u64) -> bool {
        let _ = (key, until);
        false
    }
    /// The engine holds no job of a served SPEC: let go of it, unless it
    /// has jobs not read yet for want of room. Returns what
    /// [`Queue::release`] does.
    fn idle(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>> {
        self.release(spec)
    }
    /// Reads one pending job of a served SPEC by name, whatever the room
    /// (the earlier job a FIFO line found in its way: it goes first, so
    /// the engine must hold it); `None` if it is not pending.
    fn fetch(&self, key: &JobKey) -> Result<Option<Meta>> {
        let _ = key;
        Ok(None)
    }
    /// SPECs with work that wait for a place among those served at once.
    fn starved(&self) -> usize {
        0
    }
    /// Lets go of a served SPEC whose jobs (no longer held by the engine)
    /// could not go out before `until`, to serve one that waits for a place.
    fn set_aside(&self, spec: &str, until: u64) -> Result<()> {
        let _ = until;
        self.release(spec).map(drop)
    }
    /// The run is over and every SPEC released: stop being the drain on
    /// duty for the backend, look once more, and return jobs that arrived
    /// since the last look in SPECs no drain serves (no drain was started
    /// for them while this one was on duty).
    fn let_go(&self) -> Vec<(JobKey, Meta)> {
        Vec::new()
    }
    /// Whether jobs not yet handed over are still coming without waiting
    /// (a backend that hands jobs out in batches): a run that is not
    /// watching goes on while they are.
    fn more_to_come(&self) -> bool {
        false
    }
}
