//! `spec-notify receive` (being built).

use anyhow::{Result, bail};

use crate::cli::ReceiveArgs;
use crate::exit::ExitCode;

pub fn run(_args: &ReceiveArgs) -> Result<ExitCode> {
    bail!("`receive` is not built yet")
}
