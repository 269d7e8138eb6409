//! Strict order on the fleet (`ordering = "fifo"`): a FIFO lane (SPEC ×
//! subscription) is served by at most one worker at a time, one job at a
//! time, lowest sequence first.
//!
//! - The relay stores a FIFO lane's jobs on `P.fifo.<sub>.<spec>` in
//!   sequence order (one publish in flight per lane: a failed one stops
//!   the lane for the pass, so no later job is stored before it), then
//!   touches the lane's key in bucket `P_LANES` ([`touch`]). No consumer
//!   covers these subjects: the head is read by direct get (the lowest
//!   stream sequence of the subject) and deleted once settled.
//! - A replayed dead job goes to `P.fifo.<sub>.<spec>.r`; the head is the
//!   lowest `sequence` of the lane's first message and the replayed ones,
//!   so a replay re-enters at its own place.
//! - The lane's key ([`LaneState`]) holds the lease (`owner`, `beat`), the
//!   head's attempt state (its metadata: attempts, next attempt, last
//!   error), whether the lane has work (`idle`) and the dead job that holds
//!   it (`held_by`, `fifo_on_dead = "hold"`). Every write is a
//!   compare-and-swap on the key's revision: two workers never both own a
//!   lane, and a worker checks its lease by a swap before each send.
//! - A lease needs no shared clock: a lane whose owner's `beat` has not
//!   changed for the lease time, as the watching worker's own monotonic
//!   clock counts, is taken over ([`take`]). The owner beats every quarter
//!   of it while it works the lane.
//!
//! [`take`] watches the bucket and takes free lanes; [`lane`] serves one.

pub mod lane;
pub mod take;

use anyhow::{Context, Result, anyhow};
use async_nats::jetstream::kv;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::Nats;
use super::client::{Stored, direct_batch};
use super::layout::Names;
use crate::config::{Config, Ordering};
use crate::spool::{Job, Meta};

/// A FIFO lane: (subscription, SPEC).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneId {
    pub subscription: String,
    pub spec: String,
}

/// The head job's state while it is retried: where it is in the stream and
/// its metadata after the last attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    pub seq: u64,
    pub meta: Meta,
}

/// A FIFO lane's key in bucket `P_LANES`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LaneState {
    /// The worker that serves the lane now.
    #[serde(default)]
    pub owner: Option<String>,
    /// Bumped by the owner while it lives (and before each send).
    #[serde(default)]
    pub beat: u64,
    /// The last owner found the lane empty, and nothing came since.
    #[serde(default)]
    pub idle: bool,
    #[serde(default)]
    pub head: Option<Head>,
    /// When the last head was delivered or dead-lettered: the next head's
    /// age for `max_age` counts from here (it only waited before).
    #[serde(default)]
    pub settled_at_ms: Option<u64>,
    /// The dead job that holds the lane (`fifo_on_dead = "hold"`) until an
    /// operator replays or discards it.
    #[serde(default)]
    pub held_by: Option<String>,
}

impl LaneState {
    fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

/// A subscription's ordering as `config` says (per-call targets: none).
pub fn ordering(config: &Config, meta: &Meta) -> Ordering {
    if meta.target.is_some() {
        return Ordering::None;
    }
    config
        .every_subscription()
        .find(|(_, s)| s.id == meta.subscription)
        .map_or(Ordering::None, |(_, s)| s.ordering)
}

fn decode(key: &str, value: &[u8], bucket: &str) -> Result<LaneState> {
    serde_json::from_slice(value).map_err(|e| {
        anyhow!("the state of FIFO lane `{key}` in bucket {bucket} is not readable ({e}); delete the key (`nats kv del {bucket} {key}`) to reset it")
    })
}

/// A lane's state and revision (0: no key).
pub fn read(nats: &Nats, lane: &LaneId) -> Result<(LaneState, u64)> {
    let bucket = nats.lanes_bucket()?;
    let key = nats.names.lane_key(&lane.subscription, &lane.spec);
    let entry = super::client::retried("read bucket", super::client::passing, || {
        nats.call("read bucket", bucket.entry(&key))?
            .map_err(|e| anyhow!("cannot read `{key}` from bucket {}: {e}", nats.names.lanes))
    })?;
    match entry.filter(|e| e.operation == kv::Operation::Put) {
        None => Ok((LaneState::default(), 0)),
        Some(e) => Ok((decode(&key, &e.value, &nats.names.lanes)?, e.revision)),
    }
}

/// Changes a lane's state by compare-and-swap, read fresh; always writes
/// (a write is news to the owner, whose next swap fails and reads again).
pub fn update(nats: &Nats, lane: &LaneId, change: impl Fn(&mut LaneState)) -> Result<LaneState> {
    let bucket = nats.lanes_bucket()?;
    let key = nats.names.lane_key(&lane.subscription, &lane.spec);
    for _ in 0..100 {
        let (mut state, revision) = read(nats, lane)?;
        change(&mut state);
        let written = super::client::compare_and_swap(
            nats,
            &bucket,
            &nats.names.lanes,
            &key,
            state.encode(),
            revision,
        )?;
        if written.is_some() {
            return Ok(state);
        }
    }
    Err(anyhow!(
        "the state of FIFO lane `{key}` in bucket {} kept changing; try again",
        nats.names.lanes
    ))
}

/// After jobs were stored on a lane: it has work (made if absent).
pub fn touch(nats: &Nats, lane: &LaneId) -> Result<()> {
    update(nats, lane, |s| s.idle = false).map(drop)
}

/// After an operator replayed or discarded `delivery_id`: the lane is no
/// longer held by it, and has work.
pub fn let_go_of(nats: &Nats, lane: &LaneId, delivery_id: &str) -> Result<()> {
    update(nats, lane, |s| {
        if s.held_by.as_deref() == Some(delivery_id) {
            s.held_by = None;
        }
        s.idle = false;
    })
    .map(drop)
}

/// Every FIFO lane held by a dead job: (lane, delivery id).
pub fn held(nats: &Nats) -> Result<Vec<(LaneId, String)>> {
    let bucket = &nats.names.lanes;
    let prefix = format!("$KV.{bucket}.");
    let mut out = Vec::new();
    for stored in nats.read(&format!("KV_{bucket}"), &format!("{prefix}>"))? {
        let Some(key) = stored.subject.strip_prefix(&prefix) else {
            continue;
        };
        let Some((subscription, spec)) = Names::of_lane_key(key) else {
            continue;
        };
        if let Ok(LaneState {
            held_by: Some(id), ..
        }) = serde_json::from_slice(&stored.payload)
        {
            out.push((LaneId { subscription, spec }, id));
        }
    }
    out.sort();
    Ok(out)
}

/// The lane's head: the lowest sequence among its first stored job and
/// its replayed ones; with the message that is not a job, if the first
/// one is not (it goes to the dead stream as it is).
pub async fn head(
    client: &async_nats::Client,
    names: &Names,
    lane: &LaneId,
) -> Result<Option<(Stored, Result<Job, String>)>> {
    let mut found = Vec::new();
    for (subject, batch) in [
        (names.fifo(&lane.subscription, &lane.spec), 1),
        (names.fifo_replays(&lane.subscription, &lane.spec), 256),
    ] {
        let mut from = 1;
        loop {
            match direct_batch(
                client,
                &names.jobs,
                &subject,
                super::client::Start::Seq(from),
                batch,
            )
            .await?
            {
                None => {
                    return Err(anyhow!(
                        "no server answers direct reads of stream {} yet",
                        names.jobs
                    ));
                }
                Some((got, more)) => {
                    let last = got.last().map(|m| m.seq);
                    found.extend(got);
                    match (last, more && batch > 1) {
                        (Some(seq), true) => from = seq + 1,
                        _ => break,
                    }
                }
            }
        }
    }
    let mut best: Option<(Stored, Result<Job, String>)> = None;
    for stored in found {
        let job = Job::decode(&stored.payload).map_err(|e| e.to_string());
        let Ok(j) = &job else {
            return Ok(Some((stored, job)));
        };
        let better = match &best {
            Some((_, Ok(b))) => j.meta.sequence < b.meta.sequence,
            _ => true,
        };
        if better {
            best = Some((stored, job));
        }
    }
    Ok(best)
}

/// Deletes one message of the jobs stream (gone already: done).
pub async fn delete(js: &async_nats::jetstream::Context, names: &Names, seq: u64) -> Result<()> {
    let stream = js
        .get_stream_no_info(&names.jobs)
        .await
        .map_err(|e| anyhow!("cannot open stream {}: {e}", names.jobs))?;
    match stream.delete_message(seq).await {
        Ok(_) => Ok(()),
        Err(e) if e.to_string().contains("no message found") => Ok(()),
        Err(e) => Err(anyhow!(
            "cannot delete message {seq} of stream {}: {e}",
            names.jobs
        )),
    }
    .context("a settled FIFO job stays on its lane; its next owner sends it again")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_state_reads_back_and_an_empty_one_is_free() {
        let state = LaneState {
            owner: Some("w1".into()),
            beat: 3,
            held_by: Some("d-1".into()),
            ..LaneState::default()
        };
        let back: LaneState = serde_json::from_slice(&state.encode()).unwrap();
        assert_eq!(back, state);
        let empty: LaneState = serde_json::from_slice(b"{}").unwrap();
        assert!(empty.owner.is_none() && !empty.idle && empty.head.is_none());
        assert!(
            decode("k", b"not json", "P_LANES")
                .unwrap_err()
                .to_string()
                .contains("nats kv del P_LANES k")
        );
    }
}
