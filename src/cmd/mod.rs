//! One module per command; each parses nothing and prints what it owns,
//! calling into the library modules for the work. Commands that read or act
//! on jobs get a [`Store`] from [`open_store`], the one place that looks at
//! `--source`. The plumbing that several commands share lives here
//! (commands never borrow from each other): the unknown-SPEC note, handing
//! jobs over to a drain, the warnings for files and lines that could not be
//! read, the drain's reporter and summary, and evaluating the alert rules
//! (drains and `status` do).

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::{Cli, Command, Source};
use crate::config::{self, Config};
use crate::drain::{Signal, Summary};
use crate::evidence::Evidence;
use crate::exit::ExitCode;
use crate::output;
use crate::spool::Unreadable;
use crate::store::local::LocalStore;
use crate::store::{Store, Unknown};

mod alerts;
mod check;
mod completions;
mod demo;
mod discard;
mod drain;
mod emit;
mod history;
mod keys;
mod list;
mod metrics;
mod pause;
mod receive;
#[cfg(feature = "nats")]
mod relay;
mod replay;
mod report;
mod status;
mod subscriptions;
mod test;
mod top;
mod verify;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Option<PathBuf>,
    pub verbose: bool,
}

impl Ctx {
    /// Loads the config (`--config`, `SPEC_NOTIFY_CONFIG`, or found from the
    /// current folder up); a missing or invalid file is an exit-2 error
    /// that says where it was looked for.
    pub fn load_config(&self) -> Result<Config> {
        config::load_required(self.config.as_deref())
    }

    /// Prints a progress note on stderr with `-v`.
    pub fn note(&self, message: impl std::fmt::Display) {
        if self.verbose {
            output::note(message);
        }
    }
}

/// The one place that asks which backend a command works on: this host's
/// spool, or NATS JetStream (`--source nats`, which needs a relay table).
pub fn open_store<'a>(
    ctx: &Ctx,
    config: &'a Config,
    source: Source,
    command: &str,
) -> Result<Box<dyn Store + 'a>> {
    Ok(match source {
        Source::Spool => Box::new(LocalStore::new(config, ctx.config.clone())),
        Source::Nats => nats_store(config, command)?,
    })
}

#[cfg(feature = "nats")]
fn nats_store<'a>(config: &'a Config, command: &str) -> Result<Box<dyn Store + 'a>> {
    Ok(Box::new(crate::nats::store::NatsStore::connect(
        config, command,
    )?))
}

#[cfg(not(feature = "nats"))]
fn nats_store<'a>(_config: &'a Config, command: &str) -> Result<Box<dyn Store + 'a>> {
    Err(crate::exit::user_error(format!(
        "`{command} --source nats`: {}",
        config::WITHOUT_NATS
    )))
}

/// `relay`, in a build that can relay.
#[cfg(feature = "nats")]
fn relay(ctx: &Ctx, args: &crate::cli::RelayArgs) -> Result<ExitCode> {
    relay::run(ctx, args)
}

#[cfg(not(feature = "nats"))]
fn relay(_ctx: &Ctx, _args: &crate::cli::RelayArgs) -> Result<ExitCode> {
    Err(crate::exit::user_error(format!(
        "`relay`: {}",
        config::WITHOUT_NATS
    )))
}

/// For the read-only views (list, status, report): a well-formed SPEC with
/// nothing in the store yet is an empty result, not an error, so a
/// monitoring script may start before the first event. A note names the
/// known SPECs to catch typos.
pub fn note_if_unknown_spec(store: &dyn Store, spec: &str, records_count: bool) -> Result<()> {
    if let Some(Unknown { missing, listing }) = store.unknown_spec(spec, records_count)? {
        output::note(format_args!(
            "SPEC `{spec}` {missing} (nothing emitted for it): showing an empty result; {listing}"
        ));
    }
    Ok(())
}

/// Fails with exit 2 unless `spec` has jobs (or records, when
/// `records_count`) in the store, naming the known SPECs.
pub fn require_spec(store: &dyn Store, spec: &str, records_count: bool) -> Result<()> {
    match store.unknown_spec(spec, records_count)? {
        None => Ok(()),
        Some(Unknown { missing, listing }) => Err(crate::exit::user_error(format!(
            "unknown SPEC `{spec}`: it {missing}; {listing}; nothing was changed"
        ))),
    }
}

/// Starts drains for SPECs whose due jobs no drain serves (with
/// `auto_drain`), warning when one could not start.
pub fn hand_over(store: &dyn Store, specs: &[String]) {
    for warning in store.hand_over(specs) {
        output::warn(warning);
    }
}

/// Prints a store's progress note.
pub fn say(args: std::fmt::Arguments<'_>) {
    output::note(args);
}

pub fn warn_quarantined(q: &crate::spool::Quarantined) {
    output::warn(format_args!(
        "quarantined unreadable spool file `{}` ({}); it is now `{}`",
        q.from.display(),
        q.reason,
        q.to.display()
    ));
}

/// Prints a drain's events as they happen: every dead-lettered or paused
/// job with its hint, circuit changes, quarantined files and errors; with
/// `verbose`, one line per attempt.
pub fn drain_reporter(verbose: bool) -> impl FnMut(&crate::drain::Event) {
    use crate::drain::Event;
    use crate::evidence::Outcome;
    move |event| match event {
        Event::Attempt(r) if r.outcome == Outcome::Paused => output::warn(format_args!(
            "{} {} ({}): {}; its jobs wait until `spec-notify resume {}`",
            r.spec,
            r.delivery_id,
            r.subscription,
            r.error
                .as_deref()
                .unwrap_or("the endpoint asked to stop deliveries"),
            r.subscription
        )),
        Event::Attempt(r) if verbose => output::note(format_args!(
            "{} {} {} attempt {}: {}{}{}",
            r.spec,
            r.subscription,
            r.delivery_id,
            r.attempt,
            r.outcome.name(),
            r.status.map(|s| format!(", HTTP {s}")).unwrap_or_default(),
            r.error
                .as_deref()
                .map(|e| format!(", {e}"))
                .unwrap_or_default(),
        )),
        Event::Attempt(_) => {}
        Event::Dead {
            spec,
            delivery_id,
            subscription,
            reason,
            hint,
        } => output::warn(format_args!(
            "dead-lettered {spec} {delivery_id} ({subscription}, {reason}): {hint}"
        )),
        Event::Circuit {
            subscription,
            transition,
            circuit,
        } => output::warn(format_args!(
            "subscription {subscription}: {} — {}",
            transition.name(),
            circuit.describe(crate::clock::rfc3339)
        )),
        Event::Quarantined(q) => warn_quarantined(q),
        Event::LineHeld {
            spec,
            subscription,
            delivery_id,
        } => output::warn(format_args!(
            "{spec} → {subscription} is held (ordering = \"fifo\", fifo_on_dead = \"hold\"): dead job {delivery_id} goes first; `spec-notify replay {spec} --delivery-id {delivery_id}` sends it again, `spec-notify discard {spec} --delivery-id {delivery_id}` lets the line go on without it"
        )),
        Event::Error(e) => output::error(e),
    }
}

/// Evaluates the alert rules through `store` (see `crate::alerts`;
/// `secrets`: this is a drain, whose environment unset secrets are looked
/// at in; `snapshot`: every SPEC's health, when the caller read it
/// already), says each notification handed over on stderr and each problem
/// as a warning unless `quiet` says it was said last time. `None` when the
/// evaluation failed (warned): alerts never stop a drain or `status`.
pub fn evaluate_alerts(
    store: &dyn Store,
    config: &Config,
    secrets: bool,
    snapshot: Option<&crate::health::Snapshot>,
    quiet: &mut dyn FnMut(&str) -> bool,
) -> Option<crate::store::alerts::Evaluated> {
    let now = crate::clock::now_ms();
    let evaluated = crate::store::alerts::evaluate(store, config, secrets, snapshot, now);
    match evaluated {
        Ok(evaluated) => {
            for sent in &evaluated.sent {
                output::note(sent.line());
            }
            for problem in &evaluated.problems {
                if !quiet(problem) {
                    output::warn(problem);
                }
            }
            Some(evaluated)
        }
        Err(e) => {
            let message = format!("alert rules not evaluated: {e:#}");
            if !quiet(&message) {
                output::warn(message);
            }
            None
        }
    }
}

/// The SPEC's attempt log, with the configured size cap.
pub fn evidence(config: &Config, spec: &str) -> Evidence {
    Evidence::new(config.evidence_for(spec), config.max_evidence_bytes)
}

/// One warning per spool file a read-only command skipped.
pub fn warn_unreadable(unreadable: &[Unreadable]) {
    for bad in unreadable {
        output::warn(format_args!(
            "skipped unreadable `{}`: {}",
            bad.path.display(),
            bad.reason
        ));
    }
}

/// Names what a health snapshot could not read: spool files that are not
/// jobs, attempt-log lines that do not parse.
pub fn warn_snapshot(snapshot: &crate::health::Snapshot) {
    warn_unreadable(&snapshot.unreadable);
    for (skipped, place) in &snapshot.unparseable {
        output::warn(format_args!("skipped {skipped} in {place}"));
    }
}

/// Prints what a drain run did: its problems, the summary as JSON on stdout
/// when asked, and the one-line summary on stderr.
pub fn report_drain(summary: &Summary, json: bool) -> Result<()> {
    for problem in &summary.problems {
        output::error(problem);
    }
    if json {
        output::print_json(summary)?;
    }
    output::note(summary.line());
    Ok(())
}

/// Reports a `drain` run (a background one only when something needs
/// attention) and returns its exit code.
pub fn finish_drain(summary: &Summary, background: bool, json: bool) -> Result<ExitCode> {
    let quiet =
        background && summary.errors.is_empty() && summary.problems.is_empty() && summary.dead == 0;
    if !quiet {
        report_drain(summary, json)?;
    }
    Ok(drain_exit_code(summary))
}

/// A drain run's exit code: signals first (130/143), then I/O failures (1),
/// then missing secrets (2).
pub fn drain_exit_code(summary: &Summary) -> ExitCode {
    match summary.stopped_by {
        Some(Signal::Interrupt) => ExitCode::Interrupted,
        Some(Signal::Terminate) => ExitCode::Terminated,
        None if !summary.errors.is_empty() => ExitCode::Failure,
        None if !summary.problems.is_empty() => ExitCode::Usage,
        None => ExitCode::Success,
    }
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx {
        config: cli.config,
        verbose: cli.verbose,
    };
    match cli.command {
        Command::Check(args) => check::run(&ctx, &args),
        Command::Emit(args) => emit::run(&ctx, &args),
        Command::Drain(args) => drain::run(&ctx, &args),
        Command::Relay(args) => relay(&ctx, &args),
        Command::Test(args) => test::run(&ctx, &args),
        Command::List(args) => list::run(&ctx, &args),
        Command::Replay(args) => replay::run(&ctx, &args),
        Command::Discard(args) => discard::run(&ctx, &args),
        Command::Pause(args) => pause::pause(&ctx, &args),
        Command::Resume(args) => pause::resume(&ctx, &args),
        Command::Status(args) => status::run(&ctx, &args),
        Command::Top(args) => top::run(&ctx, &args),
        Command::Alerts(args) => alerts::run(&ctx, &args),
        Command::History(args) => history::run(&ctx, &args),
        Command::Report(args) => report::run(&ctx, &args),
        Command::Metrics(args) => metrics::run(&ctx, &args),
        Command::Receive(args) => receive::run(&args),
        Command::Verify(args) => verify::run(&args),
        Command::Keys(args) => keys::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Subscriptions(args) => subscriptions::run(&ctx, &args),
        Command::Completions(args) => completions::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_exit_code_puts_signals_before_failures_before_problems() {
        let mut summary = Summary {
            problems: vec!["SECRET_X is unset".into()],
            ..Summary::default()
        };
        assert_eq!(drain_exit_code(&summary), ExitCode::Usage);
        summary.errors.push("disk full".into());
        assert_eq!(drain_exit_code(&summary), ExitCode::Failure);
        summary.stopped_by = Some(Signal::Terminate);
        assert_eq!(drain_exit_code(&summary), ExitCode::Terminated);
        summary.stopped_by = Some(Signal::Interrupt);
        assert_eq!(drain_exit_code(&summary), ExitCode::Interrupted);
        assert_eq!(drain_exit_code(&Summary::default()), ExitCode::Success);
    }
}
