//! `spec-notify discard`: deletes dead-lettered jobs on purpose, like
//! `postsuper -d`. Only dead jobs qualify; every choice is checked before
//! anything changes, then the SPEC's drain.lock is taken (waiting for a
//! running drain), the files are removed and one `discarded` record per job
//! goes to the attempt log. `--source nats` acts on the dead stream
//! instead. The work is the store's (`crate::store`); this file prints.

use std::io::{self, Write};

use anyhow::Result;

use super::Ctx;
use crate::cli::DiscardArgs;
use crate::exit::ExitCode;
use crate::output;
use crate::spool::Meta;
use crate::store::Pick;

pub fn run(ctx: &Ctx, args: &DiscardArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let store = super::open_store(ctx, &config, args.source, "discard")?;
    let pick = Pick {
        delivery_id: args.delivery_id.clone(),
        subscription: args.subscription.clone(),
        ..Pick::default()
    };
    let discarded = store.discard(&args.spec, &pick, &super::say)?;
    super::warn_unreadable(&discarded.unreadable);
    for q in &discarded.quarantined {
        super::warn_quarantined(q);
    }
    if discarded.is_empty() {
        println!(
            "no dead jobs to discard in {} ({})",
            args.spec, discarded.place
        );
        return Ok(ExitCode::Success);
    }
    for id in &discarded.left {
        output::warn(format_args!(
            "{id} is still being settled by the running drain; left as it is, run discard again"
        ));
    }
    print_discarded(&args.spec, &discarded.removed)?;
    if let Some(error) = discarded.error {
        return Err(error);
    }
    // Events emitted while discard held the SPEC for a moment started no drain.
    super::hand_over(&*store, std::slice::from_ref(&args.spec));
    // Not everything asked for was discarded: a script must not think so.
    Ok(if discarded.left.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

fn print_discarded(spec: &str, chosen: &[Meta]) -> Result<()> {
    let mut out = io::stdout().lock();
    for meta in chosen {
        writeln!(
            out,
            "discarded {}  {}  {}  ({})",
            meta.delivery_id,
            meta.subscription,
            meta.event_type,
            meta.dead_reason.as_deref().unwrap_or("dead")
        )?;
    }
    let noun = if chosen.len() == 1 { "job" } else { "jobs" };
    writeln!(
        out,
        "{} dead {noun} discarded from {spec}; logged in the evidence",
        chosen.len()
    )?;
    Ok(())
}
