//! [`LocalStore`]: the [`Store`] of this host's spool, attempt logs and
//! circuit files. Replay and discard take the SPEC's drain.lock (waiting for
//! a running replay, discard or recovery, never for a drain's deliveries),
//! put back what a dead drain left in active/ first, and log every act in
//! the SPEC's attempt log; a replay is delivered at once by a drain of just
//! those jobs. [`Store::changes`] tells a live view (`top`) of jobs
//! arriving, circuits and pauses changing and jobs dead-lettered, through
//! inotify. The alert state and alert jobs are `super::local_alerts`'s.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{Discarded, Found, Listed, Pick, Replayed, Requeued, Say, Store, Unknown};
use crate::circuit::{Circuit, Transition};
use crate::config::Config;
use crate::drain::{Drainer, Event, Options, Stop, Summary};
use crate::evidence::{Evidence, Pull, Record, Skipped};
use crate::exit::user_error;
use crate::health::{self, Local};
use crate::spool::watch::Watcher;
use crate::spool::{DrainLock, Quarantined, SpecSpool, Spool, State, delivery_id_of};

pub struct LocalStore<'a> {
    config: &'a Config,
    spool: Spool,
    /// `--config` as given, for the drains this store starts (without it
    /// they find the same config: they run in the same folder).
    config_flag: Option<PathBuf>,
}

impl<'a> LocalStore<'a> {
    pub fn new(config: &'a Config, config_flag: Option<PathBuf>) -> LocalStore<'a> {
        LocalStore {
            config,
            spool: Spool::new(&config.spool_dir),
            config_flag,
        }
    }

    fn evidence(&self, spec: &str) -> Evidence {
        Evidence::new(
            self.config.evidence_for(spec),
            self.config.max_evidence_bytes,
        )
    }

    /// Fails with exit 2 unless `spec` has a spool folder, naming the known
    /// SPECs.
    fn require_spec(&self, spec: &str) -> Result<()> {
        let Some(Unknown { listing, .. }) = self.unknown_spec(spec, false)? else {
            return Ok(());
        };
        Err(user_error(format!(
            "unknown SPEC `{spec}`: there is no spool folder `{}`; {listing}; nothing was changed",
            self.spool.spec(spec).dir().display()
        )))
    }
}

/// Takes the SPEC's drain.lock, saying so when it has to wait for a
/// running replay, discard or recovery to finish.
fn lock_or_wait(spool: &SpecSpool, say: Say<'_>) -> Result<DrainLock> {
    if let Some(lock) = spool.try_lock_drain()? {
        return Ok(lock);
    }
    say(format_args!(
        "waiting for the drain working on {} to finish…",
        spool.spec
    ));
    spool.lock_drain()
}

/// Puts back what a dead drain left in active/, but only when no drain
/// serves the SPEC: a live drain's active/ jobs are requests in flight.
fn recover_unless_served(spool: &SpecSpool, lock: &DrainLock) -> Result<Vec<Quarantined>> {
    match spool.try_serve()? {
        Some(alive) => spool.recover(&alive, lock)?.into_quarantined(),
        None => Ok(Vec::new()),
    }
}

impl Store for LocalStore<'_> {
    fn name(&self) -> &'static str {
        "spool"
    }

    fn flag(&self) -> &'static str {
        ""
    }

    fn health(&self) -> Result<Box<dyn health::Source + '_>> {
        Ok(Box::new(Local::new(self.config)))
    }

    fn shown_from(&self) -> Option<String> {
        None
    }

    fn unknown_spec(&self, spec: &str, records_count: bool) -> Result<Option<Unknown>> {
        let known = self.spool.specs()?;
        if known.iter().any(|s| s == spec)
            || (records_count && self.config.evidence_for(spec).is_dir())
        {
            return Ok(None);
        }
        Ok(Some(Unknown {
            missing: "has no spool folder yet".into(),
            listing: if known.is_empty() {
                "no SPEC has a spool yet (nothing has been emitted)".to_string()
            } else {
                format!("known SPECs: {}", known.join(", "))
            },
        }))
    }

    fn jobs(&self, spec: Option<&str>, states: &[State]) -> Result<Found> {
        let specs = match spec {
            Some(spec) => vec![spec.to_string()],
            None => self.spool.specs()?,
        };
        let mut found = Found::default();
        for spec in specs {
            let spool = self.spool.spec(&spec);
            for &state in states {
                if state == State::Quarantine {
                    found
                        .items
                        .extend(spool.quarantined()?.into_iter().map(|(file, reason)| {
                            Listed::Quarantined {
                                spec: spec.clone(),
                                file,
                                reason,
                            }
                        }));
                    continue;
                }
                let scan = spool.scan(state)?;
                found.unreadable.extend(scan.unreadable);
                found
                    .items
                    .extend(scan.entries.into_iter().map(|e| Listed::Job {
                        state,
                        name: e.name,
                        meta: Box::new(e.meta),
                    }));
            }
        }
        Ok(found)
    }

    fn records(&self, spec: &str, visit: &mut dyn FnMut(Record)) -> Result<(Skipped, String)> {
        let evidence = self.evidence(spec);
        let skipped = evidence.for_each_record(visit)?;
        Ok((
            skipped,
            format!("the attempt log under `{}`", evidence.dir().display()),
        ))
    }

    fn record_stream(&self, spec: &str) -> Result<(Box<dyn Pull + '_>, String)> {
        let evidence = self.evidence(spec);
        Ok((
            Box::new(evidence.records()?),
            format!("the attempt log under `{}`", evidence.dir().display()),
        ))
    }

    fn update_circuit(
        &self,
        subscription: &str,
        change: &mut dyn FnMut(&mut Circuit) -> Option<Transition>,
    ) -> Result<(Option<Transition>, Circuit)> {
        self.spool.update_circuit(subscription, |c| change(c))
    }

    fn waiting(&self, subscription: &str) -> Result<usize> {
        let mut n = 0;
        for spec in self.spool.specs()? {
            let scan = self.spool.spec(&spec).scan(State::Pending)?;
            n += scan
                .entries
                .iter()
                .filter(|e| e.meta.subscription == subscription)
                .count();
        }
        Ok(n)
    }

    fn log(&self, records: &[Record]) -> Result<()> {
        for record in records {
            self.evidence(&record.spec)
                .append(std::slice::from_ref(record))?;
        }
        Ok(())
    }

    fn specs_with_jobs(&self) -> Result<Vec<String>> {
        self.spool.specs()
    }

    fn replay(&self, spec: &str, pick: &Pick, say: Say<'_>) -> Result<Replayed> {
        self.require_spec(spec)?;
        let spool = self.spool.spec(spec);
        let lock = lock_or_wait(&spool, say)?;
        let quarantined = recover_unless_served(&spool, &lock)?;
        let chosen = choose_replay(&spool, pick)?;
        let evidence = self.evidence(spec);
        let now = crate::clock::now_ms();
        let mut requeued = Vec::new();
        for (state, name) in chosen {
            let mut job = spool.read(state, &name)?;
            super::reset(&mut job.meta, now);
            spool.transfer(&lock, state, &job)?;
            let url = super::job_url(self.config, &job.meta);
            evidence.append(&[super::requeued_record(url, &job.meta, state, now)])?;
            requeued.push(Requeued {
                meta: job.meta,
                from: state,
            });
        }
        Ok(Replayed {
            requeued,
            quarantined,
            place: format!("the spool of {spec}"),
        })
    }

    fn deliver_now(
        &self,
        spec: &str,
        ids: HashSet<String>,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Option<Summary>> {
        let options = Options {
            spec: Some(spec.to_string()),
            once: true,
            watch: false,
            // One pass (`once`): the bound only stops a pass that never ends.
            max_time: std::time::Duration::from_secs(3600),
            only: Some(ids),
        };
        Drainer::new(self.config, options, Stop::install()?)
            .run(report)
            .map(Some)
    }

    fn discard(&self, spec: &str, pick: &Pick, say: Say<'_>) -> Result<Discarded> {
        self.require_spec(spec)?;
        let spool = self.spool.spec(spec);
        let mut out = Discarded {
            place: format!("the spool of {spec}"),
            ..Discarded::default()
        };
        // Look before locking: a refusal must leave the workspace untouched,
        // and taking drain.lock may create it.
        let (chosen, unreadable) = choose_discard(&spool, pick)?;
        out.unreadable = unreadable;
        if chosen.is_empty() {
            return Ok(out);
        }
        let lock = lock_or_wait(&spool, say)?;
        // A drain that died mid-settle may have left a copy in active/ that
        // recovery would otherwise bring back after the discard.
        out.quarantined = recover_unless_served(&spool, &lock)?;
        // A drain may have replayed or settled jobs while we waited: look again.
        let (chosen, _) = choose_discard(&spool, pick)?;
        let evidence = self.evidence(spec);
        let mut records = Vec::new();
        // One short wait for all of them: drain.lock is held meanwhile, and
        // emit and replay may be waiting for it.
        let settle_by = std::time::Instant::now() + super::SETTLE_WAIT;
        for (name, meta) in chosen {
            match remove_when_settled(&spool, &lock, &name, settle_by) {
                Ok(true) => {
                    records.push(super::discard_record(
                        super::job_url(self.config, &meta),
                        &meta,
                    ));
                    out.removed.push(meta);
                }
                Ok(false) => out.left.push(meta.delivery_id),
                Err(e) => {
                    out.error = Some(e);
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
        Ok(out)
    }

    fn drain(
        &self,
        options: Options,
        stop: Stop,
        report: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<Summary> {
        Drainer::new(self.config, options, stop).run(report)
    }

    fn hand_over(&self, specs: &[String]) -> Vec<String> {
        if !self.config.auto_drain {
            return Vec::new();
        }
        // Only SPECs with jobs waiting (replay and discard hand over theirs
        // whatever they did: events emitted meanwhile started no drain).
        let specs: Vec<&str> = specs
            .iter()
            .filter(|s| {
                self.spool
                    .spec(s)
                    .count(State::Pending)
                    .is_ok_and(|n| n > 0)
            })
            .map(String::as_str)
            .collect();
        if specs.is_empty() {
            return Vec::new();
        }
        crate::kick::start_drains(self.config, &specs, self.config_flag.as_deref())
    }

    fn place(&self, spec: &str) -> String {
        format!("the spool of {spec}")
    }

    fn alert_state(&self) -> Result<crate::alerts::AlertState> {
        super::local_alerts::read(self.spool.root())
    }

    fn update_alerts(
        &self,
        change: &mut dyn FnMut(&mut crate::alerts::AlertState),
    ) -> Result<crate::alerts::AlertState> {
        super::local_alerts::update(self.spool.root(), change)
    }

    fn spool_alert(&self, alert: &crate::alerts::AlertJob) -> Result<bool> {
        super::local_alerts::spool(self.spool.root(), alert)
    }

    fn held_lanes(&self) -> Result<Vec<super::HeldLane>> {
        super::lines::held_lanes(self, self.config)
    }

    fn changes(&self) -> Option<Box<dyn super::Changes + '_>> {
        let changes = SpoolChanges {
            spool: &self.spool,
            watcher: Watcher::new(&self.spool)?,
            moves: Moves::new()?,
            specs: std::cell::RefCell::new(HashSet::new()),
            watched_at: std::cell::Cell::new(None),
        };
        changes.watch_all();
        Some(Box::new(changes))
    }
}

/// What a live view is told of: jobs arriving in any SPEC's pending/,
/// through the spool's [`Watcher`]; new SPECs, circuit and pause changes
/// and dead-letters, through [`Moves`].
struct SpoolChanges<'a> {
    spool: &'a Spool,
    watcher: Watcher,
    moves: Moves,
    /// SPECs whose pending/ the watcher watches.
    specs: std::cell::RefCell<HashSet<String>>,
    /// When the folders were last looked for.
    watched_at: std::cell::Cell<Option<std::time::Instant>>,
}

/// How often folders that did not exist yet are looked for.
const LOOK_AGAIN: std::time::Duration = std::time::Duration::from_millis(250);

impl SpoolChanges<'_> {
    /// Watches the spool root, the circuits' folder and every SPEC's
    /// pending/ and dead/ that exist; true when one was not watched yet
    /// (what happened in it before is news too).
    fn watch_all(&self) -> bool {
        self.watched_at.set(Some(std::time::Instant::now()));
        let root = self.spool.root();
        // Where spool/circuits.rs keeps `<id>.json` (written by rename).
        let mut new = self.moves.watch(root) | self.moves.watch(&root.join(".subscriptions"));
        for spec in self.spool.specs().unwrap_or_default() {
            let spool = self.spool.spec(&spec);
            new |= self.moves.watch(&spool.state_dir(State::Dead));
            if !self.specs.borrow().contains(&spec) && self.watcher.watch(&spool) {
                self.specs.borrow_mut().insert(spec);
                new = true;
            }
        }
        new
    }
}

impl super::Changes for SpoolChanges<'_> {
    fn wait(&self, timeout: std::time::Duration) -> bool {
        // The watcher waits on its own descriptor: look at the moves
        // between short waits.
        const SLICE: std::time::Duration = std::time::Duration::from_millis(20);
        let started = std::time::Instant::now();
        loop {
            let left = timeout.saturating_sub(started.elapsed());
            let news = self.watcher.wait(left.min(SLICE));
            let moved = self.moves.take();
            let stale = self
                .watched_at
                .get()
                .is_none_or(|t| t.elapsed() >= LOOK_AGAIN);
            let new = (moved || stale || !news.is_empty()) && self.watch_all();
            if !news.is_empty() || moved || new {
                return true;
            }
            if left <= SLICE {
                return false;
            }
        }
    }
}

/// Files and folders renamed into or made in the folders it watches
/// (inotify `IN_MOVED_TO`, `IN_CREATE`), read without waiting.
struct Moves {
    fd: std::os::fd::OwnedFd,
    watched: std::cell::RefCell<HashSet<PathBuf>>,
}

impl Moves {
    fn new() -> Option<Moves> {
        use rustix::fs::inotify::{CreateFlags, init};
        Some(Moves {
            fd: init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?,
            watched: std::cell::RefCell::new(HashSet::new()),
        })
    }

    /// Watches `dir` if it exists and is not watched yet; true if it now is.
    fn watch(&self, dir: &std::path::Path) -> bool {
        use rustix::fs::inotify::{WatchFlags, add_watch};
        let mut watched = self.watched.borrow_mut();
        let flags = WatchFlags::MOVED_TO | WatchFlags::CREATE | WatchFlags::ONLYDIR;
        if watched.contains(dir) || add_watch(&self.fd, dir, flags).is_err() {
            return false;
        }
        watched.insert(dir.to_path_buf())
    }

    /// Whether anything was renamed in since the last call.
    fn take(&self) -> bool {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut events = rustix::fs::inotify::Reader::new(&self.fd, &mut buf);
        let mut any = false;
        while events.next().is_ok() {
            any = true;
        }
        any
    }
}

/// The one job of the SPEC, in any state, that `given` (a delivery id or
/// a unique prefix of one) names: (state, file name, whole id). An
/// ambiguous prefix is an exit-2 error listing the jobs it starts.
fn find_one(spool: &SpecSpool, given: &str) -> Result<Option<(State, String, String)>> {
    let all = [State::Dead, State::Delivered, State::Pending, State::Active];
    let wanted = crate::store::check_delivery_id(given).map_err(user_error)?;
    let found = spool.find(&all, |id| super::id_starts_with(id, &wanted))?;
    let ids = found.iter().filter_map(|(state, name)| {
        Some((
            delivery_id_of(name)?.to_string(),
            state.dir_name().to_string(),
        ))
    });
    let Some(id) = super::one_delivery_id(&wanted, ids, &format!("the spool of {}", spool.spec))?
    else {
        return Ok(None);
    };
    Ok(found
        .into_iter()
        .find(|(_, name)| delivery_id_of(name) == Some(id.as_str()))
        .map(|(state, name)| (state, name, id)))
}

/// The jobs a replay names: (state, file name). An unknown id is an exit-2
/// error and changes nothing.
fn choose_replay(spool: &SpecSpool, pick: &Pick) -> Result<Vec<(State, String)>> {
    if let Some(given) = &pick.delivery_id {
        let why = match find_one(spool, given)? {
            Some((state @ (State::Dead | State::Delivered), name, _)) => {
                return Ok(vec![(state, name)]);
            }
            Some((state, _, id)) => format!(
                "{id} is {} already; `spec-notify drain` delivers it",
                state.dir_name()
            ),
            None => format!("no job has that id (see `spec-notify list {}`)", spool.spec),
        };
        return Err(user_error(format!(
            "cannot replay {given} of {}: {why}; nothing changed",
            spool.spec
        )));
    }
    let scan = spool.scan(State::Dead)?;
    Ok(scan
        .entries
        .into_iter()
        .filter(|e| pick.keeps(&e.meta))
        .map(|e| (State::Dead, e.name))
        .collect())
}

/// The dead jobs a discard names: (file name, metadata), and the files that
/// could not be read. An unknown id or a job that is not dead is an exit-2
/// error.
type Chosen = (
    Vec<(String, crate::spool::Meta)>,
    Vec<crate::spool::Unreadable>,
);

fn choose_discard(spool: &SpecSpool, pick: &Pick) -> Result<Chosen> {
    let Some(given) = &pick.delivery_id else {
        let scan = spool.scan(State::Dead)?;
        let chosen = scan
            .entries
            .into_iter()
            .filter(|e| {
                pick.subscription
                    .as_deref()
                    .is_none_or(|s| s == e.meta.subscription)
            })
            .map(|e| (e.name, e.meta))
            .collect();
        return Ok((chosen, scan.unreadable));
    };
    match find_one(spool, given)? {
        Some((State::Dead, name, _)) => {
            let job = spool.read(State::Dead, &name)?;
            Ok((vec![(name, job.meta)], Vec::new()))
        }
        Some((state, _, id)) => Err(user_error(format!(
            "delivery `{id}` in {} is {}, not dead: only dead-lettered jobs can be discarded; nothing was changed",
            spool.spec,
            state.dir_name()
        ))),
        None => Err(user_error(format!(
            "no job with delivery id `{given}` in {} (see `spec-notify list {} --state dead`); nothing was changed",
            spool.spec, spool.spec
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_specs_are_named_with_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[spec_ops.webhooks]\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n",
            dir.path().display()
        );
        let config = crate::config::parse(&text, &dir.path().join("config.toml")).unwrap();
        let store = LocalStore::new(&config, None);
        let err = store.require_spec("S-1").unwrap_err();
        assert_eq!(crate::exit::code_for(&err), crate::exit::ExitCode::Usage);
        assert!(err.to_string().contains("no SPEC has a spool yet"), "{err}");

        std::fs::create_dir_all(config.evidence_for("S-1")).unwrap();
        assert!(
            store.unknown_spec("S-1", true).unwrap().is_none(),
            "an evidence folder counts for history"
        );
        assert!(store.unknown_spec("S-1", false).unwrap().is_some());

        Spool::new(&config.spool_dir).spec("S-2").ensure().unwrap();
        store.require_spec("S-2").unwrap();
        let err = store.require_spec("S-3").unwrap_err().to_string();
        assert!(
            err.contains("unknown SPEC `S-3`") && err.contains("known SPECs: S-2"),
            "{err}"
        );
    }

    #[test]
    fn a_live_view_hears_of_new_jobs_circuit_changes_and_dead_letters() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[spec_ops.webhooks]\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n",
            dir.path().display()
        );
        let config = crate::config::parse(&text, &dir.path().join("config.toml")).unwrap();
        let spool = Spool::new(&config.spool_dir);
        let s1 = spool.spec("S-1");
        s1.ensure().unwrap();
        spool
            .update_circuit("hook", |c| c.pause("maintenance", "operator", 1))
            .unwrap();
        let store = LocalStore::new(&config, None);
        let changes = store.changes().expect("inotify here");
        let quiet = || !changes.wait(Duration::from_millis(20));
        assert!(quiet(), "nothing happened yet");

        let job = crate::spool::Job {
            meta: crate::spool::Meta::new("S-1", "hook", "a.b.c", "k", 1, 1000),
            body: b"{}".to_vec(),
        };
        s1.enqueue(std::slice::from_ref(&job)).unwrap();
        let wait = || changes.wait(Duration::from_secs(10));
        assert!(wait(), "a job arrived");
        assert!(quiet());

        spool.update_circuit("hook", |c| c.resume()).unwrap();
        assert!(wait(), "the subscription was resumed");

        let mut dead = job.clone();
        dead.meta.state = State::Dead;
        let lock = s1.lock_drain().unwrap();
        s1.transfer(&lock, State::Pending, &dead).unwrap();
        assert!(wait(), "a job was dead-lettered");
    }
}
