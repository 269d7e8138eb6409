//! `spec-notify status` (being built).

use anyhow::{Result, bail};

use crate::cli::StatusArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &StatusArgs) -> Result<ExitCode> {
    bail!("`status` is not built yet")
}
