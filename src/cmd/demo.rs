//! `spec-notify demo` (being built).

use anyhow::{Result, bail};

use crate::cli::{DemoArgs, DemoReceiverArgs};
use crate::exit::ExitCode;

pub fn run(_args: &DemoArgs) -> Result<ExitCode> {
    bail!("`demo` is not built yet")
}

pub fn run_receiver(_args: &DemoReceiverArgs) -> Result<ExitCode> {
    bail!("`demo` is not built yet")
}
