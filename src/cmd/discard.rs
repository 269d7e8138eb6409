//! `spec-notify discard` (being built).

use anyhow::{Result, bail};

use crate::cli::DiscardArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &DiscardArgs) -> Result<ExitCode> {
    bail!("`discard` is not built yet")
}
