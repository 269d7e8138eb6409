//! `spec-notify report`: writes the HTML health report (see `crate::report`)
//! for some or every SPEC to `--output` (default
//! `<evidence_dir>/webhooks-report.html`), atomically, and says where.
//! `--source nats`: from the streams (every host).

use anyhow::Result;

use super::Ctx;
use crate::cli::ReportArgs;
use crate::exit::ExitCode;
use crate::report::{self, Collector, Scope};
use crate::{clock, health, output, publish};

/// The report's file name under `evidence_dir` when `--output` is not given.
pub const DEFAULT_NAME: &str = "webhooks-report.html";

pub fn run(ctx: &Ctx, args: &ReportArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let mut specs = args.specs.clone();
    specs.sort();
    specs.dedup();
    let store = super::open_store(ctx, &config, args.source, "report")?;
    for spec in &specs {
        super::note_if_unknown_spec(&*store, spec, true)?;
    }
    let source = store.health_since(Some(args.since))?;
    let chosen = match specs.is_empty() {
        true => source.specs()?,
        false => specs.clone(),
    };
    let now = clock::now_ms();
    let mut collected = Collector::default();
    let snapshot = health::gather_from(
        &*source,
        &config,
        &chosen,
        Some(args.since),
        now,
        &mut |r| collected.add(r),
    )?;
    super::warn_snapshot(&snapshot);
    let scope = Scope {
        specs,
        since_ms: args.since.min(now),
        from: store.shown_from(),
    };
    let mut page = report::build(&snapshot, collected, &*source, &scope);
    let held: Vec<String> = store
        .held_lanes()?
        .iter()
        .filter(|h| chosen.contains(&h.spec))
        .map(|h| {
            format!(
                "{} → {} waits for {}",
                h.spec, h.subscription, h.delivery_id
            )
        })
        .collect();
    if !held.is_empty() {
        page.tiles.push(report::Tile {
            label: "Held FIFO lines",
            value: held.len().to_string(),
            detail: format!(
                "{}; replay or discard the dead job (see Dead letters)",
                held.join("; ")
            ),
            tone: "bad",
        });
    }
    let html = page.render_html()?;
    let path = match &args.output {
        Some(path) => path.clone(),
        None => {
            std::fs::create_dir_all(&config.evidence_dir).map_err(|e| {
                anyhow::anyhow!(
                    "failed to create evidence folder `{}`: {e}",
                    config.evidence_dir.display()
                )
            })?;
            config.evidence_dir.join(DEFAULT_NAME)
        }
    };
    publish::write(&path, html.as_bytes())?;
    output::note(format_args!(
        "wrote the health report to `{}` ({} SPEC(s), {} subscription(s), {} dead-letter(s))",
        path.display(),
        snapshot.specs.len(),
        snapshot.subscriptions.len(),
        page.dead_total
    ));
    Ok(ExitCode::Success)
}
