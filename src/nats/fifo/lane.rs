//! One FIFO lane served by its owner: read the head, hand it to the
//! engine, and settle it before the next one is read. Before each send the
//! engine asks ([`ToLane::Confirm`]) and the lane answers with a
//! compare-and-swap of its key: a lane taken over meanwhile sends nothing.
//! A settle goes in this order, each step safe to repeat after a crash:
//! the evidence records are stored; then
//! - delivered: the message is deleted, then the key forgets the head
//!   (a crash in between: the next owner sends the job again, a duplicate
//!   of the last one delivered, never one out of order);
//! - dead: the key records the head as dead (and `held_by` when the lane
//!   holds on a dead job) before the dead copy is published (same
//!   `Nats-Msg-Id` when repeated) and the message deleted: whoever owns
//!   the lane next finishes that first;
//! - a retry: the key stores the head's metadata (attempts, next attempt);
//!   the message stays where it is, ahead of every later job. A head due
//!   later than [`LONG_WAIT_MS`] is not held: the lane is let go of, and
//!   taken again (by any worker) when it is due.
//!
//! A lane found empty is let go of as idle by a swap against the revision
//! read before the stream was: a relay that stored a job since has written
//! the key, so the swap fails and the lane is read again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use bytes::Bytes;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::oneshot;

use super::take::{Ctx, Handed, LONG_WAIT_MS, TURN, entry, swap};
use super::{Head, LaneId, LaneState, delete, head};
use crate::clock;
use crate::drain::scheduler::JobKey;
use crate::nats::client::Stored;
use crate::spool::{Job, State};

/// What the engine tells a lane's task.
pub enum ToLane {
    /// May the head go out now? (The lease is checked by a swap.)
    Confirm(oneshot::Sender<bool>),
    /// The head's outcome, and its evidence writes to wait for.
    Settled(Box<Job>, Vec<tokio::task::JoinHandle<Result<()>>>),
    /// The engine put the head back unsent.
    GiveBack,
    /// The worker stops.
    Stop,
}

struct Owned {
    ctx: Arc<Ctx>,
    lane: LaneId,
    key: String,
    state: LaneState,
    revision: u64,
    last_write: Instant,
}

/// Serves a lane just taken until it is empty, held, lost or let go of.
pub async fn serve(
    ctx: Arc<Ctx>,
    lane: LaneId,
    key: String,
    state: LaneState,
    revision: u64,
    mut rx: UnboundedReceiver<ToLane>,
) {
    let mut owned = Owned {
        ctx: Arc::clone(&ctx),
        lane: lane.clone(),
        key,
        state,
        revision,
        last_write: Instant::now(),
    };
    owned.run(&mut rx).await;
    ctx.shared.ended(&lane);
}

fn job_key(job: &Job) -> JobKey {
    JobKey {
        spec: job.meta.spec.clone(),
        name: job.meta.delivery_id.clone(),
    }
}

impl Owned {
    /// Writes the key by compare-and-swap; read again and tried again when
    /// someone else wrote first (a relay's touch), while this worker still
    /// owns the lane. False: lost (or no answer for a lease).
    async fn write(&mut self, change: impl Fn(&mut LaneState)) -> bool {
        let deadline = Instant::now() + self.ctx.lease;
        let me = Some(self.ctx.me.clone());
        loop {
            let mut next = self.state.clone();
            change(&mut next);
            match swap(&self.ctx.bucket, &self.key, next.encode(), self.revision).await {
                Ok(Some(revision)) => {
                    self.state = next;
                    self.revision = revision;
                    self.last_write = Instant::now();
                    return true;
                }
                Ok(None) => match entry(&self.ctx.bucket, &self.key).await {
                    Ok((state, revision)) => {
                        if state.owner != me {
                            return false;
                        }
                        self.state = state;
                        self.revision = revision;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
                Err(e) => {
                    if Instant::now() >= deadline {
                        self.ctx.shared.error(format!("{e:#}"));
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    async fn beat(&mut self) -> bool {
        self.write(|s| s.beat += 1).await
    }

    /// Lets go of the lane (`idle`: it was found empty).
    async fn release(&mut self) {
        self.write(|s| s.owner = None).await;
    }

    async fn run(&mut self, rx: &mut UnboundedReceiver<ToLane>) {
        let mut served = 0;
        loop {
            if self.ctx.shared.stopping() {
                return self.release().await;
            }
            if self.last_write.elapsed() >= self.ctx.lease / 4 && !self.beat().await {
                return;
            }
            let found = match head(&self.ctx.client, &self.ctx.names, &self.lane).await {
                Ok(found) => found,
                Err(e) => {
                    self.ctx.shared.error(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            // A head recorded dead (a crash between its steps) is finished first.
            if let Some(h) = self.state.head.clone()
                && h.meta.state == State::Dead
            {
                let finished = match &found {
                    Some((stored, _)) if stored.seq == h.seq => {
                        self.finish_dead(stored, h.meta).await
                    }
                    _ => {
                        self.write(|s| {
                            s.head = None;
                            s.settled_at_ms = Some(clock::now_ms());
                        })
                        .await
                    }
                };
                if !finished {
                    return;
                }
                continue;
            }
            if self.state.held_by.is_some() {
                return self.release().await;
            }
            let Some((stored, job)) = found else {
                if self.let_go_if_empty().await {
                    return;
                }
                continue;
            };
            let mut job = match job {
                Ok(job) => job,
                Err(reason) => {
                    if !self.not_a_job(&stored, reason).await {
                        return;
                    }
                    continue;
                }
            };
            if let Some(h) = &self.state.head
                && h.seq == stored.seq
            {
                job.meta = h.meta.clone();
            }
            job.meta.state = State::Pending;
            if job.meta.next_attempt_at_ms > clock::now_ms() + LONG_WAIT_MS {
                return self.release().await;
            }
            // It waited for its turn until the head before it settled: its
            // age for `max_age` counts from there.
            if let Some(at) = self.state.settled_at_ms
                && at > job.meta.age_from()
            {
                job.meta.seen_at_ms = Some(at);
            }
            let key = job_key(&job);
            self.ctx.shared.inbox_push(Handed {
                lane: self.lane.clone(),
                job,
            });
            (self.ctx.ring)();
            let Some((settled, evidence)) = self.wait(rx, &key).await else {
                return;
            };
            if !self.settle(&stored, *settled, evidence).await {
                return;
            }
            served += 1;
            if served >= TURN && self.ctx.shared.starved(&self.lane.subscription) {
                // Lanes of this subscription wait for a place here.
                return self.release().await;
            }
        }
    }

    /// Waits for the engine's outcome, beating meanwhile. `None`: the lane
    /// is no longer this worker's to send (the job was taken back).
    async fn wait(
        &mut self,
        rx: &mut UnboundedReceiver<ToLane>,
        key: &JobKey,
    ) -> Option<(Box<Job>, Vec<tokio::task::JoinHandle<Result<()>>>)> {
        loop {
            let next_beat = self.last_write + self.ctx.lease / 4;
            let message = tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep_until(next_beat.into()) => {
                    if !self.beat().await {
                        self.ctx.shared.revoke(key.clone());
                        return None;
                    }
                    continue;
                }
            };
            match message {
                Some(ToLane::Confirm(reply)) => {
                    let ok = self.beat().await;
                    let _ = reply.send(ok);
                    if !ok {
                        self.ctx.shared.revoke(key.clone());
                        return None;
                    }
                }
                Some(ToLane::Settled(job, evidence)) => return Some((job, evidence)),
                Some(ToLane::GiveBack) => {
                    self.ctx.shared.cool(&self.lane, Duration::from_secs(1));
                    self.release().await;
                    return None;
                }
                Some(ToLane::Stop) | None => {
                    self.ctx.shared.revoke(key.clone());
                    self.release().await;
                    return None;
                }
            }
        }
    }

    /// Stores the outcome (see the module doc). False: the lane is no
    /// longer this worker's.
    async fn settle(
        &mut self,
        stored: &Stored,
        job: Job,
        evidence: Vec<tokio::task::JoinHandle<Result<()>>>,
    ) -> bool {
        for logged in evidence {
            let done = match logged.await {
                Ok(done) => done,
                Err(e) => Err(anyhow!("{e}")),
            };
            if let Err(e) = done {
                self.ctx.shared.error(format!(
                    "{e:#}; FIFO job {} is sent again",
                    job.meta.delivery_id
                ));
                self.release().await;
                return false;
            }
        }
        let seq = stored.seq;
        match job.meta.state {
            State::Delivered => {
                if let Err(e) = delete(&self.ctx.js, &self.ctx.names, seq).await {
                    self.ctx.shared.error(format!("{e:#}"));
                    self.release().await;
                    return false;
                }
                self.write(|s| {
                    s.head = None;
                    s.settled_at_ms = Some(clock::now_ms());
                })
                .await
            }
            State::Dead => {
                let hold = self.ctx.holds(&self.lane.subscription);
                let id = job.meta.delivery_id.clone();
                let meta = job.meta.clone();
                if !self
                    .write(|s| {
                        s.head = Some(Head {
                            seq,
                            meta: meta.clone(),
                        });
                        if hold {
                            s.held_by = Some(id.clone());
                        }
                    })
                    .await
                {
                    return false;
                }
                self.finish_dead(stored, job.meta).await
            }
            _ => {
                let mut meta = job.meta;
                meta.state = State::Pending;
                self.write(|s| {
                    s.head = Some(Head {
                        seq,
                        meta: meta.clone(),
                    })
                })
                .await
            }
        }
    }

    /// Publishes the dead copy of the head at `stored` (with `meta`),
    /// deletes it from the lane, and forgets it.
    async fn finish_dead(&mut self, stored: &Stored, meta: crate::spool::Meta) -> bool {
        let body = match Job::decode(&stored.payload) {
            Ok(job) => job.body,
            Err(_) => stored.payload.to_vec(),
        };
        let dead = Job {
            meta: meta.clone(),
            body,
        };
        let subject = self
            .ctx
            .names
            .dead_lane(&self.lane.subscription, &self.lane.spec);
        let msg_id = format!(
            "{}.dead.{}.{}",
            meta.delivery_id, meta.replays, meta.attempts
        );
        self.move_out(stored.seq, subject, msg_id, Bytes::from(dead.encode()))
            .await
    }

    /// A message of the lane that is not a job: kept in the dead stream as
    /// it is, never lost.
    async fn not_a_job(&mut self, stored: &Stored, reason: String) -> bool {
        self.ctx.shared.error(format!(
            "message {} of stream {} ({reason}); moved to stream {} as it was",
            stored.seq, self.ctx.names.jobs, self.ctx.names.dead
        ));
        let subject = self
            .ctx
            .names
            .dead_lane(&self.lane.subscription, &self.lane.spec);
        self.move_out(
            stored.seq,
            subject,
            format!("bad.{}", stored.seq),
            stored.payload.clone(),
        )
        .await
    }

    async fn move_out(
        &mut self,
        seq: u64,
        subject: String,
        msg_id: String,
        payload: Bytes,
    ) -> bool {
        let out = crate::nats::client::Outgoing {
            subject: subject.clone(),
            msg_id: Some(msg_id),
            headers: Vec::new(),
            payload,
        };
        let stored = async {
            let ack = self
                .ctx
                .js
                .send_publish(subject.clone(), out.into_publish())
                .await
                .map_err(|e| anyhow!("cannot publish to {subject}: {e}"))?;
            ack.await.map(drop).map_err(|e| {
                anyhow!("the NATS server did not store a message on {subject}: {e}")
            })?;
            delete(&self.ctx.js, &self.ctx.names, seq).await
        }
        .await;
        if let Err(e) = stored {
            self.ctx.shared.error(format!("{e:#}"));
            self.release().await;
            return false;
        }
        self.write(|s| {
            s.head = None;
            s.settled_at_ms = Some(clock::now_ms());
        })
        .await
    }

    /// Lets go of a lane found empty, unless the key changed since it was
    /// read (then it is read again). True: done with the lane.
    async fn let_go_if_empty(&mut self) -> bool {
        let mut next = self.state.clone();
        next.owner = None;
        next.idle = true;
        next.head = None;
        match swap(&self.ctx.bucket, &self.key, next.encode(), self.revision).await {
            Ok(Some(_)) => true,
            Ok(None) => match entry(&self.ctx.bucket, &self.key).await {
                Ok((state, revision)) if state.owner.as_deref() == Some(&self.ctx.me) => {
                    self.state = state;
                    self.revision = revision;
                    false
                }
                Ok(_) => true,
                Err(_) => false,
            },
            Err(e) => {
                self.ctx.shared.error(format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                false
            }
        }
    }
}
