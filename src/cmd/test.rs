//! `spec-notify test` (being built).

use anyhow::{Result, bail};

use crate::cli::TestArgs;
use crate::exit::ExitCode;

pub fn run(_ctx: &super::Ctx, _args: &TestArgs) -> Result<ExitCode> {
    bail!("`test` is not built yet")
}
