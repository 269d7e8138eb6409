//! [`NatsHealth`]: the health [`Source`] of `status`, `report` and
//! `metrics` with `--source nats` (and `drain --source nats --metrics`),
//! across every host. One batched read of the streams and the breaker
//! bucket: the jobs stream holds the pending jobs (on their lanes, held by a
//! worker right now, or waiting on a retry schedule), the dead stream the
//! dead ones, the evidence stream every attempt; a delivered job has left
//! the streams, so it is counted from its delivered attempt. Read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::Result;

use super::{Nats, view};
use crate::circuit::Circuit;
use crate::evidence::{Record, Skipped};
use crate::health::Source;
use crate::spool::{Entry, Job, Scan, State, Unreadable};

/// What the streams and the bucket held when read.
#[derive(Debug, Default)]
pub struct NatsHealth {
    /// Pending and dead jobs with their bodies, oldest first per stream.
    jobs: Vec<(Entry, Vec<u8>)>,
    records: Vec<Record>,
    circuits: BTreeMap<String, Circuit>,
    /// Messages of the job streams that are not jobs.
    unreadable: Vec<Unreadable>,
    /// Messages of the evidence stream that are not records.
    unparseable: usize,
    evidence_stream: String,
}

impl NatsHealth {
    /// Reads the jobs, dead and evidence streams and the breaker bucket,
    /// in batches.
    pub fn load(nats: &Nats) -> Result<NatsHealth> {
        let names = &nats.names;
        let mut out = NatsHealth {
            evidence_stream: names.evidence.clone(),
            ..NatsHealth::default()
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
        let (records, unparseable) = view::evidence(nats, None)?;
        out.records = records;
        out.unparseable = unparseable;
        out.circuits = view::circuits(nats)?.into_iter().collect();
        Ok(out)
    }
}

impl Source for NatsHealth {
    fn specs(&self) -> Result<Vec<String>> {
        let specs: BTreeSet<String> = self
            .jobs
            .iter()
            .map(|(e, _)| e.meta.spec.clone())
            .chain(self.records.iter().map(|r| r.spec.clone()))
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
        for record in self.records.iter().filter(|r| r.spec == spec) {
            visit(record.clone());
        }
        Ok((
            Skipped::default(),
            format!("stream {}", self.evidence_stream),
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

    /// Messages that are not jobs or records belong to no SPEC.
    fn problems(&self) -> (Vec<Unreadable>, Vec<(Skipped, String)>) {
        let unparseable = match self.unparseable {
            0 => Vec::new(),
            n => vec![(
                Skipped::unparseable(n),
                format!("stream {}", self.evidence_stream),
            )],
        };
        (self.unreadable.clone(), unparseable)
    }
}
