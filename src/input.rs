//! Event input, read with bounds: JSON objects from a stream (one object,
//! pretty or not, or JSON Lines), each with the line it starts on, none
//! larger than `max_event_bytes` and the whole stream at most
//! [`MAX_INPUT_BYTES`]; and the `--telemetry` file, which must be a regular
//! file (never a FIFO or a device, which could block or never end). A read
//! stops as soon as a bound is passed: `/dev/zero` or a 100 MB event costs
//! one event's worth of memory, not the whole stream's.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;
use std::rc::Rc;

use anyhow::Result;
use serde_json::{Map, Value};

use crate::exit::user_error;

/// The most a whole `--input` stream may hold (a batch of many events).
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

/// `1048576 bytes (1 MiB)`: a cap as people read it.
pub fn bytes_text(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{n} bytes ({} MiB)", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{n} bytes ({} KiB)", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Reads the `--telemetry` file: a regular file of at most `max` bytes.
/// It is opened without blocking, so a FIFO with no writer is refused
/// rather than waited for.
pub fn read_regular_file(path: &Path, max: usize, what: &str) -> Result<Vec<u8>> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| user_error(format!("cannot read {what} `{shown}`: {e}")))?;
    let kind = file
        .metadata()
        .map_err(|e| user_error(format!("cannot read {what} `{shown}`: {e}")))?
        .file_type();
    if !kind.is_file() {
        let is = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a folder"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(user_error(format!(
            "{what} `{shown}` is {is}: pass a regular file (write a pipeline's output to a file first)"
        )));
    }
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| user_error(format!("cannot read {what} `{shown}`: {e}")))?;
    if bytes.len() > max {
        return Err(user_error(format!(
            "{what} `{shown}` is larger than max_event_bytes = {}: an event must fit in it",
            bytes_text(max)
        )));
    }
    Ok(bytes)
}

/// Opens `--input FILE`. A FIFO is waited for like any reader would (the
/// caller asked to read it); a folder is refused.
pub fn open_input(path: &str) -> Result<File> {
    let file =
        File::open(path).map_err(|e| user_error(format!("cannot read --input `{path}`: {e}")))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(user_error(format!(
            "--input `{path}` is a folder: pass a file, or `-` for stdin"
        )));
    }
    Ok(file)
}

/// Reads JSON objects from `input` (one object, pretty or not, or JSON
/// Lines), each with the line it starts on. `name` says where they come
/// from in messages (`stdin`, `` `file` ``). Stops with an exit-2 error at
/// the first value that is not an object, is invalid, or runs past
/// `max_event` bytes, and when the stream passes [`MAX_INPUT_BYTES`].
pub fn objects(
    input: impl Read,
    name: &str,
    max_event: usize,
) -> Result<Vec<(usize, Map<String, Value>)>> {
    let mut out = Vec::new();
    each_object(input, name, max_event, |line, map| {
        out.push((line, map));
        Ok(())
    })?;
    Ok(out)
}

/// [`objects`], handed to `each` one at a time as they are read (a batch
/// costs one event's memory); an error from `each` stops the read.
/// Returns how many there were.
pub fn each_object(
    input: impl Read,
    name: &str,
    max_event: usize,
    mut each: impl FnMut(usize, Map<String, Value>) -> Result<()>,
) -> Result<usize> {
    let meter = Meter::default();
    let reader = Metered {
        inner: BufReader::with_capacity(64 * 1024, input),
        meter: meter.clone(),
        max_event,
        max_total: MAX_INPUT_BYTES,
    };
    let mut stream = serde_json::Deserializer::from_reader(reader).into_iter::<Value>();
    let mut count = 0;
    loop {
        meter.start_value();
        let next = stream.next();
        let line = meter.first_line();
        match next {
            None => break,
            Some(Ok(Value::Object(map))) => {
                count += 1;
                each(line, map)?;
            }
            Some(Ok(other)) => {
                let mut shown = other.to_string();
                if shown.chars().count() > 80 {
                    shown = shown.chars().take(77).chain("...".chars()).collect();
                }
                return Err(user_error(format!(
                    "{name} line {line}: expected a JSON object, found `{shown}`"
                )));
            }
            Some(Err(_)) if meter.over.get() == Over::Event => {
                return Err(user_error(format!(
                    "{name} line {line}: the event is larger than max_event_bytes = {}; nothing was spooled (raise max_event_bytes in [spec_ops.webhooks], or send a smaller event: large files belong in `evidence` as paths)",
                    bytes_text(max_event)
                )));
            }
            Some(Err(_)) if meter.over.get() == Over::Total => {
                return Err(user_error(format!(
                    "{name} holds more than {} in all; nothing was spooled (send the events in several batches)",
                    bytes_text(MAX_INPUT_BYTES)
                )));
            }
            Some(Err(e)) if e.is_io() => {
                return Err(anyhow::Error::new(e).context(format!("failed to read {name}")));
            }
            Some(Err(e)) => {
                return Err(user_error(format!(
                    "{name} line {}: invalid JSON: {e}",
                    e.line()
                )));
            }
        }
    }
    if count == 0 {
        return Err(user_error(format!(
            "{name} holds no event: send a JSON object, or one per line"
        )));
    }
    Ok(count)
}

/// A reader that copies what it reads to `copy` (emit keeps the input it
/// validated, to write the jobs from the very same bytes).
pub struct Tee<R, W> {
    pub inner: R,
    pub copy: W,
}

impl<R: Read, W: io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Which bound a read passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Over {
    #[default]
    No,
    Event,
    Total,
}

/// What [`Metered`] has seen, shared with the loop that reads values.
#[derive(Debug, Clone, Default)]
struct Meter {
    /// Bytes read since the current value began (leading whitespace too).
    value_bytes: Rc<Cell<usize>>,
    total_bytes: Rc<Cell<usize>>,
    /// Line breaks read so far.
    newlines: Rc<Cell<usize>>,
    /// The line of the current value's first byte that is not whitespace.
    first_line: Rc<Cell<Option<usize>>>,
    over: Rc<Cell<Over>>,
}

impl Meter {
    fn start_value(&self) {
        self.value_bytes.set(0);
        self.first_line.set(None);
    }

    fn first_line(&self) -> usize {
        self.first_line
            .get()
            .unwrap_or_else(|| 1 + self.newlines.get())
    }
}

/// A reader that counts lines and bytes and fails once a value or the
/// whole stream passes its bound (serde_json then stops with an I/O error,
/// which [`objects`] turns into the message).
struct Metered<R> {
    inner: R,
    meter: Meter,
    max_event: usize,
    max_total: usize,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let m = &self.meter;
        if m.value_bytes.get() > self.max_event {
            m.over.set(Over::Event);
        } else if m.total_bytes.get() > self.max_total {
            m.over.set(Over::Total);
        }
        if m.over.get() != Over::No {
            return Err(io::Error::other("input bound passed"));
        }
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if m.first_line.get().is_none() && !b.is_ascii_whitespace() {
                m.first_line.set(Some(1 + m.newlines.get()));
            }
            if b == b'\n' {
                m.newlines.set(m.newlines.get() + 1);
            }
        }
        m.value_bytes.set(m.value_bytes.get() + n);
        m.total_bytes.set(m.total_bytes.get() + n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8], max: usize) -> Result<Vec<(usize, Map<String, Value>)>> {
        objects(input, "stdin", max)
    }

    #[test]
    fn objects_from_pretty_json_and_json_lines_with_lines() {
        let objs = parse(b"{\"a\":1}\n\n{\"b\":\n2}\n", 1024).unwrap();
        assert_eq!(objs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 3]);
        let e = format!("{:#}", parse(b"{\"a\":1}\n[1]\n", 1024).unwrap_err());
        assert!(e.contains("stdin line 2: expected a JSON object"), "{e}");
        let e = format!("{:#}", parse(b"{\"a\":1}\n{oops}\n", 1024).unwrap_err());
        assert!(e.contains("stdin line 2: invalid JSON"), "{e}");
        assert!(parse(b"  \n", 1024).is_err());
    }

    #[test]
    fn line_numbers_stay_right_deep_into_a_big_batch() {
        let mut input = "{\"a\":1}\n\n".repeat(5_000).into_bytes();
        input.extend_from_slice(b"  7\n");
        let e = format!("{:#}", parse(&input, 1024).unwrap_err());
        assert!(
            e.contains("stdin line 10001: expected a JSON object"),
            "{e}"
        );
        let objs = parse(&input[..input.len() - 4], 1024).unwrap();
        assert_eq!(objs.last().unwrap().0, 9_999);
    }

    /// Counts what was read from it.
    struct Counted<R>(R, Rc<Cell<usize>>);

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1.set(self.1.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn an_event_over_the_cap_stops_the_read_and_names_the_cap() {
        let read = Rc::new(Cell::new(0));
        let small = "{\"a\":1}\n".as_bytes();
        let huge = format!("{{\"pad\":\"{}", "x".repeat(50 * 1024 * 1024));
        let input = Counted(small.chain(huge.as_bytes()), read.clone());
        let e = format!("{:#}", objects(input, "stdin", 1024 * 1024).unwrap_err());
        assert!(
            e.contains(
                "stdin line 2: the event is larger than max_event_bytes = 1048576 bytes (1 MiB)"
            ),
            "{e}"
        );
        assert!(read.get() < 2 * 1024 * 1024, "read {} bytes", read.get());
        // Endless bytes that never make an event stop too: blanks at the
        // cap, anything else (`/dev/zero`) as soon as it is not JSON.
        let e = format!(
            "{:#}",
            objects(io::repeat(b' '), "stdin", 4096).unwrap_err()
        );
        assert!(
            e.contains("larger than max_event_bytes = 4096 bytes (4 KiB)"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            objects(io::repeat(0), "`/dev/zero`", 4096).unwrap_err()
        );
        assert!(e.contains("`/dev/zero` line 1: invalid JSON"), "{e}");
        // Each event has its own budget: many small ones are fine.
        let many = "{\"pad\":\"xxxxxxxx\"}\n".repeat(1000);
        assert_eq!(objects(many.as_bytes(), "stdin", 64).unwrap().len(), 1000);
    }

    #[test]
    fn caps_are_shown_in_bytes_and_binary_units() {
        assert_eq!(bytes_text(1024 * 1024), "1048576 bytes (1 MiB)");
        assert_eq!(bytes_text(2048), "2048 bytes (2 KiB)");
        assert_eq!(bytes_text(1500), "1500 bytes");
    }

    #[test]
    fn telemetry_must_be_a_regular_file_and_small_enough() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let e = format!(
            "{:#}",
            read_regular_file(&fifo, 1024, "--telemetry").unwrap_err()
        );
        assert!(e.contains("is a FIFO"), "{e}");
        let e = format!(
            "{:#}",
            read_regular_file(Path::new("/dev/zero"), 1024, "--telemetry").unwrap_err()
        );
        assert!(e.contains("is a device"), "{e}");
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; 2048]).unwrap();
        let e = format!(
            "{:#}",
            read_regular_file(&big, 1024, "--telemetry").unwrap_err()
        );
        assert!(
            e.contains("larger than max_event_bytes = 1024 bytes (1 KiB)"),
            "{e}"
        );
        assert_eq!(
            read_regular_file(&big, 4096, "--telemetry").unwrap().len(),
            2048
        );
    }
}
