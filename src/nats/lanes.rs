//! The pull side of a worker: one task per subscription, each with its own
//! consumer, so one endpoint's jobs never wait behind another's. A task
//! asks its consumer for jobs only while the subscription may send (its
//! circuit closed, or one job when a probe is due) and only for the room
//! the worker has (at most `cap` jobs of the subscription in hand): a
//! paused subscription or one whose circuit is open is not pulled at all,
//! and its jobs stay in the stream for whoever may send them. A pull is a
//! long poll (`drain --watch`: it waits on the server for jobs, no polling
//! loop) or, for a one-shot drain, takes what is there now, so the run can
//! tell that nothing is left. What arrives goes to the inbox, and the bell
//! wakes the engine.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, Message, consumer};
use futures_util::StreamExt;

use super::layout::{Names, consumer_of};
use crate::circuit::{Allow, Circuit};
use crate::clock;

/// How long a `--watch` pull waits on the server for jobs.
const LONG_POLL: Duration = Duration::from_secs(5);
/// Failed pulls in a row before it is reported (and the run exits 1).
const REPORT_AFTER: u32 = 5;

/// Wakes whoever waits for news (the engine's coordinator).
#[derive(Default)]
pub struct Bell {
    rung: Mutex<bool>,
    cond: Condvar,
}

impl Bell {
    pub fn ring(&self) {
        *self.rung.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Waits up to `timeout`; true if it rang (and takes the ring).
    pub fn wait(&self, timeout: Duration) -> bool {
        let rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        let (mut rung, _) = self
            .cond
            .wait_timeout_while(rung, timeout, |r| !*r)
            .unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *rung)
    }
}

/// One subscription's pull state.
#[derive(Debug, Default, Clone, Copy)]
struct LaneState {
    /// Jobs taken from the server and not yet given back or acked.
    in_hand: usize,
    /// The last pull came back short: nothing more was waiting.
    drained: bool,
}

/// What the tasks and the worker share.
pub struct Shared {
    pub inbox: Mutex<Vec<Message>>,
    pub bell: Bell,
    lanes: Mutex<HashMap<String, LaneState>>,
    /// A lane's room grew (a job was settled or given back).
    freed: tokio::sync::Notify,
    /// Errors to report once, at the next refresh.
    pub errors: Mutex<Vec<String>>,
    stop: AtomicBool,
    stopped: tokio::sync::Notify,
}

impl Shared {
    pub fn new() -> Arc<Shared> {
        Arc::new(Shared {
            inbox: Mutex::new(Vec::new()),
            bell: Bell::default(),
            lanes: Mutex::new(HashMap::new()),
            freed: tokio::sync::Notify::new(),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            stopped: tokio::sync::Notify::new(),
        })
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<String, LaneState>> {
        self.lanes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A job of `subscription` left this worker's hands.
    pub fn let_go(&self, subscription: &str) {
        if let Some(lane) = self.lanes().get_mut(subscription) {
            lane.in_hand = lane.in_hand.saturating_sub(1);
        }
        self.freed.notify_waiters();
    }

    fn error(&self, message: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if !errors.contains(&message) {
            errors.push(message);
        }
        drop(errors);
        self.bell.ring();
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stopped.notify_waiters();
        self.bell.ring();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether a lane that may send still has jobs on the server (a
    /// one-shot run goes on while one has).
    pub fn more_to_come(&self, allows: impl Fn(&str) -> bool) -> bool {
        self.lanes()
            .iter()
            .any(|(sub, lane)| !lane.drained && allows(sub))
    }

    pub fn serves(&self, subscription: &str) -> bool {
        self.lanes().contains_key(subscription)
    }
}

/// What a lane task needs to know.
pub struct Lane {
    pub js: jetstream::Context,
    pub names: Names,
    pub subscription: String,
    /// Jobs of this subscription a worker holds at most.
    pub cap: usize,
    pub ack_wait: Duration,
    /// A one-shot run: take what is there, do not wait on the server.
    pub once: bool,
    /// The subscription's state as the bucket watch last saw it.
    pub circuit: Arc<dyn Fn() -> Circuit + Send + Sync>,
    pub circuit_changed: Arc<tokio::sync::Notify>,
}

/// How many jobs to ask for now (0: none), and until when not to look
/// again when none.
fn demand(allow: Allow, in_hand: usize, cap: usize) -> usize {
    match allow {
        // Ask again once half the room is free: few, large pulls.
        Allow::Send if in_hand <= cap / 2 => cap - in_hand,
        Allow::Probe if in_hand == 0 => 1,
        _ => 0,
    }
}

/// Starts serving a subscription's lanes (once per subscription).
pub fn start(shared: &Arc<Shared>, lane: Lane) {
    {
        let mut lanes = shared.lanes();
        if lanes.contains_key(&lane.subscription) {
            return;
        }
        lanes.insert(lane.subscription.clone(), LaneState::default());
    }
    tokio::spawn(serve(Arc::clone(shared), lane));
}

async fn serve(shared: Arc<Shared>, lane: Lane) {
    let sub = lane.subscription.clone();
    let mut consumer: Option<consumer::PullConsumer> = None;
    // Failed pulls in a row: a cluster electing a leader answers "no
    // responders" for a moment, which is said only if it lasts.
    let mut failures: u32 = 0;
    let failed = |failures: &mut u32, message: String| {
        *failures += 1;
        if *failures == REPORT_AFTER {
            shared.error(format!(
                "{message} ({REPORT_AFTER} tries in a row; still trying)"
            ));
        }
        Duration::from_millis(100 * u64::from((*failures).min(10)))
    };
    while !shared.stopping() {
        // Armed before the state is read: a change from here on wakes us.
        let changed = lane.circuit_changed.notified();
        let freed = shared.freed.notified();
        tokio::pin!(changed, freed);
        changed.as_mut().enable();
        freed.as_mut().enable();
        let circuit = (lane.circuit)();
        let now = clock::now_ms();
        let allow = circuit.allows(now);
        let in_hand = shared.lanes().get(&sub).map_or(0, |l| l.in_hand);
        let want = demand(allow, in_hand, lane.cap);
        if want == 0 {
            if let Allow::Wait(_) = allow
                && let Some(state) = shared.lanes().get_mut(&sub)
            {
                // Gated: nothing here holds a one-shot run.
                state.drained = true;
            }
            let until = match allow {
                Allow::Wait(Some(at)) => Duration::from_millis(at.saturating_sub(now)),
                _ => Duration::from_secs(1),
            }
            .clamp(Duration::from_millis(1), Duration::from_secs(1));
            tokio::select! {
                _ = changed => {}
                _ = freed => {}
                _ = shared.stopped.notified() => {}
                _ = tokio::time::sleep(until) => {}
            }
            continue;
        }
        let pull = match &consumer {
            Some(c) => c.clone(),
            None => match consumer_of(&lane.js, &lane.names, &sub, lane.ack_wait).await {
                Ok(c) => {
                    consumer = Some(c.clone());
                    c
                }
                Err(e) => {
                    let pause = failed(&mut failures, format!("{e:#}"));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            },
        };
        let batch = if lane.once {
            pull.fetch().max_messages(want).messages().await
        } else {
            pull.batch()
                .max_messages(want)
                .expires(LONG_POLL)
                .messages()
                .await
        };
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                let pause = failed(
                    &mut failures,
                    format!(
                        "cannot pull jobs of `{sub}` from consumer {}: {e}",
                        lane.names.consumer(&sub)
                    ),
                );
                consumer = None;
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let mut got = 0;
        let mut errored = None;
        loop {
            let next = tokio::select! {
                next = batch.next() => next,
                // A pause or an opened circuit: stop asking at once (the
                // server forgets a pull nobody listens to).
                _ = lane.circuit_changed.notified() => {
                    if matches!((lane.circuit)().allows(clock::now_ms()), Allow::Wait(_)) {
                        break;
                    }
                    continue;
                }
                _ = shared.stopped.notified() => break,
            };
            match next {
                Some(Ok(message)) => {
                    got += 1;
                    if let Some(state) = shared.lanes().get_mut(&sub) {
                        state.in_hand += 1;
                        state.drained = false;
                    }
                    shared
                        .inbox
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(message);
                    shared.bell.ring();
                }
                Some(Err(e)) => {
                    let text = e.to_string();
                    // A pull the server let lapse is no error.
                    if !text.contains("408") && !text.contains("timeout") {
                        errored = Some(format!("cannot pull jobs of `{sub}`: {text}"));
                    }
                    break;
                }
                None => break,
            }
        }
        if let Some(message) = errored {
            let pause = failed(&mut failures, message);
            tokio::time::sleep(pause).await;
            continue;
        }
        failures = 0;
        if got < want
            && let Some(state) = shared.lanes().get_mut(&sub)
        {
            // Asked for more than there was: drained for now.
            state.drained = true;
            if lane.once {
                shared.bell.ring();
            }
        }
        if lane.once && got < want {
            // Nothing more now: look again in a while (a one-shot run
            // ends before then unless jobs are still moving).
            tokio::select! {
                _ = shared.freed.notified() => {}
                _ = shared.stopped.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_asks_only_for_room_and_only_while_the_gate_is_open() {
        assert_eq!(demand(Allow::Send, 0, 16), 16);
        assert_eq!(demand(Allow::Send, 8, 16), 8);
        assert_eq!(demand(Allow::Send, 9, 16), 0, "wait for half the room");
        assert_eq!(demand(Allow::Probe, 0, 16), 1, "one job to probe with");
        assert_eq!(demand(Allow::Probe, 1, 16), 0);
        assert_eq!(demand(Allow::Wait(None), 0, 16), 0, "paused: not pulled");
        assert_eq!(demand(Allow::Wait(Some(5)), 0, 16), 0, "open: not pulled");
    }

    #[test]
    fn the_bell_wakes_a_waiter_once() {
        let bell = Arc::new(Bell::default());
        assert!(!bell.wait(Duration::from_millis(1)));
        bell.ring();
        assert!(bell.wait(Duration::from_secs(10)));
        assert!(!bell.wait(Duration::from_millis(1)), "the ring was taken");
    }
}
