//! `relay`: moves this host's pending jobs into the jobs stream, each on
//! its lane subject. Jobs are claimed (pending/ → active/) under the SPEC's
//! drain.alive a batch at a time, all of a batch published at once
//! (`Nats-Msg-Id` = its delivery id), and removed from active/ only after
//! the server's ack. A relay that dies in between leaves jobs in active/;
//! the next relay (or drain) puts them back in pending/ and publishes them
//! again, which the server stores once (within its de-duplication window).
//! A subscription's first job also announces its lane (a key in the
//! breaker bucket), so that workers start serving it; a long-running relay
//! announces it again every [`ANNOUNCE_EVERY`] while it has jobs (a bucket
//! deleted and made anew has lost its keys). One relay at a time
//! per spool (`relay.alive`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;

use super::Nats;
use super::client::Outgoing;
use crate::config::Config;
use crate::spool::{AliveLock, Claim, Job, Quarantined, Spool, State};

/// Jobs published at once before their acks are awaited.
const BATCH: usize = 512;

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

/// How long an announce stands before a relay with jobs of that
/// subscription makes it again (one compare-and-swap, a no-op while the
/// key is there).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(60);

/// The relay's memory across passes: subscriptions whose lanes it has
/// announced, and when.
#[derive(Debug, Default)]
pub struct Relayer {
    announced: HashMap<String, Instant>,
}

impl Relayer {
    /// One pass over the SPECs named (every SPEC when `None`): publishes
    /// each pending job. Stops at the first publish the server does not
    /// confirm (those jobs go back to pending). `_relay` proves this
    /// process is the relay.
    pub fn pass(
        &mut self,
        config: &Config,
        nats: &Nats,
        _relay: &AliveLock,
        only: Option<&HashSet<String>>,
    ) -> Result<Moved> {
        let spool = Spool::new(&config.spool_dir);
        let mut moved = Moved::default();
        let specs = match only {
            Some(only) => only.iter().cloned().collect(),
            None => spool.specs()?,
        };
        for spec in specs {
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
            for chunk in names.chunks(BATCH) {
                let mut claimed: Vec<(String, Job)> = Vec::with_capacity(chunk.len());
                for name in chunk {
                    match s.claim(&alive, name)? {
                        Claim::Job(job) => claimed.push((name.clone(), *job)),
                        Claim::Gone => {}
                        Claim::Quarantined(q) => moved.quarantined.push(q),
                    }
                }
                let result = self.publish(nats, &mut claimed);
                let mut failed = None;
                for ((name, _), published) in claimed.iter().zip(result) {
                    match published {
                        Ok(()) => {
                            s.release_claim(&alive, name)?;
                            moved.published += 1;
                        }
                        Err(e) => {
                            s.unclaim(&alive, name)?;
                            failed.get_or_insert(e.context(format!(
                                "job {name} of {spec} stays in the spool; run `spec-notify relay` again"
                            )));
                        }
                    }
                }
                if let Some(e) = failed {
                    return Err(e);
                }
            }
        }
        Ok(moved)
    }

    /// Announces new lanes, then publishes the claimed jobs all at once;
    /// one result per job.
    fn publish(&mut self, nats: &Nats, claimed: &mut [(String, Job)]) -> Vec<Result<()>> {
        for (_, job) in claimed.iter() {
            let sub = &job.meta.subscription;
            if self
                .announced
                .get(sub)
                .is_none_or(|at| at.elapsed() >= ANNOUNCE_EVERY)
            {
                if let Err(e) = super::circuits::announce(nats, sub) {
                    return claimed
                        .iter()
                        .map(|_| Err(anyhow::anyhow!("{e:#}")))
                        .collect();
                }
                self.announced.insert(sub.clone(), Instant::now());
            }
        }
        let outgoing = claimed
            .iter_mut()
            .map(|(_, job)| {
                job.meta.state = State::Pending;
                Outgoing {
                    subject: nats.names.lane(&job.meta.subscription, &job.meta.spec),
                    msg_id: Some(relay_id(&job.meta)),
                    headers: Vec::new(),
                    payload: Bytes::from(job.encode()),
                }
            })
            .collect();
        nats.publish_all(outgoing)
    }
}
