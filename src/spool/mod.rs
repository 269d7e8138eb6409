//! # The spool: jobs on disk that survive any crash
//!
//! One folder per SPEC under `spool_dir`:
//!
//! ```text
//! <spool_dir>/.drain.alive   held by the drain on duty for the whole spool:
//!                            it watches every SPEC folder and serves every
//!                            SPEC with due work; emit starts a drain only
//!                            when nobody holds it
//! <spool_dir>/<SPEC-ID>/
//!   seq          sequence counter, 20 digits; changed only under its lock
//!   drain.alive  held by the one drain serving this SPEC, for as long as it
//!                serves it (working or waiting for retries); emit starts no
//!                drain while it is held
//!   drain.lock   held while replay, discard or emit's overflow move jobs,
//!                and by the serving drain while it recovers, quarantines or
//!                prunes (never across a network request); the drain's own
//!                claims and settles need only drain.alive
//!   pending/     jobs waiting for their (next) attempt
//!   active/      jobs claimed by the drain that holds drain.alive
//!   delivered/   delivered (or dry-run) jobs, kept for list/replay until pruned
//!   dead/        dead-lettered jobs, kept until replayed or discarded
//!   quarantine/  files that could not be read as jobs, a `.reason` beside each
//! ```
//!
//! A new SPEC folder is made whole under a hidden name
//! (`.<SPEC>.<pid>.<random>.new`) and renamed into place; a drain removes
//! such a folder left by a writer that died (after ten minutes).
//!
//! Folders are created 0700 and files 0600 whatever the umask: payloads
//! and lock files are the drain user's alone. The job format and file name
//! belong to [`job`]; reading job files to [`files`]; locks to [`lock`];
//! the careful file access under all of them (atomic writes, bounded
//! reads, bounded lock waits) to [`crate::files`].
//!
//! ## Invariants
//! - A job is in exactly one of pending/, active/, delivered/, dead/; its name
//!   never changes. The folder says where it is; inside active/ the `state`
//!   field says where it was going. A file whose name and metadata disagree,
//!   whose delivery id is not a UUID, or whose `spec` field is not the SPEC
//!   of the folder holding it, is not a job: it is quarantined. The SPEC of
//!   every job read is its folder's: nothing downstream (the evidence
//!   folder, the per-SPEC URL and secret) can be picked by the field.
//! - Every write goes to a hidden `.<name>.<pid>.<random>.tmp`, created with
//!   `O_EXCL` in the folder the file is meant for, is fsynced, and is
//!   renamed within that folder (a same-folder rename never takes the
//!   kernel's filesystem-wide rename lock, which serialised concurrent
//!   deliveries). Readers skip dot-files; the next drain removes stale ones.
//!   Creating jobs ends with an fsync of `pending/`.
//! - Reads accept regular files only: never through a symlink, never
//!   blocking on a FIFO, never more than a job can be.
//! - Only the process holding `drain.alive` (the drain serving the SPEC, or
//!   `relay`) claims (link pending → active, then unlink the pending name)
//!   and settles (write the new copy into the target folder, then unlink the
//!   active copy); the [`AliveLock`] is the proof each of these calls asks
//!   for. They need no drain.lock: every step is one atomic link, rename or
//!   unlink, and nobody else touches a served SPEC's active/. The others'
//!   moves only meet them at a settled name, and either order is sound:
//!   `replay` (dead/ or delivered/ → pending/) and `discard` (unlink in
//!   dead/) acting on a copy settle just wrote, before settle unlinks the
//!   active one, leave the job replayed or discarded (after a crash there,
//!   recovery drops the active copy as the older one); emit's overflow
//!   racing a claim is described below.
//! - `drain.lock` serialises everything else that moves or deletes files:
//!   `replay`, `discard`, recovery, quarantining, pruning delivered jobs
//!   and evidence (the drain takes it for those, never across a request).
//!   Whoever takes `drain.alive` of a SPEC nobody serves runs [`recover`]
//!   under drain.lock, before any claim: an active file whose name is also
//!   in pending/, delivered/ or dead/ is the older copy and is removed; any
//!   other belonged to a drain that died and goes back to pending (or to the
//!   folder its `state` names). replay and discard recover only when they
//!   can take drain.alive themselves: a live drain's active/ is in flight.
//! - `emit` takes drain.lock only for spool-overflow, its only move, and only
//!   if it is free (emit never waits; the next emit sheds instead): rename
//!   pending → dead first, then rewrite the dead copy with the reason (the
//!   lock keeps replay and discard out between the two). A drain that linked
//!   the job meanwhile finds the pending name gone when it unlinks it, and
//!   drops its claim.
//!
//! A kill -9 at any instant therefore leaves every job pending, active (to be
//! recovered), delivered or dead, and every visible file complete.
//!
//! [`recover`]: SpecSpool::recover

mod circuits;
pub mod files;
pub mod job;
pub mod lock;
mod overflow;
mod quarantine;
pub mod watch;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

pub use files::{Unread, fsync_dir};
pub use job::{JOB_EXT, Job, Meta, State, Target, delivery_id_of, is_delivery_id, parse_name};
pub use lock::{AliveLock, DUTY_LOCK, DrainLock, Reserved};
pub use overflow::{OVERFLOW, mark_overflow};
pub use quarantine::Quarantined;

/// Why [`SpecSpool::settle`] failed, by what it means for the job: the
/// drain must tell the two apart.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    /// Nothing was settled: the job is still in active/ as it was claimed,
    /// and may be put back in pending ([`SpecSpool::unclaim`]).
    #[error(transparent)]
    Before(anyhow::Error),
    /// The settled copy is in place and a later step failed (syncing its
    /// folder, unlinking the active copy): the job must not be put back in
    /// pending (it would be sent again); an active copy left behind is
    /// dropped by the next claim or recovery.
    #[error(
        "the job is settled; a copy left in active/ is replaced when the job is next claimed, or removed when a drain next starts serving the SPEC"
    )]
    After(#[source] anyhow::Error),
}

impl SettleError {
    /// The kind of a settle error that crossed a queue backend's `anyhow`
    /// boundary (`drain::queue::Queue::settle`): a spool's keeps its kind,
    /// any other backend's failed before anything was settled.
    pub fn of(error: anyhow::Error) -> SettleError {
        error.downcast().unwrap_or_else(SettleError::Before)
    }
}

use crate::files::owner::check_own_dir;
use crate::files::{create_private_dir, remove_stale_tmp, syncfs, write_tmp};
use files::{read_meta, read_meta_at};
use job::is_job_name;

/// Free space a drain keeps beyond the job it settles: its attempt's
/// evidence, the metadata a settle adds, the circuit files.
pub const SETTLE_MARGIN: u64 = 1024 * 1024;

/// Every state folder of a SPEC.
const ALL_STATES: [State; 5] = [
    State::Pending,
    State::Active,
    State::Delivered,
    State::Dead,
    State::Quarantine,
];

/// Up to this many jobs are fsynced one by one; above it, one syncfs is cheaper.
const SYNC_EACH_LIMIT: usize = 8;

/// The spool root holding one folder per SPEC.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    pub fn new(root: impl Into<PathBuf>) -> Spool {
        Spool { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn spec(&self, spec: &str) -> SpecSpool {
        SpecSpool {
            spec: spec.to_string(),
            dir: self.root.join(spec),
        }
    }

    /// Becomes the drain on duty for the whole spool ([`DUTY_LOCK`]),
    /// unless another process is.
    pub fn try_take_duty(&self) -> Result<Option<AliveLock>> {
        create_private_dir(&self.root)?;
        AliveLock::try_take(&self.root.join(DUTY_LOCK))
    }

    /// The SPECs that have a spool folder, sorted.
    pub fn specs(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("failed to read spool `{}`", self.root.display()));
            }
        };
        let mut specs = Vec::new();
        for entry in entries {
            let entry =
                entry.with_context(|| format!("failed to read spool `{}`", self.root.display()))?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            let is_spec = !name.starts_with('.')
                && (entry.path().join("seq").exists() || entry.path().join("pending").is_dir());
            if is_spec {
                specs.push(name);
            }
        }
        specs.sort();
        Ok(specs)
    }
}

/// An entry found by [`SpecSpool::scan`].
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub state: State,
    pub meta: Meta,
}

/// A file that could not be read as a job.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub entries: Vec<Entry>,
    /// Files whose content is not a job (to quarantine).
    pub unreadable: Vec<Unreadable>,
    /// Files that could not be read right now; left where they are.
    pub io_errors: Vec<String>,
}

/// One SPEC's spool folder.
#[derive(Debug, Clone)]
pub struct SpecSpool {
    pub spec: String,
    dir: PathBuf,
}

impl SpecSpool {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state_dir(&self, state: State) -> PathBuf {
        self.dir.join(state.dir_name())
    }

    /// Creates the SPEC's folders if missing (cheap when they exist). A new
    /// SPEC folder appears whole: it is made under a hidden name and renamed
    /// into place, so a drain watching the spool root finds its pending/
    /// there when it hears of the folder.
    ///
    /// Folders that exist already are used only if this user owns them, no
    /// other user may write them, and none is a symbolic link
    /// ([`crate::files::owner`]): in a shared `spool_dir` another user could
    /// make the SPEC's folder first, then hold its `seq` or point its
    /// `pending/` at their own folder. Such a spool is refused, naming the
    /// path, the owner and the fix, before anything is written or waited for.
    pub fn ensure(&self) -> Result<()> {
        if self.check_folders()? {
            return Ok(());
        }
        if let Some(root) = self.dir.parent()
            && fs::symlink_metadata(&self.dir).is_err()
        {
            create_private_dir(root)?;
            let staged = root.join(format!(
                ".{}.{}.{:x}.new",
                self.spec,
                std::process::id(),
                fastrand::u64(..)
            ));
            let made = SpecSpool {
                spec: self.spec.clone(),
                dir: staged.clone(),
            }
            .make_folders();
            let moved = made.and_then(|()| {
                fs::rename(&staged, &self.dir)
                    .with_context(|| format!("failed to move `{}` into place", staged.display()))
            });
            match moved {
                Ok(()) => return fsync_dir(root),
                // Another emit made it first: finish whatever is missing.
                Err(_) if self.dir.is_dir() => {
                    let _ = fs::remove_dir_all(&staged);
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&staged);
                    return Err(e);
                }
            }
        }
        self.make_folders()?;
        if let Some(parent) = self.dir.parent() {
            fsync_dir(parent)?;
        }
        // Another user's folder made meanwhile is not ours either.
        self.check_folders().map(drop)
    }

    /// Checks the SPEC's folder and its state folders that exist (see
    /// [`SpecSpool::ensure`]); true when they all do.
    fn check_folders(&self) -> Result<bool> {
        let mut whole = check_own_dir(&self.dir)?;
        if whole {
            for state in ALL_STATES {
                whole &= check_own_dir(&self.state_dir(state))?;
            }
        }
        Ok(whole)
    }

    /// Creates the folder, its state folders and lock files, where missing.
    fn make_folders(&self) -> Result<()> {
        create_private_dir(&self.dir)?;
        for state in ALL_STATES {
            create_private_dir(&self.state_dir(state))?;
        }
        for name in ["drain.lock", "drain.alive"] {
            crate::files::lock::open_lock_file(&self.dir.join(name))?;
        }
        fsync_dir(&self.dir)
    }

    /// Reserves `count` sequence numbers: the first, and the counter's lock
    /// to hold until the jobs using them are written (see [`lock::Reserved`]).
    pub fn reserve_sequence(&self, count: u64) -> Result<lock::Reserved> {
        lock::reserve_sequence(&self.dir.join("seq"), count)
    }

    /// Makes jobs durable in pending/. All or nothing visible on error.
    pub fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        self.enqueue_in(State::Pending, jobs)
    }

    /// Makes new jobs durable in a state folder (dead/ for a batch's own
    /// spool-overflow). All or nothing visible on a write error.
    pub fn enqueue_in(&self, state: State, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        self.ensure()?;
        let dir = self.state_dir(state);
        let sync_each = jobs.len() <= SYNC_EACH_LIMIT;
        let mut staged = Vec::with_capacity(jobs.len());
        let result = (|| {
            for job in jobs {
                let tmp = write_tmp(&dir, &job.meta.file_name(), &job.encode(), sync_each)?;
                staged.push((tmp, job.meta.file_name()));
            }
            if !sync_each {
                syncfs(&dir)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (tmp, _) in &staged {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
        for (tmp, name) in &staged {
            let to = dir.join(name);
            fs::rename(tmp, &to).with_context(|| {
                format!("failed to move `{}` to `{}`", tmp.display(), to.display())
            })?;
        }
        fsync_dir(&dir)
    }

    /// Replaces `path` atomically with `bytes` (tmp + fsync + rename).
    fn rewrite(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("job");
        let dir = path.parent().unwrap_or(&self.dir);
        let tmp = write_tmp(dir, name, bytes, true)?;
        fs::rename(&tmp, path).with_context(|| format!("failed to replace `{}`", path.display()))
    }

    /// Job file names in a state folder, sorted (emit order). Other entries
    /// are returned separately so the caller can quarantine them.
    /// A folder that is a symlink or another user's (or in one) is refused,
    /// not read.
    pub fn names(&self, state: State) -> Result<(Vec<String>, Vec<PathBuf>)> {
        let dir = self.state_dir(state);
        if !check_own_dir(&self.dir)? || !check_own_dir(&dir)? {
            return Ok(Default::default());
        }
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Default::default()),
            Err(e) => return Err(e).with_context(|| format!("failed to read `{}`", dir.display())),
        };
        let mut names = Vec::new();
        let mut strays = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("failed to read `{}`", dir.display()))?;
            match entry.file_name().to_str() {
                Some(n) if is_job_name(n) => names.push(n.to_string()),
                Some(n) if n.starts_with('.') => {} // a write in progress
                Some(n) if state == State::Quarantine && n.ends_with(".reason") => {}
                _ => strays.push(entry.path()),
            }
        }
        names.sort_unstable();
        Ok((names, strays))
    }

    /// Reads the metadata of the named jobs of a state folder.
    pub fn scan_names(&self, state: State, names: Vec<String>) -> Scan {
        let dir = self.state_dir(state);
        let metas = read_metas_parallel(&dir, &names);
        let mut scan = Scan::default();
        for (name, meta) in names.into_iter().zip(metas) {
            let meta =
                meta.and_then(|m| self.check_job(&name, &m).map(|()| m).map_err(Unread::Bad));
            match meta {
                Ok(meta) => scan.entries.push(Entry { name, state, meta }),
                Err(Unread::Gone) => {}
                Err(Unread::Bad(reason)) => scan.unreadable.push(Unreadable {
                    path: dir.join(name),
                    reason,
                }),
                Err(Unread::Io(error)) => scan
                    .io_errors
                    .push(format!("`{}`: {error}", dir.join(&name).display())),
            }
        }
        scan
    }

    /// Counts job files in a state folder.
    pub fn count(&self, state: State) -> Result<usize> {
        Ok(self.names(state)?.0.len())
    }

    /// Reads the metadata of every job in a state folder, in emit order;
    /// entries that are not job files are reported as unreadable.
    pub fn scan(&self, state: State) -> Result<Scan> {
        let (names, strays) = self.names(state)?;
        let mut scan = self.scan_names(state, names);
        scan.unreadable
            .extend(strays.into_iter().map(|path| Unreadable {
                path,
                reason: "not a job file name".into(),
            }));
        Ok(scan)
    }

    fn lock_path(&self, name: &str) -> Result<PathBuf> {
        self.ensure()?;
        Ok(self.dir.join(name))
    }

    /// Takes drain.lock if no other process holds it.
    pub fn try_lock_drain(&self) -> Result<Option<DrainLock>> {
        DrainLock::try_take(&self.lock_path("drain.lock")?)
    }

    /// Waits for drain.lock (held only while jobs move), at most
    /// [`lock::LOCK_WAIT`]; then fails naming the holder.
    pub fn lock_drain(&self) -> Result<DrainLock> {
        DrainLock::take(&self.lock_path("drain.lock")?)
    }

    /// Becomes the drain serving this SPEC, unless another one is.
    pub fn try_serve(&self) -> Result<Option<AliveLock>> {
        AliveLock::try_take(&self.lock_path("drain.alive")?)
    }

    /// Whether a drain is serving this SPEC right now. Only looks: the
    /// holder's pid in drain.alive stays as it is.
    pub fn is_served(&self) -> Result<bool> {
        Ok(crate::files::lock::try_lock(&self.lock_path("drain.alive")?)?.is_none())
    }

    /// Puts back what a drain that died left in active/ (see the module doc).
    /// Only for the holder of drain.alive. A file that is not a job is
    /// quarantined; one that cannot be is left where it is and reported
    /// ([`Recovery::unquarantined`]), and recovery goes on.
    pub fn recover(&self, _alive: &AliveLock, _lock: &DrainLock) -> Result<Recovery> {
        let (names, strays) = self.names(State::Active)?;
        let mut done = Recovery::default();
        let quarantine = |bad: Unreadable, done: &mut Recovery| match self.quarantine(&bad) {
            Ok(q) => done.quarantined.push(q),
            Err(e) => done.unquarantined.push(format!("{e:#}")),
        };
        for path in strays {
            let reason = "not a job file name".into();
            quarantine(Unreadable { path, reason }, &mut done);
        }
        for name in &names {
            let from = self.state_dir(State::Active).join(name);
            let settled = [State::Pending, State::Delivered, State::Dead]
                .into_iter()
                .any(|state| self.state_dir(state).join(name).exists());
            if settled {
                self.unlink(State::Active, name)?;
                continue;
            }
            let meta = read_meta(&from)
                .and_then(|m| self.check_job(name, &m).map(|()| m).map_err(Unread::Bad));
            let target = match meta {
                Ok(meta) if meta.state != State::Active => meta.state,
                Ok(_) => State::Pending,
                Err(Unread::Gone) => continue,
                Err(Unread::Bad(reason)) => {
                    quarantine(Unreadable { path: from, reason }, &mut done);
                    continue;
                }
                Err(Unread::Io(error)) => bail!("failed to read `{}`: {error}", from.display()),
            };
            let to = self.state_dir(target).join(name);
            fs::rename(&from, &to)
                .with_context(|| format!("failed to recover `{}`", from.display()))?;
            fsync_dir(&self.state_dir(target))?;
            done.recovered += 1;
        }
        Ok(done)
    }

    /// Removes tmp files their writers left behind when they died.
    pub fn sweep_tmp(&self, _lock: &DrainLock, now_ms: u64) {
        for state in State::JOBS {
            remove_stale_tmp(&self.state_dir(state), now_ms);
        }
    }

    /// Whether the disk holding the spool has room to settle the pending
    /// job `name`: settling writes a whole new copy of it beside the old
    /// one, and its attempt adds evidence, so its size plus
    /// [`SETTLE_MARGIN`] must be free. A job that could not be settled must
    /// not be sent: it would go out again at every run, its attempts never
    /// counted. The error is ENOSPC's (the drain stops taking jobs).
    pub fn room_to_settle(&self, name: &str) -> Result<()> {
        let Ok(size) =
            fs::symlink_metadata(self.state_dir(State::Pending).join(name)).map(|m| m.len())
        else {
            return Ok(()); // gone, or unreadable: the claim says which
        };
        let needed = size.saturating_add(SETTLE_MARGIN);
        match crate::files::free_bytes(&self.dir) {
            Some(free) if free < needed => Err(io::Error::from_raw_os_error(libc::ENOSPC))
                .with_context(|| {
                    format!(
                        "job {name} of {} not sent: settling it needs {needed} bytes free (its {size} bytes and 1 MiB) on the disk holding `{}`, which has {free}; it stays pending: free space, then run `spec-notify drain`",
                        self.spec,
                        self.dir.display()
                    )
                }),
            _ => Ok(()),
        }
    }

    /// Claims a pending job for delivery: link it into active/, then unlink
    /// the pending name. `Ok(Claim::Gone)` if emit's spool-overflow took it
    /// first; `Claim::Quarantined` if the file is not a job.
    pub fn claim(&self, alive: &AliveLock, name: &str) -> Result<Claim> {
        self.check_serving(alive)?;
        let from = self.state_dir(State::Pending).join(name);
        let to = self.state_dir(State::Active).join(name);
        let mut linked = fs::hard_link(&from, &to);
        if linked
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::AlreadyExists)
        {
            // A copy a settle left behind (it failed after its rename): only
            // this process writes active/, and never claims one job twice,
            // so the pending copy is the newer one.
            self.unlink(State::Active, name)?;
            linked = fs::hard_link(&from, &to);
        }
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claim::Gone),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to claim `{}`", from.display()));
            }
        }
        match fs::remove_file(&from) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.unlink(State::Active, name)?; // overflow moved it to dead/
                return Ok(Claim::Gone);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("failed to claim `{}`", from.display()));
            }
        }
        match self.read_checked(&to) {
            Ok(job) => Ok(Claim::Job(Box::new(job))),
            Err(Unread::Bad(reason)) => Ok(Claim::Quarantined(
                self.quarantine(&Unreadable { path: to, reason })?,
            )),
            Err(Unread::Gone) => Ok(Claim::Gone),
            Err(Unread::Io(error)) => {
                // Not the job's fault (EMFILE, EIO…): put it back for next time.
                let _ = fs::rename(&to, &from);
                bail!("failed to read job `{}`: {error}", to.display())
            }
        }
    }

    /// Writes a claimed job with its new metadata into the folder its
    /// `state` names, then removes the active copy.
    ///
    /// Going back to pending or to dead is fsynced: losing it could lose the
    /// event. Going to delivered is atomic but not fsynced: a power cut can at
    /// worst leave the job in active/, and recovery delivers it again, which
    /// at-least-once allows (receivers dedupe on X-SpecKit-Id).
    pub fn settle(&self, alive: &AliveLock, job: &Job) -> Result<(), SettleError> {
        let durable = job.meta.state != State::Delivered;
        let name = job.meta.file_name();
        let target_dir = self.state_dir(job.meta.state);
        let write = || -> Result<()> {
            self.check_serving(alive)?;
            let tmp = write_tmp(&target_dir, &name, &job.encode(), durable)?;
            let to = target_dir.join(&name);
            if let Err(e) = fs::rename(&tmp, &to) {
                let _ = fs::remove_file(&tmp);
                return Err(e).with_context(|| format!("failed to write `{}`", to.display()));
            }
            Ok(())
        };
        write().map_err(SettleError::Before)?;
        if durable {
            fsync_dir(&target_dir).map_err(SettleError::After)?;
        }
        self.unlink(State::Active, &name)
            .map_err(SettleError::After)
    }

    /// Returns a claimed job to pending unchanged (its subscription cannot
    /// send now: paused, circuit open, secret unset).
    pub fn unclaim(&self, alive: &AliveLock, name: &str) -> Result<()> {
        self.check_serving(alive)?;
        let from = self.state_dir(State::Active).join(name);
        let to = self.state_dir(State::Pending).join(name);
        fs::rename(&from, &to)
            .with_context(|| format!("failed to return `{}` to pending", from.display()))
    }

    /// Reads a whole job from a state folder.
    pub fn read(&self, state: State, name: &str) -> Result<Job> {
        let path = self.state_dir(state).join(name);
        self.read_checked(&path)
            .map_err(|e| files::unread_error(&path, e))
    }

    /// Reads a whole job of this SPEC, refusing what cannot be one.
    fn read_checked(&self, path: &Path) -> Result<Job, Unread> {
        let job = files::read_job_checked(path)?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        self.check_job(name, &job.meta).map_err(Unread::Bad)?;
        Ok(job)
    }

    /// A job file must be what its name and its folder say: its metadata
    /// names that file, and this SPEC. The SPEC is the folder's, never the
    /// field's (the field picks the evidence folder and the per-SPEC URL
    /// and secret downstream): a job that says otherwise is quarantined,
    /// not rewritten, like one whose name and metadata disagree, so that
    /// no event goes out under another SPEC's endpoint and secret.
    fn check_job(&self, name: &str, meta: &Meta) -> Result<(), String> {
        job::check_named(name, meta)?;
        if meta.spec == self.spec {
            return Ok(());
        }
        Err(format!(
            "metadata names SPEC {:?}, but the file is in the spool folder of {:?}: a job belongs to the SPEC whose folder holds it",
            meta.spec, self.spec
        ))
    }

    /// Moves a job between folders with updated metadata (replay, overflow
    /// undo): rewrite in place, then rename, then fsync the target.
    pub fn transfer(&self, _lock: &DrainLock, from: State, job: &Job) -> Result<()> {
        let name = job.meta.file_name();
        let src = self.state_dir(from).join(&name);
        self.rewrite(&src, &job.encode())?;
        let target_dir = self.state_dir(job.meta.state);
        let to = target_dir.join(&name);
        fs::rename(&src, &to)
            .with_context(|| format!("failed to move `{}` to `{}`", src.display(), to.display()))?;
        fsync_dir(&target_dir)
    }

    /// Deletes a settled (dead or delivered) job for good: discard, pruning.
    /// `Ok(false)`, and nothing removed, while the serving drain is still
    /// settling it (its active copy not unlinked yet): removing the settled
    /// copy then would let recovery bring the job back after a crash.
    pub fn remove_settled(&self, _lock: &DrainLock, state: State, name: &str) -> Result<bool> {
        let settling = fs::symlink_metadata(self.state_dir(State::Active).join(name)).is_ok();
        if settling {
            return Ok(false);
        }
        self.unlink(state, name).map(|()| true)
    }

    /// Drops a claimed job whose delivery is someone else's now (`relay`
    /// handed it to JetStream).
    pub fn release_claim(&self, alive: &AliveLock, name: &str) -> Result<()> {
        self.check_serving(alive)?;
        self.unlink(State::Active, name)
    }

    /// Claims and settles need this SPEC's drain.alive, not another's (nor
    /// relay.alive): it is what keeps every other process out of active/.
    fn check_serving(&self, alive: &AliveLock) -> Result<()> {
        if alive.serves(&self.dir) {
            return Ok(());
        }
        bail!(
            "internal error: moving jobs of `{}` without holding its drain.alive",
            self.dir.display()
        )
    }

    /// Unlinks a job file; one already gone is fine.
    fn unlink(&self, state: State, name: &str) -> Result<()> {
        let path = self.state_dir(state).join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to remove `{}`", path.display())),
        }
    }

    /// Sizes of the job files in a state folder, in emit order (for the
    /// evidence footprint cap).
    pub fn sizes(&self, state: State) -> Result<Vec<(String, u64)>> {
        let dir = self.state_dir(state);
        let (names, _) = self.names(state)?;
        Ok(names
            .into_iter()
            .map(|n| {
                let size = fs::symlink_metadata(dir.join(&n)).map_or(0, |m| m.len());
                (n, size)
            })
            .collect())
    }

    /// Finds the jobs whose delivery id `names` accepts (a whole id, or a
    /// prefix of one: the caller decides) in the given folders: (state,
    /// file name), each delivery id once, in the order of `states`.
    pub fn find(
        &self,
        states: &[State],
        names: impl Fn(&str) -> bool,
    ) -> Result<Vec<(State, String)>> {
        // The serving drain moves jobs with no lock (claim, settle): one
        // pass can miss a job that moved from a folder not listed yet to
        // one already listed. A job is always in some folder, so a miss is
        // checked twice more.
        for _ in 0..3 {
            let mut found: Vec<(State, String)> = Vec::new();
            for &state in states {
                let (listed, _) = self.names(state)?;
                for name in listed {
                    let Some(id) = delivery_id_of(&name).filter(|id| names(id)) else {
                        continue;
                    };
                    // Seen twice when it moved while the folders were listed.
                    if !found.iter().any(|(_, n)| delivery_id_of(n) == Some(id)) {
                        found.push((state, name));
                    }
                }
            }
            if !found.is_empty() {
                return Ok(found);
            }
        }
        Ok(Vec::new())
    }
}

/// What [`SpecSpool::recover`] did.
#[derive(Debug, Default)]
#[must_use]
pub struct Recovery {
    /// Jobs put back where they were going.
    pub recovered: usize,
    /// Files that were not jobs, now in quarantine.
    pub quarantined: Vec<Quarantined>,
    /// Files that were not jobs and could not be quarantined (why, for
    /// each): left in active/, never sent, tried again at the next recovery.
    pub unquarantined: Vec<String>,
}

impl Recovery {
    /// The quarantined files, or an error naming every file that could not
    /// be quarantined: for commands that stop at the first problem.
    pub fn into_quarantined(self) -> Result<Vec<Quarantined>> {
        if self.unquarantined.is_empty() {
            return Ok(self.quarantined);
        }
        bail!("{}", self.unquarantined.join("; "))
    }
}

/// What claiming a pending job found.
#[derive(Debug)]
#[must_use]
pub enum Claim {
    Job(Box<Job>),
    /// Someone else took it (spool-overflow, a replay): nothing to do.
    Gone,
    /// The file was not a job and is now in quarantine.
    Quarantined(Quarantined),
}

impl Claim {
    pub fn into_job(self) -> Option<Job> {
        match self {
            Claim::Job(job) => Some(*job),
            _ => None,
        }
    }
}

/// Reads many metadata lines on a few threads: list must stay fast at 100k jobs.
fn read_metas_parallel(dir: &Path, names: &[String]) -> Vec<Result<Meta, Unread>> {
    let dir_file = match File::open(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return names.iter().map(|_| Err(Unread::Gone)).collect();
        }
        // Fall back to whole paths, which report the error per file.
        Err(_) => return names.iter().map(|n| read_meta(&dir.join(n))).collect(),
    };
    let dir_file = &dir_file;
    let threads = if names.len() < 512 {
        1
    } else {
        std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8)
    };
    if threads == 1 {
        return names.iter().map(|n| read_meta_at(dir_file, n)).collect();
    }
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| {
                let handle = scope.spawn(move || {
                    part.iter()
                        .map(|n| read_meta_at(dir_file, n))
                        .collect::<Vec<_>>()
                });
                (part.len(), handle)
            })
            .collect();
        // A reader that panicked still yields one result per name, so names
        // and metadata stay paired.
        handles
            .into_iter()
            .flat_map(|(len, h)| {
                h.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(Unread::Bad("reader thread panicked".into())))
                        .collect()
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spool: &SpecSpool, seq: u64) -> Job {
        let meta = Meta::new(&spool.spec, "sub", "a.b.c", "k", seq, 1000);
        Job {
            meta,
            body: br#"{"x":1}"#.to_vec(),
        }
    }

    #[test]
    fn a_new_spec_folder_appears_whole_even_when_made_at_once_by_many() {
        let dir = tempfile::tempdir().unwrap();
        let root = Spool::new(dir.path());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| root.spec("S").ensure().unwrap());
            }
        });
        let spool = root.spec("S");
        for state in State::JOBS {
            assert!(spool.state_dir(state).is_dir(), "{state:?}");
        }
        assert!(spool.dir().join("drain.alive").is_file());
        let names: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["S"], "no staged folder left behind");
    }

    #[test]
    fn a_job_whose_spec_field_is_not_its_folders_is_quarantined_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let mut elsewhere = job(&spool, 1);
        elsewhere.meta.spec = "/srv/elsewhere".into();
        let mut other = job(&spool, 2);
        other.meta.spec = "T".into();
        spool
            .enqueue(&[elsewhere.clone(), other.clone(), job(&spool, 3)])
            .unwrap();
        let scan = spool.scan(State::Pending).unwrap();
        assert_eq!(scan.entries.len(), 1, "only the job of S");
        assert_eq!(scan.entries[0].meta.spec, "S");
        assert_eq!(scan.unreadable.len(), 2);
        assert!(
            scan.unreadable[0].reason.contains("\"/srv/elsewhere\""),
            "{}",
            scan.unreadable[0].reason
        );
        let refused = spool
            .read(State::Pending, &other.meta.file_name())
            .unwrap_err();
        assert!(format!("{refused:#}").contains("corrupt"), "{refused:#}");
        let alive = spool.try_serve().unwrap().unwrap();
        let claim = spool.claim(&alive, &elsewhere.meta.file_name()).unwrap();
        assert!(matches!(claim, Claim::Quarantined(_)), "{claim:?}");
        assert!(!dir.path().join("srv").exists());
        let held = spool.quarantined().unwrap();
        assert_eq!(held.len(), 1);
        assert!(held[0].1.contains("/srv/elsewhere"), "{held:?}");
    }

    #[test]
    fn sequence_reservations_are_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.ensure().unwrap();
        assert_eq!(spool.reserve_sequence(1).unwrap().first, 1);
        assert_eq!(spool.reserve_sequence(5).unwrap().first, 2);
        assert_eq!(spool.reserve_sequence(1).unwrap().first, 7);
    }

    #[test]
    fn claim_settle_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let jobs: Vec<Job> = (1..=3).map(|s| job(&spool, s)).collect();
        spool.enqueue(&jobs).unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        let alive = spool.try_serve().unwrap().unwrap();
        assert!(
            spool.try_lock_drain().unwrap().is_none(),
            "lock is exclusive"
        );

        let names = spool.names(State::Pending).unwrap().0;
        let mut first = spool.claim(&alive, &names[0]).unwrap().into_job().unwrap();
        first.meta.state = State::Delivered;
        spool.settle(&alive, &first).unwrap();
        // Claimed and never settled: a drain that died mid-delivery.
        spool.claim(&alive, &names[1]).unwrap().into_job().unwrap();
        assert_eq!(spool.count(State::Active).unwrap(), 1);
        assert_eq!(spool.recover(&alive, &lock).unwrap().recovered, 1);
        assert_eq!(spool.count(State::Pending).unwrap(), 2);
        assert_eq!(spool.count(State::Delivered).unwrap(), 1);
        assert!(
            spool
                .claim(&alive, "000000000099-gone.job")
                .unwrap()
                .into_job()
                .is_none()
        );
    }

    #[test]
    fn moves_need_this_specs_drain_alive() {
        let dir = tempfile::tempdir().unwrap();
        let root = Spool::new(dir.path());
        let (a, b) = (root.spec("A"), root.spec("B"));
        a.enqueue(&[job(&a, 1)]).unwrap();
        let alive_b = b.try_serve().unwrap().unwrap();
        let name = a.names(State::Pending).unwrap().0.remove(0);
        let refused = a.claim(&alive_b, &name).unwrap_err();
        assert!(
            format!("{refused:#}").contains("drain.alive"),
            "{refused:#}"
        );
        assert_eq!(a.count(State::Pending).unwrap(), 1, "nothing moved");
        let alive_a = a.try_serve().unwrap().unwrap();
        assert!(a.claim(&alive_a, &name).unwrap().into_job().is_some());
    }

    #[test]
    fn settle_errors_say_whether_the_job_was_settled() {
        let dir = tempfile::tempdir().unwrap();
        let root = Spool::new(dir.path());
        let (a, b) = (root.spec("A"), root.spec("B"));
        a.enqueue(&[job(&a, 1)]).unwrap();
        let alive_a = a.try_serve().unwrap().unwrap();
        let name = a.names(State::Pending).unwrap().0.remove(0);
        let mut claimed = a.claim(&alive_a, &name).unwrap().into_job().unwrap();
        claimed.meta.state = State::Delivered;
        let alive_b = b.try_serve().unwrap().unwrap();
        let refused = a.settle(&alive_b, &claimed).unwrap_err();
        assert!(matches!(refused, SettleError::Before(_)), "{refused:?}");
        assert_eq!(a.count(State::Active).unwrap(), 1, "nothing settled");
        // Through a queue backend's anyhow error and back, the kind holds.
        let after = anyhow::Error::from(SettleError::After(anyhow::anyhow!("fsync failed")));
        assert!(
            format!("{after:#}").ends_with("SPEC: fsync failed"),
            "{after:#}"
        );
        assert!(matches!(SettleError::of(after), SettleError::After(_)));
        let other = SettleError::of(anyhow::anyhow!("broker down"));
        assert!(matches!(&other, SettleError::Before(e) if e.to_string() == "broker down"));
        assert_eq!(format!("{other}"), "broker down", "shown as it was");
    }

    #[test]
    fn a_claim_meeting_a_copy_a_failed_settle_left_replaces_it() {
        // A settle that failed after its rename leaves the old active copy;
        // the job (a retry, back in pending) must still be claimable.
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1)]).unwrap();
        let alive = spool.try_serve().unwrap().unwrap();
        let name = spool.names(State::Pending).unwrap().0.remove(0);
        fs::write(spool.state_dir(State::Active).join(&name), b"stale").unwrap();
        let claimed = spool.claim(&alive, &name).unwrap().into_job().unwrap();
        assert_eq!(
            claimed.meta.sequence, 1,
            "the pending copy, not the stale one"
        );
        assert_eq!(spool.count(State::Pending).unwrap(), 0);
        assert_eq!(spool.count(State::Active).unwrap(), 1);
    }

    #[test]
    fn a_job_being_settled_is_not_discarded_so_a_crash_cannot_bring_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1)]).unwrap();
        let alive = spool.try_serve().unwrap().unwrap();
        let name = spool.names(State::Pending).unwrap().0.remove(0);
        let mut dead = spool.claim(&alive, &name).unwrap().into_job().unwrap();
        dead.meta.state = State::Dead;
        // settle up to its rename: the dead copy is there, the active one too
        let dead_dir = spool.state_dir(State::Dead);
        let tmp = write_tmp(&dead_dir, &name, &dead.encode(), true).unwrap();
        fs::rename(tmp, dead_dir.join(&name)).unwrap();
        let lock = spool
            .try_lock_drain()
            .unwrap()
            .expect("settle holds no drain.lock");
        assert!(!spool.remove_settled(&lock, State::Dead, &name).unwrap());
        // kill -9 before settle's unlink, then the next drain recovers
        drop((lock, alive));
        let alive = spool.try_serve().unwrap().unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        let _ = spool.recover(&alive, &lock).unwrap();
        assert_eq!(spool.count(State::Pending).unwrap(), 0, "not brought back");
        assert_eq!(spool.count(State::Dead).unwrap(), 1);
        assert!(spool.remove_settled(&lock, State::Dead, &name).unwrap());
        assert_eq!(spool.count(State::Dead).unwrap(), 0);
    }

    #[test]
    fn recovery_keeps_the_settled_copy_after_a_crash_between_rename_and_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1), job(&spool, 2)]).unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        let alive = spool.try_serve().unwrap().unwrap();
        let names = spool.names(State::Pending).unwrap().0;
        let mut settled = spool.claim(&alive, &names[0]).unwrap().into_job().unwrap();
        settled.meta.state = State::Delivered;
        settled.meta.attempts = 1;
        spool.settle(&alive, &settled).unwrap();
        // The crash: the active copy is back, as if settle's unlink never ran.
        fs::write(
            spool.state_dir(State::Active).join(&names[0]),
            job(&spool, 1).encode(),
        )
        .unwrap();
        // A claim that died after its link: the job is in pending and active.
        fs::hard_link(
            spool.state_dir(State::Pending).join(&names[1]),
            spool.state_dir(State::Active).join(&names[1]),
        )
        .unwrap();
        assert_eq!(
            spool.recover(&alive, &lock).unwrap().recovered,
            0,
            "both active files were stale copies"
        );
        assert_eq!(spool.count(State::Active).unwrap(), 0);
        assert_eq!(
            spool.scan(State::Delivered).unwrap().entries[0]
                .meta
                .attempts,
            1,
            "the settled copy won"
        );
        assert_eq!(spool.count(State::Pending).unwrap(), 1);
    }

    #[test]
    fn sweep_removes_only_stale_hidden_tmp_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1)]).unwrap();
        let pending = spool.state_dir(State::Pending);
        let stale = pending.join(".000000000009-x.job.1.0.tmp");
        let fresh = pending.join(".000000000010-y.job.1.1.tmp");
        for path in [&stale, &fresh] {
            fs::write(path, b"half a job").unwrap();
        }
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(an_hour_ago)
            .unwrap();
        assert_eq!(
            spool.count(State::Pending).unwrap(),
            1,
            "hidden files are never jobs"
        );
        let lock = spool.try_lock_drain().unwrap().unwrap();
        spool.sweep_tmp(&lock, crate::clock::now_ms());
        assert!(!stale.exists(), "a dead writer's file is removed");
        assert!(
            fresh.exists(),
            "a write that may be in progress is left alone"
        );
        assert_eq!(spool.count(State::Pending).unwrap(), 1);
    }

    #[test]
    fn quarantine_never_overwrites_an_earlier_file() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.ensure().unwrap();
        let pending = spool.state_dir(State::Pending);
        for content in ["first", "second"] {
            fs::write(pending.join("junk.txt"), content).unwrap();
            spool
                .quarantine(&Unreadable {
                    path: pending.join("junk.txt"),
                    reason: content.into(),
                })
                .unwrap();
        }
        let q = spool.state_dir(State::Quarantine);
        assert_eq!(fs::read_to_string(q.join("junk.txt")).unwrap(), "first");
        assert_eq!(fs::read_to_string(q.join("junk.txt.1")).unwrap(), "second");
        assert!(
            fs::read_to_string(q.join("junk.txt.1.reason"))
                .unwrap()
                .starts_with("second")
        );
    }

    #[test]
    fn find_returns_each_job_its_test_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let (a, b) = (job(&spool, 1), job(&spool, 2));
        spool.enqueue(&[a.clone(), b.clone()]).unwrap();
        let id = a.meta.delivery_id.clone();
        let found = spool
            .find(&[State::Dead, State::Pending], |i| i == id)
            .unwrap();
        assert_eq!(found, [(State::Pending, a.meta.file_name())]);
        assert_eq!(spool.find(&[State::Pending], |_| true).unwrap().len(), 2);
        assert!(spool.find(&[State::Dead], |_| true).unwrap().is_empty());
    }

    #[test]
    fn overflow_leaves_jobs_alone_while_replay_or_discard_holds_drain_lock() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1), job(&spool, 2)]).unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        // emit never waits for the lock: nothing moves, and it says why.
        let shed = spool.shed_overflow(2, 1, 5).unwrap();
        assert!(shed.moved.is_empty());
        assert!(
            shed.warnings[0].contains("next emit"),
            "{:?}",
            shed.warnings
        );
        assert_eq!(spool.count(State::Dead).unwrap(), 0);
        drop(lock);
        assert_eq!(spool.shed_overflow(2, 1, 5).unwrap().moved.len(), 1);
        assert_eq!(spool.count(State::Dead).unwrap(), 1);
    }

    #[test]
    fn overflow_moves_oldest_to_dead_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool
            .enqueue(&(1..=4).map(|s| job(&spool, s)).collect::<Vec<_>>())
            .unwrap();
        let shed = spool.shed_overflow(4, 2, 5).unwrap();
        assert_eq!(shed.moved.len(), 2);
        let dead = spool.scan(State::Dead).unwrap();
        assert_eq!(
            dead.entries
                .iter()
                .map(|e| e.meta.sequence)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(
            dead.entries[0].meta.dead_reason.as_deref(),
            Some("spool-overflow")
        );
    }

    #[test]
    fn scan_reports_unreadable_files() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1)]).unwrap();
        let pending = spool.state_dir(State::Pending);
        fs::write(pending.join("000000000002-bad.job"), b"garbage").unwrap();
        fs::write(pending.join("notes.txt"), b"x").unwrap();
        let scan = spool.scan(State::Pending).unwrap();
        assert_eq!(scan.entries.len(), 1);
        assert_eq!(scan.unreadable.len(), 2);
        let moved = spool.quarantine(&scan.unreadable[0]).unwrap().to;
        assert!(moved.exists());
        assert!(
            spool
                .state_dir(State::Quarantine)
                .join(format!(
                    "{}.reason",
                    moved.file_name().unwrap().to_str().unwrap()
                ))
                .exists()
        );
    }

    #[test]
    fn batch_enqueue_uses_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.ensure().unwrap();
        let before = crate::files::syncs();
        let jobs: Vec<Job> = (1..=50).map(|s| job(&spool, s)).collect();
        spool.enqueue(&jobs).unwrap();
        let batch = crate::files::syncs() - before;
        assert_eq!(
            batch,
            crate::files::Syncs {
                files: 0,
                filesystems: 1,
                folders: 1
            },
            "50 jobs: one syncfs and one fsync of pending/"
        );
        assert_eq!(spool.count(State::Pending).unwrap(), 50);
        let before = crate::files::syncs();
        spool.enqueue(&[job(&spool, 51), job(&spool, 52)]).unwrap();
        let few = crate::files::syncs() - before;
        assert_eq!(
            (few.files, few.filesystems, few.folders),
            (2, 0, 1),
            "a few jobs: one fsync each"
        );
        let leftovers = fs::read_dir(spool.state_dir(State::Pending))
            .unwrap()
            .flatten();
        assert_eq!(
            leftovers
                .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
                .count(),
            0
        );
    }
}
