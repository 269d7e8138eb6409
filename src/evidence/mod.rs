//! Evidence: every delivery attempt (and every operator action on a job) is
//! appended as one JSON line to `<evidence_dir>/<SPEC>/webhooks/attempts.jsonl`.
//! The log rotates FIFO (`attempts.jsonl.1` is the newest rotated file), and
//! the SPEC's footprint (logs, delivered jobs, spool-overflow dead-letters)
//! is held under a cap by dropping the oldest delivered jobs first, then the
//! oldest spool-overflow dead-letters, then the oldest rotated logs; pending
//! jobs and other dead jobs are never touched. [`Appenders`] keeps a bounded number of logs
//! open for a drain that writes to many SPECs' logs.
//!
//! A log is only ever a regular file: appending opens it with `O_NOFOLLOW |
//! O_NONBLOCK` and refuses anything `fstat` does not call a regular file (a
//! record written into a FIFO or through a symlink would be lost), and a
//! drain makes sure of that before it sends a job ([`Appenders::ready`]).
//! Reading is [`read`]'s: the same checks, bounded lines, one record at a
//! time.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::spool::{DrainLock, Meta, SpecSpool, State};

pub mod read;

pub use read::{Held, MAX_LINE, Pull, Records, Skipped};

pub const LOG_NAME: &str = "attempts.jsonl";
/// The response excerpt kept per attempt.
pub const BODY_EXCERPT: usize = 2048;

/// What an attempt or action led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed for good; the job is in dead-letter.
    Dead,
    /// A dry-run subscription: logged, not sent.
    DryRun,
    /// `spec-notify test` sent a sample event.
    Test,
    /// An operator requeued the job (`replay`).
    Requeued,
    /// An operator deleted the dead job (`discard`).
    Discarded,
    /// The endpoint answered 410 or `webhook-delivery: disable`: the job
    /// waits in pending and the subscription is paused.
    Paused,
    /// The subscription's circuit opened after consecutive failures.
    CircuitOpen,
    /// The one probe job of an open circuit went out.
    CircuitProbe,
    /// The probe got an answer: the circuit closed, the backlog goes out.
    CircuitClosed,
    /// An operator paused the subscription (`spec-notify pause`).
    SubscriptionPaused,
    /// An operator resumed the subscription (`spec-notify resume`).
    SubscriptionResumed,
    /// An alert rule's `command` ran (`error` says how it failed).
    AlertCommand,
}

impl Outcome {
    /// The name used in the attempt log and in tables.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Dead => "dead",
            Outcome::DryRun => "dry-run",
            Outcome::Test => "test",
            Outcome::Requeued => "requeued",
            Outcome::Discarded => "discarded",
            Outcome::Paused => "paused",
            Outcome::CircuitOpen => "circuit-open",
            Outcome::CircuitProbe => "circuit-probe",
            Outcome::CircuitClosed => "circuit-closed",
            Outcome::SubscriptionPaused => "subscription-paused",
            Outcome::SubscriptionResumed => "subscription-resumed",
            Outcome::AlertCommand => "alert-command",
        }
    }

    /// True for real delivery attempts (what success rates are computed from).
    pub fn is_attempt(self) -> bool {
        matches!(
            self,
            Outcome::Delivered | Outcome::Retry | Outcome::Dead | Outcome::Paused
        )
    }
}

/// One line of the attempt log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 time of the attempt.
    pub ts: String,
    pub ts_ms: u64,
    pub delivery_id: String,
    pub spec: String,
    pub subscription: String,
    pub event_type: String,
    /// 1-based attempt number (0 for operator actions).
    pub attempt: u32,
    /// The URL without userinfo or query string.
    pub url: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub outcome: Outcome,
    /// The receiver's answer, cut to 2 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// When the next attempt is due (outcome `retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The would-be request of a dry run: url, headers (no secrets), body size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<serde_json::Value>,
    /// The W3C trace id the event was emitted under (the `traceparent`
    /// this attempt sent carries it), to join with a tracing backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// This attempt's span id: the parent id in the `traceparent` it sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
}

impl Record {
    /// A record about one job with no answer yet: status, error, latency
    /// and the rest start empty.
    pub fn for_job(meta: &Meta, url: String, attempt: u32, at_ms: u64, outcome: Outcome) -> Record {
        Record {
            ts: crate::clock::rfc3339(at_ms),
            ts_ms: at_ms,
            delivery_id: meta.delivery_id.clone(),
            spec: meta.spec.clone(),
            subscription: meta.subscription.clone(),
            event_type: meta.event_type.clone(),
            attempt,
            url,
            status: None,
            error: None,
            latency_ms: None,
            outcome,
            response_body: None,
            next_attempt_at: None,
            request: None,
            trace_id: None,
            span_id: None,
        }
    }

    /// Marks the record as an attempt sent as `span` of the event's trace.
    pub fn traced(&mut self, span: Option<&crate::trace::Span>) {
        if let Some(span) = span {
            self.trace_id = Some(span.trace_id.clone());
            self.span_id = Some(span.span_id.clone());
        }
    }
}

/// Cuts a response body to [`BODY_EXCERPT`] bytes on a character boundary.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(BODY_EXCERPT + 4)]);
    let mut end = text.len().min(BODY_EXCERPT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// One SPEC's evidence folder.
#[derive(Debug)]
pub struct Evidence {
    dir: PathBuf,
    max_bytes: u64,
    /// The open log and its size: a drain appends thousands of lines a
    /// second, so it opens the log once instead of per line.
    log: Mutex<Option<(File, u64)>>,
}

impl Clone for Evidence {
    fn clone(&self) -> Evidence {
        Evidence::new(self.dir.clone(), self.max_bytes)
    }
}

impl Evidence {
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Evidence {
        Evidence {
            dir: dir.into(),
            max_bytes,
            log: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_NAME)
    }

    /// A log file rotates when it passes a quarter of the cap.
    fn rotate_at(&self) -> u64 {
        (self.max_bytes / 4).max(16 * 1024)
    }

    /// Appends records as JSON lines in one write (O_APPEND keeps concurrent
    /// writers' lines whole), rotating the log first if it is full.
    pub fn append(&self, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in records {
            serde_json::to_writer(&mut buf, r)?;
            buf.push(b'\n');
        }
        let path = self.log_path();
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if log
            .as_ref()
            .is_some_and(|(_, size)| size + buf.len() as u64 > self.rotate_at())
        {
            *log = None;
            self.rotate()?;
        }
        if log.is_none() {
            let file = self.open_log()?;
            let size = file.metadata().map_or(0, |m| m.len());
            *log = Some((file, size));
            if size + buf.len() as u64 > self.rotate_at() {
                *log = None;
                self.rotate()?;
                *log = Some((self.open_log()?, 0));
            }
        }
        let (file, size) = log.as_mut().expect("opened above");
        // One write of whole lines (O_APPEND): a short write (a full disk)
        // leaves a torn last line, which the next open closes with a newline
        // so that it never merges with the next record.
        let written = file.write(&buf);
        match written {
            Ok(n) if n == buf.len() => {
                *size += n as u64;
                Ok(())
            }
            Ok(n) => {
                *log = None;
                Err(io::Error::from_raw_os_error(libc::ENOSPC)).with_context(|| {
                    format!(
                        "failed to append to `{}`: wrote {n} of {} bytes",
                        path.display(),
                        buf.len()
                    )
                })
            }
            Err(e) => {
                *log = None;
                Err(e).with_context(|| format!("failed to append to `{}`", path.display()))
            }
        }
    }

    fn open_log(&self) -> Result<File> {
        use std::os::unix::fs::{FileExt, OpenOptionsExt};
        let path = self.log_path();
        let open = || {
            OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)
        };
        let file = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                crate::files::create_private_dir(&self.dir)?;
                open()
            }
            other => other,
        };
        let refuse = |what: &str| {
            anyhow::anyhow!(
                "refusing to append to the evidence log `{}`: it is {what}, not a regular file, so a record written there could be lost; move it away (`mv {0} {0}.bad`) and run `spec-notify drain` again (the jobs stay pending)",
                path.display()
            )
        };
        let mut file = match file {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refuse("a symbolic link"));
            }
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                return Err(refuse("a FIFO or socket"));
            }
            other => other
                .with_context(|| format!("failed to open evidence log `{}`", path.display()))?,
        };
        let meta = file
            .metadata()
            .with_context(|| format!("failed to stat evidence log `{}`", path.display()))?;
        if !meta.file_type().is_file() {
            return Err(refuse(&file_kind(&meta.file_type())));
        }
        // O_NONBLOCK only kept the open from waiting on a FIFO.
        rustix::fs::fcntl_setfl(&file, rustix::fs::OFlags::APPEND)
            .with_context(|| format!("failed to set up evidence log `{}`", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        let mut last = [0u8];
        if size > 0 && file.read_exact_at(&mut last, size - 1).is_ok() && last[0] != b'\n' {
            file.write_all(b"\n").with_context(|| {
                format!(
                    "failed to repair the torn last line of `{}`",
                    path.display()
                )
            })?;
        }
        Ok(file)
    }

    /// Makes sure a record can be appended now, before a job is sent: the
    /// log is open (opened here if need be, refused unless it is a regular
    /// file) and its path still names the file held open (not replaced by
    /// a FIFO or a symlink meanwhile).
    pub fn ready(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((file, _)) = log.as_ref() {
            let same = fs::symlink_metadata(self.log_path())
                .ok()
                .zip(file.metadata().ok())
                .is_some_and(|(at, held)| at.dev() == held.dev() && at.ino() == held.ino());
            if same {
                return Ok(());
            }
            *log = None;
        }
        let file = self.open_log()?;
        let size = file.metadata().map_or(0, |m| m.len());
        *log = Some((file, size));
        Ok(())
    }

    /// `attempts.jsonl` → `.1`, `.1` → `.2`, … under a lock so two writers
    /// never rotate at once.
    fn rotate(&self) -> Result<()> {
        let lock_path = self.dir.join("attempts.lock");
        let lock = crate::files::lock::open_lock_file(&lock_path)?;
        lock.lock()
            .with_context(|| format!("failed to lock `{}`", lock_path.display()))?;
        let current = self.log_path();
        if !fs::metadata(&current).is_ok_and(|m| m.len() > self.rotate_at() / 2) {
            return Ok(()); // another writer rotated while we waited
        }
        let rotated = self.rotated_files()?;
        for (n, path) in rotated.iter().rev() {
            let to = self.dir.join(format!("{LOG_NAME}.{}", n + 1));
            fs::rename(path, &to)
                .with_context(|| format!("failed to rotate `{}`", path.display()))?;
        }
        fs::rename(&current, self.dir.join(format!("{LOG_NAME}.1")))
            .with_context(|| format!("failed to rotate `{}`", current.display()))
    }

    /// Rotated logs as (number, path), oldest last.
    fn rotated_files(&self) -> Result<Vec<(u32, PathBuf)>> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(e).with_context(|| format!("failed to read `{}`", self.dir.display()));
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let n = name
                .to_str()
                .and_then(|n| n.strip_prefix(&format!("{LOG_NAME}.")))
                .and_then(|n| n.parse().ok());
            if let Some(n) = n {
                out.push((n, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every log file, oldest first (`.N`, …, `.1`, then the current one).
    pub fn log_files(&self) -> Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = self
            .rotated_files()?
            .into_iter()
            .rev()
            .map(|(_, p)| p)
            .collect();
        let current = self.log_path();
        // Not `exists()`: a symlink (dangling or not) is listed, to be
        // refused by name rather than passed over in silence.
        if fs::symlink_metadata(&current).is_ok() {
            files.push(current);
        }
        Ok(files)
    }

    /// The records of every log file, oldest first, one at a time.
    pub fn records(&self) -> Result<Records> {
        Ok(Records::new(self.log_files()?))
    }

    /// Reads every record, oldest first, and what was skipped (tests and
    /// small logs: a reader of a whole log streams with [`Evidence::records`]).
    pub fn read_all(&self) -> Result<(Vec<Record>, Skipped)> {
        let mut records = Vec::new();
        let skipped = self.for_each_record(|r| records.push(r))?;
        Ok((records, skipped))
    }

    /// Hands every record to `each`, oldest first, without holding them
    /// all; returns what was skipped (lines that did not parse or were too
    /// long, files that are not regular files).
    pub fn for_each_record(&self, mut each: impl FnMut(Record)) -> Result<Skipped> {
        let mut records = self.records()?;
        while let Some(record) = records.next_record()? {
            each(record);
        }
        Ok(records.into_skipped())
    }

    /// Holds the SPEC's footprint (logs, delivered jobs and `spool-overflow`
    /// dead-letters) under the cap: oldest delivered jobs go first, then the
    /// oldest spool-overflow dead-letters (events shed unsent, kept for a
    /// replay while there is room), then the oldest rotated logs. Other
    /// dead jobs and pending jobs are never pruned. Returns how many files
    /// were removed.
    pub fn enforce_cap(&self, spool: &SpecSpool, lock: &DrainLock) -> Result<usize> {
        let log_bytes: u64 = self
            .log_files()?
            .iter()
            .filter_map(|p| fs::symlink_metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let delivered = sized(spool, State::Delivered)?;
        let mut total = log_bytes + delivered.iter().map(|(_, size)| size).sum::<u64>();
        let mut removed = 0;
        let mut prune = |state, names: Vec<(String, u64)>, total: &mut u64| -> Result<()> {
            for (name, size) in names {
                if *total <= self.max_bytes {
                    break;
                }
                // One still being settled is left for the next time.
                if spool.remove_settled(lock, state, &name)? {
                    *total -= size;
                    removed += 1;
                }
            }
            Ok(())
        };
        // Dead jobs count only if they are spool-overflow ones, which takes
        // reading them: only when all of dead/ might matter.
        let dead = sized(spool, State::Dead)?;
        let dead_bytes: u64 = dead.iter().map(|(_, size)| size).sum();
        if total + dead_bytes > self.max_bytes && !dead.is_empty() {
            let sizes: HashMap<String, u64> = dead.into_iter().collect();
            let scan = spool.scan_names(State::Dead, sizes.keys().cloned().collect());
            let mut shed: Vec<(u64, String, u64)> = scan
                .entries
                .into_iter()
                .filter(|e| e.meta.dead_reason.as_deref() == Some(crate::spool::OVERFLOW))
                .map(|e| {
                    let size = sizes.get(&e.name).copied().unwrap_or(0);
                    (e.meta.sequence, e.name, size)
                })
                .collect();
            shed.sort();
            total += shed.iter().map(|(_, _, size)| size).sum::<u64>();
            prune(State::Delivered, delivered, &mut total)?;
            let shed = shed
                .into_iter()
                .map(|(_, name, size)| (name, size))
                .collect();
            prune(State::Dead, shed, &mut total)?;
        } else {
            prune(State::Delivered, delivered, &mut total)?;
        }
        for (_, path) in self.rotated_files()?.into_iter().rev() {
            if total <= self.max_bytes {
                break;
            }
            let size = fs::symlink_metadata(&path).map_or(0, |m| m.len());
            fs::remove_file(&path)
                .with_context(|| format!("failed to remove `{}`", path.display()))?;
            total = total.saturating_sub(size);
            removed += 1;
        }
        Ok(removed)
    }
}

/// The job files of a state folder with their sizes, oldest first.
fn sized(spool: &SpecSpool, state: State) -> Result<Vec<(String, u64)>> {
    let (names, _) = spool.names(state)?;
    let dir = spool.state_dir(state);
    Ok(names
        .into_iter()
        .map(|n| {
            let size = fs::symlink_metadata(dir.join(&n)).map_or(0, |m| m.len());
            (n, size)
        })
        .collect())
}

/// What a file that is not a regular file is, for people.
fn file_kind(kind: &fs::FileType) -> String {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a folder"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "of an unknown kind"
    };
    what.to_string()
}

/// The attempt logs a drain has open, at most `capacity` at once: opening
/// another closes the least recently used (a drain serving thousands of
/// SPECs holds a bounded number of descriptors). A log in use by an append
/// stays open until that append is done, so at most `capacity` plus the
/// appends in progress are open.
#[derive(Debug)]
pub struct Appenders {
    capacity: usize,
    max_bytes: u64,
    open: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    tick: u64,
    logs: HashMap<PathBuf, (Arc<Evidence>, u64)>,
}

impl Appenders {
    pub fn new(capacity: usize, max_bytes: u64) -> Appenders {
        Appenders {
            capacity: capacity.max(1),
            max_bytes,
            open: Mutex::new(Lru::default()),
        }
    }

    /// Appends records to the log in `dir` (see [`Evidence::append`]).
    pub fn append(&self, dir: &Path, records: &[Record]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.get(dir).append(records)
    }

    /// Makes sure a record can be appended to the log in `dir` now (see
    /// [`Evidence::ready`]): a drain asks before it sends a job.
    pub fn ready(&self, dir: &Path) -> Result<()> {
        self.get(dir).ready()
    }

    /// The log in `dir`, kept among the most recently used.
    fn get(&self, dir: &Path) -> Arc<Evidence> {
        let mut lru = self.open.lock().unwrap_or_else(|e| e.into_inner());
        lru.tick += 1;
        let tick = lru.tick;
        if let Some((evidence, used)) = lru.logs.get_mut(dir) {
            *used = tick;
            return Arc::clone(evidence);
        }
        if lru.logs.len() >= self.capacity {
            let oldest = lru
                .logs
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(dir, _)| dir.clone());
            if let Some(oldest) = oldest {
                lru.logs.remove(&oldest);
            }
        }
        let evidence = Arc::new(Evidence::new(dir, self.max_bytes));
        lru.logs
            .insert(dir.to_path_buf(), (Arc::clone(&evidence), tick));
        evidence
    }

    /// Closes the log in `dir` (its SPEC has nothing left to log for now).
    pub fn close(&self, dir: &Path) {
        let mut lru = self.open.lock().unwrap_or_else(|e| e.into_inner());
        lru.logs.remove(dir);
    }

    /// How many logs are open (or in use).
    pub fn len(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .logs
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appenders_keep_at_most_their_capacity_open() {
        let dir = tempfile::tempdir().unwrap();
        let appenders = Appenders::new(2, 1 << 20);
        let open_fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
        let before = open_fds();
        for round in 0..3 {
            for spec in 0..5 {
                let at = dir.path().join(format!("S{spec}"));
                appenders.append(&at, &[record(round)]).unwrap();
                assert!(appenders.len() <= 2);
            }
        }
        // Other tests run on other threads of this process: a bound, not
        // an exact count.
        assert!(
            open_fds() <= before + 2 + 8,
            "{} > {before} + 2",
            open_fds()
        );
        for spec in 0..5 {
            let log = Evidence::new(dir.path().join(format!("S{spec}")), 1 << 20);
            assert_eq!(log.read_all().unwrap().0.len(), 3, "S{spec}");
        }
        appenders.close(&dir.path().join("S4"));
        assert_eq!(appenders.len(), 1);
    }

    fn record(i: u32) -> Record {
        Record {
            ts: "t".into(),
            ts_ms: u64::from(i),
            delivery_id: format!("id-{i}"),
            spec: "S".into(),
            subscription: "sub".into(),
            event_type: "a.b.c".into(),
            attempt: 1,
            url: "https://x/".into(),
            status: Some(200),
            error: None,
            latency_ms: Some(3),
            outcome: Outcome::Delivered,
            response_body: Some("x".repeat(200)),
            next_attempt_at: None,
            request: None,
            trace_id: None,
            span_id: None,
        }
    }

    #[test]
    fn appends_rotate_and_read_back_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let ev = Evidence::new(dir.path().join("webhooks"), 64 * 1024);
        for i in 0..400 {
            ev.append(&[record(i)]).unwrap();
        }
        assert!(ev.log_files().unwrap().len() > 2, "rotated");
        use std::os::unix::fs::PermissionsExt;
        let lock = fs::metadata(dir.path().join("webhooks/attempts.lock")).unwrap();
        assert_eq!(lock.permissions().mode() & 0o777, 0o600, "private");
        let (records, skipped) = ev.read_all().unwrap();
        assert!(skipped.is_empty());
        assert_eq!(records.len(), 400);
        assert!(
            records.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms),
            "oldest first"
        );
    }

    #[test]
    fn cap_drops_delivered_jobs_then_old_logs_never_pending() {
        use crate::spool::{Job, Meta, Spool};
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool")).spec("S");
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(20_000));
        let jobs: Vec<Job> = (1..=6)
            .map(|s| Job {
                meta: Meta::new("S", "sub", "a.b.c", "k", s, 0),
                body: big.clone().into_bytes(),
            })
            .collect();
        spool.enqueue(&jobs).unwrap();
        let lock = spool.try_lock_drain().unwrap().unwrap();
        let alive = spool.try_serve().unwrap().unwrap();
        for name in spool.names(State::Pending).unwrap().0.into_iter().take(5) {
            let mut job = spool.claim(&alive, &name).unwrap().into_job().unwrap();
            job.meta.state = State::Delivered;
            spool.settle(&alive, &job).unwrap();
        }
        let ev = Evidence::new(dir.path().join("ev"), 64 * 1024);
        let removed = ev.enforce_cap(&spool, &lock).unwrap();
        assert_eq!(
            removed, 2,
            "five ~21 KB delivered jobs must shrink to fit 64 KiB"
        );
        assert_eq!(spool.count(State::Delivered).unwrap(), 3);
        assert_eq!(spool.count(State::Pending).unwrap(), 1);
        let left = spool.scan(State::Delivered).unwrap();
        assert_eq!(
            left.entries
                .iter()
                .map(|e| e.meta.sequence)
                .collect::<Vec<_>>(),
            [3, 4, 5],
            "oldest dropped first"
        );
    }

    /// A SPEC spool with ~10 KB jobs: `delivered` of them delivered (oldest
    /// first), then one dead and one pending job, all newer.
    fn spool_with(dir: &Path, delivered: u64) -> crate::spool::SpecSpool {
        use crate::spool::{Job, Meta, Spool};
        let spool = Spool::new(dir.join("spool")).spec("S");
        let job = |sequence| Job {
            meta: Meta::new("S", "sub", "a.b.c", "k", sequence, 0),
            body: format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000)).into_bytes(),
        };
        let old: Vec<Job> = (1..=delivered).map(job).collect();
        spool.enqueue_in(State::Delivered, &old).unwrap();
        spool
            .enqueue_in(State::Dead, &[job(delivered + 1)])
            .unwrap();
        spool.enqueue(&[job(delivered + 2)]).unwrap();
        spool
    }

    /// Appends records until the logs hold at least `bytes`; returns how many.
    fn fill_logs(ev: &Evidence, bytes: u64) -> u32 {
        let mut n = 0;
        while log_bytes(ev) < bytes {
            ev.append(&[record(n)]).unwrap();
            n += 1;
        }
        n
    }

    fn log_bytes(ev: &Evidence) -> u64 {
        let files = ev.log_files().unwrap();
        files.iter().map(|p| fs::metadata(p).unwrap().len()).sum()
    }

    fn job_bytes(spool: &crate::spool::SpecSpool, state: State) -> u64 {
        let dir = spool.state_dir(state);
        let names = spool.names(state).unwrap().0;
        names
            .iter()
            .map(|n| fs::metadata(dir.join(n)).unwrap().len())
            .sum()
    }

    fn sequences(spool: &crate::spool::SpecSpool, state: State) -> Vec<u64> {
        let scan = spool.scan(state).unwrap();
        scan.entries.iter().map(|e| e.meta.sequence).collect()
    }

    #[test]
    fn cap_keeps_every_log_while_dropping_delivered_jobs_is_enough() {
        const CAP: u64 = 64 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_with(dir.path(), 3);
        let ev = Evidence::new(dir.path().join("ev"), CAP);
        fill_logs(&ev, 38_000);
        let logs_before: Vec<(PathBuf, Vec<u8>)> = ev
            .log_files()
            .unwrap()
            .into_iter()
            .map(|p| (p.clone(), fs::read(p).unwrap()))
            .collect();
        assert!(logs_before.len() > 1, "the logs rotated");
        let (dead_before, pending_before) = (
            job_bytes(&spool, State::Dead),
            job_bytes(&spool, State::Pending),
        );
        let one_job = job_bytes(&spool, State::Delivered) / 3;
        let footprint = log_bytes(&ev) + 3 * one_job;
        assert!(
            footprint > CAP && footprint - one_job <= CAP,
            "set-up: one delivered job too many ({footprint} bytes)"
        );

        let lock = spool.try_lock_drain().unwrap().unwrap();
        assert_eq!(ev.enforce_cap(&spool, &lock).unwrap(), 1);
        assert_eq!(
            sequences(&spool, State::Delivered),
            [2, 3],
            "the oldest went"
        );
        let logs_after: Vec<(PathBuf, Vec<u8>)> = ev
            .log_files()
            .unwrap()
            .into_iter()
            .map(|p| (p.clone(), fs::read(p).unwrap()))
            .collect();
        assert!(logs_after == logs_before, "no log touched");
        assert_eq!(sequences(&spool, State::Dead), [4]);
        assert_eq!(sequences(&spool, State::Pending), [5]);
        assert_eq!(
            (
                job_bytes(&spool, State::Dead),
                job_bytes(&spool, State::Pending)
            ),
            (dead_before, pending_before)
        );
    }

    #[test]
    fn cap_drops_oldest_rotated_logs_after_every_delivered_job_never_dead_or_pending() {
        const CAP: u64 = 64 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let spool = spool_with(dir.path(), 2);
        let ev = Evidence::new(dir.path().join("ev"), CAP);
        let written = fill_logs(&ev, 3 * CAP);
        let rotated_before = ev.rotated_files().unwrap().len();

        let lock = spool.try_lock_drain().unwrap().unwrap();
        let removed = ev.enforce_cap(&spool, &lock).unwrap();
        let rotated_after = ev.rotated_files().unwrap();
        assert_eq!(
            removed,
            2 + rotated_before - rotated_after.len(),
            "both delivered jobs, then rotated logs"
        );
        assert!(sequences(&spool, State::Delivered).is_empty());
        assert_eq!(
            sequences(&spool, State::Dead),
            [3],
            "dead jobs are never pruned"
        );
        assert_eq!(
            sequences(&spool, State::Pending),
            [4],
            "pending jobs are never pruned"
        );
        assert!(
            rotated_after.len() < rotated_before,
            "logs alone were over the cap"
        );
        let numbers: Vec<u32> = rotated_after.iter().map(|(n, _)| *n).collect();
        let expected: Vec<u32> = (1..=rotated_after.len() as u32).collect();
        assert_eq!(numbers, expected, "the highest-numbered (oldest) logs went");
        assert!(ev.log_path().exists(), "the current log stays");
        let left = log_bytes(&ev);
        assert!(left <= CAP, "under the cap: {left}");
        assert!(
            left > CAP - ev.rotate_at(),
            "no more logs removed than needed: {left} bytes left"
        );
        let (records, skipped) = ev.read_all().unwrap();
        assert!(skipped.is_empty());
        let kept: Vec<u64> = records.iter().map(|r| r.ts_ms).collect();
        let newest: Vec<u64> =
            (u64::from(written) - kept.len() as u64..u64::from(written)).collect();
        assert_eq!(
            kept, newest,
            "whole old files went, FIFO: the newest records remain"
        );
    }

    #[test]
    fn cap_drops_spool_overflow_dead_letters_after_delivered_jobs_never_other_dead_or_pending() {
        use crate::spool::{Job, Meta, Spool};
        const CAP: u64 = 64 * 1024;
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool")).spec("S");
        let job = |sequence| Job {
            meta: Meta::new("S", "sub", "a.b.c", "k", sequence, 0),
            body: format!("{{\"pad\":\"{}\"}}", "x".repeat(10_000)).into_bytes(),
        };
        spool.enqueue_in(State::Delivered, &[job(1)]).unwrap();
        // Shed for spool-overflow: 2..=9, oldest first; 10 died otherwise.
        let shed: Vec<Job> = (2..=9)
            .map(|s| {
                let mut j = job(s);
                crate::spool::mark_overflow(&mut j.meta, 1, 0);
                j
            })
            .collect();
        spool.enqueue_in(State::Dead, &shed).unwrap();
        let mut other = job(10);
        other.meta.state = State::Dead;
        other.meta.dead_reason = Some("max-attempts".into());
        spool.enqueue_in(State::Dead, &[other]).unwrap();
        spool.enqueue(&[job(11)]).unwrap();
        let ev = Evidence::new(dir.path().join("ev"), CAP);
        let lock = spool.try_lock_drain().unwrap().unwrap();
        let removed = ev.enforce_cap(&spool, &lock).unwrap();
        assert!(sequences(&spool, State::Delivered).is_empty());
        let dead = sequences(&spool, State::Dead);
        assert_eq!(
            removed,
            1 + 9 - dead.len(),
            "the delivered job, then shed ones"
        );
        assert_eq!(dead.last(), Some(&10), "a dead job of another reason stays");
        let kept_shed: Vec<u64> = dead[..dead.len() - 1].to_vec();
        let newest: Vec<u64> = (10 - kept_shed.len() as u64..10).collect();
        assert_eq!(kept_shed, newest, "the oldest shed ones went first");
        assert!(
            job_bytes(&spool, State::Dead) - job_bytes(&spool, State::Dead) / dead.len() as u64
                <= CAP,
            "the shed ones left fit under the cap"
        );
        assert_eq!(sequences(&spool, State::Pending), [11]);
    }

    #[test]
    fn appending_refuses_a_fifo_or_a_symlink_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = Evidence::new(dir.path().join("fifo"), 1 << 20);
        fs::create_dir_all(fifo.dir()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.log_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let link = Evidence::new(dir.path().join("link"), 1 << 20);
        fs::create_dir_all(link.dir()).unwrap();
        let target = dir.path().join("elsewhere");
        fs::write(&target, b"").unwrap();
        std::os::unix::fs::symlink(&target, link.log_path()).unwrap();
        for (ev, is) in [(&fifo, "a FIFO"), (&link, "a symbolic link")] {
            let e = format!("{:#}", ev.ready().unwrap_err());
            assert!(e.contains(is) && e.contains("not a regular file"), "{e}");
            let e = format!("{:#}", ev.append(&[record(1)]).unwrap_err());
            assert!(e.contains(is), "{e}");
        }
        assert_eq!(
            fs::read(&target).unwrap(),
            b"",
            "nothing written through the link"
        );
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let body = "é".repeat(2000);
        let cut = excerpt(body.as_bytes());
        assert!(cut.len() <= BODY_EXCERPT);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_torn_last_line_never_merges_with_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let evidence = Evidence::new(dir.path(), 1 << 20);
        evidence.append(&[record(1)]).unwrap();
        // A full disk cut the next record short (no newline), mid-character.
        let mut torn = serde_json::to_vec(&record(2)).unwrap();
        torn.truncate(20);
        torn.extend_from_slice("\u{e9}".as_bytes().split_at(1).0);
        let mut log = OpenOptions::new()
            .append(true)
            .open(evidence.log_path())
            .unwrap();
        log.write_all(&torn).unwrap();
        drop(log);
        let next = Evidence::new(dir.path(), 1 << 20);
        next.append(&[record(3)]).unwrap();
        let (records, skipped) = next.read_all().unwrap();
        assert_eq!(records.iter().map(|r| r.ts_ms).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(
            skipped,
            Skipped::unparseable(1),
            "the torn line is skipped, alone"
        );
    }
}
