//! Reading job files, on top of [`crate::files`]: the metadata line alone
//! (list reads 100k of them) or a whole job, never more than a job can be,
//! regular files only. Every error names the path it is about. Writes and
//! the rest of the careful file access are [`crate::files`]'s.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub use crate::files::{Unread, create_private_dir, fsync_dir};
use crate::files::{open_regular, open_regular_at, read_bounded};

use super::job::{Job, MAX_META_BYTES, Meta, decode_meta};

/// Spool files are private to the drain's user, whatever the umask.
pub const FILE_MODE: u32 = crate::files::write::PRIVATE;
/// No job is larger than this (an event body is capped far below it); a
/// bigger file is not ours and is quarantined instead of read.
pub const MAX_JOB_BYTES: u64 = 64 * 1024 * 1024;

/// The first line of an open job file, parsed: one read loop, at most
/// [`MAX_META_BYTES`]. A read error is never taken for bad content.
pub fn read_meta_from(mut file: impl Read) -> Result<Meta, Unread> {
    let mut buf = vec![0u8; 2048];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_META_BYTES {
                return Err(Unread::Bad(format!(
                    "no metadata line in the first {MAX_META_BYTES} bytes"
                )));
            }
            buf.resize((buf.len() * 2).min(MAX_META_BYTES), 0);
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
            Err(e) => return Err(Unread::Io(format!("cannot read: {e}"))),
        }
    }
}

/// Reads the metadata line of `name` inside the open folder `dir`.
pub fn read_meta_at(dir: &File, name: &str) -> Result<Meta, Unread> {
    read_meta_from(open_regular_at(dir, name)?)
}

/// Reads the metadata line of the job at `path`.
pub fn read_meta(path: &Path) -> Result<Meta, Unread> {
    read_meta_from(open_regular(path)?)
}

/// Reads a whole job file, refusing what cannot be a job (whether it
/// belongs to the SPEC whose folder holds it is [`super::SpecSpool`]'s
/// to check: read jobs through it).
pub fn read_job_checked(path: &Path) -> Result<Job, Unread> {
    let bytes = read_bounded(path, MAX_JOB_BYTES)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    Job::decode_named(name, &bytes).map_err(Unread::Bad)
}

/// Why the job at `path` could not be read, as an error naming it.
pub fn unread_error(path: &Path, e: Unread) -> anyhow::Error {
    match e {
        Unread::Gone => anyhow::anyhow!("job `{}` is gone", path.display()),
        Unread::Bad(why) => anyhow::anyhow!("job `{}` is corrupt: {why}", path.display()),
        Unread::Io(why) => anyhow::anyhow!("failed to read job `{}`: {why}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gives `data` in small pieces, then fails with EIO.
    struct FailingReader {
        data: Vec<u8>,
        at: usize,
    }

    impl Read for FailingReader {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at == self.data.len() {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            let n = out.len().min(500).min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn an_io_error_after_a_long_metadata_prefix_is_io_not_corruption() {
        // Over 2 KiB of a metadata line, then EIO: the old second read loop
        // called this a bad file and quarantined a good job.
        for len in [100, 3000, 10_000] {
            let reader = FailingReader {
                data: vec![b'x'; len],
                at: 0,
            };
            match read_meta_from(reader) {
                Err(Unread::Io(e)) => assert!(e.contains("cannot read"), "{e}"),
                other => panic!("{len} bytes then EIO gave {other:?}"),
            }
        }
    }

    #[test]
    fn an_endless_first_line_stops_at_the_cap() {
        let endless = io::repeat(b'a');
        match read_meta_from(endless) {
            Err(Unread::Bad(e)) => assert!(e.contains("first"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
