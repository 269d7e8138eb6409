//! The spool-overflow policy: when a SPEC holds `max_spool_jobs` pending
//! jobs, emit moves the oldest to dead/ (reason `spool-overflow`) instead of
//! refusing new events or deleting anything.

use std::fs;
use std::io;

use anyhow::{Context, Result};

use super::{Meta, SYNC_EACH_LIMIT, SpecSpool, State};
use crate::files::{fsync_dir, syncfs, write_tmp};

/// The dead reason of a job shed for spool-overflow.
pub const OVERFLOW: &str = "spool-overflow";

/// What [`SpecSpool::shed_overflow`] did.
#[derive(Debug, Default)]
pub struct Shed {
    /// Delivery ids moved to dead/.
    pub moved: Vec<String>,
    /// Jobs moved to dead/ whose reason could not be added (unreadable).
    pub warnings: Vec<String>,
}

impl SpecSpool {
    /// Moves the oldest pending jobs to dead/ (reason `spool-overflow`) so that
    /// `incoming` new jobs fit under `max`. Each is claimed by a rename (a
    /// drain's claim of the same job fails cleanly), then rewritten with its
    /// reason, under drain.lock; many at once share one sync.
    pub fn shed_overflow(&self, max: usize, incoming: usize, now_ms: u64) -> Result<Shed> {
        let (names, _) = self.names(State::Pending)?;
        if (names.len() + incoming).saturating_sub(max) == 0 {
            return Ok(Shed::default());
        }
        // replay and discard move dead jobs under drain.lock: without it, a
        // replay between the rename to dead/ and the rewrite below would
        // leave the job both pending and dead (sent twice). emit never
        // waits for it (a replay of thousands of jobs holds it for
        // seconds): the bound is exceeded for now, and the next emit sheds
        // (working out the excess from a fresh listing).
        let Some(_lock) = self.try_lock_drain()? else {
            let holder = crate::files::lock::holder(&self.lock_path("drain.lock")?);
            return Ok(Shed {
                warnings: vec![format!(
                    "{} is over max_spool_jobs = {max}, but {holder} holds its drain.lock (a replay, discard or drain moving jobs): nothing was moved to dead-letter this time; the next emit does it",
                    self.spec
                )],
                ..Shed::default()
            });
        };
        // Listed again: jobs may have moved while the lock was free.
        let (names, _) = self.names(State::Pending)?;
        let excess = (names.len() + incoming).saturating_sub(max);
        let dead = self.state_dir(State::Dead);
        let mut shed = Shed::default();
        let mut claimed = Vec::new();
        for name in names.iter().take(excess) {
            let from = self.state_dir(State::Pending).join(name);
            match fs::rename(&from, dead.join(name)) {
                Ok(()) => claimed.push(name),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // a drain claimed it first
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("failed to move `{}` to dead-letter", from.display())
                    });
                }
            }
        }
        let sync_each = claimed.len() <= SYNC_EACH_LIMIT;
        let mut rewritten = Vec::new();
        for name in claimed {
            let path = dead.join(name);
            let mut job = match self.read(State::Dead, name) {
                Ok(job) => job,
                Err(e) => {
                    // It is in dead/ already; its reason just cannot be added.
                    shed.warnings
                        .push(format!("{e:#}; moved to dead-letter as it is"));
                    continue;
                }
            };
            mark_overflow(&mut job.meta, max, now_ms);
            rewritten.push((
                write_tmp(&dead, name, &job.encode(), sync_each)?,
                path,
                job.meta.delivery_id,
            ));
        }
        if !sync_each {
            syncfs(&dead)?;
        }
        for (tmp, path, id) in rewritten {
            fs::rename(&tmp, &path)
                .with_context(|| format!("failed to replace `{}`", path.display()))?;
            shed.moved.push(id);
        }
        if !shed.moved.is_empty() {
            fsync_dir(&dead)?;
        }
        Ok(shed)
    }
}

/// Marks a job dead for spool-overflow, with what to do about it.
pub fn mark_overflow(meta: &mut Meta, max: usize, now_ms: u64) {
    meta.state = State::Dead;
    meta.dead_reason = Some(OVERFLOW.into());
    meta.finished_at_ms = Some(now_ms);
    meta.hint = Some(format!(
        "the spool held {max} pending jobs (max_spool_jobs); raise it or fix delivery, then run `spec-notify replay {} --delivery-id {}`",
        meta.spec, meta.delivery_id
    ));
}
