//! The fleet's breaker and pause states as one worker sees them: the bucket
//! is watched (every change arrives as it is written, no read per look) and
//! kept in memory with each key's revision; a change is a compare-and-swap
//! against that revision, read again from the server when someone else
//! wrote first. On nats-server 2.10+ the swap is serializable, so exactly
//! one worker wins a probe. A key in the bucket also names a lane that has
//! jobs (the relay creates it), so the watch is how workers learn of a
//! subscription they have no config for (a per-call URL, a removed one).
//! What goes wrong is said, not swallowed: a watch that cannot start again
//! [`REPORT_AFTER`] times running (the bucket deleted, the server gone), a
//! value that does not decode (kept as it was last read, closed if never).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use async_nats::jetstream::kv;
use futures_util::StreamExt;

use super::client::Nats;
use crate::circuit::{Circuit, Transition};

/// Failed starts of the watch in a row before they are reported.
const REPORT_AFTER: u32 = 5;

/// What the watch has seen: each key's state and revision.
#[derive(Default)]
struct Seen {
    states: HashMap<String, (Circuit, u64)>,
    /// The watch has delivered every value there was when it started.
    current: bool,
    /// Problems to report (each once, at the engine's next look).
    problems: Vec<String>,
}

impl Seen {
    fn problem(&mut self, message: String) {
        if !self.problems.contains(&message) {
            self.problems.push(message);
        }
    }
}

/// The watched bucket. Dropping it stops the watch.
pub struct Circuits {
    seen: Arc<Mutex<Seen>>,
    /// Woken on every change (lanes wait on it to open or close).
    pub changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Circuits {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn decode(subscription: &str, value: &[u8], bucket: &str) -> Result<Circuit> {
    serde_json::from_slice(value).map_err(|e| {
        anyhow!(
            "the breaker state of `{subscription}` in bucket {bucket} is not readable ({e}); delete the key to reset it"
        )
    })
}

impl Circuits {
    /// Starts watching; `on_change` is called after each change is taken
    /// in (it rings the engine's bell). Waits until the current values are in.
    pub fn start(nats: &Nats, on_change: Arc<dyn Fn() + Send + Sync>) -> Result<Circuits> {
        let bucket = nats.bucket()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let task = {
            let (seen, changed) = (Arc::clone(&seen), Arc::clone(&changed));
            let _inside = nats.runtime.handle.enter();
            tokio::spawn(watch(bucket, seen, changed, on_change))
        };
        let circuits = Circuits {
            seen,
            changed,
            task,
        };
        let deadline = std::time::Instant::now() + super::client::CALL_TIMEOUT;
        while !circuits.lock().current {
            if std::time::Instant::now() >= deadline {
                bail!(
                    "no answer from NATS within {:?} while reading bucket {}",
                    super::client::CALL_TIMEOUT,
                    nats.names.circuits
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(circuits)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A subscription's state as last seen (closed when none is stored).
    pub fn get(&self, subscription: &str) -> Circuit {
        self.lock()
            .states
            .get(subscription)
            .map(|(c, _)| c.clone())
            .unwrap_or_default()
    }

    /// Every subscription with a key: the lanes announced.
    pub fn known(&self) -> Vec<String> {
        self.lock().states.keys().cloned().collect()
    }

    /// What went wrong with the watch since the last call.
    pub fn problems(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().problems)
    }

    /// Changes a subscription's state by compare-and-swap on the revision
    /// seen, reading it again when someone else wrote first.
    pub fn update(
        &self,
        nats: &Nats,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)> {
        self.update_within(nats, subscription, change, None)
    }

    /// [`Circuits::update`] that gives up after `within` (each request to
    /// the server asked once, none waited for longer): a probe's claim,
    /// which a worker waits for.
    pub fn try_update(
        &self,
        nats: &Nats,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
        within: Duration,
    ) -> Result<(Option<Transition>, Circuit)> {
        self.update_within(nats, subscription, change, Some(within))
    }

    fn update_within(
        &self,
        nats: &Nats,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
        within: Option<Duration>,
    ) -> Result<(Option<Transition>, Circuit)> {
        let deadline = within.map(|w| std::time::Instant::now() + w);
        let left = || {
            deadline.map(|d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .max(Duration::from_millis(1))
            })
        };
        let mut cached = self.lock().states.get(subscription).cloned();
        for _ in 0..50 {
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                break;
            }
            let (current, revision) = match cached.take() {
                Some(seen) => seen,
                None => read_within(nats, subscription, left())?,
            };
            let mut next = current.clone();
            let transition = change(&mut next);
            if next == current {
                return Ok((transition, next));
            }
            if let Some(revision) = swap_within(nats, subscription, &next, revision, left())? {
                let mut seen = self.lock();
                let newer = seen
                    .states
                    .get(subscription)
                    .is_some_and(|(_, r)| *r > revision);
                if !newer {
                    seen.states
                        .insert(subscription.to_string(), (next.clone(), revision));
                }
                return Ok((transition, next));
            }
        }
        if let Some(within) = within {
            bail!(
                "cannot claim a probe of `{subscription}` in bucket {} within {within:?}; tried again later",
                nats.names.circuits
            )
        }
        bail!("the breaker state of `{subscription}` kept changing under this worker; try again")
    }
}

/// The watch: current values first, then every change; started again
/// after a lost connection.
async fn watch(
    bucket: kv::Store,
    seen: Arc<Mutex<Seen>>,
    changed: Arc<tokio::sync::Notify>,
    on_change: Arc<dyn Fn() + Send + Sync>,
) {
    let name = bucket.name.clone();
    let mut failed = 0u32;
    loop {
        let mut entries = match bucket.watch_with_history(">").await {
            Ok(entries) => entries,
            Err(e) => {
                failed += 1;
                if failed.is_multiple_of(REPORT_AFTER) {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).problem(format!(
                        "cannot watch bucket {name} ({failed} tries: {e}); breaker and pause states are as last seen until it can (does the bucket exist? a worker started anew creates it)"
                    ));
                    on_change();
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        failed = 0;
        // An empty bucket delivers nothing: current at once.
        let empty = bucket
            .status()
            .await
            .map(|s| s.values() == 0)
            .unwrap_or(false);
        if empty {
            seen.lock().unwrap_or_else(|e| e.into_inner()).current = true;
        }
        while let Some(entry) = entries.next().await {
            let Ok(entry) = entry else { break };
            {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                match entry.operation {
                    kv::Operation::Put => {
                        let newer = seen
                            .states
                            .get(&entry.key)
                            .is_some_and(|(_, r)| *r > entry.revision);
                        match decode(&entry.key, &entry.value, &name) {
                            Ok(circuit) if !newer => {
                                seen.states
                                    .insert(entry.key.clone(), (circuit, entry.revision));
                            }
                            Ok(_) => {}
                            Err(e) => {
                                // The lane is served; its state stays as it was.
                                seen.states
                                    .entry(entry.key.clone())
                                    .or_insert((Circuit::default(), entry.revision));
                                seen.problem(format!("{e:#}"));
                            }
                        }
                    }
                    kv::Operation::Delete | kv::Operation::Purge => {
                        seen.states.remove(&entry.key);
                    }
                }
                if entry.delta == 0 || entry.seen_current {
                    seen.current = true;
                }
            }
            changed.notify_waiters();
            on_change();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Changes a subscription's state by compare-and-swap, read fresh from the
/// server (an operator's `pause` or `resume`).
pub fn update(
    nats: &Nats,
    subscription: &str,
    change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
) -> Result<(Option<Transition>, Circuit)> {
    for _ in 0..50 {
        let (current, revision) = read(nats, subscription)?;
        let mut next = current.clone();
        let transition = change(&mut next);
        if next == current {
            return Ok((transition, next));
        }
        if swap(nats, subscription, &next, revision)?.is_some() {
            return Ok((transition, next));
        }
    }
    bail!("the breaker state of `{subscription}` kept changing; try again")
}

/// A key's state and revision from the server (0: none stored).
pub fn read(nats: &Nats, subscription: &str) -> Result<(Circuit, u64)> {
    read_within(nats, subscription, None)
}

/// [`read`], asked once and waited for at most `within` when given.
fn read_within(
    nats: &Nats,
    subscription: &str,
    within: Option<Duration>,
) -> Result<(Circuit, u64)> {
    let bucket = nats.bucket()?;
    let once = || {
        nats.runtime
            .call_within(
                "read bucket",
                within.unwrap_or(super::client::CALL_TIMEOUT),
                bucket.entry(subscription),
            )?
            .map_err(|e| {
                anyhow!(
                    "cannot read `{subscription}` from bucket {}: {e}",
                    nats.names.circuits
                )
            })
    };
    let entry = match within {
        Some(_) => once()?,
        None => super::client::retried("read bucket", super::client::passing, once)?,
    };
    match entry.filter(|e| e.operation == kv::Operation::Put) {
        None => Ok((Circuit::default(), 0)),
        Some(e) => Ok((
            decode(subscription, &e.value, &nats.names.circuits)?,
            e.revision,
        )),
    }
}

/// Writes a state if the key's revision is still `revision` (0: absent).
/// `Ok(None)`: someone else wrote first; else the new revision.
fn swap(nats: &Nats, subscription: &str, next: &Circuit, revision: u64) -> Result<Option<u64>> {
    swap_within(nats, subscription, next, revision, None)
}

/// [`swap`], asked once and waited for at most `within` when given.
fn swap_within(
    nats: &Nats,
    subscription: &str,
    next: &Circuit,
    revision: u64,
    within: Option<Duration>,
) -> Result<Option<u64>> {
    let value = bytes::Bytes::from(serde_json::to_vec(next)?);
    let (bucket, name) = (nats.bucket()?, &nats.names.circuits);
    match within {
        None => super::client::compare_and_swap(nats, &bucket, name, subscription, value, revision),
        Some(within) => super::client::compare_and_swap_within(
            nats,
            &bucket,
            name,
            subscription,
            value,
            revision,
            within,
        ),
    }
}

/// Announces a subscription's lane (creates its key, closed) unless it
/// has one: workers watching the bucket start serving it.
pub fn announce(nats: &Nats, subscription: &str) -> Result<()> {
    match swap(nats, subscription, &Circuit::default(), 0)? {
        Some(_) | None => Ok(()),
    }
}
