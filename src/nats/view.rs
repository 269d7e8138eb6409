//! The operator's view across every host, read in batches: the jobs
//! waiting (on their lanes, held by a worker right now, or waiting for a
//! retry on a schedule), the dead jobs, the evidence records and the
//! breaker states. Read-only.

use anyhow::Result;

use super::Nats;
use super::client::Stored;
use super::layout::token;
use crate::circuit::Circuit;
use crate::evidence::Record;
use crate::spool::{Job, Meta, State};

/// One job as the streams hold it: its metadata (the first line).
fn meta_of(payload: &[u8]) -> Option<Meta> {
    let line = payload.split(|&b| b == b'\n').next()?;
    serde_json::from_slice(line).ok()
}

/// A stored job's SPEC: the one its subject names (as for the local
/// spool's folders, the place says, not the field), else the field's.
fn spec_of(nats: &Nats, stored: &Stored, field: String) -> String {
    nats.names
        .lane_of(&stored.subject)
        .map_or(field, |(_, spec)| spec)
}

/// The filters that hold `state`'s jobs of one SPEC or every one: (stream,
/// subject filter).
fn places(nats: &Nats, state: State, spec: Option<&str>) -> Vec<(String, String)> {
    let n = &nats.names;
    let p = &n.prefix;
    let spec = spec.map_or(">".to_string(), token);
    match state {
        State::Pending => vec![
            (n.jobs.clone(), format!("{p}.jobs.*.{spec}")),
            (n.jobs.clone(), format!("{p}.retry.*.{spec}.>")),
            (n.jobs.clone(), format!("{p}.fifo.*.{spec}")),
            (n.jobs.clone(), format!("{p}.fifo.*.{spec}.r")),
        ],
        State::Dead => vec![(n.dead.clone(), format!("{p}.dead.*.{spec}"))],
        _ => Vec::new(),
    }
    .into_iter()
    // `>` must be the last token alone; with every SPEC, `P.fifo.*.>`
    // already holds the replays.
    .filter(|(_, filter)| !filter.ends_with(".>.r"))
    .map(|(stream, filter)| (stream, filter.replace(".>.>", ".>")))
    .collect()
}

/// Reads the messages that hold `state`'s jobs.
pub fn read_jobs(nats: &Nats, state: State, spec: Option<&str>) -> Result<Vec<Stored>> {
    let mut out = Vec::new();
    for (stream, filter) in places(nats, state, spec) {
        out.extend(nats.read(&stream, &filter)?);
    }
    Ok(out)
}

/// Jobs in `states` (pending and dead are in the streams), oldest first
/// per stream, with messages that are not jobs counted apart.
#[derive(Debug, Default)]
pub struct Jobs {
    pub jobs: Vec<(State, Meta)>,
    pub unreadable: usize,
}

pub fn jobs(nats: &Nats, states: &[State], spec: Option<&str>) -> Result<Jobs> {
    let mut out = Jobs::default();
    for &state in states {
        for stored in read_jobs(nats, state, spec)? {
            match meta_of(&stored.payload) {
                Some(mut meta) => {
                    meta.state = state;
                    meta.spec = spec_of(nats, &stored, meta.spec);
                    out.jobs.push((state, meta));
                }
                None => out.unreadable += 1,
            }
        }
    }
    Ok(out)
}

/// Whole jobs (with bodies) in `state`, and how many messages were not jobs.
pub fn whole_jobs(
    nats: &Nats,
    state: State,
    spec: Option<&str>,
) -> Result<(Vec<(u64, Job)>, usize)> {
    let mut out = Vec::new();
    let mut unreadable = 0;
    for stored in read_jobs(nats, state, spec)? {
        match Job::decode(&stored.payload) {
            Ok(mut job) => {
                job.meta.state = state;
                job.meta.spec = spec_of(nats, &stored, job.meta.spec);
                out.push((stored.seq, job));
            }
            Err(_) => unreadable += 1,
        }
    }
    Ok((out, unreadable))
}

/// Every breaker state stored, by subscription: one batched read of the
/// bucket's stream.
pub fn circuits(nats: &Nats) -> Result<Vec<(String, Circuit)>> {
    let bucket = &nats.names.circuits;
    let prefix = format!("$KV.{bucket}.");
    let mut out = Vec::new();
    for stored in nats.read(&format!("KV_{bucket}"), &format!("{prefix}>"))? {
        let Some(key) = stored.subject.strip_prefix(&prefix) else {
            continue;
        };
        // A deleted key leaves an empty marker.
        if let Ok(circuit) = serde_json::from_slice(&stored.payload) {
            out.push((key.to_string(), circuit));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Hands the evidence records of one SPEC (or all) to `visit`, oldest
/// first, as they are read (a batch in memory at a time); only those stored
/// at or after `since_ms` (the server's clock) when given. Returns how many
/// messages did not parse.
pub fn each_record(
    nats: &Nats,
    spec: Option<&str>,
    since_ms: Option<u64>,
    visit: &mut dyn FnMut(Record),
) -> Result<usize> {
    let filter = match spec {
        Some(spec) => nats.names.evidence_of(spec),
        None => nats.names.all_evidence(),
    };
    let mut skipped = 0;
    nats.each(
        &nats.names.evidence,
        &filter,
        since_ms,
        &mut |stored| match serde_json::from_slice(&stored.payload) {
            Ok(record) => visit(record),
            Err(_) => skipped += 1,
        },
    )?;
    Ok(skipped)
}

/// SPECs with jobs waiting or dead, from the subject counts (no message read).
pub fn specs_with_jobs(nats: &Nats) -> Result<Vec<String>> {
    let n = &nats.names;
    let mut specs = Vec::new();
    for (stream, filter) in [
        (&n.jobs, n.all_lanes()),
        (&n.jobs, n.all_retries()),
        (&n.jobs, n.all_fifo()),
        (&n.dead, n.all_dead()),
    ] {
        for (subject, _) in nats.counts(stream, &filter)? {
            if let Some((_, spec)) = n.lane_of(&subject) {
                specs.push(spec);
            }
        }
    }
    specs.sort();
    specs.dedup();
    Ok(specs)
}

/// SPECs with evidence records, from the subject counts.
pub fn specs_with_records(nats: &Nats) -> Result<Vec<String>> {
    let n = &nats.names;
    let prefix = format!("{}.evidence.", n.prefix);
    let mut specs: Vec<String> = nats
        .counts(&n.evidence, &n.all_evidence())?
        .into_iter()
        .filter_map(|(subject, _)| super::layout::untoken(subject.strip_prefix(&prefix)?))
        .collect();
    specs.sort();
    specs.dedup();
    Ok(specs)
}
