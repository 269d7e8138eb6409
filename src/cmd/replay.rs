//! `spec-notify replay` (being built).

use anyhow::{Result, bail};

use crate::cli::ReplayArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &ReplayArgs) -> Result<ExitCode> {
    bail!("`replay` is not built yet")
}
