//! `spec-notify history [SPEC]`: the attempt log of a SPEC, or of every
//! SPEC (a SPEC column, records merged oldest first) — every rotated file,
//! oldest first — as a table for people (the default on a terminal), JSON
//! Lines (the records as written; the default in a pipe) or CSV with a
//! header row for audits and spreadsheets (cells guarded against formula
//! injection). Records are read and printed one at a time (SPECs merged
//! holding one record each), so a log of any size costs the same memory.
//! Lines that do not parse or pass 1 MiB are skipped with a warning on
//! stderr; a log file that is not a regular file (a symlink, a FIFO) is
//! not read, named on stderr, and the exit code is 1. A well-formed SPEC with no records yet shows nothing and exits
//! 0, naming the known SPECs on stderr (as `list` does). With `--source
//! nats` the records come from the evidence stream (every worker's
//! attempts).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::{HistoryArgs, HistoryFormat};
use crate::evidence::{Pull, Record};
use crate::exit::ExitCode;
use crate::output::{self, csv_row};

/// Longest receiver answer shown in a table cell (the JSON and CSV have it all).
const ANSWER_CHARS: usize = 160;

/// The CSV columns, in order. New columns go last (`response_body`, then
/// `trace_id` and `span_id`), so scripts that read by position keep working.
pub const CSV_HEADER: [&str; 15] = [
    "ts",
    "delivery_id",
    "spec",
    "subscription",
    "event_type",
    "attempt",
    "url",
    "status",
    "outcome",
    "latency_ms",
    "error",
    "next_attempt_at",
    "response_body",
    "trace_id",
    "span_id",
];

pub fn run(ctx: &Ctx, args: &HistoryArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let store = super::open_store(ctx, &config, args.source, "history")?;
    let specs = match &args.spec {
        Some(spec) if store.unknown_spec(spec, true)?.is_some() => {
            super::note_if_unknown_spec(&*store, spec, true)?;
            Vec::new()
        }
        Some(spec) => vec![spec.clone()],
        None => store.health()?.specs()?,
    };
    if specs.len() > 1 {
        // The merge reads every SPEC's log at once: one descriptor each.
        crate::drain::fds::raise_limit();
    }
    let mut streams = Vec::new();
    let mut places = Vec::new();
    for spec in &specs {
        let (stream, place) = store.record_stream(spec)?;
        streams.push(stream);
        places.push(place);
    }
    let format = args.format.unwrap_or_else(|| {
        use std::io::IsTerminal;
        match io::stdout().is_terminal() {
            true => HistoryFormat::Table,
            false => HistoryFormat::Jsonl,
        }
    });
    let mut out = Sink::new(format, args.spec.is_none());
    // Each SPEC's log is in order; together they are merged by time, one
    // record per SPEC held at a time.
    let mut merge = Merge::new(streams);
    while let Some(record) = merge.next()? {
        let wanted = args
            .subscription
            .as_deref()
            .is_none_or(|s| s == record.subscription)
            && args.since.is_none_or(|since| record.ts_ms >= since);
        if wanted {
            out.push(&record)?;
        }
    }
    out.finish()?;
    let mut refused = false;
    for (stream, place) in merge.streams.iter().zip(&places) {
        let skipped = stream.skipped();
        if !skipped.is_empty() {
            refused |= !skipped.refused.is_empty();
            output::warn(format_args!("skipped {skipped} in {place}"));
        }
    }
    // A log that could not be read at all is a failure, not a quiet gap.
    Ok(match refused {
        true => ExitCode::Failure,
        false => ExitCode::Success,
    })
}

/// Rows of a table printed at once: a longer history is printed in pages
/// of this many rows, each with its header (a table is for people; a
/// whole log is `--format jsonl` or `csv`, printed as it is read).
const TABLE_PAGE: usize = 1000;

/// Where records go, as they come: straight out as JSON Lines or CSV, or
/// into table pages.
struct Sink {
    out: BufWriter<io::StdoutLock<'static>>,
    format: HistoryFormat,
    with_spec: bool,
    rows: Vec<Vec<String>>,
    count: usize,
}

impl Sink {
    fn new(format: HistoryFormat, with_spec: bool) -> Sink {
        Sink {
            out: BufWriter::new(io::stdout().lock()),
            format,
            with_spec,
            rows: Vec::new(),
            count: 0,
        }
    }

    fn push(&mut self, r: &Record) -> Result<()> {
        match self.format {
            HistoryFormat::Table => {
                let mut row = table_row(r);
                if self.with_spec {
                    row.insert(1, output::one_line(&r.spec));
                }
                self.rows.push(row);
                if self.rows.len() >= TABLE_PAGE {
                    self.page()?;
                }
            }
            HistoryFormat::Jsonl => {
                serde_json::to_writer(&mut self.out, r)?;
                self.out.write_all(b"\n")?;
            }
            HistoryFormat::Csv => {
                if self.count == 0 {
                    csv_row(&mut self.out, &CSV_HEADER)?;
                }
                csv_row(&mut self.out, &csv_fields(r))?;
            }
        }
        self.count += 1;
        Ok(())
    }

    fn page(&mut self) -> Result<()> {
        let mut header = TABLE_HEADER.to_vec();
        if self.with_spec {
            header.insert(1, "SPEC");
        }
        output::table_wrapped(&mut self.out, &header, &self.rows, output::terminal_width())?;
        self.rows.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<()> {
        match self.format {
            HistoryFormat::Table if self.count == 0 => writeln!(self.out, "no attempts")?,
            HistoryFormat::Table => {
                if !self.rows.is_empty() {
                    self.page()?;
                }
                writeln!(self.out, "-- {} record(s)", self.count)?;
            }
            HistoryFormat::Csv if self.count == 0 => csv_row(&mut self.out, &CSV_HEADER)?,
            _ => {}
        }
        self.out.flush().context("failed to write to stdout")
    }
}

/// Records of several streams, each in order, merged by time (ties in
/// stream order), holding one record per stream.
struct Merge<'a> {
    streams: Vec<Box<dyn Pull + 'a>>,
    heads: Vec<Option<Record>>,
    order: BinaryHeap<Reverse<(u64, usize)>>,
    started: bool,
}

impl<'a> Merge<'a> {
    fn new(streams: Vec<Box<dyn Pull + 'a>>) -> Merge<'a> {
        let heads = streams.iter().map(|_| None).collect();
        Merge {
            streams,
            heads,
            order: BinaryHeap::new(),
            started: false,
        }
    }

    fn pull(&mut self, i: usize) -> Result<()> {
        if let Some(record) = self.streams[i].next_record()? {
            self.order.push(Reverse((record.ts_ms, i)));
            self.heads[i] = Some(record);
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Option<Record>> {
        if !self.started {
            self.started = true;
            for i in 0..self.streams.len() {
                self.pull(i)?;
            }
        }
        let Some(Reverse((_, i))) = self.order.pop() else {
            return Ok(None);
        };
        let record = self.heads[i].take();
        self.pull(i)?;
        Ok(record)
    }
}

const TABLE_HEADER: [&str; 8] = [
    "TIME (UTC)",
    "SUBSCRIPTION",
    "DELIVERY ID",
    "TRY",
    "OUTCOME",
    "STATUS",
    "LATENCY",
    "ERROR / ANSWER",
];

/// A record as a table row: the last cell says what went wrong and what
/// the receiver answered, on one line (the table wraps it).
fn table_row(r: &Record) -> Vec<String> {
    let mut detail = Vec::new();
    if let Some(error) = &r.error {
        detail.push(output::one_line(error));
    }
    if let Some(body) = r
        .response_body
        .as_deref()
        .map(str::trim)
        .filter(|b| !b.is_empty())
    {
        let body = output::one_line(body);
        let cut = match body.chars().count() > ANSWER_CHARS {
            true => format!(
                "{}…",
                body.chars().take(ANSWER_CHARS - 1).collect::<String>()
            ),
            false => body,
        };
        detail.push(format!("answer: {cut}"));
    }
    if let Some(next) = &r.next_attempt_at {
        detail.push(format!("next attempt {}", next.replace('T', " ")));
    }
    vec![
        r.ts.get(..19).unwrap_or(&r.ts).replace('T', " "),
        output::one_line(&r.subscription),
        output::one_line(&r.delivery_id),
        r.attempt.to_string(),
        r.outcome.name().to_string(),
        r.status.map_or("-".into(), |s| s.to_string()),
        output::latency_text(r.latency_ms),
        if detail.is_empty() {
            "-".into()
        } else {
            detail.join("; ")
        },
    ]
}

/// A record as CSV fields in [`CSV_HEADER`] order; absent values are empty.
fn csv_fields(r: &Record) -> [String; 15] {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let outcome = serde_json::to_value(r.outcome)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    [
        r.ts.clone(),
        r.delivery_id.clone(),
        r.spec.clone(),
        r.subscription.clone(),
        r.event_type.clone(),
        r.attempt.to_string(),
        r.url.clone(),
        opt(r.status.map(|s| s.to_string())),
        outcome,
        opt(r.latency_ms.map(|l| l.to_string())),
        opt(r.error.clone()),
        opt(r.next_attempt_at.clone()),
        opt(r.response_body.clone()),
        opt(r.trace_id.clone()),
        opt(r.span_id.clone()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::Outcome;

    #[test]
    fn csv_fields_follow_the_header() {
        let record = Record {
            ts: "2026-01-01T00:00:00.000Z".into(),
            ts_ms: 0,
            delivery_id: "d".into(),
            spec: "S".into(),
            subscription: "sub".into(),
            event_type: "a.b.c".into(),
            attempt: 2,
            url: "https://x/h".into(),
            status: None,
            error: Some("timed out".into()),
            latency_ms: Some(5000),
            outcome: Outcome::DryRun,
            response_body: Some("=cmd|' /C calc'!A0".into()),
            next_attempt_at: Some("2026-01-01T00:00:02.000Z".into()),
            request: None,
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: None,
        };
        let fields = csv_fields(&record);
        let at = |name: &str| &fields[CSV_HEADER.iter().position(|h| *h == name).unwrap()];
        assert_eq!(at("outcome"), "dry-run");
        assert_eq!(at("status"), "");
        assert_eq!(at("latency_ms"), "5000");
        assert_eq!(at("attempt"), "2");
        assert_eq!(at("next_attempt_at"), "2026-01-01T00:00:02.000Z");
        assert_eq!(at("trace_id"), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(at("span_id"), "");
        assert_eq!(
            CSV_HEADER[..13].last(),
            Some(&"response_body"),
            "old columns keep their place"
        );
        assert_eq!(
            at("response_body"),
            "=cmd|' /C calc'!A0",
            "csv_row guards it"
        );
        let row = table_row(&record);
        assert_eq!(row[0], "2026-01-01 00:00:00");
        assert_eq!(
            row[7],
            "timed out; answer: =cmd|' /C calc'!A0; next attempt 2026-01-01 00:00:02.000Z"
        );
    }
}
