//! The operator's view across every host: the jobs waiting in the jobs
//! stream (including those a worker holds right now), the dead stream, the
//! evidence stream and the breaker bucket. Read-only.

use anyhow::Result;

use super::Nats;
use crate::circuit::Circuit;
use crate::evidence::Record;
use crate::spool::{Meta, State};

/// One job as the streams hold it: its metadata (the first line).
fn meta_of(payload: &[u8]) -> Option<Meta> {
    let line = payload.split(|&b| b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

/// Jobs in the jobs stream (pending) and the dead stream, oldest first,
/// with messages that are not jobs counted apart.
#[derive(Debug, Default)]
pub struct Jobs {
    pub jobs: Vec<(State, Meta)>,
    pub unreadable: usize,
}

pub fn jobs(nats: &Nats, states: &[State]) -> Result<Jobs> {
    let mut out = Jobs::default();
    let names = &nats.names;
    for (state, stream) in [(State::Pending, &names.jobs), (State::Dead, &names.dead)] {
        if !states.contains(&state) {
            continue;
        }
        for (_, payload) in nats.read_stream(stream)? {
            match meta_of(&payload) {
                Some(mut meta) => {
                    meta.state = state;
                    out.jobs.push((state, meta));
                }
                None => out.unreadable += 1,
            }
        }
    }
    Ok(out)
}

/// Every breaker state stored, by subscription.
pub fn circuits(nats: &Nats) -> Result<Vec<(String, Circuit)>> {
    let mut out = Vec::new();
    for (key, value) in nats.kv_all()? {
        if let Ok(circuit) = serde_json::from_slice(&value) {
            out.push((key, circuit));
        }
    }
    Ok(out)
}

/// Every evidence record in the stream, oldest first, and how many
/// messages did not parse.
pub fn evidence(nats: &Nats) -> Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut skipped = 0;
    for (_, payload) in nats.read_stream(&nats.names.evidence)? {
        match serde_json::from_slice(&payload) {
            Ok(record) => records.push(record),
            Err(_) => skipped += 1,
        }
    }
    Ok((records, skipped))
}
