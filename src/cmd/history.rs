//! `spec-notify history`: exports a SPEC's attempt log — every rotated file,
//! oldest first — as JSON Lines (the records as written) or CSV with a header
//! row, for audits and spreadsheets. Lines that do not parse are skipped
//! with a warning on stderr.

use std::io::{self, BufWriter, Write};

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::{HistoryArgs, HistoryFormat};
use crate::evidence::Record;
use crate::exit::ExitCode;
use crate::output::csv_row;

/// The CSV columns, in order.
pub const CSV_HEADER: [&str; 12] = [
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
];

pub fn run(ctx: &Ctx, args: &HistoryArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    super::require_spec(&config, &args.spec, true)?;
    let evidence = super::evidence(&config, &args.spec);
    let (records, skipped) = evidence.read_all()?;
    super::warn_unparseable(skipped, evidence.dir());
    let wanted = records.iter().filter(|r| {
        args.subscription
            .as_deref()
            .is_none_or(|s| s == r.subscription)
            && args.since.is_none_or(|since| r.ts_ms >= since)
    });
    let mut out = BufWriter::new(io::stdout().lock());
    match args.format {
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

/// A record as CSV fields in [`CSV_HEADER`] order; absent values are empty.
fn csv_fields(r: &Record) -> [String; 12] {
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
            response_body: None,
            next_attempt_at: Some("2026-01-01T00:00:02.000Z".into()),
            request: None,
        };
        let fields = csv_fields(&record);
        let at = |name: &str| &fields[CSV_HEADER.iter().position(|h| *h == name).unwrap()];
        assert_eq!(at("outcome"), "dry-run");
        assert_eq!(at("status"), "");
        assert_eq!(at("latency_ms"), "5000");
        assert_eq!(at("attempt"), "2");
        assert_eq!(at("next_attempt_at"), "2026-01-01T00:00:02.000Z");
    }
}
