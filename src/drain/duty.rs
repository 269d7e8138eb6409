//! The spool's duty lock as a background drain inherits it: emit takes
//! `<spool_dir>/.drain.alive` and starts `drain --background --duty-fd N`
//! with the locked descriptor as N, so that from the instant emit took it a
//! drain is on duty and no other emit starts one. `cmd/drain` notes the
//! descriptor here; the spool queue adopts it (checking that it is that
//! lock) when it starts serving the whole spool.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

static INHERITED: AtomicI32 = AtomicI32::new(-1);

/// Notes the descriptor this process inherited its duty lock as.
pub fn inherit(fd: RawFd) {
    INHERITED.store(fd, Ordering::SeqCst);
}

/// The inherited descriptor, once (the first run over the whole spool
/// takes it).
pub fn take_inherited() -> Option<RawFd> {
    let fd = INHERITED.swap(-1, Ordering::SeqCst);
    (fd >= 0).then_some(fd)
}
