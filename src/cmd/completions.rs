//! `spec-notify completions SHELL`: shell completion scripts from the clap definition.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::ExitCode;

pub fn run(args: &CompletionsArgs) -> Result<ExitCode> {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "spec-notify",
        &mut std::io::stdout(),
    );
    Ok(ExitCode::Success)
}
