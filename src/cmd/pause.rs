//! `spec-notify pause` and `resume`: an operator's switch on one
//! subscription, kept in the spool's shared subscription state so every
//! drain sees it at its next look (within milliseconds). Pausing never
//! drops anything: emit keeps spooling, jobs wait in pending. Resuming also
//! closes an open circuit. Each change is logged in the evidence of every
//! SPEC that has jobs.

use anyhow::Result;

use super::Ctx;
use crate::circuit::Transition;
use crate::cli::{PauseArgs, ResumeArgs};
use crate::clock;
use crate::config::Config;
use crate::evidence::{Outcome, Record};
use crate::exit::{ExitCode, user_error};
use crate::output;
use crate::spool::Spool;

pub fn pause(ctx: &Ctx, args: &PauseArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    require_subscription(&config, &args.subscription)?;
    let now = clock::now_ms();
    let spool = Spool::new(&config.spool_dir);
    let (changed, _) = spool.update_circuit(&args.subscription, |c| {
        let was = c.paused.clone();
        c.pause(&args.reason, "operator", now);
        was.is_none_or(|p| p.reason != args.reason)
    })?;
    if changed {
        log(
            &config,
            &spool,
            &args.subscription,
            Outcome::SubscriptionPaused,
            &args.reason,
            now,
        )?;
    }
    let waiting = waiting_jobs(&spool, &args.subscription)?;
    output::note(format_args!(
        "paused {}: its jobs wait in pending ({waiting} now); `spec-notify resume {}` sends them",
        args.subscription, args.subscription
    ));
    Ok(ExitCode::Success)
}

pub fn resume(ctx: &Ctx, args: &ResumeArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    require_subscription(&config, &args.subscription)?;
    let now = clock::now_ms();
    let spool = Spool::new(&config.spool_dir);
    let (transition, _) = spool.update_circuit(&args.subscription, |c| c.resume())?;
    let Some(Transition::Resumed) = transition else {
        output::note(format_args!(
            "{} was not paused and its circuit is closed: nothing to do",
            args.subscription
        ));
        return Ok(ExitCode::Success);
    };
    log(
        &config,
        &spool,
        &args.subscription,
        Outcome::SubscriptionResumed,
        "resumed by an operator",
        now,
    )?;
    let waiting = waiting_jobs(&spool, &args.subscription)?;
    output::note(format_args!(
        "resumed {}: {waiting} waiting jobs go out in order with the next drain",
        args.subscription
    ));
    if waiting > 0 && config.auto_drain {
        let specs = spool.specs()?;
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        for warning in crate::kick::start_drains(&config, &specs, ctx.config.as_deref()) {
            output::warn(warning);
        }
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

fn waiting_jobs(spool: &Spool, subscription: &str) -> Result<usize> {
    let mut n = 0;
    for spec in spool.specs()? {
        let scan = spool.spec(&spec).scan(crate::spool::State::Pending)?;
        n += scan
            .entries
            .iter()
            .filter(|e| e.meta.subscription == subscription)
            .count();
    }
    Ok(n)
}

/// One evidence line per SPEC with a spool: the history of each SPEC shows
/// when its notifications were held back and why.
fn log(
    config: &Config,
    spool: &Spool,
    subscription: &str,
    outcome: Outcome,
    why: &str,
    now: u64,
) -> Result<()> {
    let url = super::logged_url(config, subscription);
    for spec in spool.specs()? {
        let record = Record {
            ts: clock::rfc3339(now),
            ts_ms: now,
            delivery_id: String::new(),
            spec: spec.clone(),
            subscription: subscription.to_string(),
            event_type: String::new(),
            attempt: 0,
            url: url.clone(),
            status: None,
            error: Some(why.to_string()),
            latency_ms: None,
            outcome,
            response_body: None,
            next_attempt_at: None,
            request: None,
        };
        super::evidence(config, &spec).append(&[record])?;
    }
    Ok(())
}
