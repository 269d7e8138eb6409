//! [`NatsHealth`]: the health [`Source`] of `status`, `report` and
//! `metrics` with `--source nats` (and `drain --source nats --metrics`),
//! across every host. One batched read of the job streams and the breaker
//! bucket: the jobs stream holds the pending jobs (on their lanes, held by a
//! worker right now, or waiting on a retry schedule), the dead stream the
//! dead ones. The evidence stream (every attempt, 30 days) is never held in
//! memory: each SPEC's records are streamed to the caller when asked for,
//! from its own subject and only from the window the view needs (`status`
//! the last hour, `report` its `--since`, `metrics` all); `list` reads
//! none. A delivered job has left the streams, so it is counted from its
//! delivered attempt in that window. Read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;

use super::{Nats, view};
use crate::circuit::Circuit;
use crate::evidence::{Record, Skipped};
use crate::health::Source;
use crate::spool::{Entry, Job, Scan, State, Unreadable};

/// How far back `status` (and the live view) read the evidence stream.
pub const RECENT: u64 = 3_600_000;

/// What the job streams and the bucket held when read; the evidence stream
/// read on demand.
pub struct NatsHealth<'a> {
    nats: &'a Nats,
    /// Evidence stored before this time (the server's clock) is not read.
    since_ms: Option<u64>,
    /// Pending and dead jobs with their bodies, oldest first per stream.
    jobs: Vec<(Entry, Vec<u8>)>,
    circuits: BTreeMap<String, Circuit>,
    /// Messages of the job streams that are not jobs.
    unreadable: Vec<Unreadable>,
}

impl<'a> NatsHealth<'a> {
    /// Reads the jobs and dead streams and the breaker bucket, in batches;
    /// evidence will be read from `since_ms` on (all of it: `None`).
    pub fn load(nats: &'a Nats, since_ms: Option<u64>) -> Result<NatsHealth<'a>> {
        let names = &nats.names;
        let mut out = NatsHealth {
            nats,
            since_ms,
            jobs: Vec::new(),
            circuits: BTreeMap::new(),
            unreadable: Vec::new(),
        };
        for state in [State::Pending, State::Dead] {
            for stored in view::read_jobs(nats, state, None)? {
                match Job::decode(&stored.payload) {
                    Ok(mut job) => {
                        job.meta.state = state;
                        let entry = Entry {
                            name: job.meta.file_name(),
                            state,
                            meta: job.meta,
                        };
                        out.jobs.push((entry, job.body));
                    }
                    Err(reason) => out.unreadable.push(Unreadable {
                        path: PathBuf::from(format!(
                            "message {} ({}) of stream {}",
                            stored.seq, stored.subject, names.jobs
                        )),
                        reason,
                    }),
                }
            }
        }
        out.circuits = view::circuits(nats)?.into_iter().collect();
        Ok(out)
    }
}

impl Source for NatsHealth<'_> {
    /// From the jobs read and the evidence stream's subject counts (no
    /// record read).
    fn specs(&self) -> Result<Vec<String>> {
        let specs: BTreeSet<String> = self
            .jobs
            .iter()
            .map(|(e, _)| e.meta.spec.clone())
            .chain(view::specs_with_records(self.nats)?)
            .collect();
        Ok(specs.into_iter().collect())
    }

    fn scan(&self, spec: &str, state: State) -> Result<Scan> {
        Ok(Scan {
            entries: self
                .jobs
                .iter()
                .filter(|(e, _)| e.state == state && e.meta.spec == spec)
                .map(|(e, _)| e.clone())
                .collect(),
            ..Scan::default()
        })
    }

    fn quarantined(&self, _spec: &str) -> Result<Vec<(String, String)>> {
        Ok(Vec::new()) // a message that is not a job waits in the dead stream
    }

    fn records(&self, spec: &str, visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)> {
        let skipped = view::each_record(self.nats, Some(spec), self.since_ms, visit)?;
        Ok((
            Skipped::unparseable(skipped),
            format!("stream {}", self.nats.names.evidence),
        ))
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        Ok(self.circuits.get(subscription).cloned().unwrap_or_default())
    }

    fn body(&self, entry: &Entry) -> Option<Vec<u8>> {
        self.jobs
            .iter()
            .find(|(e, _)| e.state == entry.state && e.meta.delivery_id == entry.meta.delivery_id)
            .map(|(_, body)| body.clone())
    }

    fn keeps_delivered(&self) -> bool {
        false
    }

    fn flag(&self) -> &'static str {
        " --source nats"
    }

    fn gone(&self) -> &'static str {
        "no longer in the streams (delivered later, or discarded)"
    }

    /// Messages that are not jobs belong to no SPEC (records that do not
    /// parse are counted with their SPEC's).
    fn problems(&self) -> (Vec<Unreadable>, Vec<(Skipped, String)>) {
        (self.unreadable.clone(), Vec::new())
    }
}
