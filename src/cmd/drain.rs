//! `spec-notify drain` (being built).

use anyhow::{Result, bail};

use crate::cli::DrainArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &DrainArgs) -> Result<ExitCode> {
    bail!("`drain` is not built yet")
}
