//! `spec-notify discard`: deletes dead-lettered jobs on purpose, like
//! `postsuper -d`. Only dead jobs qualify; every choice is checked before
//! anything changes, then the SPEC's drain.lock is taken (waiting for a
//! running drain), the files are removed and one `discarded` record per job
//! goes to the attempt log. `--source nats` acts on the dead stream
//! instead (`super::nats`).

use std::io::{self, Write};

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::DiscardArgs;
use crate::clock;
use crate::config::Config;
use crate::evidence::{Outcome, Record};
use crate::exit::{ExitCode, user_error};
use crate::output;
use crate::spool::{DrainLock, Meta, SpecSpool, Spool, State};

pub fn run(ctx: &Ctx, args: &DiscardArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    if args.source == crate::cli::Source::Nats {
        return super::nats::discard(&config, args);
    }
    super::require_spec(&config, &args.spec, false)?;
    let spool = Spool::new(&config.spool_dir).spec(&args.spec);
    // Look before locking: a refusal must leave the workspace untouched,
    // and taking drain.lock may create it.
    let chosen = choose(&spool, args, true)?;
    if chosen.is_empty() {
        println!("no dead jobs to discard in {}", args.spec);
        return Ok(ExitCode::Success);
    }
    let lock = super::lock_drain_or_wait(&spool)?;
    // A drain that died mid-settle may have left a copy in active/ that
    // recovery would otherwise bring back after the discard.
    super::recover_unless_served(&spool, &lock)?;
    // A drain may have replayed or settled jobs while we waited: look again.
    let chosen = choose(&spool, args, false)?;
    let evidence = super::evidence(&config, &args.spec);
    let mut records = Vec::new();
    let mut removed = Vec::new();
    let mut left = 0;
    let mut result = Ok(());
    // One short wait for all of them: drain.lock is held meanwhile, and
    // emit and replay may be waiting for it.
    let settle_by = std::time::Instant::now() + SETTLE_WAIT;
    for (name, meta) in chosen {
        match remove_when_settled(&spool, &lock, &name, settle_by) {
            Ok(true) => {
                records.push(discard_record(&config, &meta));
                removed.push((name, meta));
            }
            Ok(false) => {
                left += 1;
                output::warn(format_args!(
                    "{} is still being settled by the running drain; left as it is, run discard again",
                    meta.delivery_id
                ));
            }
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    // Log what was removed even when a later removal failed.
    evidence.append(&records).with_context(|| {
        format!(
            "removed {} dead jobs but failed to log it in `{}`",
            records.len(),
            evidence.log_path().display()
        )
    })?;
    result?;
    drop(lock);
    print_discarded(&args.spec, &removed)?;
    // Events emitted while discard held the SPEC for a moment started no drain.
    super::hand_over_pending(ctx, &config, &spool);
    // Not everything asked for was discarded: a script must not think so.
    Ok(if left > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}

/// Removes a dead job, waiting until `by` while the running drain finishes
/// settling it (an unlink away; drain.lock does not stop it). `false`: it
/// still was, and is left.
fn remove_when_settled(
    spool: &SpecSpool,
    lock: &DrainLock,
    name: &str,
    by: std::time::Instant,
) -> Result<bool> {
    loop {
        if spool.remove_settled(lock, State::Dead, name)? {
            return Ok(true);
        }
        if std::time::Instant::now() >= by {
            return Ok(false);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// How long one discard waits, in all, for settles in progress.
const SETTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The dead jobs the flags name: (file name, metadata). An unknown id or a
/// job that is not dead is an exit-2 error. `warn` names unreadable files.
fn choose(spool: &SpecSpool, args: &DiscardArgs, warn: bool) -> Result<Vec<(String, Meta)>> {
    let Some(id) = &args.delivery_id else {
        let scan = spool.scan(State::Dead)?;
        if warn {
            super::warn_unreadable(&scan.unreadable);
        }
        return Ok(scan
            .entries
            .into_iter()
            .filter(|e| {
                args.subscription
                    .as_deref()
                    .is_none_or(|s| s == e.meta.subscription)
            })
            .map(|e| (e.name, e.meta))
            .collect());
    };
    let all = [State::Dead, State::Pending, State::Active, State::Delivered];
    match spool.find(id, &all)? {
        Some((State::Dead, name)) => {
            let job = spool.read(State::Dead, &name)?;
            Ok(vec![(name, job.meta)])
        }
        Some((state, _)) => Err(user_error(format!(
            "delivery `{id}` in {} is {}, not dead: only dead-lettered jobs can be discarded; nothing was changed",
            spool.spec,
            state.dir_name()
        ))),
        None => Err(user_error(format!(
            "no job with delivery id `{id}` in {} (see `spec-notify list {} --state dead`); nothing was changed",
            spool.spec, spool.spec
        ))),
    }
}

pub(super) fn discard_record(config: &Config, meta: &Meta) -> Record {
    let url = super::job_url(config, meta);
    Record::for_job(meta, url, 0, clock::now_ms(), Outcome::Discarded)
}

pub(super) fn print_discarded(spec: &str, chosen: &[(String, Meta)]) -> Result<()> {
    let mut out = io::stdout().lock();
    for (_, meta) in chosen {
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
