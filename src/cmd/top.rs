//! `spec-notify top`: the live view (`crate::tui`) of the store `--source`
//! picks. It needs a terminal; scripts use `status`. Exits 0 on `q`,
//! 130/143 on SIGINT/SIGTERM, with the terminal put back either way.

use std::io::IsTerminal;

use anyhow::Result;

use super::Ctx;
use crate::cli::TopArgs;
use crate::drain::Signal;
use crate::exit::{ExitCode, user_error};
use crate::{output, tui};

pub fn run(ctx: &Ctx, args: &TopArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(user_error(
            "`spec-notify top` needs a terminal (stdin and stdout); in a script use `spec-notify status` (or `status --json`)",
        ));
    }
    let store = super::open_store(ctx, &config, args.source, "top")?;
    let options = tui::Options {
        stalled_after: args.stalled_after,
        color: output::color_enabled(),
        say: &super::say,
    };
    Ok(match tui::run(&*store, &config, &options)? {
        None => ExitCode::Success,
        Some(Signal::Interrupt) => ExitCode::Interrupted,
        Some(Signal::Terminate) => ExitCode::Terminated,
    })
}
