//! The local spool's word on a FIFO line (`ordering = "fifo"`): before a
//! job of a FIFO subscription is claimed, is an earlier job of the same
//! (SPEC, subscription) still in the SPEC's folders? The scheduler sends
//! only the lowest sequence it holds; this check makes order independent of
//! what it holds (a job put off on disk, read late, or brought back by an
//! operator). Only the drain serving the SPEC moves its jobs, so what this
//! sees stays true until the claim.
//!
//! It keeps a listing of `pending/` and `active/` (and `dead/` when a dead
//! job holds its line, `fifo_on_dead = "hold"`) per served SPEC, made again
//! when inotify tells of jobs arriving in the SPEC ([`Lines::invalidate`]),
//! at most [`FRESH_FOR`] old otherwise, and trimmed of the jobs this drain
//! settles ([`Lines::settled`]): a claim costs a look-up, not a listing. A
//! name found in the way is checked on disk before it blocks anything (an
//! operator may have discarded it). A name's subscription never changes, so
//! it is read once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Blocker;
use crate::spool::{SpecSpool, State, parse_name as parse_job_name};

/// Names remembered per served SPEC at most; past that the memory starts
/// over (it only saves reads).
const REMEMBERED: usize = 65_536;
/// How old a listing may be without news (a missed event, no inotify).
const FRESH_FOR: Duration = Duration::from_secs(1);

/// Job names in a SPEC's folders by (sequence, name), with their state.
type Listing = BTreeMap<(u64, String), State>;

#[derive(Debug, Default)]
struct Inner {
    /// The listing and when it was made.
    listed: Option<(Instant, Listing)>,
    /// With dead/ listed too.
    with_dead: bool,
    /// Which subscription each name belongs to.
    subscriptions: HashMap<String, String>,
}

/// A served SPEC's FIFO bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Lines(Mutex<Inner>);

impl Lines {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Jobs arrived (or may have): list again before the next check.
    pub fn invalidate(&self) {
        self.inner().listed = None;
    }

    /// This drain settled the job: delivered jobs leave the listing, dead
    /// ones stay (as dead) where a dead job holds its line.
    pub fn settled(&self, name: &str, state: State) {
        let mut inner = self.inner();
        let with_dead = inner.with_dead;
        if let Some((_, listed)) = inner.listed.as_mut()
            && let Some((seq, _)) = parse_job_name(name)
        {
            let key = (seq, name.to_string());
            match state {
                State::Pending | State::Active => {}
                State::Dead if with_dead => {
                    listed.insert(key, State::Dead);
                }
                _ => {
                    listed.remove(&key);
                }
            }
        }
    }

    /// The earliest job before `sequence` of `subscription`'s line, if any:
    /// pending or in flight, or dead when `dead_holds`.
    pub fn blocker(
        &self,
        spool: &SpecSpool,
        name: &str,
        subscription: &str,
        sequence: u64,
        dead_holds: bool,
    ) -> Result<Option<Blocker>> {
        let mut inner = self.inner();
        let stale = match &inner.listed {
            None => true,
            Some((at, _)) => at.elapsed() > FRESH_FOR || (dead_holds && !inner.with_dead),
        };
        if stale {
            let mut listed = BTreeMap::new();
            let mut states = vec![State::Pending, State::Active];
            if dead_holds {
                states.push(State::Dead);
            }
            for state in states {
                for n in spool.names(state)?.0 {
                    if let Some((seq, _)) = parse_job_name(&n) {
                        listed.insert((seq, n), state);
                    }
                }
            }
            inner.listed = Some((Instant::now(), listed));
            inner.with_dead = dead_holds;
        }
        loop {
            let Inner {
                listed,
                subscriptions,
                ..
            } = &mut *inner;
            let Some((_, listed)) = listed.as_mut() else {
                return Ok(None);
            };
            let earlier: Vec<((u64, String), State)> = listed
                .range(..(sequence, String::new()))
                .filter(|((_, n), state)| n != name && (dead_holds || **state != State::Dead))
                .map(|(k, s)| (k.clone(), *s))
                .collect();
            // Subscriptions of the names not seen yet, read in one go.
            let mut unknown: HashMap<State, Vec<String>> = HashMap::new();
            for ((_, n), state) in &earlier {
                if !subscriptions.contains_key(n) {
                    unknown.entry(*state).or_default().push(n.clone());
                }
            }
            if subscriptions.len() + earlier.len() > REMEMBERED {
                subscriptions.clear();
            }
            for (state, names) in unknown {
                // A file that cannot be read is the drain's to quarantine
                // when its turn comes; here it blocks nothing.
                for entry in spool.scan_names(state, names).entries {
                    subscriptions.insert(entry.name, entry.meta.subscription);
                }
            }
            let Some(((seq, found), state)) = earlier
                .into_iter()
                .find(|((_, n), _)| subscriptions.get(n).is_some_and(|s| s == subscription))
            else {
                return Ok(None);
            };
            // Still there? An operator may have discarded or moved it.
            if spool.state_dir(state).join(&found).exists() {
                let id = parse_job_name(&found).map_or("", |(_, id)| id).to_string();
                return Ok(Some(Blocker {
                    delivery_id: id,
                    name: found,
                    sequence: seq,
                    dead: state == State::Dead,
                }));
            }
            listed.remove(&(seq, found));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Job, Meta, Spool};

    fn job(seq: u64, sub: &str) -> Job {
        Job {
            meta: Meta::new("S", sub, "a.b.c", &format!("k{seq}"), seq, 1000),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn an_earlier_job_of_the_same_line_blocks_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let jobs = [job(1, "other"), job(2, "fifo"), job(3, "fifo")];
        spool.enqueue(&jobs).unwrap();
        let subs = Lines::default();
        let name = |j: &Job| j.meta.file_name();
        // The first of its line: nothing before it (job 1 is another line's).
        assert!(
            subs.blocker(&spool, &name(&jobs[1]), "fifo", 2, true)
                .unwrap()
                .is_none()
        );
        // The second waits for the first.
        let b = subs
            .blocker(&spool, &name(&jobs[2]), "fifo", 3, false)
            .unwrap()
            .unwrap();
        assert_eq!((b.sequence, b.dead), (2, false));
        // Dead, it holds only when asked to.
        let mut dead = jobs[1].clone();
        dead.meta.state = State::Dead;
        spool
            .enqueue_in(State::Dead, std::slice::from_ref(&dead))
            .unwrap();
        std::fs::remove_file(spool.state_dir(State::Pending).join(name(&jobs[1]))).unwrap();
        // As this drain tells it when it dead-letters the job.
        subs.settled(&name(&jobs[1]), State::Dead);
        assert!(
            subs.blocker(&spool, &name(&jobs[2]), "fifo", 3, false)
                .unwrap()
                .is_none()
        );
        let b = subs
            .blocker(&spool, &name(&jobs[2]), "fifo", 3, true)
            .unwrap()
            .unwrap();
        assert_eq!((b.sequence, b.dead), (2, true));
    }
}
