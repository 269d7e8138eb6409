//! `spec-notify drain`: deliver due jobs (see `crate::drain`), print a
//! one-line summary on stderr (or JSON on stdout) and map it to an exit code.
//! With `--metrics FILE`, a thread beside the drain rewrites FILE every
//! `--metrics-interval` and once more when the drain ends (the engine is
//! not involved: the metrics come from the store, the spool and the
//! attempt logs, or for `--source nats` the streams).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::cli::DrainArgs;
use crate::drain::{Options, Stop};
use crate::exit::ExitCode;
use crate::{output, publish, store};

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
    if let Some(fd) = args.duty_fd {
        // emit took the spool's duty lock and handed it over as `fd`.
        crate::drain::duty::inherit(fd);
    }
    let store = super::open_store(ctx, &config, args.source, "drain")?;
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
        store
            .shown_from()
            .unwrap_or_else(|| config.spool_dir.display().to_string())
    ));
    let mut report = super::drain_reporter(ctx.verbose);
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let summary = std::thread::scope(|scope| {
        if let Some(path) = &args.metrics {
            let (store, config) = (&*store, &config);
            let every = args.metrics_interval;
            let collect = move || Ok(store::metrics_of(store, config)?.0);
            scope.spawn(move || keep_metrics(&collect, path, every, &done_rx));
        }
        let summary = store.drain(options, stop, &mut report);
        drop(done_tx); // the metrics thread writes once more and ends
        summary
    })?;
    let code = super::finish_drain(&summary, args.background, args.json)?;
    super::hand_over(&*store, &summary.left_due);
    Ok(code)
}

/// Rewrites the metrics file with what `collect` renders now and every
/// `every` (at least [`MIN_METRICS_INTERVAL`]) until `done` is closed, then
/// once more. A failure is a warning (once per distinct message): the
/// drain's work matters more than its metrics.
fn keep_metrics(
    collect: &dyn Fn() -> Result<String>,
    path: &Path,
    every: Duration,
    done: &mpsc::Receiver<()>,
) {
    let every = every.max(MIN_METRICS_INTERVAL);
    let mut last_error: Option<String> = None;
    let mut write = || {
        let written = collect().and_then(|text| publish::write(path, text.as_bytes()));
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
