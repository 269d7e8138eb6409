//! One module per command; each parses nothing and prints what it owns,
//! calling into the library modules for the work.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::exit::ExitCode;

mod check;
mod completions;
mod demo;
mod discard;
mod drain;
mod emit;
mod history;
mod list;
mod receive;
mod replay;
mod status;
mod test;
mod verify;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Option<PathBuf>,
    pub verbose: bool,
}

impl Ctx {
    /// Loads the config; a missing or invalid file is an exit-2 error.
    pub fn load_config(&self) -> Result<Config> {
        config::load_required(self.config.as_deref())
    }

    /// Prints a progress note on stderr with `-v`.
    pub fn note(&self, message: impl std::fmt::Display) {
        if self.verbose {
            eprintln!("spec-notify: {message}");
        }
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        config: cli.config,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Check(args) => check::run(&ctx, &args),
        Command::Emit(args) => emit::run(&ctx, &args),
        Command::Drain(args) => drain::run(&ctx, &args),
        Command::Test(args) => test::run(&ctx, &args),
        Command::List(args) => list::run(&ctx, &args),
        Command::Replay(args) => replay::run(&ctx, &args),
        Command::Discard(args) => discard::run(&ctx, &args),
        Command::Status(args) => status::run(&ctx, &args),
        Command::History(args) => history::run(&ctx, &args),
        Command::Receive(args) => receive::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Completions(args) => completions::run(&args),
    }
}
