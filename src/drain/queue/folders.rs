//! Which SPEC folders exist and which have work, for a [`SpoolQueue`]; and
//! reading the jobs of the SPECs it serves. What an idle folder costs is
//! bounded by design:
//!
//! - **Discovery.** The spool root is listed when the run starts, when
//!   inotify lost events, and every [`ROOT_RESCAN`] (every [`LIST_EVERY`](super::spool::LIST_EVERY)
//!   without inotify); in between inotify names each new folder.
//! - **Idle folders cost nothing.** Each one's pending/ is watched (inotify
//!   watches cost no descriptor); a slow sweep stats one after another so
//!   that each is looked at once per [`SWEEP_EVERY`] (10,000 folders: some
//!   170 stats a second), and lists it only if its pending/ changed. A
//!   folder that cannot be watched is statted every [`LIST_EVERY`](super::spool::LIST_EVERY).
//! - **Probing** lists a folder's pending/ (and active/, for what a dead
//!   drain claimed): one with work waits for a place among those served
//!   ([`Plan::served`](crate::drain::fds::Plan)), first come, first served;
//!   one another drain serves is tried again every [`BUSY_RETRY`].
//! - **Reading.** A served folder's pending/ is listed on news and every
//!   [`LIST_EVERY`](super::spool::LIST_EVERY); names not yet read are read, no more than the room the
//!   engine has, shared round-robin among the folders that have some (the
//!   lowest sequence first in each).
//! - **Putting off.** A job the engine leaves on disk moves its folder's
//!   cursor past it: later looks read only names after the cursor (and
//!   names inotify reports), until the time the job could go, or until a
//!   subscription's gate changes; then the folder is read from the start.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

use super::Changes;
use super::spool::{Served, SpoolQueue, lock};
use crate::drain::scheduler::JobKey;
use crate::spool::watch::{MAX_NAMES, News};
use crate::spool::{Meta, SpecSpool, State, Unreadable};

/// How often the spool root is listed even with inotify.
pub(super) const ROOT_RESCAN: Duration = Duration::from_secs(60);
/// How long the slow sweep takes to look at every folder once.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often a SPEC another drain serves is tried again.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// How long a folder without pending/ (being made) is watched for it.
const MAKING: Duration = Duration::from_secs(10);
/// An mtime this recent may hide a change made in the same tick: not kept.
const RACY: Duration = Duration::from_secs(2);
/// Unread names kept between looks, per folder and in all (the rest is
/// found by the next listing).
const KEEP_PER_FOLDER: usize = 16_384;
const KEEP_TOTAL: usize = 65_536;
/// How many jobs of a SPEC the last look of a run reads to find a due one.
const LAST_LOOK_READS: usize = 64;

/// Where a folder stands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing pending as far as the last look saw.
    #[default]
    Idle,
    /// Work, waiting for a place among the served.
    Waiting,
    /// Work, served by another drain.
    Busy,
    Served,
    /// Let go of with jobs the engine does not hold (put off, held): looked
    /// at again when its pending/ changes, at `until`, or when a gate changes.
    Released,
}

/// How a served SPEC was let go of.
pub(super) enum Lull {
    /// Nothing pending.
    Empty,
    /// Pending jobs the engine left on disk; pending/'s mtime then.
    Held { mtime: Option<SystemTime> },
    /// Jobs arrived since the last look: serve it again.
    Arrived,
}

#[derive(Debug)]
pub(super) struct Folder {
    phase: Phase,
    watched: bool,
    making_since: Option<Instant>,
    /// pending/'s mtime at the last probe (`None`: unknown, or too recent).
    mtime: Option<SystemTime>,
    /// Names up to here were read in this pass; those not held by the
    /// engine were put off.
    cursor: Option<String>,
    read_upto: Option<String>,
    /// When to read the folder from the start again (run's time line).
    recheck_at: u64,
    listed_at: Option<Instant>,
    /// Names were left unread for want of room.
    pub behind: bool,
    /// Some of them, in order, as the last listing found them.
    unread: VecDeque<String>,
    /// inotify told of arrivals: `news_names` (all of them unless `news`
    /// without names, then the folder is listed).
    news: bool,
    news_names: BTreeSet<String>,
    swept_tmp: bool,
    busy_at: Option<Instant>,
    released_until: u64,
    released_epoch: u64,
    released_mtime: Option<SystemTime>,
}

impl Default for Folder {
    fn default() -> Folder {
        Folder {
            phase: Phase::Idle,
            watched: false,
            making_since: None,
            mtime: None,
            cursor: None,
            read_upto: None,
            recheck_at: u64::MAX,
            listed_at: None,
            behind: false,
            unread: VecDeque::new(),
            news: false,
            news_names: BTreeSet::new(),
            swept_tmp: false,
            busy_at: None,
            released_until: u64::MAX,
            released_epoch: 0,
            released_mtime: None,
        }
    }
}

impl Folder {
    /// Whether `name` has not been read in this pass.
    pub fn unread(&self, name: &str) -> bool {
        self.cursor.as_deref().is_none_or(|c| name > c) || self.news_names.contains(name)
    }
}

#[derive(Debug, Default)]
pub(super) struct Folders {
    map: HashMap<String, Folder>,
    /// The sweep's order and place in it.
    order: Vec<String>,
    sweep_at: usize,
    last_sweep: Option<Instant>,
    last_root_scan: Option<Instant>,
    last_unwatched: Option<Instant>,
    duty_tried: Option<Instant>,
    started: bool,
    waiting: VecDeque<String>,
    making: BTreeSet<String>,
    unwatched: BTreeSet<String>,
    busy: BTreeSet<String>,
    released: BTreeSet<String>,
    /// Counts gate changes.
    epoch: u64,
    /// Which folder goes first when room is shared.
    turn: usize,
    /// Served folders left behind for want of room at the last look.
    behind: usize,
}

impl Folders {
    pub fn folder(&mut self, spec: &str) -> &mut Folder {
        self.map.entry(spec.to_string()).or_default()
    }

    fn set_phase(&mut self, spec: &str, phase: Phase) {
        let folder = self.folder(spec);
        let was = folder.phase;
        folder.phase = phase;
        if was == Phase::Busy {
            self.busy.remove(spec);
        }
        if was == Phase::Released {
            self.released.remove(spec);
        }
        match phase {
            Phase::Busy => {
                self.folder(spec).busy_at = Some(Instant::now());
                self.busy.insert(spec.to_string());
            }
            Phase::Released => {
                self.released.insert(spec.to_string());
            }
            Phase::Waiting if was != Phase::Waiting => self.waiting.push_back(spec.to_string()),
            _ => {}
        }
    }

    /// A served SPEC was let go of.
    pub fn released(&mut self, spec: &str, lull: Lull) {
        let epoch = self.epoch;
        let folder = self.folder(spec);
        folder.behind = false;
        folder.listed_at = None;
        folder.unread.clear();
        match lull {
            Lull::Empty => self.set_phase(spec, Phase::Idle),
            Lull::Held { mtime } => {
                folder.released_until = folder.recheck_at;
                folder.released_epoch = epoch;
                folder.released_mtime = mtime;
                self.set_phase(spec, Phase::Released);
            }
            Lull::Arrived => {
                // It had a place: it gets one first.
                folder.phase = Phase::Waiting;
                self.waiting.push_front(spec.to_string());
            }
        }
    }

    /// A served SPEC was let go of to make room; its jobs could not go
    /// before `until`.
    pub fn set_aside(&mut self, spec: &str, until: u64, mtime: Option<SystemTime>) {
        let epoch = self.epoch;
        let folder = self.folder(spec);
        folder.cursor = None; // the engine dropped them: read again when served
        folder.read_upto = None;
        folder.behind = false;
        folder.unread.clear();
        folder.listed_at = None;
        folder.released_until = until;
        folder.released_epoch = epoch;
        folder.released_mtime = mtime;
        self.set_phase(spec, Phase::Released);
    }

    pub fn put_off(&mut self, key: &JobKey, until: u64) {
        let folder = self.folder(&key.spec);
        let upto = [
            folder.cursor.take(),
            folder.read_upto.clone(),
            Some(key.name.clone()),
        ]
        .into_iter()
        .flatten()
        .max();
        folder.cursor = upto;
        folder.recheck_at = folder.recheck_at.min(until);
    }

    pub fn starved(&self) -> usize {
        self.waiting.len()
    }

    /// Whether jobs wait that a look would hand over without waiting: SPECs
    /// waiting for a place, or served ones with names not read for room.
    pub fn more_to_come(&self) -> bool {
        !self.waiting.is_empty() || self.behind > 0
    }

    /// A subscription's gate changed: jobs left on disk for it may go.
    pub fn gate_changed(&mut self) {
        self.epoch += 1;
        for folder in self.map.values_mut() {
            folder.cursor = None;
            folder.read_upto = None;
            folder.recheck_at = u64::MAX;
            folder.unread.clear();
        }
    }
}

/// A folder left this long under its hidden name was never moved into
/// place: its writer died.
const STALE_NEW: Duration = Duration::from_secs(600);

fn is_stale(entry: &std::fs::DirEntry) -> bool {
    entry
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > STALE_NEW)
}

/// pending/'s mtime, unless it is so recent that a change in the same
/// clock tick could hide behind it.
pub(super) fn stable_mtime(spool: &SpecSpool) -> Option<SystemTime> {
    let mtime = std::fs::metadata(spool.state_dir(State::Pending))
        .and_then(|m| m.modified())
        .ok()?;
    let age = SystemTime::now().duration_since(mtime).unwrap_or_default();
    (age >= RACY).then_some(mtime)
}

impl SpoolQueue<'_> {
    /// One look: discover folders, take inotify's news, sweep, probe, serve
    /// what waits while there is a place, and read the served folders' new
    /// jobs (at most `room`).
    pub(super) fn look(&self, room: usize) -> Result<Changes> {
        let mut changes = Changes::default();
        let now = self.time.now();
        let news = std::mem::take(&mut *lock(&self.news));
        let mut f = lock(&self.folders);
        self.keep_duty(&mut f);
        let mut probe = BTreeSet::new();
        self.discover(&mut f, &news, &mut probe)?;
        self.take_news(&mut f, news, &mut probe);
        self.sweep(&mut f, now, &mut probe);
        for spec in probe {
            self.probe(&mut f, &spec, now, &mut changes);
        }
        self.fill(&mut f, &mut changes);
        self.read_served(&mut f, room, now, &mut changes);
        Ok(changes)
    }

    /// A run over the whole spool that is not on duty takes duty as soon
    /// as the drain that had it lets go (emit relies on the one on duty).
    fn keep_duty(&self, f: &mut Folders) {
        if self.only_spec.is_some() || f.duty_tried.is_some_and(|t| t.elapsed() < BUSY_RETRY) {
            return;
        }
        f.duty_tried = Some(Instant::now());
        let mut duty = lock(&self.duty);
        if duty.is_none() {
            *duty = self.spool.try_take_duty().ok().flatten();
        }
    }

    /// The SPEC folders in the spool root (names of folders, no dot names).
    fn root_names(&self) -> Result<Vec<String>> {
        let root = self.spool.root();
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("failed to read spool `{}`", root.display()));
            }
        };
        let mut names = Vec::new();
        for entry in entries.flatten() {
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            if !is_dir {
                continue;
            }
            if !name.starts_with('.') {
                names.push(name);
            } else if name.ends_with(".new") && is_stale(&entry) {
                // A SPEC folder being made by a writer that died.
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Starts keeping track of a folder: watches its pending/.
    fn track(&self, f: &mut Folders, spec: &str) {
        let mut folder = Folder::default();
        match self
            .watcher
            .as_ref()
            .map(|w| w.try_watch(&self.spool.spec(spec)))
        {
            Some(Ok(())) => folder.watched = true,
            Some(Err(rustix::io::Errno::NOENT)) => {
                folder.making_since = Some(Instant::now());
                f.making.insert(spec.to_string());
            }
            _ => {
                f.unwatched.insert(spec.to_string());
            }
        }
        f.map.insert(spec.to_string(), folder);
    }

    fn discover(&self, f: &mut Folders, news: &News, probe: &mut BTreeSet<String>) -> Result<()> {
        if let Some(spec) = &self.only_spec {
            if !f.map.contains_key(spec) {
                self.track(f, spec);
                f.order = vec![spec.clone()];
                probe.insert(spec.clone());
            }
            f.started = true;
            return Ok(());
        }
        let root_watched = self.watcher.as_ref().is_some_and(|w| w.sees_new_specs());
        let every = if root_watched {
            ROOT_RESCAN
        } else {
            self.list_every
        };
        let rescan =
            !f.started || news.overflow || f.last_root_scan.is_none_or(|t| t.elapsed() >= every);
        if !rescan {
            for name in &news.new_spec_names {
                if !f.map.contains_key(name) {
                    self.track(f, name);
                    f.order.push(name.clone());
                    probe.insert(name.clone());
                }
            }
            return Ok(());
        }
        let names = self.root_names()?;
        f.last_root_scan = Some(Instant::now());
        for name in &names {
            if !f.map.contains_key(name) {
                self.track(f, name);
                probe.insert(name.clone());
            }
        }
        let present: HashSet<&String> = names.iter().collect();
        let gone: Vec<String> = f
            .map
            .iter()
            .filter(|(name, folder)| !present.contains(name) && folder.phase != Phase::Served)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            f.map.remove(&name);
            f.making.remove(&name);
            f.unwatched.remove(&name);
            f.busy.remove(&name);
            f.released.remove(&name);
        }
        f.waiting.retain(|name| present.contains(name));
        f.order = names;
        f.started = true;
        Ok(())
    }

    fn take_news(&self, f: &mut Folders, news: News, probe: &mut BTreeSet<String>) {
        for spec in news.unwatched {
            if let Some(folder) = f.map.get_mut(&spec) {
                folder.watched = false;
                f.unwatched.insert(spec.clone());
                probe.insert(spec);
            }
        }
        let mut names = news.names;
        for spec in &news.specs {
            // Jobs arrived: the FIFO check lists the folder again.
            if let Some(served) = self.get(spec) {
                served.lines.invalidate();
            }
        }
        if news.overflow {
            for served in lock(&self.served).values() {
                served.lines.invalidate();
            }
        }
        for spec in news.specs {
            let Some(folder) = f.map.get_mut(&spec) else {
                continue; // not ours (`--spec`), or found by the next root scan
            };
            folder.news = true;
            let arrived = names.remove(&spec).unwrap_or_default();
            if folder.news_names.len() + arrived.len() <= MAX_NAMES && arrived.len() < MAX_NAMES {
                folder.news_names.extend(arrived);
            } else {
                folder.news_names.clear(); // too many: list the folder
            }
            if folder.phase != Phase::Served {
                probe.insert(spec);
            }
        }
        if news.overflow {
            for (spec, folder) in &mut f.map {
                folder.news = true;
                folder.news_names.clear();
                if folder.phase != Phase::Served {
                    probe.insert(spec.clone());
                }
            }
        }
    }

    /// Picks the folders to probe without news: those being made, those
    /// not watched, those busy or released whose time came, and the slow
    /// sweep's share.
    fn sweep(&self, f: &mut Folders, now: u64, probe: &mut BTreeSet<String>) {
        if let Some(watcher) = &self.watcher {
            for spec in f.making.clone() {
                match watcher.try_watch(&self.spool.spec(&spec)) {
                    Ok(()) => {
                        f.making.remove(&spec);
                        f.folder(&spec).watched = true;
                        probe.insert(spec);
                    }
                    Err(rustix::io::Errno::NOENT)
                        if f.folder(&spec)
                            .making_since
                            .is_some_and(|t| t.elapsed() < MAKING) => {}
                    Err(_) => {
                        f.making.remove(&spec);
                        f.unwatched.insert(spec);
                    }
                }
            }
        }
        if f.last_unwatched
            .is_none_or(|t| t.elapsed() >= self.list_every)
        {
            f.last_unwatched = Some(Instant::now());
            for spec in f.unwatched.clone() {
                let mtime = stable_mtime(&self.spool.spec(&spec));
                let folder = f.folder(&spec);
                if mtime.is_none() || mtime != folder.mtime {
                    probe.insert(spec);
                }
            }
        }
        for spec in &f.busy {
            if f.map[spec]
                .busy_at
                .is_none_or(|t| t.elapsed() >= BUSY_RETRY)
            {
                probe.insert(spec.clone());
            }
        }
        for spec in &f.released {
            let folder = &f.map[spec];
            if folder.released_until <= now || folder.released_epoch != f.epoch {
                probe.insert(spec.clone());
            }
        }
        let elapsed = f.last_sweep.map_or(SWEEP_EVERY, |t| t.elapsed());
        let share =
            (f.order.len() as f64 * elapsed.as_secs_f64() / SWEEP_EVERY.as_secs_f64()).ceil();
        if share < 1.0 && f.last_sweep.is_some() {
            return; // not one folder's turn yet: keep the time for next look
        }
        f.last_sweep = Some(Instant::now());
        for _ in 0..(share as usize).min(f.order.len()) {
            f.sweep_at = (f.sweep_at + 1) % f.order.len();
            let spec = &f.order[f.sweep_at];
            let Some(folder) = f.map.get(spec) else {
                continue;
            };
            if matches!(folder.phase, Phase::Served | Phase::Waiting) {
                continue;
            }
            let mtime = stable_mtime(&self.spool.spec(spec));
            if mtime.is_none() || mtime != folder.mtime {
                probe.insert(spec.clone());
            }
        }
    }

    /// Whether a folder has work: jobs (or strays) in pending/, or jobs a
    /// dead drain left in active/.
    fn probe(&self, f: &mut Folders, spec: &str, now: u64, changes: &mut Changes) {
        let epoch = f.epoch;
        let spool = self.spool.spec(spec);
        let Some(folder) = f.map.get_mut(spec) else {
            return;
        };
        if matches!(folder.phase, Phase::Served | Phase::Waiting) {
            return;
        }
        let mtime = stable_mtime(&spool);
        // A watched folder changed only if inotify said so; another only if
        // its mtime moved (or is too recent to tell).
        let unchanged = if folder.watched {
            !folder.news
        } else {
            mtime.is_some() && mtime == folder.released_mtime
        };
        if folder.phase == Phase::Released
            && folder.released_until > now
            && folder.released_epoch == epoch
            && unchanged
        {
            return; // nothing new, and nothing it holds can go yet
        }
        let listed = spool.names(State::Pending).and_then(|(names, strays)| {
            if !names.is_empty() || !strays.is_empty() {
                return Ok(true);
            }
            let (active, strays) = spool.names(State::Active)?;
            Ok(!active.is_empty() || !strays.is_empty())
        });
        folder.mtime = mtime;
        folder.news = false; // taken: a served folder is listed when served
        match listed {
            Ok(true) => f.set_phase(spec, Phase::Waiting),
            Ok(false) => {
                f.folder(spec).news_names.clear();
                f.set_phase(spec, Phase::Idle);
            }
            Err(e) => changes.io_errors.push(format!("SPEC {spec}: {e:#}")),
        }
    }

    /// Serves SPECs that wait, while there is a place.
    fn fill(&self, f: &mut Folders, changes: &mut Changes) {
        while lock(&self.served).len() < self.plan.served {
            let Some(spec) = f.waiting.pop_front() else {
                break;
            };
            if f.map
                .get(&spec)
                .is_none_or(|folder| folder.phase != Phase::Waiting)
            {
                continue;
            }
            let sweep_tmp = !f.folder(&spec).swept_tmp;
            match self.serve(&spec, sweep_tmp, changes) {
                Ok(Some(served)) => {
                    let folder = f.folder(&spec);
                    folder.phase = Phase::Served;
                    folder.swept_tmp = true;
                    folder.listed_at = None;
                    lock(&self.served).insert(spec, served);
                }
                Ok(None) => {
                    changes.busy.push(spec.clone());
                    f.set_phase(&spec, Phase::Busy);
                }
                Err(e) => {
                    changes.io_errors.push(format!("SPEC {spec}: {e:#}"));
                    f.set_phase(&spec, Phase::Idle);
                }
            }
        }
    }

    /// Becomes the drain serving `spec` unless another one is; recovers
    /// what a dead drain left in its active/.
    fn serve(
        &self,
        spec: &str,
        sweep_tmp: bool,
        changes: &mut Changes,
    ) -> Result<Option<std::sync::Arc<Served>>> {
        let spool = self.spool.spec(spec);
        let Some(alive) = spool.try_serve()? else {
            return Ok(None);
        };
        {
            let lock = spool.lock_drain()?;
            let recovery = spool.recover(&alive, &lock)?;
            changes.recovered += recovery.recovered;
            changes.quarantined.extend(recovery.quarantined);
            changes.unquarantined.extend(recovery.unquarantined);
            if sweep_tmp {
                spool.sweep_tmp(&lock, crate::clock::now_ms());
            }
        }
        Ok(Some(std::sync::Arc::new(Served {
            lines: Default::default(),
            spool,
            alive,
            loaded: std::sync::Mutex::new(HashSet::new()),
        })))
    }

    /// Lists the served folders that need it and reads their new jobs, at
    /// most `room`, shared round-robin.
    fn read_served(&self, f: &mut Folders, room: usize, now: u64, changes: &mut Changes) {
        let served: Vec<(String, std::sync::Arc<Served>)> = lock(&self.served)
            .iter()
            .map(|(spec, s)| (spec.clone(), std::sync::Arc::clone(s)))
            .collect();
        let mut lists: Vec<(String, std::sync::Arc<Served>, Vec<String>)> = Vec::new();
        f.behind = 0;
        for (spec, served) in served {
            let folder = f.folder(&spec);
            if now >= folder.recheck_at {
                folder.cursor = None;
                folder.read_upto = None;
                folder.recheck_at = u64::MAX;
                folder.unread.clear();
            }
            let stale = folder
                .listed_at
                .is_none_or(|t| t.elapsed() >= self.list_every);
            let unnamed_news = folder.news && folder.news_names.is_empty();
            let exhausted = folder.behind && room > 0 && folder.unread.is_empty();
            let list = stale || !folder.watched || unnamed_news || exhausted;
            let candidates = if list {
                folder.listed_at = Some(Instant::now());
                folder.unread.clear();
                match self.list_served(&spec, &served, folder, changes) {
                    Ok(c) => c,
                    Err(e) => {
                        changes.io_errors.push(format!("SPEC {spec}: {e:#}"));
                        Vec::new()
                    }
                }
            } else {
                // The names kept from the last listing, and those inotify
                // named since.
                let loaded = served.loaded();
                let mut c: Vec<String> = folder.unread.drain(..).collect();
                c.extend(
                    folder
                        .news_names
                        .iter()
                        .filter(|n| !loaded.contains(*n))
                        .cloned(),
                );
                c.sort_unstable();
                c.dedup();
                c
            };
            folder.news = false;
            folder.news_names.clear();
            if candidates.is_empty() {
                // Behind with no room and nothing kept: still behind.
                folder.behind &= !list && room == 0;
                let behind = folder.behind;
                f.behind += usize::from(behind);
            } else {
                lists.push((spec, served, candidates));
            }
        }
        if lists.is_empty() {
            return;
        }
        // Each folder's share of the room, round-robin from `turn`.
        f.turn = f.turn.wrapping_add(1);
        let start = f.turn % lists.len();
        lists.rotate_left(start);
        let mut take = vec![0usize; lists.len()];
        let mut left = room;
        while left > 0 {
            let open: Vec<usize> = (0..lists.len())
                .filter(|&i| take[i] < lists[i].2.len())
                .collect();
            if open.is_empty() {
                break;
            }
            let chunk = (left / open.len()).max(1);
            for i in open {
                let more = chunk.min(lists[i].2.len() - take[i]).min(left);
                take[i] += more;
                left -= more;
                if left == 0 {
                    break;
                }
            }
        }
        let mut kept = 0;
        for ((spec, served, mut candidates), n) in lists.into_iter().zip(take) {
            let rest = candidates.split_off(n);
            let folder = f.folder(&spec);
            folder.behind = !rest.is_empty();
            // What is left unread is kept for the next looks (within a
            // bound), so a big folder is not listed again at every look.
            let keep = rest
                .len()
                .min(KEEP_PER_FOLDER)
                .min(KEEP_TOTAL.saturating_sub(kept));
            kept += keep;
            folder.unread = rest.into_iter().take(keep).collect();
            if let Some(last) = candidates.last()
                && folder.read_upto.as_ref().is_none_or(|r| last > r)
            {
                folder.read_upto = Some(last.clone());
            }
            let behind = folder.behind;
            f.behind += usize::from(behind);
            if candidates.is_empty() {
                continue;
            }
            self.read(&spec, &served, candidates, changes);
        }
    }

    /// Lists a served pending/: jobs gone since (the engine forgets them),
    /// strays (quarantined), and the names not read yet, in order.
    fn list_served(
        &self,
        spec: &str,
        served: &Served,
        folder: &Folder,
        changes: &mut Changes,
    ) -> Result<Vec<String>> {
        let (names, strays) = served.spool.names(State::Pending)?;
        let strays: Vec<Unreadable> = strays
            .into_iter()
            .map(|path| Unreadable {
                path,
                reason: "not a job file name".into(),
            })
            .collect();
        quarantine(spec, served, &strays, changes);
        let mut loaded = served.loaded();
        if !loaded.is_empty() {
            // `names` is sorted: a search per job held, no set of them all.
            loaded.retain(|name| {
                let there = names.binary_search(name).is_ok();
                if !there {
                    changes.removed.push(JobKey {
                        spec: spec.to_string(),
                        name: name.clone(),
                    });
                }
                there
            });
        }
        Ok(names
            .into_iter()
            .filter(|n| !loaded.contains(n) && folder.unread(n))
            .collect())
    }

    /// Reads the metadata of these pending jobs and hands them over.
    fn read(&self, spec: &str, served: &Served, names: Vec<String>, changes: &mut Changes) {
        let mut scan = served.spool.scan_names(State::Pending, names);
        {
            let mut loaded = served.loaded();
            for entry in scan.entries {
                loaded.insert(entry.name.clone());
                changes.added.push((
                    JobKey {
                        spec: spec.to_string(),
                        name: entry.name,
                    },
                    entry.meta,
                ));
            }
        }
        changes.io_errors.append(&mut scan.io_errors);
        quarantine(spec, served, &scan.unreadable, changes);
    }

    /// The last look of a run that was on duty: jobs in SPECs no drain
    /// serves that arrived since its last look (inotify's news, or every
    /// folder without it), a few per SPEC (enough to find a due one).
    pub(super) fn last_look(&self, news: News) -> Vec<(JobKey, Meta)> {
        let f = lock(&self.folders);
        let mut specs: BTreeSet<String> = if self.watcher.is_none() || news.overflow {
            let mut all: BTreeSet<String> = f.map.keys().cloned().collect();
            all.extend(self.root_names().unwrap_or_default());
            all
        } else {
            let mut some: BTreeSet<String> = news.specs.iter().cloned().collect();
            some.extend(news.new_spec_names.iter().cloned());
            some.extend(f.waiting.iter().cloned());
            for set in [&f.busy, &f.making, &f.unwatched] {
                some.extend(set.iter().cloned());
            }
            some
        };
        drop(f);
        if let Some(only) = &self.only_spec {
            specs.retain(|s| s == only);
        }
        let mut out = Vec::new();
        for spec in specs {
            let spool = self.spool.spec(&spec);
            if !spool.state_dir(State::Pending).is_dir() || spool.is_served().unwrap_or(true) {
                continue; // not a SPEC, or another drain serves it
            }
            let Ok((mut names, _)) = spool.names(State::Pending) else {
                continue;
            };
            names.truncate(LAST_LOOK_READS);
            out.extend(
                spool
                    .scan_names(State::Pending, names)
                    .entries
                    .into_iter()
                    .map(|e| {
                        let key = JobKey {
                            spec: spec.clone(),
                            name: e.name,
                        };
                        (key, e.meta)
                    }),
            );
        }
        out
    }
}

/// Quarantines files of a served pending/ that are not jobs, each on its
/// own: one that cannot be moved stays where it is (never sent), is
/// reported (the run exits 1), and the folder's jobs are served anyway.
fn quarantine(spec: &str, served: &Served, bad: &[Unreadable], changes: &mut Changes) {
    if bad.is_empty() {
        return;
    }
    let _lock = match served.spool.lock_drain() {
        Ok(lock) => lock,
        Err(e) => {
            changes.unquarantined.push(format!("SPEC {spec}: {e:#}"));
            return;
        }
    };
    for file in bad {
        match served.spool.quarantine(file) {
            Ok(q) => changes.quarantined.push(q),
            Err(e) => changes.unquarantined.push(format!("{e:#}")),
        }
    }
}
