//! `spec-notify drain`: deliver due jobs (see `crate::drain`), print a
//! one-line summary on stderr (or JSON on stdout) and map it to an exit code.

use anyhow::Result;

use super::Ctx;
use crate::cli::DrainArgs;
use crate::drain::{Drainer, Options, Signal, Stop, Summary};
use crate::envelope::check_spec_id;
use crate::exit::{ExitCode, user_error};
use crate::output;

pub fn run(ctx: &Ctx, args: &DrainArgs) -> Result<ExitCode> {
    if let Some(spec) = &args.spec {
        check_spec_id(spec).map_err(user_error)?;
    }
    let config = ctx.load_config()?;
    if !config.enabled {
        eprintln!(
            "spec-notify: webhooks are disabled ({}): nothing delivered",
            config.enabled_source
        );
        return Ok(ExitCode::Success);
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
    let summary = Drainer::new(&config, options, stop).run()?;
    let quiet = args.background
        && summary.errors.is_empty()
        && summary.problems.is_empty()
        && summary.dead == 0;
    if !quiet {
        report(&summary, args.json)?;
    }
    Ok(exit_code(&summary))
}

pub fn report(summary: &Summary, json: bool) -> Result<()> {
    for problem in &summary.problems {
        eprintln!("spec-notify: error: {problem}");
    }
    if json {
        output::print_json(summary)?;
    }
    eprintln!("spec-notify: {}", summary.line());
    Ok(())
}

/// Signals first (130/143), then I/O failures (1), then missing secrets (2).
pub fn exit_code(summary: &Summary) -> ExitCode {
    match summary.stopped_by {
        Some(Signal::Interrupt) => ExitCode::Interrupted,
        Some(Signal::Terminate) => ExitCode::Terminated,
        None if !summary.errors.is_empty() => ExitCode::Failure,
        None if !summary.problems.is_empty() => ExitCode::Usage,
        None => ExitCode::Success,
    }
}
