//! [`Watcher`]: inotify on a spool, so that a long-running process (the
//! relay, a drain) learns of new jobs when they arrive instead of listing
//! folders in a loop. It watches the spool root for new SPEC folders and
//! each watched SPEC's `pending/` for jobs renamed into it (emit's last
//! step, replay's and a requeue's too). Events name the SPEC and the job
//! file; an overflowed event queue says "anything may have changed". Where
//! inotify is not available, [`Watcher::new`] returns `None` and the caller
//! lists on a timer. Watches cost no file descriptor (one inotify
//! descriptor holds them all), only kernel memory, up to
//! `/proc/sys/fs/inotify/max_user_watches` per user: a folder that cannot
//! be watched is for the caller to list on a timer ([`Watcher::try_watch`]
//! says why).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::Mutex;
use std::time::Duration;

use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};

use super::{SpecSpool, Spool, State};

/// What a wait saw.
#[derive(Debug, Default)]
pub struct News {
    /// A folder appeared in the spool root (a new SPEC, maybe).
    pub new_specs: bool,
    /// The folders that appeared in the spool root, by name.
    pub new_spec_names: BTreeSet<String>,
    /// SPECs whose pending/ got jobs.
    pub specs: HashSet<String>,
    /// The file names renamed into each SPEC's pending/ (at most
    /// [`MAX_NAMES`] per SPEC; beyond that, `specs` still names it).
    pub names: HashMap<String, BTreeSet<String>>,
    /// SPECs whose pending/ watch ended (the folder was removed or renamed).
    pub unwatched: HashSet<String>,
    /// Events were lost: look at everything.
    pub overflow: bool,
}

/// The most file names [`News`] keeps per SPEC: a burst beyond that is
/// "this SPEC has news" (the caller lists it).
pub const MAX_NAMES: usize = 4096;

impl News {
    pub fn is_empty(&self) -> bool {
        !self.new_specs && !self.overflow && self.specs.is_empty() && self.unwatched.is_empty()
    }

    /// Adds what a later wait saw.
    pub fn merge(&mut self, later: News) {
        self.new_specs |= later.new_specs;
        self.overflow |= later.overflow;
        self.new_spec_names.extend(later.new_spec_names);
        self.specs.extend(later.specs);
        self.unwatched.extend(later.unwatched);
        for (spec, names) in later.names {
            let kept = self.names.entry(spec).or_default();
            kept.extend(names.into_iter().take(MAX_NAMES.saturating_sub(kept.len())));
        }
    }
}

pub struct Watcher {
    fd: OwnedFd,
    root: Option<i32>,
    /// Watch descriptor → SPEC.
    specs: Mutex<HashMap<i32, String>>,
    /// Written by [`Watcher::stop`]: every wait returns at once.
    stop: OwnedFd,
}

impl Watcher {
    /// Watches the spool root; `None` without inotify.
    pub fn new(spool: &Spool) -> Option<Watcher> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
        let stop = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok()?;
        let root = inotify::add_watch(
            &fd,
            spool.root(),
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ONLYDIR,
        )
        .ok();
        Some(Watcher {
            fd,
            root,
            specs: Mutex::new(HashMap::new()),
            stop,
        })
    }

    /// Whether the spool root is watched (it may not exist yet).
    pub fn sees_new_specs(&self) -> bool {
        self.root.is_some()
    }

    /// Watches a SPEC's pending/ (again is harmless); false if it could not.
    pub fn watch(&self, spool: &SpecSpool) -> bool {
        self.try_watch(spool).is_ok()
    }

    /// [`Watcher::watch`], saying why it could not: `NOENT` (no pending/
    /// yet: the folder is being made), `NOSPC` (the user's inotify watches
    /// are used up).
    pub fn try_watch(&self, spool: &SpecSpool) -> Result<(), rustix::io::Errno> {
        let wd = inotify::add_watch(
            &self.fd,
            spool.state_dir(State::Pending),
            WatchFlags::MOVED_TO,
        )?;
        self.specs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(wd, spool.spec.clone());
        Ok(())
    }

    /// How many SPECs' pending/ folders are watched.
    pub fn watched(&self) -> usize {
        self.specs.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Waits up to `timeout` for news, then takes every event there is.
    pub fn wait(&self, timeout: Duration) -> News {
        let mut fds = [
            PollFd::new(&self.fd, PollFlags::IN),
            PollFd::new(&self.stop, PollFlags::IN),
        ];
        let wait = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        let mut news = News::default();
        if !poll(&mut fds, Some(&wait)).is_ok_and(|n| n > 0) || fds[0].revents().is_empty() {
            return news;
        }
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut events = inotify::Reader::new(&self.fd, &mut buf);
        let mut specs = self.specs.lock().unwrap_or_else(|e| e.into_inner());
        while let Ok(event) = events.next() {
            let flags = event.events();
            let name = event
                .file_name()
                .and_then(|n| n.to_str().ok())
                .map(String::from);
            if flags.contains(ReadFlags::QUEUE_OVERFLOW) {
                news.overflow = true;
            } else if Some(event.wd()) == self.root {
                news.new_specs = true;
                if let Some(name) = name.filter(|n| !n.starts_with('.'))
                    && flags.contains(ReadFlags::ISDIR)
                {
                    news.new_spec_names.insert(name);
                }
            } else if flags.contains(ReadFlags::IGNORED) {
                if let Some(spec) = specs.remove(&event.wd()) {
                    news.unwatched.insert(spec);
                }
            } else if let Some(spec) = specs.get(&event.wd()) {
                news.specs.insert(spec.clone());
                let names = news.names.entry(spec.clone()).or_default();
                if let Some(name) = name
                    && names.len() < MAX_NAMES
                {
                    names.insert(name);
                }
            }
        }
        news
    }

    /// Ends every wait, now and later.
    pub fn stop(&self) {
        let _ = rustix::io::write(&self.stop, &1u64.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_of_new_specs_and_of_jobs_renamed_into_pending() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        let watcher = Watcher::new(&spool).expect("inotify here");
        assert!(watcher.sees_new_specs());
        let s = spool.spec("S-1");
        s.ensure().unwrap();
        let news = watcher.wait(Duration::from_secs(10));
        assert!(news.new_specs);
        assert!(news.new_spec_names.contains("S-1"), "{news:?}");
        assert!(watcher.watch(&s));
        let job = crate::spool::Job {
            meta: crate::spool::Meta::new("S-1", "sub", "a.b.c", "k", 1, 1000),
            body: b"{}".to_vec(),
        };
        s.enqueue(&[job]).unwrap();
        let news = watcher.wait(Duration::from_secs(10));
        assert!(news.specs.contains("S-1"), "{news:?}");
        assert_eq!(news.names["S-1"].len(), 1, "{news:?}");
        std::fs::remove_dir_all(s.dir()).unwrap();
        let mut gone = News::default();
        while gone.unwatched.is_empty() {
            gone.merge(watcher.wait(Duration::from_secs(10)));
        }
        assert!(gone.unwatched.contains("S-1"), "{gone:?}");
        assert_eq!(watcher.watched(), 0);
        watcher.stop();
        assert!(watcher.wait(Duration::from_secs(20)).is_empty());
    }
}
