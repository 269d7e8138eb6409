//! `spec-notify replay`: move dead (or delivered) jobs back to pending with
//! their delivery id kept and attempts reset, log it, then deliver just
//! those jobs right away (unless `--no-drain`). Like `postsuper -r`.
//! `--source nats` acts on the dead stream instead, and the fleet's
//! workers deliver the jobs. The delivery is `crate::store::ops`' (shared
//! with `top`); this file prints.

use std::collections::HashSet;

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::cli::ReplayArgs;
use crate::drain::Summary;
use crate::exit::ExitCode;
use crate::output;
use crate::store::ops::{self, Redelivery};
use crate::store::{Pick, Requeued};

pub fn run(ctx: &Ctx, args: &ReplayArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let store = super::open_store(ctx, &config, args.source, "replay")?;
    let pick = Pick {
        delivery_id: args.delivery_id.clone(),
        subscription: args.subscription.clone(),
        since: args.since,
        until: args.until,
    };
    let replayed = store.replay(&args.spec, &pick, &super::say)?;
    for q in &replayed.quarantined {
        super::warn_quarantined(q);
    }
    // Events emitted while this replay held the SPEC started no drain.
    let hand_over = || super::hand_over(&*store, std::slice::from_ref(&args.spec));
    if replayed.requeued.is_empty() {
        output::note(format_args!(
            "no dead jobs of {} match in {}; nothing replayed",
            args.spec, replayed.place
        ));
        if args.json {
            output::print_json(&json!([]))?;
        }
        hand_over();
        return Ok(ExitCode::Success);
    }
    let ids = replayed.ids();
    for Requeued { meta, from } in &replayed.requeued {
        output::note(format_args!(
            "requeued {} ({}, was {})",
            meta.delivery_id,
            meta.subscription,
            from.dir_name()
        ));
    }
    if args.no_drain {
        return Ok(ExitCode::Success);
    }
    let mut report = super::drain_reporter(false);
    let code = match ops::deliver_requeued(&*store, &args.spec, &ids, &mut report)? {
        Redelivery::Workers => {
            output::note(format_args!(
                "{} job(s) back in {}: the workers (`spec-notify drain --source nats`) deliver them",
                ids.len(),
                store.place(&args.spec)
            ));
            if args.json {
                let rows: Vec<_> = ids
                    .iter()
                    .map(|id| json!({"delivery_id": id, "outcome": "requeued"}))
                    .collect();
                output::print_json(&rows)?;
            }
            return Ok(ExitCode::Success);
        }
        Redelivery::Busy(_) => {
            output::note(format_args!(
                "a running drain serves {}; it delivers the requeued jobs (see `spec-notify list {}`)",
                args.spec, args.spec
            ));
            ExitCode::Success
        }
        Redelivery::Sent {
            summary,
            all_delivered,
        } => report_delivered(&summary, &ids, all_delivered, args.json)?,
    };
    hand_over();
    Ok(code)
}

/// Reports what became of the requeued jobs: exit 0 when all were
/// delivered, 1 when some failed again, 2 when held.
fn report_delivered(
    summary: &Summary,
    ids: &HashSet<String>,
    all_delivered: bool,
    json: bool,
) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for id in ids {
        let outcome = summary.outcomes.get(id).copied();
        rows.push(json!({"delivery_id": id, "outcome": ops::outcome_name(outcome)}));
    }
    if json {
        output::print_json(&rows)?;
    }
    super::report_drain(summary, false)?;
    let code = super::drain_exit_code(summary);
    Ok(match code {
        ExitCode::Success if !all_delivered => ExitCode::Failure,
        other => other,
    })
}
