//! `spec-notify drain`: deliver due jobs (see `crate::drain`), print a
//! one-line summary on stderr (or JSON on stdout) and map it to an exit code.
//! With `--metrics FILE`, a thread beside the drain rewrites FILE every
//! `--metrics-interval` and once more when the drain ends (the engine is
//! not involved: the metrics come from the spool and the attempt logs).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::cli::DrainArgs;
use crate::config::Config;
use crate::drain::{Drainer, Options, Stop};
use crate::exit::ExitCode;
use crate::{clock, metrics, output, publish};

/// The shortest `--metrics-interval` honoured: reading the whole spool more
/// often than this would compete with the drain for the disk.
const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(100);

pub fn run(ctx: &Ctx, args: &DrainArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    if !config.enabled {
        output::note(format_args!(
            "webhooks are disabled ({}): nothing delivered",
            config.enabled_source
        ));
        return Ok(ExitCode::Success);
    }
    if args.source == crate::cli::Source::Nats {
        return super::nats::drain(ctx, &config, args);
    }
    let options = Options {
        spec: args.spec.clone(),
        once: args.once,
        watch: args.watch,
        max_time: args.max_time,
        only: None,
    };
    let stop = Stop::install()?;
    ctx.note(format!(
        "draining {} from {}",
        args.spec.as_deref().unwrap_or("all SPECs"),
        config.spool_dir.display()
    ));
    let mut report = super::drain_reporter(ctx.verbose);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let summary = std::thread::scope(|scope| {
        if let Some(path) = &args.metrics {
            let config = &config;
            let every = args.metrics_interval.max(MIN_METRICS_INTERVAL);
            scope.spawn(move || keep_metrics(config, path, every, &done_rx));
        }
        let summary = Drainer::new(&config, options, stop).run(&mut report);
        drop(done_tx); // the metrics thread writes once more and ends
        summary
    })?;
    let quiet = args.background
        && summary.errors.is_empty()
        && summary.problems.is_empty()
        && summary.dead == 0;
    if !quiet {
        super::report_drain(&summary, args.json)?;
    }
    super::hand_over(ctx, &config, &summary.left_due);
    Ok(super::drain_exit_code(&summary))
}

/// Rewrites the metrics file now and every `every` until `done` is
/// closed, then once more. A failure is a warning (once per distinct
/// message): the drain's work matters more than its metrics.
fn keep_metrics(config: &Config, path: &Path, every: Duration, done: &mpsc::Receiver<()>) {
    let mut last_error: Option<String> = None;
    let mut write = || {
        let written = metrics::collect(config, clock::now_ms())
            .and_then(|(text, _)| publish::write(path, text.as_bytes()));
        match written {
            Ok(_) => last_error = None,
            Err(e) => {
                let message = format!("{e:#}");
                if last_error.as_ref() != Some(&message) {
                    output::warn(format_args!(
                        "could not update the metrics file `{}`: {message}",
                        path.display()
                    ));
                }
                last_error = Some(message);
            }
        }
    };
    loop {
        write();
        if !matches!(
            done.recv_timeout(every),
            Err(mpsc::RecvTimeoutError::Timeout)
        ) {
            write(); // the drain ended: the final numbers
            return;
        }
    }
}
