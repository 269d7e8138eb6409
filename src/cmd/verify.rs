//! `spec-notify verify` (being built).

use anyhow::{Result, bail};

use crate::cli::VerifyArgs;
use crate::exit::ExitCode;

pub fn run(_args: &VerifyArgs) -> Result<ExitCode> {
    bail!("`verify` is not built yet")
}
