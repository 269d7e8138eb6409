//! What lets a subscription's jobs go out, or holds them — its circuit, a
//! pause, an unset secret — and whether jobs have stalled because nothing
//! runs to deliver them. Computed from a [`Snapshot`] for `status` (which
//! exits 1 on them) and `top` (whose banner shows them). Pure: time is the
//! snapshot's.

use std::time::Duration;

use super::{Health, Snapshot, SubscriptionHealth};
use crate::circuit::{Allow, Circuit};
use crate::clock;
use crate::config::Config;

/// One configured subscription's gate.
#[derive(Debug, Clone)]
pub struct Gate {
    pub id: String,
    pub circuit: Circuit,
    pub health: Health,
    /// The secret's problem, when the subscription needs one and it is unset.
    pub secret_problem: Option<String>,
    /// Pending jobs of this subscription across the SPECs read.
    pub waiting: usize,
    /// Jobs have been due for a while and nothing was attempted for as
    /// long: what to say about it.
    pub stalled: Option<String>,
}

impl Gate {
    /// `paused`, `open` or `closed`.
    pub fn state(&self) -> &'static str {
        circuit_state(&self.circuit)
    }

    /// An open circuit, a pause or a stall needs a person; an unset secret
    /// is a warning (emit already warned, and the jobs are safe).
    pub fn needs_attention(&self) -> bool {
        self.state() != "closed" || self.stalled.is_some()
    }
}

/// A circuit as one word: `paused`, `open` or `closed`.
pub fn circuit_state(circuit: &Circuit) -> &'static str {
    if circuit.paused.is_some() {
        "paused"
    } else if circuit.is_open() {
        "open"
    } else {
        "closed"
    }
}

/// The gate of every configured subscription, in config order. `flag` is
/// the store's (`--source nats` or empty), for the stall's advice.
pub fn gates(
    config: &Config,
    snapshot: &Snapshot,
    stalled_after: Duration,
    flag: &str,
) -> Vec<Gate> {
    config
        .subscriptions
        .iter()
        .map(|sub| {
            let seen = snapshot.subscription(&sub.id);
            let secret_problem = sub
                .needs_secret()
                .then(|| sub.missing_signing_variable())
                .flatten();
            let circuit = seen.map(|s| s.circuit.clone()).unwrap_or_default();
            let stalled = match (seen, &secret_problem, circuit.allows(snapshot.now_ms)) {
                (Some(s), None, Allow::Send | Allow::Probe) => {
                    stall(s, snapshot.now_ms, stalled_after, flag)
                }
                _ => None,
            };
            Gate {
                id: sub.id.clone(),
                circuit,
                health: seen.map_or(Health::Ok, |s| s.health),
                secret_problem,
                waiting: seen.map_or(0, |s| s.counts.pending),
                stalled,
            }
        })
        .collect()
}

/// Whether a subscription that may send has had a job due for longer than
/// `after` with no attempt for as long: no drain (or worker) is running.
pub fn stall(s: &SubscriptionHealth, now: u64, after: Duration, flag: &str) -> Option<String> {
    let after = after.as_millis() as u64;
    let due_since = s.oldest_due_ms?;
    let last_moved = s.stats.last_success_ms.max(s.stats.last_failure_ms);
    let quiet = last_moved.is_none_or(|t| now.saturating_sub(t) >= after);
    if now.saturating_sub(due_since) < after || !quiet {
        return None;
    }
    let runner = match flag {
        "" => "`spec-notify drain --watch` (or cron `spec-notify drain`)",
        _ => "workers: `spec-notify drain --source nats --watch`",
    };
    Some(format!(
        "{} job(s) of {} wait, the oldest due for {}, and nothing was attempted for {}: is a drain running? start {runner}",
        s.counts.pending,
        s.subscription,
        clock::age(now, due_since),
        last_moved.map_or("ever".to_string(), |t| clock::age(now, t)),
    ))
}
