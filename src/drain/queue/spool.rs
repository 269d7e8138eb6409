//! [`SpoolQueue`]: the local spool as a [`Queue`]. It serves SPECs (one
//! `drain.alive` each, held only while the SPEC has work), recovers what a
//! dead drain left, moves its own jobs with no lock but drain.alive (see
//! `crate::spool`), and takes drain.lock only for recovery, quarantining
//! and pruning (never across a request). Run over the whole spool it is the
//! drain on duty (`<spool_dir>/.drain.alive`) when nobody else is: emit
//! starts no drain then, and this one learns of every new job by inotify.
//!
//! What it holds is bounded whatever the number of SPECs: SPECs served at
//! once and open attempt logs by its [`Plan`], jobs by the engine's active
//! set (it reads no more than the room the engine has, and leaves a job the
//! engine puts off on disk). Which folders exist and which have work is
//! `folders`' business.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;

use super::folders::{Folders, Lull};
use super::{Changes, Claimed, Queue};
use crate::circuit::Circuit;
use crate::clock::Steady;
use crate::config::Config;
use crate::drain::fds::Plan;
use crate::drain::scheduler::JobKey;
use crate::evidence::{Appenders, Evidence, Record};
use crate::spool::watch::{News, Watcher};
use crate::spool::{AliveLock, Claim, DUTY_LOCK, Job, Meta, SpecSpool, Spool, State};

/// Below this much free space a drain takes no new job: settling one and
/// logging its attempt needs a few KiB, and a full disk must not turn every
/// delivery into a resend. Each job also needs room for its own new copy
/// (`SpecSpool::room_to_settle`, checked as it is claimed).
const MIN_FREE_BYTES: u64 = crate::spool::SETTLE_MARGIN;

/// A SPEC this drain serves: the proof claims and settles ask for, and the
/// names of its pending jobs the engine holds.
pub(super) struct Served {
    pub spool: SpecSpool,
    pub alive: AliveLock,
    pub loaded: Mutex<HashSet<String>>,
    /// What the FIFO check knows of the SPEC's folders.
    pub lines: super::fifo::Lines,
}

impl Served {
    pub fn loaded(&self) -> MutexGuard<'_, HashSet<String>> {
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct SpoolQueue<'a> {
    pub(super) spool: Spool,
    pub(super) config: &'a Config,
    pub(super) only_spec: Option<String>,
    /// The run's time line (for `put_off` times).
    pub(super) time: Steady,
    pub(super) plan: Plan,
    pub(super) watcher: Option<Watcher>,
    appenders: Appenders,
    /// Served SPECs: the workers' side (claim, settle, log).
    pub(super) served: Mutex<BTreeMap<String, Arc<Served>>>,
    /// Every SPEC folder: the coordinator's side.
    pub(super) folders: Mutex<Folders>,
    /// What inotify told since the last look.
    pub(super) news: Mutex<News>,
    /// `<spool_dir>/.drain.alive` while this drain is on duty.
    pub(super) duty: Mutex<Option<AliveLock>>,
    /// Circuits as last read, to notice a gate that changed.
    gates: Mutex<HashMap<String, (bool, bool)>>,
    /// How often a served pending/ is listed without news (tests stretch it).
    pub(super) list_every: Duration,
}

/// With inotify, how often a served pending/ is listed even without news
/// (a missed event, jobs shed by emit's overflow).
pub(super) const LIST_EVERY: Duration = Duration::from_secs(1);

impl<'a> SpoolQueue<'a> {
    /// The queue of a run over `only_spec`, or over the whole spool.
    pub fn new(config: &'a Config, only_spec: Option<String>) -> SpoolQueue<'a> {
        SpoolQueue::for_run(
            config,
            only_spec,
            Steady::start(),
            Plan::for_this_process(config.max_concurrency),
        )
    }

    /// [`SpoolQueue::new`] on a run's time line and descriptor plan.
    pub fn for_run(
        config: &'a Config,
        only_spec: Option<String>,
        time: Steady,
        plan: Plan,
    ) -> SpoolQueue<'a> {
        let spool = Spool::new(&config.spool_dir);
        let duty = match &only_spec {
            Some(_) => None,
            None => inherited_duty(&spool).or_else(|| spool.try_take_duty().ok().flatten()),
        };
        SpoolQueue {
            watcher: Watcher::new(&spool),
            spool,
            config,
            only_spec,
            time,
            plan,
            appenders: Appenders::new(plan.appenders, config.max_evidence_bytes),
            served: Mutex::new(BTreeMap::new()),
            folders: Mutex::new(Folders::default()),
            news: Mutex::new(News::default()),
            duty: Mutex::new(duty),
            gates: Mutex::new(HashMap::new()),
            list_every: LIST_EVERY,
        }
    }

    /// Whether this drain is on duty for the whole spool.
    pub fn on_duty(&self) -> bool {
        lock(&self.duty).is_some()
    }

    pub(super) fn get(&self, spec: &str) -> Option<Arc<Served>> {
        lock(&self.served).get(spec).cloned()
    }

    fn served_or_fail(&self, spec: &str) -> Result<Arc<Served>> {
        self.get(spec)
            .ok_or_else(|| anyhow::anyhow!("SPEC {spec} is not served by this drain"))
    }

    /// Stops serving `spec`: trims its evidence, closes its log, drops its
    /// drain.alive. Returns what it was serving, for the caller to look at.
    fn drop_served(&self, spec: &str) -> Option<(SpecSpool, HashSet<String>, Result<()>)> {
        let served = lock(&self.served).remove(spec)?;
        let evidence = self.config.evidence_for(spec);
        let trimmed = served.spool.lock_drain().and_then(|lock| {
            Evidence::new(&evidence, self.config.max_evidence_bytes)
                .enforce_cap(&served.spool, &lock)
                .map(drop)
        });
        self.appenders.close(&evidence);
        let spool = served.spool.clone();
        let loaded = std::mem::take(&mut *served.loaded());
        drop(served); // drain.alive is free from here on (workers hold none)
        Some((spool, loaded, trimmed))
    }
}

/// Locks a mutex, whatever a panicking holder left.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The duty lock this process inherited from the emit that started it.
fn inherited_duty(spool: &Spool) -> Option<AliveLock> {
    let fd = crate::drain::duty::take_inherited()?;
    AliveLock::adopt(fd, &spool.root().join(DUTY_LOCK))
}

impl Queue for SpoolQueue<'_> {
    fn refresh(&self) -> Result<Changes> {
        self.refresh_up_to(usize::MAX)
    }

    fn refresh_up_to(&self, room: usize) -> Result<Changes> {
        self.look(room)
    }

    fn claim(&self, key: &JobKey) -> Result<Claimed> {
        let served = self.served_or_fail(&key.spec)?;
        served.loaded().remove(&key.name);
        served.spool.room_to_settle(&key.name)?;
        Ok(match served.spool.claim(&served.alive, &key.name)? {
            Claim::Job(job) => Claimed::Job(job),
            Claim::Gone => Claimed::Gone,
            Claim::Quarantined(q) => Claimed::Quarantined(q),
        })
    }

    fn fifo_blocker(
        &self,
        key: &JobKey,
        subscription: &str,
        sequence: u64,
        dead_holds: bool,
    ) -> Result<Option<super::Blocker>> {
        let served = self.served_or_fail(&key.spec)?;
        served
            .lines
            .blocker(&served.spool, &key.name, subscription, sequence, dead_holds)
    }

    fn settle(&self, key: &JobKey, job: &Job) -> Result<()> {
        let served = self.served_or_fail(&key.spec)?;
        // Typed: the engine tells a failure after the rename apart
        // (`SettleError::of`).
        served.spool.settle(&served.alive, job)?;
        served.lines.settled(&key.name, job.meta.state);
        if job.meta.state == State::Pending {
            // Waiting again: the engine holds it (a listing must not offer it anew).
            served.loaded().insert(key.name.clone());
        }
        Ok(())
    }

    fn requeue(&self, key: &JobKey) -> Result<()> {
        let served = self.served_or_fail(&key.spec)?;
        served.spool.unclaim(&served.alive, &key.name)
    }

    fn log(&self, spec: &str, records: &[Record]) -> Result<()> {
        self.appenders
            .append(&self.config.evidence_for(spec), records)
    }

    fn ready_to_log(&self, spec: &str) -> Result<()> {
        self.appenders.ready(&self.config.evidence_for(spec))
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        let circuit = self.spool.circuit(subscription)?;
        let gate = (circuit.paused.is_some(), circuit.is_open());
        let before = lock(&self.gates).insert(subscription.to_string(), gate);
        if before.is_some_and(|b| b != gate) {
            // Jobs left on disk for this gate may go now.
            lock(&self.folders).gate_changed();
        }
        Ok(circuit)
    }

    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<crate::circuit::Transition>,
    ) -> Result<(Option<crate::circuit::Transition>, Circuit)> {
        self.spool.update_circuit(subscription, change)
    }

    fn release(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>> {
        let Some((spool, loaded, trimmed)) = self.drop_served(spec) else {
            return Ok(Vec::new());
        };
        trimmed?;
        // Look once more: a job that arrived since the last look (its emit
        // saw the SPEC served and started no drain) is the caller's to send.
        let mtime = super::folders::stable_mtime(&spool);
        let (names, _) = spool.names(State::Pending)?;
        let mut folders = lock(&self.folders);
        let arrived: Vec<String> = {
            let folder = folders.folder(spec);
            names
                .iter()
                .filter(|n| !loaded.contains(*n) && folder.unread(n))
                .cloned()
                .collect()
        };
        let lull = match (names.is_empty(), arrived.is_empty()) {
            (true, _) => Lull::Empty,
            (false, true) => Lull::Held { mtime },
            (false, false) => Lull::Arrived,
        };
        folders.released(spec, lull);
        drop(folders);
        Ok(spool
            .scan_names(State::Pending, arrived)
            .entries
            .into_iter()
            .map(|e| {
                let key = JobKey {
                    spec: spec.to_string(),
                    name: e.name,
                };
                (key, e.meta)
            })
            .collect())
    }

    fn idle(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>> {
        if lock(&self.folders).folder(spec).behind {
            return Ok(Vec::new()); // its jobs wait for room, not for a look
        }
        self.release(spec)
    }

    fn put_off(&self, key: &JobKey, until: u64) -> bool {
        if let Some(served) = self.get(&key.spec) {
            served.loaded().remove(&key.name);
        }
        lock(&self.folders).put_off(key, until);
        true
    }

    fn fetch(&self, key: &JobKey) -> Result<Option<Meta>> {
        let served = self.served_or_fail(&key.spec)?;
        let scan = served
            .spool
            .scan_names(State::Pending, vec![key.name.clone()]);
        let Some(entry) = scan.entries.into_iter().next() else {
            return Ok(None);
        };
        // The engine holds it now: a listing must not offer it anew.
        served.loaded().insert(key.name.clone());
        Ok(Some(entry.meta))
    }

    fn starved(&self) -> usize {
        lock(&self.folders).starved()
    }

    fn set_aside(&self, spec: &str, until: u64) -> Result<()> {
        let Some((spool, _, trimmed)) = self.drop_served(spec) else {
            return Ok(());
        };
        let mtime = super::folders::stable_mtime(&spool);
        lock(&self.folders).set_aside(spec, until, mtime);
        trimmed
    }

    fn trim(&self, spec: &str) -> Result<()> {
        let served = self.served_or_fail(spec)?;
        let lock = served.spool.lock_drain()?;
        Evidence::new(
            self.config.evidence_for(spec),
            self.config.max_evidence_bytes,
        )
        .enforce_cap(&served.spool, &lock)
        .map(drop)
    }

    fn watches(&self) -> bool {
        self.watcher.is_some()
    }

    fn wait_for_news(&self, timeout: Duration) -> bool {
        let Some(watcher) = &self.watcher else {
            std::thread::sleep(timeout);
            return false;
        };
        let news = watcher.wait(timeout);
        if news.is_empty() {
            return false;
        }
        lock(&self.news).merge(news);
        true
    }

    fn stop_waiting(&self) {
        if let Some(watcher) = &self.watcher {
            watcher.stop();
        }
    }

    fn can_record(&self) -> bool {
        [self.spool.root(), self.config.evidence_dir.as_path()]
            .into_iter()
            .all(|dir| crate::files::free_bytes(dir).is_none_or(|free| free >= MIN_FREE_BYTES))
    }

    fn served(&self) -> Vec<String> {
        lock(&self.served).keys().cloned().collect()
    }

    fn more_to_come(&self) -> bool {
        lock(&self.folders).more_to_come()
    }

    fn let_go(&self) -> Vec<(JobKey, Meta)> {
        if lock(&self.duty).take().is_none() {
            return Vec::new();
        }
        // Off duty: from here on emit starts a drain. Jobs renamed into
        // pending/ before that are in inotify's queue (or, without it, in
        // the folders): look once more.
        if let Some(watcher) = &self.watcher {
            let news = watcher.wait(Duration::ZERO);
            lock(&self.news).merge(news);
        }
        let news = std::mem::take(&mut *lock(&self.news));
        self.last_look(news)
    }
}

impl Drop for SpoolQueue<'_> {
    fn drop(&mut self) {
        // Let go of duty before drain.alive of any SPEC (fields drop in
        // order of declaration, and nobody may rely on a drain that ends).
        lock(&self.duty).take();
    }
}
