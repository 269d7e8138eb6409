//! `spec-notify replay`: move dead (or delivered) jobs back to pending with
//! their delivery id kept and attempts reset, log it, then deliver just
//! those jobs right away (unless `--no-drain`). Like `postsuper -r`.
//! `--source nats` acts on the dead stream instead (`super::nats`).

use std::collections::HashSet;

use anyhow::Result;
use serde_json::json;

use super::Ctx;
use crate::cli::ReplayArgs;
use crate::clock;
use crate::config::Config;
use crate::drain::{Drainer, Options, Stop};
use crate::evidence::{Outcome, Record};
use crate::exit::{ExitCode, user_error};
use crate::output;
use crate::spool::{Entry, Spool, State};

pub fn run(ctx: &Ctx, args: &ReplayArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    if args.source == crate::cli::Source::Nats {
        return super::nats::replay(&config, args);
    }
    super::require_spec(&config, &args.spec, false)?;
    let spool = Spool::new(&config.spool_dir).spec(&args.spec);
    let lock = super::lock_drain_or_wait(&spool)?;
    super::recover_unless_served(&spool, &lock)?;
    let chosen = choose(&spool, args)?;
    if chosen.is_empty() {
        output::note(format_args!(
            "no dead jobs of {} match; nothing replayed",
            args.spec
        ));
        drop(lock);
        super::hand_over_pending(ctx, &config, &spool);
        return Ok(ExitCode::Success);
    }
    let evidence = super::evidence(&config, &args.spec);
    let now = clock::now_ms();
    let mut ids = HashSet::new();
    for entry in &chosen {
        let mut job = spool.read(entry.state, &entry.name)?;
        reset(&mut job.meta, now);
        spool.transfer(&lock, entry.state, &job)?;
        evidence.append(&[requeued_record(&config, &job.meta, entry.state, now)])?;
        ids.insert(job.meta.delivery_id.clone());
        output::note(format_args!(
            "requeued {} ({}, was {})",
            job.meta.delivery_id,
            job.meta.subscription,
            entry.state.dir_name()
        ));
    }
    drop(lock);
    if args.no_drain {
        return Ok(ExitCode::Success);
    }
    let code = deliver_now(&config, &args.spec, ids, args.json)?;
    // Events emitted while this replay held the SPEC started no drain.
    super::hand_over_pending(ctx, &config, &spool);
    Ok(code)
}

/// The jobs to replay; an unknown id is an error and changes nothing.
fn choose(spool: &crate::spool::SpecSpool, args: &ReplayArgs) -> Result<Vec<Entry>> {
    if let Some(id) = &args.delivery_id {
        let found = spool.find(id, &[State::Dead, State::Delivered])?;
        let Some((state, name)) = found else {
            let elsewhere = spool.find(id, &[State::Pending, State::Active])?;
            let why = match elsewhere {
                Some((state, _)) => format!(
                    "it is {} already; `spec-notify drain` delivers it",
                    state.dir_name()
                ),
                None => format!("no job has that id (see `spec-notify list {}`)", spool.spec),
            };
            return Err(user_error(format!(
                "cannot replay {id} of {}: {why}; nothing changed",
                spool.spec
            )));
        };
        let meta = spool.read(state, &name)?.meta;
        return Ok(vec![Entry { name, state, meta }]);
    }
    let scan = spool.scan(State::Dead)?;
    Ok(scan
        .entries
        .into_iter()
        .filter(|e| {
            args.subscription
                .as_ref()
                .is_none_or(|s| &e.meta.subscription == s)
        })
        .filter(|e| {
            let at = e.meta.finished_at_ms.unwrap_or(e.meta.created_at_ms);
            args.since.is_none_or(|t| at >= t) && args.until.is_none_or(|t| at <= t)
        })
        .collect())
}

/// Back to a fresh pending job with the same delivery id and envelope.
pub(super) fn reset(meta: &mut crate::spool::Meta, now: u64) {
    meta.state = State::Pending;
    meta.attempts = 0;
    meta.next_attempt_at_ms = now;
    meta.dead_reason = None;
    meta.hint = None;
    meta.finished_at_ms = None;
    meta.replays += 1;
    // A replayed job is queued anew: its age for `max_age` starts now.
    meta.queued_at_ms = Some(now);
}

pub(super) fn requeued_record(
    config: &Config,
    meta: &crate::spool::Meta,
    from: State,
    now: u64,
) -> Record {
    let url = super::job_url(config, meta);
    let mut record = Record::for_job(meta, url, 0, now, Outcome::Requeued);
    record.status = meta.last_status;
    record.error = Some(format!(
        "requeued from {} by an operator (replay #{})",
        from.dir_name(),
        meta.replays
    ));
    record.next_attempt_at = Some(clock::rfc3339(now));
    record
}

/// Delivers the requeued jobs once each and reports what became of them:
/// exit 0 when all were delivered, 1 when some failed again, 2 when held.
fn deliver_now(config: &Config, spec: &str, ids: HashSet<String>, json: bool) -> Result<ExitCode> {
    let options = Options {
        spec: Some(spec.to_string()),
        once: true,
        watch: false,
        // One pass (`once`): the bound only stops a pass that never ends.
        max_time: std::time::Duration::from_secs(3600),
        only: Some(ids.clone()),
    };
    let mut report = super::drain_reporter(false);
    let summary = Drainer::new(config, options, Stop::install()?).run(&mut report)?;
    if summary.busy.iter().any(|s| s == spec) {
        output::note(format_args!(
            "a running drain serves {spec}; it delivers the requeued jobs (see `spec-notify list {spec}`)"
        ));
        return Ok(ExitCode::Success);
    }
    let mut rows = Vec::new();
    for id in &ids {
        let outcome = summary.outcomes.get(id).copied();
        rows.push(
            json!({"delivery_id": id, "outcome": outcome.map_or("not attempted", outcome_name)}),
        );
    }
    if json {
        output::print_json(&rows)?;
    }
    super::report_drain(&summary, false)?;
    let code = super::drain_exit_code(&summary);
    let all_delivered = ids.iter().all(|id| {
        summary
            .outcomes
            .get(id)
            .is_some_and(|o| matches!(o, Outcome::Delivered | Outcome::DryRun))
    });
    Ok(match code {
        ExitCode::Success if !all_delivered => ExitCode::Failure,
        other => other,
    })
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Retry => "retrying",
        other => other.name(),
    }
}
