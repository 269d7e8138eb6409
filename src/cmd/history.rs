//! `spec-notify history [SPEC]`: the attempt log of a SPEC, or of every
//! SPEC (a SPEC column, records merged oldest first) — every rotated file,
//! oldest first — as a table for people (the default on a terminal), JSON
//! Lines (the records as written; the default in a pipe) or CSV with a
//! header row for audits and spreadsheets (cells guarded against formula
//! injection). Lines that do not parse are skipped with a warning on
//! stderr. A well-formed SPEC with no records yet shows nothing and exits
//! 0, naming the known SPECs on stderr (as `list` does). With `--source
//! nats` the records come from the evidence stream (every worker's
//! attempts).

use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::{HistoryArgs, HistoryFormat};
use crate::evidence::Record;
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
    let mut records = Vec::new();
    for spec in &specs {
        let (skipped, place) = store.records(spec, &mut |r| records.push(r))?;
        if skipped > 0 {
            output::warn(format_args!(
                "skipped {skipped} unparseable lines in {place}"
            ));
        }
    }
    if specs.len() > 1 {
        // Each SPEC's log is in order; together they are merged by time.
        records.sort_by_key(|r| r.ts_ms);
    }
    let with_spec = args.spec.is_none();
    let wanted = records.iter().filter(|r| {
        args.subscription
            .as_deref()
            .is_none_or(|s| s == r.subscription)
            && args.since.is_none_or(|since| r.ts_ms >= since)
    });
    let format = args.format.unwrap_or_else(|| {
        use std::io::IsTerminal;
        match io::stdout().is_terminal() {
            true => HistoryFormat::Table,
            false => HistoryFormat::Jsonl,
        }
    });
    let mut out = BufWriter::new(io::stdout().lock());
    match format {
        HistoryFormat::Table => {
            let rows: Vec<Vec<String>> = wanted
                .map(|r| {
                    let mut row = table_row(r);
                    if with_spec {
                        row.insert(1, output::one_line(&r.spec));
                    }
                    row
                })
                .collect();
            let mut header = TABLE_HEADER.to_vec();
            if with_spec {
                header.insert(1, "SPEC");
            }
            if rows.is_empty() {
                writeln!(out, "no attempts")?;
            } else {
                output::table_wrapped(&mut out, &header, &rows, output::terminal_width())?;
                writeln!(out, "-- {} record(s)", rows.len())?;
            }
        }
        HistoryFormat::Jsonl => {
            for record in wanted {
                serde_json::to_writer(&mut out, record)?;
                out.write_all(b"\n")?;
            }
        }
        HistoryFormat::Csv => {
            csv_row(&mut out, &CSV_HEADER)?;
            for record in wanted {
                csv_row(&mut out, &csv_fields(record))?;
            }
        }
    }
    out.flush().context("failed to write to stdout")?;
    Ok(ExitCode::Success)
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
