//! The engine's view of a queue backend: which jobs wait, claim one, settle
//! it, requeue it, log an attempt, and the shared per-subscription state.
//! [`SpoolQueue`] is the local spool's implementation: it serves SPECs
//! (drain.alive), recovers what a dead drain left, moves its own jobs with
//! no lock but drain.alive (see `crate::spool`), takes drain.lock only for
//! recovery, quarantining and pruning (never across a request), and lists a
//! served pending/ when inotify tells of an arrival. A second backend
//! implements [`Queue`] and reuses the scheduler and the engine unchanged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

use super::scheduler::JobKey;
use crate::circuit::Circuit;
use crate::clock;
use crate::config::Config;
use crate::evidence::{Evidence, Record};
use crate::spool::{AliveLock, Claim, Job, Meta, Quarantined, SpecSpool, Spool, State, Unreadable};

/// What a refresh found.
#[derive(Debug, Default)]
pub struct Changes {
    /// Jobs newly waiting (or waiting again), with their metadata.
    pub added: Vec<(JobKey, Meta)>,
    /// Jobs no longer waiting (claimed, replayed, discarded, shed).
    pub removed: Vec<JobKey>,
    pub quarantined: Vec<Quarantined>,
    /// Files that could not be read now; left in place.
    pub io_errors: Vec<String>,
    pub recovered: usize,
    /// SPECs with work that another drain serves.
    pub busy: Vec<String>,
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
    /// Stores the job in the state its metadata names.
    fn settle(&self, key: &JobKey, job: &Job) -> Result<()>;
    /// Puts a claimed job back unchanged.
    fn requeue(&self, key: &JobKey) -> Result<()>;
    fn log(&self, spec: &str, records: &[Record]) -> Result<()>;
    fn circuit(&self, subscription: &str) -> Result<Circuit>;
    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<crate::circuit::Transition>,
    ) -> Result<(Option<crate::circuit::Transition>, Circuit)>;
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
    /// Whether jobs not yet handed over are still coming without waiting
    /// (a backend that hands jobs out in batches): a run that is not
    /// watching goes on while they are.
    fn more_to_come(&self) -> bool {
        false
    }
}

/// Below this much free space a drain takes no new job: settling one and
/// logging its attempt needs a few KiB, and a full disk must not turn every
/// delivery into a resend.
const MIN_FREE_BYTES: u64 = 1024 * 1024;

fn free_bytes(path: &std::path::Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

struct Served {
    spool: SpecSpool,
    evidence: Evidence,
    /// Serving the SPEC: the proof that claims and settles ask for.
    alive: AliveLock,
    /// Pending names seen at the last listing.
    known: Mutex<HashSet<String>>,
    /// inotify tells of arrivals in its pending/: listed only then (and
    /// every [`LIST_EVERY`]), not at every look.
    watched: bool,
    listed_at: Mutex<Option<Instant>>,
}

/// With inotify, how often a served pending/ is listed even without news
/// (a missed event, jobs shed by emit's overflow).
const LIST_EVERY: Duration = Duration::from_secs(1);

/// Which served pending/ folders inotify says changed.
#[derive(Default)]
struct News {
    /// Watch descriptor → SPEC.
    watches: HashMap<i32, String>,
    specs: HashSet<String>,
}

pub struct SpoolQueue<'a> {
    spool: Spool,
    config: &'a Config,
    only_spec: Option<String>,
    served: Mutex<BTreeMap<String, Arc<Served>>>,
    swept: Mutex<HashSet<String>>,
    /// Tells of jobs renamed into a served SPEC's pending/ (emit's last
    /// step), so that a new job starts at once, not at the next poll.
    inotify: Option<std::os::fd::OwnedFd>,
    /// SPECs this drain let go of, with their pending/ folder's mtime then:
    /// it serves them again only when something changed there (jobs it
    /// will not send must not make it take and drop a SPEC every poll).
    released: Mutex<HashMap<String, Option<SystemTime>>>,
    news: Mutex<News>,
    /// [`LIST_EVERY`] (tests stretch it).
    list_every: Duration,
    /// Written when the run ends, so that a waiting watcher returns at
    /// once instead of at its next tick (a one-shot drain exits sooner).
    stop: Option<std::os::fd::OwnedFd>,
}

fn pending_mtime(spool: &SpecSpool) -> Option<SystemTime> {
    std::fs::metadata(spool.state_dir(State::Pending))
        .and_then(|m| m.modified())
        .ok()
}

impl<'a> SpoolQueue<'a> {
    pub fn new(config: &'a Config, only_spec: Option<String>) -> SpoolQueue<'a> {
        SpoolQueue {
            spool: Spool::new(&config.spool_dir),
            config,
            only_spec,
            served: Mutex::new(BTreeMap::new()),
            swept: Mutex::new(HashSet::new()),
            released: Mutex::new(HashMap::new()),
            news: Mutex::new(News::default()),
            list_every: LIST_EVERY,
            stop: rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .ok(),
            inotify: {
                use rustix::fs::inotify::{CreateFlags, init};
                init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()
            },
        }
    }

    fn get(&self, spec: &str) -> Option<Arc<Served>> {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(spec)
            .cloned()
    }

    fn served_or_fail(&self, spec: &str) -> Result<Arc<Served>> {
        self.get(spec)
            .ok_or_else(|| anyhow::anyhow!("SPEC {spec} is not served by this drain"))
    }

    /// Becomes the drain serving `spec` if it has work and nobody serves it.
    fn serve(&self, spec: &str, changes: &mut Changes) -> Result<Option<Arc<Served>>> {
        let spool = self.spool.spec(spec);
        if let Some(then) = self
            .released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(spec)
            && *then == pending_mtime(&spool)
        {
            return Ok(None);
        }
        if spool.count(State::Pending)? == 0 && spool.count(State::Active)? == 0 {
            return Ok(None);
        }
        let Some(alive) = spool.try_serve()? else {
            changes.busy.push(spec.to_string());
            return Ok(None);
        };
        {
            let lock = spool.lock_drain()?;
            let (recovered, quarantined) = spool.recover(&alive, &lock)?;
            changes.recovered += recovered;
            changes.quarantined.extend(quarantined);
            if self
                .swept
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(spec.to_string())
            {
                spool.sweep_tmp(&lock, clock::now_ms());
            }
        }
        self.released
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(spec);
        let mut watched = false;
        if let Some(fd) = &self.inotify {
            // The same watch if it was added before; failing only means
            // listing pending/ at every look.
            use rustix::fs::inotify::{WatchFlags, add_watch};
            if let Ok(wd) = add_watch(fd, spool.state_dir(State::Pending), WatchFlags::MOVED_TO) {
                self.news_lock().watches.insert(wd, spec.to_string());
                watched = true;
            }
        }
        let served = Arc::new(Served {
            evidence: Evidence::new(
                self.config.evidence_for(spec),
                self.config.max_evidence_bytes,
            ),
            spool,
            alive,
            known: Mutex::new(HashSet::new()),
            watched,
            listed_at: Mutex::new(None),
        });
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.to_string(), Arc::clone(&served));
        Ok(Some(served))
    }

    fn news_lock(&self) -> std::sync::MutexGuard<'_, News> {
        self.news.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a served SPEC's pending/ must be listed now; takes its news.
    fn list_now(&self, served: &Served) -> bool {
        let news = {
            let mut news = self.news_lock();
            news.specs.remove(&served.spool.spec)
        };
        let mut listed_at = served.listed_at.lock().unwrap_or_else(|e| e.into_inner());
        let stale = listed_at.is_none_or(|t| t.elapsed() >= self.list_every);
        let now = news || stale || !served.watched;
        if now {
            *listed_at = Some(Instant::now());
        }
        now
    }

    fn look(&self, served: &Served, changes: &mut Changes) -> Result<()> {
        if !self.list_now(served) {
            return Ok(());
        }
        let spec = &served.spool.spec;
        let (names, strays) = served.spool.names(State::Pending)?;
        let mut known = served.known.lock().unwrap_or_else(|e| e.into_inner());
        let present: HashSet<&String> = names.iter().collect();
        let gone: Vec<String> = known
            .iter()
            .filter(|n| !present.contains(n))
            .cloned()
            .collect();
        for name in gone {
            known.remove(&name);
            changes.removed.push(JobKey {
                spec: spec.clone(),
                name,
            });
        }
        let new: Vec<String> = names
            .iter()
            .filter(|n| !known.contains(*n))
            .cloned()
            .collect();
        let mut scan = served.spool.scan_names(State::Pending, new);
        for entry in scan.entries {
            known.insert(entry.name.clone());
            changes.added.push((
                JobKey {
                    spec: spec.clone(),
                    name: entry.name,
                },
                entry.meta,
            ));
        }
        drop(known);
        changes.io_errors.append(&mut scan.io_errors);
        scan.unreadable
            .extend(strays.into_iter().map(|path| Unreadable {
                path,
                reason: "not a job file name".into(),
            }));
        if !scan.unreadable.is_empty() {
            let _lock = served.spool.lock_drain()?;
            for bad in &scan.unreadable {
                changes.quarantined.push(served.spool.quarantine(bad)?);
            }
        }
        Ok(())
    }
}

impl Queue for SpoolQueue<'_> {
    fn refresh(&self) -> Result<Changes> {
        let mut changes = Changes::default();
        let specs = match &self.only_spec {
            Some(spec) => vec![spec.clone()],
            None => self.spool.specs()?,
        };
        // One SPEC's trouble (an unreadable folder, a stuck lock) is
        // reported and skipped: it never stops delivery for the others.
        for spec in specs {
            let looked = match self.get(&spec) {
                Some(served) => self.look(&served, &mut changes),
                None => match self.serve(&spec, &mut changes) {
                    Ok(Some(served)) => self.look(&served, &mut changes),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = looked {
                changes.io_errors.push(format!("SPEC {spec}: {e:#}"));
            }
        }
        Ok(changes)
    }

    fn claim(&self, key: &JobKey) -> Result<Claimed> {
        let served = self.served_or_fail(&key.spec)?;
        served
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key.name);
        Ok(match served.spool.claim(&served.alive, &key.name)? {
            Claim::Job(job) => Claimed::Job(job),
            Claim::Gone => Claimed::Gone,
            Claim::Quarantined(q) => Claimed::Quarantined(q),
        })
    }

    fn settle(&self, key: &JobKey, job: &Job) -> Result<()> {
        let served = self.served_or_fail(&key.spec)?;
        // Typed: the engine tells a failure after the rename apart
        // (`SettleError::of`).
        Ok(served.spool.settle(&served.alive, job)?)
    }

    fn requeue(&self, key: &JobKey) -> Result<()> {
        let served = self.served_or_fail(&key.spec)?;
        served.spool.unclaim(&served.alive, &key.name)
    }

    fn log(&self, spec: &str, records: &[Record]) -> Result<()> {
        match self.get(spec) {
            Some(served) => served.evidence.append(records),
            None => Evidence::new(
                self.config.evidence_for(spec),
                self.config.max_evidence_bytes,
            )
            .append(records),
        }
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        self.spool.circuit(subscription)
    }

    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<crate::circuit::Transition>,
    ) -> Result<(Option<crate::circuit::Transition>, Circuit)> {
        self.spool.update_circuit(subscription, change)
    }

    fn release(&self, spec: &str) -> Result<Vec<(JobKey, Meta)>> {
        let Some(served) = self
            .served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(spec)
        else {
            return Ok(Vec::new());
        };
        let trimmed = served
            .spool
            .lock_drain()
            .and_then(|lock| served.evidence.enforce_cap(&served.spool, &lock));
        let spool = served.spool.clone();
        let known = std::mem::take(&mut *served.known.lock().unwrap_or_else(|e| e.into_inner()));
        drop(served); // drain.alive is free from here on
        let mtime = pending_mtime(&spool);
        trimmed?;
        let (names, _) = spool.names(State::Pending)?;
        let arrived: Vec<String> = names.into_iter().filter(|n| !known.contains(n)).collect();
        if arrived.is_empty() {
            // Nothing new: serve it again only once pending/ changes. With
            // arrivals, the caller may serve it again right away (an emit
            // that saw it served started no drain).
            self.released
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(spec.to_string(), mtime);
        }
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

    fn trim(&self, spec: &str) -> Result<()> {
        let served = self.served_or_fail(spec)?;
        let lock = served.spool.lock_drain()?;
        served.evidence.enforce_cap(&served.spool, &lock).map(drop)
    }

    fn watches(&self) -> bool {
        self.inotify.is_some()
    }

    fn wait_for_news(&self, timeout: std::time::Duration) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let Some(fd) = &self.inotify else {
            std::thread::sleep(timeout);
            return false;
        };
        let mut fds = vec![PollFd::new(fd, PollFlags::IN)];
        if let Some(stop) = &self.stop {
            fds.push(PollFd::new(stop, PollFlags::IN));
        }
        let wait = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        if !poll(&mut fds, Some(&wait)).is_ok_and(|n| n > 0) || fds[0].revents().is_empty() {
            return false;
        }
        // Drain what is there, noting which SPECs have news: one wake-up
        // is enough for any number.
        use rustix::fs::inotify::ReadFlags;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut events = rustix::fs::inotify::Reader::new(fd, &mut buf);
        let mut news = self.news_lock();
        while let Ok(event) = events.next() {
            if event.events().contains(ReadFlags::QUEUE_OVERFLOW) {
                // Events were lost: every SPEC may have news.
                let all: Vec<String> = news.watches.values().cloned().collect();
                news.specs.extend(all);
            } else if let Some(spec) = news.watches.get(&event.wd()).cloned() {
                news.specs.insert(spec);
            }
        }
        true
    }

    fn stop_waiting(&self) {
        if let Some(stop) = &self.stop {
            // Left unread: every later wait returns at once too.
            let _ = rustix::io::write(stop, &1u64.to_ne_bytes());
        }
    }

    fn can_record(&self) -> bool {
        [self.spool.root(), self.config.evidence_dir.as_path()]
            .into_iter()
            .all(|dir| free_bytes(dir).is_none_or(|free| free >= MIN_FREE_BYTES))
    }

    fn served(&self) -> Vec<String> {
        self.served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Job, Meta};

    /// The default config with its spool and evidence under `dir`.
    fn config_in(dir: &std::path::Path) -> Config {
        let text = format!(
            "[spec_ops.webhooks]\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n",
            dir.display()
        );
        crate::config::parse(&text, &dir.join("config.toml")).unwrap()
    }

    fn job(spool: &SpecSpool, seq: u64) -> Job {
        Job {
            meta: Meta::new(&spool.spec, "sub", "a.b.c", "k", seq, 1000),
            body: br#"{"x":1}"#.to_vec(),
        }
    }

    #[test]
    fn a_served_pending_folder_is_listed_on_news_not_at_every_look() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let spool = Spool::new(&config.spool_dir).spec("S");
        spool.enqueue(&[job(&spool, 1)]).unwrap();
        let mut queue = SpoolQueue::new(&config, None);
        queue.list_every = std::time::Duration::from_secs(3600);
        assert!(queue.watches(), "inotify is available here");
        assert_eq!(queue.refresh().unwrap().added.len(), 1);
        // Written in place (no rename, so no news): not listed yet.
        let quiet = job(&spool, 2);
        std::fs::write(
            spool.state_dir(State::Pending).join(quiet.meta.file_name()),
            quiet.encode(),
        )
        .unwrap();
        assert!(queue.refresh().unwrap().added.is_empty());
        // emit's rename is news: the next look lists the folder.
        spool.enqueue(&[job(&spool, 3)]).unwrap();
        assert!(queue.wait_for_news(std::time::Duration::from_secs(10)));
        assert_eq!(queue.refresh().unwrap().added.len(), 2);
    }

    #[test]
    fn stop_waiting_ends_a_wait_for_news_at_once() {
        // A one-shot drain joins its watcher thread as it exits: the
        // watcher must not sit out its tick.
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let queue = SpoolQueue::new(&config, None);
        queue.stop_waiting();
        let started = std::time::Instant::now();
        assert!(!queue.wait_for_news(std::time::Duration::from_secs(20)));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the wait sat out its timeout"
        );
    }

    #[test]
    fn a_job_that_arrives_as_a_spec_is_let_go_is_served_again() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let spool = Spool::new(&config.spool_dir).spec("S");
        spool.enqueue(&[job(&spool, 1)]).unwrap();
        let queue = SpoolQueue::new(&config, None);
        let seen = queue.refresh().unwrap();
        assert_eq!(seen.added.len(), 1);
        let key = seen.added[0].0.clone();
        let Claimed::Job(mut first) = queue.claim(&key).unwrap() else {
            panic!("claimed")
        };
        first.meta.state = State::Delivered;
        queue.settle(&key, &first).unwrap();
        // An emit after the last look: it saw the SPEC served, started no drain.
        spool.enqueue(&[job(&spool, 2)]).unwrap();
        let arrived = queue.release("S").unwrap();
        assert_eq!(arrived.len(), 1, "the release reports the arrival");
        let again = queue.refresh().unwrap();
        assert_eq!(again.added.len(), 1, "and the SPEC is served again for it");
        assert_eq!(queue.served(), ["S"]);

        // Let go with nothing new: not taken again until pending/ changes.
        let key = again.added[0].0.clone();
        let Claimed::Job(mut second) = queue.claim(&key).unwrap() else {
            panic!("claimed")
        };
        second.meta.state = State::Delivered;
        queue.settle(&key, &second).unwrap();
        assert!(queue.release("S").unwrap().is_empty());
        assert!(queue.refresh().unwrap().added.is_empty());
        assert!(queue.served().is_empty());
    }
}
