//! Presentation: the `spec-notify: warning:` / `error:` / note lines on
//! stderr (the only place that formats them), aligned tables for people, JSON
//! and CSV for scripts, `NO_COLOR`, and [`sanitize`]: text from outside (a
//! receiver's answer, a spool file name, an input key) never reaches a
//! terminal with the control characters that would drive it.

use std::borrow::Cow;
use std::fmt::Display;
use std::io::{self, Write};

use unicode_width::UnicodeWidthStr;

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
/// Messages quote spool file names, receivers' answers and input, so they
/// are [`sanitize`]d; line breaks stay (a config error lists one problem a
/// line).
pub fn diagnostic(out: &mut impl Write, level: Level, message: impl Display) -> io::Result<()> {
    let message = message.to_string();
    writeln!(out, "spec-notify: {}{}", level.label(), sanitize(&message))
}

/// Text from outside, safe to print on a terminal: every control character
/// but the line break and the tab (ESC, and with it CSI and OSC sequences,
/// BEL, backspace, carriage return, DEL, the C1 controls) and every
/// bidirectional override or isolate (which reorder what a reader sees) is
/// shown as its escape, `\u{1b}`. Borrowed when there is nothing to replace.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    escape_where(text, is_unsafe)
}

/// `text` with every character `unsafe_char` picks shown as its escape.
fn escape_where(text: &str, unsafe_char: fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A character [`sanitize`] replaces.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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

/// A latency for people: `999ms`, `1.5s`, `-` when there is none.
pub fn latency_text(ms: Option<u64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
    }
}

/// How many terminal columns `text` takes: a CJK character or an emoji
/// two, a combining mark none.
pub fn display_width(text: &str) -> usize {
    text.width()
}

/// `text` padded with spaces to `width` terminal columns.
fn pad_to(text: &str, width: usize) -> String {
    let mut out = text.to_string();
    out.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(display_width(text)),
    ));
    out
}

/// Writes rows as left-aligned columns under a header, aligned by display
/// width. Each cell is shown as [`one_line`]: cells hold text from outside.
pub fn table(out: &mut impl Write, header: &[&str], rows: &[Vec<String>]) -> io::Result<()> {
    let rows = &one_line_cells(rows);
    let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(display_width(cell));
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
                    pad_to(c, widths[i])
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

/// The terminal's width in columns: `$COLUMNS`, else the terminal stdout
/// is, else 100 (a pipe or a file).
pub fn terminal_width() -> usize {
    if let Some(cols) = std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()) {
        return cols;
    }
    match rustix::termios::tcgetwinsize(io::stdout()) {
        Ok(size) if size.ws_col > 0 => usize::from(size.ws_col),
        _ => 100,
    }
}

/// One line of text for a table cell: line breaks and tabs become spaces,
/// other control characters their escapes ([`sanitize`]).
pub fn one_line(text: &str) -> String {
    let spaced: Cow<'_, str> = if text.contains(['\n', '\r', '\t']) {
        text.replace(['\n', '\r', '\t'], " ").into()
    } else {
        text.into()
    };
    sanitize(&spaced).into_owned()
}

/// Like [`table`] (cells shown as [`one_line`]), but the last column wraps to fit `width` columns in all,
/// its further lines indented under it. When that would leave it narrower
/// than [`MIN_WRAP`], it goes under its row instead, indented by four
/// spaces (like `postqueue -p`). Lines break at spaces only, never inside a
/// command or an id, unless a word is longer than the line.
pub fn table_wrapped(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
    width: usize,
) -> io::Result<()> {
    let rows = &one_line_cells(rows);
    let last = header.len().saturating_sub(1);
    let mut widths: Vec<usize> = header.iter().map(|h| display_width(h)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row).take(last) {
            *w = (*w).max(display_width(cell));
        }
    }
    let indent: usize = widths[..last].iter().map(|w| w + 2).sum();
    let below = width.saturating_sub(indent) < MIN_WRAP;
    let (pad, wrap_at) = match below {
        true => ("    ".to_string(), width.saturating_sub(4).max(MIN_WRAP)),
        false => (" ".repeat(indent), width - indent),
    };
    let options = textwrap::Options::new(wrap_at)
        .word_splitter(textwrap::WordSplitter::NoHyphenation)
        .break_words(true);
    let line = |out: &mut dyn Write, cells: &[&str]| -> io::Result<()> {
        let mut start = String::new();
        for (i, cell) in cells.iter().enumerate().take(last) {
            start.push_str(&pad_to(cell, widths[i]));
            start.push_str("  ");
        }
        let text = cells.get(last).copied().unwrap_or("");
        let lines = textwrap::wrap(text, &options);
        let mut lines = lines.iter();
        match below {
            true => writeln!(out, "{}", start.trim_end())?,
            false => writeln!(out, "{start}{}", lines.next().map_or("", |l| l.as_ref()))?,
        }
        for more in lines {
            writeln!(out, "{pad}{more}")?;
        }
        Ok(())
    };
    line(out, header)?;
    for row in rows {
        line(out, &row.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    Ok(())
}

fn one_line_cells(rows: &[Vec<String>]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|cell| one_line(cell)).collect())
        .collect()
}

/// The narrowest a wrapped column gets before it moves under its row.
pub const MIN_WRAP: usize = 40;

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// One CSV field (RFC 4180): quoted, with quotes doubled, when it holds a
/// comma, a quote or a line break; as-is otherwise. A field a spreadsheet
/// would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
/// carriage return: OWASP's "CSV injection") gets a leading `'`, which
/// spreadsheets show as text; scripts reading the CSV see the `'`. Control
/// characters and bidirectional overrides are shown as escapes as
/// [`sanitize`] does (CSV goes to terminals too), except the carriage
/// return, which a quoted cell keeps with the line break and the tab.
pub fn csv_field(field: &str) -> Cow<'_, str> {
    let clean = escape_where(field, |c| c != '\r' && is_unsafe(c));
    let guarded = if clean.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{clean}").into()
    } else {
        clean
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\"")).into()
    } else {
        guarded
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
    fn csv_guards_cells_a_spreadsheet_would_run() {
        let mut out = Vec::new();
        super::csv_row(
            &mut out,
            &[
                "=HYPERLINK(\"http://x\")",
                "+1",
                "-2",
                "@SUM(A1)",
                "\tx",
                "\rx",
                "a=b",
                "2026-01-01",
            ],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\"'=HYPERLINK(\"\"http://x\"\")\",'+1,'-2,'@SUM(A1),'\tx,\"'\rx\",a=b,2026-01-01\n"
        );
    }

    #[test]
    fn csv_cells_carry_no_terminal_escapes() {
        let mut out = Vec::new();
        super::csv_row(
            &mut out,
            &["no\u{1b}]0;X\u{7}", "a\r\nb\tc", "\u{9b}\u{202e}x"],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains(['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}']),
            "{text}"
        );
        assert_eq!(
            text,
            "no\\u{1b}]0;X\\u{7},\"a\r\nb\tc\",\\u{9b}\\u{202e}x\n"
        );
    }

    #[test]
    fn wrapped_tables_indent_the_last_column_or_put_it_below() {
        let rows = vec![vec![
            "id-1".to_string(),
            "dead".to_string(),
            "exhausted: HTTP 401: check secret_env SECRET_HOOK, then run `spec-notify replay S-1 --delivery-id 0b6f-77`".to_string(),
        ]];
        let mut out = Vec::new();
        super::table_wrapped(&mut out, &["ID", "STATE", "DETAIL"], &rows, 60).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    STATE  DETAIL\n\
             id-1  dead   exhausted: HTTP 401: check secret_env\n\
             \x20            SECRET_HOOK, then run `spec-notify replay S-1\n\
             \x20            --delivery-id 0b6f-77`\n"
        );
        let mut out = Vec::new();
        super::table_wrapped(&mut out, &["ID", "STATE", "DETAIL"], &rows, 50).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID    STATE\n\
             \x20   DETAIL\n\
             id-1  dead\n\
             \x20   exhausted: HTTP 401: check secret_env\n\
             \x20   SECRET_HOOK, then run `spec-notify replay S-1\n\
             \x20   --delivery-id 0b6f-77`\n"
        );
    }

    #[test]
    fn sanitize_shows_control_characters_as_escapes() {
        use std::borrow::Cow;
        assert!(matches!(
            super::sanitize("plain é ✓\nnext\tcol"),
            Cow::Borrowed(_)
        ));
        let hostile = "\u{1b}]0;owned\u{7}\u{1b}[2J\r\u{8}\u{7f}\u{9b}31m\u{202e}txt.exe\u{0}";
        let shown = super::sanitize(hostile);
        assert_eq!(
            shown,
            "\\u{1b}]0;owned\\u{7}\\u{1b}[2J\\u{d}\\u{8}\\u{7f}\\u{9b}31m\\u{202e}txt.exe\\u{0}"
        );
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(super::one_line("a\nb\r\tc\u{1b}[31m"), "a b  c\\u{1b}[31m");
    }

    #[test]
    fn diagnostics_and_tables_never_carry_escapes() {
        let warning = line(Level::Warning, "skipped `evil\u{1b}]0;x\u{7}.job`");
        assert_eq!(
            warning,
            "spec-notify: warning: skipped `evil\\u{1b}]0;x\\u{7}.job`\n"
        );
        let rows = vec![vec!["a\u{1b}[2J".to_string(), "b\nc".to_string()]];
        let mut out = Vec::new();
        super::table(&mut out, &["X", "Y"], &rows).unwrap();
        super::table_wrapped(&mut out, &["X", "Y"], &rows, 80).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(text.contains("a\\u{1b}[2J  b c"), "{text:?}");
    }

    #[test]
    fn latency_is_short() {
        assert_eq!(super::latency_text(Some(999)), "999ms");
        assert_eq!(super::latency_text(Some(1500)), "1.5s");
        assert_eq!(super::latency_text(None), "-");
    }

    #[test]
    fn wide_characters_keep_columns_aligned() {
        let rows = vec![
            vec!["SPEC-日本語".to_string(), "x".to_string(), "1".to_string()],
            vec!["SPEC-🚀".to_string(), "y".to_string(), "2".to_string()],
            vec!["SPEC-A".to_string(), "z".to_string(), "3".to_string()],
        ];
        for wrapped in [false, true] {
            let mut out = Vec::new();
            match wrapped {
                false => super::table(&mut out, &["SPEC", "V", "N"], &rows).unwrap(),
                true => super::table_wrapped(&mut out, &["SPEC", "V", "N"], &rows, 80).unwrap(),
            }
            let text = String::from_utf8(out).unwrap();
            // Each row's second column starts at the same terminal column.
            let starts: Vec<usize> = text
                .lines()
                .map(|l| {
                    let (i, _) = l.char_indices().find(|(_, c)| "Vxyz".contains(*c)).unwrap();
                    super::display_width(&l[..i])
                })
                .collect();
            assert!(starts.windows(2).all(|w| w[0] == w[1]), "{text}");
            assert!(text.contains("SPEC-日本語  x"), "{text}");
        }
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
