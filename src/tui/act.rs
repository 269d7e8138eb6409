//! What `top`'s keys do to the store: [`perform`] carries out one change
//! with the same calls as the commands (`replay`, `discard`, `pause`,
//! `resume`: `Store::replay` and `crate::store::ops`), so it leaves the same
//! evidence and hands jobs over to a drain the same way; what the command
//! would print comes back as a [`Report`] for the status line.

use std::collections::HashSet;
use std::sync::Mutex;

use anyhow::Result;

use super::state::{Effect, Report};
use crate::clock;
use crate::config::Config;
use crate::drain::Event;
use crate::store::ops::{self, Redelivery};
use crate::store::{Pick, Store};

/// Carries out `effect` (a change, not [`Effect::LoadJob`]).
pub fn perform(store: &dyn Store, config: &Config, effect: &Effect) -> Report {
    let notes = Mutex::new(Vec::new());
    let say = |args: std::fmt::Arguments<'_>| {
        notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(args.to_string());
    };
    let done = match effect {
        Effect::Pause { subscription } => pause(store, config, subscription),
        Effect::Resume { subscription } => resume(store, config, subscription),
        Effect::Replay {
            spec,
            subscription,
            delivery_id,
        } => replay(store, spec, &pick(subscription, delivery_id), &say),
        Effect::Discard {
            spec,
            subscription,
            delivery_id,
        } => discard(store, spec, &pick(subscription, delivery_id), &say),
        Effect::LoadJob { .. } => Ok(Report::default()),
    };
    let mut report = done.unwrap_or_else(|error| Report {
        lines: vec![format!("{error:#}")],
        failed: true,
    });
    let mut notes = notes.into_inner().unwrap_or_else(|e| e.into_inner());
    notes.append(&mut report.lines);
    report.lines = notes;
    report
}

/// One dead job by id, or every dead job of the subscription (the row).
fn pick(subscription: &str, delivery_id: &Option<String>) -> Pick {
    match delivery_id {
        Some(id) => Pick {
            delivery_id: Some(id.clone()),
            ..Pick::default()
        },
        None => Pick {
            subscription: Some(subscription.to_string()),
            ..Pick::default()
        },
    }
}

fn ok(lines: Vec<String>) -> Result<Report> {
    Ok(Report {
        lines,
        failed: false,
    })
}

fn pause(store: &dyn Store, config: &Config, subscription: &str) -> Result<Report> {
    ops::require_subscription(config, subscription)?;
    let waiting = ops::pause(
        store,
        config,
        subscription,
        ops::PAUSE_REASON,
        clock::now_ms(),
    )?;
    ok(vec![format!(
        "paused {subscription} (every SPEC): its jobs wait in pending ({waiting} now); p resumes"
    )])
}

fn resume(store: &dyn Store, config: &Config, subscription: &str) -> Result<Report> {
    ops::require_subscription(config, subscription)?;
    let Some(waiting) = ops::resume(store, config, subscription, clock::now_ms())? else {
        return ok(vec![format!(
            "{subscription} was not paused and its circuit is closed: nothing to do"
        )]);
    };
    let mut lines = vec![format!(
        "resumed {subscription}: {waiting} waiting jobs go out in order with the next drain"
    )];
    if waiting > 0 {
        lines.extend(store.hand_over(&store.specs_with_jobs()?));
    }
    ok(lines)
}

fn replay(
    store: &dyn Store,
    spec: &str,
    pick: &Pick,
    say: crate::store::Say<'_>,
) -> Result<Report> {
    let replayed = store.replay(spec, pick, say)?;
    let mut lines: Vec<String> = replayed
        .quarantined
        .iter()
        .map(|q| format!("quarantined `{}` ({})", q.from.display(), q.reason))
        .collect();
    let hand_over = |lines: &mut Vec<String>| lines.extend(store.hand_over(&[spec.to_string()]));
    if replayed.requeued.is_empty() {
        lines.push(format!(
            "no dead jobs of {spec} match in {}; nothing replayed",
            replayed.place
        ));
        hand_over(&mut lines);
        return ok(lines);
    }
    let ids = replayed.ids();
    let mut events = Vec::new();
    let mut report = |event: &Event| {
        if let Some(line) = event_line(event) {
            events.push(line);
        }
    };
    let redelivery = ops::deliver_requeued(store, spec, &ids, &mut report)?;
    let failed = match &redelivery {
        Redelivery::Sent { all_delivered, .. } => !all_delivered,
        _ => false,
    };
    lines.push(redelivered(&redelivery, spec, &ids, store));
    lines.extend(events);
    if !matches!(redelivery, Redelivery::Workers) {
        hand_over(&mut lines);
    }
    Ok(Report { lines, failed })
}

/// What became of replayed jobs, in one line.
fn redelivered(
    redelivery: &Redelivery,
    spec: &str,
    ids: &HashSet<String>,
    store: &dyn Store,
) -> String {
    match redelivery {
        Redelivery::Workers => format!(
            "replayed {}: back in {}, the workers deliver them",
            ids.len(),
            store.place(spec)
        ),
        Redelivery::Busy(_) => format!(
            "replayed {}: a running drain serves {spec} and delivers them",
            ids.len()
        ),
        Redelivery::Sent { summary, .. } => {
            let mut fates: Vec<String> = ids
                .iter()
                .map(|id| ops::outcome_name(summary.outcomes.get(id).copied()).to_string())
                .collect();
            fates.sort();
            let mut counted: Vec<(String, usize)> = Vec::new();
            for fate in fates {
                match counted.last_mut() {
                    Some((last, n)) if *last == fate => *n += 1,
                    _ => counted.push((fate, 1)),
                }
            }
            let counted: Vec<String> = counted.iter().map(|(f, n)| format!("{n} {f}")).collect();
            let mut line = format!("replayed {}: {}", ids.len(), counted.join(", "));
            for problem in summary.problems.iter().chain(&summary.errors) {
                line.push_str(&format!("; {problem}"));
            }
            line
        }
    }
}

/// The drain's events worth a line while a replay delivers.
fn event_line(event: &Event) -> Option<String> {
    match event {
        Event::Dead {
            delivery_id,
            reason,
            hint,
            ..
        } => Some(format!("dead-lettered {delivery_id} ({reason}): {hint}")),
        Event::Circuit {
            subscription,
            transition,
            ..
        } => Some(format!(
            "subscription {subscription}: {}",
            transition.name()
        )),
        Event::Error(e) => Some(e.to_string()),
        _ => None,
    }
}

fn discard(
    store: &dyn Store,
    spec: &str,
    pick: &Pick,
    say: crate::store::Say<'_>,
) -> Result<Report> {
    let discarded = store.discard(spec, pick, say)?;
    let mut lines = Vec::new();
    if discarded.is_empty() {
        lines.push(format!(
            "no dead jobs to discard in {spec} ({})",
            discarded.place
        ));
        return ok(lines);
    }
    for id in &discarded.left {
        lines.push(format!(
            "{id} is still being settled by the running drain; left as it is, discard it again"
        ));
    }
    lines.push(format!(
        "{} dead job(s) discarded from {spec}; logged in the evidence",
        discarded.removed.len()
    ));
    if let Some(error) = discarded.error {
        return Err(error.context(lines.join("; ")));
    }
    lines.extend(store.hand_over(&[spec.to_string()]));
    Ok(Report {
        failed: !discarded.left.is_empty(),
        lines,
    })
}
