//! FIFO lines held by a dead job (`ordering = "fifo"`, `fifo_on_dead =
//! "hold"`), as every store shows them: a line (SPEC, subscription) is held
//! while a dead job of it is there, until an operator replays or discards
//! it. Read from the dead jobs through [`Store::jobs`], so `list`, `status`
//! and the other views say the same thing for either backend.

use std::collections::BTreeMap;

use anyhow::Result;

use super::{Listed, Store};
use crate::config::Config;
use crate::spool::State;

/// A held line's first dead job: what to replay or discard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBy {
    pub delivery_id: String,
    pub sequence: u64,
}

/// Held lines by (SPEC, subscription), of `spec` or of every SPEC. Nothing
/// is read when no subscription holds on a dead job.
pub fn held_lines(
    store: &dyn Store,
    config: &Config,
    spec: Option<&str>,
) -> Result<BTreeMap<(String, String), HeldBy>> {
    let holding: Vec<&str> = config
        .every_subscription()
        .map(|(_, s)| s)
        .filter(|s| s.ordering.holds_on_dead())
        .map(|s| s.id.as_str())
        .collect();
    let mut held = BTreeMap::new();
    if holding.is_empty() {
        return Ok(held);
    }
    for item in store.jobs(spec, &[State::Dead])?.items {
        let Listed::Job { meta, .. } = item else {
            continue;
        };
        if !holding.contains(&meta.subscription.as_str()) {
            continue;
        }
        let by = HeldBy {
            delivery_id: meta.delivery_id.clone(),
            sequence: meta.sequence,
        };
        held.entry((meta.spec.clone(), meta.subscription.clone()))
            .and_modify(|b: &mut HeldBy| {
                if by.sequence < b.sequence {
                    *b = by.clone();
                }
            })
            .or_insert(by);
    }
    Ok(held)
}

/// What a held line's waiting jobs say, with the fix.
pub fn held_text(spec: &str, by: &HeldBy) -> String {
    format!(
        "held: FIFO line waits for dead job {id} (fifo_on_dead = \"hold\"); `spec-notify replay {spec} --delivery-id {id}` or `spec-notify discard {spec} --delivery-id {id}`",
        id = by.delivery_id
    )
}
