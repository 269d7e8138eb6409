//! The local spool's word on a FIFO line (`ordering = "fifo"`): before a
//! job of a FIFO subscription is claimed, is an earlier job of the same
//! (SPEC, subscription) still in the SPEC's folders? The scheduler sends
//! only the lowest sequence it holds; this check makes order independent of
//! what it holds (a job put off on disk, read late, or brought back by an
//! operator). Only the drain serving the SPEC moves its jobs, so what this
//! sees stays true until the claim.
//!
//! It lists `pending/` and `active/` (and `dead/` when a dead job holds its
//! line, `fifo_on_dead = "hold"`) and reads the metadata of the earlier
//! names it has not seen yet: a name's subscription never changes, so a
//! served SPEC remembers it ([`Subscriptions`]).

use std::collections::HashMap;
use std::sync::Mutex;

use anyhow::Result;

use super::Blocker;
use crate::spool::{SpecSpool, State, parse_name as parse_job_name};

/// Names remembered per served SPEC at most; past that the memory starts
/// over (it only saves reads).
const REMEMBERED: usize = 65_536;

/// Which subscription each job name of a served SPEC belongs to.
#[derive(Debug, Default)]
pub(super) struct Subscriptions(Mutex<HashMap<String, String>>);

impl Subscriptions {
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
        let mut states = vec![State::Pending, State::Active];
        if dead_holds {
            states.push(State::Dead);
        }
        let mut found: Option<Blocker> = None;
        for state in states {
            let (names, _) = spool.names(state)?;
            let earlier: Vec<String> = names
                .into_iter()
                .filter(|n| n != name)
                .filter(|n| parse_job_name(n).is_some_and(|(seq, _)| seq < sequence))
                .collect();
            let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
            let unknown: Vec<String> = earlier
                .iter()
                .filter(|n| !known.contains_key(*n))
                .cloned()
                .collect();
            if !unknown.is_empty() {
                if known.len() + unknown.len() > REMEMBERED {
                    known.clear();
                }
                // A file that cannot be read is the drain's to quarantine
                // when its turn comes; here it blocks nothing.
                for entry in spool.scan_names(state, unknown).entries {
                    known.insert(entry.name, entry.meta.subscription);
                }
            }
            for n in &earlier {
                if known.get(n).is_some_and(|s| s == subscription)
                    && let Some((seq, id)) = parse_job_name(n)
                    && found.as_ref().is_none_or(|b| seq < b.sequence)
                {
                    found = Some(Blocker {
                        delivery_id: id.to_string(),
                        sequence: seq,
                        dead: state == State::Dead,
                    });
                }
            }
        }
        Ok(found)
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
        let subs = Subscriptions::default();
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
