//! `spec-notify drain`: deliver due jobs (see `crate::drain`), print a
//! one-line summary on stderr (or JSON on stdout) and map it to an exit code.

use anyhow::Result;

use super::Ctx;
use crate::cli::DrainArgs;
use crate::drain::{Drainer, Options, Stop};
use crate::exit::ExitCode;
use crate::output;

pub fn run(ctx: &Ctx, args: &DrainArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    if !config.enabled {
        output::note(format_args!(
            "webhooks are disabled ({}): nothing delivered",
            config.enabled_source
        ));
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
    let mut report = super::drain_reporter(ctx.verbose);
    let summary = Drainer::new(&config, options, stop).run(&mut report)?;
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
