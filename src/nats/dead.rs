//! The operator's hands on the dead stream, across every host: a dead job
//! goes back to the jobs stream (`replay`) or away (`discard`), and each
//! act is logged to the evidence stream. The dead copy is deleted last, so
//! a crash in between leaves it where the operator can act again: the
//! republish carries the same `Nats-Msg-Id` and is stored once.

use anyhow::{Context, Result};

use super::Nats;
use super::relay::relay_id;
use crate::evidence::Record;
use crate::spool::Job;

/// One job of the dead stream and where it sits.
#[derive(Debug, Clone)]
pub struct Dead {
    pub seq: u64,
    pub job: Job,
}

/// Every dead job, oldest first, and how many messages were not jobs.
pub fn jobs(nats: &Nats) -> Result<(Vec<Dead>, usize)> {
    let mut out = Vec::new();
    let mut unreadable = 0;
    for (seq, payload) in nats.read_stream(&nats.names.dead)? {
        match Job::decode(&payload) {
            Ok(job) => out.push(Dead { seq, job }),
            Err(_) => unreadable += 1,
        }
    }
    Ok((out, unreadable))
}

/// Whether a job with this delivery id waits in the jobs stream.
pub fn is_waiting(nats: &Nats, delivery_id: &str) -> Result<bool> {
    Ok(nats
        .read_stream(&nats.names.jobs)?
        .iter()
        .filter_map(|(_, payload)| Job::decode(payload).ok())
        .any(|job| job.meta.delivery_id == delivery_id))
}

/// Puts `requeued` (the dead job, reset by the caller: same delivery id,
/// one more replay) back in the jobs stream, logs `record`, then deletes
/// the dead copy at `seq`.
pub fn replay(nats: &Nats, seq: u64, requeued: &Job, record: &Record) -> Result<()> {
    let meta = &requeued.meta;
    nats.publish(
        &nats.names.jobs_subject,
        Some(&relay_id(meta)),
        requeued.encode(),
    )
    .with_context(|| format!("cannot requeue {}; nothing changed", meta.delivery_id))?;
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

/// Deletes the dead job at `seq`, then logs `record`.
pub fn discard(nats: &Nats, seq: u64, record: &Record) -> Result<()> {
    nats.delete(&nats.names.dead, seq)?;
    log(nats, std::slice::from_ref(record)).with_context(|| {
        format!(
            "discarded {} but cannot log it in stream {}",
            record.delivery_id, nats.names.evidence
        )
    })
}

/// Appends records to the evidence stream.
pub fn log(nats: &Nats, records: &[Record]) -> Result<()> {
    for record in records {
        let line = serde_json::to_vec(record).context("cannot encode an evidence record")?;
        nats.publish(&nats.names.evidence_subject, None, line)?;
    }
    Ok(())
}
