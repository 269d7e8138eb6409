//! File descriptors, bounded by design. At start a drain reads its
//! `RLIMIT_NOFILE` (raising the soft limit to the hard one, which any
//! process may) and sizes from it what it holds at once ([`Plan`]): its
//! workers, the SPECs it serves (one `drain.alive` each) and the attempt
//! logs it keeps open. The number of SPECs in the spool never enters: a
//! drain at its limit serves fewer SPECs at once, it does not fail.
//!
//! Before a worker claims and sends a job it takes a [`Reserve`]: the
//! descriptors that logging and settling the outcome will need, held as
//! duplicates of one descriptor and given back just before those steps. A
//! worker that cannot take them does not send the job (it waits, and the
//! drain takes fewer jobs at once): a request never goes out whose outcome
//! could not be recorded for want of a descriptor.
//!
//! What a drain needs (docs/operations.md, "File descriptors"):
//! - [`BASE`]: standard streams, the inotify and wake-up descriptors, the
//!   spool's duty lock, the reserve's own descriptor, a `--metrics` writer;
//! - [`COORDINATOR`]: listing folders, reading job metadata on a few
//!   threads, recovering a SPEC;
//! - [`PER_WORKER`] per worker: the connection in flight and idle ones in
//!   the HTTP pools, the job file at claim, and the [`RESERVE`];
//! - one per SPEC served, one per open attempt log.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Held aside for the process as a whole.
pub const BASE: u64 = 16;
/// The coordinating thread's listings, metadata reads and recovery.
pub const COORDINATOR: u64 = 16;
/// Descriptors one worker may hold at once.
pub const PER_WORKER: u64 = 12;
/// Descriptors a worker makes sure of before a request: appending to the
/// attempt log (opening it, rotating it) and settling (a temp file, the
/// folder's fsync) and the circuit's shared state, one step at a time.
pub const RESERVE: usize = 4;
/// No more SPECs than this are served at once, whatever the limit.
pub const MAX_SERVED: usize = 1024;
/// No more attempt logs than this are kept open.
pub const MAX_APPENDERS: usize = 256;

/// What a drain holds at most, sized from its descriptor limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The soft `RLIMIT_NOFILE` the plan was made for.
    pub limit: u64,
    pub workers: usize,
    /// SPECs served at once (each holds its `drain.alive`).
    pub served: usize,
    /// Attempt logs kept open.
    pub appenders: usize,
}

impl Plan {
    /// The plan for this process: its limit (raised to the hard limit where
    /// allowed) and what it has open now.
    pub fn for_this_process(max_concurrency: usize) -> Plan {
        Plan::for_limit(raise_limit(), open_now(), max_concurrency)
    }

    /// The plan for `limit` descriptors of which `open` are in use.
    pub fn for_limit(limit: u64, open: u64, max_concurrency: usize) -> Plan {
        let spare = limit.saturating_sub(open + BASE + COORDINATOR);
        // Workers take at most half of what is spare, at least one.
        let workers = (spare / (2 * PER_WORKER)).clamp(1, max_concurrency.max(1) as u64);
        let rest = spare.saturating_sub(workers * PER_WORKER);
        Plan {
            limit,
            workers: workers as usize,
            served: ((rest * 3 / 4) as usize).clamp(1, MAX_SERVED),
            appenders: ((rest / 4) as usize).clamp(1, MAX_APPENDERS),
        }
    }

    /// The most descriptors this plan holds at once.
    pub fn needs(&self) -> u64 {
        BASE + COORDINATOR
            + self.workers as u64 * PER_WORKER
            + self.served as u64
            + self.appenders as u64
    }
}

/// Raises the soft descriptor limit to the hard one (allowed to any
/// process) and returns the soft limit in effect.
pub fn raise_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // RLIM_INFINITY and the like: far more than any plan asks for.
    limit.rlim_cur.min(1 << 20)
}

/// Descriptors open now (8 where /proc cannot tell).
fn open_now() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(8, |d| d.count().saturating_sub(1) as u64)
}

/// Descriptors a worker holds for the steps after a request; given back
/// on drop (just before those steps).
#[derive(Debug)]
pub struct Reserve(#[allow(dead_code)] Vec<OwnedFd>);

/// The descriptor reserves are duplicates of.
#[derive(Debug)]
pub struct Reserves {
    base: Option<File>,
}

impl Reserves {
    pub fn new() -> Reserves {
        Reserves {
            base: File::open("/dev/null").ok(),
        }
    }

    /// Takes `n` descriptors, or none if the process is out of them.
    pub fn take(&self, n: usize) -> Option<Reserve> {
        let Some(base) = &self.base else {
            // No /dev/null: nothing to count with; the plan's sizing alone
            // keeps the drain within its limit.
            return Some(Reserve(Vec::new()));
        };
        let mut held = Vec::with_capacity(n);
        for _ in 0..n {
            // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that nothing
            // else owns, or -1.
            let fd = unsafe { libc::fcntl(base.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
            if fd < 0 {
                return None; // `held` is closed on return
            }
            held.push(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        Some(Reserve(held))
    }
}

impl Default for Reserves {
    fn default() -> Reserves {
        Reserves::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_fits_its_limit_and_shrinks_with_it() {
        for limit in [64, 128, 256, 1024, 4096, 65536, 1 << 20] {
            let plan = Plan::for_limit(limit, 8, 4);
            assert!(plan.needs() + 8 <= limit, "{plan:?} needs {}", plan.needs());
            assert!(plan.workers >= 1 && plan.served >= 1 && plan.appenders >= 1);
        }
        let small = Plan::for_limit(64, 8, 4);
        assert_eq!(small.workers, 1, "{small:?}");
        let usual = Plan::for_limit(1024, 8, 4);
        assert_eq!(usual.workers, 4, "{usual:?}");
        assert!(usual.served > 500, "{usual:?}");
        let huge = Plan::for_limit(1 << 20, 8, 4);
        assert_eq!((huge.served, huge.appenders), (MAX_SERVED, MAX_APPENDERS));
        // Below what a drain needs at all: one of each, and the reserve
        // check keeps requests from going out unrecorded.
        let tiny = Plan::for_limit(16, 8, 4);
        assert_eq!((tiny.workers, tiny.served, tiny.appenders), (1, 1, 1));
    }

    #[test]
    fn a_reserve_holds_its_descriptors_until_dropped() {
        let reserves = Reserves::new();
        let reserve = reserves.take(RESERVE).expect("descriptors to spare");
        assert_eq!(reserve.0.len(), RESERVE);
        let distinct: std::collections::HashSet<i32> =
            reserve.0.iter().map(AsRawFd::as_raw_fd).collect();
        assert_eq!(distinct.len(), RESERVE, "each one a descriptor of its own");
    }
}
