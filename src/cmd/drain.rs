//! `spec-notify drain`: deliver due jobs (see `crate::drain`), print a
//! one-line summary on stderr (or JSON on stdout) and map it to an exit code.
//! With `--metrics FILE`, a thread beside the drain rewrites FILE every
//! `--metrics-interval` and once more when the drain ends (the engine is
//! not involved: the metrics come from the store, the spool and the
//! attempt logs, or for `--source nats` the streams).
//!
//! With alert rules (`crate::alerts`), `--watch` evaluates them from one
//! more thread every `--alerts-interval`, and a one-shot drain evaluates
//! them once before it exits and delivers the alert jobs that spooled at
//! once (what that leaves, a background drain takes over with auto_drain).

use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Result;

use super::Ctx;
use crate::cli::DrainArgs;
use crate::config::{ALERTS_SPEC, Config};
use crate::drain::{Options, Stop};
use crate::exit::ExitCode;
use crate::store::Store;
use crate::{output, publish, store};

/// The shortest `--metrics-interval` honoured: reading the whole spool more
/// often than this would compete with the drain for the disk.
const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(100);
/// The same for `--alerts-interval` (an evaluation reads the whole store).
const MIN_ALERTS_INTERVAL: Duration = Duration::from_millis(100);

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
    let (alerts_tx, alerts_rx) = mpsc::channel::<()>();
    let summary = std::thread::scope(|scope| {
        if let Some(path) = &args.metrics {
            let (store, config) = (&*store, &config);
            let every = args.metrics_interval;
            let collect = move || Ok(store::metrics_of(store, config)?.0);
            scope.spawn(move || keep_metrics(&collect, path, every, &done_rx));
        }
        if args.watch && !config.alerts.is_empty() {
            let (store, config) = (&*store, &config);
            let every = args.alerts_interval;
            scope.spawn(move || keep_alerts(store, config, every, &alerts_rx));
        }
        let summary = store.drain(options, stop, &mut report);
        drop(done_tx); // the metrics thread writes once more and ends
        drop(alerts_tx);
        summary
    })?;
    if !args.watch && summary.stopped_by.is_none() {
        alerts_once(&*store, &config, ctx.verbose);
    }
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

/// Evaluates the alert rules now and every `every` (at least
/// [`MIN_ALERTS_INTERVAL`]) until `done` is closed. A problem is warned
/// once while it lasts, not at every evaluation.
fn keep_alerts(store: &dyn Store, config: &Config, every: Duration, done: &mpsc::Receiver<()>) {
    let every = every.max(MIN_ALERTS_INTERVAL);
    let mut said: HashSet<String> = HashSet::new();
    loop {
        let mut saying = HashSet::new();
        let evaluated = super::evaluate_alerts(store, config, true, None, &mut |problem| {
            saying.insert(problem.to_string());
            said.contains(problem)
        });
        said = saying;
        if evaluated.is_some_and(|e| !e.spooled.is_empty()) {
            // A drain serving every SPEC finds them by itself; one limited
            // to some SPECs leaves them to a background drain.
            super::hand_over(store, &[ALERTS_SPEC.to_string()]);
        }
        if !matches!(
            done.recv_timeout(every),
            Err(mpsc::RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// A one-shot drain's evaluation before it exits: the alert jobs it
/// spooled are delivered at once (one pass); what is left (a rate limit,
/// a retry) goes to a background drain with auto_drain, or the next run.
fn alerts_once(store: &dyn Store, config: &Config, verbose: bool) {
    let Some(evaluated) = super::evaluate_alerts(store, config, true, None, &mut |_| false) else {
        return;
    };
    if evaluated.spooled.is_empty() {
        return;
    }
    let mut report = super::drain_reporter(verbose);
    match store.deliver_now(ALERTS_SPEC, evaluated.spooled, &mut report) {
        Ok(Some(summary)) => {
            for problem in summary.problems.iter().chain(&summary.errors) {
                output::warn(format_args!("delivering alerts: {problem}"));
            }
        }
        Ok(None) => {} // the fleet's workers deliver them
        Err(e) => output::warn(format_args!("could not deliver the alerts now: {e:#}")),
    }
    super::hand_over(store, &[ALERTS_SPEC.to_string()]);
}
