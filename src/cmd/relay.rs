//! `spec-notify relay [--watch]`: moves this host's pending jobs into NATS
//! JetStream (see `crate::nats::relay`) and says how many on stderr. A
//! `--watch` relay looks at a SPEC when inotify tells of a job renamed into
//! its pending/ (and at every SPEC each second). One
//! relay runs per spool; a one-shot relay lets go of relay.alive when a pass
//! finds nothing and looks once more, so a job emitted meanwhile (whose
//! emit saw a relay running and started none) is never left behind.

use std::collections::{HashMap, HashSet};
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
/// How soon a SPEC folder whose pending/ could not be watched is tried again.
const RETRY_WATCH: Duration = Duration::from_millis(5);
/// How many times (a second's worth).
const WATCH_TRIES: u32 = 200;
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
    let mut looker = Looker::new(
        if args.watch {
            Watcher::new(&spool)
        } else {
            None
        },
        &spool,
    );
    let mut relayer = nats::relay::Relayer::default();
    let mut published = 0;
    let mut errors = 0;
    let mut idle_passes = 0;
    // `None`: every SPEC; else only those inotify named.
    let mut only: Option<HashSet<String>> = None;
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
            only = looker.next();
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

/// What a `relay --watch` looks at next: the SPECs inotify named (their
/// pending/ folders are watched from here on), or every SPEC on a new
/// folder, lost events, no inotify, or every [`FULL_LOOK_EVERY`] as a
/// safety net. A SPEC folder whose pending/ could not be watched yet (emit
/// is still making it) is tried again within milliseconds, and looked at.
struct Looker<'a> {
    watcher: Option<Watcher>,
    spool: &'a Spool,
    last_full: Instant,
    /// [`FULL_LOOK_EVERY`] (tests stretch it).
    full_every: Duration,
    /// SPEC folders whose pending/ could not be watched yet, with the
    /// tries so far (given up after [`WATCH_TRIES`]; the next full look
    /// finds them).
    unwatched: HashMap<String, u32>,
}

impl<'a> Looker<'a> {
    fn new(watcher: Option<Watcher>, spool: &'a Spool) -> Looker<'a> {
        Looker {
            watcher,
            spool,
            last_full: Instant::now(),
            full_every: FULL_LOOK_EVERY,
            unwatched: HashMap::new(),
        }
    }

    /// Watches every SPEC; `None`: look at every SPEC.
    fn full(&mut self) -> Option<HashSet<String>> {
        self.last_full = Instant::now();
        if let Some(watcher) = &self.watcher {
            for spec in self.spool.specs().unwrap_or_default() {
                if !watcher.watch(&self.spool.spec(&spec)) {
                    self.unwatched.entry(spec).or_default();
                }
            }
        }
        None
    }

    fn next(&mut self) -> Option<HashSet<String>> {
        let Some(watcher) = &self.watcher else {
            std::thread::sleep(LOOK_EVERY);
            return None;
        };
        if !watcher.sees_new_specs() || self.last_full.elapsed() >= self.full_every {
            return self.full();
        }
        let mut wait = self.full_every.saturating_sub(self.last_full.elapsed());
        if !self.unwatched.is_empty() {
            wait = wait.min(RETRY_WATCH);
        }
        let news = watcher.wait(wait);
        if news.overflow {
            return self.full();
        }
        // A new SPEC folder: watched (and looked at) as soon as its
        // pending/ exists.
        for name in news.new_spec_names {
            if crate::envelope::check_spec_id(&name).is_ok() {
                self.unwatched.entry(name).or_default();
            }
        }
        let mut only = news.specs;
        let retry: Vec<(String, u32)> = self.unwatched.drain().collect();
        for (spec, tries) in retry {
            if !watcher.watch(&self.spool.spec(&spec)) && tries < WATCH_TRIES {
                self.unwatched.insert(spec.clone(), tries + 1);
            }
            only.insert(spec);
        }
        Some(only)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Job, Meta};

    #[test]
    fn the_first_job_of_a_new_spec_is_seen_without_a_full_look() {
        // A new SPEC folder has no pending/ at the moment inotify tells of
        // it: it used to wait for the safety-net look (a second).
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path());
        let mut looker = Looker::new(Watcher::new(&spool), &spool);
        looker.full_every = Duration::from_secs(3600);
        let s = spool.spec("S-1");
        let job = Job {
            meta: Meta::new("S-1", "sub", "a.b.c", "k", 1, 1000),
            body: b"{}".to_vec(),
        };
        s.enqueue(std::slice::from_ref(&job)).unwrap();
        let mut seen = HashSet::new();
        for _ in 0..100 {
            match looker.next() {
                Some(only) => seen.extend(only),
                None => panic!("a full look: the news was not enough"),
            }
            if seen.contains("S-1") && looker.unwatched.is_empty() {
                break;
            }
        }
        assert!(seen.contains("S-1"), "{seen:?}");
        // And its next job is news.
        let mut second = job;
        second.meta = Meta::new("S-1", "sub", "a.b.c", "k2", 2, 1000);
        s.enqueue(&[second]).unwrap();
        let only = looker.next().expect("news, not a full look");
        assert!(only.contains("S-1"), "{only:?}");
    }
}
