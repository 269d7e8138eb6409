//! Presentation: the `spec-notify: warning:` / `error:` / note lines on
//! stderr (the only place that formats them), aligned tables for people, JSON
//! and CSV for scripts, `NO_COLOR`.

use std::fmt::Display;
use std::io::{self, Write};

/// How serious a diagnostic line on stderr is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Progress and outcomes a person may want to see: no label.
    Note,
    /// Something needs attention but the command goes on.
    Warning,
    /// The command (or part of its work) failed.
    Error,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Note => "",
            Level::Warning => "warning: ",
            Level::Error => "error: ",
        }
    }
}

/// Writes one diagnostic line to `out`: `spec-notify: warning: {message}`.
pub fn diagnostic(out: &mut impl Write, level: Level, message: impl Display) -> io::Result<()> {
    writeln!(out, "spec-notify: {}{message}", level.label())
}

/// Prints a diagnostic on stderr. A closed or broken stderr loses the line
/// but never fails (or panics) the command: its work matters more.
fn to_stderr(level: Level, message: impl Display) {
    let _ = diagnostic(&mut io::stderr().lock(), level, message);
}

/// `spec-notify: {message}` on stderr: progress and outcomes.
pub fn note(message: impl Display) {
    to_stderr(Level::Note, message);
}

/// `spec-notify: warning: {message}` on stderr.
pub fn warn(message: impl Display) {
    to_stderr(Level::Warning, message);
}

/// `spec-notify: error: {message}` on stderr.
pub fn error(message: impl Display) {
    to_stderr(Level::Error, message);
}
// Signal dispositions go through libc: rustix has no supported call for them
// (only its hidden, experimental `runtime` module, unsafe beside a libc).

/// Restores the default SIGPIPE action so `spec-notify list | head` ends
/// quietly instead of reporting a write error.
pub fn die_quietly_on_broken_pipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Makes a write to a closed pipe an `EPIPE` error instead of a fatal
/// signal, for commands that must finish their work regardless (emit).
pub fn ignore_broken_pipe() {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Whether to colour stderr/stdout: only on a terminal and without NO_COLOR.
pub fn color_enabled() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && io::stdout().is_terminal()
}

/// Wraps `text` in an ANSI colour when colour is enabled.
pub fn paint(text: &str, code: &str) -> String {
    if color_enabled() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Writes rows as left-aligned columns under a header.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// One CSV field (RFC 4180): quoted, with quotes doubled, when it holds a
/// comma, a quote or a line break; as-is otherwise.
pub fn csv_field(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\"")).into()
    } else {
        field.into()
    }
}

/// Writes one CSV record, ending in `\n`.
pub fn csv_row<S: AsRef<str>>(out: &mut impl Write, fields: &[S]) -> io::Result<()> {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        out.write_all(csv_field(field.as_ref()).as_bytes())?;
    }
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::Level;

    fn line(level: Level, message: impl std::fmt::Display) -> String {
        let mut out = Vec::new();
        super::diagnostic(&mut out, level, message).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn diagnostics_carry_the_tool_name_and_their_level() {
        assert_eq!(
            line(Level::Note, "delivered 3"),
            "spec-notify: delivered 3\n"
        );
        assert_eq!(
            line(Level::Warning, "skipped `x`"),
            "spec-notify: warning: skipped `x`\n"
        );
        let error = anyhow::anyhow!("disk full").context("failed to write `a.job`");
        assert_eq!(
            line(Level::Error, format_args!("{error:#}")),
            "spec-notify: error: failed to write `a.job`: disk full\n"
        );
    }

    #[test]
    fn csv_quotes_only_what_needs_it() {
        let mut out = Vec::new();
        super::csv_row(&mut out, &["plain", "a,b", "say \"hi\"", "two\nlines", ""]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\n"
        );
    }

    #[test]
    fn table_aligns_columns() {
        let mut out = Vec::new();
        let rows = vec![vec![
            "a".to_string(),
            "long value".to_string(),
            "x".to_string(),
        ]];
        super::table(&mut out, &["ID", "V", "LAST"], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  V           LAST\na   long value  x\n"
        );
    }
}
