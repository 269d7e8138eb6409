//! `spec-notify pause` and `resume`: an operator's switch on one
//! subscription, kept in the store's shared subscription state (the spool's
//! circuit files, or with `--source nats` the fleet's breaker bucket) so
//! every drain or worker sees it at once. Pausing never
//! drops anything: emit keeps spooling, jobs wait in pending. Resuming also
//! closes an open circuit. Each change is logged in the evidence of every
//! SPEC that has jobs. The work is `crate::store::ops`' (shared with
//! `top`); this file prints.

use anyhow::Result;

use super::Ctx;
use crate::cli::{PauseArgs, ResumeArgs};
use crate::exit::ExitCode;
use crate::store::ops;
use crate::{clock, output};

pub fn pause(ctx: &Ctx, args: &PauseArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    ops::require_subscription(&config, &args.subscription)?;
    let store = super::open_store(ctx, &config, args.source, "pause")?;
    let waiting = ops::pause(
        &*store,
        &config,
        &args.subscription,
        &args.reason,
        clock::now_ms(),
    )?;
    output::note(format_args!(
        "paused {}: its jobs wait in pending ({waiting} now); `spec-notify resume {}{}` sends them",
        args.subscription,
        args.subscription,
        store.flag()
    ));
    Ok(ExitCode::Success)
}

pub fn resume(ctx: &Ctx, args: &ResumeArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    ops::require_subscription(&config, &args.subscription)?;
    let store = super::open_store(ctx, &config, args.source, "resume")?;
    let Some(waiting) = ops::resume(&*store, &config, &args.subscription, clock::now_ms())? else {
        output::note(format_args!(
            "{} was not paused and its circuit is closed: nothing to do",
            args.subscription
        ));
        return Ok(ExitCode::Success);
    };
    output::note(format_args!(
        "resumed {}: {waiting} waiting jobs go out in order with the next drain",
        args.subscription
    ));
    if waiting > 0 {
        super::hand_over(&*store, &store.specs_with_jobs()?);
    }
    Ok(ExitCode::Success)
}
