//! `spec-notify list` (being built).

use anyhow::{Result, bail};

use crate::cli::ListArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &ListArgs) -> Result<ExitCode> {
    bail!("`list` is not built yet")
}
