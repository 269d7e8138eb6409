//! FIFO lanes held by a dead job (`ordering = "fifo"`, `fifo_on_dead =
//! "hold"`) on this host's spool: a lane (SPEC, subscription) is held while
//! a dead job of it is there, until an operator replays or discards it
//! ([`held_lanes`], behind `Store::held_lanes` for the local spool; NATS
//! keeps the hold in its lane bucket). [`held_text`] is what a waiting
//! job of a held lane says in `list`.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{HeldLane, Listed, Store};
use crate::config::Config;
use crate::spool::State;

/// Held lanes of every SPEC, sorted by SPEC and subscription, each with its
/// earliest dead job. Nothing is read when no subscription holds on a dead
/// job.
pub fn held_lanes(store: &dyn Store, config: &Config) -> Result<Vec<HeldLane>> {
    let holding: Vec<&str> = config
        .every_subscription()
        .map(|(_, s)| s)
        .filter(|s| s.ordering.holds_on_dead())
        .map(|s| s.id.as_str())
        .collect();
    if holding.is_empty() {
        return Ok(Vec::new());
    }
    let mut first: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
    for item in store.jobs(None, &[State::Dead])?.items {
        let Listed::Job { meta, .. } = item else {
            continue;
        };
        if !holding.contains(&meta.subscription.as_str()) {
            continue;
        }
        let by = (meta.sequence, meta.delivery_id.clone());
        first
            .entry((meta.spec.clone(), meta.subscription.clone()))
            .and_modify(|b| *b = b.clone().min(by.clone()))
            .or_insert(by);
    }
    Ok(first
        .into_iter()
        .map(|((spec, subscription), (_, delivery_id))| HeldLane {
            subscription,
            spec,
            delivery_id,
        })
        .collect())
}

/// What a waiting job of a held lane says, with the fix (`flag`: what the
/// commands need to reach the same store, ` --source nats`).
pub fn held_text(lane: &HeldLane, flag: &str) -> String {
    format!(
        "held: FIFO lane waits for dead job {id} (fifo_on_dead = \"hold\"); `spec-notify replay {spec} --delivery-id {id}{flag}` or `spec-notify discard {spec} --delivery-id {id}{flag}`",
        id = lane.delivery_id,
        spec = lane.spec
    )
}
