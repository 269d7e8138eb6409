//! [`NatsQueue`]: the drain engine's queue on JetStream, one worker of the
//! fleet. Jobs arrive from the lane tasks (`super::lanes`: a consumer per
//! subscription, pulled only while the subscription may send); the breaker
//! comes from the watched bucket (`super::circuits`). Settling runs beside
//! the engine, off the job's critical path, in this order per job: its
//! evidence records are stored, then its new state (a dead job published to
//! the dead stream; a retry published as a schedule that puts it back on
//! its lane when due, so a waiting retry holds no place in any consumer's
//! un-acked window), then its message is acked. Messages held or being
//! settled are kept alive by progress acks from a timer on the NATS
//! runtime, whatever the engine is doing. A crash anywhere in
//! between leaves the message un-acked: it comes back after `ack_wait` and
//! is sent again (at least once); `Nats-Msg-Id`s make the republishes of a
//! repeated settle count once. At most [`MAX_SETTLING`] settles and
//! evidence writes wait at a time; beyond that the engine waits (nothing is
//! dropped). Dropping the queue gives back what it holds and waits for
//! every settle in flight.
//!
//! Due times are never compared across clocks: a job that comes out of a
//! schedule is due (the server kept its time); any other is due no later
//! than its own wait after this worker took it in (a job never attempted
//! is due now, whatever clock queued it); and a schedule's time is the
//! server's now ([`ServerTime`]) plus the wait, never this host's clock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use async_nats::jetstream::{AckKind, Message};
use bytes::Bytes;

use super::circuits::Circuits;
use super::client::{Nats, Outgoing};
use super::fifo::LaneId;
use super::fifo::lane::ToLane;
use super::fifo::take::{self, FifoShared};
use super::lanes::{self, Lane, Shared};
use super::server_time::ServerTime;
use crate::circuit::{Allow, Circuit, Transition};
use crate::clock;
use crate::config::Config;
use crate::drain::queue::{Changes, Claimed, Queue};
use crate::drain::scheduler::JobKey;
use crate::evidence::Record;
use crate::spool::{Job, Meta, State};

/// A job due within this much is held for the scheduler; a later one is
/// put back on a schedule.
const HOLD_AHEAD_MS: u64 = 1000;
/// A held job no worker thread claimed for this long goes back to the
/// server (others are ahead of it here): other workers may take it.
const UNCLAIMED_MAX: Duration = Duration::from_secs(10);
/// How long a job given back waits before it is handed out again.
const GIVE_BACK_DELAY: Duration = Duration::from_secs(1);
/// How long settling keeps trying through a lost connection.
const SETTLE_FOR: Duration = Duration::from_secs(60);
/// Settles and evidence writes in flight at most.
pub const MAX_SETTLING: usize = 1024;
/// How long a probe's claim may take before the probe waits for later (a
/// worker waits for it).
const PROBE_CLAIM_FOR: Duration = Duration::from_secs(2);
/// How often the server's clock is read again.
const MEASURE_EVERY: Duration = Duration::from_secs(30);
/// The header the server puts on a message a schedule produced.
const FROM_SCHEDULE: &str = "Nats-Scheduler";

struct Held {
    message: Message,
    job: Job,
    claimed: bool,
    since: Instant,
}

/// A FIFO lane's head handed to the engine (see `super::fifo`).
struct FifoHeld {
    lane: LaneId,
    job: Job,
    claimed: bool,
}

/// Work running beside the engine, waited for before the queue goes.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    /// Evidence writes of a job, awaited before its settle.
    evidence: Mutex<HashMap<JobKey, Vec<tokio::task::JoinHandle<Result<()>>>>>,
}

pub struct NatsQueue<'a> {
    nats: &'a Nats,
    config: &'a Config,
    once: bool,
    shared: Arc<Shared>,
    circuits: Arc<Circuits>,
    held: Arc<Mutex<HashMap<JobKey, Held>>>,
    /// Messages of jobs being settled (by a number of their own: a second
    /// copy of a job may be settled meanwhile), kept alive until acked.
    settling: Arc<Mutex<HashMap<u64, Message>>>,
    next_settle: AtomicUsize,
    fifo: Arc<FifoShared>,
    fifo_held: Mutex<HashMap<JobKey, FifoHeld>>,
    fifo_task: tokio::task::JoinHandle<()>,
    in_flight: Arc<InFlight>,
    permits: Arc<tokio::sync::Semaphore>,
    server_time: Arc<ServerTime>,
    /// Progress acks and clock reads, on the NATS runtime.
    timer: tokio::task::JoinHandle<()>,
}

impl<'a> NatsQueue<'a> {
    pub fn new(config: &'a Config, nats: &'a Nats, once: bool) -> Result<NatsQueue<'a>> {
        let shared = Shared::new();
        let bell = Arc::clone(&shared);
        let circuits = Arc::new(Circuits::start(nats, Arc::new(move || bell.bell.ring()))?);
        let fifo = Arc::new(FifoShared::default());
        let fifo_task = {
            let ctx = fifo_ctx(config, nats, &shared, &circuits, &fifo)?;
            let _inside = nats.runtime.handle.enter();
            take::start(Arc::new(ctx))
        };
        let held = Arc::new(Mutex::new(HashMap::new()));
        let settling = Arc::new(Mutex::new(HashMap::new()));
        let server_time = Arc::new(ServerTime::default());
        let measured = nats.call(
            "read the server's clock",
            server_time.measure(&nats.client, &nats.names.jobs),
        );
        if let Err(e) = measured.and_then(|m| m) {
            shared_error(&shared, format!("{e:#}; retry times use this host's clock"));
        }
        let timer = {
            let _inside = nats.runtime.handle.enter();
            tokio::spawn(keep_alive(
                Arc::clone(&held),
                Arc::clone(&settling),
                nats.ack_wait / 3,
                Arc::clone(&server_time),
                (nats.client.clone(), nats.names.jobs.clone()),
            ))
        };
        let queue = NatsQueue {
            nats,
            config,
            once,
            shared,
            circuits,
            held,
            settling,
            next_settle: AtomicUsize::new(0),
            fifo,
            fifo_held: Mutex::new(HashMap::new()),
            fifo_task,
            in_flight: Arc::new(InFlight::default()),
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_SETTLING)),
            server_time,
            timer,
        };
        queue.serve_lanes();
        Ok(queue)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fifo_held(&self) -> std::sync::MutexGuard<'_, HashMap<JobKey, FifoHeld>> {
        self.fifo_held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in the heads the FIFO lanes handed over, and lets go of those
    /// taken back.
    fn take_in_fifo(&self, changes: &mut Changes) {
        let handed =
            std::mem::take(&mut *self.fifo.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        let revoked =
            std::mem::take(&mut *self.fifo.revoked.lock().unwrap_or_else(|e| e.into_inner()));
        let mut held = self.fifo_held();
        for key in revoked {
            if held.remove(&key).is_some() {
                changes.removed.push(key);
            }
        }
        for h in handed {
            let key = JobKey {
                spec: h.job.meta.spec.clone(),
                name: h.job.meta.delivery_id.clone(),
            };
            changes.added.push((key.clone(), h.job.meta.clone()));
            held.insert(
                key,
                FifoHeld {
                    lane: h.lane,
                    job: h.job,
                    claimed: false,
                },
            );
        }
        let errors =
            std::mem::take(&mut *self.fifo.errors.lock().unwrap_or_else(|e| e.into_inner()));
        changes
            .io_errors
            .extend(errors.into_iter().map(|e| format!("NATS: {e}")));
    }

    /// Asks a FIFO head's lane whether it may go out now (its lease
    /// checked by a swap of its key).
    fn confirm(&self, lane: &LaneId) -> bool {
        let Some(tx) = self.fifo.sender(lane) else {
            return false;
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if tx.send(ToLane::Confirm(reply)).is_err() {
            return false;
        }
        matches!(self.nats.call("confirm a FIFO lane", answer), Ok(Ok(true)))
    }

    /// Jobs of one subscription a worker holds at most: enough to keep its
    /// share of requests busy (`max_in_flight`), and a little ahead.
    fn cap(&self, subscription: &str) -> usize {
        let sub = self
            .config
            .every_subscription()
            .map(|(_, s)| s)
            .find(|s| s.id == subscription);
        let limits = crate::drain::limits_for(self.config, sub);
        (limits.max_in_flight * 4).clamp(8, 256)
    }

    /// Starts a lane task for every subscription configured or announced
    /// that has none yet.
    fn serve_lanes(&self) {
        let mut ids: Vec<String> = self
            .config
            .every_subscription()
            .map(|(_, s)| s.id.clone())
            .collect();
        ids.extend(self.circuits.known());
        let _inside = self.nats.runtime.handle.enter();
        for id in ids {
            if self.shared.serves(&id) {
                continue;
            }
            let circuits = Arc::clone(&self.circuits);
            let sub = id.clone();
            lanes::start(
                &self.shared,
                Lane {
                    js: self.nats.js.clone(),
                    names: self.nats.names.clone(),
                    cap: self.cap(&id),
                    ack_wait: self.nats.ack_wait,
                    once: self.once,
                    circuit: Arc::new(move || circuits.get(&sub)),
                    circuit_changed: Arc::clone(&self.circuits.changed),
                    subscription: id,
                },
            );
        }
    }

    /// Runs `work` beside the engine, counted until it ends.
    fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<Result<()>>
    where
        F: std::future::Future<Output = Result<()>> + Send + 'static,
    {
        let permit = self
            .nats
            .runtime
            .handle
            .block_on(Arc::clone(&self.permits).acquire_owned());
        let in_flight = Arc::clone(&self.in_flight);
        in_flight.count.fetch_add(1, Ordering::SeqCst);
        self.nats.runtime.handle.spawn(async move {
            let result = work.await;
            drop(permit);
            in_flight.count.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }

    /// Gives a held job back to the server, to be handed out after `delay`.
    fn give_back(&self, message: Message, subscription: &str, delay: Duration) {
        let shared = Arc::clone(&self.shared);
        let sub = subscription.to_string();
        self.spawn(async move {
            let done = message.ack_with(AckKind::Nak(Some(delay))).await;
            shared.let_go(&sub);
            done.map_err(|e| anyhow!("cannot give a job back to NATS: {e}"))
        });
    }

    /// Takes in one message from a lane.
    fn take_in(&self, message: Message, now: u64, changes: &mut Changes) {
        let from_schedule = message
            .headers
            .as_ref()
            .is_some_and(|h| h.get(FROM_SCHEDULE).is_some());
        let names = &self.nats.names;
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let lane = names.lane_of(&message.subject);
        let mut job =
            match Job::decode(&message.payload).and_then(|job| on_its_lane(job, lane.as_ref())) {
                Ok(job) => job,
                Err(reason) => {
                    // Not a job: kept in the dead stream as it is, never lost.
                    let (sub, spec) = lane.unwrap_or_else(|| ("unknown".into(), "unknown".into()));
                    let out = Outgoing {
                        subject: names.dead_lane(&sub, &spec),
                        msg_id: Some(format!("bad.{seq}")),
                        headers: Vec::new(),
                        payload: message.payload.clone(),
                    };
                    changes.io_errors.push(format!(
                        "message {seq} of stream {} ({reason}); moved to stream {} as it was",
                        names.jobs, names.dead
                    ));
                    self.republish_and_ack(message, sub, vec![out]);
                    return;
                }
            };
        let sub = job.meta.subscription.clone();
        if from_schedule {
            // Its wait is over on the server's clock: due now on this one
            // too, however far ahead the clock that wrote it was.
            job.meta.next_attempt_at_ms = job.meta.next_attempt_at_ms.min(now);
        }
        let wait = wait_of(&job.meta, now);
        if wait > HOLD_AHEAD_MS {
            // Relayed with a wait left: back on a schedule of its own, which
            // brings it back due.
            let id = format!("{}.defer.{seq}", retry_id(&job.meta));
            let out = schedule(names, &job, id, self.server_time.now_ms() + wait);
            self.republish_and_ack(message, sub, vec![out]);
            return;
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
            self.give_back(message, &sub, GIVE_BACK_DELAY);
            return;
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
    }

    /// Publishes `out` (each stored surely), then acks `message`.
    fn republish_and_ack(&self, message: Message, subscription: String, out: Vec<Outgoing>) {
        let js = self.nats.js.clone();
        let shared = Arc::clone(&self.shared);
        self.spawn(async move {
            let done = async {
                for o in out {
                    surely(|| publish_one(&js, o.clone())).await?;
                }
                surely(|| async { message.double_ack().await.map_err(|e| anyhow!("{e}")) }).await
            }
            .await;
            shared.let_go(&subscription);
            done
        });
    }

    /// Held jobs that cannot go out soon go back, so that other workers
    /// (or this one, later) take them.
    fn tend(&self, now: u64, changes: &mut Changes) {
        let back: Vec<(JobKey, Held, Duration)> = {
            let mut held = self.held();
            let keys: Vec<(JobKey, Duration)> = held
                .iter()
                .filter(|(_, h)| !h.claimed)
                .filter_map(|(k, h)| {
                    let circuit = self.circuits.get(&h.job.meta.subscription);
                    if circuit.probe_until_ms.is_some_and(|t| t > now) {
                        // A probe is out (maybe this worker's, on this
                        // very job): its answer decides.
                        return None;
                    }
                    match circuit.allows(now) {
                        Allow::Wait(None) => Some((k.clone(), Duration::from_secs(5))),
                        Allow::Wait(Some(at)) if at > now + 1000 => Some((
                            k.clone(),
                            Duration::from_millis(at - now).min(Duration::from_secs(30)),
                        )),
                        _ if h.since.elapsed() >= UNCLAIMED_MAX => {
                            Some((k.clone(), GIVE_BACK_DELAY))
                        }
                        _ => None,
                    }
                })
                .collect();
            keys.into_iter()
                .filter_map(|(k, d)| held.remove(&k).map(|h| (k, h, d)))
                .collect()
        };
        for (key, h, delay) in back {
            changes.removed.push(key);
            self.give_back(h.message, &h.job.meta.subscription, delay);
        }
    }
}

impl Drop for NatsQueue<'_> {
    /// Gives every job this worker still holds back at once, and waits for
    /// the settles in flight.
    fn drop(&mut self) {
        self.shared.stop();
        self.fifo.stop();
        let deadline = Instant::now() + SETTLE_FOR;
        while self.fifo.running() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.fifo_task.abort();
        let held: Vec<Held> = self.held().drain().map(|(_, h)| h).collect();
        for h in held {
            self.give_back(h.message, &h.job.meta.subscription, Duration::ZERO);
        }
        let deadline = Instant::now() + SETTLE_FOR;
        while self.in_flight.count.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.timer.abort();
    }
}

impl Queue for NatsQueue<'_> {
    fn refresh(&self) -> Result<Changes> {
        let mut changes = Changes::default();
        self.serve_lanes();
        let arrived =
            std::mem::take(&mut *self.shared.inbox.lock().unwrap_or_else(|e| e.into_inner()));
        let now = clock::now_ms();
        for message in arrived {
            self.take_in(message, now, &mut changes);
        }
        self.take_in_fifo(&mut changes);
        self.tend(now, &mut changes);
        let mut errors =
            std::mem::take(&mut *self.shared.errors.lock().unwrap_or_else(|e| e.into_inner()));
        errors.extend(self.circuits.problems());
        changes
            .io_errors
            .extend(errors.into_iter().map(|e| format!("NATS: {e}")));
        Ok(changes)
    }

    fn claim(&self, key: &JobKey) -> Result<Claimed> {
        let lane = match self.fifo_held().get(key) {
            Some(h) if h.claimed => return Ok(Claimed::Gone),
            Some(h) => Some(h.lane.clone()),
            None => None,
        };
        if let Some(lane) = lane {
            if !self.confirm(&lane) {
                self.fifo_held().remove(key);
                return Ok(Claimed::Gone);
            }
            return Ok(match self.fifo_held().get_mut(key) {
                Some(h) => {
                    h.claimed = true;
                    Claimed::Job(Box::new(h.job.clone()))
                }
                None => Claimed::Gone,
            });
        }
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
        if let Some(h) = self.fifo_held().remove(key) {
            let evidence = self
                .in_flight
                .evidence
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key)
                .unwrap_or_default();
            if let Some(tx) = self.fifo.sender(&h.lane) {
                // A lane lost meanwhile: its next owner sends the job again.
                let _ = tx.send(ToLane::Settled(Box::new(job.clone()), evidence));
            }
            return Ok(());
        }
        let Some(held) = self.held().remove(key) else {
            bail!("job {} is no longer held by this worker", key.name);
        };
        let names = &self.nats.names;
        let meta = &job.meta;
        let out = match meta.state {
            State::Delivered => Vec::new(),
            State::Dead => vec![Outgoing {
                subject: names.dead_lane(&meta.subscription, &meta.spec),
                msg_id: Some(format!(
                    "{}.dead.{}.{}",
                    meta.delivery_id, meta.replays, meta.attempts
                )),
                headers: Vec::new(),
                payload: Bytes::from(job.encode()),
            }],
            _ => {
                let mut job = job.clone();
                job.meta.state = State::Pending;
                let id = retry_id(&job.meta);
                // The wait as this engine meant it, from now.
                let wait = job.meta.next_attempt_at_ms.saturating_sub(clock::now_ms());
                vec![schedule(names, &job, id, self.server_time.now_ms() + wait)]
            }
        };
        let evidence = self
            .in_flight
            .evidence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key)
            .unwrap_or_default();
        let js = self.nats.js.clone();
        let shared = Arc::clone(&self.shared);
        let sub = meta.subscription.clone();
        let message = held.message;
        // Kept alive by the timer until acked (the retries below may take
        // longer than `ack_wait`).
        let number = self.next_settle.fetch_add(1, Ordering::Relaxed) as u64;
        let settling = Arc::clone(&self.settling);
        lock(&settling).insert(number, message.clone());
        self.spawn(async move {
            let done = async {
                // Evidence first: a crash before the ack repeats the
                // attempt, and the evidence shows both.
                for logged in evidence {
                    logged.await.map_err(|e| anyhow!("{e}"))??;
                }
                for o in out {
                    surely(|| publish_one(&js, o.clone())).await?;
                }
                surely(|| async { message.double_ack().await.map_err(|e| anyhow!("{e}")) }).await
            }
            .await;
            lock(&settling).remove(&number);
            shared.let_go(&sub);
            if let Err(e) = &done {
                shared_error(&shared, format!("{e:#}; the job comes back after ack_wait"));
            }
            done
        });
        Ok(())
    }

    fn requeue(&self, key: &JobKey) -> Result<()> {
        if let Some(h) = self.fifo_held().remove(key) {
            if let Some(tx) = self.fifo.sender(&h.lane) {
                let _ = tx.send(ToLane::GiveBack);
            }
            return Ok(());
        }
        let Some(h) = self.held().remove(key) else {
            bail!("job {} is no longer held by this worker", key.name);
        };
        self.give_back(h.message, &h.job.meta.subscription, GIVE_BACK_DELAY);
        Ok(())
    }

    fn log(&self, spec: &str, records: &[Record]) -> Result<()> {
        let subject = self.nats.names.evidence_of(spec);
        for record in records {
            let line = Bytes::from(serde_json::to_vec(record)?);
            let js = self.nats.js.clone();
            let out = Outgoing {
                subject: subject.clone(),
                msg_id: None,
                headers: Vec::new(),
                payload: line,
            };
            let shared = Arc::clone(&self.shared);
            let handle = self.spawn(async move {
                let done = surely(|| publish_one(&js, out.clone())).await;
                if let Err(e) = &done {
                    shared_error(&shared, format!("cannot store an evidence record: {e:#}"));
                }
                done
            });
            let key = JobKey {
                spec: spec.to_string(),
                name: record.delivery_id.clone(),
            };
            if self.held().contains_key(&key) || self.fifo_held().contains_key(&key) {
                self.in_flight
                    .evidence
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_default()
                    .push(handle);
            }
        }
        Ok(())
    }

    fn circuit(&self, subscription: &str) -> Result<Circuit> {
        Ok(self.circuits.get(subscription))
    }

    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)> {
        self.circuits.update(self.nats, subscription, change)
    }

    fn claim_probe(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)> {
        self.circuits
            .try_update(self.nats, subscription, change, PROBE_CLAIM_FOR)
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

    fn watches(&self) -> bool {
        true
    }

    fn wait_for_news(&self, timeout: Duration) -> bool {
        self.shared.bell.wait(timeout)
    }

    fn stop_waiting(&self) {
        self.shared.stop();
    }

    fn more_to_come(&self) -> bool {
        let now = clock::now_ms();
        self.fifo.busy()
            || !self
                .shared
                .inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
            || self
                .shared
                .more_to_come(|sub| !matches!(self.circuits.get(sub).allows(now), Allow::Wait(_)))
    }
}

/// A job taken from a lane belongs to the lane its subject names: the
/// SPEC and subscription of its metadata must be those (they pick the
/// per-SPEC URL and secret, and the evidence subject), and the SPEC a
/// valid SPEC id. A message that says otherwise is not a job of this lane.
fn on_its_lane(job: Job, lane: Option<&(String, String)>) -> Result<Job, String> {
    let Some((sub, spec)) = lane else {
        return Err("its subject names no lane".into());
    };
    crate::envelope::check_spec_id(&job.meta.spec)?;
    if (&job.meta.subscription, &job.meta.spec) != (sub, spec) {
        return Err(format!(
            "its metadata names subscription {:?} and SPEC {:?}, but it was on the lane of {sub:?} and {spec:?}",
            job.meta.subscription, job.meta.spec
        ));
    }
    Ok(job)
}

/// What the FIFO lanes of this worker need: the lease (at least
/// `ack_wait`, and three request timeouts: an owner alive mid-request is
/// never taken over), and per subscription the lanes to take at most and
/// whether a dead head holds its lane.
fn fifo_ctx(
    config: &Config,
    nats: &Nats,
    shared: &Arc<Shared>,
    circuits: &Arc<Circuits>,
    fifo: &Arc<FifoShared>,
) -> Result<take::Ctx> {
    let mut policy = HashMap::new();
    let mut longest = 0;
    for (_, sub) in config.every_subscription() {
        let limits = crate::drain::limits_for(config, Some(sub));
        policy.insert(
            sub.id.clone(),
            (limits.max_in_flight, sub.ordering.holds_on_dead()),
        );
        longest = longest.max(sub.retry.per_request_timeout_ms);
    }
    let lease = nats
        .ack_wait
        .max(Duration::from_millis(longest.saturating_mul(3)));
    let watched = Arc::clone(circuits);
    let bell = Arc::clone(shared);
    Ok(take::Ctx {
        js: nats.js.clone(),
        client: nats.client.clone(),
        names: nats.names.clone(),
        bucket: nats.lanes_bucket()?,
        me: format!(
            "{}-{}",
            std::process::id(),
            nats.client
                .new_inbox()
                .rsplit('.')
                .next()
                .unwrap_or_default()
        ),
        lease,
        policy,
        default_cap: crate::drain::limits_for(config, None).max_in_flight,
        circuit: Arc::new(move |sub| watched.get(sub)),
        circuit_changed: Arc::clone(&circuits.changed),
        ring: Arc::new(move || bell.bell.ring()),
        shared: Arc::clone(fifo),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every `every`, a progress ack for each message held or being settled
/// (so neither a busy engine nor a slow settle lets `ack_wait` run out and
/// the job go to another worker while it is sent or settled); and now and
/// then the server's clock read again.
async fn keep_alive(
    held: Arc<Mutex<HashMap<JobKey, Held>>>,
    settling: Arc<Mutex<HashMap<u64, Message>>>,
    every: Duration,
    server_time: Arc<ServerTime>,
    (client, stream): (async_nats::Client, String),
) {
    let every = every.clamp(Duration::from_millis(100), MEASURE_EVERY);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut measured = tokio::time::Instant::now();
    tick.tick().await;
    loop {
        tick.tick().await;
        let mut messages: Vec<Message> = lock(&held).values().map(|h| h.message.clone()).collect();
        messages.extend(lock(&settling).values().cloned());
        for message in messages {
            let _ = message.ack_with(AckKind::Progress).await;
        }
        if measured.elapsed() >= MEASURE_EVERY {
            measured = tokio::time::Instant::now();
            // A failed read keeps the last offset.
            let _ = server_time.measure(&client, &stream).await;
        }
    }
}

fn shared_error(shared: &Shared, message: String) {
    let mut errors = shared.errors.lock().unwrap_or_else(|e| e.into_inner());
    if !errors.contains(&message) {
        errors.push(message);
    }
}

/// How long a job taken in at `now` (this host's clock) still waits: until
/// its next attempt as written, but no more than its own wait (the time
/// was written by another clock, maybe off; a job never attempted waits
/// for nothing).
fn wait_of(meta: &Meta, now: u64) -> u64 {
    meta.next_attempt_at_ms
        .saturating_sub(now)
        .min(meta.own_wait())
}

/// A job waiting for its time: a schedule that publishes the job on its
/// lane at `at_ms`, on the server's clock.
fn schedule(names: &super::layout::Names, job: &Job, msg_id: String, at_ms: u64) -> Outgoing {
    let meta = &job.meta;
    let at = clock::rfc3339(at_ms);
    Outgoing {
        subject: names.retry(&meta.subscription, &meta.spec, &meta.delivery_id),
        msg_id: Some(msg_id),
        headers: vec![
            ("Nats-Schedule", format!("@at {at}")),
            (
                "Nats-Schedule-Target",
                names.lane(&meta.subscription, &meta.spec),
            ),
        ],
        payload: Bytes::from(job.encode()),
    }
}

/// The Nats-Msg-Id of a retry: a crash between publishing it and acking
/// the old message stores it once.
fn retry_id(meta: &Meta) -> String {
    format!("{}.{}.{}", meta.delivery_id, meta.replays, meta.attempts)
}

async fn publish_one(js: &async_nats::jetstream::Context, out: Outgoing) -> Result<()> {
    let subject = out.subject.clone();
    let ack = js
        .send_publish(subject.clone(), out.into_publish())
        .await
        .map_err(|e| anyhow!("cannot publish to {subject}: {e}"))?;
    ack.await
        .map(drop)
        .map_err(|e| anyhow!("the NATS server did not store a message on {subject}: {e}"))
}

/// Retries `step` through a lost connection for up to [`SETTLE_FOR`].
async fn surely<F, Fut>(mut step: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE_FOR;
    let mut pause = Duration::from_millis(100);
    loop {
        match step().await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: &str, sub: &str) -> Job {
        Job {
            meta: Meta::new(spec, sub, "a.b.c", "k", 1, 1000),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_job_belongs_to_the_lane_its_subject_names() {
        let names = super::super::layout::Names::new("P");
        let lane = names.lane_of(&names.lane("hook", "SPEC-A"));
        assert!(on_its_lane(job("SPEC-A", "hook"), lane.as_ref()).is_ok());
        // Another SPEC's overrides, or a path for the evidence: refused.
        let other = on_its_lane(job("SPEC-B", "hook"), lane.as_ref()).unwrap_err();
        assert!(other.contains("\"SPEC-B\""), "{other}");
        assert!(on_its_lane(job("SPEC-A", "other"), lane.as_ref()).is_err());
        let path = "/srv/elsewhere";
        let lane = names.lane_of(&names.lane("hook", path));
        let refused = on_its_lane(job(path, "hook"), lane.as_ref()).unwrap_err();
        assert!(refused.contains("invalid SPEC id"), "{refused}");
        assert!(on_its_lane(job("SPEC-A", "hook"), None).is_err());
    }
}
