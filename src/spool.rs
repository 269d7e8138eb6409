//! # The spool: jobs on disk that survive any crash
//!
//! One folder per SPEC under `spool_dir`:
//!
//! ```text
//! <spool_dir>/<SPEC-ID>/
//!   seq          sequence counter, 20 digits; changed only under File::lock
//!   drain.alive  held by the one drain serving this SPEC, for as long as it
//!                serves it (working or waiting for retries); emit starts no
//!                drain while it is held
//!   drain.lock   held while jobs are moved: by that drain while it claims
//!                and settles, by replay and discard while they requeue or
//!                delete
//!   pending/     jobs waiting for their (next) attempt
//!   active/      jobs claimed by the drain that holds drain.lock
//!   delivered/   delivered (or dry-run) jobs, kept for list/replay until pruned
//!   dead/        dead-lettered jobs, kept until replayed or discarded
//!   quarantine/  files that could not be parsed, with a `.reason` beside each
//! ```
//!
//! A job file is named `<sequence:012>-<delivery-id>.job` (so a name sort is
//! emit order) and holds two lines: the job's metadata as one line of compact
//! JSON ([`Meta`]), then the envelope, byte for byte what is signed and sent.
//! Readers that only need the metadata (list, scheduling) read the first line.
//!
//! ## Invariants
//! - A job is in exactly one of pending/, active/, delivered/, dead/; its name
//!   never changes. The folder says where it is; inside active/ the `state`
//!   field says where it was going.
//! - Every write goes to a hidden `.<name>.<pid>.<n>.tmp` in the folder the
//!   file is meant for, is fsynced, and is renamed within that folder (a
//!   same-folder rename never takes the kernel's filesystem-wide rename lock,
//!   which serialised concurrent deliveries). Readers skip dot-files; the next
//!   drain removes stale ones. Creating jobs ends with an fsync of `pending/`.
//! - Only a process holding `drain.lock` claims (link pending → active,
//!   then unlink the pending name), settles (write the new copy into the
//!   target folder, then unlink the active copy), requeues or discards. On
//!   taking the lock it runs [`recover`]: an active file whose name is also in
//!   pending/, delivered/ or dead/ is the older copy and is removed; any other
//!   belonged to a drain that died and goes back to pending (or to the folder
//!   its `state` names).
//! - `emit` never takes drain.lock. Its only move is spool-overflow: rename
//!   pending → dead first, then rewrite the dead copy in place with the
//!   reason. A drain that linked the job meanwhile finds the pending name gone
//!   when it unlinks it, and drops its claim.
//!
//! A kill -9 at any instant therefore leaves every job pending, active (to be
//! recovered), delivered or dead, and every visible file complete.
//!
//! [`recover`]: SpecSpool::recover

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

pub const JOB_EXT: &str = "job";
const META_VERSION: u32 = 1;
/// Up to this many jobs are fsynced one by one; above it, one syncfs is cheaper.
const SYNC_EACH_LIMIT: usize = 8;
/// Tmp files older than this belong to a dead writer.
const STALE_TMP_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Active,
    Delivered,
    Dead,
    Quarantine,
}

impl State {
    pub const JOBS: [State; 4] = [State::Pending, State::Active, State::Delivered, State::Dead];

    pub fn dir_name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Active => "active",
            State::Delivered => "delivered",
            State::Dead => "dead",
            State::Quarantine => "quarantine",
        }
    }
}

/// A job's metadata: the first line of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub v: u32,
    pub delivery_id: String,
    pub spec: String,
    pub subscription: String,
    pub event_type: String,
    pub idempotency_key: String,
    pub sequence: u64,
    pub created_at_ms: u64,
    /// Where the job belongs (pending, delivered or dead).
    pub state: State,
    pub attempts: u32,
    pub next_attempt_at_ms: u64,
    #[serde(default)]
    pub last_attempt_at_ms: Option<u64>,
    #[serde(default)]
    pub last_status: Option<u16>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// `exhausted`, `rejected`, `spool-overflow`, `subscription-removed`.
    #[serde(default)]
    pub dead_reason: Option<String>,
    /// What an operator should do about a dead job.
    #[serde(default)]
    pub hint: Option<String>,
    /// When the job was delivered or dead-lettered.
    #[serde(default)]
    pub finished_at_ms: Option<u64>,
    #[serde(default)]
    pub replays: u32,
}

impl Meta {
    pub fn new(
        spec: &str,
        subscription: &str,
        event_type: &str,
        idempotency_key: &str,
        sequence: u64,
        now_ms: u64,
    ) -> Meta {
        Meta {
            v: META_VERSION,
            delivery_id: uuid::Uuid::new_v4().to_string(),
            spec: spec.into(),
            subscription: subscription.into(),
            event_type: event_type.into(),
            idempotency_key: idempotency_key.into(),
            sequence,
            created_at_ms: now_ms,
            state: State::Pending,
            attempts: 0,
            next_attempt_at_ms: now_ms,
            last_attempt_at_ms: None,
            last_status: None,
            last_error: None,
            dead_reason: None,
            hint: None,
            finished_at_ms: None,
            replays: 0,
        }
    }

    pub fn file_name(&self) -> String {
        format!("{:012}-{}.{JOB_EXT}", self.sequence, self.delivery_id)
    }
}

/// A whole job: metadata and the exact envelope bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub meta: Meta,
    pub body: Vec<u8>,
}

impl Job {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(&self.meta).expect("metadata always serialises");
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out
    }

    pub fn decode(bytes: &[u8]) -> std::result::Result<Job, String> {
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("no metadata line")?;
        let meta = decode_meta(&bytes[..newline])?;
        let body = bytes[newline + 1..].to_vec();
        if serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err("envelope is not valid JSON".into());
        }
        Ok(Job { meta, body })
    }
}

fn decode_meta(line: &[u8]) -> std::result::Result<Meta, String> {
    let meta: Meta = serde_json::from_slice(line).map_err(|e| format!("metadata: {e}"))?;
    if meta.v != META_VERSION {
        return Err(format!("metadata version {} is not supported", meta.v));
    }
    Ok(meta)
}

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
            let is_spec =
                entry.path().join("seq").exists() || entry.path().join("pending").is_dir();
            if let (true, Some(name)) = (is_spec, entry.file_name().to_str()) {
                specs.push(name.to_string());
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

/// Proof that this process holds a SPEC's drain.lock; released on drop.
#[derive(Debug)]
pub struct DrainLock {
    _file: File,
}

/// Proof that this process is the drain serving a SPEC (drain.alive);
/// released on drop.
#[derive(Debug)]
pub struct AliveLock {
    _file: File,
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

    /// Creates the SPEC's folders if missing (cheap when they exist).
    pub fn ensure(&self) -> Result<()> {
        if self.state_dir(State::Quarantine).is_dir() {
            return Ok(());
        }
        fs::create_dir_all(&self.dir)
            .with_context(|| format!("failed to create spool folder `{}`", self.dir.display()))?;
        for sub in ["pending", "active", "delivered", "dead", "quarantine"] {
            let path = self.dir.join(sub);
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("failed to create `{}`", path.display()));
                }
            }
        }
        for name in ["drain.lock", "drain.alive"] {
            let lock = self.dir.join(name);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .with_context(|| format!("failed to create `{}`", lock.display()))?;
        }
        fsync_dir(&self.dir)?;
        if let Some(parent) = self.dir.parent() {
            fsync_dir(parent)?;
        }
        Ok(())
    }

    /// Reserves `count` sequence numbers and returns the first. Safe across
    /// processes: the counter file is locked while it is read and rewritten.
    pub fn reserve_sequence(&self, count: u64) -> Result<u64> {
        let path = self.dir.join("seq");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("failed to open sequence file `{}`", path.display()))?;
        file.lock()
            .with_context(|| format!("failed to lock `{}`", path.display()))?;
        let mut text = String::new();
        (&file)
            .read_to_string(&mut text)
            .with_context(|| format!("failed to read `{}`", path.display()))?;
        let last: u64 = match text.trim() {
            "" => 0,
            t => t.parse().with_context(|| {
                format!("sequence file `{}` is corrupt ({t:?}); write the highest sequence used into it", path.display())
            })?,
        };
        // Fixed width, so an in-place overwrite never leaves stale digits.
        file.write_all_at(format!("{:020}\n", last + count).as_bytes(), 0)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("failed to write `{}`", path.display()))?;
        Ok(last + 1)
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
        let pending = self.state_dir(state);
        let sync_each = jobs.len() <= SYNC_EACH_LIMIT;
        let mut staged = Vec::with_capacity(jobs.len());
        let result = (|| {
            for job in jobs {
                let tmp = write_tmp(&pending, &job.meta.file_name(), &job.encode(), sync_each)?;
                staged.push((tmp, job.meta.file_name()));
            }
            if !sync_each {
                syncfs(&pending)?;
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
            let to = pending.join(name);
            fs::rename(tmp, &to).with_context(|| {
                format!("failed to move `{}` to `{}`", tmp.display(), to.display())
            })?;
        }
        fsync_dir(&pending)
    }

    /// Replaces `path` atomically with `bytes` (tmp + fsync + rename).
    fn rewrite(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let name = path.file_name().and_then(OsStr::to_str).unwrap_or("job");
        let dir = path.parent().unwrap_or(&self.dir);
        let tmp = write_tmp(dir, name, bytes, true)?;
        fs::rename(&tmp, path).with_context(|| format!("failed to replace `{}`", path.display()))
    }

    /// Job file names in a state folder, sorted (emit order). Other files are
    /// returned separately so the caller can quarantine them.
    pub fn names(&self, state: State) -> Result<(Vec<String>, Vec<PathBuf>)> {
        let dir = self.state_dir(state);
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

    /// Reads the metadata of every job in a state folder, in emit order.
    pub fn scan(&self, state: State) -> Result<Scan> {
        let (names, strays) = self.names(state)?;
        let mut scan = self.scan_names(state, names);
        for path in strays.into_iter().filter(|p| !p.is_dir()) {
            scan.unreadable.push(Unreadable {
                path,
                reason: "not a job file name".into(),
            });
        }
        Ok(scan)
    }

    /// Quarantines an unreadable file, writing the reason beside it. Returns
    /// the new path.
    pub fn quarantine(&self, bad: &Unreadable) -> Result<PathBuf> {
        let name = bad
            .path
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or("unnamed");
        let dir = self.state_dir(State::Quarantine);
        fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create `{}`", dir.display()))?;
        let mut to = dir.join(name);
        for n in 1.. {
            if !to.exists()
                && !dir
                    .join(format!(
                        "{}.reason",
                        to.file_name().and_then(OsStr::to_str).unwrap_or(name)
                    ))
                    .exists()
            {
                break;
            }
            to = dir.join(format!("{name}.{n}"));
        }
        let name = to
            .file_name()
            .and_then(OsStr::to_str)
            .unwrap_or(name)
            .to_string();
        fs::rename(&bad.path, &to).with_context(|| {
            format!(
                "failed to quarantine `{}` to `{}`",
                bad.path.display(),
                to.display()
            )
        })?;
        let reason_path = dir.join(format!("{name}.reason"));
        let _ = fs::write(
            &reason_path,
            format!("{}\nfrom {}\n", bad.reason, bad.path.display()),
        );
        fsync_dir(&dir)?;
        Ok(to)
    }

    /// Moves the oldest pending jobs to dead/ (reason `spool-overflow`) so that
    /// `incoming` new jobs fit under `max`. Returns the delivery ids moved.
    /// Each is claimed by a rename (a drain's claim of the same job fails
    /// cleanly), then rewritten with its reason; many at once share one sync.
    pub fn shed_overflow(&self, max: usize, incoming: usize, now_ms: u64) -> Result<Vec<String>> {
        let (names, _) = self.names(State::Pending)?;
        let excess = (names.len() + incoming).saturating_sub(max);
        let dead = self.state_dir(State::Dead);
        let mut claimed = Vec::new();
        for name in names.iter().take(excess) {
            let from = self.state_dir(State::Pending).join(name);
            match fs::rename(&from, dead.join(name)) {
                Ok(()) => claimed.push(name),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // a drain claimed it first
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("failed to move `{}` to dead-letter", from.display())
                    });
                }
            }
        }
        let sync_each = claimed.len() <= SYNC_EACH_LIMIT;
        let mut rewritten = Vec::new();
        for name in claimed {
            let path = dead.join(name);
            let mut job = match read_job(&path) {
                Ok(job) => job,
                Err(e) => {
                    // It is in dead/ already; its reason just cannot be added.
                    eprintln!("spec-notify: warning: {e:#}; moved to dead-letter as it is");
                    continue;
                }
            };
            mark_overflow(&mut job.meta, max, now_ms);
            rewritten.push((
                write_tmp(&dead, name, &job.encode(), sync_each)?,
                path,
                job.meta.delivery_id,
            ));
        }
        if !sync_each {
            syncfs(&dead)?;
        }
        let mut moved = Vec::new();
        for (tmp, path, id) in rewritten {
            fs::rename(&tmp, &path)
                .with_context(|| format!("failed to replace `{}`", path.display()))?;
            moved.push(id);
        }
        if !moved.is_empty() {
            fsync_dir(&dead)?;
        }
        Ok(moved)
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        self.ensure()?;
        let path = self.dir.join(name);
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("failed to open `{}`", path.display()))
    }

    fn try_lock_file(&self, name: &str) -> Result<Option<File>> {
        let file = self.lock_file(name)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(e)
                .with_context(|| format!("failed to lock `{}`", self.dir.join(name).display())),
        }
    }

    /// Takes drain.lock if no other process holds it.
    pub fn try_lock_drain(&self) -> Result<Option<DrainLock>> {
        Ok(self
            .try_lock_file("drain.lock")?
            .map(|file| DrainLock { _file: file }))
    }

    /// Waits for drain.lock: it is held only while jobs are being moved.
    pub fn lock_drain(&self) -> Result<DrainLock> {
        let file = self.lock_file("drain.lock")?;
        file.lock().with_context(|| {
            format!("failed to lock `{}`", self.dir.join("drain.lock").display())
        })?;
        Ok(DrainLock { _file: file })
    }

    /// Becomes the drain serving this SPEC, unless another one is.
    pub fn try_serve(&self) -> Result<Option<AliveLock>> {
        Ok(self
            .try_lock_file("drain.alive")?
            .map(|file| AliveLock { _file: file }))
    }

    /// Whether a drain is serving this SPEC right now.
    pub fn is_served(&self) -> Result<bool> {
        Ok(self.try_serve()?.is_none())
    }

    /// Puts back what a drain that died left in active/ (see the module doc).
    /// Returns how many jobs were recovered.
    pub fn recover(&self, lock: &DrainLock) -> Result<usize> {
        let (names, _) = self.names(State::Active)?;
        let mut recovered = 0;
        for name in &names {
            let from = self.state_dir(State::Active).join(name);
            let settled = [State::Pending, State::Delivered, State::Dead]
                .into_iter()
                .any(|state| self.state_dir(state).join(name).exists());
            if settled {
                self.remove(lock, State::Active, name)?;
                continue;
            }
            let target = match read_meta(&from) {
                Ok(meta) if meta.state != State::Active => meta.state,
                Ok(_) => State::Pending,
                Err(Unread::Gone) => continue,
                Err(Unread::Bad(reason)) => {
                    self.quarantine(&Unreadable { path: from, reason })?;
                    continue;
                }
                Err(Unread::Io(error)) => bail!("failed to read `{}`: {error}", from.display()),
            };
            let to = self.state_dir(target).join(name);
            fs::rename(&from, &to)
                .with_context(|| format!("failed to recover `{}`", from.display()))?;
            fsync_dir(&self.state_dir(target))?;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Removes tmp files their writers left behind when they died.
    pub fn sweep_tmp(&self, _lock: &DrainLock, now_ms: u64) {
        for state in [State::Pending, State::Active, State::Delivered, State::Dead] {
            remove_stale_tmp(&self.state_dir(state), now_ms);
        }
    }

    /// Claims a pending job for delivery: link it into active/, then unlink
    /// the pending name. `None` if emit's spool-overflow took it first.
    pub fn claim(&self, lock: &DrainLock, name: &str) -> Result<Option<Job>> {
        let from = self.state_dir(State::Pending).join(name);
        let to = self.state_dir(State::Active).join(name);
        match fs::hard_link(&from, &to) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to claim `{}`", from.display()));
            }
        }
        match fs::remove_file(&from) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.remove(lock, State::Active, name)?; // overflow moved it to dead/
                return Ok(None);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("failed to claim `{}`", from.display()));
            }
        }
        let bytes = match fs::read(&to) {
            Ok(bytes) => bytes,
            Err(e) => {
                // Not the job's fault (EMFILE, EIO…): put it back for next time.
                let _ = fs::rename(&to, &from);
                return Err(e).with_context(|| format!("failed to read job `{}`", to.display()));
            }
        };
        match Job::decode(&bytes) {
            Ok(job) => Ok(Some(job)),
            Err(reason) => {
                self.quarantine(&Unreadable { path: to, reason })?;
                Ok(None)
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
    pub fn settle(&self, lock: &DrainLock, job: &Job) -> Result<()> {
        let durable = job.meta.state != State::Delivered;
        let name = job.meta.file_name();
        let target_dir = self.state_dir(job.meta.state);
        let tmp = write_tmp(&target_dir, &name, &job.encode(), durable)?;
        let to = target_dir.join(&name);
        fs::rename(&tmp, &to).with_context(|| format!("failed to write `{}`", to.display()))?;
        if durable {
            fsync_dir(&target_dir)?;
        }
        self.remove(lock, State::Active, &name)
    }

    /// Returns a claimed job to pending unchanged (e.g. its secret is missing).
    pub fn unclaim(&self, _lock: &DrainLock, name: &str) -> Result<()> {
        let from = self.state_dir(State::Active).join(name);
        let to = self.state_dir(State::Pending).join(name);
        fs::rename(&from, &to)
            .with_context(|| format!("failed to return `{}` to pending", from.display()))
    }

    /// Reads a whole job from a state folder.
    pub fn read(&self, state: State, name: &str) -> Result<Job> {
        read_job(&self.state_dir(state).join(name))
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

    /// Deletes a job file for good (discard, pruning delivered jobs).
    pub fn remove(&self, _lock: &DrainLock, state: State, name: &str) -> Result<()> {
        let path = self.state_dir(state).join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("failed to remove `{}`", path.display())),
        }
    }

    /// Finds a job by delivery id in the given folders.
    /// The whole id must match: a fragment of one finds nothing.
    pub fn find(&self, delivery_id: &str, states: &[State]) -> Result<Option<(State, String)>> {
        for &state in states {
            let (names, _) = self.names(state)?;
            if let Some(name) = names
                .into_iter()
                .find(|n| delivery_id_of(n) == Some(delivery_id))
            {
                return Ok(Some((state, name)));
            }
        }
        Ok(None)
    }
}

/// Writes `bytes` to a new hidden file in `dir` (fsynced if `sync`) and
/// returns its path; the caller renames it into place in the same folder.
fn write_tmp(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("failed to create `{}`", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("failed to write `{}`", path.display()))?;
    if sync {
        file.sync_all()
            .with_context(|| format!("failed to fsync `{}`", path.display()))?;
    }
    Ok(path)
}

/// Removes hidden tmp files older than [`STALE_TMP_MS`]: their writer died.
fn remove_stale_tmp(dir: &Path, now_ms: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let is_tmp = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(crate::clock::to_millis);
        if is_tmp && modified.is_ok_and(|m| now_ms.saturating_sub(m) > STALE_TMP_MS) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The delivery id in a job file name `<sequence:012>-<id>.job`.
pub fn delivery_id_of(name: &str) -> Option<&str> {
    name.strip_suffix(".job")
        .filter(|_| is_job_name(name))
        .map(|stem| &stem[13..])
}

/// Marks a job dead for spool-overflow, with what to do about it.
pub fn mark_overflow(meta: &mut Meta, max: usize, now_ms: u64) {
    meta.state = State::Dead;
    meta.dead_reason = Some("spool-overflow".into());
    meta.finished_at_ms = Some(now_ms);
    meta.hint = Some(format!(
        "the spool held {max} pending jobs (max_spool_jobs); raise it or fix delivery, then run `spec-notify replay {} --delivery-id {}`",
        meta.spec, meta.delivery_id
    ));
}

fn is_job_name(name: &str) -> bool {
    name.strip_suffix(".job").is_some_and(|stem| {
        stem.len() > 13
            && stem.as_bytes()[12] == b'-'
            && stem[..12].bytes().all(|b| b.is_ascii_digit())
    })
}

pub fn read_job(path: &Path) -> Result<Job> {
    let bytes =
        fs::read(path).with_context(|| format!("failed to read job `{}`", path.display()))?;
    Job::decode(&bytes).map_err(|e| anyhow::anyhow!("job `{}` is corrupt: {e}", path.display()))
}

enum Unread {
    Gone,
    /// The file's content is not a job: quarantine it.
    Bad(String),
    /// The file could not be read right now (EMFILE, EIO…): leave it be.
    Io(String),
}

/// Reads only the metadata line of a job file.
fn read_meta(path: &Path) -> std::result::Result<Meta, Unread> {
    match File::open(path) {
        Ok(file) => read_meta_from(file),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Unread::Gone),
        Err(e) => Err(Unread::Io(format!("cannot open: {e}"))),
    }
}

/// Reads the metadata line of `name` inside the open folder `dir`. `openat`
/// resolves one path component instead of the whole spool path per file,
/// which is most of the kernel time when list reads 100k jobs.
fn read_meta_at(dir: &File, name: &str) -> std::result::Result<Meta, Unread> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let Ok(c_name) = std::ffi::CString::new(name) else {
        return Err(Unread::Bad("file name holds a NUL byte".into()));
    };
    // SAFETY: `dir` is an open descriptor and `c_name` a NUL-terminated string,
    // both alive for the call; the returned descriptor is owned by the File.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c_name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::NotFound => Err(Unread::Gone),
            _ => Err(Unread::Io(format!("cannot open: {e}"))),
        };
    }
    // SAFETY: `fd` was just opened above and nothing else owns it.
    read_meta_from(unsafe { File::from_raw_fd(fd) })
}

/// The first line of an open job file, parsed. One read of a stack buffer
/// covers a typical metadata line; longer ones grow a heap buffer.
fn read_meta_from(mut file: File) -> std::result::Result<Meta, Unread> {
    let mut first = [0u8; 2048];
    let mut filled = 0;
    while filled < first.len() {
        match file.read(&mut first[filled..]) {
            Ok(0) => break,
            Ok(n) => {
                if let Some(nl) = first[filled..filled + n].iter().position(|&b| b == b'\n') {
                    return decode_meta(&first[..filled + nl]).map_err(Unread::Bad);
                }
                filled += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Unread::Io(format!("cannot read: {e}"))),
        }
    }
    if filled < first.len() {
        return Err(Unread::Bad("no metadata line".into()));
    }
    let mut buf = first.to_vec();
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match file.read(&mut buf[filled..]) {
            Ok(0) => return Err(Unread::Bad("no metadata line".into())),
            Ok(n) => {
                if let Some(nl) = buf[filled..filled + n].iter().position(|&b| b == b'\n') {
                    return decode_meta(&buf[..filled + nl]).map_err(Unread::Bad);
                }
                filled += n;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Unread::Bad(format!("cannot read: {e}"))),
        }
    }
}

/// Reads many metadata lines on a few threads: list must stay fast at 100k jobs.
fn read_metas_parallel(dir: &Path, names: &[String]) -> Vec<std::result::Result<Meta, Unread>> {
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

/// fsync a directory so that renames into it survive a power cut.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("failed to fsync folder `{}`", dir.display()))
}

/// Flushes the whole filesystem holding `dir`: one call instead of an fsync per file.
fn syncfs(dir: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(dir).with_context(|| format!("failed to open `{}`", dir.display()))?;
    // SAFETY: syncfs takes a valid open descriptor and has no other preconditions.
    let rc = unsafe { libc::syncfs(file.as_raw_fd()) };
    if rc != 0 {
        bail!(
            "failed to sync filesystem of `{}`: {}",
            dir.display(),
            io::Error::last_os_error()
        );
    }
    Ok(())
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
    fn encode_decode_round_trip_keeps_exact_body() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let j = job(&spool, 3);
        let decoded = Job::decode(&j.encode()).unwrap();
        assert_eq!(decoded, j);
        assert!(Job::decode(b"{}\n{}").unwrap_err().contains("metadata"));
        assert!(Job::decode(b"no newline").is_err());
    }

    #[test]
    fn sequence_reservations_are_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.ensure().unwrap();
        assert_eq!(spool.reserve_sequence(1).unwrap(), 1);
        assert_eq!(spool.reserve_sequence(5).unwrap(), 2);
        assert_eq!(spool.reserve_sequence(1).unwrap(), 7);
    }

    #[test]
    fn claim_settle_and_recover() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let jobs: Vec<Job> = (1..=3).map(|s| job(&spool, s)).collect();
        spool.enqueue(&jobs).unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        assert!(
            spool.try_lock_drain().unwrap().is_none(),
            "lock is exclusive"
        );

        let names = spool.names(State::Pending).unwrap().0;
        let mut first = spool.claim(&lock, &names[0]).unwrap().unwrap();
        first.meta.state = State::Delivered;
        spool.settle(&lock, &first).unwrap();
        // Claimed and never settled: a drain that died mid-delivery.
        spool.claim(&lock, &names[1]).unwrap().unwrap();
        assert_eq!(spool.count(State::Active).unwrap(), 1);
        assert_eq!(spool.recover(&lock).unwrap(), 1);
        assert_eq!(spool.count(State::Pending).unwrap(), 2);
        assert_eq!(spool.count(State::Delivered).unwrap(), 1);
        assert!(
            spool
                .claim(&lock, "000000000099-gone.job")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn recovery_keeps_the_settled_copy_after_a_crash_between_rename_and_unlink() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool.enqueue(&[job(&spool, 1), job(&spool, 2)]).unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        let names = spool.names(State::Pending).unwrap().0;
        let mut settled = spool.claim(&lock, &names[0]).unwrap().unwrap();
        settled.meta.state = State::Delivered;
        settled.meta.attempts = 1;
        spool.settle(&lock, &settled).unwrap();
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
            spool.recover(&lock).unwrap(),
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
    fn find_needs_the_whole_delivery_id() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        let j = job(&spool, 1);
        spool.enqueue(std::slice::from_ref(&j)).unwrap();
        let id = &j.meta.delivery_id;
        assert!(spool.find(id, &[State::Pending]).unwrap().is_some());
        let fragment = &id[id.find('-').unwrap() + 1..];
        assert!(
            spool.find(fragment, &[State::Pending]).unwrap().is_none(),
            "fragment {fragment} must not match"
        );
    }

    #[test]
    fn overflow_moves_oldest_to_dead_with_reason() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path()).spec("S");
        spool
            .enqueue(&(1..=4).map(|s| job(&spool, s)).collect::<Vec<_>>())
            .unwrap();
        let moved = spool.shed_overflow(4, 2, 5).unwrap();
        assert_eq!(moved.len(), 2);
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
        let moved = spool.quarantine(&scan.unreadable[0]).unwrap();
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
        let jobs: Vec<Job> = (1..=50).map(|s| job(&spool, s)).collect();
        spool.enqueue(&jobs).unwrap();
        assert_eq!(spool.count(State::Pending).unwrap(), 50);
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
