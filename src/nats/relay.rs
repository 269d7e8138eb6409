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
//! deleted and made anew has lost its keys). A FIFO subscription's jobs go
//! to its FIFO lanes, one publish in flight per lane, and each lane is
//! touched after (see `super::fifo`). One relay at a time per spool
//! (`relay.alive`).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;

use super::Nats;
use super::client::Outgoing;
use super::fifo::LaneId;
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
                let recovery = s.recover(&alive, &lock)?;
                moved.recovered += recovery.recovered;
                moved.quarantined.extend(recovery.into_quarantined()?);
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
                let result = self.publish(config, nats, &mut claimed);
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

    /// Announces new lanes, then publishes the claimed jobs all at once
    /// (a FIFO lane's one at a time, see [`publish_fifo`]); one result per
    /// job.
    fn publish(
        &mut self,
        config: &Config,
        nats: &Nats,
        claimed: &mut [(String, Job)],
    ) -> Vec<Result<()>> {
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
        let fifo: Vec<bool> = claimed
            .iter()
            .map(|(_, job)| super::fifo::ordering(config, &job.meta).is_fifo())
            .collect();
        let mut results: Vec<Option<Result<()>>> = claimed.iter().map(|_| None).collect();
        let mut unordered = Vec::new();
        let mut outgoing = Vec::new();
        for (i, (_, job)) in claimed.iter_mut().enumerate() {
            job.meta.state = State::Pending;
            if !fifo[i] {
                unordered.push(i);
                outgoing.push(Outgoing {
                    subject: nats.names.lane(&job.meta.subscription, &job.meta.spec),
                    msg_id: Some(relay_id(&job.meta)),
                    headers: Vec::new(),
                    payload: Bytes::from(job.encode()),
                });
            }
        }
        for (i, result) in unordered.into_iter().zip(nats.publish_all(outgoing)) {
            results[i] = Some(result);
        }
        let ordered: Vec<(usize, &Job)> = claimed
            .iter()
            .enumerate()
            .filter(|(i, _)| fifo[*i])
            .map(|(i, (_, job))| (i, job))
            .collect();
        for (i, result) in publish_fifo(nats, &ordered) {
            results[i] = Some(result);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow::anyhow!("not published"))))
            .collect()
    }
}

/// Publishes FIFO jobs (in sequence order per lane, as the spool lists
/// them): one publish in flight per lane, every lane at once, so a failed
/// one stops its lane before any later job of it is stored (the rest wait
/// for the next pass). Then each lane with new jobs is touched, so that
/// workers serve it; a failed touch counts its jobs as not published
/// (published again next pass, stored once, touched again).
fn publish_fifo(nats: &Nats, jobs: &[(usize, &Job)]) -> Vec<(usize, Result<()>)> {
    let mut lanes: Vec<(LaneId, std::collections::VecDeque<(usize, &Job)>)> = Vec::new();
    for &(i, job) in jobs {
        let lane = LaneId {
            subscription: job.meta.subscription.clone(),
            spec: job.meta.spec.clone(),
        };
        match lanes.iter_mut().find(|(l, _)| *l == lane) {
            Some((_, queue)) => queue.push_back((i, job)),
            None => lanes.push((lane, [(i, job)].into())),
        }
    }
    let mut out = Vec::with_capacity(jobs.len());
    let mut stored: Vec<Vec<usize>> = vec![Vec::new(); lanes.len()];
    loop {
        let round: Vec<(usize, usize, &Job)> = lanes
            .iter_mut()
            .enumerate()
            .filter_map(|(l, (_, queue))| queue.pop_front().map(|(i, job)| (l, i, job)))
            .collect();
        if round.is_empty() {
            break;
        }
        let outgoing = round
            .iter()
            .map(|(_, _, job)| Outgoing {
                subject: nats.names.fifo(&job.meta.subscription, &job.meta.spec),
                msg_id: Some(relay_id(&job.meta)),
                headers: Vec::new(),
                payload: Bytes::from(job.encode()),
            })
            .collect();
        for ((l, i, _), result) in round.into_iter().zip(nats.publish_all(outgoing)) {
            match result {
                Ok(()) => stored[l].push(i),
                Err(e) => {
                    out.push((i, Err(e)));
                    // The rest of this lane waits for the next pass.
                    for (later, _) in lanes[l].1.drain(..) {
                        out.push((
                            later,
                            Err(anyhow::anyhow!(
                                "an earlier job of its FIFO lane was not stored"
                            )),
                        ));
                    }
                }
            }
        }
    }
    for ((lane, _), stored) in lanes.iter().zip(stored) {
        if stored.is_empty() {
            continue;
        }
        match super::fifo::touch(nats, lane) {
            Ok(()) => out.extend(stored.into_iter().map(|i| (i, Ok(())))),
            Err(e) => {
                let e = format!("{e:#}");
                out.extend(stored.into_iter().map(|i| (i, Err(anyhow::anyhow!("{e}")))));
            }
        }
    }
    out
}
