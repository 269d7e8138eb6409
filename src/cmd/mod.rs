//! One module per command; each parses nothing and prints what it owns,
//! calling into the library modules for the work. The plumbing that several
//! commands share lives here (commands never borrow from each other): the
//! SPEC check, taking a SPEC's drain.lock, its evidence log, the warnings for
//! files and lines that could not be read, and the drain summary.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cli::{Cli, Command};
use crate::config::{self, Config};
use crate::drain::{Signal, Summary};
use crate::evidence::Evidence;
use crate::exit::{ExitCode, user_error};
use crate::output;
use crate::spool::{DrainLock, SpecSpool, Spool, Unreadable};

mod check;
mod completions;
mod demo;
mod discard;
mod drain;
mod emit;
mod history;
mod list;
mod metrics;
mod nats;
mod pause;
mod receive;
mod relay;
mod replay;
mod report;
mod status;
mod subscriptions;
mod test;
mod verify;

/// What every command gets from the global flags.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub config: Option<PathBuf>,
    pub verbose: bool,
}

impl Ctx {
    /// Loads the config; a missing or invalid file is an exit-2 error.
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

/// Fails with exit 2 unless `spec` has a spool folder (or, when
/// `evidence_counts`, an evidence folder). Names the known SPECs. The id's
/// syntax is clap's to check (`cli::spec_id`).
pub fn require_spec(config: &Config, spec: &str, evidence_counts: bool) -> Result<()> {
    let Some(listing) = unknown_spec(config, spec, evidence_counts)? else {
        return Ok(());
    };
    Err(user_error(format!(
        "unknown SPEC `{spec}`: there is no spool folder `{}`; {listing}; nothing was changed",
        Spool::new(&config.spool_dir).spec(spec).dir().display()
    )))
}

/// For the read-only views (list, status, report): a well-formed SPEC with
/// no spool folder yet is an empty result, not an error, so a monitoring
/// script may start before the first event. A note names the known SPECs
/// to catch typos.
pub fn note_if_unknown_spec(config: &Config, spec: &str, evidence_counts: bool) -> Result<()> {
    if let Some(listing) = unknown_spec(config, spec, evidence_counts)? {
        output::note(format_args!(
            "SPEC `{spec}` has no spool folder yet (nothing emitted for it): showing an empty result; {listing}"
        ));
    }
    Ok(())
}

/// `None` when `spec` has a spool folder (or an evidence folder, when
/// `evidence_counts`); else the known SPECs, as a phrase.
fn unknown_spec(config: &Config, spec: &str, evidence_counts: bool) -> Result<Option<String>> {
    let known = Spool::new(&config.spool_dir).specs()?;
    if known.iter().any(|s| s == spec) || (evidence_counts && config.evidence_for(spec).is_dir()) {
        return Ok(None);
    }
    Ok(Some(if known.is_empty() {
        "no SPEC has a spool yet (nothing has been emitted)".to_string()
    } else {
        format!("known SPECs: {}", known.join(", "))
    }))
}

/// Takes the SPEC's drain.lock, saying so on stderr when it has to wait for
/// a running drain to finish.
pub fn lock_drain_or_wait(spool: &SpecSpool) -> Result<DrainLock> {
    if let Some(lock) = spool.try_lock_drain()? {
        return Ok(lock);
    }
    output::note(format_args!(
        "waiting for the drain working on {} to finish…",
        spool.spec
    ));
    spool.lock_drain()
}

/// Starts a background drain (with `auto_drain`) for each SPEC whose due
/// jobs no drain serves: jobs that arrived as a drain let go of their SPEC,
/// or while replay or discard held it for a moment. Emit started no drain
/// for them, because one was serving.
pub fn hand_over(ctx: &Ctx, config: &Config, specs: &[String]) {
    if !config.auto_drain || specs.is_empty() {
        return;
    }
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    for warning in crate::kick::start_drains(config, &specs, ctx.config.as_deref()) {
        output::warn(warning);
    }
}

/// [`hand_over`] for one SPEC if it has pending jobs.
pub fn hand_over_pending(ctx: &Ctx, config: &Config, spool: &SpecSpool) {
    if spool
        .count(crate::spool::State::Pending)
        .is_ok_and(|n| n > 0)
    {
        hand_over(ctx, config, std::slice::from_ref(&spool.spec));
    }
}

/// Puts back what a dead drain left in active/, but only when no drain
/// serves the SPEC: a live drain's active/ jobs are requests in flight.
pub fn recover_unless_served(spool: &SpecSpool, lock: &DrainLock) -> Result<()> {
    if let Some(alive) = spool.try_serve()? {
        let (_, quarantined) = spool.recover(&alive, lock)?;
        for q in quarantined {
            warn_quarantined(&q);
        }
    }
    Ok(())
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
        Event::Error(e) => output::error(e),
    }
}

/// The SPEC's attempt log, with the configured size cap.
pub fn evidence(config: &Config, spec: &str) -> Evidence {
    Evidence::new(config.evidence_for(spec), config.max_evidence_bytes)
}

/// The subscription's URL as the evidence shows it (redacted); empty when
/// the subscription is no longer in the config.
pub fn logged_url(config: &Config, subscription: &str) -> String {
    config
        .subscription(subscription)
        .map(crate::config::Subscription::shown_url)
        .unwrap_or_default()
}

/// [`logged_url`] for a job: a per-call job carries its own target.
pub fn job_url(config: &Config, meta: &crate::spool::Meta) -> String {
    match &meta.target {
        Some(target) => crate::config::shown_per_call_url(&target.url),
        None => logged_url(config, &meta.subscription),
    }
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

/// The warning for attempt-log lines that did not parse, if any.
pub fn warn_unparseable(skipped: usize, dir: &Path) {
    if skipped > 0 {
        output::warn(format_args!(
            "skipped {skipped} unparseable lines in the attempt log under `{}`",
            dir.display()
        ));
    }
}

/// Names what a health snapshot could not read: spool files that are not
/// jobs, attempt-log lines that do not parse.
pub fn warn_snapshot(snapshot: &crate::health::Snapshot) {
    warn_unreadable(&snapshot.unreadable);
    for (skipped, place) in &snapshot.unparseable {
        output::warn(format_args!(
            "skipped {skipped} unparseable lines in {place}"
        ));
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
        Command::Relay(args) => relay::run(&ctx, &args),
        Command::Test(args) => test::run(&ctx, &args),
        Command::List(args) => list::run(&ctx, &args),
        Command::Replay(args) => replay::run(&ctx, &args),
        Command::Discard(args) => discard::run(&ctx, &args),
        Command::Pause(args) => pause::pause(&ctx, &args),
        Command::Resume(args) => pause::resume(&ctx, &args),
        Command::Status(args) => status::run(&ctx, &args),
        Command::History(args) => history::run(&ctx, &args),
        Command::Report(args) => report::run(&ctx, &args),
        Command::Metrics(args) => metrics::run(&ctx, &args),
        Command::Receive(args) => receive::run(&args),
        Command::Verify(args) => verify::run(&args),
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

    #[test]
    fn unknown_specs_are_named_with_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[spec_ops.webhooks]\nspool_dir = \"{0}/spool\"\nevidence_dir = \"{0}/evidence\"\n",
            dir.path().display()
        );
        let config = config::parse(&text, &dir.path().join("config.toml")).unwrap();
        let err = require_spec(&config, "S-1", true).unwrap_err();
        assert_eq!(crate::exit::code_for(&err), ExitCode::Usage);
        assert!(err.to_string().contains("no SPEC has a spool yet"), "{err}");

        std::fs::create_dir_all(config.evidence_for("S-1")).unwrap();
        require_spec(&config, "S-1", true).expect("an evidence folder counts for history");
        assert!(require_spec(&config, "S-1", false).is_err());

        Spool::new(&config.spool_dir).spec("S-2").ensure().unwrap();
        require_spec(&config, "S-2", false).unwrap();
        let err = require_spec(&config, "S-3", false).unwrap_err().to_string();
        assert!(
            err.contains("unknown SPEC `S-3`") && err.contains("known SPECs: S-2"),
            "{err}"
        );
    }
}
