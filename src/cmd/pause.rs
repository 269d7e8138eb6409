//! `spec-notify pause` and `resume`: an operator's switch on one
//! subscription, kept in the store's shared subscription state (the spool's
//! circuit files, or with `--source nats` the fleet's breaker bucket) so
//! every drain or worker sees it at once. Pausing never
//! drops anything: emit keeps spooling, jobs wait in pending. Resuming also
//! closes an open circuit. Each change is logged in the evidence of every
//! SPEC that has jobs.

use anyhow::Result;

use super::Ctx;
use crate::circuit::Transition;
use crate::cli::{PauseArgs, ResumeArgs};
use crate::config::Config;
use crate::evidence::Outcome;
use crate::exit::{ExitCode, user_error};
use crate::{clock, output, store};

pub fn pause(ctx: &Ctx, args: &PauseArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    require_subscription(&config, &args.subscription)?;
    let store = super::open_store(ctx, &config, args.source, "pause")?;
    let now = clock::now_ms();
    let (transition, _) = store.update_circuit(&args.subscription, &mut |c| {
        let was = c.paused.clone();
        c.pause(&args.reason, "operator", now);
        // A new reason is a change worth logging too.
        was.is_none_or(|p| p.reason != args.reason)
            .then_some(Transition::Paused {
                reason: args.reason.clone(),
            })
    })?;
    if transition.is_some() {
        store::log_change(
            &*store,
            &config,
            &args.subscription,
            Outcome::SubscriptionPaused,
            &args.reason,
            now,
        )?;
    }
    let waiting = store.waiting(&args.subscription)?;
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
    require_subscription(&config, &args.subscription)?;
    let store = super::open_store(ctx, &config, args.source, "resume")?;
    let now = clock::now_ms();
    let (transition, _) = store.update_circuit(&args.subscription, &mut |c| c.resume())?;
    let Some(Transition::Resumed) = transition else {
        output::note(format_args!(
            "{} was not paused and its circuit is closed: nothing to do",
            args.subscription
        ));
        return Ok(ExitCode::Success);
    };
    store::log_change(
        &*store,
        &config,
        &args.subscription,
        Outcome::SubscriptionResumed,
        "resumed by an operator",
        now,
    )?;
    let waiting = store.waiting(&args.subscription)?;
    output::note(format_args!(
        "resumed {}: {waiting} waiting jobs go out in order with the next drain",
        args.subscription
    ));
    if waiting > 0 {
        super::hand_over(&*store, &store.specs_with_jobs()?);
    }
    Ok(ExitCode::Success)
}

/// An unknown subscription is a typo: exit 2 naming the known ones.
fn require_subscription(config: &Config, id: &str) -> Result<()> {
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
