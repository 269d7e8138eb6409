//! `spec-notify history` (being built).

use anyhow::{Result, bail};

use crate::cli::HistoryArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &HistoryArgs) -> Result<ExitCode> {
    bail!("`history` is not built yet")
}
