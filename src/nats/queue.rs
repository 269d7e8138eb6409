//! [`NatsQueue`]: the drain engine's queue on JetStream. All workers share
//! one durable pull consumer on the work-queue stream, so each job is held
//! by one worker at a time. A refresh fetches a few due jobs (never more
//! than the workers can start soon), naks the ones not yet due with the
//! time left as delay, and sends in-progress acks for the jobs it holds.
//! Settling acks a delivered job, publishes a dead one to the dead stream
//! and then acks it, and for a retry publishes the job with its new
//! metadata (attempts, next attempt) and acks the old message: the new one
//! comes back when due through the nak delay. The breaker lives in the KV
//! bucket, updated by compare-and-swap; evidence goes to the evidence stream.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use async_nats::jetstream::{AckKind, Message};

use super::{ACK_WAIT, Nats};
use crate::circuit::{Circuit, Transition};
use crate::clock;
use crate::config::Config;
use crate::drain::queue::{Changes, Claimed, Queue};
use crate::drain::scheduler::JobKey;
use crate::evidence::Record;
use crate::spool::{Job, Meta, State};

/// A job due within this much is held for the scheduler, not nak'ed.
const HOLD_AHEAD_MS: u64 = 1000;
/// A held job no worker claimed for this long goes back to the server (its
/// subscription cannot send now, or others are ahead): other workers may.
const UNCLAIMED_MAX: Duration = Duration::from_secs(10);
/// How long a job given back for that reason waits.
const GIVE_BACK_DELAY: Duration = Duration::from_secs(2);
/// In-progress acks go out this often for every held job.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// How long settling keeps trying through a lost connection.
const SETTLE_FOR: Duration = Duration::from_secs(60);

struct Held {
    message: Message,
    job: Job,
    claimed: bool,
    since: Instant,
}

pub struct NatsQueue<'a> {
    nats: &'a Nats,
    /// Jobs held at most: enough to keep every worker busy.
    hold_max: usize,
    held: Mutex<HashMap<JobKey, Held>>,
    last_progress: Mutex<Instant>,
}

impl<'a> NatsQueue<'a> {
    pub fn new(config: &Config, nats: &'a Nats) -> NatsQueue<'a> {
        NatsQueue {
            nats,
            hold_max: config.max_concurrency.max(1) * 2,
            held: Mutex::new(HashMap::new()),
            last_progress: Mutex::new(Instant::now()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Retries `step` through a lost connection for up to [`SETTLE_FOR`].
    fn surely(&self, mut step: impl FnMut() -> Result<()>) -> Result<()> {
        let deadline = Instant::now() + SETTLE_FOR;
        let mut pause = Duration::from_millis(100);
        loop {
            match step() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Takes in one fetched message.
    fn take_in(&self, message: Message, now: u64, changes: &mut Changes) -> Result<()> {
        let job = match Job::decode(&message.payload) {
            Ok(job) => job,
            Err(reason) => {
                // Not a job: kept in the dead stream as it is, never lost.
                let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
                let names = &self.nats.names;
                self.nats.publish(
                    &names.dead_subject,
                    Some(&format!("bad.{seq}")),
                    message.payload.to_vec(),
                )?;
                self.nats.ack(&message, AckKind::Ack, true)?;
                changes.io_errors.push(format!(
                    "message {seq} of stream {} ({reason}); moved to stream {} as it was",
                    names.jobs, names.dead
                ));
                return Ok(());
            }
        };
        if job.meta.next_attempt_at_ms > now + HOLD_AHEAD_MS {
            let wait = Duration::from_millis(job.meta.next_attempt_at_ms - now);
            return self.nats.ack(&message, AckKind::Nak(Some(wait)), false);
        }
        let key = JobKey {
            spec: job.meta.spec.clone(),
            name: job.meta.delivery_id.clone(),
        };
        let mut held = self.held();
        if held.contains_key(&key) {
            // A second copy (a crash between republishing and acking):
            // after this one is settled.
            drop(held);
            return self
                .nats
                .ack(&message, AckKind::Nak(Some(GIVE_BACK_DELAY)), false);
        }
        changes.added.push((key.clone(), job.meta.clone()));
        held.insert(
            key,
            Held {
                message,
                job,
                claimed: false,
                since: Instant::now(),
            },
        );
        Ok(())
    }

    fn refresh_on(&self, changes: &mut Changes) -> Result<()> {
        // Jobs nobody claimed in a while go back for other workers.
        let stale: Vec<(JobKey, Held)> = {
            let mut held = self.held();
            let keys: Vec<JobKey> = held
                .iter()
                .filter(|(_, h)| !h.claimed && h.since.elapsed() >= UNCLAIMED_MAX)
                .map(|(k, _)| k.clone())
                .collect();
            keys.into_iter()
                .filter_map(|k| held.remove(&k).map(|h| (k, h)))
                .collect()
        };
        for (key, h) in stale {
            changes.removed.push(key);
            self.nats
                .ack(&h.message, AckKind::Nak(Some(GIVE_BACK_DELAY)), false)?;
        }
        let room = self.hold_max.saturating_sub(self.held().len());
        if room > 0 {
            let now = clock::now_ms();
            for message in self.nats.fetch(room)? {
                self.take_in(message, now, changes)?;
            }
        }
        let mut last = self.last_progress.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= PROGRESS_EVERY {
            *last = Instant::now();
            let messages: Vec<Message> = self.held().values().map(|h| h.message.clone()).collect();
            for message in messages {
                self.nats.ack(&message, AckKind::Progress, false)?;
            }
        }
        Ok(())
    }
}

impl Drop for NatsQueue<'_> {
    /// Gives every job this worker still holds back at once.
    fn drop(&mut self) {
        for (_, h) in self.held().drain() {
            let _ = self.nats.ack(&h.message, AckKind::Nak(None), false);
        }
    }
}

impl Queue for NatsQueue<'_> {
    fn refresh(&self) -> Result<Changes> {
        let mut changes = Changes::default();
        // A lost connection is reported and tried again next time: the
        // client reconnects on its own.
        if let Err(e) = self.refresh_on(&mut changes) {
            changes.io_errors.push(format!("NATS: {e:#}"));
        }
        Ok(changes)
    }

    fn claim(&self, key: &JobKey) -> Result<Claimed> {
        let mut held = self.held();
        Ok(match held.get_mut(key) {
            Some(h) if !h.claimed => {
                h.claimed = true;
                Claimed::Job(Box::new(h.job.clone()))
            }
            _ => Claimed::Gone,
        })
    }

    fn settle(&self, key: &JobKey, job: &Job) -> Result<()> {
        let Some(message) = self.held().get(key).map(|h| h.message.clone()) else {
            bail!("job {} is no longer held by this worker", key.name);
        };
        let names = &self.nats.names;
        let meta = &job.meta;
        match meta.state {
            State::Delivered => {}
            State::Dead => {
                let id = format!(
                    "{}.dead.{}.{}",
                    meta.delivery_id, meta.replays, meta.attempts
                );
                self.surely(|| {
                    self.nats
                        .publish(&names.dead_subject, Some(&id), job.encode())
                })?;
            }
            _ => {
                let mut job = job.clone();
                job.meta.state = State::Pending;
                let id = retry_id(&job.meta);
                self.surely(|| {
                    self.nats
                        .publish(&names.jobs_subject, Some(&id), job.encode())
                })?;
            }
        }
        self.surely(|| self.nats.ack(&message, AckKind::Ack, true))?;
        self.held().remove(key);
        Ok(())
    }

    fn requeue(&self, key: &JobKey) -> Result<()> {
        let Some(h) = self.held().remove(key) else {
            bail!("job {} is no longer held by this worker", key.name);
        };
        self.nats
            .ack(&h.message, AckKind::Nak(Some(GIVE_BACK_DELAY)), false)
    }

    fn log(&self, _spec: &str, records: &[Record]) -> Result<()> {
        let subject = &self.nats.names.evidence_subject;
        for record in records {
            let line = serde_json::to_vec(record)?;
            self.surely(|| self.nats.publish(subject, None, line.clone()))?;
        }
        Ok(())
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        Ok(read_circuit(self.nats, subscription)?.0)
    }

    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)> {
        update_circuit(self.nats, subscription, change)
    }

    fn release(&self, _spec: &str) -> Result<Vec<(JobKey, Meta)>> {
        Ok(Vec::new())
    }

    fn trim(&self, _spec: &str) -> Result<()> {
        Ok(()) // the evidence stream has its own limits
    }

    fn served(&self) -> Vec<String> {
        Vec::new()
    }

    fn can_record(&self) -> bool {
        true
    }
}

/// The Nats-Msg-Id of a retry: a crash between publishing it and acking
/// the old message stores it once.
fn retry_id(meta: &Meta) -> String {
    format!("{}.{}.{}", meta.delivery_id, meta.replays, meta.attempts)
}

/// Changes a subscription's breaker state in the bucket by compare-and-swap:
/// reads it, applies `change`, and writes it back if it changed and nobody
/// wrote it meanwhile (else tries again).
pub fn update_circuit(
    nats: &Nats,
    subscription: &str,
    change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
) -> Result<(Option<Transition>, Circuit)> {
    for _ in 0..50 {
        let (current, revision) = read_circuit(nats, subscription)?;
        let mut next = current.clone();
        let transition = change(&mut next);
        if next == current {
            return Ok((transition, next));
        }
        if nats.kv_swap(subscription, serde_json::to_vec(&next)?, revision)? {
            return Ok((transition, next));
        }
    }
    bail!("the breaker state of `{subscription}` kept changing under this worker; try again")
}

/// A subscription's breaker state and its revision (0: none stored yet).
pub fn read_circuit(nats: &Nats, subscription: &str) -> Result<(Circuit, u64)> {
    match nats.kv_get(subscription)? {
        None => Ok((Circuit::default(), 0)),
        Some((value, revision)) => {
            let circuit = serde_json::from_slice(&value).map_err(|e| {
                anyhow::anyhow!(
                    "the breaker state of `{subscription}` in bucket {} is not readable ({e}); delete the key to reset it",
                    nats.names.circuits
                )
            })?;
            Ok((circuit, revision))
        }
    }
}

#[allow(dead_code)]
const _: () = assert!(PROGRESS_EVERY.as_secs() * 3 <= ACK_WAIT.as_secs());
