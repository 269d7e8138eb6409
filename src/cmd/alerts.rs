//! `spec-notify alerts`: the alerts firing now, as the drains (and
//! `status`) last evaluated them, read from the store's shared alert state
//! (never evaluated here): one row per alert with what it is about, then
//! its summary and the command that fixes it. Exit 1 while any alert
//! fires, so a script can raise a banner. `alerts test RULE` sends a sample
//! alert, marked as a test, through the rule's routes right now: spooled
//! for its `to` subscription and delivered at once (the fleet's workers
//! deliver it with `--source nats`), and its `command` run.

use std::io::{BufWriter, Write};

use anyhow::{Context, Result};
use serde_json::json;

use super::Ctx;
use crate::alerts::{Firing, message};
use crate::cli::{AlertsAction, AlertsArgs, AlertsTestArgs};
use crate::config::{ALERTS_SPEC, Config};
use crate::evidence::Outcome;
use crate::exit::{ExitCode, user_error};
use crate::{clock, output, store};

pub fn run(ctx: &Ctx, args: &AlertsArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    match &args.action {
        Some(AlertsAction::Test(test)) => send_test(ctx, &config, test),
        None => list(ctx, &config, args),
    }
}

fn list(ctx: &Ctx, config: &Config, args: &AlertsArgs) -> Result<ExitCode> {
    if config.alerts.is_empty() {
        output::note(format_args!(
            "`{}` has no [[spec_ops.webhooks.alerts]] rules: nothing is watched (see the README's Alerts section)",
            config.path.display()
        ));
        if args.json {
            output::print_json(&json!({"rules": 0, "firing": []}))?;
        }
        return Ok(ExitCode::Success);
    }
    let store = super::open_store(ctx, config, args.source, "alerts")?;
    let state = store.alert_state()?;
    let rules: Vec<String> = config.alerts.iter().map(|r| r.id.clone()).collect();
    let firing: Vec<&Firing> = state.firing_for(&rules).collect();
    if args.json {
        output::print_json(&json!({
            "source": store.name(),
            "rules": rules.len(),
            "evaluated_at": state.evaluated_at_ms.map(clock::rfc3339),
            "evaluated_by": state.evaluated_by,
            "firing": firing.iter().map(|f| message::firing_json(f)).collect::<Vec<_>>(),
            "unsent": state.outbox.len(),
            "dropped": state.dropped,
        }))?;
    } else {
        print(&firing, &state, store.flag())?;
    }
    Ok(match firing.is_empty() {
        true => ExitCode::Success,
        false => ExitCode::Failure,
    })
}

fn print(firing: &[&Firing], state: &crate::alerts::AlertState, flag: &str) -> Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let now = clock::now_ms();
    match state.evaluated_at_ms {
        None => writeln!(
            out,
            "never evaluated yet: drains (`spec-notify drain{flag}`) and `spec-notify status{flag}` evaluate the rules"
        )?,
        Some(at) => writeln!(
            out,
            "evaluated {} ago ({}) by {}",
            clock::age(now, at),
            clock::rfc3339(at),
            state.evaluated_by.as_deref().unwrap_or("?")
        )?,
    }
    if firing.is_empty() {
        writeln!(out, "no alert is firing")?;
    } else {
        writeln!(out)?;
        let rows: Vec<Vec<String>> = firing
            .iter()
            .map(|f| {
                vec![
                    f.rule.clone(),
                    f.subscription.clone().unwrap_or_else(|| "(spool)".into()),
                    f.condition.name().into(),
                    format!("{} ago", clock::age(now, f.since_ms)),
                    f.detail.count.to_string(),
                    f.detail.summary.clone(),
                ]
            })
            .collect();
        output::table_wrapped(
            &mut out,
            &[
                "RULE",
                "SUBSCRIPTION",
                "CONDITION",
                "SINCE",
                "COUNT",
                "SUMMARY",
            ],
            &rows,
            output::terminal_width(),
        )?;
        writeln!(out)?;
        for f in firing {
            let about = f.subscription.as_deref().unwrap_or("the spool");
            writeln!(
                out,
                "{} {} on {about}: {}",
                output::paint("fix:", "33"),
                f.condition.name(),
                output::one_line(&f.detail.command)
            )?;
        }
    }
    if !state.outbox.is_empty() {
        writeln!(
            out,
            "{} notification(s) decided but not handed over yet: the next evaluation sends them",
            state.outbox.len()
        )?;
    }
    if state.dropped > 0 {
        writeln!(
            out,
            "{} notification(s) were dropped from a full outbox (their routes failed for long)",
            state.dropped
        )?;
    }
    out.flush().context("failed to write to stdout")
}

fn send_test(ctx: &Ctx, config: &Config, args: &AlertsTestArgs) -> Result<ExitCode> {
    let Some(rule) = config.alerts.iter().find(|r| r.id == args.rule) else {
        let known: Vec<&str> = config.alerts.iter().map(|r| r.id.as_str()).collect();
        return Err(user_error(format!(
            "no alert rule `{}` in `{}`; rules: {}",
            args.rule,
            config.path.display(),
            match known.is_empty() {
                true => "none (add a [[spec_ops.webhooks.alerts]] table)".to_string(),
                false => known.join(", "),
            }
        )));
    };
    let store = super::open_store(ctx, config, args.source, "alerts test")?;
    let sent = store::alerts::send_sample(&*store, config, rule);
    let mut failed = !sent.problems.is_empty();
    for problem in &sent.problems {
        output::warn(problem);
    }
    let Some(sample) = sent.sent.first() else {
        return Ok(ExitCode::Failure);
    };
    if let Some(to) = &sample.to {
        output::note(format_args!("sample alert {}: {to}", sample.notice.id));
    }
    if !sent.spooled.is_empty() {
        let mut report = super::drain_reporter(ctx.verbose);
        match store.deliver_now(ALERTS_SPEC, sent.spooled.clone(), &mut report)? {
            Some(summary) => {
                let outcome = summary.outcomes.get(&sample.notice.id).copied();
                match outcome {
                    Some(Outcome::Delivered) => output::note(format_args!(
                        "delivered to {}",
                        rule.to.as_deref().unwrap_or("?")
                    )),
                    Some(Outcome::DryRun) => output::note(format_args!(
                        "{} is dry-run: logged in the evidence, not sent",
                        rule.to.as_deref().unwrap_or("?")
                    )),
                    other => {
                        failed = true;
                        output::warn(format_args!(
                            "not delivered to {} ({}): see `spec-notify list {ALERTS_SPEC}` and `spec-notify history {ALERTS_SPEC}`",
                            rule.to.as_deref().unwrap_or("?"),
                            other.map_or("not attempted", Outcome::name)
                        ));
                    }
                }
            }
            None => output::note(format_args!(
                "published for the fleet's workers (`spec-notify list {ALERTS_SPEC} --source nats` shows it)"
            )),
        }
    }
    if let Some(ran) = &sample.command {
        let program = rule.command.first().map_or("?", String::as_str);
        match ran.ok() {
            true => output::note(format_args!("command `{program}`: {}", ran.describe())),
            false => failed = true, // said in the problems above
        }
    }
    Ok(match failed {
        true => ExitCode::Failure,
        false => ExitCode::Success,
    })
}
