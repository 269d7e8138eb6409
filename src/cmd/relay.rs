//! `spec-notify relay [--watch]`: moves this host's pending jobs into NATS
//! JetStream (see `crate::nats::relay`) and says how many on stderr. A
//! `--watch` relay looks at a SPEC when inotify tells of a job renamed into
//! its pending/ (and at every SPEC each second). One
//! relay runs per spool; a one-shot relay lets go of relay.alive when a pass
//! finds nothing and looks once more, so a job emitted meanwhile (whose
//! emit saw a relay running and started none) is never left behind.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::Ctx;
use crate::cli::RelayArgs;
use crate::drain::Stop;
use crate::exit::{ExitCode, user_error};
use crate::nats::{self, Nats};
use crate::output;
use crate::spool::Spool;
use crate::spool::watch::Watcher;

/// How often `relay --watch` looks at the spool without inotify.
const LOOK_EVERY: Duration = Duration::from_millis(20);
/// How often `relay --watch` looks at every SPEC even with inotify (a
/// missed event, a folder made before it was watched).
const FULL_LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long `relay --watch` waits after the server failed to store a job.
const AFTER_ERROR: Duration = Duration::from_secs(1);

pub fn run(ctx: &Ctx, args: &RelayArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let Some(relay) = config.relay.clone() else {
        return Err(user_error(format!(
            "`relay` needs a [spec_ops.webhooks.relay] table in `{}` (url = \"nats://host:4222\"); see docs/scale-out.md",
            config.path.display()
        )));
    };
    let stop = Stop::install()?;
    let Some(mut alive) = nats::relay::try_serve(&config)? else {
        if !args.background {
            output::note("another relay is moving this spool's jobs; nothing to do");
        }
        return Ok(ExitCode::Success);
    };
    let client = Nats::connect(&relay)?;
    let spool = Spool::new(&config.spool_dir);
    let watcher = if args.watch {
        Watcher::new(&spool)
    } else {
        None
    };
    let mut relayer = nats::relay::Relayer::default();
    let mut published = 0;
    let mut errors = 0;
    let mut idle_passes = 0;
    // `None`: every SPEC; else only those inotify named.
    let mut only: Option<HashSet<String>> = None;
    let mut last_full = Instant::now();
    loop {
        match relayer.pass(&config, &client, &alive, only.as_ref()) {
            Ok(moved) => {
                for q in &moved.quarantined {
                    super::warn_quarantined(q);
                }
                if moved.recovered > 0 {
                    ctx.note(format!(
                        "recovered {} job(s) a dead relay or drain left",
                        moved.recovered
                    ));
                }
                published += moved.published;
                idle_passes = if moved.published == 0 {
                    idle_passes + 1
                } else {
                    0
                };
            }
            Err(e) if args.watch => {
                errors += 1;
                output::error(format_args!("{e:#}"));
                std::thread::sleep(AFTER_ERROR);
            }
            Err(e) => {
                output::error(format_args!("{e:#}"));
                return Ok(ExitCode::Failure);
            }
        }
        if stop.signal().is_some() {
            break;
        }
        if args.watch {
            only = next_look(watcher.as_ref(), &spool, &mut last_full);
            continue;
        }
        if idle_passes == 0 {
            continue;
        }
        if idle_passes > 1 {
            break;
        }
        // Let go, then look once more (see the module doc).
        drop(alive);
        if !nats::relay::has_work(&config)? {
            break;
        }
        match nats::relay::try_serve(&config)? {
            Some(taken) => alive = taken,
            None => break, // another relay took over and will see the jobs
        }
    }
    if !args.background || published > 0 && ctx.verbose {
        output::note(format_args!(
            "relayed {published} job(s) to NATS stream {}",
            client.names.jobs
        ));
    }
    Ok(if errors > 0 {
        ExitCode::Failure
    } else {
        ExitCode::Success
    })
}

/// Waits for news of jobs and says which SPECs to look at: those inotify
/// named (their pending/ folders are watched from here on), or every SPEC
/// on a new folder, lost events, no inotify, or every [`FULL_LOOK_EVERY`]
/// as a safety net.
fn next_look(
    watcher: Option<&Watcher>,
    spool: &Spool,
    last_full: &mut Instant,
) -> Option<HashSet<String>> {
    let Some(watcher) = watcher else {
        std::thread::sleep(LOOK_EVERY);
        return None;
    };
    let full = |last_full: &mut Instant| {
        *last_full = Instant::now();
        for spec in spool.specs().unwrap_or_default() {
            watcher.watch(&spool.spec(&spec));
        }
        None
    };
    if !watcher.sees_new_specs() || last_full.elapsed() >= FULL_LOOK_EVERY {
        return full(last_full);
    }
    let news = watcher.wait(FULL_LOOK_EVERY.saturating_sub(last_full.elapsed()));
    if news.overflow || news.new_specs {
        return full(last_full);
    }
    if news.is_empty() {
        return Some(HashSet::new());
    }
    Some(news.specs)
}
