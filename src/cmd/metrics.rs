//! `spec-notify metrics`: delivery metrics in the Prometheus text format
//! (see `crate::metrics`) on stdout, or written atomically to `--output` for
//! node_exporter's textfile collector. `--source nats`: from the streams
//! (every host).

use std::io::Write;

use anyhow::{Context, Result};

use super::Ctx;
use crate::cli::MetricsArgs;
use crate::exit::ExitCode;
use crate::{publish, store};

pub fn run(ctx: &Ctx, args: &MetricsArgs) -> Result<ExitCode> {
    let config = ctx.load_config()?;
    let store = super::open_store(ctx, &config, args.source, "metrics")?;
    let (text, snapshot) = store::metrics_of(&*store, &config)?;
    super::warn_snapshot(&snapshot);
    match &args.output {
        Some(path) => {
            publish::write(path, text.as_bytes())?;
            ctx.note(format_args!("wrote metrics to `{}`", path.display()));
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("failed to write to stdout")?;
        }
    }
    Ok(ExitCode::Success)
}
