//! The fleet's side of the alerts (`crate::alerts`): the shared alert
//! state is one key, `state`, of the KV bucket `<prefix>_ALERTS` (a bucket
//! of its own: every key of the breaker bucket names a lane the workers
//! serve), changed by compare-and-swap on its revision, so two workers
//! evaluating at once never both decide the same notification; and an
//! alert job is published straight to its lane (subscription ×
//! `spec-notify.alerts`) with its delivery id as `Nats-Msg-Id`, so a notice
//! published twice (after a crash) is stored once within the
//! de-duplication window (an hour). The bucket is created on first use,
//! safely from many workers at once. [`JobsView`] is what the rules are
//! evaluated on: the waiting and dead jobs' metadata and the breaker
//! states, without the evidence stream (no condition needs it).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use async_nats::jetstream::{kv, stream};
use bytes::Bytes;

use super::{Nats, view};
use crate::alerts::{AlertJob, AlertState};
use crate::circuit::Circuit;
use crate::evidence::{Record, Skipped};
use crate::health::Source;
use crate::spool::{Entry, Scan, State, Unreadable};

/// The key holding the state.
const KEY: &str = "state";

/// The bucket's name for this prefix.
pub fn bucket_name(nats: &Nats) -> String {
    format!("{}_ALERTS", nats.names.prefix)
}

/// Opens the bucket, creating it when it is not there yet.
fn bucket(nats: &Nats) -> Result<kv::Store> {
    let name = bucket_name(nats);
    for _ in 0..3 {
        if let Ok(bucket) = nats.call("open bucket", nats.js.get_key_value(&name))? {
            return Ok(bucket);
        }
        let created = nats.call(
            "create bucket",
            nats.js.create_key_value(kv::Config {
                bucket: name.clone(),
                history: 1,
                storage: stream::StorageType::File,
                num_replicas: nats.replicas,
                ..Default::default()
            }),
        )?;
        if let Ok(bucket) = created {
            return Ok(bucket);
        }
        // Another worker created it meanwhile (with other settings in
        // flight): open it again.
    }
    bail!("cannot open or create bucket {name}")
}

fn decode(value: &[u8], bucket: &str) -> Result<AlertState> {
    serde_json::from_slice(value).map_err(|e| {
        anyhow!(
            "the alert state in bucket {bucket} (key `{KEY}`) is not readable ({e}); delete the key to start over (the alerts firing now then fire anew)"
        )
    })
}

/// The state and its revision (0: none stored).
fn read_with_revision(nats: &Nats, bucket: &kv::Store) -> Result<(AlertState, u64)> {
    let name = bucket_name(nats);
    let entry = super::client::retried("read bucket", super::client::passing, || {
        nats.call("read bucket", bucket.entry(KEY))?
            .map_err(|e| anyhow!("cannot read `{KEY}` from bucket {name}: {e}"))
    })?;
    match entry.filter(|e| e.operation == kv::Operation::Put) {
        None => Ok((AlertState::default(), 0)),
        Some(e) => Ok((decode(&e.value, &name)?, e.revision)),
    }
}

/// The state as stored.
pub fn read(nats: &Nats) -> Result<AlertState> {
    Ok(read_with_revision(nats, &bucket(nats)?)?.0)
}

/// Changes the state by compare-and-swap, reading it again when someone
/// else wrote first.
pub fn update(nats: &Nats, change: &mut dyn FnMut(&mut AlertState)) -> Result<AlertState> {
    let bucket = bucket(nats)?;
    let name = bucket_name(nats);
    for _ in 0..50 {
        let (current, revision) = read_with_revision(nats, &bucket)?;
        let mut next = current.clone();
        change(&mut next);
        if next == current {
            return Ok(next);
        }
        let value = Bytes::from(serde_json::to_vec(&next)?);
        if super::client::compare_and_swap(nats, &bucket, &name, KEY, value, revision)?.is_some() {
            return Ok(next);
        }
    }
    bail!("the alert state in bucket {name} kept changing under this worker; try again")
}

/// Publishes an alert job to its lane (announcing the lane first, so the
/// workers serve it), its delivery id as the message id.
pub fn publish(nats: &Nats, alert: &AlertJob) -> Result<()> {
    super::circuits::announce(nats, &alert.subscription)?;
    let now = crate::clock::now_ms();
    // The fleet has no per-SPEC counter: the time orders the alert jobs.
    let job = alert.job(now, now);
    nats.publish(
        &nats
            .names
            .lane(&alert.subscription, crate::config::ALERTS_SPEC),
        Some(alert.delivery_id()),
        job.encode(),
    )
}

/// Every host's waiting and dead jobs (metadata only) and the breaker
/// states, read in batches: a health source without attempt records.
pub struct JobsView {
    jobs: Vec<Entry>,
    circuits: BTreeMap<String, Circuit>,
    /// Messages of the job streams that are not jobs, and where.
    unreadable: Option<Unreadable>,
}

impl JobsView {
    pub fn load(nats: &Nats) -> Result<JobsView> {
        let found = view::jobs(nats, &[State::Pending, State::Dead], None)?;
        let unreadable = (found.unreadable > 0).then(|| Unreadable {
            path: PathBuf::from(format!(
                "{} message(s) of streams {} and {}",
                found.unreadable, nats.names.jobs, nats.names.dead
            )),
            reason: "not jobs".into(),
        });
        Ok(JobsView {
            jobs: found
                .jobs
                .into_iter()
                .map(|(state, meta)| Entry {
                    name: meta.file_name(),
                    state,
                    meta,
                })
                .collect(),
            circuits: view::circuits(nats)?.into_iter().collect(),
            unreadable,
        })
    }
}

impl Source for JobsView {
    fn specs(&self) -> Result<Vec<String>> {
        let mut specs: Vec<String> = self.jobs.iter().map(|e| e.meta.spec.clone()).collect();
        specs.sort();
        specs.dedup();
        Ok(specs)
    }

    fn scan(&self, spec: &str, state: State) -> Result<Scan> {
        Ok(Scan {
            entries: self
                .jobs
                .iter()
                .filter(|e| e.state == state && e.meta.spec == spec)
                .cloned()
                .collect(),
            ..Scan::default()
        })
    }

    fn quarantined(&self, _spec: &str) -> Result<Vec<(String, String)>> {
        Ok(Vec::new()) // a message that is not a job waits in its stream
    }

    fn records(&self, _spec: &str, _visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)> {
        Ok((Skipped::default(), String::new()))
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        Ok(self.circuits.get(subscription).cloned().unwrap_or_default())
    }

    fn body(&self, _entry: &Entry) -> Option<Vec<u8>> {
        None
    }

    fn keeps_delivered(&self) -> bool {
        true // delivered counts play no part in a condition
    }

    fn flag(&self) -> &'static str {
        " --source nats"
    }

    fn gone(&self) -> &'static str {
        "no longer in the streams"
    }

    fn problems(&self) -> (Vec<Unreadable>, Vec<(Skipped, String)>) {
        (self.unreadable.iter().cloned().collect(), Vec::new())
    }
}
