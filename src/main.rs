//! Entry point: parse arguments, run the command, map the outcome to an exit code.

use clap::Parser;
use spec_notify::cli::{Cli, rewrite_flag_forms};
use spec_notify::{cmd, exit};

fn main() -> std::process::ExitCode {
    spec_notify::output::die_quietly_on_broken_pipe();
    let cli = Cli::parse_from(rewrite_flag_forms(std::env::args_os()));
    match cmd::run(cli) {
        Ok(code) => code.into(),
        Err(error) => {
            spec_notify::output::error(format_args!("{error:#}"));
            exit::code_for(&error).into()
        }
    }
}
