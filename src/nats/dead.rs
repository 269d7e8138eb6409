//! The operator's hands on the dead stream, across every host: a dead job
//! goes back to its lane (`replay`) or away (`discard`), and each act is
//! logged to the evidence stream. The dead copy is deleted last, so a crash
//! in between leaves it where the operator can act again: the republish
//! carries the same `Nats-Msg-Id` and is stored once.

use anyhow::{Context, Result};
use bytes::Bytes;

use super::Nats;
use super::client::Outgoing;
use super::relay::relay_id;
use crate::evidence::Record;
use crate::spool::{Job, State};

/// One job of the dead stream and where it sits.
#[derive(Debug, Clone)]
pub struct Dead {
    pub seq: u64,
    pub job: Job,
}

/// The dead jobs of one SPEC, oldest first, and how many messages were
/// not jobs.
pub fn jobs(nats: &Nats, spec: &str) -> Result<(Vec<Dead>, usize)> {
    let (found, unreadable) = super::view::whole_jobs(nats, State::Dead, Some(spec))?;
    Ok((
        found
            .into_iter()
            .map(|(seq, job)| Dead { seq, job })
            .collect(),
        unreadable,
    ))
}

/// Whether a job of `spec` with this delivery id waits (on its lane, held
/// by a worker, or for a retry).
pub fn is_waiting(nats: &Nats, spec: &str, delivery_id: &str) -> Result<bool> {
    Ok(super::view::jobs(nats, &[State::Pending], Some(spec))?
        .jobs
        .iter()
        .any(|(_, meta)| meta.delivery_id == delivery_id))
}

/// Puts `requeued` (the dead job, reset by the caller: same delivery id,
/// one more replay) back on its lane, logs `record`, then deletes the dead
/// copy at `seq`. A FIFO job goes to its lane's replays, where it takes
/// its own place by sequence (before every later job), and a lane it held
/// is let go of.
pub fn replay(nats: &Nats, seq: u64, requeued: &Job, record: &Record, fifo: bool) -> Result<()> {
    let meta = &requeued.meta;
    super::circuits::announce(nats, &meta.subscription)?;
    let subject = if fifo {
        nats.names.fifo_replays(&meta.subscription, &meta.spec)
    } else {
        nats.names.lane(&meta.subscription, &meta.spec)
    };
    nats.publish(&subject, Some(&relay_id(meta)), requeued.encode())
        .with_context(|| format!("cannot requeue {}; nothing changed", meta.delivery_id))?;
    if fifo {
        super::fifo::let_go_of(nats, &lane_of(requeued), &meta.delivery_id).with_context(|| {
            format!(
                "requeued {} but cannot tell its FIFO lane; run the replay again",
                meta.delivery_id
            )
        })?;
    }
    log(nats, std::slice::from_ref(record)).with_context(|| {
        format!(
            "requeued {} but cannot log it; its dead copy stays: run the replay again",
            meta.delivery_id
        )
    })?;
    nats.delete(&nats.names.dead, seq).with_context(|| {
        format!(
            "requeued {} but its dead copy stays in stream {}: run the replay again (the server stores the job once)",
            meta.delivery_id, nats.names.dead
        )
    })
}

fn lane_of(job: &Job) -> super::fifo::LaneId {
    super::fifo::LaneId {
        subscription: job.meta.subscription.clone(),
        spec: job.meta.spec.clone(),
    }
}

/// Deletes the dead job at `seq`, then logs `record`. A FIFO lane it
/// holds is let go of first (a crash in between leaves the lane going on
/// and the job dead: discard it again).
pub fn discard(nats: &Nats, seq: u64, job: &Job, record: &Record) -> Result<()> {
    if super::fifo::held(nats)?
        .iter()
        .any(|(lane, id)| *lane == lane_of(job) && *id == job.meta.delivery_id)
    {
        super::fifo::let_go_of(nats, &lane_of(job), &job.meta.delivery_id)?;
    }
    nats.delete(&nats.names.dead, seq)?;
    log(nats, std::slice::from_ref(record)).with_context(|| {
        format!(
            "discarded {} but cannot log it in stream {}",
            record.delivery_id, nats.names.evidence
        )
    })
}

/// Appends records to the evidence stream, each on its SPEC's subject, all
/// in flight at once.
pub fn log(nats: &Nats, records: &[Record]) -> Result<()> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let line = serde_json::to_vec(record).context("cannot encode an evidence record")?;
        out.push(Outgoing {
            subject: nats.names.evidence_of(&record.spec),
            msg_id: None,
            headers: Vec::new(),
            payload: Bytes::from(line),
        });
    }
    nats.publish_all(out).into_iter().collect()
}
