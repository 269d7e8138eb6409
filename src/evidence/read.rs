//! Reading attempt logs the way spool files are read: each log file is
//! opened with `O_NOFOLLOW | O_NONBLOCK` and read only if `fstat` says it
//! is a regular file (a symlink, a FIFO or a device is named and skipped,
//! never followed or waited on); lines are at most [`MAX_LINE`] bytes (a
//! longer one is skipped unbuffered, and counted); and records come one at
//! a time ([`Records`]), so a reader holds one open file and one line
//! whatever the size of the log.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::PathBuf;

use anyhow::{Result, bail};

use super::Record;
use crate::files::{Unread, open_regular};

/// The longest line read as a record. A record is a few KiB (the answer
/// is cut to 2 KiB); anything longer is not one of ours.
pub const MAX_LINE: usize = 1024 * 1024;

/// What a read of attempt logs passed over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Lines that are not a record (a torn last line, foreign text).
    pub unparseable: usize,
    /// Lines longer than [`MAX_LINE`], skipped without being held.
    pub too_long: usize,
    /// Log files not read, each as "`path` (why)".
    pub refused: Vec<String>,
}

impl Skipped {
    /// `n` lines that did not parse.
    pub fn unparseable(n: usize) -> Skipped {
        Skipped {
            unparseable: n,
            ..Skipped::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.unparseable == 0 && self.too_long == 0 && self.refused.is_empty()
    }
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let mut parts = Vec::new();
        if self.unparseable > 0 {
            let n = self.unparseable;
            parts.push(format!("{n} unparseable line{}", plural(n)));
        }
        if self.too_long > 0 {
            let n = self.too_long;
            parts.push(format!(
                "{n} line{} longer than {}",
                plural(n),
                crate::input::bytes_text(MAX_LINE)
            ));
        }
        for file in &self.refused {
            parts.push(format!("the file {file}"));
        }
        f.write_str(&parts.join(", "))
    }
}

/// The records of some log files, oldest first, pulled one at a time.
#[derive(Debug)]
pub struct Records {
    files: std::vec::IntoIter<PathBuf>,
    current: Option<(PathBuf, BufReader<File>)>,
    line: Vec<u8>,
    skipped: Skipped,
}

impl Records {
    /// The records of `files`, read in that order.
    pub fn new(files: Vec<PathBuf>) -> Records {
        Records {
            files: files.into_iter(),
            current: None,
            line: Vec::new(),
            skipped: Skipped::default(),
        }
    }

    pub fn into_skipped(self) -> Skipped {
        self.skipped
    }

    /// The next record, or `None` after the last file.
    pub fn next_record(&mut self) -> Result<Option<Record>> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.next() else {
                    return Ok(None);
                };
                match open_regular(&path) {
                    Ok(file) => {
                        self.current = Some((path, BufReader::with_capacity(64 * 1024, file)));
                    }
                    Err(Unread::Gone) => {} // rotated away or trimmed meanwhile
                    Err(Unread::Bad(why)) => self.skipped.refused.push(format!(
                        "`{}` ({why}: an attempt log is read only as a regular file; move it away)",
                        path.display()
                    )),
                    Err(Unread::Io(why)) => {
                        bail!("failed to open the attempt log `{}`: {why}", path.display())
                    }
                }
                continue;
            }
            let Some((path, reader)) = self.current.as_mut() else {
                continue;
            };
            let line = match next_line(reader, &mut self.line, MAX_LINE) {
                Ok(line) => line,
                Err(e) => bail!("failed to read `{}`: {e}", path.display()),
            };
            match line {
                Line::End => self.current = None,
                Line::TooLong => self.skipped.too_long += 1,
                Line::Whole => match serde_json::from_slice(&self.line) {
                    Ok(record) => return Ok(Some(record)),
                    Err(_) if self.line.trim_ascii().is_empty() => {}
                    Err(_) => self.skipped.unparseable += 1,
                },
            }
        }
    }
}

/// Records pulled one at a time, oldest first, and what was passed over:
/// what a reader that must not hold a whole log (a merge of many) takes.
pub trait Pull {
    fn next_record(&mut self) -> Result<Option<Record>>;
    /// What was passed over so far.
    fn skipped(&self) -> Skipped;
}

impl Pull for Records {
    fn next_record(&mut self) -> Result<Option<Record>> {
        Records::next_record(self)
    }

    fn skipped(&self) -> Skipped {
        self.skipped.clone()
    }
}

/// Records already read whole (a backend that has no other way).
#[derive(Debug)]
pub struct Held {
    records: std::vec::IntoIter<Record>,
    skipped: Skipped,
}

impl Held {
    pub fn new(records: Vec<Record>, skipped: Skipped) -> Held {
        Held {
            records: records.into_iter(),
            skipped,
        }
    }
}

impl Pull for Held {
    fn next_record(&mut self) -> Result<Option<Record>> {
        Ok(self.records.next())
    }

    fn skipped(&self) -> Skipped {
        self.skipped.clone()
    }
}

/// What [`next_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A line (without its newline) is in the buffer.
    Whole,
    /// A line longer than the cap went by; the buffer is empty.
    TooLong,
    /// Nothing more.
    End,
}

/// Reads the next line into `line` (bytes: a torn line may end inside a
/// UTF-8 character), holding at most `max` bytes of it: the rest of a
/// longer line is read past, not kept.
fn next_line(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Whole,
            });
        }
        any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let part = &buf[..newline.unwrap_or(buf.len())];
        if !too_long {
            if line.len() + part.len() > max {
                too_long = true;
                *line = Vec::new();
            } else {
                line.extend_from_slice(part);
            }
        }
        let used = newline.map_or(buf.len(), |at| at + 1);
        reader.consume(used);
        if newline.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_past_the_cap_are_skipped_without_being_held() {
        let text = format!("short\n{}\nlast", "x".repeat(100));
        let mut reader = BufReader::with_capacity(8, text.as_bytes());
        let mut line = Vec::new();
        assert_eq!(next_line(&mut reader, &mut line, 10).unwrap(), Line::Whole);
        assert_eq!(line, b"short");
        assert_eq!(
            next_line(&mut reader, &mut line, 10).unwrap(),
            Line::TooLong
        );
        assert!(line.capacity() <= 10, "never grown past the cap");
        assert_eq!(next_line(&mut reader, &mut line, 10).unwrap(), Line::Whole);
        assert_eq!(line, b"last");
        assert_eq!(next_line(&mut reader, &mut line, 10).unwrap(), Line::End);
    }

    #[test]
    fn an_endless_line_costs_the_cap_not_the_file() {
        // /dev/zero never ends: read a bounded slice of it as one long line.
        use std::io::Read;
        let zeros = File::open("/dev/zero").unwrap().take(8 * 1024 * 1024);
        let mut reader = BufReader::new(zeros);
        let mut line = Vec::new();
        assert_eq!(
            next_line(&mut reader, &mut line, 1024).unwrap(),
            Line::TooLong
        );
        assert!(line.capacity() <= 1024);
    }

    #[test]
    fn refused_files_and_skipped_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("attempts.jsonl");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let mut records = Records::new(vec![link]);
        assert!(records.next_record().unwrap().is_none());
        let skipped = records.into_skipped();
        assert_eq!(skipped.refused.len(), 1);
        let shown = skipped.to_string();
        assert!(shown.contains("symbolic link"), "{shown}");
        assert!(shown.contains("attempts.jsonl"), "{shown}");
        let lines = Skipped {
            unparseable: 1,
            too_long: 2,
            refused: Vec::new(),
        };
        assert_eq!(
            lines.to_string(),
            "1 unparseable line, 2 lines longer than 1048576 bytes (1 MiB)"
        );
    }
}
