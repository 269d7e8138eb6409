//! `relay`: moves this host's pending jobs into the jobs stream. Each job is
//! claimed (pending/ → active/) under the SPEC's drain.alive, published with
//! `Nats-Msg-Id` = its delivery id and removed from active/ only after the
//! server's ack. A relay that dies in between leaves the job in active/; the
//! next relay (or drain) puts it back in pending/ and publishes it again,
//! which the server stores once (within its de-duplication window).
//! One relay at a time per spool (`relay.alive`).

use std::path::PathBuf;

use anyhow::Result;

use super::Nats;
use crate::config::Config;
use crate::spool::{AliveLock, Claim, Quarantined, Spool, State};

/// What a pass moved.
#[derive(Debug, Default)]
pub struct Moved {
    pub published: usize,
    /// Jobs a local drain or relay put back after a crash.
    pub recovered: usize,
    /// SPECs a local drain serves right now (skipped).
    pub busy: Vec<String>,
    pub quarantined: Vec<Quarantined>,
}

/// The lock a running relay holds.
pub fn alive_path(config: &Config) -> PathBuf {
    config.spool_dir.join("relay.alive")
}

/// Takes relay.alive unless another relay holds it.
pub fn try_serve(config: &Config) -> Result<Option<AliveLock>> {
    crate::spool::files::create_private_dir(&config.spool_dir)?;
    AliveLock::try_take(&alive_path(config))
}

/// Whether any SPEC has pending (or stranded active) jobs.
pub fn has_work(config: &Config) -> Result<bool> {
    let spool = Spool::new(&config.spool_dir);
    for spec in spool.specs()? {
        let s = spool.spec(&spec);
        if s.count(State::Pending)? > 0 || s.count(State::Active)? > 0 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The Nats-Msg-Id of a job entering the stream from a spool: its delivery
/// id (after a local replay, the replay count too, so it is not taken for a
/// duplicate of its first trip).
pub fn relay_id(meta: &crate::spool::Meta) -> String {
    if meta.replays == 0 {
        meta.delivery_id.clone()
    } else {
        format!("{}.r{}", meta.delivery_id, meta.replays)
    }
}

/// One pass over every SPEC: publishes each pending job. Stops at the first
/// publish the server does not confirm (the job goes back to pending).
/// `_relay` proves this process is the relay.
pub fn pass(config: &Config, nats: &Nats, _relay: &AliveLock) -> Result<Moved> {
    let spool = Spool::new(&config.spool_dir);
    let mut moved = Moved::default();
    for spec in spool.specs()? {
        let s = spool.spec(&spec);
        if s.count(State::Pending)? == 0 && s.count(State::Active)? == 0 {
            continue;
        }
        let Some(alive) = s.try_serve()? else {
            moved.busy.push(spec);
            continue;
        };
        {
            let lock = s.lock_drain()?;
            let (recovered, quarantined) = s.recover(&alive, &lock)?;
            moved.recovered += recovered;
            moved.quarantined.extend(quarantined);
        }
        let (names, _) = s.names(State::Pending)?;
        for name in names {
            let claimed = s.claim(&alive, &name)?;
            let job = match claimed {
                Claim::Job(job) => job,
                Claim::Gone => continue,
                Claim::Quarantined(q) => {
                    moved.quarantined.push(q);
                    continue;
                }
            };
            let mut job = *job;
            job.meta.state = State::Pending;
            let published = nats.publish(
                &nats.names.jobs_subject,
                Some(&relay_id(&job.meta)),
                job.encode(),
            );
            match published {
                Ok(()) => {
                    s.release_claim(&alive, &name)?;
                    moved.published += 1;
                }
                Err(e) => {
                    s.unclaim(&alive, &name)?;
                    return Err(e.context(format!(
                        "job {name} of {spec} stays in the spool; run `spec-notify relay` again"
                    )));
                }
            }
        }
    }
    Ok(moved)
}
