//! A worker's side of the FIFO lanes: it watches bucket `P_LANES` (every
//! change arrives as it is written) and takes, by compare-and-swap, each
//! lane that has work and no live owner: one the last owner let go of, or
//! one whose owner's `beat` has not changed for the lease time by this
//! worker's own monotonic clock (a worker killed with -9). It takes at most
//! `max_in_flight` lanes of a subscription (one request each: more would
//! only wait here while another worker could send them), none of a paused
//! subscription or one whose circuit is open, and none whose head waits
//! for a distant retry. Each lane taken is served by a task of its own
//! ([`super::lane`]); what they hand the engine and what it answers go
//! through [`FifoShared`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::UnboundedSender;

use super::lane::{self, ToLane};
use super::{LaneId, LaneState};
use crate::circuit::{Allow, Circuit};
use crate::clock;
use crate::drain::scheduler::JobKey;
use crate::nats::layout::Names;
use crate::spool::{Job, State};

/// A head due later than this is not held by a worker: its lane is let
/// go of, and taken again when it is due.
pub const LONG_WAIT_MS: u64 = 5000;
/// Jobs a lane task serves before it lets go of its lane when lanes of the
/// same subscription wait for a place here.
pub const TURN: usize = 64;

/// A head handed to the engine.
pub struct Handed {
    pub lane: LaneId,
    pub job: Job,
}

/// What the worker's lanes and its engine share.
#[derive(Default)]
pub struct FifoShared {
    /// Heads to hand to the engine.
    pub inbox: Mutex<Vec<Handed>>,
    /// Jobs handed earlier that this worker may no longer send (its lane
    /// was lost, or let go of).
    pub revoked: Mutex<Vec<JobKey>>,
    pub errors: Mutex<Vec<String>>,
    owned: Mutex<HashMap<LaneId, UnboundedSender<ToLane>>>,
    /// Lanes not to take again before then (given back by the engine).
    cooldown: Mutex<HashMap<LaneId, Instant>>,
    /// When this worker last let go of each lane (the longest-waiting is
    /// taken first).
    last_owned: Mutex<HashMap<LaneId, Instant>>,
    /// Subscriptions with lanes waiting for a place here.
    starved: Mutex<HashSet<String>>,
    /// Lanes with work that this worker could take exist.
    candidates: AtomicBool,
    running: AtomicUsize,
    stop: AtomicBool,
    pub stopped: tokio::sync::Notify,
    released: tokio::sync::Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FifoShared {
    pub fn sender(&self, lane: &LaneId) -> Option<UnboundedSender<ToLane>> {
        lock(&self.owned).get(lane).cloned()
    }

    pub fn error(&self, message: String) {
        let mut errors = lock(&self.errors);
        if !errors.contains(&message) {
            errors.push(message);
        }
    }

    pub fn inbox_push(&self, handed: Handed) {
        lock(&self.inbox).push(handed);
    }

    pub fn revoke(&self, key: JobKey) {
        lock(&self.revoked).push(key);
    }

    pub fn cool(&self, lane: &LaneId, for_: Duration) {
        lock(&self.cooldown).insert(lane.clone(), Instant::now() + for_);
    }

    pub fn starved(&self, subscription: &str) -> bool {
        lock(&self.starved).contains(subscription)
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
        for tx in lock(&self.owned).values() {
            let _ = tx.send(ToLane::Stop);
        }
    }

    /// Lane tasks still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether this worker serves a lane, or could take one now.
    pub fn busy(&self) -> bool {
        self.running() > 0 || self.candidates.load(Ordering::SeqCst)
    }

    /// A lane task ended.
    pub fn ended(&self, lane: &LaneId) {
        lock(&self.owned).remove(lane);
        lock(&self.last_owned).insert(lane.clone(), Instant::now());
        self.running.fetch_sub(1, Ordering::SeqCst);
        self.released.notify_one();
    }
}

/// What every lane task of a worker needs.
pub struct Ctx {
    pub js: jetstream::Context,
    pub client: async_nats::Client,
    pub names: Names,
    pub bucket: kv::Store,
    /// This worker, as lane owners are named.
    pub me: String,
    /// A lane whose owner shows no sign of life for this long is free.
    pub lease: Duration,
    /// Per subscription: lanes taken at most, and whether a dead head
    /// holds its lane.
    pub policy: HashMap<String, (usize, bool)>,
    pub default_cap: usize,
    pub circuit: Arc<dyn Fn(&str) -> Circuit + Send + Sync>,
    pub circuit_changed: Arc<tokio::sync::Notify>,
    /// Wakes the engine.
    pub ring: Arc<dyn Fn() + Send + Sync>,
    pub shared: Arc<FifoShared>,
}

impl Ctx {
    pub fn holds(&self, subscription: &str) -> bool {
        self.policy.get(subscription).is_some_and(|p| p.1)
    }

    fn cap(&self, subscription: &str) -> usize {
        self.policy
            .get(subscription)
            .map_or(self.default_cap, |p| p.0)
            .max(1)
    }
}

/// A key as the watch last saw it.
struct Seen {
    state: LaneState,
    revision: u64,
    /// When its owner or beat last changed, on this worker's clock.
    changed: Instant,
}

/// Writes `value` under `key` if its revision is still `revision` (0:
/// absent); `Ok(None)`: someone else wrote first.
pub async fn swap(
    bucket: &kv::Store,
    key: &str,
    value: Bytes,
    revision: u64,
) -> Result<Option<u64>> {
    let written = if revision == 0 {
        bucket.create(key, value).await.map_err(|e| {
            (
                e.kind() == kv::CreateErrorKind::AlreadyExists,
                e.to_string(),
            )
        })
    } else {
        bucket.update(key, value, revision).await.map_err(|e| {
            (
                e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                e.to_string(),
            )
        })
    };
    match written {
        Ok(revision) => Ok(Some(revision)),
        Err((true, _)) => Ok(None),
        Err((false, e)) if e.contains("wrong last sequence") => Ok(None),
        Err((false, e)) => Err(anyhow!(
            "cannot write `{key}` to bucket {}: {e}",
            bucket.name
        )),
    }
}

/// A key's state and revision from the server (0: none).
pub async fn entry(bucket: &kv::Store, key: &str) -> Result<(LaneState, u64)> {
    let entry = bucket
        .entry(key)
        .await
        .map_err(|e| anyhow!("cannot read `{key}` from bucket {}: {e}", bucket.name))?;
    match entry.filter(|e| e.operation == kv::Operation::Put) {
        None => Ok((LaneState::default(), 0)),
        Some(e) => Ok((super::decode(key, &e.value, &bucket.name)?, e.revision)),
    }
}

/// Starts watching and taking lanes.
pub fn start(ctx: Arc<Ctx>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(run(ctx))
}

async fn run(ctx: Arc<Ctx>) {
    let tick = (ctx.lease / 4).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut seen: HashMap<String, Seen> = HashMap::new();
    while !ctx.shared.stopping() {
        let mut entries = match ctx.bucket.watch_with_history(">").await {
            Ok(entries) => entries,
            Err(e) => {
                ctx.shared
                    .error(format!("cannot watch bucket {}: {e}", ctx.names.lanes));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                next = entries.next() => match next {
                    Some(Ok(entry)) => see(&mut seen, entry),
                    _ => break,
                },
                _ = tokio::time::sleep(tick) => {}
                _ = ctx.circuit_changed.notified() => {}
                _ = ctx.shared.released.notified() => {}
                _ = ctx.shared.stopped.notified() => return,
            }
            if ctx.shared.stopping() {
                return;
            }
            take(&ctx, &mut seen).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn see(seen: &mut HashMap<String, Seen>, entry: kv::Entry) {
    match entry.operation {
        kv::Operation::Put => {
            let state: LaneState = serde_json::from_slice(&entry.value).unwrap_or_default();
            let now = Instant::now();
            let changed = match seen.get(&entry.key) {
                Some(old) if old.revision > entry.revision => return,
                Some(old) if old.state.owner == state.owner && old.state.beat == state.beat => {
                    old.changed
                }
                _ => now,
            };
            seen.insert(
                entry.key,
                Seen {
                    state,
                    revision: entry.revision,
                    changed,
                },
            );
        }
        kv::Operation::Delete | kv::Operation::Purge => {
            seen.remove(&entry.key);
        }
    }
}

/// Whether a lane has work this worker may take now.
fn free(ctx: &Ctx, s: &Seen, now_ms: u64) -> bool {
    let state = &s.state;
    let dead_head = state
        .head
        .as_ref()
        .is_some_and(|h| h.meta.state == State::Dead);
    if state.held_by.is_some() && !dead_head {
        return false;
    }
    let owner_gone = match &state.owner {
        None => !state.idle || dead_head,
        Some(o) if *o == ctx.me => true,
        Some(_) => s.changed.elapsed() >= ctx.lease,
    };
    let due = state.head.as_ref().is_none_or(|h| {
        h.meta.state != State::Pending || h.meta.next_attempt_at_ms <= now_ms + LONG_WAIT_MS
    });
    owner_gone && due
}

async fn take(ctx: &Arc<Ctx>, seen: &mut HashMap<String, Seen>) {
    let now_ms = clock::now_ms();
    let owned: HashSet<LaneId> = lock(&ctx.shared.owned).keys().cloned().collect();
    let mut per_sub: HashMap<String, usize> = HashMap::new();
    for lane in &owned {
        *per_sub.entry(lane.subscription.clone()).or_default() += 1;
    }
    let cooling = {
        let mut cooldown = lock(&ctx.shared.cooldown);
        cooldown.retain(|_, until| *until > Instant::now());
        cooldown.keys().cloned().collect::<HashSet<LaneId>>()
    };
    let last_owned = lock(&ctx.shared.last_owned).clone();
    let mut free_lanes: Vec<(LaneId, String)> = seen
        .iter()
        .filter_map(|(key, s)| {
            let (subscription, spec) = Names::of_lane_key(key)?;
            let lane = LaneId { subscription, spec };
            (!owned.contains(&lane) && !cooling.contains(&lane) && free(ctx, s, now_ms))
                .then(|| (lane, key.clone()))
        })
        .collect();
    free_lanes.sort_by_key(|(lane, _)| last_owned.get(lane).copied());
    let mut starved = HashSet::new();
    let mut any = false;
    for (lane, key) in free_lanes {
        if matches!(
            (ctx.circuit)(&lane.subscription).allows(now_ms),
            Allow::Wait(_)
        ) {
            continue;
        }
        any = true;
        let count = per_sub.entry(lane.subscription.clone()).or_default();
        if *count >= ctx.cap(&lane.subscription) {
            starved.insert(lane.subscription.clone());
            continue;
        }
        let Some(s) = seen.get_mut(&key) else {
            continue;
        };
        let mut next = s.state.clone();
        next.owner = Some(ctx.me.clone());
        next.beat += 1;
        let Ok(Some(revision)) = swap(&ctx.bucket, &key, next.encode(), s.revision).await else {
            continue; // someone else wrote first: the watch tells what
        };
        *count += 1;
        *s = Seen {
            state: next.clone(),
            revision,
            changed: Instant::now(),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        lock(&ctx.shared.owned).insert(lane.clone(), tx);
        ctx.shared.running.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(lane::serve(Arc::clone(ctx), lane, key, next, revision, rx));
    }
    *lock(&ctx.shared.starved) = starved;
    ctx.shared.candidates.store(any, Ordering::SeqCst);
}
