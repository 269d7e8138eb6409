//! `spec-notify subscriptions list|add|set|remove|enable|disable`: manage
//! subscriptions without hand-editing config.toml. Edits go through
//! `config::edit` (comments and layout kept, locked, validated by `check`'s
//! rules, written atomically; an invalid change exits 2 and writes nothing).
//! After a change it says what happens to jobs already spooled: jobs of a
//! subscription that is gone are dead-lettered by the next drain as
//! `subscription-removed`, jobs of a disabled one wait. `add --test` sends a
//! signed test event right away, logged in the SPEC's evidence.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use toml_edit::Value;

use super::Ctx;
use crate::cli::{
    SubscriptionAddArgs, SubscriptionSetArgs, SubscriptionTargetArgs, SubscriptionsAction,
    SubscriptionsArgs, SubscriptionsListArgs,
};
use crate::clock;
use crate::config::edit::{self, Applied, Change};
use crate::config::{self, Config, Subscription};
use crate::deliver::{self, AttemptId};
use crate::envelope;
use crate::evidence::{Outcome, Record, excerpt};
use crate::exit::{ExitCode, user_error};
use crate::output;
use crate::spool::{Meta, Spool, State};

/// The SPEC a test event of `add --test` is for, unless `--spec` names one.
const TEST_SPEC: &str = "spec-notify-test";

pub fn run(ctx: &Ctx, args: &SubscriptionsArgs) -> Result<ExitCode> {
    match &args.action {
        SubscriptionsAction::List(a) => list(ctx, a),
        SubscriptionsAction::Add(a) => add(ctx, a),
        SubscriptionsAction::Set(a) => set(ctx, a),
        SubscriptionsAction::Remove(a) => change_then(
            ctx,
            Change::Remove {
                id: a.id.clone(),
                spec: a.spec.clone(),
            },
            a,
            "removed",
        ),
        SubscriptionsAction::Enable(a) => active(ctx, a, true),
        SubscriptionsAction::Disable(a) => active(ctx, a, false),
    }
}

fn list(ctx: &Ctx, args: &SubscriptionsListArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    // Each pattern's tables, by subscription id.
    let mut overrides: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for scope in &config.specs {
        for sub in &scope.subscriptions {
            if sub.overrides.last().map(String::as_str) == Some(scope.pattern.as_str()) {
                overrides.entry(&sub.id).or_default().push(&scope.pattern);
            }
        }
    }
    let mut rows: Vec<(&Subscription, String)> = config
        .subscriptions
        .iter()
        .map(|s| (s, "every SPEC".to_string()))
        .collect();
    for scope in &config.specs {
        for sub in &scope.subscriptions {
            let own = sub.overrides.last().map(String::as_str) == Some(scope.pattern.as_str());
            if own && config.subscription(&sub.id).is_none() {
                rows.push((sub, format!("only {}", scope.pattern)));
            }
        }
    }
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(s, scope)| {
                json!({
                    "id": s.id,
                    "scope": scope,
                    "active": s.active,
                    "dry_run": s.dry_run,
                    "format": s.style.format.as_str(),
                    "signature": s.signature.as_str(),
                    "url": s.shown_url(),
                    "url_env": s.url_env,
                    "secret_env": s.secret_env,
                    "allow_private_networks": s.allow_private_networks,
                    "overridden_for": overrides.get(s.id.as_str()).cloned().unwrap_or_default(),
                })
            })
            .collect();
        output::print_json(&json!({"config": config.path, "subscriptions": items}))?;
        return Ok(ExitCode::Success);
    }
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(
            out,
            "no subscriptions in `{}`; add one with `spec-notify subscriptions add ID --url URL --secret-env VAR`",
            config.path.display()
        )?;
        return Ok(ExitCode::Success);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(s, scope)| {
            let mode = match (s.active, s.dry_run) {
                (false, _) => "inactive",
                (true, true) => "dry-run",
                (true, false) => "active",
            };
            let changed = overrides
                .get(s.id.as_str())
                .filter(|_| config.subscription(&s.id).is_some())
                .map_or("-".to_string(), |p| p.join(", "));
            vec![
                s.id.clone(),
                mode.into(),
                scope.clone(),
                s.style.format.as_str().into(),
                s.shown_url(),
                s.secret_env.clone().unwrap_or_else(|| "-".into()),
                changed,
            ]
        })
        .collect();
    output::table(
        &mut out,
        &[
            "ID",
            "MODE",
            "FOR",
            "FORMAT",
            "URL",
            "SECRET",
            "OVERRIDDEN FOR",
        ],
        &table,
    )?;
    Ok(ExitCode::Success)
}

fn add(ctx: &Ctx, args: &SubscriptionAddArgs) -> Result<ExitCode> {
    let mut keys: Vec<(String, Value)> = Vec::new();
    let mut put = |key: &str, value: Option<&String>| {
        if let Some(v) = value {
            keys.push((key.into(), Value::from(v.as_str())));
        }
    };
    put("url", args.url.as_ref());
    put("url_env", args.url_env.as_ref());
    put("secret_env", args.secret_env.as_ref());
    put("signature", args.signature.as_ref());
    put("format", args.format.as_ref());
    if !args.events.is_empty() {
        let list: toml_edit::Array = args.events.iter().map(String::as_str).collect();
        keys.push(("include_events".into(), Value::Array(list)));
    }
    if args.dry_run {
        keys.push(("dry_run".into(), Value::from(true)));
    }
    for pair in &args.set {
        let (key, value) = edit::parse_pair(pair)?;
        if key == "id" {
            return Err(user_error("the id is the first argument, not `--set id=…`"));
        }
        keys.retain(|(k, _)| *k != key);
        keys.push((key, value));
    }
    let change = Change::Add {
        id: args.id.clone(),
        keys,
        spec: args.spec.clone(),
    };
    let target = SubscriptionTargetArgs {
        id: args.id.clone(),
        spec: args.spec.clone(),
    };
    let code = change_then(ctx, change, &target, "added")?;
    if !args.test {
        return Ok(code);
    }
    let config = ctx.load_config()?;
    let spec = args
        .spec
        .as_deref()
        .filter(|s| !s.ends_with('*'))
        .unwrap_or(TEST_SPEC);
    let Some(sub) = config.subscription_for(spec, &args.id) else {
        output::error(format_args!(
            "added, but not tested: subscription `{}` is not in effect for {spec}; run `spec-notify test SPEC-ID --subscription {}` with a SPEC it is for",
            args.id, args.id
        ));
        return Ok(ExitCode::Failure);
    };
    send_test(&config, sub, spec)
}

fn set(ctx: &Ctx, args: &SubscriptionSetArgs) -> Result<ExitCode> {
    if args.pairs.is_empty() && args.unset.is_empty() {
        return Err(user_error(
            "nothing to set: pass KEY=VALUE pairs and/or --unset KEY",
        ));
    }
    let set = args
        .pairs
        .iter()
        .map(|p| edit::parse_pair(p))
        .collect::<Result<Vec<_>>>()?;
    let target = SubscriptionTargetArgs {
        id: args.id.clone(),
        spec: args.spec.clone(),
    };
    change_then(
        ctx,
        Change::Set {
            id: args.id.clone(),
            set,
            unset: args.unset.clone(),
            spec: args.spec.clone(),
        },
        &target,
        "updated",
    )
}

fn active(ctx: &Ctx, args: &SubscriptionTargetArgs, active: bool) -> Result<ExitCode> {
    let change = Change::Active {
        id: args.id.clone(),
        active,
        spec: args.spec.clone(),
    };
    change_then(
        ctx,
        change,
        args,
        if active { "enabled" } else { "disabled" },
    )
}

/// Applies the change, says what it did and what it means for spooled jobs.
fn change_then(
    ctx: &Ctx,
    change: Change,
    target: &SubscriptionTargetArgs,
    done: &str,
) -> Result<ExitCode> {
    let location = config::locate(ctx.config.as_deref());
    let applied = edit::apply(location.require()?, &change)?;
    let config = &applied.after;
    let place = match &target.spec {
        Some(pattern) => format!(" for {pattern}"),
        None => String::new(),
    };
    if applied.written {
        output::note(format_args!(
            "{done} subscription `{}`{place} in `{}`",
            target.id,
            config.path.display()
        ));
    } else {
        output::note(format_args!(
            "`{}` already says so: nothing changed",
            config.path.display()
        ));
    }
    for note in &applied.notes {
        output::note(note);
    }
    if applied.written {
        if matches!(change, Change::Add { .. } | Change::Set { .. }) {
            warn_environment(config, &target.id);
        }
        warn_jobs(&applied, &target.id)?;
        if !config.enabled {
            output::note(format_args!(
                "webhooks are disabled ({}): nothing is spooled until `enabled = true`",
                config.enabled_source
            ));
        }
    }
    Ok(ExitCode::Success)
}

/// The variables a changed subscription reads that this shell lacks: the
/// drain will hold its jobs until they are set.
fn warn_environment(config: &Config, id: &str) {
    let mut said = Vec::new();
    for (_, sub) in config.every_subscription().filter(|(_, s)| s.id == id) {
        let problems = sub
            .needs_secret()
            .then(|| sub.missing_signing_variable())
            .flatten()
            .into_iter()
            .chain(
                sub.environment_problems()
                    .into_iter()
                    .filter(|_| sub.active),
            );
        for problem in problems {
            if !said.contains(&problem) {
                output::warn(format_args!(
                    "{problem} (the drain holds its jobs until then)"
                ));
                said.push(problem);
            }
        }
    }
}

/// What the change means for jobs already spooled for `id`: counted per
/// SPEC against the subscription in effect before and after.
fn warn_jobs(applied: &Applied, id: &str) -> Result<()> {
    let after = &applied.after;
    let spool = Spool::new(&after.spool_dir);
    let (mut orphaned_pending, mut orphaned_dead, mut held) = (0, 0, 0);
    let mut specs: Vec<String> = Vec::new();
    for spec in spool.specs()? {
        let was_on = applied
            .before
            .as_ref()
            .and_then(|b| b.subscription_for(&spec, id))
            .is_none_or(|s| s.active);
        let now = after.subscription_for(&spec, id);
        let counts = |state: State| -> Result<usize> {
            let scan = spool.spec(&spec).scan(state)?;
            Ok(scan
                .entries
                .iter()
                .filter(|e| e.meta.subscription == id && e.meta.target.is_none())
                .count())
        };
        match now {
            None => {
                let (pending, dead) = (counts(State::Pending)?, counts(State::Dead)?);
                orphaned_pending += pending;
                orphaned_dead += dead;
                if pending + dead > 0 {
                    specs.push(spec.clone());
                }
            }
            Some(sub) if !sub.active && was_on => {
                let pending = counts(State::Pending)?;
                held += pending;
                if pending > 0 {
                    specs.push(spec.clone());
                }
            }
            Some(_) => {}
        }
    }
    let specs = specs.join(", ");
    if orphaned_pending > 0 {
        output::warn(format_args!(
            "{orphaned_pending} pending job(s) of `{id}` ({specs}) will be dead-lettered by the next drain as `subscription-removed`; add `{id}` back and `spec-notify replay SPEC --all-dead --subscription {id}` to send them after all"
        ));
    }
    if orphaned_dead > 0 {
        output::warn(format_args!(
            "{orphaned_dead} dead job(s) of `{id}` ({specs}) stay in dead-letter until `spec-notify discard SPEC --all-dead --subscription {id}` (or until `{id}` is back and they are replayed)"
        ));
    }
    if held > 0 {
        output::warn(format_args!(
            "{held} pending job(s) of `{id}` ({specs}) wait, neither sent nor dead-lettered, until `spec-notify subscriptions enable {id}`"
        ));
    }
    Ok(())
}

/// Sends one signed `spec-notify.test` event to `sub` now, logs it in the
/// SPEC's evidence and prints the answer; exit 1 unless it got a 2xx.
fn send_test(config: &Config, sub: &Subscription, spec: &str) -> Result<ExitCode> {
    let secrets = match sub.unsigned() {
        true => None,
        false => match sub.signer() {
            Ok(signer) => Some(signer),
            Err(problem) => {
                output::error(format_args!("not tested: {problem}"));
                return Ok(ExitCode::Failure);
            }
        },
    };
    let now = clock::now_ms();
    let event = envelope::test_event(spec);
    let body = event.render(0, &clock::rfc3339(now));
    let mut meta = Meta::new(
        spec,
        &sub.id,
        &event.event_type,
        &event.idempotency_key,
        0,
        now,
    );
    meta.attempts = 1;
    let id = AttemptId {
        delivery_id: &meta.delivery_id,
        event_type: &event.event_type,
        idempotency_key: &event.idempotency_key,
        attempt: 1,
        timestamp: now / 1000,
        trace: None,
    };
    let request = deliver::request(sub, secrets.as_ref(), id, &body).map_err(user_error)?;
    let timeout = Duration::from_millis(sub.retry.per_request_timeout_ms);
    let agent = deliver::agent_for(sub, 1);
    let (answer, latency) =
        deliver::send(&agent, &sub.url, &request.headers, &request.body, timeout);
    let ok = answer.status().is_some_and(|s| (200..300).contains(&s));
    let mut record = Record::for_job(&meta, sub.shown_url(), 1, now, Outcome::Test);
    record.status = answer.status();
    record.error = answer.error().map(String::from);
    record.latency_ms = Some(latency.as_millis() as u64);
    record.response_body = Some(excerpt(answer.body())).filter(|b| !b.is_empty());
    super::evidence(config, spec).append(std::slice::from_ref(&record))?;
    let verdict = match ok {
        true => output::paint("ok", "32"),
        false => output::paint("FAILED", "31"),
    };
    println!(
        "test delivery {verdict}: {} answered {} in {} ms (delivery id {}, logged for {spec})",
        record.url,
        output::one_line(&answer.describe()),
        latency.as_millis(),
        meta.delivery_id
    );
    Ok(if ok {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
