//! The operator's actions that more than one front end performs — the
//! commands (`pause`, `resume`, `replay`) and the live view (`top`) — written
//! once here on top of [`Store`], so that each leaves the same evidence and
//! the same state whoever asked. They return what happened as values; the
//! caller says it.

use std::collections::HashSet;

use anyhow::Result;

use super::{Discarded, Replayed, Store};
use crate::circuit::Transition;
use crate::config::Config;
use crate::drain::{Event, Summary};
use crate::evidence::Outcome;
use crate::exit::user_error;

/// The reason `pause` records when the operator gives none.
pub const PAUSE_REASON: &str = "paused by an operator";

/// An unknown subscription is a typo: exit 2 naming the known ones.
pub fn require_subscription(config: &Config, id: &str) -> Result<()> {
    if config.knows(id) {
        return Ok(());
    }
    let known: Vec<&str> = config.subscriptions.iter().map(|s| s.id.as_str()).collect();
    Err(user_error(format!(
        "no subscription `{id}` in `{}`; known: {}",
        config.path.display(),
        if known.is_empty() {
            "none".to_string()
        } else {
            known.join(", ")
        }
    )))
}

/// Pauses `subscription` for every drain or worker of the store, logging
/// the change (a new reason is a change too) in every SPEC with jobs.
/// Returns how many of its jobs wait now.
pub fn pause(
    store: &dyn Store,
    config: &Config,
    subscription: &str,
    reason: &str,
    now: u64,
) -> Result<usize> {
    let (transition, _) = store.update_circuit(subscription, &mut |c| {
        let was = c.paused.clone();
        c.pause(reason, "operator", now);
        // A new reason is a change worth logging too.
        was.is_none_or(|p| p.reason != reason)
            .then(|| Transition::Paused {
                reason: reason.to_string(),
            })
    })?;
    if transition.is_some() {
        super::log_change(
            store,
            config,
            subscription,
            Outcome::SubscriptionPaused,
            reason,
            now,
        )?;
    }
    store.waiting(subscription)
}

/// Resumes `subscription` (which also closes an open circuit), logging it.
/// Returns how many of its jobs wait to go out, or `None` when it was
/// neither paused nor open: nothing was changed.
pub fn resume(
    store: &dyn Store,
    config: &Config,
    subscription: &str,
    now: u64,
) -> Result<Option<usize>> {
    let (transition, _) = store.update_circuit(subscription, &mut |c| c.resume())?;
    let Some(Transition::Resumed) = transition else {
        return Ok(None);
    };
    super::log_change(
        store,
        config,
        subscription,
        Outcome::SubscriptionResumed,
        "resumed by an operator",
        now,
    )?;
    store.waiting(subscription).map(Some)
}

impl Replayed {
    /// The delivery ids put back.
    pub fn ids(&self) -> HashSet<String> {
        self.requeued
            .iter()
            .map(|r| r.meta.delivery_id.clone())
            .collect()
    }
}

impl Discarded {
    /// Nothing matched: no job removed, none left, no failure.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.left.is_empty() && self.error.is_none()
    }
}

/// What became of replayed jobs handed to [`deliver_requeued`].
#[derive(Debug)]
pub enum Redelivery {
    /// The fleet's workers deliver them (nothing was sent here).
    Workers,
    /// A running drain serves the SPEC: it delivers them.
    Busy(Summary),
    /// Sent now; `all_delivered` when each one was delivered (or dry-run).
    Sent {
        summary: Summary,
        all_delivered: bool,
    },
}

/// Delivers the jobs a replay requeued, right away where the store can
/// (this host's spool), reporting the drain's events to `report`.
pub fn deliver_requeued(
    store: &dyn Store,
    spec: &str,
    ids: &HashSet<String>,
    report: &mut (dyn FnMut(&Event) + Send),
) -> Result<Redelivery> {
    let Some(summary) = store.deliver_now(spec, ids.clone(), report)? else {
        return Ok(Redelivery::Workers);
    };
    if summary.busy.iter().any(|s| s == spec) {
        return Ok(Redelivery::Busy(summary));
    }
    let all_delivered = ids.iter().all(|id| {
        summary
            .outcomes
            .get(id)
            .is_some_and(|o| matches!(o, Outcome::Delivered | Outcome::DryRun))
    });
    Ok(Redelivery::Sent {
        summary,
        all_delivered,
    })
}

/// A replayed job's fate in words: `delivered`, `retrying`, `dead`, …
pub fn outcome_name(outcome: Option<Outcome>) -> &'static str {
    match outcome {
        None => "not attempted",
        Some(Outcome::Retry) => "retrying",
        Some(other) => other.name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_job_is_retrying_not_retry() {
        assert_eq!(outcome_name(Some(Outcome::Retry)), "retrying");
        assert_eq!(outcome_name(Some(Outcome::Delivered)), "delivered");
        assert_eq!(outcome_name(None), "not attempted");
    }
}
