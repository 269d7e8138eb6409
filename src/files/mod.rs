//! Careful file access, in one place: atomic writes ([`write`](mod@write): an
//! `O_EXCL` temp file with a random name beside the target, fsync, rename,
//! fsync of the folder), bounded reads ([`read`]: regular files only, never
//! through a symlink, never blocking on a FIFO, never more than asked), and
//! advisory locks with a bounded wait that names the holder ([`lock`]), on
//! lock files and in folders this user owns ([`owner`]).
//! It knows nothing of jobs, configs or reports: the spool, config editing,
//! `publish` and the evidence build on it, never the other way round.

pub mod lock;
pub mod owner;
pub mod read;
pub mod write;

pub use read::{Unread, open_regular, open_regular_at, read_bounded, read_up_to};
pub use write::{
    Perms, Syncs, TmpFile, create_private_dir, free_bytes, fsync_dir, remove_stale_tmp, syncfs,
    syncs, write_atomic, write_tmp,
};
